/*  =========================================================================
    links.c - roomd's links to the gateways

    A shard finds its gateways, not the other way round: it connects a
    DEALER to each gateway's backend ROUTER and says shard-hello there at
    once and every heartbeat. A gateway that hears it routes rooms to it; a
    gateway that stops hearing it (roomd died) routes them elsewhere. Each
    welcome carries the gateway's live shard set, from which roomd learns
    which rooms it no longer owns.

    A gateway that already has a live shard of our SHARD_ID at another peer
    refuses our hello with an error (409) and sends no welcome, so it
    routes nothing to us: we say so at error level and go on saying hello,
    and take the id over (as a restarted shard would) once the other one
    is gone.

    Requests from a gateway are answered on the link they came by; events go
    to every link, one message a gateway, and each gateway writes them to
    its own sockets in the room.
    =========================================================================
*/

#include <assert.h>
#include <stdarg.h>
#include <string.h>
#include "roomd.h"
#include "clock.h"
#include "log.h"
#include "route.h"
#include "tap.h"
#include "bus.h"

//  Enough queued messages for a burst; past it, sends to that gateway fail
//  (and are counted) rather than grow memory.
#define LINK_HWM    100000

//  A turn's frame for a gateway is sent once it holds this much: well
//  under BUS_MSG_MAX with any one message more (PROTO_FRAME_MAX).
#define LINK_FRAME_MAX  (64 * 1024)

