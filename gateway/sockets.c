/*  =========================================================================
    sockets.c - the gateway's WebSockets: each one's conn, the table of
    them, and the frames queued to each

    Every open WebSocket is a conn_t (conn.h), made on a civetweb thread
    when its handshake is answered (conn_new) and in the table by id from
    its adoption by the loop (sockets_add) to its close (sockets_close). A
    frame's text is refcounted (frame_t) and shared by every queue it is
    on; output.c takes it from there.

    A conn whose queue reaches SOCKET_QUEUE_MAX is a slow reader: its queue
    is dropped, nothing more is queued for it, and it is closed
    (output.c). Queueing never blocks, so a slow reader never makes the
    fan-out or anybody else wait, and memory per socket is bounded by
    SOCKET_QUEUE_MAX frames (shared with the other sockets of the room).

    The table, like every conn once adopted, is the loop's thread's alone;
    MAX_CONNECTIONS is counted in an atomic (sockets_admit), because
    handshakes on several civetweb threads take places at once.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

//  Sockets open and handshakes admitted but not yet open: MAX_CONNECTIONS
//  bounds this, so that handshakes on several civetweb threads at once
//  cannot all pass a check of the sockets open so far.
static atomic_llong s_admitted;
static zhashx_t *s_conns;                   //  conn id -> conn_t

//  ---------------------------------------------------------------------------
//  Frames and conns

void
conn_unref (conn_t *conn)
{
    if (atomic_fetch_sub (&conn->refs, 1) == 1) {
        assert (conn->state == CONN_CLOSED);
        conn_queue_drop (conn);
        free (conn->queue);
        free (conn->out.data);
        free (conn);
    }
}

void
conn_queue_drop (conn_t *conn)
{
    while (conn->queue_count) {
        frame_unref (conn->queue [conn->queue_head]);
        conn->queue_head = (conn->queue_head + 1) % conn->queue_size;
        conn->queue_count--;
    }
}

void
conn_begin_close (conn_t *conn, int status, const char *reason)
{
    if (conn->state != CONN_OPEN)
        return;
    conn_queue_drop (conn);
    conn->state = CONN_CLOSING;
    conn->close_pending = true;
    conn->close_status = status;
    conn->close_reason = reason;
    output_wake (conn);
}

size_t
sockets_close_all (int status, const char *reason)
{
    size_t count = 0;
    for (conn_t *conn = zhashx_first (s_conns); conn; conn = zhashx_next (s_conns)) {
        count += conn->state == CONN_OPEN;
        conn_begin_close (conn, status, reason);
    }
    return count;
}

//  Queue frame for conn, or find conn a slow reader. Never blocks on I/O.
void
sockets_queue (conn_t *conn, frame_t *frame)
{
    if (conn->state != CONN_OPEN)
        return;
    if (conn->queue_count >= (size_t) gateway_config.socket_queue_max) {
        atomic_fetch_add (&gateway_metrics.frames_dropped, conn->queue_count + 1);
        conn_begin_close (conn, WSFRAME_POLICY, "too slow, messages were dropped");
        atomic_fetch_add (&gateway_metrics.slow_reader_drops, 1);
        log_warn ("socket %s of user %s is a slow reader: %lld frames waited; closing it",
                  conn->id, conn->user_id, (long long) gateway_config.socket_queue_max);
        return;
    }
    if (conn->queue_count == conn->queue_size) {
        //  Grow the ring (and unwrap it) up to the bound.
        size_t size = conn->queue_size? conn->queue_size * 2: 16;
        if (size > (size_t) gateway_config.socket_queue_max)
            size = (size_t) gateway_config.socket_queue_max;
        frame_t **queue = malloc (size * sizeof *queue);
        assert (queue);
        for (size_t i = 0; i < conn->queue_count; i++)
            queue [i] = conn->queue [(conn->queue_head + i) % conn->queue_size];
        free (conn->queue);
        conn->queue = queue;
        conn->queue_head = 0;
        conn->queue_size = size;
    }
    atomic_fetch_add (&frame->refs, 1);
    conn->queue [(conn->queue_head + conn->queue_count) % conn->queue_size] = frame;
    conn->queue_count++;
    output_wake (conn);
}

void
sockets_send (conn_t *conn, json_t *frame)
{
    assert (conn && frame);
    char *text = render_text (frame);
    json_decref (frame);
    if (!text) {
        log_error ("a frame for socket %s could not be written as JSON", conn->id);
        return;
    }
    frame_t *queued = frame_new (text);
    free (text);
    sockets_queue (conn, queued);
    frame_unref (queued);
}

void
sockets_send_ack (conn_t *conn, const char *id, const char *room_id, uint64_t seq,
                  const json_t *request_id)
{
    frame_t *ack = render_ack_frame (id, room_id, seq, request_id);
    if (!ack) {
        log_error ("the ack for socket %s could not be written as JSON", conn->id);
        return;
    }
    sockets_queue (conn, ack);
    frame_unref (ack);
}

//  ---------------------------------------------------------------------------
//  The table

int
sockets_start (void)
{
    s_conns = zhashx_new ();
    assert (s_conns);
    return 0;
}

void
sockets_stop (void)
{
    output_destroy ();
    //  The event loop has closed every socket (client_close_all): the table
    //  is empty unless a close never finished, and then its conns stay.
    if (s_conns && zhashx_size (s_conns))
        log_warn ("%zu sockets were still open at the end", zhashx_size (s_conns));
    zhashx_destroy (&s_conns);
}

bool
sockets_admit (void)
{
    long long admitted = atomic_load (&s_admitted);
    while (admitted < gateway_config.max_connections)
        if (atomic_compare_exchange_weak (&s_admitted, &admitted, admitted + 1))
            return true;
    return false;
}

void
sockets_unadmit (void)
{
    atomic_fetch_sub (&s_admitted, 1);
}

size_t
sockets_open (void)
{
    long long open = atomic_load (&gateway_metrics.connections_open);
    return open > 0? (size_t) open: 0;
}

conn_t *
conn_new (int fd, const char *user_id, const profile_t *profile, const char *address)
{
    assert (fd >= 0 && user_id && profile && address);
    conn_t *conn = calloc (1, sizeof *conn);
    assert (conn);
    ids_uuid (conn->id);
    snprintf (conn->user_id, sizeof conn->user_id, "%s", user_id);
    conn->profile = *profile;
    snprintf (conn->address, sizeof conn->address, "%s", address);
    conn->fd = fd;
    log_debug ("socket %s of user %s is descriptor %d", conn->id, user_id, conn->fd);
    atomic_init (&conn->refs, 1);
    conn->state = CONN_OPEN;
    atomic_fetch_add (&gateway_metrics.connections_open, 1);
    atomic_fetch_add (&gateway_metrics.connects, 1);
    return conn;
}

void
sockets_add (conn_t *conn)
{
    zhashx_insert (s_conns, conn->id, conn);
}

conn_t *
sockets_find (const char *conn_id)
{
    return zhashx_lookup (s_conns, conn_id);
}

void
sockets_close (conn_t **conn_p)
{
    assert (conn_p && *conn_p);
    conn_t *conn = *conn_p;
    assert (!conn->room_id [0]);        //  out of its room first (rooms_leave)
    zhashx_delete (s_conns, conn->id);

    conn->state = CONN_CLOSED;
    conn->close_pending = false;
    conn_queue_drop (conn);
    //  From here on nothing writes to conn->fd (conn.h); the loop closes
    //  it after this, so its number is free to find.
    fds_forget (conn->fd);
    atomic_fetch_sub (&gateway_metrics.connections_open, 1);
    sockets_unadmit ();
    atomic_fetch_add (&gateway_metrics.disconnects, 1);
    conn_unref (conn);
    *conn_p = NULL;
}

const char *
conn_id (const conn_t *conn)
{
    return conn->id;
}

const char *
conn_user_id (const conn_t *conn)
{
    return conn->user_id;
}

profile_t *
conn_profile (conn_t *conn)
{
    return &conn->profile;
}

const char *
conn_address (const conn_t *conn)
{
    return conn->address;
}
