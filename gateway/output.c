/*  =========================================================================
    output.c - how the event loop writes its sockets' queues

    Every WebSocket is the event loop's (loop.c), so every write is made
    on the loop's thread, at the end of a turn (loop.c, s_flush): output_serve
    frames everything queued for one conn as WebSocket frames (wslay's
    frame API, its send callback appending to the buffer) into one
    buffer and writes it with one send, so small frames coalesce into few
    syscalls and packets, which is where fan-out speed lives. The loop's
    conns are framed in one staging buffer and keep only what a full socket
    did not take: an idle socket holds no output buffer.

    A write never waits for a socket: the socket is non-blocking, and what
    does not fit stays in the conn's out buffer while the conn is parked:
    the loop waits for the socket to drain (EPOLLOUT) and hands it back
    (output_unpark). Meanwhile new frames wait in the conn's queue, whose
    bound (sockets.c) makes a reader that never drains a slow reader.

    A conn is closed by us (a slow reader: 1008; the gateway's run was
    declared dead: 1012) with a close frame and then shutdown(2), which
    ends the event loop's read of that socket. The close frame goes after
    whatever is half sent, so the client reads every byte already on its
    way and then the status: a slow reader's socket is full by definition,
    so the frame waits, parked like any other write, for the socket to
    drain, at most OUTPUT_CLOSE_DRAIN_MS; a reader that reads nothing in
    all that time gets the end of the stream alone.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

#define COALESCE_MAX        (64 * 1024)     //  bytes of small frames gathered for one send
#define FRAMES_MAX          256             //  frames taken from a queue at once

typedef enum { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_FAILED } flush_t;

static outbuf_t s_staging;                  //  the frames of the conn being served

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

//  wslay_frame_send writes a frame through its send callback, header and
//  payload: here, into the buffer being staged, so that frames are still
//  gathered into one write. The context is the loop thread's; the
//  callback takes everything, so a frame is always whole when it returns.
static wslay_frame_context_ptr s_wslay;
static outbuf_t *s_staging_into;

static ssize_t
s_wslay_send (const uint8_t *data, size_t len, int flags, void *user)
{
    (void) flags;
    (void) user;
    s_out_add (s_staging_into, data, len);
    return (ssize_t) len;
}

static ssize_t
s_wslay_recv (uint8_t *buf, size_t len, int flags, void *user)
{
    (void) buf; (void) len; (void) flags; (void) user;
    return -1;                              //  output only
}

static int
s_wslay_genmask (uint8_t *buf, size_t len, void *user)
{
    (void) buf; (void) len; (void) user;
    return -1;                              //  a server masks nothing
}

void
output_stage (outbuf_t *out, const void *payload, size_t size, int opcode)
{
    if (!s_wslay) {
        struct wslay_frame_callbacks callbacks = { s_wslay_send, s_wslay_recv, s_wslay_genmask };
        int rc = wslay_frame_context_init (&s_wslay, &callbacks, NULL);
        assert (rc == 0);
    }
    s_staging_into = out;
    struct wslay_frame_iocb iocb = {
        .fin = 1, .opcode = (uint8_t) opcode, .mask = 0,
        .payload_length = size, .data = payload, .data_length = size };
    ssize_t sent = wslay_frame_send (s_wslay, &iocb);
    assert (sent == (ssize_t) size);
    (void) sent;
    s_staging_into = NULL;
}

//  ---------------------------------------------------------------------------
//  The transport: the only code that writes frames to a socket

//  Write what is in out (conn's, or the staging buffer) to conn's socket.
static flush_t
s_flush (conn_t *conn, outbuf_t *out)
{
    flush_t result = FLUSH_DONE;
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
    if (out->sent == out->size)
        out->size = out->sent = 0;
    return result;
}

//  Write conn's close frame (conn_begin_close), after what is half sent.
//  The caller shuts the socket once it is all out, or the wait is over.
static flush_t
s_close_frame (conn_t *conn, int status, const char *reason)
{
    if (!conn->close_staged) {
        char payload [2 + 123];
        size_t length = strlen (reason) > 123? 123: strlen (reason);
        payload [0] = (char) (status >> 8);
        payload [1] = (char) (status & 0xff);
        memcpy (payload + 2, reason, length);
        //  What is in out is the rest of whole frames: the close follows them.
        output_stage (&conn->out, payload, 2 + length, WSFRAME_CLOSE);
        conn->close_staged = true;
        conn->close_deadline_ms = clock_mono_ms () + OUTPUT_CLOSE_DRAIN_MS;
    }
    return s_flush (conn, &conn->out);
}

//  ---------------------------------------------------------------------------
//  The loop's flush list and its parked conns

//  The conns to write, in the order woken (by ready_next).
static conn_t *s_ready_head, *s_ready_tail;

void
output_wake (conn_t *conn)
{
    if (conn->ready || (conn->parked && !conn->close_pending))
        return;
    conn->ready = true;
    atomic_fetch_add (&conn->refs, 1);      //  the flush list's
    conn->ready_next = NULL;
    //  A close is due at once: it is not held back to gather frames.
    conn->ready_ns = conn->close_pending? 0: clock_mono_ns ();
    if (s_ready_tail)
        s_ready_tail->ready_next = conn;
    else
        s_ready_head = conn;
    s_ready_tail = conn;
}

conn_t *
output_ready (int64_t due_ns)
{
    conn_t *head = s_ready_head, *last = NULL, *conn = head;
    while (conn && conn->ready_ns <= due_ns) {
        last = conn;
        conn = conn->ready_next;
    }
    if (!last)
        return NULL;
    s_ready_head = conn;
    if (!conn)
        s_ready_tail = NULL;
    last->ready_next = NULL;
    return head;
}

int64_t
output_first_ns (void)
{
    return s_ready_head? s_ready_head->ready_ns: -1;
}

bool
output_waiting (void)
{
    return s_ready_head != NULL;
}

//  Wait for conn's socket to drain: output_serve says so to the loop,
//  which watches the socket for room (and a close that waits, for its
//  deadline). Parked before its close was staged, it is said again: a
//  close now waits.
static void
s_park (conn_t *conn, bool *park)
{
    *park = true;
    if (conn->parked)
        return;
    conn->parked = true;
    atomic_fetch_add (&conn->refs, 1);      //  the parked state's
}

void
output_unpark (conn_t *conn)
{
    if (!conn->parked)
        return;
    conn->parked = false;
    if (conn->state == CONN_OPEN || conn->close_pending)
        output_wake (conn);
    conn_unref (conn);                      //  the parked state's reference
}

//  ---------------------------------------------------------------------------
//  A conn's turn

bool
output_serve (conn_t *conn)
{
    frame_t *frames [FRAMES_MAX];
    size_t count = 0, bytes = 0;
    bool park = false;
    conn->ready = false;
    if (conn->state == CONN_CLOSED)
        return false;
    bool closing = conn->close_pending;
    conn->close_pending = false;
    //  A parked conn still has bytes out: those go first, alone.
    while (!closing && conn->out.size == 0 && conn->queue_count && count < FRAMES_MAX
       &&  bytes < COALESCE_MAX) {
        frames [count] = conn->queue [conn->queue_head];
        bytes += frames [count++]->size;
        conn->queue_head = (conn->queue_head + 1) % conn->queue_size;
        conn->queue_count--;
    }
    if (!closing && count == 0 && conn->out.size == 0)
        return false;

    flush_t result = FLUSH_DONE;
    if (closing)
        result = s_close_frame (conn, conn->close_status, conn->close_reason);
    else {
        outbuf_t *out = conn->out.size == 0? &s_staging: &conn->out;
        int64_t made_ns [FRAMES_MAX];
        for (size_t i = 0; i < count; i++) {
            output_stage (out, frames [i]->data, frames [i]->size, frames [i]->opcode);
            made_ns [i] = frames [i]->made_ns;
            frame_unref (frames [i]);
        }
        result = s_flush (conn, out);
        if (out == &s_staging && out->sent < out->size) {
            s_out_add (&conn->out, out->data + out->sent, out->size - out->sent);
            out->size = out->sent = 0;
        }
        if (conn->out.size == 0 && conn->out.max) {
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

    if (result == FLUSH_FAILED) {
        //  The peer is gone: stop, and make sure the loop notices.
        log_debug ("socket %s: a write failed (%s); closing it", conn->id, strerror (errno));
        conn->state = CONN_CLOSING;
        conn->close_pending = false;
        conn_queue_drop (conn);
        conn->out.size = conn->out.sent = 0;
        shutdown (conn->fd, SHUT_RDWR);
    }
    if (closing && conn->state == CONN_CLOSING) {
        if (result == FLUSH_BLOCKED && clock_mono_ms () < conn->close_deadline_ms) {
            conn->close_pending = true;         //  the rest when the socket drains
            s_park (conn, &park);
        }
        else {
            //  All out (or given up): the end of the stream follows it,
            //  and the loop closes the socket as for any close.
            if (result != FLUSH_FAILED)
                shutdown (conn->fd, SHUT_RDWR);
            conn->out.size = conn->out.sent = 0;
        }
    }
    else
    if (closing)
        conn->out.size = conn->out.sent = 0;
    if (result == FLUSH_BLOCKED && conn->state == CONN_OPEN)
        s_park (conn, &park);
    else
    if ((conn->state == CONN_OPEN && conn->queue_count) || conn->close_pending)
        output_wake (conn);
    return park;
}

void
output_destroy (void)
{
    free (s_staging.data);
    memset (&s_staging, 0, sizeof s_staging);
    if (s_wslay)
        wslay_frame_context_free (s_wslay);
    s_wslay = NULL;
}
