/*  =========================================================================
    batch.c - stored's loop: group commit

    Each turn of the loop drains what the ROUTER holds (up to batch_max
    writes): reads are answered at once from one read transaction, writes
    are queued. Then every queued write is applied in ONE write transaction,
    committed (LMDB fsyncs), and only then answered. An fsync costs about
    0.2 ms whether it covers one write or a thousand, so under load the
    batch grows by itself and durable throughput with it; with one client
    the batch is one write and latency is one fsync.

    Reads see what is committed, never a write that is not yet answered.

    When a commit fails because the map is full, the map is doubled and the
    batch applied again; when it fails otherwise, each write is tried in a
    transaction of its own so that one bad write cannot sink its neighbours.
    The TTL sweep runs between batches in bounded steps, so it delays a
    write by one step at most.
    =========================================================================
*/

#include <assert.h>
#include <stdarg.h>
#include <string.h>
#include "stored.h"
#include "clock.h"
#include "log.h"
#include "tap.h"
#include "bus.h"

#define ROUTING_MAX     8       //  frames before the payload we will echo back
#define GROW_AT_PERCENT 80      //  grow the map before it fills, not only after
#define BATCH_POLL_MAX_MS 200   //  longest poll: a stop waits at most this (batch_run)

typedef struct {
    zmq_msg_t routing [ROUTING_MAX];    //  identity (and delimiter) frames
    int routing_count;
    proto_msg_t *request;
    msgpack_sbuffer reply;              //  the encoded answer, sent after commit
    bool from_shard;                    //  its answer may go in a frame with others'
} pending_t;

//  A commit's answers to one shard go in one frame, back to back (roomd's
//  store_receive reads them so): under load a commit answers hundreds of
//  appends, and each ZeroMQ message pays its CURVE box and its hand-offs
//  between threads once. Other peers get an answer a frame, as they ask.
#define SHARD_FRAME_MAX (64 * 1024)
#define SHARD_OUTS_MAX  16
typedef struct {
    zmq_msg_t identity;
    msgpack_sbuffer out;
} shard_out_t;

typedef struct {
    handler_fn *handler;
    bool writes;
} route_t;

struct batch {
    db_t *db;
    const stored_config_t *config;
    void *router;                       //  libzmq ROUTER socket
    handler_ctx_t ctx;
    msgpack_zone zone;                  //  replies' strings and arrays
    msgpack_zone room_zone;             //  the room cache's strings
    msgpack_sbuffer scratch;            //  records being packed
    msgpack_sbuffer out;                //  replies sent at once
    pending_t *pending;                 //  writes waiting for the commit
    size_t pending_count;
    int64_t next_sweep_ms;              //  monotonic
};

static route_t s_routes [PROTO_TYPE_LIMIT] = {
    [PROTO_STORE_STATS] = { handle_store_stats, false },
    [PROTO_METRICS]     = { handle_metrics, false },
    [PROTO_ROOM_GET]    = { handle_room_get, false },
    [PROTO_ROOMS_IDLE]  = { handle_rooms_idle, false },
    [PROTO_GEO_SEARCH]  = { handle_geo_search, false },
    [PROTO_HISTORY]     = { handle_history, false },
    [PROTO_CONN_LIST]   = { handle_conn_list, false },
    [PROTO_ROOM_PUT]    = { handle_room_put, true },
    [PROTO_ROOM_UPDATE] = { handle_room_update, true },
    [PROTO_MSG_APPEND]  = { handle_msg_append, true },
    [PROTO_TTL_SWEEP]   = { handle_ttl_sweep, true },
    [PROTO_CONN_PUT]    = { handle_conn_put, true },
    [PROTO_CONN_DEL]    = { handle_conn_del, true },
    [PROTO_GATEWAY_BEAT] = { handle_gateway_beat, true },
    [PROTO_GATEWAYS_SILENT] = { handle_gateways_silent, true },    //  it declares them dead
};

const char *
zone_strdup (msgpack_zone *zone, const char *text)
{
    size_t size = strlen (text) + 1;
    char *copy = msgpack_zone_malloc (zone, size);
    assert (copy);
    memcpy (copy, text, size);
    return copy;
}

