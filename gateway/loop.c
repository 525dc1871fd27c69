/*  =========================================================================
    loop.c - the backend thread's event loop over every WebSocket

    civetweb 1.15 holds each WebSocket on a worker thread of its own, from
    its handshake to its close, and has no event-driven WebSocket API. A
    thread a socket is what made the gateway slow and large: every client
    frame crossed three threads (civetweb's, the backend's, a writer's)
    and each idle socket kept a thread's stack and a ZeroMQ socket. So
    once civetweb has answered a WebSocket's upgrade (ws_ready), the
    socket is taken over (loop_take) and served here, on the backend
    thread, which owns the ZeroMQ sockets already: a client frame is read,
    parsed (wslay's frame API, through wsin.c, whose recv callback is this
    loop's non-blocking read: s_recv), handled (ws.c) and sent to its shard on one
    thread; an event from a shard is queued to its room's sockets and
    written at the end of the same turn, many frames to a write.

    civetweb keeps HTTP and the handshakes; the gateway holds no TLS (the
    edge does), so every WebSocket is a plain socket the loop can take. One
    that cannot be taken (its descriptor not found, none left to duplicate
    it) is refused (ws_ready), never served on a civetweb thread.

    How a socket is taken over from civetweb: its descriptor is found
    (fds_find), duplicated for us, and civetweb's number is pointed
    at one end of a socket pair whose other end is closed. civetweb's
    read loop then sees the end of a stream at once, runs the close
    handler (which hands the conn to this loop: loop_adopt), and closes its
    number; the TCP socket lives on under ours. A client may send frames
    with its upgrade request, in one packet, before it read the answer:
    civetweb has read those with the request, so its read loop hands them
    to ws_data before it sees the end; they are framed again in front of
    the socket's bytes (loop_preface), and the conn is adopted only once
    civetweb's read has ended (ws_close), so no byte is lost or reordered.

    One action at a time a socket: while its action waits for its reply
    (busy), its later frames wait in its input buffer, so a socket's
    actions are done in the order sent, as before, and the socket is not
    read (out of epoll's read set) until the action ends, so that one
    socket cannot pile up work or memory. A socket whose peer went while
    it was busy is closed when the action ends.

    Bounds (DESIGN.md's limits): a message is at most PAYLOAD_MAX (64 KiB,
    fragments reassembled; a longer one is refused by its header, close
    1009). A socket holds at most wslay's context (4 KiB read ahead) and
    one message being reassembled; both are freed once the socket holds
    nothing (wsin_idle), and the heap is trimmed after large ones went
    (glibc keeps freed memory otherwise: 857 MB stayed after 990 sockets
    that held 1 MiB frames had closed). A socket is read for at most
    READ_MAX a turn. Every WS_PING_S a silent socket is pinged; one that
    stays silent as long again is closed 1001 "no answer to ping" (s_ping,
    from the turn).

    Invariants:
      - only the backend thread touches the loop's conns, lists and epoll
        set; other threads reach it by loop_adopt (a locked list and an
        eventfd);
      - the loop holds a reference on each of its conns from adoption to
        the end of the turn in which it was closed, so an event already
        returned by epoll never meets a freed conn.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <czmq.h>
#include "gateway.h"
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"
#include "wsin.h"

#define EVENTS_MAX      256             //  epoll events taken at once
#define READ_MAX        (64 * 1024)     //  read from one socket at a time
#define PAYLOAD_MAX     (64 * 1024)     //  a longer message closes the socket (1009)
#define DRAIN_MS        2000            //  a closed socket's input is dropped so long (s_close)
#define TRIM_AFTER      (1024 * 1024)   //  input bytes freed before the heap is trimmed
#define ZMQ_SOCKETS_MAX 4
#define WAKE_MS         100             //  longest sleep: timers, the stop flag
#define DRAIN_MAX       256             //  messages read from one socket before the others' turn
#define GATEWAY_BEAT_MS 1000            //  how often stored hears we are alive
#define FLUSH_EVERY_US  1000            //  longest a frame waits while work keeps coming
#define RUN_GONE_REASON "the gateway lost its rooms; reconnect and join again with sinceSeq"

static struct {
    int epoll;
    int mail;                           //  eventfd: something was mailed
    pthread_mutex_t lock;
    loop_mail_t *mail_head, *mail_tail; //  (lock) mailed, not yet run
    conn_t *conns;                      //  the loop's, by loop_next/loop_prev
    conn_t **resume;                    //  whose action ended
    size_t resume_count, resume_max;
    conn_t **dead;                      //  closed this turn
    size_t dead_count, dead_max;
    conn_t **lingering;                 //  close frames waiting for their socket to drain
    size_t lingering_count, lingering_max;
    void *zmq [ZMQ_SOCKETS_MAX];
    int zmq_count;
    bool hurry;
    int64_t next_ping_ms;               //  monotonic: when s_ping looks again
    size_t freed;                       //  input buffer bytes freed since the last trim
    pthread_t thread;
    bool started;
    atomic_bool stopping;               //  the thread should end
} s_loop = { .epoll = -1, .mail = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static __thread bool s_on_thread;      //  this is the loop's thread

//  Markers for epoll's data of the descriptors that are not conns.
static char s_mail_marker, s_zmq_marker;

static void s_end (conn_t *conn);
static ssize_t s_recv (void *user, uint8_t *buf, size_t size);
static void s_handle (conn_t *conn, size_t budget);

static void
s_push (conn_t ***list, size_t *count, size_t *max, conn_t *conn)
{
    if (*count == *max) {
        *max = *max? *max * 2: 64;
        *list = realloc (*list, *max * sizeof **list);
        assert (*list);
    }
    (*list) [(*count)++] = conn;
}

//  ---------------------------------------------------------------------------
//  Adoption (from civetweb's threads)

void
loop_preface (conn_t *conn, int bits, const char *data, size_t size)
{
    wsin_preface (&conn->in, bits, data, size);
}

void
loop_mail (loop_mail_t *mail)
{
    mail->next = NULL;
    pthread_mutex_lock (&s_loop.lock);
    if (s_loop.mail_tail)
        s_loop.mail_tail->next = mail;
    else
        s_loop.mail_head = mail;
    s_loop.mail_tail = mail;
    pthread_mutex_unlock (&s_loop.lock);
    uint64_t one = 1;
    ssize_t rc = write (s_loop.mail, &one, sizeof one);
    (void) rc;                          //  a full eventfd is awake anyway
}

//  Run what was mailed, in order.
static void
s_take_mail (void)
{
    uint64_t value;
    ssize_t rc = read (s_loop.mail, &value, sizeof value);
    (void) rc;
    pthread_mutex_lock (&s_loop.lock);
    loop_mail_t *mail = s_loop.mail_head;
    s_loop.mail_head = s_loop.mail_tail = NULL;
    pthread_mutex_unlock (&s_loop.lock);
    while (mail) {
        loop_mail_t *next = mail->next;
        mail->run (mail);
        mail = next;
    }
}

static void s_adopted (loop_mail_t *mail);

void
loop_adopt (conn_t *conn)
{
    atomic_fetch_add (&conn->refs, 1);          //  the loop's
    conn->adoption.run = s_adopted;
    loop_mail (&conn->adoption);
}

static void
s_interest (conn_t *conn)
{
    //  Input is read unless an action of the socket's waits (busy);
    //  output is waited for while the socket is full (parked).
    uint32_t events = (conn->busy? 0: EPOLLIN) | (conn->parked? EPOLLOUT: 0);
    if (events != conn->interest) {
        struct epoll_event event = { .events = events, .data.ptr = conn };
        if (epoll_ctl (s_loop.epoll, EPOLL_CTL_MOD, conn->fd, &event))
            log_error ("epoll_ctl: %s", strerror (errno));
        conn->interest = events;
    }
}

//  A conn handed over by civetweb's close handler: the loop's from now on.
static void
s_adopted (loop_mail_t *mail)
{
    conn_t *conn = (conn_t *) ((char *) mail - offsetof (conn_t, adoption));
    conn->loop_prev = NULL;
    conn->loop_next = s_loop.conns;
    if (s_loop.conns)
        s_loop.conns->loop_prev = conn;
    s_loop.conns = conn;
    conn->interest = EPOLLIN;
    conn->heard_ms = clock_mono_ms ();
    wsin_init (&conn->in, s_recv, conn);
    struct epoll_event event = { .events = EPOLLIN, .data.ptr = conn };
    ws_opened (conn);
    if (epoll_ctl (s_loop.epoll, EPOLL_CTL_ADD, conn->fd, &event)) {
        log_error ("epoll_ctl: %s", strerror (errno));
        conn->interest = 0;
        s_end (conn);
    }
    else
    if (wsin_has_preface (&conn->in)) {
        s_handle (conn, 0);             //  frames sent with the upgrade, read by civetweb
        if (!conn->ended)
            s_interest (conn);
    }
}

//  ---------------------------------------------------------------------------
//  Closing

//  Close conn for good: its leave and conn-del go (ws_closed), its socket
//  closes. Not while an action of its waits.
static void
s_unlink (conn_t *conn)
{
    if (!conn->loop_prev && s_loop.conns != conn)
        return;                         //  not on the list
    if (conn->loop_prev)
        conn->loop_prev->loop_next = conn->loop_next;
    else
        s_loop.conns = conn->loop_next;
    if (conn->loop_next)
        conn->loop_next->loop_prev = conn->loop_prev;
    conn->loop_prev = conn->loop_next = NULL;
}

static void
s_finish (conn_t *conn)
{
    assert (conn->ended && !conn->busy && conn->fd >= 0);
    ws_closed (conn);                   //  out of the table: no more writes
    close (conn->fd);
    conn->fd = -1;
    s_unlink (conn);
    s_push (&s_loop.dead, &s_loop.dead_count, &s_loop.dead_max, conn);
}

//  The peer is gone, or broke the protocol: no more reading or writing.
static void
s_end (conn_t *conn)
{
    if (conn->ended)
        return;
    conn->ended = true;
    if (conn->interest)
        epoll_ctl (s_loop.epoll, EPOLL_CTL_DEL, conn->fd, NULL);
    conn->interest = 0;
    s_loop.freed += wsin_footprint (&conn->in);
    wsin_free (&conn->in);
    output_unpark (conn);
    if (!conn->busy)
        s_finish (conn);
}

//  Send a close frame of status now, if the socket takes it (a frame of
//  ours half sent would garble it: then none), and end the conn.
//
//  Once the frame is out the socket is drained, not closed: its writing
//  side is shut (the client sees our close, then the end of the stream),
//  and what the client still sends (the rest of a message too long, its
//  own close) is read and dropped until it ends the stream or DRAIN_MS
//  pass. Closed at once, a socket with unread bytes is reset (RFC 793),
//  and a client writing into it meets the reset before it reads our
//  close frame: it sees 1006, not the status we sent.
static void
s_close (conn_t *conn, int status, const char *reason)
{
    bool sent = false;
    if (conn->out.size == 0) {
        uint8_t payload [2 + 123];
        size_t length = strlen (reason) > 123? 123: strlen (reason);
        payload [0] = (uint8_t) (status >> 8);
        payload [1] = (uint8_t) status;
        memcpy (payload + 2, reason, length);
        outbuf_t frame = { 0 };
        output_stage (&frame, payload, 2 + length, WSFRAME_CLOSE);
        ssize_t rc = send (conn->fd, frame.data, frame.size, MSG_DONTWAIT | MSG_NOSIGNAL);
        sent = rc == (ssize_t) frame.size;
        free (frame.data);
    }
    if (!sent || conn->busy) {
        s_end (conn);
        return;
    }
    shutdown (conn->fd, SHUT_WR);
    conn->state = CONN_CLOSING;         //  nothing more is queued for it
    conn->draining = true;
    conn->close_deadline_ms = clock_mono_ms () + DRAIN_MS;
    s_loop.freed += wsin_footprint (&conn->in);
    wsin_free (&conn->in);
    if (!conn->lingering) {             //  s_linger ends it at the deadline
        conn->lingering = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_loop.lingering, &s_loop.lingering_count, &s_loop.lingering_max, conn);
    }
}

//  A draining socket is readable: drop what came; its end ends the conn.
static void
s_drain (conn_t *conn)
{
    char sink [4096];
    ssize_t got;
    size_t budget = READ_MAX;
    while (budget && (got = recv (conn->fd, sink, sizeof sink, MSG_DONTWAIT)) > 0)
        budget -= (size_t) got > budget? budget: (size_t) got;
    if (budget && (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)))
        s_end (conn);
}

//  ---------------------------------------------------------------------------
//  Reading

//  wslay's recv callback (through wsin): the conn's socket, read while
//  its turn's budget lasts. Never blocks: an empty socket is "none now".
static ssize_t
s_recv (void *user, uint8_t *buf, size_t size)
{
    conn_t *conn = user;
    if (conn->budget == 0 || conn->hung_up)
        return -1;
    if (size > conn->budget)
        size = conn->budget;
    ssize_t got = recv (conn->fd, buf, size, 0);
    if (got > 0) {
        conn->budget -= (size_t) got;
        conn->heard_ms = clock_mono_ms ();      //  any byte answers a ping
        conn->pinged_ms = 0;
        return got;
    }
    conn->budget = 0;
    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        conn->hung_up = true;
    return -1;                          //  wslay: WSLAY_ERR_WANT_READ
}

//  Handle the conn's messages as long as it is not busy, reading at most
//  budget bytes of its socket for them (0: only what wslay holds).
static void
s_handle (conn_t *conn, size_t budget)
{
    conn->budget = budget;
    conn->processing = true;
    while (!conn->busy && !conn->ended && !conn->draining) {
        wsin_msg_t msg;
        wsin_result_t result = wsin_next (&conn->in, PAYLOAD_MAX, &msg);
        if (result == WSIN_MORE)
            break;
        if (result == WSIN_ERROR) {
            log_debug ("socket %s broke the protocol (%s); closing it (%d)",
                       conn_id (conn), msg.reason, msg.status);
            s_close (conn, msg.status, msg.reason);
            break;
        }
        if (msg.opcode == WSFRAME_PING) {
            frame_t *pong = frame_new_control (WSFRAME_PONG, msg.data, msg.size);
            sockets_queue (conn, pong);
            frame_unref (pong);
        }
        else
        if (msg.opcode == WSFRAME_CLOSE)
            //  Answer with its status (1000 for none), then close (RFC 6455, 5.5.1).
            s_close (conn, msg.status, "");
        else
        if (msg.opcode != WSFRAME_PONG) {
            conn->busy = true;          //  loop_done clears it, maybe before ws_frame returns
            ws_frame (conn, msg.opcode, true, (const char *) msg.data, msg.size);
        }
    }
    conn->processing = false;
    conn->budget = 0;
    if (conn->draining && conn->hung_up)
        s_end (conn);                   //  its end came with our close: nothing to drain
    if (conn->ended || conn->draining)
        return;
    if (conn->hung_up && !conn->busy)
        s_end (conn);                   //  every whole message before the end was handled
    else
        s_loop.freed += wsin_idle (&conn->in);  //  an idle socket keeps no buffer
}

//  The socket is readable (or hung up): read at most READ_MAX of it.
static void
s_read (conn_t *conn, bool hung_up)
{
    //  A busy conn is not read (out of the read set): it is looked at only
    //  when epoll says its peer hung up.
    if (conn->busy) {
        if (hung_up)
            s_end (conn);
        return;
    }
    if (conn->draining) {
        s_drain (conn);
        return;
    }
    s_handle (conn, READ_MAX);
    if (!conn->ended)
        s_interest (conn);
}

//  ---------------------------------------------------------------------------
//  For ws.c and output.c

void
loop_done (conn_t *conn)
{
    conn->busy = false;
    if (!conn->processing && !conn->resuming) {
        conn->resuming = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_loop.resume, &s_loop.resume_count, &s_loop.resume_max, conn);
    }
}

//  Conn's socket is full (output_serve parked it): watch it for room.
static void
s_park (conn_t *conn)
{
    if (!conn->ended)
        s_interest (conn);
    //  A close frame waits for the socket at most so long (output.c):
    //  the loop looks at it again then, writable or not.
    if (conn->close_staged && !conn->lingering) {
        conn->lingering = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_loop.lingering, &s_loop.lingering_count, &s_loop.lingering_max, conn);
    }
}

//  The closes whose wait is over go on (and are shut); the rest wait on.
static void
s_linger (void)
{
    int64_t now = clock_mono_ms ();
    for (size_t i = s_loop.lingering_count; i-- > 0; ) {
        conn_t *conn = s_loop.lingering [i];
        if (conn->draining && !conn->ended && now < conn->close_deadline_ms)
            continue;
        if (conn->draining) {
            s_loop.lingering [i] = s_loop.lingering [--s_loop.lingering_count];
            conn->lingering = false;
            s_end (conn);               //  no end of the stream came in time
            conn_unref (conn);
            continue;
        }
        bool waits = conn->parked && conn->state == CONN_CLOSING && !conn->ended;
        if (waits && now < conn->close_deadline_ms)
            continue;
        s_loop.lingering [i] = s_loop.lingering [--s_loop.lingering_count];
        conn->lingering = false;
        if (waits)
            output_unpark (conn);
        conn_unref (conn);
    }
}

//  ---------------------------------------------------------------------------
//  Pings, and the heap

//  Ping the sockets silent for WS_PING_S, close those silent as long
//  since their ping, and give the heap's free pages back once enough input
//  buffers went. Looked at four times a WS_PING_S, at most once a second.
static void
s_ping (void)
{
    int64_t now = clock_mono_ms ();
    int64_t period = gateway_config.ws_ping_s * 1000;
    s_loop.next_ping_ms = now + (period / 4 < 1000? period / 4: 1000);
    if (s_loop.freed >= TRIM_AFTER) {
        malloc_trim (0);
        s_loop.freed = 0;
    }
    frame_t *ping = NULL;
    conn_t *next = NULL;
    for (conn_t *conn = s_loop.conns; conn; conn = next) {
        next = conn->loop_next;
        if (conn->ended || conn->state != CONN_OPEN)
            continue;                   //  a close under way has its own deadline
        if (conn->busy) {
            //  Not read while its action waits: whatever it sent waits too.
            conn->heard_ms = now;
            continue;
        }
        if (conn->pinged_ms && now - conn->pinged_ms >= period) {
            log_info ("socket %s of user %s did not answer a ping in %lld s; closing it",
                      conn_id (conn), conn_user_id (conn), (long long) gateway_config.ws_ping_s);
            s_close (conn, WSFRAME_GOING_AWAY, "no answer to ping");
        }
        else
        if (!conn->pinged_ms && now - conn->heard_ms >= period) {
            if (!ping)
                ping = frame_new_control (WSFRAME_PING, "", 0);
            sockets_queue (conn, ping);
            conn->pinged_ms = now;
        }
    }
    frame_unref (ping);
}

//  ---------------------------------------------------------------------------
//  The turn

//  Wait at most timeout_ms for a client socket, mail or a ZeroMQ socket
//  (at once when one has a message already), and handle the client
//  sockets' input. Returns how many client sockets had some.
static int
s_wait (int timeout_ms)
{
    //  ZeroMQ's descriptors are edge-like: a message may wait although
    //  the descriptor is quiet, so ask each socket before sleeping.
    for (int i = 0; i < s_loop.zmq_count && timeout_ms > 0; i++) {
        int events = 0;
        size_t size = sizeof events;
        if (s_loop.hurry || s_loop.resume_count
        || (zmq_getsockopt (s_loop.zmq [i], ZMQ_EVENTS, &events, &size) == 0
            && (events & ZMQ_POLLIN)))
            timeout_ms = 0;
    }
    struct epoll_event events [EVENTS_MAX];
    int count = epoll_wait (s_loop.epoll, events, EVENTS_MAX, timeout_ms);
    if (count < 0 && errno != EINTR)
        log_error ("epoll_wait: %s", strerror (errno));
    for (int i = 0; i < count; i++) {
        void *ptr = events [i].data.ptr;
        if (ptr == &s_zmq_marker)
            count--;                    //  not work in itself: the drain counts it
        if (ptr == &s_mail_marker)
            s_take_mail ();
        else
        if (ptr != &s_zmq_marker) {
            conn_t *conn = ptr;
            if (conn->ended)
                continue;
            if (events [i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                output_unpark (conn);
            if (events [i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                s_read (conn, events [i].events & (EPOLLERR | EPOLLHUP));
            else
                s_interest (conn);
        }
    }
    return count > 0? count: 0;
}

//  Conns whose action ended go on with the frames that waited, or close.
static void
s_resume (void)
{
    for (size_t i = 0; i < s_loop.resume_count; i++) {
        conn_t *conn = s_loop.resume [i];
        conn->resuming = false;
        if (conn->ended) {
            if (!conn->busy && conn->fd >= 0)
                s_finish (conn);
        }
        else
        if (!conn->busy) {
            s_handle (conn, 0);         //  what wslay holds; the socket when epoll says
            if (!conn->ended)
                s_interest (conn);
        }
        conn_unref (conn);              //  the resume list's (the loop keeps its own)
    }
    s_loop.resume_count = 0;
}

static bool
s_unwritten (void)
{
    return output_waiting () || s_loop.dead_count;
}

//  Write what was queued.
static void
s_flush (void)
{
    //  A conn with more queued than one write takes is put back on the
    //  list by output_serve: it is served next turn, after the others.
    conn_t *conn = output_ready ();
    while (conn) {
        conn_t *next = conn->ready_next;
        if (output_serve (conn))
            s_park (conn);
        conn_unref (conn);              //  the list's reference
        conn = next;
    }
    for (size_t i = 0; i < s_loop.dead_count; i++)
        conn_unref (s_loop.dead [i]);   //  the loop's reference
    s_loop.dead_count = 0;
}

//  The gateway is stopping: every socket gets a close frame. A conn whose
//  action waits is ended now and finished when its answer fails (the
//  stop fails everything in flight); it leaves the list.
static void
s_close_all (void)
{
    s_take_mail ();
    while (s_loop.conns) {
        conn_t *conn = s_loop.conns;
        s_close (conn, WSFRAME_GOING_AWAY, "the gateway is stopping");
        s_unlink (conn);
    }
}

//  The loop: one turn reads what came (client sockets, mail, the ZeroMQ
//  sockets), lets the sockets whose actions ended go on, writes what was
//  queued, and looks at the timers.
static void *
s_run (void *arg)
{
    (void) arg;
    s_on_thread = true;
    int64_t next_beat = 0, flushed_us = 0;
    while (!atomic_load (&s_loop.stopping)) {
        int64_t now = clock_mono_ms ();
        if (now >= next_beat) {
            links_beat ();
            next_beat = now + GATEWAY_BEAT_MS;
        }
        if (s_loop.lingering_count)
            s_linger ();
        if (now >= s_loop.next_ping_ms)
            s_ping ();
        int64_t wait = WAKE_MS;
        int64_t until = pending_wait_ms ();
        if (until >= 0 && until < wait)
            wait = until;
        //  Client frames are read and their actions begun in here. With
        //  frames to write it only looks, so they wait for no sleep.
        int work = s_wait (s_unwritten ()? 0: (int) wait);
        //  Peers first: their replies and events finish work already begun.
        int i, drained = 0;
        proto_msg_t *event;
        for (i = 0; i < DRAIN_MAX && links_from_peer (&event); i++)
            if (event) {
                sockets_deliver (event);
                proto_msg_destroy (&event);
            }
        drained += i;
        for (i = 0; i < DRAIN_MAX && links_from_stored (); i++)
            ;
        drained += i;
        links_watch ();
        if (links_run_lost ()) {
            size_t closed = sockets_close_all (WSFRAME_RESTART, RUN_GONE_REASON);
            log_warn ("%zu sockets closed (1012) for their clients to join again", closed);
        }
        s_resume ();
        //  Write what the sockets were queued once no more work is
        //  waiting, or at least every FLUSH_EVERY_US while it keeps coming:
        //  under load a write then carries many frames (a send on loopback
        //  costs as much as the receiver's whole TCP path, ./nearchat bench
        //  load fanout, perf), at a millisecond's latency at most.
        int64_t now_us = clock_mono_ns () / 1000;
        if (s_unwritten () && (work + drained == 0 || now_us - flushed_us >= FLUSH_EVERY_US)) {
            s_flush ();
            flushed_us = now_us;
        }
        s_loop.hurry = drained >= DRAIN_MAX;
        sockets_recoveries_resume ();
        pending_expire ();
        shards_check ();
        if (shards_take_audit ())
            sockets_audit ();
    }
    //  Sockets are closed as civetweb closes its own: each one's leave
    //  and conn-del are posted, and go out with the calls' last.
    s_close_all ();
    pending_fail_all ("the gateway is stopping");
    s_resume ();                        //  the closes that waited for their actions
    s_flush ();
    return NULL;
}

bool
loop_on_thread (void)
{
    return s_on_thread;
}

int
loop_start (void)
{
    s_loop.epoll = epoll_create1 (EPOLL_CLOEXEC);
    s_loop.mail = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_loop.epoll < 0 || s_loop.mail < 0) {
        log_error ("cannot make the event loop: %s", strerror (errno));
        return -1;
    }
    struct epoll_event event = { .events = EPOLLIN, .data.ptr = &s_mail_marker };
    if (epoll_ctl (s_loop.epoll, EPOLL_CTL_ADD, s_loop.mail, &event))
        return -1;
    void *handles [ZMQ_SOCKETS_MAX];
    int count = links_handles (handles, ZMQ_SOCKETS_MAX);
    for (int i = 0; i < count; i++) {
        //  ZeroMQ's descriptor only says "look": ZMQ_EVENTS tells.
        int fd;
        size_t size = sizeof fd;
        if (zmq_getsockopt (handles [i], ZMQ_FD, &fd, &size))
            return -1;
        event.data.ptr = &s_zmq_marker;
        if (epoll_ctl (s_loop.epoll, EPOLL_CTL_ADD, fd, &event))
            return -1;
        s_loop.zmq [s_loop.zmq_count++] = handles [i];
    }
    shards_reset ();
    atomic_store (&s_loop.stopping, false);
    if (pthread_create (&s_loop.thread, NULL, s_run, NULL)) {
        log_error ("cannot start the event loop's thread");
        return -1;
    }
    s_loop.started = true;
    return 0;
}

void
loop_stop (void)
{
    atomic_store (&s_loop.stopping, true);
    if (s_loop.started) {
        pthread_join (s_loop.thread, NULL);
        s_loop.started = false;
    }
    for (size_t i = 0; i < s_loop.lingering_count; i++) {
        s_loop.lingering [i]->lingering = false;
        conn_unref (s_loop.lingering [i]);
    }
    free (s_loop.lingering);
    s_loop.lingering = NULL;
    s_loop.lingering_count = s_loop.lingering_max = 0;
    free (s_loop.resume);
    free (s_loop.dead);
    s_loop.resume = s_loop.dead = NULL;
    s_loop.resume_max = s_loop.dead_max = 0;
    if (s_loop.epoll >= 0)
        close (s_loop.epoll);
    if (s_loop.mail >= 0)
        close (s_loop.mail);
    s_loop.epoll = s_loop.mail = -1;
    s_loop.zmq_count = 0;
}
