/*  =========================================================================
    pending.c - the requests in flight: where each goes, and who waits for
    its answer

    A request (a socket's action, an HTTP thread's call, a post, a peer's
    room request) is given an id of ours and sent to stored or to the
    room's shard (shards_owner); the table (proto's requests.h) maps our id
    back to who asked and what they called it. Event loop thread only.

    Invariants:
      - every entry is answered exactly once: by its reply, by a 503 when
        its send fails or its shard goes, or by a 503 when it has waited
        REQUEST_TIMEOUT_MS (the table expires in deadline order);
      - only whom we asked may answer: a reply from another peer than the
        request went to is dropped (logged);
      - a then is called on this thread before the next message is read,
        so a socket's join is applied to the room index (its then) before
        any later event from the same shard is delivered.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <string.h>
#include "links.h"
#include "clock.h"
#include "log.h"
#include "requests.h"

typedef struct {
    uint64_t id;                        //  our request id (the table's key)
    origin_t origin;
    ident_t from;                       //  ORIGIN_PEER: the peer's identity
    uint64_t request_id;                //  what the asker called it
    bool to_stored;                     //  else to_shard
    ident_t to_shard;                   //  the shard it went to, whose reply we accept
    char shard_id [PROTO_ID_MAX + 1];
    uint16_t type;
    char trace [PROTO_TRACE_MAX + 1];
    void *parked;                       //  the encoded request, not sent: its shard's link was
    size_t parked_size;                 //  down (pending_resend_parked sends it when it is back)
    pending_then_fn *then;              //  ORIGIN_LOOP: what to call with the reply
    void *then_arg;
    int expected;                       //  ORIGIN_LOOP: the reply type that is success; 0: any
} pending_t;

static struct {
    requests_t *table;                  //  our id -> pending_t, by deadline
    uint64_t next_id;
    msgpack_sbuffer buffer;
} s_self;

//  ---------------------------------------------------------------------------
//  Answers

static int
s_encode (const proto_msg_t *msg)
{
    msgpack_sbuffer_clear (&s_self.buffer);
    return proto_encode (msg, &s_self.buffer);
}

bool
pending_judge (const proto_msg_t *reply, int expected, int *status, char *reason,
               size_t reason_size)
{
    if (reply->type == expected || !expected)
        return true;
    if (reply->type == PROTO_ERROR) {
        *status = reply->error.status;
        snprintf (reason, reason_size, "%s", reply->error.reason);
    }
    else {
        *status = 500;
        snprintf (reason, reason_size, "the backend answered with a %s",
                  proto_type_name (reply->type));
    }
    return false;
}

//  Answer an asker with an error of our own.
static void
s_answer_error (const pending_t *pending, uint16_t status, const char *reason)
{
    if (pending->origin == ORIGIN_POST)
        log_write (LOG_LEVEL_WARN, pending->trace, "a %s was lost: %s",
                   proto_type_name (pending->type), reason);
    else
    if (pending->origin == ORIGIN_LOOP)
        pending->then (pending->then_arg, NULL, status, reason);
    else {
        proto_msg_t error = { .type = PROTO_ERROR, .request_id = pending->request_id,
                              .error = { status, reason } };
        snprintf (error.trace_id, sizeof error.trace_id, "%s", pending->trace);
        if (s_encode (&error) == 0 && links_to_peer (&pending->from, s_self.buffer.data,
                                                     s_self.buffer.size))
            log_write (LOG_LEVEL_DEBUG, pending->trace, "a peer left before its %s was answered",
                       proto_type_name (pending->type));
    }
}

//  ---------------------------------------------------------------------------
//  The table

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
    requests_insert (s_self.table, pending->id, pending,
                     clock_mono_ms () + gateway_config.request_timeout_ms);
    return pending;
}

//  Take pending out of the table (when it is still there) and free it.
static void
s_pending_remove (pending_t **pending_p)
{
    pending_t *pending = *pending_p;
    requests_take (s_self.table, pending->id);
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
pending_fail_shard (const char *shard_id, const char *why, bool sent_only)
{
    pending_t *pending = requests_first (s_self.table);
    for (; pending; pending = requests_next (s_self.table)) {
        if (!pending->to_stored && strcmp (pending->shard_id, shard_id) == 0
        &&  !(sent_only && pending->parked)) {
            char reason [PROTO_REASON_MAX];
            snprintf (reason, sizeof reason, "room shard %s %s", shard_id, why);
            s_pending_fail (&pending, 503, reason);
        }
    }
}

void
pending_resend_parked (const shard_t *shard)
{
    size_t sent = 0;
    pending_t *pending = requests_first (s_self.table);
    for (; pending; pending = requests_next (s_self.table)) {
        if (pending->parked && !pending->to_stored && strcmp (pending->shard_id, shard->id) == 0) {
            if (links_to_peer (&shard->identity, pending->parked, pending->parked_size) == 0) {
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

size_t
pending_fail_stored (void)
{
    size_t failed = 0;
    pending_t *pending = requests_first (s_self.table);
    for (; pending; pending = requests_next (s_self.table))
        if (pending->to_stored) {
            s_pending_fail (&pending, 503, "stored went away before it answered");
            failed++;
        }
    return failed;
}

void
pending_expire (void)
{
    int64_t now = clock_mono_ms ();
    pending_t *pending;
    while ((pending = requests_take_overdue (s_self.table, now, NULL))) {
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "%s did not answer within %lld ms",
                  pending->to_stored? "stored": pending->shard_id,
                  (long long) gateway_config.request_timeout_ms);
        log_write (LOG_LEVEL_WARN, pending->trace, "%s: %s", proto_type_name (pending->type),
                   reason);
        s_pending_fail (&pending, 503, reason);
    }
}

int64_t
pending_wait_ms (void)
{
    return requests_wait (s_self.table, clock_mono_ms ());
}

void
pending_fail_all (const char *reason)
{
    pending_t *pending;
    while ((pending = requests_take_overdue (s_self.table, INT64_MAX, NULL)))
        s_pending_fail (&pending, 503, reason);
}

//  ---------------------------------------------------------------------------
//  Sending

static bool
s_is_stored_type (int type)
{
    return type == PROTO_ROOM_PUT || type == PROTO_ROOM_GET || type == PROTO_GEO_SEARCH
        || type == PROTO_HISTORY || type == PROTO_CONN_PUT || type == PROTO_CONN_DEL
        || type == PROTO_CONN_LIST || type == PROTO_STORE_STATS || type == PROTO_METRICS;
}

//  Where request goes: stored (true), or the shard written into pending.
//  Returns -1 when nowhere, pending failed (and freed) with the reason.
static int
s_route (proto_msg_t *request, pending_t **pending_p)
{
    pending_t *pending = *pending_p;
    const shard_t *shard = NULL;
    //  (No event comes this way: a room here is a room request's.)
    const char *room_id = proto_room_of (request);
    if (request->type == PROTO_METRICS && request->metrics.shard_id
    &&  pending->origin != ORIGIN_PEER) {
        //  One shard's metrics: it is asked by name, not by room.
        shard = shards_find (request->metrics.shard_id);
        if (!shard) {
            s_pending_fail (pending_p, 404, "no such live shard");
            return -1;
        }
    }
    else
    if (s_is_stored_type (request->type) && pending->origin != ORIGIN_PEER) {
        pending->to_stored = true;
        return 0;
    }
    else
    if (room_id) {
        shard = shards_owner (room_id);
        if (!shard) {
            log_write (LOG_LEVEL_WARN, request->trace_id, "%s for room %s: no shard is live",
                       proto_type_name (request->type), room_id);
            s_pending_fail (pending_p, 503, "no room shard is available");
            return -1;
        }
    }
    else {
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "the gateway's backend does not route %s",
                  proto_type_name (request->type));
        s_pending_fail (pending_p, 400, reason);
        return -1;
    }
    pending->to_shard = shard->identity;
    memcpy (pending->shard_id, shard->id, sizeof pending->shard_id);
    return 0;
}

//  pending's request, encoded in data, could not be sent (errno error).
static void
s_unsent (pending_t **pending_p, const void *data, size_t size, int error)
{
    pending_t *pending = *pending_p;
    if (!pending->to_stored && error == EHOSTUNREACH) {
        //  The shard's link is gone but the shard may not be: it reconnects
        //  at once (after this gateway was stopped, every link is), and its
        //  hello sends what waited (pending_resend_parked). Gone for good,
        //  the shard is dropped, or the request times out, as any other.
        pending->parked = malloc (size);
        assert (pending->parked);
        memcpy (pending->parked, data, size);
        pending->parked_size = size;
        log_write (LOG_LEVEL_DEBUG, pending->trace, "%s waits for room shard %s's link",
                   proto_type_name (pending->type), pending->shard_id);
        return;
    }
    char reason [PROTO_REASON_MAX];
    snprintf (reason, sizeof reason, "%s%s is unreachable",
              pending->to_stored? "stored": "room shard ", pending->shard_id);
    log_write (LOG_LEVEL_WARN, pending->trace, "%s: %s", proto_type_name (pending->type), reason);
    s_pending_fail (pending_p, 503, reason);
}

void
pending_forward (proto_msg_t *request, origin_t origin, const ident_t *from,
                 int expected, pending_then_fn *then, void *then_arg)
{
    pending_t *pending = s_pending_new (origin, from, request);
    pending->then = then;
    pending->then_arg = then_arg;
    pending->expected = expected;
    if (s_route (request, &pending))
        return;
    request->request_id = pending->id;
    //  A socket's record names the run that holds it (conn-put, and a
    //  join's, which its shard writes); only this thread knows it (it
    //  changes when a run is declared dead).
    const char **incarnation = proto_incarnation_of (request, gateway_config.gateway_id);
    if (incarnation)
        *incarnation = links_run ();
    if (s_encode (request)) {
        //  It decoded or was made here, so it encodes: this would be a bug.
        log_write (LOG_LEVEL_ERROR, request->trace_id, "a %s does not encode",
                   proto_type_name (request->type));
        s_pending_fail (&pending, 500, "the request could not be passed on");
        return;
    }
    if (!pending->to_stored)
        links_to_shard (&pending->to_shard, s_self.buffer.data, s_self.buffer.size);
    else
    if (links_to_stored (s_self.buffer.data, s_self.buffer.size)) {
        s_unsent (&pending, s_self.buffer.data, s_self.buffer.size, errno);
        return;
    }
    log_write (LOG_LEVEL_DEBUG, request->trace_id, "%s -> %s", proto_type_name (request->type),
               pending->to_stored? "stored": pending->shard_id);
}

//  One request of a frame that could not be sent, through proto_each.
typedef struct {
    const ident_t *to;
    int error;
} unsent_t;

static void
s_unsent_each (const void *data, size_t size, void *arg)
{
    const unsent_t *unsent = arg;
    uint16_t type;
    uint64_t id;
    pending_t *pending = proto_peek (data, size, &type, &id) == 0
                       ? requests_lookup (s_self.table, id): NULL;
    //  Still the request that went to that peer (not failed since).
    if (pending && !pending->to_stored && !pending->parked
    &&  pending->to_shard.size == unsent->to->size
    &&  memcmp (pending->to_shard.data, unsent->to->data, unsent->to->size) == 0)
        s_unsent (&pending, data, size, unsent->error);
}

void
pending_unsent (const ident_t *to, const void *data, size_t size, int error)
{
    unsent_t unsent = { to, error };
    proto_each (data, size, s_unsent_each, &unsent);
}

void
pending_send (proto_msg_t *request, int expected, pending_then_fn *then, void *then_arg)
{
    assert (then);
    pending_forward (request, ORIGIN_LOOP, NULL, expected, then, then_arg);
}

void
pending_post (proto_msg_t *request)
{
    request->request_id = 0;
    pending_forward (request, ORIGIN_POST, NULL, 0, NULL, NULL);
}

//  ---------------------------------------------------------------------------
//  Replies

void
pending_reply (const void *data, size_t size, const ident_t *from)
{
    uint16_t type;
    uint64_t id;
    if (proto_peek (data, size, &type, &id) || id == 0) {
        log_warn ("a reply from %s has no request id", from? "a shard": "stored");
        return;
    }
    pending_t *pending = requests_lookup (s_self.table, id);
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
    if (pending->origin == ORIGIN_PEER) {
        //  Passed on as it came, under the peer's own request id.
        proto_msg_t *reply = proto_decode (data, size, NULL, 0);
        if (reply) {
            reply->request_id = pending->request_id;
            if (s_encode (reply) == 0)
                links_to_peer (&pending->from, s_self.buffer.data, s_self.buffer.size);
        }
        else
            s_answer_error (pending, 500, "the backend answered with a garbled reply");
        proto_msg_destroy (&reply);
        s_pending_remove (&pending);
        return;
    }
    char why [PROTO_WHY_MAX];
    proto_msg_t *reply = proto_decode (data, size, why, sizeof why);
    if (!reply) {
        log_write (LOG_LEVEL_WARN, pending->trace, "a garbled %s: %s", proto_type_name (type), why);
        s_pending_fail (&pending, 500, "the backend answered with a garbled reply");
        return;
    }
    if (pending->origin == ORIGIN_POST) {
        //  (A conn-del of a socket the reaper cleared already is no failure.)
        if (reply->type == PROTO_ERROR
        &&  !(pending->type == PROTO_CONN_DEL && reply->error.status == 404))
            log_write (LOG_LEVEL_WARN, pending->trace, "%s failed: %u %s",
                       proto_type_name (pending->type), reply->error.status, reply->error.reason);
    }
    else {
        int status = 0;
        char reason [PROTO_REASON_MAX];
        if (pending_judge (reply, pending->expected, &status, reason, sizeof reason))
            pending->then (pending->then_arg, reply, 0, NULL);
        else
            pending->then (pending->then_arg, NULL, status, reason);
    }
    proto_msg_destroy (&reply);
    s_pending_remove (&pending);
}

//  ---------------------------------------------------------------------------

void
pending_start (void)
{
    msgpack_sbuffer_init (&s_self.buffer);
    s_self.table = requests_new ();
}

void
pending_stop (void)
{
    requests_destroy (&s_self.table);
    msgpack_sbuffer_destroy (&s_self.buffer);
}
