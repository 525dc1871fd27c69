/*  =========================================================================
    links.c - the ZeroMQ sockets that leave the process, and what comes in
    on them

    Two sockets, both the event loop's (loop.c reads them on its turn;
    ZeroMQ sockets are not thread-safe, and no other thread touches them):

      - a ROUTER bound to GATEWAY_BACKEND_ENDPOINT. roomd shards connect
        DEALERs to it and register with a heartbeat (shards.c), and send
        their replies and events here. Other peers (the reaper) may send
        room requests here too: they are forwarded as the gateway's own
        (pending.c) and the answer goes back to that peer.
      - a DEALER to stored, with ZMQ_IMMEDIATE so that a send fails at once
        when stored is down (the caller gets 503 instead of a timeout).

    Every message is checked before it is believed: its frames, its
    decoding, and the role of the key zauth admitted its peer with (bus.h):
    answers and events come from shards alone (the reaper's report aside).

    This run of the gateway beats to stored every GATEWAY_BEAT_MS (proto.h,
    gateway-beat); a beat refused with 410 says the run was declared dead,
    and every socket is closed for its client to join again.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <czmq.h>
#include "links.h"
#include "clock.h"
#include "ids.h"
#include "log.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"

#define PEER_HWM            100000      //  per shard link, each way
#define STORED_HWM          100000
#define BEAT_ID             (1ULL << 63)    //  a beat's request id: this bit and the run's number

//  The frames of one message.
typedef struct {
    zmq_msg_t part [LINKS_PARTS_MAX];
    int count;
} parts_t;

static struct {
    zsock_t *router, *stored;
    void *router_h, *stored_h;
    monitor_t *router_monitor;          //  with ZMQ_MONITOR=1
    monitor_t *stored_monitor;          //  logs with ZMQ_MONITOR=1; says when the link drops
    msgpack_sbuffer buffer;
    //  This run of the gateway (proto.h, gateway-beat): its incarnation,
    //  a new one at start and whenever stored says the run is dead; its
    //  number, so that a late answer to an earlier run's beat is known;
    //  and whether stored has taken one of its beats yet.
    char incarnation [IDS_UUID_SIZE];
    uint64_t run;
    bool run_known;
    bool run_lost;                      //  an earlier run was declared dead (links_run_lost)
} s_self;

//  A copy of the incarnation for the HTTP threads (/healthz).
static pthread_mutex_t s_run_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_run_copy [IDS_UUID_SIZE];

//  The reaper's last metrics report (it sends one, unasked, after each
//  pass and every second besides), kept encoded for the HTTP threads that
//  render /metrics, and when it came: a reaper not heard from for
//  REAPER_TIMEOUT_S is down (it died, or cannot reach us).
static struct {
    pthread_mutex_t mutex;
    void *data;
    size_t size;
    int64_t at_ms;                      //  monotonic
} s_report = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0 };

//  ---------------------------------------------------------------------------
//  Sending and receiving

static int
s_send_parts (void *handle, const void *const *data, const size_t *size, int count)
{
    for (int i = 0; i < count; i++)
        if (zmq_send (handle, data [i], size [i],
                      ZMQ_DONTWAIT | (i + 1 < count? ZMQ_SNDMORE: 0)) < 0)
            return -1;      //  the first part fails or none: ZeroMQ sends whole messages
    return 0;
}

int
links_to_stored (const void *data, size_t size)
{
    tap_message (TAP_OUT, "stored", data, size);
    return zmq_send (s_self.stored_h, data, size, ZMQ_DONTWAIT) < 0? -1: 0;
}

int
links_to_peer (const ident_t *to, const void *data, size_t size)
{
    tap_message (TAP_OUT, "backend peer", data, size);
    const void *parts [] = { to->data, data };
    size_t sizes [] = { to->size, size };
    return s_send_parts (s_self.router_h, parts, sizes, 2);
}

//  A turn's requests for one shard, sent as one frame before the loop waits:
//  each ZeroMQ message pays its hand-offs between threads and its CURVE
//  box once, however many requests it carries (a frame well under
//  BUS_MSG_MAX with any one message more). Kept for the shards seen
//  lately; emptied out when too many identities went by.
#define SHARD_FRAME_MAX (64 * 1024)
#define SHARD_OUTS_MAX  16
static struct {
    ident_t to;
    msgpack_sbuffer out;
} s_outs [SHARD_OUTS_MAX];
static int s_out_count;

static void
s_flush_out (int index)
{
    ident_t *to = &s_outs [index].to;
    msgpack_sbuffer *out = &s_outs [index].out;
    if (out->size == 0)
        return;
    const void *parts [] = { to->data, out->data };
    size_t sizes [] = { to->size, out->size };
    if (s_send_parts (s_self.router_h, parts, sizes, 2))
        pending_unsent (to, out->data, out->size, errno);
    msgpack_sbuffer_clear (out);
}

void
links_flush (void)
{
    for (int i = 0; i < s_out_count; i++)
        s_flush_out (i);
}

void
links_to_shard (const ident_t *to, const void *data, size_t size)
{
    tap_message (TAP_OUT, "backend peer", data, size);
    int index = 0;
    while (index < s_out_count
       &&  (s_outs [index].to.size != to->size
            || memcmp (s_outs [index].to.data, to->data, to->size) != 0))
        index++;
    if (index == SHARD_OUTS_MAX) {
        links_flush ();
        for (int i = 0; i < s_out_count; i++)
            msgpack_sbuffer_destroy (&s_outs [i].out);
        s_out_count = index = 0;
    }
    if (index == s_out_count) {
        s_outs [index].to = *to;
        msgpack_sbuffer_init (&s_outs [index].out);
        s_out_count++;
    }
    if (s_outs [index].out.size + size > SHARD_FRAME_MAX)
        s_flush_out (index);
    msgpack_sbuffer_write (&s_outs [index].out, data, size);
}

//  Read one whole message without waiting; parts past LINKS_PARTS_MAX
//  are dropped. Returns false when there was none.
static bool
s_recv (void *handle, parts_t *parts)
{
    parts->count = 0;
    for (;;) {
        zmq_msg_t scratch, *part = parts->count < LINKS_PARTS_MAX? &parts->part [parts->count]: &scratch;
        zmq_msg_init (part);
        if (zmq_msg_recv (part, handle, parts->count? 0: ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (part);
            return parts->count > 0;
        }
        bool more = zmq_msg_more (part);
        if (part == &scratch)
            zmq_msg_close (part);
        else
            parts->count++;
        if (!more)
            return true;
    }
}

static void
s_parts_close (parts_t *parts)
{
    for (int i = 0; i < parts->count; i++)
        zmq_msg_close (&parts->part [i]);
    parts->count = 0;
}

static bool
s_ident (zmq_msg_t *part, ident_t *ident)
{
    size_t size = zmq_msg_size (part);
    if (size == 0 || size > sizeof ident->data)
        return false;
    ident->size = size;
    memcpy (ident->data, zmq_msg_data (part), size);
    return true;
}

//  Answer a peer's request that cannot be served (none for what asks
//  for no reply, or what has no request id to answer) with an error.
static void
s_peer_error (const ident_t *from, uint64_t request_id, const char *trace, uint16_t status,
              const char *reason)
{
    if (!request_id)
        return;
    proto_msg_t error = { .type = PROTO_ERROR, .request_id = request_id,
                          .error = { status, reason } };
    snprintf (error.trace_id, sizeof error.trace_id, "%s", trace? trace: "");
    msgpack_sbuffer_clear (&s_self.buffer);
    if (proto_encode (&error, &s_self.buffer) == 0)
        links_to_peer (from, s_self.buffer.data, s_self.buffer.size);
}

//  ---------------------------------------------------------------------------
//  The reaper's report

static void
s_keep_report (const void *data, size_t size)
{
    void *copy = malloc (size);
    if (!copy)
        return;
    memcpy (copy, data, size);
    pthread_mutex_lock (&s_report.mutex);
    free (s_report.data);
    s_report.data = copy;
    s_report.size = size;
    s_report.at_ms = clock_mono_ms ();
    pthread_mutex_unlock (&s_report.mutex);
}

bool
links_reaper_up (void)
{
    pthread_mutex_lock (&s_report.mutex);
    bool up = s_report.data
           && clock_mono_ms () - s_report.at_ms <= gateway_config.reaper_timeout_s * 1000;
    pthread_mutex_unlock (&s_report.mutex);
    return up;
}

proto_msg_t *
links_reaper_report (void)
{
    proto_msg_t *report = NULL;
    pthread_mutex_lock (&s_report.mutex);
    if (s_report.data)
        report = proto_decode (s_report.data, s_report.size, NULL, 0);
    pthread_mutex_unlock (&s_report.mutex);
    return report;
}

//  ---------------------------------------------------------------------------
//  From the peers

static bool
s_is_event (int type)
{
    return type >= PROTO_EVENT_JOINED && type <= PROTO_EVENT_CLOSED;
}

//  One message from a peer of the ROUTER (from, in frame), all but events
//  handled here. Returns the event, decoded, for the loop to deliver
//  (NULL: none).
static proto_msg_t *
s_from_peer (const ident_t *to_peer, zmq_msg_t *frame, const void *data, size_t size)
{
    ident_t from = *to_peer;
    tap_message (TAP_IN, "backend peer", data, size);
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id)) {
        log_warn ("a peer sent something that is no proto message (%zu bytes)", size);
        return NULL;
    }
    const char *name = proto_type_name (type)? proto_type_name (type): "message";
    bool is_request = proto_reply_type (type) != 0;
    //  Its role is the cert zauth admitted it with (bus.h): answers and
    //  events come from shards only (the reaper's report aside), so no
    //  other key can answer a call meant for a shard or speak to sockets.
    const char *role = bus_role (frame);
    if (!is_request && !bus_is (role, BUS_SHARD)
    &&  !(type == PROTO_METRICS_REPLY && bus_is (role, BUS_REAPER))) {
        log_warn ("refused a %s from a %s key: only shards send those", name,
                  role? role: "keyless");
        return NULL;
    }
    if (!is_request && !s_is_event (type) && type != PROTO_METRICS_REPLY) {
        pending_reply (data, size, &from);      //  decoded there, when it is awaited
        return NULL;
    }
    char why [PROTO_WHY_MAX];
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    if (!msg) {
        log_warn ("refused a %s from a peer: %s", name, why);
        s_peer_error (&from, is_request? id: 0, NULL, 400, why);
        return NULL;
    }
    if (msg->type == PROTO_METRICS_REPLY) {
        //  A shard's answer to our ask, or the reaper's report, unasked.
        if (strcmp (msg->metrics_reply.daemon, "reaper") == 0)
            s_keep_report (data, size);
        else
            pending_reply (data, size, &from);
    }
    else
    if (!bus_may_send (role, msg)) {
        log_warn ("refused a %s from a %s key", name, role? role: "keyless");
        s_peer_error (&from, msg->request_id, msg->trace_id, 403, "this key may not send that");
    }
    else
    if (msg->type == PROTO_SHARD_HELLO) {
        const char *address = zmq_msg_gets (frame, "Peer-Address");
        shards_hello (&from, address? address: "", &msg->shard_hello);
    }
    else
    if (s_is_event (msg->type)) {
        atomic_fetch_add (&gateway_metrics.events, 1);
        return msg;
    }
    else
    if (proto_room_of (msg) && msg->request_id)
        pending_forward (msg, ORIGIN_PEER, &from, 0, NULL, NULL);
    else {
        log_warn ("a peer sent a %s, which the gateway's backend does not serve", name);
        s_peer_error (&from, msg->request_id, msg->trace_id, 400,
                      "the gateway's backend serves only room requests");
    }
    proto_msg_destroy (&msg);
    return NULL;
}

//  One message of a frame from a peer, through proto_each.
typedef struct {
    const ident_t *from;
    zmq_msg_t *frame;
    links_deliver_fn *deliver;
} from_peer_t;

static void
s_from_peer_each (const void *data, size_t size, void *arg)
{
    from_peer_t *peer = arg;
    proto_msg_t *event = s_from_peer (peer->from, peer->frame, data, size);
    if (event)
        peer->deliver (event);
}

bool
links_from_peer (links_deliver_fn *deliver)
{
    parts_t parts;
    if (!s_recv (s_self.router_h, &parts))
        return false;
    ident_t from;
    if (parts.count != 2 || !s_ident (&parts.part [0], &from))
        log_warn ("a peer sent a message of %d frames; one is expected", parts.count - 1);
    else {
        //  A shard sends what one turn made for us in one frame (roomd's
        //  links_flush): the messages are handled in the order they came.
        from_peer_t peer = { &from, &parts.part [1], deliver };
        proto_each (zmq_msg_data (&parts.part [1]), zmq_msg_size (&parts.part [1]),
                    s_from_peer_each, &peer);
    }
    s_parts_close (&parts);
    return true;
}

//  ---------------------------------------------------------------------------
//  From stored, and this run's beats

//  Begin a new run: a new incarnation, not known to stored yet.
static void
s_new_run (void)
{
    ids_uuid (s_self.incarnation);
    s_self.run++;
    s_self.run_known = false;
    pthread_mutex_lock (&s_run_lock);
    memcpy (s_run_copy, s_self.incarnation, sizeof s_run_copy);
    pthread_mutex_unlock (&s_run_lock);
}

//  stored's answer to a beat of run number run. A 410 says this run was
//  declared dead (it was stalled, or cut off from stored, for longer than
//  the reaper's GATEWAY_TIMEOUT_S): its connections were cleared and the
//  shards no longer count its sockets, which would hear nothing more. So
//  every socket is closed with 1012 and a reason, its client reconnects
//  and joins again with sinceSeq, and the gateway goes on as a new run,
//  whose records the reaper never takes for the old one's.
static void
s_beaten (const void *data, size_t size, uint64_t run)
{
    if (run != s_self.run)
        return;                         //  an earlier run's: that one is over
    proto_msg_t *reply = proto_decode (data, size, NULL, 0);
    if (reply && reply->type == PROTO_OK)
        s_self.run_known = true;
    else
    if (reply && reply->type == PROTO_ERROR && reply->error.status == 410) {
        char old [IDS_UUID_SIZE];
        memcpy (old, s_self.incarnation, sizeof old);
        s_new_run ();
        s_self.run_lost = true;
        log_error ("stored refused the beat of this gateway's run %s (%s): closing its "
                   "sockets (1012) so that their clients join again; now run %s", old,
                   reply->error.reason, s_self.incarnation);
    }
    else
        log_warn ("stored answered a beat with %s", reply? proto_type_name (reply->type)
                                                           : "something garbled");
    proto_msg_destroy (&reply);
}

bool
links_from_stored (void)
{
    parts_t parts;
    if (!s_recv (s_self.stored_h, &parts))
        return false;
    //  The reply is the last frame.
    const void *data = zmq_msg_data (&parts.part [parts.count - 1]);
    size_t size = zmq_msg_size (&parts.part [parts.count - 1]);
    tap_message (TAP_IN, "stored", data, size);
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id) == 0 && (id & BEAT_ID))
        s_beaten (data, size, id & ~BEAT_ID);
    else
        pending_reply (data, size, NULL);
    s_parts_close (&parts);
    return true;
}

void
links_watch (void)
{
    //  A link to stored that drops takes the answers to what was sent on
    //  it: those calls fail now, not at their timeout.
    while (monitor_event (s_self.stored_monitor)) {
        size_t failed = pending_fail_stored ();
        if (failed)
            log_warn ("the link to stored went down: %zu calls in flight failed (503)", failed);
    }
}

//  Tell stored this run is alive. A run that stops beating (it died with
//  its sockets) is found by the reaper, which clears what it left behind;
//  so is the run a restart of this GATEWAY_ID replaced (first). Each beat
//  is answered (s_beaten).
void
links_beat (void)
{
    proto_msg_t beat = { .type = PROTO_GATEWAY_BEAT, .request_id = BEAT_ID | s_self.run,
        .gateway_beat = { .gateway_id = gateway_config.gateway_id,
                          .incarnation = s_self.incarnation, .at_ms = clock_now_ms (),
                          .first = !s_self.run_known } };
    msgpack_sbuffer_clear (&s_self.buffer);
    if (proto_encode (&beat, &s_self.buffer) == 0)
        links_to_stored (s_self.buffer.data, s_self.buffer.size);
}

bool
links_run_lost (void)
{
    bool lost = s_self.run_lost;
    s_self.run_lost = false;
    return lost;
}

const char *
links_run (void)
{
    return s_self.incarnation;
}

size_t
links_incarnation (char *out, size_t size)
{
    pthread_mutex_lock (&s_run_lock);
    snprintf (out, size, "%s", s_run_copy);
    pthread_mutex_unlock (&s_run_lock);
    return strlen (out);
}

//  ---------------------------------------------------------------------------
//  Start and stop

static zsock_t *
s_socket (int type, int hwm)
{
    zsock_t *socket = zsock_new (type);
    if (!socket) {
        log_error ("cannot make a ZeroMQ socket: %s", zmq_strerror (zmq_errno ()));
        return NULL;
    }
    zsock_set_linger (socket, 0);
    zsock_set_sndhwm (socket, hwm);
    zsock_set_rcvhwm (socket, hwm);
    return socket;
}

int
links_start (void)
{
    msgpack_sbuffer_init (&s_self.buffer);
    char tap_name [PROTO_ID_MAX + 16];
    snprintf (tap_name, sizeof tap_name, "gateway %s", gateway_config.gateway_id);
    if (tap_open (tap_name))
        return -1;
    s_self.router = s_socket (ZMQ_ROUTER, PEER_HWM);
    s_self.stored = s_socket (ZMQ_DEALER, STORED_HWM);
    if (!s_self.router || !s_self.stored)
        return -1;
    //  A send to a peer that is gone fails (and is answered 503) rather
    //  than vanishing.
    zsock_set_router_mandatory (s_self.router, 1);
    zsock_set_immediate (s_self.stored, 1);
    zsock_set_heartbeat_ivl (s_self.stored, 1000);
    zsock_set_heartbeat_timeout (s_self.stored, 3000);
    if (bus_server (s_self.router) || bus_client (s_self.stored, BUS_STORED))
        return -1;
    s_self.router_monitor = monitor_new (s_self.router, "shard backend");
    s_self.stored_monitor = monitor_watch (s_self.stored, "stored", ZMQ_EVENT_DISCONNECTED);
    if (zsock_bind (s_self.router, "%s", gateway_config.backend_endpoint) < 0) {
        log_error ("cannot bind the shard backend to %s: %s", gateway_config.backend_endpoint,
                   zmq_strerror (zmq_errno ()));
        return -1;
    }
    if (zsock_connect (s_self.stored, "%s", gateway_config.stored_endpoint)) {
        log_error ("bad STORED_ENDPOINT %s", gateway_config.stored_endpoint);
        return -1;
    }
    s_self.router_h = zsock_resolve (s_self.router);
    s_self.stored_h = zsock_resolve (s_self.stored);
    //  With ZMQ_IMMEDIATE the socket is writable once stored's link is up:
    //  wait a moment for it, so the first requests do not fail for a
    //  connect still under way. A stored that is down is not fatal.
    zmq_pollitem_t item = { s_self.stored_h, 0, ZMQ_POLLOUT, 0 };
    if (zmq_poll (&item, 1, 1000) <= 0)
        log_warn ("stored at %s does not answer yet", gateway_config.stored_endpoint);
    s_new_run ();
    return 0;
}

int
links_handles (void **handles, int max)
{
    assert (max >= 3);
    int count = 0;
    handles [count++] = s_self.router_h;
    handles [count++] = s_self.stored_h;
    if (s_self.stored_monitor)
        handles [count++] = zsock_resolve (monitor_socket (s_self.stored_monitor));
    return count;
}

void
links_stop (void)
{
    //  A moment for the last posts (conn-del of the sockets that just
    //  closed) to leave; zsys_shutdown waits for them at exit.
    if (s_self.router)
        zsock_set_linger (s_self.router, 500);
    if (s_self.stored)
        zsock_set_linger (s_self.stored, 500);
    tap_close ();
    monitor_destroy (&s_self.router_monitor);
    monitor_destroy (&s_self.stored_monitor);
    zsock_destroy (&s_self.router);
    zsock_destroy (&s_self.stored);
    msgpack_sbuffer_destroy (&s_self.buffer);
    pthread_mutex_lock (&s_report.mutex);
    free (s_report.data);
    s_report.data = NULL;
    pthread_mutex_unlock (&s_report.mutex);
}
