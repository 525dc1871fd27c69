/*  =========================================================================
    backend.c - the gateway's ZeroMQ actor

    One thread owns every ZeroMQ socket that leaves the process, because
    ZeroMQ sockets are not thread-safe:

      - a ROUTER bound to GATEWAY_BACKEND_ENDPOINT. roomd shards connect
        DEALERs to it and register with a heartbeat (shards.c), and send
        their replies and events here. Other peers (the reaper) may send
        room requests here too: they are forwarded like a worker's and the
        reply goes back to that peer.
      - a DEALER to stored, with ZMQ_IMMEDIATE so that a send fails at once
        when stored is down (the caller gets 503 instead of a timeout).
      - an inproc ROUTER that civetweb's worker threads reach through a
        DEALER each (calls.c).

    A request from a worker or a peer is decoded (to read its room),
    given an id of ours, and sent to stored or to the room's shard; the
    pending table (proto's requests.h) maps our id back to who asked and
    what they called it.
    Replies to workers carry the worker's id in a frame of their own, so
    the reply's bytes are passed on untouched.

    Invariants:
      - only this thread touches router, stored, inproc, the shard table
        (shards.c) and the pending table;
      - every pending entry is answered exactly once: by its reply, by a
        503 when its send fails or its shard goes, or by a 503 when it has
        waited REQUEST_TIMEOUT_MS (the table expires in deadline order);
      - a socket's join reply is applied to the room index (sockets.c) on
        this thread before any later message from the same shard is read,
        so the joiner misses no event that follows its join.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <czmq.h>
#include "backend.h"
#include "clock.h"
#include "ids.h"
#include "log.h"
#include "monitor.h"
#include "requests.h"
#include "tap.h"
#include "bus.h"
#include "wsframe.h"

#define PEER_HWM            100000      //  per shard link, each way
#define STORED_HWM          100000
#define DRAIN_MAX           256         //  messages read from one socket before the others' turn
#define GATEWAY_BEAT_MS     1000        //  how often stored hears we are alive
#define FLUSH_EVERY_US      1000        //  longest a frame waits while work keeps coming
#define BEAT_ID             (1ULL << 63)    //  a beat's request id: this bit and the run's number
#define RUN_GONE_REASON     "the gateway lost its rooms; reconnect and join again with sinceSeq"

typedef enum {
    FROM_WORKER,                        //  a worker waits: answer on inproc
    FROM_PEER,                          //  a peer of the ROUTER waits: answer there
    FROM_POST,                          //  nobody waits: log failures
    FROM_LOOP                           //  an owned socket's action: call its then
} origin_t;

typedef struct pending pending_t;
struct pending {
    uint64_t id;                        //  our request id (the table's key)
    origin_t origin;
    ident_t from;                       //  the worker's or peer's identity
    uint64_t request_id;                //  what the asker called it
    bool to_stored;                     //  else to_shard
    ident_t to_shard;                   //  the shard it went to, whose reply we accept
    char shard_id [PROTO_ID_MAX + 1];
    uint16_t type;
    char trace [PROTO_TRACE_MAX + 1];
    proto_msg_t *join;                  //  a socket's room-join, kept for its reply
    void *parked;                       //  the encoded request, not sent: its shard's link was
    size_t parked_size;                 //  down (backend_resend_parked sends it when it is back)
    backend_then_fn *then;              //  FROM_LOOP: what to call with the reply
    void *then_arg;
    int expected;                       //  FROM_LOOP: the reply type that is success
};

static __thread bool s_on_thread;      //  this is the backend thread

static void s_beaten (const void *data, size_t size, uint64_t run);

static struct {
    pthread_t thread;
    bool started;
    atomic_bool stopping;               //  the thread should end
    atomic_bool cancelled;              //  calls should give up (shutdown)
    zsock_t *router, *stored, *inproc;
    monitor_t *router_monitor;          //  with ZMQ_MONITOR=1
    monitor_t *stored_monitor;          //  logs with ZMQ_MONITOR=1; says when the link drops
    void *router_h, *stored_h, *inproc_h;
    requests_t *pending;                //  our id -> pending_t, by deadline
    uint64_t next_id;
    msgpack_sbuffer buffer;
    //  This run of the gateway (proto.h, gateway-beat): its incarnation,
    //  a new one at start and whenever stored says the run is dead; its
    //  number, so that a late answer to an earlier run's beat is known;
    //  and whether stored has taken one of its beats yet.
    char incarnation [IDS_UUID_SIZE];
    uint64_t run;
    bool run_known;
} s_self;

//  A copy of the incarnation for other threads (/healthz).
static pthread_mutex_t s_run_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_run_copy [IDS_UUID_SIZE];

//  ---------------------------------------------------------------------------
//  Sending

//  Send parts as one message, without blocking. Returns 0 or -1 (errno).
int
backend_send_parts (void *handle, const void *const *data, const size_t *size, int count)
{
    if (handle == s_self.router_h)      //  a peer's (the workers' inproc is ours)
        tap_message (TAP_OUT, "backend peer", data [count - 1], size [count - 1]);
    for (int i = 0; i < count; i++)
        if (zmq_send (handle, data [i], size [i],
                      ZMQ_DONTWAIT | (i + 1 < count? ZMQ_SNDMORE: 0)) < 0)
            return -1;      //  the first part fails or none: ZeroMQ sends whole messages
    return 0;
}

static int
s_encode (const proto_msg_t *msg)
{
    msgpack_sbuffer_clear (&s_self.buffer);
    return proto_encode (msg, &s_self.buffer);
}

//  Answer whoever asked with the encoded reply in data (its request id
//  is ours or theirs; a worker reads its id from the frame before).
static void
s_answer (const pending_t *pending, const void *data, size_t size)
{
    if (pending->origin == FROM_WORKER) {
        const void *parts [] = { pending->from.data, &pending->request_id, data };
        size_t sizes [] = { pending->from.size, sizeof pending->request_id, size };
        if (backend_send_parts (s_self.inproc_h, parts, sizes, 3))
            log_write (LOG_LEVEL_DEBUG, pending->trace, "a worker left before its %s was answered",
                       proto_type_name (pending->type));
    }
    else
    if (pending->origin == FROM_PEER) {
        const void *parts [] = { pending->from.data, data };
        size_t sizes [] = { pending->from.size, size };
        if (backend_send_parts (s_self.router_h, parts, sizes, 2))
            log_write (LOG_LEVEL_DEBUG, pending->trace, "a peer left before its %s was answered",
                       proto_type_name (pending->type));
    }
}

//  Answer an asker with an error of our own.
static void
s_answer_error (const pending_t *pending, uint16_t status, const char *reason)
{
    if (pending->origin == FROM_POST) {
        log_write (LOG_LEVEL_WARN, pending->trace, "a %s was lost: %s",
                   proto_type_name (pending->type), reason);
        return;
    }
    if (pending->origin == FROM_LOOP) {
        pending->then (pending->then_arg, NULL, status, reason);
        return;
    }
    proto_msg_t error = { .type = PROTO_ERROR, .error = { status, reason } };
    error.request_id = pending->origin == FROM_PEER? pending->request_id: 0;
    snprintf (error.trace_id, sizeof error.trace_id, "%s", pending->trace);
    if (s_encode (&error) == 0)
        s_answer (pending, s_self.buffer.data, s_self.buffer.size);
}

//  ---------------------------------------------------------------------------
//  The pending table

static pending_t *
s_pending_new (origin_t origin, const ident_t *from, const proto_msg_t *request)
{
    pending_t *pending = calloc (1, sizeof *pending);
    assert (pending);
    pending->id = ++s_self.next_id;
    pending->origin = origin;
    if (from)
        pending->from = *from;
    pending->request_id = request->request_id;
    pending->type = request->type;
    snprintf (pending->trace, sizeof pending->trace, "%s", request->trace_id);
    requests_insert (s_self.pending, pending->id, pending,
                     clock_mono_ms () + gateway_config.request_timeout_ms);
    return pending;
}

//  Take pending out of the table (when it is still there) and free it.
static void
s_pending_remove (pending_t **pending_p)
{
    pending_t *pending = *pending_p;
    requests_take (s_self.pending, pending->id);
    proto_msg_destroy (&pending->join);
    free (pending->parked);
    free (pending);
    *pending_p = NULL;
}

static void
s_pending_fail (pending_t **pending_p, uint16_t status, const char *reason)
{
    s_answer_error (*pending_p, status, reason);
    s_pending_remove (pending_p);
}

//  (The walks below may fail entries as they go, and an asker's then may
//  send again meanwhile: the table's walk allows both.)
void
backend_fail_shard (const char *shard_id, const char *why, bool sent_only)
{
    pending_t *pending = requests_first (s_self.pending);
    for (; pending; pending = requests_next (s_self.pending)) {
        if (!pending->to_stored && strcmp (pending->shard_id, shard_id) == 0
        &&  !(sent_only && pending->parked)) {
            char reason [PROTO_REASON_MAX];
            snprintf (reason, sizeof reason, "room shard %s %s", shard_id, why);
            s_pending_fail (&pending, 503, reason);
        }
    }
}

void
backend_resend_parked (const shard_t *shard)
{
    size_t sent = 0;
    pending_t *pending = requests_first (s_self.pending);
    for (; pending; pending = requests_next (s_self.pending)) {
        if (pending->parked && !pending->to_stored && strcmp (pending->shard_id, shard->id) == 0) {
            const void *parts [] = { shard->identity.data, pending->parked };
            size_t sizes [] = { shard->identity.size, pending->parked_size };
            if (backend_send_parts (s_self.router_h, parts, sizes, 2) == 0) {
                pending->to_shard = shard->identity;
                free (pending->parked);
                pending->parked = NULL;
                sent++;
            }
            else {
                char reason [PROTO_REASON_MAX];
                snprintf (reason, sizeof reason, "room shard %s is unreachable", shard->id);
                s_pending_fail (&pending, 503, reason);
            }
        }
    }
    if (sent)
        log_info ("room shard %s is back: %zu requests that waited for it sent", shard->id, sent);
}

static void
s_pending_expire (void)
{
    int64_t now = clock_mono_ms ();
    pending_t *pending;
    while ((pending = requests_take_overdue (s_self.pending, now, NULL))) {
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "%s did not answer within %lld ms",
                  pending->to_stored? "stored": pending->shard_id,
                  (long long) gateway_config.request_timeout_ms);
        log_write (LOG_LEVEL_WARN, pending->trace, "%s: %s", proto_type_name (pending->type),
                   reason);
        s_pending_fail (&pending, 503, reason);
    }
}

//  ---------------------------------------------------------------------------
//  Requests

static bool
s_is_stored_type (int type)
{
    return type == PROTO_ROOM_PUT || type == PROTO_ROOM_GET || type == PROTO_GEO_SEARCH
        || type == PROTO_HISTORY || type == PROTO_CONN_PUT || type == PROTO_CONN_DEL
        || type == PROTO_CONN_LIST || type == PROTO_STORE_STATS || type == PROTO_METRICS;
}

//  Send request on to stored or its room's shard, under an id of ours
//  (written into request); or answer the asker at once when that cannot
//  be done. then, then_arg and expected are FROM_LOOP's.
static void
s_forward (proto_msg_t *request, origin_t origin, const ident_t *from,
           backend_then_fn *then, void *then_arg, int expected)
{
    pending_t *pending = s_pending_new (origin, from, request);
    pending->then = then;
    pending->then_arg = then_arg;
    pending->expected = expected;
    //  (No event comes this way: a room here is a room request's.)
    const char *room_id = proto_room_of (request);
    const shard_t *shard = NULL;
    if (request->type == PROTO_METRICS && request->metrics.shard_id && origin != FROM_PEER) {
        //  One shard's metrics: it is asked by name, not by room.
        shard = shards_find (request->metrics.shard_id);
        if (!shard) {
            s_pending_fail (&pending, 404, "no such live shard");
            return;
        }
        pending->to_shard = shard->identity;
        memcpy (pending->shard_id, shard->id, sizeof pending->shard_id);
    }
    else
    if (s_is_stored_type (request->type) && origin != FROM_PEER)
        pending->to_stored = true;
    else
    if (room_id) {
        shard = shards_owner (room_id);
        if (!shard) {
            log_write (LOG_LEVEL_WARN, request->trace_id, "%s for room %s: no shard is live",
                       proto_type_name (request->type), room_id);
            s_pending_fail (&pending, 503, "no room shard is available");
            return;
        }
        pending->to_shard = shard->identity;
        memcpy (pending->shard_id, shard->id, sizeof pending->shard_id);
    }
    else {
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "the gateway's backend does not route %s",
                  proto_type_name (request->type));
        s_pending_fail (&pending, 400, reason);
        return;
    }
    request->request_id = pending->id;
    //  A socket's record names the run that holds it (conn-put, and a
    //  join's, which its shard writes); workers do not know it (it changes
    //  when a run is declared dead), this thread does.
    const char **incarnation = proto_incarnation_of (request, gateway_config.gateway_id);
    if (incarnation)
        *incarnation = s_self.incarnation;
    if (s_encode (request)) {
        //  It decoded, so it encodes: this would be a bug in proto.
        log_write (LOG_LEVEL_ERROR, request->trace_id, "a %s does not encode again",
                   proto_type_name (request->type));
        s_pending_fail (&pending, 500, "the request could not be passed on");
        return;
    }
    //  A socket's join is finished here when its reply comes (see the
    //  header): keep a copy of it, decoded from what is sent.
    if (request->type == PROTO_ROOM_JOIN && request->room_join.conn_id
    &&  (origin == FROM_WORKER || origin == FROM_LOOP)) {
        pending->join = proto_decode (s_self.buffer.data, s_self.buffer.size, NULL, 0);
        assert (pending->join);
    }
    int rc;
    if (pending->to_stored) {
        tap_message (TAP_OUT, "stored", s_self.buffer.data, s_self.buffer.size);
        rc = zmq_send (s_self.stored_h, s_self.buffer.data, s_self.buffer.size, ZMQ_DONTWAIT) < 0;
    }
    else {
        const void *parts [] = { shard->identity.data, s_self.buffer.data };
        size_t sizes [] = { shard->identity.size, s_self.buffer.size };
        rc = backend_send_parts (s_self.router_h, parts, sizes, 2);
    }
    if (rc && !pending->to_stored && errno == EHOSTUNREACH) {
        //  The shard's link is gone but the shard may not be: it reconnects
        //  at once (after this gateway was stopped, every link is), and its
        //  hello sends what waited (backend_resend_parked). Gone for good,
        //  the shard is dropped, or the request times out, as any other.
        pending->parked = malloc (s_self.buffer.size);
        assert (pending->parked);
        memcpy (pending->parked, s_self.buffer.data, s_self.buffer.size);
        pending->parked_size = s_self.buffer.size;
        log_write (LOG_LEVEL_DEBUG, request->trace_id, "%s waits for room shard %s's link",
                   proto_type_name (request->type), shard->id);
        return;
    }
    if (rc) {
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "%s%s is unreachable",
                  pending->to_stored? "stored": "room shard ", pending->to_stored? "": shard->id);
        log_write (LOG_LEVEL_WARN, request->trace_id, "%s: %s", proto_type_name (request->type),
                   reason);
        s_pending_fail (&pending, 503, reason);
        return;
    }
    log_write (LOG_LEVEL_DEBUG, request->trace_id, "%s -> %s", proto_type_name (request->type),
               pending->to_stored? "stored": shard->id);
}

//  A reply from stored (from == NULL) or from a peer of the ROUTER.
static void
s_reply (const void *data, size_t size, const ident_t *from)
{
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id) || id == 0) {
        log_warn ("a reply from %s has no request id", from? "a shard": "stored");
        return;
    }
    if (!from && (id & BEAT_ID)) {
        s_beaten (data, size, id & ~BEAT_ID);
        return;
    }
    pending_t *pending = requests_lookup (s_self.pending, id);
    if (!pending) {
        log_debug ("a late %s from %s", proto_type_name (type), from? "a shard": "stored");
        return;
    }
    //  Only whoever we asked may answer.
    if (from? pending->to_stored || pending->to_shard.size != from->size
                || memcmp (pending->to_shard.data, from->data, from->size) != 0
             : !pending->to_stored) {
        log_warn ("a %s answered a request it was not sent", proto_type_name (type));
        return;
    }
    if (pending->join || pending->origin != FROM_WORKER) {
        char why [PROTO_WHY_MAX];
        proto_msg_t *reply = proto_decode (data, size, why, sizeof why);
        if (!reply) {
            log_write (LOG_LEVEL_WARN, pending->trace, "a garbled %s: %s",
                       proto_type_name (type), why);
            s_pending_fail (&pending, 500, "the room shard answered with a garbled reply");
            return;
        }
        if (pending->join && reply->type == PROTO_JOIN_REPLY)
            sockets_join_done (&pending->join->room_join, &reply->join_reply);
        if (pending->origin == FROM_PEER) {
            reply->request_id = pending->request_id;
            if (s_encode (reply) == 0)
                s_answer (pending, s_self.buffer.data, s_self.buffer.size);
        }
        else
        //  (A conn-del of a socket the reaper cleared already is no failure.)
        if (pending->origin == FROM_POST && reply->type == PROTO_ERROR
        &&  !(pending->type == PROTO_CONN_DEL && reply->error.status == 404))
            log_write (LOG_LEVEL_WARN, pending->trace, "%s failed: %u %s",
                       proto_type_name (pending->type), reply->error.status, reply->error.reason);
        if (pending->origin == FROM_WORKER)
            s_answer (pending, data, size);
        if (pending->origin == FROM_LOOP) {
            int status = 0;
            char reason [PROTO_REASON_MAX];
            if (backend_judge (reply, pending->expected, &status, reason, sizeof reason))
                pending->then (pending->then_arg, reply, 0, NULL);
            else
                pending->then (pending->then_arg, NULL, status, reason);
        }
        proto_msg_destroy (&reply);
    }
    else
        s_answer (pending, data, size);
    s_pending_remove (&pending);
}

//  ---------------------------------------------------------------------------
//  Reading the sockets

bool
backend_recv (void *handle, parts_t *parts)
{
    parts->count = 0;
    for (;;) {
        zmq_msg_t scratch, *part = parts->count < BACKEND_PARTS_MAX? &parts->part [parts->count]: &scratch;
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

void
backend_parts_close (parts_t *parts)
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

//  Refuse a message that would not decode: answer its request id if it
//  has one, so the sender does not wait for its timeout.
static void
s_refuse (void *handle, const ident_t *from, const void *data, size_t size, const char *why,
          bool to_worker)
{
    uint16_t type;
    uint64_t id = 0;
    if (proto_peek (data, size, &type, &id) == 0 && id) {
        proto_msg_t error = { .type = PROTO_ERROR, .request_id = to_worker? 0: id,
                              .error = { 400, why } };
        if (s_encode (&error) == 0) {
            const void *parts [] = { from->data, &id, s_self.buffer.data };
            size_t sizes [] = { from->size, sizeof id, s_self.buffer.size };
            if (to_worker)
                backend_send_parts (handle, parts, sizes, 3);
            else {
                parts [1] = s_self.buffer.data;
                sizes [1] = s_self.buffer.size;
                backend_send_parts (handle, parts, sizes, 2);
            }
        }
    }
}

static bool
s_from_workers (void)
{
    parts_t parts;
    if (!backend_recv (s_self.inproc_h, &parts))
        return false;
    ident_t from;
    if (parts.count == 2 && s_ident (&parts.part [0], &from)) {
        const void *data = zmq_msg_data (&parts.part [1]);
        size_t size = zmq_msg_size (&parts.part [1]);
        char why [PROTO_WHY_MAX];
        proto_msg_t *request = proto_decode (data, size, why, sizeof why);
        if (request) {
            s_forward (request, request->request_id? FROM_WORKER: FROM_POST, &from, NULL, NULL, 0);
            proto_msg_destroy (&request);
        }
        else {
            log_error ("a worker's request does not decode: %s", why);
            s_refuse (s_self.inproc_h, &from, data, size, why, true);
        }
    }
    backend_parts_close (&parts);
    return true;
}

static bool
s_is_event (int type)
{
    return type >= PROTO_EVENT_JOINED && type <= PROTO_EVENT_CLOSED;
}

//  The reaper's last metrics report (it sends one, unasked, after each
//  pass and every second besides), kept encoded for the workers that
//  render /metrics, and when it came: a reaper not heard from for
//  REAPER_TIMEOUT_S is down (it died, or cannot reach us).
static struct {
    pthread_mutex_t mutex;
    void *data;
    size_t size;
    int64_t at_ms;                      //  monotonic
} s_report = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0 };

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
backend_reaper_up (void)
{
    pthread_mutex_lock (&s_report.mutex);
    bool up = s_report.data
           && clock_mono_ms () - s_report.at_ms <= gateway_config.reaper_timeout_s * 1000;
    pthread_mutex_unlock (&s_report.mutex);
    return up;
}

proto_msg_t *
backend_reaper_report (void)
{
    proto_msg_t *report = NULL;
    pthread_mutex_lock (&s_report.mutex);
    if (s_report.data)
        report = proto_decode (s_report.data, s_report.size, NULL, 0);
    pthread_mutex_unlock (&s_report.mutex);
    return report;
}

//  Answer a peer's request (none for what asks for no reply) with an error.
static void
s_peer_error (const ident_t *from, const proto_msg_t *request, uint16_t status,
              const char *reason)
{
    if (!request->request_id)
        return;
    proto_msg_t error = { .type = PROTO_ERROR, .request_id = request->request_id,
                          .error = { status, reason } };
    memcpy (error.trace_id, request->trace_id, sizeof error.trace_id);
    if (s_encode (&error) == 0) {
        const void *out [] = { from->data, s_self.buffer.data };
        size_t sizes [] = { from->size, s_self.buffer.size };
        backend_send_parts (s_self.router_h, out, sizes, 2);
    }
}

static bool
s_from_peers (void)
{
    parts_t parts;
    if (!backend_recv (s_self.router_h, &parts))
        return false;
    ident_t from;
    if (parts.count != 2 || !s_ident (&parts.part [0], &from)) {
        log_warn ("a peer sent a message of %d frames; one is expected", parts.count - 1);
        backend_parts_close (&parts);
        return true;
    }
    const void *data = zmq_msg_data (&parts.part [1]);
    size_t size = zmq_msg_size (&parts.part [1]);
    tap_message (TAP_IN, "backend peer", data, size);
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id)) {
        log_warn ("a peer sent something that is no proto message (%zu bytes)", size);
        backend_parts_close (&parts);
        return true;
    }
    bool is_request = proto_reply_type (type) != 0;
    //  Its role is the cert zauth admitted it with (bus.h): answers and
    //  events come from shards only (the reaper's report aside), so no
    //  other key can answer a call meant for a shard or speak to sockets.
    const char *role = bus_role (&parts.part [1]);
    if (!is_request && !bus_is (role, BUS_SHARD)
    &&  !(type == PROTO_METRICS_REPLY && bus_is (role, BUS_REAPER))) {
        log_warn ("refused a %s from a %s key: only shards send those",
                  proto_type_name (type)? proto_type_name (type): "message",
                  role? role: "keyless");
        backend_parts_close (&parts);
        return true;
    }
    if (type == PROTO_METRICS_REPLY) {
        //  A shard's answer to our ask, or the reaper's report, unasked.
        char why [PROTO_WHY_MAX];
        proto_msg_t *report = proto_decode (data, size, why, sizeof why);
        if (report && strcmp (report->metrics_reply.daemon, "reaper") == 0)
            s_keep_report (data, size);
        else
        if (report)
            s_reply (data, size, &from);
        else
            log_warn ("refused a metrics reply: %s", why);
        proto_msg_destroy (&report);
        backend_parts_close (&parts);
        return true;
    }
    if (!is_request && !s_is_event (type)) {
        s_reply (data, size, &from);
        backend_parts_close (&parts);
        return true;
    }
    char why [PROTO_WHY_MAX];
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    if (!msg) {
        log_warn ("refused a %s from a peer: %s", proto_type_name (type)? proto_type_name (type):
                  "message", why);
        s_refuse (s_self.router_h, &from, data, size, why, false);
    }
    else
    if (!bus_may_send (role, msg)) {
        log_warn ("refused a %s from a %s key", proto_type_name (msg->type), role? role: "keyless");
        s_peer_error (&from, msg, 403, "this key may not send that");
        proto_msg_destroy (&msg);
    }
    else
    if (msg->type == PROTO_SHARD_HELLO) {
        const char *address = zmq_msg_gets (&parts.part [1], "Peer-Address");
        shards_hello (s_self.router_h, &s_self.buffer, &from, address? address: "",
                      &msg->shard_hello);
        proto_msg_destroy (&msg);
    }
    else
    if (s_is_event (msg->type)) {
        atomic_fetch_add (&gateway_metrics.events, 1);
        sockets_deliver (msg);
        proto_msg_destroy (&msg);
    }
    else
    if (proto_room_of (msg) && msg->request_id) {   //  (events were delivered above)
        s_forward (msg, FROM_PEER, &from, NULL, NULL, 0);
        proto_msg_destroy (&msg);
    }
    else {
        log_warn ("a peer sent a %s, which the gateway's backend does not serve",
                  proto_type_name (msg->type));
        s_peer_error (&from, msg, 400, "the gateway's backend serves only room requests");
        proto_msg_destroy (&msg);
    }
    backend_parts_close (&parts);
    return true;
}

//  The link to stored dropped (stored died or restarted): what is pending
//  there will not be answered.
static void
s_stored_lost (void)
{
    while (monitor_event (s_self.stored_monitor)) {
        size_t failed = 0;
        pending_t *pending = requests_first (s_self.pending);
        for (; pending; pending = requests_next (s_self.pending))
            if (pending->to_stored) {
                s_pending_fail (&pending, 503, "stored went away before it answered");
                failed++;
            }
        if (failed)
            log_warn ("the link to stored went down: %zu calls in flight failed (503)", failed);
    }
}

static bool
s_from_stored (void)
{
    parts_t parts;
    if (!backend_recv (s_self.stored_h, &parts))
        return false;
    //  The reply is the last frame.
    if (parts.count > 0)
        tap_message (TAP_IN, "stored", zmq_msg_data (&parts.part [parts.count - 1]),
                     zmq_msg_size (&parts.part [parts.count - 1]));
    if (parts.count > 0)
        s_reply (zmq_msg_data (&parts.part [parts.count - 1]),
                 zmq_msg_size (&parts.part [parts.count - 1]), NULL);
    backend_parts_close (&parts);
    return true;
}

//  ---------------------------------------------------------------------------
//  The thread

//  Tell stored this run is alive. A run that stops beating (it died with
//  its sockets) is found by the reaper, which clears what it left behind;
//  so is the run a restart of this GATEWAY_ID replaced (first). Each beat
//  is answered (s_beaten).
static void
s_beat (void)
{
    proto_msg_t beat = { .type = PROTO_GATEWAY_BEAT, .request_id = BEAT_ID | s_self.run,
        .gateway_beat = { .gateway_id = gateway_config.gateway_id,
                          .incarnation = s_self.incarnation, .at_ms = clock_now_ms (),
                          .first = !s_self.run_known } };
    if (s_encode (&beat) == 0) {
        tap_message (TAP_OUT, "stored", s_self.buffer.data, s_self.buffer.size);
        zmq_send (s_self.stored_h, s_self.buffer.data, s_self.buffer.size, ZMQ_DONTWAIT);
    }
}

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
        size_t closed = sockets_close_all (WSFRAME_RESTART, RUN_GONE_REASON);
        log_error ("stored refused the beat of this gateway's run %s (%s): closing its %zu "
                   "sockets (1012) so that their clients join again; now run %s", old,
                   reply->error.reason, closed, s_self.incarnation);
    }
    else
        log_warn ("stored answered a beat with %s", reply? proto_type_name (reply->type)
                                                           : "something garbled");
    proto_msg_destroy (&reply);
}

size_t
backend_incarnation (char *out, size_t size)
{
    pthread_mutex_lock (&s_run_lock);
    snprintf (out, size, "%s", s_run_copy);
    pthread_mutex_unlock (&s_run_lock);
    return strlen (out);
}

static void *
s_run (void *arg)
{
    (void) arg;
    s_on_thread = true;
    int64_t next_beat = 0, flushed_us = 0;
    while (!atomic_load (&s_self.stopping)) {
        if (clock_mono_ms () >= next_beat) {
            s_beat ();
            next_beat = clock_mono_ms () + GATEWAY_BEAT_MS;
        }
        int64_t wait = BACKEND_WAKE_MS;
        int64_t until = requests_wait (s_self.pending, clock_mono_ms ());
        if (until >= 0 && until < wait)
            wait = until;
        //  Owned sockets' frames are read and their actions begun in here.
        //  With frames to write it only looks, so they wait for no sleep.
        int work = loop_wait (loop_unwritten ()? 0: (int) wait);
        //  Peers first: their replies and events finish work already begun.
        int i, drained = 0;
        for (i = 0; i < DRAIN_MAX && s_from_peers (); i++)
            ;
        drained += i;
        for (i = 0; i < DRAIN_MAX && s_from_stored (); i++)
            ;
        drained += i;
        s_stored_lost ();
        for (i = 0; i < DRAIN_MAX && s_from_workers (); i++)
            ;
        drained += i;
        loop_resume ();
        //  Write what the owned sockets were queued once no more work is
        //  waiting, or at least every FLUSH_EVERY_US while it keeps coming:
        //  under load a write then carries many frames (a send on loopback
        //  costs as much as the receiver's whole TCP path, ./nearchat bench
        //  load fanout, perf), at a millisecond's latency at most.
        int64_t now_us = clock_mono_ns () / 1000;
        if (loop_unwritten () && (work + drained == 0 || now_us - flushed_us >= FLUSH_EVERY_US)) {
            loop_flush ();
            flushed_us = now_us;
        }
        loop_hurry (drained >= DRAIN_MAX);
        sockets_recoveries_resume ();
        s_pending_expire ();
        shards_check ();
    }
    //  Owned sockets are closed as civetweb closes its own: each one's
    //  leave and conn-del are posted, and go out with the workers' last.
    loop_close_all ();
    for (int i = 0; i < DRAIN_MAX && s_from_workers (); i++)
        ;
    //  Nobody will answer what is still pending.
    pending_t *pending;
    while ((pending = requests_take_overdue (s_self.pending, INT64_MAX, NULL)))
        s_pending_fail (&pending, 503, "the gateway is stopping");
    loop_resume ();                     //  the closes that waited for their actions
    loop_flush ();
    return NULL;
}

bool
backend_on_thread (void)
{
    return s_on_thread;
}

void
backend_request (proto_msg_t *request, int expected, backend_then_fn *then, void *then_arg)
{
    assert (s_on_thread);
    s_forward (request, then? FROM_LOOP: FROM_POST, NULL, then, then_arg, expected);
}

zsock_t *
backend_socket (int type, int hwm)
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
backend_start (void)
{
    assert (!s_self.started);
    msgpack_sbuffer_init (&s_self.buffer);
    s_self.pending = requests_new ();

    char tap_name [PROTO_ID_MAX + 16];
    snprintf (tap_name, sizeof tap_name, "gateway %s", gateway_config.gateway_id);
    if (tap_open (tap_name))
        return -1;
    s_self.router = backend_socket (ZMQ_ROUTER, PEER_HWM);
    s_self.stored = backend_socket (ZMQ_DEALER, STORED_HWM);
    s_self.inproc = backend_socket (ZMQ_ROUTER, PEER_HWM);
    if (!s_self.router || !s_self.stored || !s_self.inproc)
        return -1;
    //  A send to a peer that is gone fails (and is answered 503) rather
    //  than vanishing.
    zsock_set_router_mandatory (s_self.router, 1);
    zsock_set_immediate (s_self.stored, 1);
    zsock_set_heartbeat_ivl (s_self.stored, 1000);
    zsock_set_heartbeat_timeout (s_self.stored, 3000);
    zsock_set_router_mandatory (s_self.inproc, 1);
    if (bus_server (s_self.router) || bus_client (s_self.stored, BUS_STORED))
        return -1;
    s_self.router_monitor = monitor_new (s_self.router, "shard backend");
    //  A link to stored that drops takes the answers to what was sent on
    //  it: those calls fail then (s_stored_lost), not at their timeout.
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
    if (zsock_bind (s_self.inproc, BACKEND_INPROC) < 0) {
        log_error ("cannot bind %s: %s", BACKEND_INPROC, zmq_strerror (zmq_errno ()));
        return -1;
    }
    s_self.router_h = zsock_resolve (s_self.router);
    s_self.stored_h = zsock_resolve (s_self.stored);
    s_self.inproc_h = zsock_resolve (s_self.inproc);
    //  With ZMQ_IMMEDIATE the socket is writable once stored's link is up:
    //  wait a moment for it, so the first requests do not fail for a
    //  connect still under way. A stored that is down is not fatal.
    zmq_pollitem_t item = { s_self.stored_h, 0, ZMQ_POLLOUT, 0 };
    if (zmq_poll (&item, 1, 1000) <= 0)
        log_warn ("stored at %s does not answer yet", gateway_config.stored_endpoint);
    void *handles [] = { s_self.router_h, s_self.stored_h, s_self.inproc_h,
                         zsock_resolve (monitor_socket (s_self.stored_monitor)) };
    if (loop_start (handles, s_self.stored_monitor? 4: 3))
        return -1;
    s_new_run ();
    shards_reset ();
    atomic_store (&s_self.stopping, false);
    atomic_store (&s_self.cancelled, false);
    if (pthread_create (&s_self.thread, NULL, s_run, NULL)) {
        log_error ("cannot start the backend thread");
        return -1;
    }
    s_self.started = true;
    return 0;
}

void
backend_stop (void)
{
    atomic_store (&s_self.cancelled, true);
    atomic_store (&s_self.stopping, true);
    if (s_self.started) {
        pthread_join (s_self.thread, NULL);
        s_self.started = false;
    }
    backend_thread_exit ();
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
    zsock_destroy (&s_self.inproc);
    requests_destroy (&s_self.pending);
    msgpack_sbuffer_destroy (&s_self.buffer);
    loop_destroy ();
    pthread_mutex_lock (&s_report.mutex);
    free (s_report.data);
    s_report.data = NULL;
    pthread_mutex_unlock (&s_report.mutex);
}

void
backend_interrupt (void)
{
    atomic_store (&s_self.cancelled, true);
}

bool
backend_cancelled (void)
{
    return atomic_load (&s_self.cancelled);
}
