/*  =========================================================================
    writers.c - how queued frames reach the sockets

    The event loop's sockets (loop.c) are written on its thread with
    writers_serve, at the end of a turn; what follows is about the rest,
    the WebSockets civetweb keeps (TLS).

    WRITER_THREADS writers take conns with queued frames from a ready
    list, frame everything queued for one conn as WebSocket text frames
    into one buffer and write it with one send: small frames coalesce
    into few syscalls and packets, which is where fan-out speed lives.

    A writer never waits for a socket. civetweb 1.15 writes blocking (up
    to request_timeout_ms) and does not say which socket a connection is;
    so the ready handler finds the socket (writers_find_fd) and writers
    send on it directly with MSG_DONTWAIT, under civetweb's connection
    lock so that nothing civetweb writes itself (a pong) lands inside a
    frame of ours. What does not fit stays in the conn's out buffer and the
    conn is parked: one poller thread waits for its socket to drain and
    hands it back to the writers. Meanwhile new frames wait in the conn's
    queue, whose bound (sockets.c) makes a reader that never drains a
    slow reader.

    A conn is closed by us (a slow reader: 1008; the gateway's run was
    declared dead: 1012) with a close frame and then shutdown(2), which
    ends civetweb's read loop (or the event loop's) on that socket. The
    close frame goes after whatever is half sent, so the client reads
    every byte already on its way and then the status: a slow reader's
    socket is full by definition, so the frame waits, parked like any
    other write, for the socket to drain, at most WRITERS_CLOSE_DRAIN_MS;
    a reader that reads nothing in all that time gets the end of the
    stream alone.

    Should the socket not be found (never seen so far), a conn falls back
    to civetweb's blocking mg_write: correct, but a stuck reader then holds
    a writer for up to civetweb's timeout.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

#define COALESCE_MAX        (64 * 1024)     //  bytes of small frames gathered for one send
#define FRAMES_MAX          256             //  frames taken from a queue at once
#define POLL_TICK_MS        1000            //  the poller looks at its conns this often anyway

typedef enum { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_FAILED } flush_t;

static pthread_mutex_t s_ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_ready_cond = PTHREAD_COND_INITIALIZER;
static conn_t *s_ready_head, *s_ready_tail;
static bool s_writers_stopping;             //  under s_ready_lock
static pthread_t *s_writers;
static outbuf_t s_staging;                  //  the event loop's (loop.c) conns' framing
static size_t s_writer_count;

//  Conns whose socket was full, waiting for it to drain.
static pthread_mutex_t s_parked_lock = PTHREAD_MUTEX_INITIALIZER;
static conn_t **s_parked;
static size_t s_parked_count, s_parked_max;
static bool s_poller_stopping;              //  under s_parked_lock
static int s_wake_fd = -1;                  //  eventfd: a conn was parked, or stop
static pthread_t s_poller;
static bool s_poller_started;

//  ---------------------------------------------------------------------------
//  Framing

static void
s_out_add (outbuf_t *out, const void *data, size_t size)
{
    if (out->size + size > out->max) {
        size_t max = out->max? out->max: 4096;
        while (max < out->size + size)
            max *= 2;
        out->data = realloc (out->data, max);
        assert (out->data);
        out->max = max;
    }
    memcpy (out->data + out->size, data, size);
    out->size += size;
}

static void
s_stage (outbuf_t *out, const void *payload, size_t size, int opcode)
{
    uint8_t header [WSFRAME_HEADER_MAX];
    s_out_add (out, header, wsframe_header (header, opcode, size));
    s_out_add (out, payload, size);
}

//  ---------------------------------------------------------------------------
//  The transport: the only code that writes to a socket

//  Write what is in conn's out buffer. Needs writing set (or the only
//  reference to a conn nobody else can write).
static flush_t
s_flush (conn_t *conn, outbuf_t *out)
{
    flush_t result = FLUSH_DONE;
    if (conn->mg)
        mg_lock_connection (conn->mg);
    if (conn->fd < 0) {
        //  The fallback: civetweb's blocking write.
        if (mg_write (conn->mg, out->data + out->sent, out->size - out->sent)
            != (int) (out->size - out->sent))
            result = FLUSH_FAILED;
        else {
            out->sent = out->size;
            atomic_fetch_add (&gateway_metrics.socket_writes, 1);
        }
    }
    else
    while (out->sent < out->size) {
        ssize_t sent = send (conn->fd, out->data + out->sent, out->size - out->sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0) {
            out->sent += (size_t) sent;
            atomic_fetch_add (&gateway_metrics.socket_writes, 1);
        }
        else
        if (sent < 0 && errno == EINTR)
            continue;
        else {
            result = sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                   ? FLUSH_BLOCKED: FLUSH_FAILED;
            break;
        }
    }
    if (conn->mg)
        mg_unlock_connection (conn->mg);
    if (out->sent == out->size)
        out->size = out->sent = 0;
    return result;
}

//  Write conn's close frame (conn_begin_close), after what is half sent.
//  The caller shuts the socket once it is all out, or the wait is over.
static flush_t
s_close_frame (conn_t *conn, int status, const char *reason)
{
    char payload [2 + 123];
    size_t length = strlen (reason) > 123? 123: strlen (reason);
    payload [0] = (char) (status >> 8);
    payload [1] = (char) (status & 0xff);
    memcpy (payload + 2, reason, length);
    if (conn->fd < 0) {
        //  The fallback: the worker ends it at its next frame (ws_data).
        mg_websocket_write (conn->mg, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload,
                            2 + length);
        return FLUSH_DONE;
    }
    if (!conn->close_staged) {
        //  What is in out is the rest of whole frames: the close follows them.
        s_stage (&conn->out, payload, 2 + length, WSFRAME_CLOSE);
        conn->close_staged = true;
        conn->close_deadline_ms = clock_mono_ms () + WRITERS_CLOSE_DRAIN_MS;
    }
    return s_flush (conn, &conn->out);
}

//  ---------------------------------------------------------------------------
//  Ready list, parked list

void
writers_wake (conn_t *conn)
{
    if (conn->ready || conn->writing || (conn->parked && !conn->close_pending))
        return;
    conn->ready = true;
    atomic_fetch_add (&conn->refs, 1);
    if (conn->owned) {
        loop_wake (conn);
        return;
    }
    pthread_mutex_lock (&s_ready_lock);
    conn->ready_next = NULL;
    if (s_ready_tail)
        s_ready_tail->ready_next = conn;
    else
        s_ready_head = conn;
    s_ready_tail = conn;
    pthread_cond_signal (&s_ready_cond);
    pthread_mutex_unlock (&s_ready_lock);
}

//  Wait for conn's socket to drain. Conn's lock held.
static void
s_park (conn_t *conn)
{
    if (conn->parked) {
        //  Parked before its close was staged: the loop must learn that a
        //  close now waits (and for how long).
        if (conn->owned)
            loop_park (conn);
        return;
    }
    conn->parked = true;
    atomic_fetch_add (&conn->refs, 1);
    if (conn->owned) {
        loop_park (conn);
        return;
    }
    pthread_mutex_lock (&s_parked_lock);
    if (s_parked_count == s_parked_max) {
        s_parked_max = s_parked_max? s_parked_max * 2: 64;
        s_parked = realloc (s_parked, s_parked_max * sizeof *s_parked);
        assert (s_parked);
    }
    s_parked [s_parked_count++] = conn;
    pthread_mutex_unlock (&s_parked_lock);
    uint64_t one = 1;
    ssize_t rc = write (s_wake_fd, &one, sizeof one);
    (void) rc;                              //  a full eventfd is awake anyway
}

//  ---------------------------------------------------------------------------
//  Threads

void
writers_serve (conn_t *conn)
{
    frame_t *frames [FRAMES_MAX];
    size_t count = 0, bytes = 0;
    pthread_mutex_lock (&conn->lock);
    conn->ready = false;
    if (conn->state == CONN_CLOSED) {
        pthread_mutex_unlock (&conn->lock);
        return;
    }
    bool closing = conn->close_pending;
    int close_status = conn->close_status;
    const char *close_reason = conn->close_reason;
    conn->close_pending = false;
    //  A parked conn still has bytes out: those go first, alone.
    while (!closing && conn->out.size == 0 && conn->queue_count && count < FRAMES_MAX
       &&  bytes < COALESCE_MAX) {
        frames [count] = conn->queue [conn->queue_head];
        bytes += frames [count++]->size;
        conn->queue_head = (conn->queue_head + 1) % conn->queue_size;
        conn->queue_count--;
    }
    if (!closing && count == 0 && conn->out.size == 0) {
        pthread_mutex_unlock (&conn->lock);
        return;
    }
    conn->writing = true;
    pthread_mutex_unlock (&conn->lock);

    flush_t result = FLUSH_DONE;
    if (closing)
        result = s_close_frame (conn, close_status, close_reason);
    else {
        //  The event loop's conns are framed in one buffer (they are all
        //  served on its thread) and keep only what a full socket did not
        //  take: an idle socket holds no output buffer.
        outbuf_t *out = conn->owned && conn->out.size == 0? &s_staging: &conn->out;
        int64_t made_ns [FRAMES_MAX];
        for (size_t i = 0; i < count; i++) {
            s_stage (out, frames [i]->data, frames [i]->size, frames [i]->opcode);
            made_ns [i] = frames [i]->made_ns;
            frame_unref (frames [i]);
        }
        result = s_flush (conn, out);
        if (out == &s_staging && out->sent < out->size) {
            s_out_add (&conn->out, out->data + out->sent, out->size - out->sent);
            out->size = out->sent = 0;
        }
        if (conn->owned && conn->out.size == 0 && conn->out.max) {
            free (conn->out.data);
            conn->out.data = NULL;
            conn->out.max = 0;
        }
        if (count) {
            atomic_fetch_add (&gateway_metrics.messages_delivered, count);
            int64_t now_ns = clock_mono_ns ();
            for (size_t i = 0; i < count; i++)
                gateway_metrics_delivered (now_ns - made_ns [i]);
        }
    }

    pthread_mutex_lock (&conn->lock);
    conn->writing = false;
    pthread_cond_broadcast (&conn->idle);
    if (result == FLUSH_FAILED && conn->state != CONN_CLOSED) {
        //  The peer is gone: stop, and make sure civetweb notices.
        log_debug ("socket %s: a write failed (%s); closing it", conn->id, strerror (errno));
        conn->state = CONN_CLOSING;
        conn->close_pending = false;
        conn_queue_drop (conn);
        conn->out.size = conn->out.sent = 0;
        if (conn->fd >= 0)
            shutdown (conn->fd, SHUT_RDWR);
    }
    if (closing && conn->state == CONN_CLOSING) {
        if (result == FLUSH_BLOCKED && clock_mono_ms () < conn->close_deadline_ms) {
            conn->close_pending = true;         //  the rest when the socket drains
            s_park (conn);
        }
        else {
            //  All out (or given up): the end of the stream follows it.
            //  civetweb's read loop (or the event loop) sees it and closes
            //  the connection as for any close.
            if (conn->fd >= 0 && result != FLUSH_FAILED)
                shutdown (conn->fd, SHUT_RDWR);
            conn->out.size = conn->out.sent = 0;
        }
    }
    else
    if (closing)
        conn->out.size = conn->out.sent = 0;
    if (result == FLUSH_BLOCKED && conn->state == CONN_OPEN)
        s_park (conn);
    else
    if ((conn->state == CONN_OPEN && conn->queue_count) || conn->close_pending)
        writers_wake (conn);
    pthread_mutex_unlock (&conn->lock);
}

static void *
s_writer (void *arg)
{
    (void) arg;
    for (;;) {
        pthread_mutex_lock (&s_ready_lock);
        while (!s_ready_head && !s_writers_stopping)
            pthread_cond_wait (&s_ready_cond, &s_ready_lock);
        conn_t *conn = s_ready_head;
        if (conn) {
            s_ready_head = conn->ready_next;
            if (!s_ready_head)
                s_ready_tail = NULL;
        }
        pthread_mutex_unlock (&s_ready_lock);
        if (!conn)
            break;                          //  stopping, and nothing left
        writers_serve (conn);
        conn_unref (conn);                  //  the ready list's reference
    }
    return NULL;
}

//  Wait for parked conns' sockets to drain (or their conns to close) and
//  hand them back to the writers. Only this thread takes conns off the
//  parked list, so the list's entries stay valid while it polls.
static void *
s_poll (void *arg)
{
    (void) arg;
    struct pollfd *fds = NULL;
    conn_t **conns = NULL;
    size_t max = 0;
    for (;;) {
        pthread_mutex_lock (&s_parked_lock);
        size_t count = s_parked_count;
        if (count + 1 > max) {
            max = (count + 1) * 2;
            fds = realloc (fds, max * sizeof *fds);
            conns = realloc (conns, max * sizeof *conns);
            assert (fds && conns);
        }
        for (size_t i = 0; i < count; i++) {
            conns [i] = s_parked [i];
            fds [i + 1] = (struct pollfd) { conns [i]->fd, POLLOUT, 0 };
        }
        bool stopping = s_poller_stopping;
        pthread_mutex_unlock (&s_parked_lock);
        fds [0] = (struct pollfd) { s_wake_fd, POLLIN, 0 };
        if (stopping)
            break;
        int rc = poll (fds, count + 1, POLL_TICK_MS);
        if (rc < 0 && errno != EINTR)
            log_error ("poll: %s", strerror (errno));
        if (fds [0].revents & POLLIN) {
            uint64_t value;
            ssize_t got = read (s_wake_fd, &value, sizeof value);
            (void) got;
        }
        for (size_t i = 0; i < count; i++) {
            conn_t *conn = conns [i];
            pthread_mutex_lock (&conn->lock);
            //  A closed conn's fd may be another socket by now: its state
            //  is what counts, not what poll said. A close frame waits for
            //  its socket as any write does, until its deadline.
            bool waits = conn->state == CONN_CLOSING && conn->close_pending && conn->close_staged
                      && clock_mono_ms () < conn->close_deadline_ms;
            bool done = fds [i + 1].revents || (conn->state != CONN_OPEN && !waits);
            if (done) {
                conn->parked = false;
                pthread_mutex_lock (&s_parked_lock);
                for (size_t k = 0; k < s_parked_count; k++)
                    if (s_parked [k] == conn) {
                        s_parked [k] = s_parked [--s_parked_count];
                        break;
                    }
                pthread_mutex_unlock (&s_parked_lock);
                if (conn->state == CONN_OPEN || conn->close_pending)
                    writers_wake (conn);
            }
            pthread_mutex_unlock (&conn->lock);
            if (done)
                conn_unref (conn);          //  the parked list's reference
        }
    }
    free (fds);
    free (conns);
    return NULL;
}

void
writers_unpark (conn_t *conn)
{
    pthread_mutex_lock (&conn->lock);
    if (conn->parked) {
        conn->parked = false;
        if (conn->state == CONN_OPEN || conn->close_pending)
            writers_wake (conn);
        pthread_mutex_unlock (&conn->lock);
        conn_unref (conn);                  //  the parked state's reference
    }
    else
        pthread_mutex_unlock (&conn->lock);
}

int
writers_start (size_t count)
{
    s_writers_stopping = s_poller_stopping = false;
    s_wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_wake_fd < 0) {
        log_error ("eventfd: %s", strerror (errno));
        return -1;
    }
    if (pthread_create (&s_poller, NULL, s_poll, NULL)) {
        log_error ("cannot start the poller thread");
        return -1;
    }
    s_poller_started = true;
    s_writers = calloc (count, sizeof *s_writers);
    assert (s_writers);
    for (size_t i = 0; i < count; i++, s_writer_count++)
        if (pthread_create (&s_writers [i], NULL, s_writer, NULL)) {
            log_error ("cannot start writer thread %zu", i);
            return -1;
        }
    return 0;
}

void
writers_stop (void)
{
    pthread_mutex_lock (&s_ready_lock);
    s_writers_stopping = true;
    pthread_cond_broadcast (&s_ready_cond);
    pthread_mutex_unlock (&s_ready_lock);
    for (size_t i = 0; i < s_writer_count; i++)
        pthread_join (s_writers [i], NULL);
    free (s_writers);
    s_writers = NULL;
    s_writer_count = 0;
    if (s_poller_started) {
        pthread_mutex_lock (&s_parked_lock);
        s_poller_stopping = true;
        pthread_mutex_unlock (&s_parked_lock);
        uint64_t one = 1;
        ssize_t rc = write (s_wake_fd, &one, sizeof one);
        (void) rc;
        pthread_join (s_poller, NULL);
        s_poller_started = false;
    }
    //  civetweb has stopped: every conn is closed; drop what waits.
    for (size_t i = 0; i < s_parked_count; i++)
        conn_unref (s_parked [i]);
    free (s_parked);
    s_parked = NULL;
    s_parked_count = s_parked_max = 0;
    if (s_wake_fd >= 0)
        close (s_wake_fd);
    s_wake_fd = -1;
    free (s_staging.data);
    memset (&s_staging, 0, sizeof s_staging);
}

//  ---------------------------------------------------------------------------
//  Finding a connection's socket

//  civetweb does not give out a connection's descriptor. The one we want
//  is the socket whose peer is the request's remote address and port and
//  whose own port is the server's: that names one open socket, and while
//  the ready handler (the caller) runs it stays open. Sockets already
//  known to be another connection's are skipped without a system call
//  (a bitmap), and so are descriptors seen to be no client socket of the
//  server's port (ZeroMQ's eventfds, one a civetweb thread, its TCP
//  sockets, files: another bitmap). A look then costs a few system calls,
//  not a getpeername for every open descriptor (reading /proc/self/fd
//  for each new socket made connecting O(sockets): half the gateway's
//  time in churn). A descriptor seen as "other" may be closed and reused
//  by a new client socket: a look that finds nothing looks again at all
//  of them and learns the "other" set afresh.
typedef struct {
    uint64_t *bits;
    size_t words;
} bitmap_t;

static struct {
    pthread_mutex_t lock;
    bitmap_t ours, other;
} s_fds = { PTHREAD_MUTEX_INITIALIZER, { NULL, 0 }, { NULL, 0 } };

static bool
s_bit (const bitmap_t *map, int fd)
{
    size_t word = (size_t) fd / 64;
    return word < map->words && (map->bits [word] >> (fd % 64) & 1);
}

static void
s_bit_set (bitmap_t *map, int fd, bool value)
{
    size_t word = (size_t) fd / 64;
    if (word >= map->words) {
        if (!value)
            return;
        size_t words = (word + 1) * 2;
        map->bits = realloc (map->bits, words * sizeof *map->bits);
        assert (map->bits);
        memset (map->bits + map->words, 0, (words - map->words) * sizeof *map->bits);
        map->words = words;
    }
    if (value)
        map->bits [word] |= (uint64_t) 1 << (fd % 64);
    else
        map->bits [word] &= ~((uint64_t) 1 << (fd % 64));
}

typedef enum { FD_CLOSED, FD_OTHER, FD_CLIENT, FD_THE_ONE } fd_kind_t;

static fd_kind_t
s_kind (int fd, const struct mg_request_info *info)
{
    struct sockaddr_in peer, local;
    socklen_t peer_size = sizeof peer, local_size = sizeof local;
    if (getsockname (fd, (struct sockaddr *) &local, &local_size))
        return errno == EBADF? FD_CLOSED: FD_OTHER;
    if (local.sin_family != AF_INET || ntohs (local.sin_port) != info->server_port)
        return FD_OTHER;
    if (getpeername (fd, (struct sockaddr *) &peer, &peer_size))
        return errno == EBADF? FD_CLOSED: FD_OTHER;    //  the listener has no peer
    char address [INET_ADDRSTRLEN];
    return ntohs (peer.sin_port) == info->remote_port
        && inet_ntop (AF_INET, &peer.sin_addr, address, sizeof address)
        && strcmp (address, info->remote_addr) == 0? FD_THE_ONE: FD_CLIENT;
}

//  One pass over the descriptors; trust_other skips those seen as other.
static int
s_look (const struct mg_request_info *info, int limit, bool trust_other)
{
    //  Descriptors are handed out lowest first, so past a long run of
    //  closed ones there is none left to look at.
    int closed_run = 0;
    for (int fd = 0; fd < limit && closed_run < 1024; fd++) {
        if (s_bit (&s_fds.ours, fd) || (trust_other && s_bit (&s_fds.other, fd))) {
            closed_run = 0;
            continue;
        }
        fd_kind_t kind = s_kind (fd, info);
        closed_run = kind == FD_CLOSED? closed_run + 1: 0;
        s_bit_set (&s_fds.other, fd, kind == FD_OTHER);
        if (kind == FD_THE_ONE)
            return fd;
    }
    return -1;
}

int
writers_find_fd (const struct mg_connection *mg)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    if (!info || info->is_ssl)
        return -1;                          //  TLS must go through civetweb
    struct rlimit files;
    int limit = getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (rlim_t) INT_MAX
              ? (int) files.rlim_cur: 65536;
    //  (The lock is held across the look, so the bitmaps are one thread's
    //  at a time.)
    pthread_mutex_lock (&s_fds.lock);
    int found = s_look (info, limit, true);
    if (found < 0)
        found = s_look (info, limit, false);
    if (found >= 0)
        s_bit_set (&s_fds.ours, found, true);
    pthread_mutex_unlock (&s_fds.lock);
    return found;
}

void
writers_claim_fd (int fd)
{
    pthread_mutex_lock (&s_fds.lock);
    s_bit_set (&s_fds.ours, fd, true);
    pthread_mutex_unlock (&s_fds.lock);
}

void
writers_forget_fd (int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock (&s_fds.lock);
    s_bit_set (&s_fds.ours, fd, false);
    pthread_mutex_unlock (&s_fds.lock);
}