int
links_open (roomd_t *self)
{
    char endpoints [4096];
    snprintf (endpoints, sizeof endpoints, "%s", self->config->gateway_endpoints);
    char *save = NULL;
    for (char *endpoint = strtok_r (endpoints, ", ", &save); endpoint;
         endpoint = strtok_r (NULL, ", ", &save)) {
        if (self->link_count == LINKS_MAX) {
            log_error ("more than %d gateway endpoints", LINKS_MAX);
            return -1;
        }
        link_t *link = &self->links [self->link_count];
        memset (link, 0, sizeof *link);
        msgpack_sbuffer_init (&link->out);
        link->socket = zsock_new (ZMQ_DEALER);
        assert (link->socket);
        zsock_set_linger (link->socket, 0);
        zsock_set_sndhwm (link->socket, LINK_HWM);
        zsock_set_rcvhwm (link->socket, LINK_HWM);
        //  Nothing is queued for a gateway that is not connected: its
        //  sockets are gone with it, so events for them are moot.
        zsock_set_immediate (link->socket, 1);
        //  Detect a dead gateway (and reconnect to a new one) quickly.
        zsock_set_heartbeat_ivl (link->socket, 1000);
        zsock_set_heartbeat_timeout (link->socket, 3000);
        if (bus_client (link->socket, BUS_GATEWAY)) {
            zsock_destroy (&link->socket);
            return -1;
        }
        char name [300];
        snprintf (name, sizeof name, "gateway %s", endpoint);
        //  Its link up (a gateway started, or came back): hello at once.
        link->monitor = monitor_watch (link->socket, name, ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
        if (zsock_connect (link->socket, "%s", endpoint)) {
            log_error ("cannot connect to gateway %s", endpoint);
            monitor_destroy (&link->monitor);
            zsock_destroy (&link->socket);
            return -1;
        }
        snprintf (link->endpoint, sizeof link->endpoint, "%s", endpoint);
        self->link_count++;
        log_info ("linked to gateway %s", endpoint);
    }
    return self->link_count? 0: -1;
}

void
links_close (roomd_t *self)
{
    links_flush (self);
    for (size_t i = 0; i < self->link_count; i++) {
        monitor_destroy (&self->links [i].monitor);
        zsock_destroy (&self->links [i].socket);
        msgpack_sbuffer_destroy (&self->links [i].out);
    }
    self->link_count = 0;
}

static void
s_flush (link_t *link)
{
    if (link->out.size == 0)
        return;
    if (zmq_send (zsock_resolve (link->socket), link->out.data, link->out.size,
                  ZMQ_DONTWAIT) < 0)
        log_debug ("gateway %s missed %zu bytes of messages: %s", link->endpoint,
                   link->out.size, zmq_strerror (zmq_errno ()));
    msgpack_sbuffer_clear (&link->out);
}

void
links_flush (roomd_t *self)
{
    for (size_t i = 0; i < self->link_count; i++)
        s_flush (&self->links [i]);
}

//  Queue the message in self->buffer on link, for this turn's frame.
static void
s_queue (roomd_t *self, link_t *link)
{
    tap_message (TAP_OUT, link->endpoint, self->buffer.data, self->buffer.size);
    if (link->out.size + self->buffer.size > LINK_FRAME_MAX)
        s_flush (link);
    msgpack_sbuffer_write (&link->out, self->buffer.data, self->buffer.size);
}

void
link_send (roomd_t *self, link_t *link, const proto_msg_t *msg)
{
    msgpack_sbuffer_clear (&self->buffer);
    if (proto_encode (msg, &self->buffer)) {
        log_error ("a %s does not encode", proto_type_name (msg->type));
        return;
    }
    s_queue (self, link);
}

void
fanout_to_gateways (roomd_t *self, const proto_msg_t *event)
{
    msgpack_sbuffer_clear (&self->buffer);
    if (proto_encode (event, &self->buffer)) {
        log_error ("a %s does not encode", proto_type_name (event->type));
        return;
    }
    for (size_t i = 0; i < self->link_count; i++)
        s_queue (self, &self->links [i]);
    self->events++;
    log_write (LOG_LEVEL_DEBUG, event->trace_id, "%s fanned out to %zu gateways",
               proto_type_name (event->type), self->link_count);
}

static void
s_hello (roomd_t *self, link_t *link)
{
    proto_msg_t hello = { .type = PROTO_SHARD_HELLO, .shard_hello = {
        .shard_id = self->config->shard_id, .heartbeat_ms = (uint32_t) self->config->heartbeat_ms,
        .rooms = (uint32_t) rooms_count (self) } };
    link_send (self, link, &hello);
}

void
links_up (roomd_t *self, link_t *link)
{
    bool up = false;
    while (monitor_event (link->monitor))
        up = true;
    if (up)
        s_hello (self, link);
}

void
links_hello (roomd_t *self)
{
    for (size_t i = 0; i < self->link_count; i++)
        s_hello (self, &self->links [i]);
}

//  The gateway's view of the live shards: drop the rooms that are no
//  longer ours, so that a room that comes back later is read afresh.
static void
s_welcomed (roomd_t *self, link_t *link, const proto_shard_welcome_t *welcome)
{
    if (strcmp (link->gateway_id, welcome->gateway_id) != 0) {
        log_info ("gateway %s at %s knows %u shards", welcome->gateway_id, link->endpoint,
                  welcome->shard_count);
        snprintf (link->gateway_id, sizeof link->gateway_id, "%s", welcome->gateway_id);
    }
    link->welcomed_ms = clock_mono_ms ();
    if (link->refused) {
        log_info ("gateway %s at %s takes our hello now", welcome->gateway_id, link->endpoint);
        link->refused = false;
    }
    if (welcome->fresh && rooms_count (self)) {
        //  The gateway had dropped us (we were silent: paused, or our link
        //  was down): our rooms may have been served elsewhere meanwhile.
        log_info ("gateway %s took us back; dropping the %zu rooms held, to reload them",
                  welcome->gateway_id, rooms_count (self));
        rooms_evict (self, NULL, 0);
    }
    //  Walking every room costs; do it when the shard set changed, and
    //  otherwise now and then for the rooms that went idle.
    uint64_t digest = welcome->shard_count;
    for (uint32_t i = 0; i < welcome->shard_count; i++)
        digest = route_hash (welcome->shards [i], strlen (welcome->shards [i]), digest);
    if (digest != link->shard_digest || link->welcomed_ms >= link->evicted_ms + 10000) {
        rooms_evict (self, welcome->shards, welcome->shard_count);
        link->shard_digest = digest;
        link->evicted_ms = link->welcomed_ms;
    }
}

//  A request a shard serves: one about a room (events are too, but they
//  are ours to send, not to serve).
static bool
s_is_room_request (const proto_msg_t *msg)
{
    return proto_room_of (msg) && proto_reply_type (msg->type);
}

//  One message of a frame from a link.
typedef struct {
    roomd_t *self;
    link_t *link;
} receiving_t;

static void
s_receive (const void *data, size_t size, void *arg)
{
    roomd_t *self = ((receiving_t *) arg)->self;
    link_t *link = ((receiving_t *) arg)->link;
    tap_message (TAP_IN, link->endpoint, data, size);
    char why [PROTO_WHY_MAX];
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    if (!msg) {
        //  Answer what we can: a request id read past a bad body.
        uint16_t type;
        uint64_t request_id = 0;
        if (proto_peek (data, size, &type, &request_id) == 0 && request_id) {
            proto_msg_t error = { .type = PROTO_ERROR, .request_id = request_id,
                                  .error = { 400, why } };
            link_send (self, link, &error);
        }
        log_warn ("refused a message from gateway %s: %s", link->endpoint, why);
    }
    else
    if (msg->type == PROTO_SHARD_WELCOME) {
        s_welcomed (self, link, &msg->shard_welcome);
        proto_msg_destroy (&msg);
    }
    else
    if (msg->type == PROTO_ERROR && msg->request_id == 0) {
        //  Our hello (the one message we send with no request id) refused.
        if (!link->refused)
            log_error ("gateway %s refuses shard %s: %u %s", link->endpoint,
                       self->config->shard_id, msg->error.status, msg->error.reason);
        link->refused = true;
        proto_msg_destroy (&msg);
    }
    else
    if (s_is_room_request (msg)) {
        self->requests++;
        //  A request its sender gave up on (told 503) is not carried out
        //  late: a join refused with 503 would make a participant all the
        //  same. Every caller gives up after REQUEST_TIMEOUT_MS, and a
        //  gateway that drops a silent shard fails what it sent it at once:
        //  so one older than the timeout, or one sent before a stall of
        //  ours ended that waited out a few heartbeats, is refused. By the
        //  envelope's wall clock: gateways' and shards' clocks must agree
        //  to well within a heartbeat (NTP does).
        int64_t age_ms = clock_now_ms () - msg->sent_at_ms;
        bool stale = age_ms > self->config->request_timeout_ms
                  || (msg->sent_at_ms < self->stalled_until_ms
                      && age_ms > 3 * self->config->heartbeat_ms);
        if (stale) {
            log_write (LOG_LEVEL_WARN, msg->trace_id, "a %s waited %lld ms: its sender gave "
                       "up on it, so it is not carried out", proto_type_name (msg->type),
                       (long long) age_ms);
            proto_msg_t error = { .type = PROTO_ERROR, .request_id = msg->request_id,
                                  .error = { 503, "the request waited too long for its shard" } };
            memcpy (error.trace_id, msg->trace_id, sizeof error.trace_id);
            if (msg->request_id)
                link_send (self, link, &error);
            proto_msg_destroy (&msg);
        }
        else
            handle_dispatch (self, msg, link);
    }
    else
    if (msg->type == PROTO_METRICS) {
        links_metrics (self, link, msg);
        proto_msg_destroy (&msg);
    }
    else {
        if (msg->request_id) {
            proto_msg_t error = { .type = PROTO_ERROR, .request_id = msg->request_id,
                                  .error = { 400, "roomd does not serve this type" } };
            memcpy (error.trace_id, msg->trace_id, sizeof error.trace_id);
            link_send (self, link, &error);
        }
        log_warn ("gateway %s sent a %s, which roomd does not serve", link->endpoint,
                  proto_type_name (msg->type));
        proto_msg_destroy (&msg);
    }
}

bool
link_receive (roomd_t *self, link_t *link)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, zsock_resolve (link->socket), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&frame);
        return false;
    }
    //  A gateway sends what one turn has for us in one frame
    receiving_t receiving = { self, link };
    proto_each (zmq_msg_data (&frame), zmq_msg_size (&frame), s_receive, &receiving);
    zmq_msg_close (&frame);
    return true;
}

