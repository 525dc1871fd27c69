/*  =========================================================================
    store.c - roomd's calls to stored, and the operations that wait on them

    roomd never waits for stored: a call goes out on a DEALER with a fresh
    request id and a continuation, and the loop moves on. stored answers
    reads at once and writes after their commit, so replies come back out of
    order; they are matched by request id in a table of calls in flight
    (proto's requests.h), which also expires them in deadline order.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <string.h>
#include "roomd.h"
#include "clock.h"
#include "log.h"
#include "tap.h"
#include "bus.h"

#define STORE_HWM   100000

int
store_open (roomd_t *self)
{
    self->store = zsock_new (ZMQ_DEALER);
    assert (self->store);
    zsock_set_linger (self->store, 0);
    zsock_set_sndhwm (self->store, STORE_HWM);
    zsock_set_rcvhwm (self->store, STORE_HWM);
    //  A call to a stored that is not there fails at once (503) rather
    //  than waiting in a queue for its timeout.
    zsock_set_immediate (self->store, 1);
    if (bus_client (self->store, BUS_STORED))
        return -1;
    //  A link to stored that goes down takes the answers to what was sent
    //  on it: the roomd watches for it (store_lost) rather than wait out
    //  each call's timeout.
    self->store_monitor = monitor_watch (self->store, "stored",
                                         ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    if (zsock_connect (self->store, "%s", self->config->stored_endpoint)) {
        log_error ("cannot connect to stored at %s", self->config->stored_endpoint);
        return -1;
    }
    self->calls = requests_new ();
    self->next_call_id = 1;
    msgpack_sbuffer_init (&self->store_out);
    return 0;
}

void
store_close (roomd_t *self)
{
    requests_destroy (&self->calls);
    msgpack_sbuffer_destroy (&self->store_out);     //  their calls were abandoned
    free (self->settle);
    monitor_destroy (&self->store_monitor);
    zsock_destroy (&self->store);
}

//  ---------------------------------------------------------------------------
//  Operations

op_t *
op_new (const char *room_id, proto_msg_t *request, link_t *link)
{
    op_t *op = calloc (1, sizeof *op);
    assert (op);
    snprintf (op->room_id, sizeof op->room_id, "%s", room_id);
    op->request = request;
    op->link = link;
    op->received_ns = clock_mono_ns ();
    return op;
}

//  ---------------------------------------------------------------------------
//  Calls

//  A turn's frame of calls is sent once it holds this much: well under
//  BUS_MSG_MAX with any one message more (PROTO_FRAME_MAX).
#define STORE_FRAME_MAX (64 * 1024)

//  Note a call of the frame just sent (or not), to settle (proto_each).
static void
s_note_call (const void *data, size_t size, void *arg)
{
    roomd_t *self = arg;
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id))
        return;
    if (self->settle_count == self->settle_max) {
        self->settle_max = self->settle_max? 2 * self->settle_max: 64;
        self->settle = realloc (self->settle, self->settle_max * sizeof *self->settle);
        assert (self->settle);
    }
    self->settle [self->settle_count++] = (settle_t) { id, self->settling_failed };
}

//  Send the frame of calls gathered so far, and note each call in it as
//  sent or not, for store_flush to settle: nothing runs from here, so a
//  full frame can go in the middle of a caller's work.
static void
s_send_frame (roomd_t *self)
{
    if (self->store_out.size == 0)
        return;
    bool failed = zmq_send (zsock_resolve (self->store), self->store_out.data,
                            self->store_out.size, ZMQ_DONTWAIT) < 0;
    if (failed)
        log_warn ("cannot send %zu bytes of calls to stored: %s", self->store_out.size,
                  zmq_strerror (zmq_errno ()));
    self->settling_failed = failed;
    proto_each (self->store_out.data, self->store_out.size, s_note_call, self);
    msgpack_sbuffer_clear (&self->store_out);
}

void
store_call (roomd_t *self, op_t *op, proto_msg_t *call, op_done_fn *done)
{
    assert (op->call_id == 0);
    call->request_id = self->next_call_id++;
    if (op->request)
        memcpy (call->trace_id, op->request->trace_id, sizeof call->trace_id);
    msgpack_sbuffer_clear (&self->buffer);
    if (proto_encode (call, &self->buffer)) {
        log_error ("a %s does not encode", proto_type_name (call->type));
        done (self, op, NULL);
        return;
    }
    tap_message (TAP_OUT, "stored", self->buffer.data, self->buffer.size);
    if (self->store_out.size + self->buffer.size > STORE_FRAME_MAX)
        s_send_frame (self);
    msgpack_sbuffer_write (&self->store_out, self->buffer.data, self->buffer.size);
    log_write (LOG_LEVEL_DEBUG, call->trace_id, "%s -> stored", proto_type_name (call->type));
    op->call_id = call->request_id;
    op->done = done;
    op->unsent = true;
    requests_insert (self->calls, op->call_id, op,
                     clock_mono_ms () + self->config->request_timeout_ms);
}

static void
s_sent (roomd_t *self, op_t *op)
{
    op->unsent = false;
    if (op->sent)
        op->sent (self, op);
}

static void
s_unsent (roomd_t *self, op_t *op)
{
    requests_take (self->calls, op->call_id);
    op->call_id = 0;
    op->unsent = false;
    self->sending = op;                 //  its send failed: stored is not there
    op->done (self, op, NULL);
    self->sending = NULL;
}

void
store_flush (roomd_t *self)
{
    //  The continuations may call again: those go too, a few rounds at most
    //  (a retry's, a load's next step); what is left goes next turn.
    for (int round = 0; round < 4 && (self->store_out.size || self->settle_count); round++) {
        s_send_frame (self);
        size_t count = self->settle_count;
        settle_t *settle = self->settle;
        self->settle = NULL;
        self->settle_count = self->settle_max = 0;
        //  Failed ones last first: a send numbered last gives its seq back first.
        for (size_t i = count; i-- > 0; ) {
            op_t *op = settle [i].failed? requests_lookup (self->calls, settle [i].id): NULL;
            if (op)
                s_unsent (self, op);
        }
        for (size_t i = 0; i < count; i++) {
            op_t *op = settle [i].failed? NULL: requests_lookup (self->calls, settle [i].id);
            if (op)
                s_sent (self, op);
        }
        free (settle);
    }
}


//  One answer of a frame from stored.
static void
s_answered (const void *data, size_t size, void *arg)
{
    roomd_t *self = arg;
    tap_message (TAP_IN, "stored", data, size);
    char why [PROTO_WHY_MAX];
    proto_msg_t *reply = proto_decode (data, size, why, sizeof why);
    if (!reply) {
        log_error ("stored sent what does not decode: %s", why);
        return;                         //  its call will time out
    }
    op_t *op = requests_take (self->calls, reply->request_id);
    if (!op) {
        log_debug ("a late %s from stored", proto_type_name (reply->type));
        proto_msg_destroy (&reply);
        return;
    }
    op->call_id = 0;
    op->done (self, op, reply);
    proto_msg_destroy (&reply);
}

bool
store_receive (roomd_t *self)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, zsock_resolve (self->store), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&frame);
        return false;
    }
    //  stored answers a commit's appends of ours in one frame (its batch.c)
    proto_each (zmq_msg_data (&frame), zmq_msg_size (&frame), s_answered, self);
    zmq_msg_close (&frame);
    return true;
}

//  Run the continuations of the calls due by now_ms with NULL, those that
//  they send meanwhile too if those are due (store_abandon: to a stored
//  that is gone, they fail as these do).
static void
s_fail_due (roomd_t *self, int64_t now_ms, bool timed_out)
{
    op_t *op;
    while ((op = requests_take_overdue (self->calls, now_ms, NULL))) {
        if (timed_out)
            log_warn ("stored did not answer in %lld ms",
                      (long long) self->config->request_timeout_ms);
        op->call_id = 0;
        op->done (self, op, NULL);
    }
}

void
store_expire (roomd_t *self)
{
    s_fail_due (self, clock_mono_ms (), true);
}

void
store_abandon (roomd_t *self)
{
    s_fail_due (self, INT64_MAX, false);
}

bool
store_wait_up (roomd_t *self, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    zpoller_t *poller = zpoller_new (monitor_socket (self->store_monitor), NULL);
    bool up = false;
    while (!up && !zsys_interrupted && clock_mono_ms () < deadline)
        if (zpoller_wait (poller, (int) (deadline - clock_mono_ms ())))
            up = monitor_event (self->store_monitor) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    zpoller_destroy (&poller);
    return up;
}

void
store_lost (roomd_t *self)
{
    unsigned event;
    while ((event = monitor_event (self->store_monitor))) {
        if (event != ZMQ_EVENT_DISCONNECTED || requests_size (self->calls) == 0)
            continue;
        log_warn ("the link to stored went down with %zu calls in flight: they will not be "
                  "answered, so they fail now", requests_size (self->calls));
        store_abandon (self);
    }
}

int64_t
store_next_deadline (roomd_t *self)
{
    return requests_wait (self->calls, clock_mono_ms ());
}
