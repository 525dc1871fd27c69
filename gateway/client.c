/*  =========================================================================
    client.c - a WebSocket's life on the event loop: adopted, read, handled
    one action at a time, pinged, closed and drained

    civetweb 1.15 holds each WebSocket on a worker thread of its own, from
    its handshake to its close, and has no event-driven WebSocket API. A
    thread a socket is what made the gateway slow and large. So once
    civetweb has answered a WebSocket's upgrade, the socket is taken over
    (fds_take, upgrade.c) and served here, on the loop's thread, which
    owns the ZeroMQ sockets too: a client frame is read, parsed (wslay's
    frame API, through wsin.c, whose recv callback is this file's
    non-blocking read: s_recv), handled (ws.c) and sent to its shard on one
    thread; an event from a shard is queued to its room's sockets and
    written at the end of the same turn, many frames to a write (output.c).

    How a socket is taken over from civetweb: its descriptor is found
    (fds_find), duplicated for us, and civetweb's number is pointed at one
    end of a socket pair whose other end is closed. civetweb's read loop
    then sees the end of a stream at once, runs the close handler (which
    hands the conn to the loop: client_adopt), and closes its number; the
    TCP socket lives on under ours. A client may send frames with its
    upgrade request, in one packet, before it read the answer: civetweb has
    read those with the request, so its read loop hands them to the data
    handler before it sees the end; they are framed again in front of the
    socket's bytes (client_preface), and the conn is adopted only once
    civetweb's read has ended, so no byte is lost or reordered.

    A socket's actions are done in the order sent. While one waits for
    its reply (busy), the later frames wait in the input buffer, and the
    socket is not read (out of epoll's read set) until it ends, so that one
    socket cannot pile up work or memory. send-messages are the exception
    (ws_alone): up to SENDS_MAX of a socket's go to the shard one after
    the other without waiting for their answers, which come back in the
    order sent; an action of another kind that follows them is parsed and
    waits (deferred) until they are all answered. A socket whose peer went
    while an action of its waited is closed when the last one ends.

    Bounds (DESIGN.md's limits): a message is at most PAYLOAD_MAX (64 KiB,
    fragments reassembled; a longer one is refused by its header, close
    1009). A socket holds at most wslay's context (4 KiB read ahead) and
    one message being reassembled; both are freed once the socket holds
    nothing (wsin_idle), and the heap is trimmed after large ones went
    (glibc keeps freed memory otherwise: 857 MB stayed after 990 sockets
    that held 1 MiB frames had closed). A socket is read for at most
    READ_MAX a turn. Every WS_PING_S a silent socket is pinged; one that
    stays silent as long again is closed 1001 "no answer to ping".

    Invariants:
      - only the loop's thread touches these conns and lists; civetweb's
        threads reach it by client_adopt (the loop's mail);
      - the loop holds a reference on each of its conns from adoption to
        the end of the turn in which it was closed (client_bury), so an
        event already returned by epoll never meets a freed conn.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"
#include "wsin.h"

#define READ_MAX        (64 * 1024)     //  read from one socket at a time
#define PAYLOAD_MAX     (64 * 1024)     //  a longer message closes the socket (1009)
#define DRAIN_MS        2000            //  a closed socket's input is dropped so long (s_close)
#define TRIM_AFTER      (1024 * 1024)   //  input bytes freed before the heap is trimmed
#define SENDS_MAX       16              //  a socket's send-messages in flight at once

static struct {
    conn_t *conns;                      //  the loop's, by loop_next/loop_prev
    conn_t **resume;                    //  whose action ended
    size_t resume_count, resume_max;
    conn_t **dead;                      //  closed this turn
    size_t dead_count, dead_max;
    conn_t **lingering;                 //  close frames waiting for their socket to drain
    size_t lingering_count, lingering_max;
    int64_t next_ping_ms;               //  monotonic: when s_ping looks again
    size_t freed;                       //  input buffer bytes freed since the last trim
} s_self;

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
client_preface (conn_t *conn, int bits, const char *data, size_t size)
{
    wsin_preface (&conn->in, bits, data, size);
}

static void s_adopted (loop_mail_t *mail);

void
client_adopt (conn_t *conn)
{
    atomic_fetch_add (&conn->refs, 1);          //  the loop's
    conn->adoption.run = s_adopted;
    loop_mail (&conn->adoption);
}

//  An action of the socket's waits for its answer: the conn stays.
static bool
s_held (const conn_t *conn)
{
    return conn->busy || conn->sends || conn->deferred;
}

//  The socket's next frame cannot be handled before an answer comes.
static bool
s_blocked (const conn_t *conn)
{
    return conn->busy || conn->deferred || conn->sends >= SENDS_MAX;
}

static void
s_interest (conn_t *conn)
{
    //  Input is read unless the socket's next frame must wait for an
    //  answer (s_blocked); output is waited for while the socket is full
    //  (parked).
    uint32_t events = (s_blocked (conn)? 0: EPOLLIN) | (conn->parked? EPOLLOUT: 0);
    if (events != conn->interest) {
        if (loop_watch (EPOLL_CTL_MOD, conn->fd, events, conn))
            log_error ("epoll_ctl: %s", strerror (errno));
        conn->interest = events;
    }
}

//  A conn handed over by civetweb's close handler: the loop's from now on.
static void
s_adopted (loop_mail_t *mail)
{
    conn_t *conn = (conn_t *) ((char *) mail - offsetof (conn_t, adoption));
    sockets_add (conn);
    conn->loop_prev = NULL;
    conn->loop_next = s_self.conns;
    if (s_self.conns)
        s_self.conns->loop_prev = conn;
    s_self.conns = conn;
    conn->interest = EPOLLIN;
    conn->heard_ms = clock_mono_ms ();
    wsin_init (&conn->in, s_recv, conn);
    ws_opened (conn);
    if (loop_watch (EPOLL_CTL_ADD, conn->fd, EPOLLIN, conn)) {
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
    if (!conn->loop_prev && s_self.conns != conn)
        return;                         //  not on the list
    if (conn->loop_prev)
        conn->loop_prev->loop_next = conn->loop_next;
    else
        s_self.conns = conn->loop_next;
    if (conn->loop_next)
        conn->loop_next->loop_prev = conn->loop_prev;
    conn->loop_prev = conn->loop_next = NULL;
}

static void
s_finish (conn_t *conn)
{
    assert (conn->ended && !s_held (conn) && conn->fd >= 0);
    ws_closed (conn);                   //  out of the table: no more writes
    close (conn->fd);
    conn->fd = -1;
    s_unlink (conn);
    s_push (&s_self.dead, &s_self.dead_count, &s_self.dead_max, conn);
}

//  The peer is gone, or broke the protocol: no more reading or writing.
static void
s_end (conn_t *conn)
{
    if (conn->ended)
        return;
    conn->ended = true;
    if (conn->interest)
        loop_watch (EPOLL_CTL_DEL, conn->fd, 0, NULL);
    conn->interest = 0;
    s_self.freed += wsin_footprint (&conn->in);
    wsin_free (&conn->in);
    output_unpark (conn);
    if (conn->deferred) {               //  never run: nobody is left to answer
        ws_drop (conn->deferred);
        conn->deferred = NULL;
    }
    if (!s_held (conn))
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
    if (!sent || s_held (conn)) {
        s_end (conn);
        return;
    }
    shutdown (conn->fd, SHUT_WR);
    conn->state = CONN_CLOSING;         //  nothing more is queued for it
    conn->draining = true;
    conn->close_deadline_ms = clock_mono_ms () + DRAIN_MS;
    s_self.freed += wsin_footprint (&conn->in);
    wsin_free (&conn->in);
    if (!conn->lingering) {             //  s_linger ends it at the deadline
        conn->lingering = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_self.lingering, &s_self.lingering_count, &s_self.lingering_max, conn);
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
        if (conn->deferred) {
            if (conn->sends)
                break;                  //  until the sends before it are answered
            action_t *action = conn->deferred;
            conn->deferred = NULL;
            conn->busy = true;
            ws_run (action);
            continue;
        }
        if (conn->sends >= SENDS_MAX)
            break;
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
            action_t *action = ws_parse (conn, msg.opcode, true, (const char *) msg.data, msg.size);
            if (!action)
                continue;               //  refused, and answered
            //  A change of the shard set may move the room, and a send
            //  that went to the old shard is re-sent to the new one (421)
            //  behind those that went there directly: after one, a send
            //  waits too.
            if (conn->sends && (ws_alone (action) || conn->sends_generation != shards_generation ())) {
                conn->deferred = action;
                break;
            }
            conn->busy = true;          //  client_done clears it, maybe before ws_run returns
            ws_run (action);
        }
    }
    conn->processing = false;
    conn->budget = 0;
    if (conn->draining && conn->hung_up)
        s_end (conn);                   //  its end came with our close: nothing to drain
    if (conn->ended || conn->draining)
        return;
    if (conn->hung_up && !s_blocked (conn))
        s_end (conn);                   //  every whole message before the end was handled
    else
        s_self.freed += wsin_idle (&conn->in);  //  an idle socket keeps no buffer
}

//  The socket is readable (or hung up): read at most READ_MAX of it.
static void
s_read (conn_t *conn, bool hung_up)
{
    //  A blocked conn is not read (out of the read set): it is looked at
    //  only when epoll says its peer hung up.
    if (s_blocked (conn)) {
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
//  For ws.c and the loop

static void
s_resume_later (conn_t *conn)
{
    if (!conn->processing && !conn->resuming) {
        conn->resuming = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_self.resume, &s_self.resume_count, &s_self.resume_max, conn);
    }
}

void
client_done (conn_t *conn)
{
    conn->busy = false;
    s_resume_later (conn);
}

void
client_send_begun (conn_t *conn)
{
    if (conn->sends++ == 0)
        conn->sends_generation = shards_generation ();
    conn->busy = false;                 //  (it is in s_handle: the next frame is read there)
}

void
client_send_done (conn_t *conn)
{
    assert (conn->sends > 0);
    conn->sends--;
    //  Only a socket that this answer unblocks needs a turn.
    if (conn->ended || conn->deferred || conn->sends == SENDS_MAX - 1)
        s_resume_later (conn);
}

void
client_park (conn_t *conn)
{
    if (!conn->ended)
        s_interest (conn);
    //  A close frame waits for the socket at most so long (output.c):
    //  the loop looks at it again then, writable or not.
    if (conn->close_staged && !conn->lingering) {
        conn->lingering = true;
        atomic_fetch_add (&conn->refs, 1);
        s_push (&s_self.lingering, &s_self.lingering_count, &s_self.lingering_max, conn);
    }
}

//  The closes whose wait is over go on (and are shut); the rest wait on.
static void
s_linger (int64_t now)
{
    for (size_t i = s_self.lingering_count; i-- > 0; ) {
        conn_t *conn = s_self.lingering [i];
        if (conn->draining && !conn->ended && now < conn->close_deadline_ms)
            continue;
        if (conn->draining) {
            s_self.lingering [i] = s_self.lingering [--s_self.lingering_count];
            conn->lingering = false;
            s_end (conn);               //  no end of the stream came in time
            conn_unref (conn);
            continue;
        }
        bool waits = conn->parked && conn->state == CONN_CLOSING && !conn->ended;
        if (waits && now < conn->close_deadline_ms)
            continue;
        s_self.lingering [i] = s_self.lingering [--s_self.lingering_count];
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
s_ping (int64_t now)
{
    int64_t period = gateway_config.ws_ping_s * 1000;
    s_self.next_ping_ms = now + (period / 4 < 1000? period / 4: 1000);
    if (s_self.freed >= TRIM_AFTER) {
        malloc_trim (0);
        s_self.freed = 0;
    }
    frame_t *ping = NULL;
    conn_t *next = NULL;
    for (conn_t *conn = s_self.conns; conn; conn = next) {
        next = conn->loop_next;
        if (conn->ended || conn->state != CONN_OPEN)
            continue;                   //  a close under way has its own deadline
        if (s_blocked (conn)) {
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
//  For the loop's turn

//  Conns whose action ended go on with the frames that waited, or close.
void
client_resume (void)
{
    for (size_t i = 0; i < s_self.resume_count; i++) {
        conn_t *conn = s_self.resume [i];
        conn->resuming = false;
        if (conn->ended) {
            if (!s_held (conn) && conn->fd >= 0)
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
    s_self.resume_count = 0;
}

//  The gateway is stopping: every socket gets a close frame. A conn whose
//  action waits is ended now and finished when its answer fails (the
//  stop fails everything in flight); it leaves the list.
void
client_close_all (void)
{
    while (s_self.conns) {
        conn_t *conn = s_self.conns;
        s_close (conn, WSFRAME_GOING_AWAY, "the gateway is stopping");
        s_unlink (conn);
    }
}

void
client_event (conn_t *conn, uint32_t events)
{
    if (conn->ended)
        return;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        output_unpark (conn);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        s_read (conn, events & (EPOLLERR | EPOLLHUP));
    else
        s_interest (conn);
}

bool
client_resuming (void)
{
    return s_self.resume_count > 0;
}

void
client_timers (int64_t now)
{
    if (s_self.lingering_count)
        s_linger (now);
    if (now >= s_self.next_ping_ms)
        s_ping (now);
}

bool
client_dead (void)
{
    return s_self.dead_count > 0;
}

void
client_bury (void)
{
    for (size_t i = 0; i < s_self.dead_count; i++)
        conn_unref (s_self.dead [i]);   //  the loop's reference
    s_self.dead_count = 0;
}

void
client_stop (void)
{
    for (size_t i = 0; i < s_self.lingering_count; i++) {
        s_self.lingering [i]->lingering = false;
        conn_unref (s_self.lingering [i]);
    }
    free (s_self.lingering);
    s_self.lingering = NULL;
    s_self.lingering_count = s_self.lingering_max = 0;
    free (s_self.resume);
    free (s_self.dead);
    s_self.resume = s_self.dead = NULL;
    s_self.resume_max = s_self.dead_max = 0;
}