void
links_metrics (roomd_t *self, link_t *link, const proto_msg_t *request)
{
    size_t members = 0;
    for (room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms))
        members += room->member_count;
    static metrics_set_t set;
    metrics_set_init (&set, "roomd", self->config->shard_id);
    metrics_gauge (&set, "nearchat_roomd_rooms", "Rooms in this shard's memory.",
                   (double) rooms_count (self));
    metrics_gauge (&set, "nearchat_roomd_sockets", "Sockets in this shard's rooms.",
                   (double) members);
    metrics_gauge (&set, "nearchat_roomd_calls_in_flight", "Calls to stored awaiting a reply.",
                   (double) requests_size (self->calls));
    metrics_counter (&set, "nearchat_roomd_requests_total", "Room requests from gateways.",
                     (double) self->requests);
    metrics_counter (&set, "nearchat_roomd_events_total", "Events fanned out to gateways.",
                     (double) self->events);
    metrics_counter (&set, "nearchat_roomd_messages_total", "Chat messages stored and fanned out.",
                     (double) self->messages);
    metrics_histogram (&set, "nearchat_roomd_send_seconds",
                       "A message from its arrival at the shard to its fan-out (before stored's "
                       "commit, but for a shard's first after a load, or one past its window).",
                       &self->send_seconds);
    proto_msg_t reply = { .type = PROTO_METRICS_REPLY, .request_id = request->request_id,
                          .metrics_reply = set.reply };
    memcpy (reply.trace_id, request->trace_id, sizeof reply.trace_id);
    link_send (self, link, &reply);
}

//  ---------------------------------------------------------------------------
//  Answers: an op's request is answered on the link it came from (store.c
//  makes ops; the answer is a send on a link, so it lives here).

void
op_reply (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    if (reply && op->link && op->request && op->request->request_id) {
        reply->request_id = op->request->request_id;
        memcpy (reply->trace_id, op->request->trace_id, sizeof reply->trace_id);
        link_send (self, op->link, reply);
    }
}

void
op_finish (roomd_t *self, op_t **op_p, proto_msg_t *reply)
{
    assert (op_p && *op_p);
    op_t *op = *op_p;
    assert (op->call_id == 0);          //  no call may outlive its op
    op_reply (self, op, reply);
    proto_msg_destroy (&op->request);
    if (op->zone)
        msgpack_zone_free (op->zone);
    free (op);
    *op_p = NULL;
}

void
op_fail (roomd_t *self, op_t **op_p, uint16_t status, const char *fmt, ...)
{
    char reason [PROTO_REASON_MAX];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    const proto_msg_t *request = (*op_p)->request;
    log_write (status >= 500? LOG_LEVEL_WARN: LOG_LEVEL_DEBUG, request? request->trace_id: NULL,
               "%s of room %s refused (%u): %s", request? proto_type_name (request->type): "load",
               (*op_p)->room_id, status, reason);
    proto_msg_t error = { .type = PROTO_ERROR, .error = { status, reason } };
    op_finish (self, op_p, &error);
}