int
reply_error (handler_ctx_t *ctx, proto_msg_t *reply, uint16_t status, const char *fmt, ...)
{
    char reason [PROTO_REASON_MAX];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    reply->type = PROTO_ERROR;
    reply->error.status = status;
    reply->error.reason = zone_strdup (ctx->zone, reason);
    return 0;
}

//  The client-id tail as the file has it: at start, and after a write
//  transaction that may have changed it was not committed.
static int
s_client_ids_reload (batch_t *self)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->db->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = client_ids_load (self->ctx.client_ids, self->db, txn);
        mdb_txn_abort (txn);
    }
    if (rc)
        log_error ("cannot read the client-id tail: %s", mdb_strerror (rc));
    return rc;
}

//  A write transaction was aborted, or its commit failed: forget what the
//  handlers kept of it.
static void
s_rolled_back (batch_t *self)
{
    rooms_forget (&self->ctx);
    s_client_ids_reload (self);
}

batch_t *
batch_new (db_t *db, const stored_config_t *config, zsock_t *router)
{
    assert (db && config && router);
    batch_t *self = calloc (1, sizeof *self);
    assert (self);
    self->db = db;
    self->config = config;
    self->router = zsock_resolve (router);
    self->pending = calloc ((size_t) config->batch_max, sizeof *self->pending);
    assert (self->pending);
    for (int64_t i = 0; i < config->batch_max; i++)
        msgpack_sbuffer_init (&self->pending [i].reply);
    msgpack_zone_init (&self->zone, 64 * 1024);
    msgpack_zone_init (&self->room_zone, 64 * 1024);
    msgpack_sbuffer_init (&self->scratch);
    msgpack_sbuffer_init (&self->out);
    self->ctx.db = db;
    self->ctx.config = config;
    self->ctx.zone = &self->zone;
    self->ctx.room_zone = &self->room_zone;
    self->ctx.scratch = &self->scratch;
    metrics_histogram_init (&self->ctx.batch_writes, metrics_size_bounds,
                            metrics_size_bound_count);
    metrics_histogram_init (&self->ctx.commit_seconds, metrics_seconds_bounds,
                            metrics_seconds_bound_count);
    self->ctx.room_cache = calloc (ROOM_CACHE_SLOTS, sizeof *self->ctx.room_cache);
    assert (self->ctx.room_cache);
    self->ctx.client_ids = client_ids_new (config->client_id_flush_ms);
    if (s_client_ids_reload (self)) {
        batch_destroy (&self);
        return NULL;
    }
    self->next_sweep_ms = clock_mono_ms () + config->sweep_interval_ms;
    return self;
}

