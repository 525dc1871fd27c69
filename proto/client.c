/*  =========================================================================
    client.c - requests to a nearchat daemon over a ZeroMQ DEALER

    One DEALER socket, one frame a request and one a reply. The DEALER
    spreads nothing (it connects to one endpoint) and keeps order per peer;
    replies may still come back out of order (stored answers reads before
    the writes it is committing), hence the request_id matching.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include "client.h"
#include "clock.h"
#include "tap.h"
#include "monitor.h"
#include "bus.h"

//  Enough for 8 clients x 64 in flight with room to spare; past it a send
//  fails at once rather than queueing without bound.
#define CLIENT_HWM  10000

struct proto_client {
    zsock_t *socket;            //  DEALER connected to the daemon
    void *handle;               //  its libzmq socket, for zmq_poll and zmq_msg_*
    uint64_t next_request_id;   //  ids this client hands out, from 1
    msgpack_sbuffer buffer;     //  reused encoding buffer
    msgpack_sbuffer queued;     //  requests for one frame (proto_client_queue)
    char endpoint [256];        //  the peer's, for the tap
    monitor_t *monitor;         //  its events, with ZMQ_MONITOR=1
    zmq_msg_t held;             //  a frame of several replies, being taken
    size_t held_at;             //  where its next reply begins
    bool holding;               //  some of it is left
};

proto_client_t *
proto_client_new (const char *endpoint)
{
    return proto_client_new_to (endpoint, BUS_STORED);
}

proto_client_t *
proto_client_new_to (const char *endpoint, const char *server_role)
{
    assert (endpoint && server_role);
    zsock_t *socket = zsock_new (ZMQ_DEALER);
    if (!socket)
        return NULL;
    if (bus_client (socket, server_role)) {
        zsock_destroy (&socket);
        return NULL;
    }
    zsock_set_linger (socket, 0);
    zsock_set_sndhwm (socket, CLIENT_HWM);
    zsock_set_rcvhwm (socket, CLIENT_HWM);
    //  Fail sends at once when the peer is gone rather than queueing for a
    //  peer that may never come back.
    zsock_set_immediate (socket, 1);
    //  Watched before it connects, so that the first events are seen too.
    monitor_t *monitor = monitor_new (socket, endpoint);
    if (zsock_connect (socket, "%s", endpoint) != 0) {
        monitor_destroy (&monitor);
        zsock_destroy (&socket);
        return NULL;
    }
    proto_client_t *self = calloc (1, sizeof *self);
    assert (self);
    self->monitor = monitor;
    self->socket = socket;
    self->handle = zsock_resolve (socket);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
    self->next_request_id = 1;
    msgpack_sbuffer_init (&self->buffer);
    msgpack_sbuffer_init (&self->queued);
    zmq_msg_init (&self->held);
    return self;
}

void
proto_client_destroy (proto_client_t **self_p)
{
    assert (self_p);
    proto_client_t *self = *self_p;
    if (self) {
        monitor_destroy (&self->monitor);
        zsock_destroy (&self->socket);
        msgpack_sbuffer_destroy (&self->buffer);
        msgpack_sbuffer_destroy (&self->queued);
        zmq_msg_close (&self->held);
        free (self);
        *self_p = NULL;
    }
}

//  Send one frame of data.
static int
s_send_frame (proto_client_t *self, const void *data, size_t size)
{
    //  With ZMQ_IMMEDIATE and no connected peer, a blocking send would wait
    //  forever; a short wait covers the connect that is still under way.
    int64_t deadline = clock_mono_ms () + 1000;
    while (zmq_send (self->handle, data, size, ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN || clock_mono_ms () >= deadline)
            return -1;
        zmq_pollitem_t item = { self->handle, 0, ZMQ_POLLOUT, 0 };
        zmq_poll (&item, 1, 10);
    }
    return 0;
}

//  Encode req into self->buffer, with an id of ours if it has none.
static int
s_encode (proto_client_t *self, proto_msg_t *req)
{
    if (req->request_id == 0)
        req->request_id = self->next_request_id++;
    msgpack_sbuffer_clear (&self->buffer);
    if (proto_encode (req, &self->buffer))
        return -1;
    tap_message (TAP_OUT, self->endpoint, self->buffer.data, self->buffer.size);
    return 0;
}

int
proto_client_send (proto_client_t *self, proto_msg_t *req)
{
    assert (self && req);
    if (s_encode (self, req))
        return -1;
    return s_send_frame (self, self->buffer.data, self->buffer.size);
}

int
proto_client_queue (proto_client_t *self, proto_msg_t *req)
{
    assert (self && req);
    if (s_encode (self, req))
        return -1;
    msgpack_sbuffer_write (&self->queued, self->buffer.data, self->buffer.size);
    return 0;
}

int
proto_client_flush (proto_client_t *self)
{
    assert (self);
    int rc = self->queued.size? s_send_frame (self, self->queued.data, self->queued.size): 0;
    msgpack_sbuffer_clear (&self->queued);
    return rc;
}

//  The next reply of the frame held (holding).
static proto_msg_t *
s_next_held (proto_client_t *self)
{
    const uint8_t *data = zmq_msg_data (&self->held);
    size_t size = zmq_msg_size (&self->held);
    size_t first = proto_next (data + self->held_at, size - self->held_at);
    tap_message (TAP_IN, self->endpoint, data + self->held_at, first);
    char why [PROTO_WHY_MAX];
    proto_msg_t *reply = proto_decode (data + self->held_at, first, why, sizeof why);
    self->held_at += first;
    self->holding = self->held_at < size;
    if (!reply)
        errno = EPROTO;
    return reply;
}

proto_msg_t *
proto_client_recv (proto_client_t *self, int timeout_ms)
{
    assert (self);
    if (self->holding)
        return s_next_held (self);
    zmq_pollitem_t item = { self->handle, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc < 0)
        return NULL;            //  errno set by zmq_poll (EINTR)
    if (rc == 0) {
        errno = ETIMEDOUT;
        return NULL;
    }
    //  The reply is the last frame; any before it would be routing frames
    //  a REQ-style peer added.
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (;;) {
        if (zmq_msg_recv (&frame, self->handle, 0) < 0) {
            zmq_msg_close (&frame);
            return NULL;
        }
        if (!zmq_msg_more (&frame))
            break;
    }
    //  A frame may hold several replies (stored answers a commit's to a
    //  shard key in one): the first now, the rest on the next calls.
    zmq_msg_close (&self->held);
    zmq_msg_init (&self->held);
    zmq_msg_move (&self->held, &frame);
    zmq_msg_close (&frame);
    self->held_at = 0;
    self->holding = zmq_msg_size (&self->held) > 0;
    if (!self->holding) {
        errno = EPROTO;         //  an empty frame
        return NULL;
    }
    return s_next_held (self);
}

proto_msg_t *
proto_client_call (proto_client_t *self, proto_msg_t *req, int timeout_ms)
{
    assert (self && req);
    if (proto_client_send (self, req)) {
        errno = EAGAIN;
        return NULL;
    }
    int64_t deadline = clock_mono_ms () + timeout_ms;
    for (;;) {
        int wait = timeout_ms < 0? -1: (int) (deadline - clock_mono_ms ());
        if (timeout_ms >= 0 && wait < 0)
            wait = 0;
        proto_msg_t *reply = proto_client_recv (self, wait);
        if (!reply) {
            if (errno == EPROTO && (timeout_ms < 0 || clock_mono_ms () < deadline))
                continue;       //  a garbled stray reply: keep waiting for ours
            return NULL;
        }
        if (reply->request_id == req->request_id)
            return reply;
        proto_msg_destroy (&reply);     //  late answer to an earlier request
    }
}

zsock_t *
proto_client_socket (proto_client_t *self)
{
    assert (self);
    return self->socket;
}