void
batch_destroy (batch_t **self_p)
{
    assert (self_p);
    batch_t *self = *self_p;
    if (!self)
        return;
    for (int64_t i = 0; i < self->config->batch_max; i++)
        msgpack_sbuffer_destroy (&self->pending [i].reply);
    free (self->pending);
    free (self->ctx.room_cache);
    client_ids_destroy (&self->ctx.client_ids);
    msgpack_zone_destroy (&self->zone);
    msgpack_zone_destroy (&self->room_zone);
    msgpack_sbuffer_destroy (&self->scratch);
    msgpack_sbuffer_destroy (&self->out);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------
//  Replies

//  Encode reply, addressed as an answer to request (which may be NULL when
//  the request did not decode: then request_id says whom it answers).
static void
s_encode_reply (msgpack_sbuffer *buf, const proto_msg_t *request, uint64_t request_id,
                proto_msg_t *reply)
{
    reply->request_id = request? request->request_id: request_id;
    if (request)
        memcpy (reply->trace_id, request->trace_id, sizeof reply->trace_id);
    msgpack_sbuffer_clear (buf);
    if (proto_encode (reply, buf) == 0)
        return;
    //  A reply that breaks the contract is our bug; the caller still gets an answer.
    log_error ("reply of type %d to request %llu does not encode", reply->type,
               (unsigned long long) reply->request_id);
    proto_msg_t error = { .type = PROTO_ERROR, .request_id = reply->request_id,
                          .error = { 500, "stored could not encode its reply" } };
    msgpack_sbuffer_clear (buf);
    int rc = proto_encode (&error, buf);
    assert (rc == 0);
}

//  Send routing frames then the payload. A ROUTER drops what it cannot
//  route (the client went away): there is no one left to tell.
static void
s_send (batch_t *self, zmq_msg_t *routing, int routing_count, const msgpack_sbuffer *payload)
{
    for (int i = 0; i < routing_count; i++) {
        zmq_msg_t copy;
        zmq_msg_init (&copy);
        zmq_msg_copy (&copy, &routing [i]);
        if (zmq_msg_send (&copy, self->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&copy);
            return;
        }
    }
    zmq_send (self->router, payload->data, payload->size, ZMQ_DONTWAIT);
    tap_message (TAP_OUT, "client", payload->data, payload->size);
}

//  The frame being gathered for pending's shard (its one routing frame),
//  or NULL when there is no room for another shard's.
static shard_out_t *
s_shard_out (shard_out_t *outs, size_t *count, pending_t *pending)
{
    zmq_msg_t *identity = &pending->routing [0];
    for (size_t i = 0; i < *count; i++)
        if (zmq_msg_size (&outs [i].identity) == zmq_msg_size (identity)
        &&  memcmp (zmq_msg_data (&outs [i].identity), zmq_msg_data (identity),
                    zmq_msg_size (identity)) == 0)
            return &outs [i];
    if (*count == SHARD_OUTS_MAX)
        return NULL;
    shard_out_t *out = &outs [(*count)++];
    zmq_msg_init (&out->identity);
    zmq_msg_copy (&out->identity, identity);
    msgpack_sbuffer_init (&out->out);
    return out;
}

//  Send what out gathered (tapped already, message by message).
static void
s_send_out (batch_t *self, shard_out_t *out)
{
    if (out->out.size == 0)
        return;
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    zmq_msg_copy (&copy, &out->identity);
    if (zmq_msg_send (&copy, self->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        zmq_msg_close (&copy);
    else
        zmq_send (self->router, out->out.data, out->out.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_clear (&out->out);
}

static void
s_close_routing (zmq_msg_t *routing, int routing_count)
{
    for (int i = 0; i < routing_count; i++)
        zmq_msg_close (&routing [i]);
}

//  ---------------------------------------------------------------------------
//  Writes: apply, commit, answer

//  Apply every pending write in one transaction and commit it. Returns 0 or
//  the LMDB error that sank the whole batch.
static int
s_apply_batch (batch_t *self)
{
    msgpack_zone_clear (&self->zone);
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->db->env, NULL, 0, &txn);
    if (rc)
        return rc;
    self->ctx.txn = txn;
    //  The client ids that waited long enough go first.
    rc = client_ids_flush (&self->ctx, false);
    for (size_t i = 0; i < self->pending_count && rc == 0; i++) {
        pending_t *pending = &self->pending [i];
        proto_msg_t reply = { 0 };
        //  Appends keep their rooms in the batch's cache; anything else
        //  sees and changes rooms in the database, so write the cache first.
        if (pending->request->type != PROTO_MSG_APPEND)
            rc = rooms_flush (&self->ctx);
        if (rc == 0)
            rc = s_routes [pending->request->type].handler (&self->ctx, pending->request, &reply);
        if (rc == 0)
            s_encode_reply (&pending->reply, pending->request, 0, &reply);
    }
    if (rc == 0)
        rc = rooms_write (&self->ctx);
    self->ctx.txn = NULL;
    if (rc) {
        mdb_txn_abort (txn);
        s_rolled_back (self);
        return rc;
    }
    rc = mdb_txn_commit (txn);
    if (rc)
        s_rolled_back (self);
    return rc;
}

//  The fallback when a batch fails for a reason other than a full map: each
//  write alone, so that only the one that fails is answered with an error.
static void
s_apply_each (batch_t *self)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        pending_t *pending = &self->pending [i];
        int rc, attempts = 0;
        do {
            MDB_txn *txn;
            proto_msg_t reply = { 0 };
            rc = mdb_txn_begin (self->db->env, NULL, 0, &txn);
            if (rc == 0) {
                self->ctx.txn = txn;
                rc = s_routes [pending->request->type].handler (&self->ctx, pending->request,
                                                                 &reply);
                if (rc == 0)
                    rc = rooms_flush (&self->ctx);
                self->ctx.txn = NULL;
                if (rc == 0)
                    s_encode_reply (&pending->reply, pending->request, 0, &reply);
                if (rc == 0)
                    rc = mdb_txn_commit (txn);
                else
                    mdb_txn_abort (txn);
                if (rc)
                    s_rolled_back (self);
            }
            if (rc == 0)
                self->ctx.commits++;
        } while (rc == MDB_MAP_FULL && attempts++ < 4 && db_grow (self->db) == 0);
        if (rc) {
            log_error ("write of type %s failed: %s",
                       proto_type_name (pending->request->type), mdb_strerror (rc));
            proto_msg_t error = { .type = PROTO_ERROR };
            reply_error (&self->ctx, &error, 500, "storage error: %s", mdb_strerror (rc));
            s_encode_reply (&pending->reply, pending->request, 0, &error);
        }
    }
}

static void
s_grow_if_nearly_full (batch_t *self)
{
    uint64_t used, size;
    db_usage (self->db, &used, &size);
    if (used * 100 >= size * GROW_AT_PERCENT)
        db_grow (self->db);
}

static void
s_commit (batch_t *self)
{
    int rc, attempts = 0;
    int64_t started_ns = clock_mono_ns ();
    while ((rc = s_apply_batch (self)) == MDB_MAP_FULL && attempts++ < 8)
        if (db_grow (self->db))
            break;
    if (rc == 0)
        self->ctx.commits++;
    else {
        log_warn ("a batch of %zu writes failed (%s); applying them one by one",
                  self->pending_count, mdb_strerror (rc));
        s_apply_each (self);
    }
    self->ctx.writes += self->pending_count;
    metrics_histogram_observe (&self->ctx.batch_writes, (double) self->pending_count);
    metrics_histogram_observe (&self->ctx.commit_seconds,
                               (double) (clock_mono_ns () - started_ns) / 1e9);
    bool debug = log_enabled (LOG_LEVEL_DEBUG);
    shard_out_t outs [SHARD_OUTS_MAX];
    size_t out_count = 0;
    for (size_t i = 0; i < self->pending_count; i++) {
        pending_t *pending = &self->pending [i];
        if (debug)
            log_write (LOG_LEVEL_DEBUG, pending->request->trace_id, "%s committed, in a batch of %zu",
                       proto_type_name (pending->request->type), self->pending_count);
        shard_out_t *out = pending->from_shard? s_shard_out (outs, &out_count, pending): NULL;
        if (out) {
            tap_message (TAP_OUT, "client", pending->reply.data, pending->reply.size);
            if (out->out.size + pending->reply.size > SHARD_FRAME_MAX)
                s_send_out (self, out);
            msgpack_sbuffer_write (&out->out, pending->reply.data, pending->reply.size);
        }
        else
            s_send (self, pending->routing, pending->routing_count, &pending->reply);
        s_close_routing (pending->routing, pending->routing_count);
        proto_msg_destroy (&pending->request);
    }
    for (size_t i = 0; i < out_count; i++) {
        s_send_out (self, &outs [i]);
        zmq_msg_close (&outs [i].identity);
        msgpack_sbuffer_destroy (&outs [i].out);
    }
    self->pending_count = 0;
    s_grow_if_nearly_full (self);
}

//  ---------------------------------------------------------------------------
//  The drain: take what the socket holds

//  Receive one multipart message without waiting. Returns 1 with the
//  payload in *payload and routing frames in routing, 0 when the socket is
//  empty, -1 on a malformed message (dropped).
static int
s_recv (batch_t *self, zmq_msg_t *routing, int *routing_count, zmq_msg_t *payload)
{
    *routing_count = 0;
    zmq_msg_init (payload);
    if (zmq_msg_recv (payload, self->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (payload);
        return 0;
    }
    bool dropped = false;
    while (zmq_msg_more (payload)) {
        if (*routing_count < ROUTING_MAX) {
            zmq_msg_init (&routing [*routing_count]);
            zmq_msg_move (&routing [(*routing_count)++], payload);
        }
        else
            dropped = true;
        zmq_msg_recv (payload, self->router, 0);    //  the rest is already here
    }
    tap_message (TAP_IN, "client", zmq_msg_data (payload), zmq_msg_size (payload));
    if (dropped) {
        log_warn ("dropped a message with more than %d routing frames", ROUTING_MAX);
        s_close_routing (routing, *routing_count);
        zmq_msg_close (payload);
        return -1;
    }
    return 1;
}

//  Answer at once: a read, or a refusal.
static void
s_answer_now (batch_t *self, zmq_msg_t *routing, int routing_count, const proto_msg_t *request,
              uint64_t request_id, proto_msg_t *reply)
{
    s_encode_reply (&self->out, request, request_id, reply);
    s_send (self, routing, routing_count, &self->out);
}

//  One request of a frame from a peer (payload, for its role; routing,
//  copied for an answer after the commit): answered now, or pending.
static void
s_take (batch_t *self, zmq_msg_t *routing, int routing_count, zmq_msg_t *payload,
        const void *data, size_t size, MDB_txn **read_txn)
{
    char why [PROTO_WHY_MAX];
    proto_msg_t *request = NULL;
    proto_msg_t reply = { 0 };
    const char *role = bus_role (payload);
    if (size > PROTO_FRAME_MAX)
        reply_error (&self->ctx, &reply, 413, "message of %zu bytes is too large", size);
    else
    if (!(request = proto_decode (data, size, why, sizeof why)))
        reply_error (&self->ctx, &reply, 400, "%s", why);
    else
    if (request->type >= PROTO_TYPE_LIMIT || !s_routes [request->type].handler)
        reply_error (&self->ctx, &reply, 400, "stored does not serve %s",
                     proto_type_name (request->type));
    else
    if (!bus_may_send (role, request))
        reply_error (&self->ctx, &reply, 403, "a %s key may not send %s",
                     role? role: "keyless", proto_type_name (request->type));
    else
    if (!bus_speaks_for (payload, request))
        reply_error (&self->ctx, &reply, 403, "this key may not send %s for that gateway, "
                     "which has a key of its own", proto_type_name (request->type));
    if (reply.type) {
        uint16_t type;
        uint64_t request_id = 0;
        if (!request)
            proto_peek (data, size, &type, &request_id);
        log_debug ("refused a request: %s", reply.error.reason);
        s_answer_now (self, routing, routing_count, request, request_id, &reply);
        proto_msg_destroy (&request);
    }
    else
    if (s_routes [request->type].writes) {
        log_write (LOG_LEVEL_DEBUG, request->trace_id, "%s waits for the commit",
                   proto_type_name (request->type));
        if (self->pending_count == (size_t) self->config->batch_max) {
            //  A frame of many requests filled the batch: commit it now
            //  (with no read open: a commit may grow the map).
            if (*read_txn) {
                mdb_txn_abort (*read_txn);
                *read_txn = NULL;
            }
            s_commit (self);
        }
        pending_t *pending = &self->pending [self->pending_count++];
        for (int i = 0; i < routing_count; i++) {
            zmq_msg_init (&pending->routing [i]);
            zmq_msg_copy (&pending->routing [i], &routing [i]);
        }
        pending->routing_count = routing_count;
        pending->request = request;
        pending->from_shard = routing_count == 1 && bus_is (role, BUS_SHARD);
    }
    else {
        int rc = *read_txn? 0: mdb_txn_begin (self->db->env, NULL, MDB_RDONLY, read_txn);
        if (rc == 0) {
            self->ctx.txn = *read_txn;
            rc = s_routes [request->type].handler (&self->ctx, request, &reply);
            self->ctx.txn = NULL;
        }
        if (rc) {
            log_error ("read of type %s failed: %s", proto_type_name (request->type),
                       mdb_strerror (rc));
            reply_error (&self->ctx, &reply, 500, "storage error: %s", mdb_strerror (rc));
        }
        s_answer_now (self, routing, routing_count, request, 0, &reply);
        proto_msg_destroy (&request);
    }
}

static void
s_drain (batch_t *self)
{
    MDB_txn *read_txn = NULL;
    msgpack_zone_clear (&self->zone);
    while (self->pending_count < (size_t) self->config->batch_max) {
        zmq_msg_t routing [ROUTING_MAX], payload;
        int routing_count;
        int got = s_recv (self, routing, &routing_count, &payload);
        if (got == 0)
            break;
        if (got < 0)
            continue;
        //  A frame holds one request or several back to back (a shard's
        //  turn of appends): each is taken in order.
        const uint8_t *data = zmq_msg_data (&payload);
        size_t size = zmq_msg_size (&payload);
        do {
            size_t first = proto_next (data, size);
            s_take (self, routing, routing_count, &payload, data, first, &read_txn);
            data += first;
            size -= first;
        } while (size);
        s_close_routing (routing, routing_count);
        zmq_msg_close (&payload);
    }
    if (read_txn)
        mdb_txn_abort (read_txn);
}

//  ---------------------------------------------------------------------------
//  TTL sweep: one bounded step in a transaction of its own

static bool
s_sweep_step (batch_t *self)
{
    MDB_txn *txn;
    uint32_t deleted = 0;
    bool more = false;
    msgpack_zone_clear (&self->zone);
    int rc = mdb_txn_begin (self->db->env, NULL, 0, &txn);
    if (rc == 0) {
        self->ctx.txn = txn;
        rc = messages_sweep (&self->ctx, clock_now_ms (), (uint32_t) self->config->sweep_batch,
                             &deleted, &more);
        self->ctx.txn = NULL;
        rc = rc? (mdb_txn_abort (txn), rc): mdb_txn_commit (txn);
        if (rc)
            s_rolled_back (self);
    }
    if (rc == MDB_MAP_FULL)
        db_grow (self->db);
    if (rc) {
        log_warn ("TTL sweep failed: %s", mdb_strerror (rc));
        return false;
    }
    self->ctx.commits++;
    if (deleted)
        log_debug ("TTL sweep deleted %u messages%s", deleted, more? ", more are due": "");
    return more;
}

//  A clean stop writes the client-id tail out, so that the file alone
//  holds every entry (an older stored, which knows no tail, can read it).
static void
s_client_ids_write_all (batch_t *self)
{
    if (client_ids_pending (self->ctx.client_ids) == 0)
        return;
    int rc, attempts = 0;
    do {
        MDB_txn *txn;
        rc = mdb_txn_begin (self->db->env, NULL, 0, &txn);
        if (rc == 0) {
            self->ctx.txn = txn;
            rc = client_ids_flush (&self->ctx, true);
            self->ctx.txn = NULL;
            rc = rc? (mdb_txn_abort (txn), rc): mdb_txn_commit (txn);
            if (rc)
                s_rolled_back (self);
        }
    } while (rc == MDB_MAP_FULL && attempts++ < 4 && db_grow (self->db) == 0);
    if (rc)
        log_warn ("client-id tail not written at stop (%s): the next start rebuilds it",
                  mdb_strerror (rc));
}

void
batch_run (batch_t *self)
{
    assert (self);
    while (!zsys_interrupted) {
        int64_t wait = self->next_sweep_ms - clock_mono_ms ();
        //  A signal that lands between the check above and the poll does
        //  not wake it (czmq's handler only sets a flag): a poll that could
        //  sleep until the next sweep (an hour, with a long interval) is
        //  cut short so that a stop takes at most this long.
        if (wait > BATCH_POLL_MAX_MS)
            wait = BATCH_POLL_MAX_MS;
        zmq_pollitem_t item = { self->router, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, wait < 0? 0: (long) wait) < 0)
            continue;                   //  EINTR: the flag above decides
        s_drain (self);
        if (self->pending_count)
            s_commit (self);
        if (clock_mono_ms () >= self->next_sweep_ms) {
            //  When more is due, sweep again after the next drain, not now:
            //  writes waiting on the socket go first.
            bool more = s_sweep_step (self);
            self->next_sweep_ms = clock_mono_ms () + (more? 0: self->config->sweep_interval_ms);
        }
    }
    s_client_ids_write_all (self);
}
