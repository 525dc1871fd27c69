/*  =========================================================================
    shards.c - the live room shards, as this gateway knows them

    roomd shards register by saying shard-hello on the backend's ROUTER at
    once and every heartbeat; each hello is answered with shard-welcome,
    which carries this gateway's id and its live shard set, sorted, so a
    shard learns which rooms it no longer owns. A shard silent for
    SHARD_TIMEOUT_MS is dropped, and the requests waiting on it are
    answered 503 at once. A hello from a known id on a new identity is a
    shard that restarted, if the old link is gone: what was sent to it is
    answered 503. If the old link is still there and the shard live, two
    shards have one SHARD_ID: the second is refused (an error answers its
    hello, and it gets no welcome, so nothing is routed to it), an error
    line names the id and both peers, and /healthz shows the conflict for
    as long as the second keeps saying hello. It is not told to exit: it
    waits, and takes the id over as a restart would once the first is
    gone, and the conflict shows exactly while it lasts. (Before this the
    gateway took every such hello for a restart and flapped between the
    two, failing the requests sent to the one it had just left.)

    Whether the old link is there is asked of ZeroMQ itself: the ROUTER is
    ZMQ_ROUTER_MANDATORY, so a send to a peer that is gone fails at once.
    A shard killed and started again has closed its old TCP connection
    before its new one can say hello, so a restart is never taken for a
    conflict.

    Rooms go to the live shard with the highest rendezvous score for the
    room id (route.h), so every gateway that has heard the same shards
    picks the same owner.

    The table is the event loop's alone; the HTTP threads read the set
    through a snapshot under its own lock (shards_live).
    =========================================================================
*/

#include <errno.h>
#include <string.h>
#include "links.h"
#include "clock.h"
#include "log.h"
#include "route.h"

#define SHARDS_MAX  256

static shard_t s_shards [SHARDS_MAX];       //  sorted by id
static size_t s_shard_count;
static bool s_audit;                        //  a shard came or went: see shards_take_audit

static pthread_mutex_t s_snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_snapshot [SHARDS_MAX][PROTO_ID_MAX + 1];
static size_t s_snapshot_count;
static char s_conflicts [SHARDS_MAX][PROTO_ID_MAX + 1];
static size_t s_conflict_count;

//  Counts the changes of the live set: a room may route elsewhere after one.
static uint64_t s_generation;

uint64_t
shards_generation (void)
{
    return s_generation;
}

static void
s_snapshot_update (void)
{
    pthread_mutex_lock (&s_snapshot_lock);
    s_conflict_count = 0;
    for (size_t i = 0; i < s_shard_count; i++) {
        memcpy (s_snapshot [i], s_shards [i].id, sizeof s_snapshot [i]);
        if (s_shards [i].rival_seen_ms)
            memcpy (s_conflicts [s_conflict_count++], s_shards [i].id, sizeof s_conflicts [0]);
    }
    s_snapshot_count = s_shard_count;
    pthread_mutex_unlock (&s_snapshot_lock);
    atomic_store (&gateway_metrics.shards_live, (long long) s_shard_count);
}

size_t
shards_live (char (*ids) [PROTO_ID_MAX + 1], size_t max)
{
    pthread_mutex_lock (&s_snapshot_lock);
    size_t count = s_snapshot_count < max? s_snapshot_count: max;
    memcpy (ids, s_snapshot, count * sizeof ids [0]);
    pthread_mutex_unlock (&s_snapshot_lock);
    return count;
}

size_t
shards_conflicts (char (*ids) [PROTO_ID_MAX + 1], size_t max)
{
    pthread_mutex_lock (&s_snapshot_lock);
    size_t count = s_conflict_count < max? s_conflict_count: max;
    memcpy (ids, s_conflicts, count * sizeof ids [0]);
    pthread_mutex_unlock (&s_snapshot_lock);
    return count;
}

static bool
s_same (const ident_t *a, const ident_t *b)
{
    return a->size == b->size && memcmp (a->data, b->data, a->size) == 0;
}

//  An identity as hex, for the log.
static const char *
s_hex (const ident_t *ident, char *out, size_t size)
{
    size_t at = 0;
    for (size_t i = 0; i < ident->size && at + 3 <= size; i++)
        at += (size_t) snprintf (out + at, size - at, "%02x", ident->data [i]);
    out [at] = 0;
    return out;
}

//  Send msg to a peer. Returns 0, or -1 (errno EHOSTUNREACH: the peer's
//  link is gone).
static int
s_send_to (const ident_t *to, const proto_msg_t *msg)
{
    static msgpack_sbuffer buffer;      //  (the loop's thread alone)
    if (!buffer.data)
        msgpack_sbuffer_init (&buffer);
    msgpack_sbuffer_clear (&buffer);
    if (proto_encode (msg, &buffer)) {
        errno = EINVAL;
        return -1;
    }
    return links_to_peer (to, buffer.data, buffer.size);
}

static void
s_shard_remove (size_t index, const char *why)
{
    char id [PROTO_ID_MAX + 1];
    memcpy (id, s_shards [index].id, sizeof id);
    memmove (&s_shards [index], &s_shards [index + 1],
             (s_shard_count - index - 1) * sizeof s_shards [0]);
    s_shard_count--;
    s_generation++;
    log_info ("room shard %s dropped (%s); %zu live", id, why, s_shard_count);
    s_snapshot_update ();
    pending_fail_shard (id, "went away", false);
    //  It may have died between stored's commit of a message and its
    //  fan-out; the sender, told 503, may never resend, and the room may
    //  say nothing more that would show the gap: ask stored now.
    s_audit = true;
}

void
shards_check (void)
{
    //  A gateway that was itself away (stopped, starved of CPU) has not
    //  read the hellos waiting for it: their silence is its own, and
    //  dropping every shard then would refuse all that waited meanwhile.
    //  The shards get a timeout's grace from now instead.
    static int64_t checked_ms;
    int64_t now = clock_mono_ms ();
    if (checked_ms && now - checked_ms > gateway_config.shard_timeout_ms / 2) {
        log_warn ("the gateway was away for %lld ms; its shards get time to be heard",
                  (long long) (now - checked_ms));
        for (size_t i = 0; i < s_shard_count; i++)
            s_shards [i].seen_ms = now;
    }
    checked_ms = now;
    bool changed = false;
    for (size_t i = s_shard_count; i-- > 0; ) {
        shard_t *shard = &s_shards [i];
        if (now - shard->seen_ms > gateway_config.shard_timeout_ms)
            s_shard_remove (i, "silent");
        else
        if (shard->rival_seen_ms && now - shard->rival_seen_ms > gateway_config.shard_timeout_ms) {
            log_info ("room shard %s: the second peer with its id is gone", shard->id);
            shard->rival_seen_ms = 0;
            changed = true;
        }
    }
    if (changed)
        s_snapshot_update ();
}

//  A hello from another peer than the live shard of that id: is it that
//  shard restarted (its old link is gone), or a second one? The probe is
//  a welcome to the old link, which it would get at its next hello anyway.
static bool
s_old_link_gone (const shard_t *shard)
{
    const char *ids [SHARDS_MAX];
    for (size_t i = 0; i < s_shard_count; i++)
        ids [i] = s_shards [i].id;
    proto_msg_t welcome = { .type = PROTO_SHARD_WELCOME, .shard_welcome = {
        .gateway_id = gateway_config.gateway_id, .shards = ids,
        .shard_count = (uint32_t) s_shard_count } };
    return s_send_to (&shard->identity, &welcome) && errno == EHOSTUNREACH;
}

//  Refuse a second peer with the id of a live shard.
static void
s_refuse_rival (shard_t *shard, const ident_t *from, const char *address)
{
    bool first = !shard->rival_seen_ms || !s_same (&shard->rival, from);
    shard->rival = *from;
    shard->rival_seen_ms = clock_mono_ms ();
    char reason [PROTO_REASON_MAX];
    snprintf (reason, sizeof reason, "shard id %s is taken by a live shard at another peer "
              "(%s); give each shard its own SHARD_ID", shard->id,
              *shard->address? shard->address: "unknown address");
    if (first) {
        char ours [2 * 255 + 1], theirs [2 * 255 + 1];
        log_error ("room shard %s refused: peer %s (%s) says hello with the id of the live "
                   "shard at peer %s (%s); two shards have SHARD_ID %s, stop one", shard->id,
                   s_hex (from, theirs, sizeof theirs), *address? address: "unknown address",
                   s_hex (&shard->identity, ours, sizeof ours),
                   *shard->address? shard->address: "unknown address", shard->id);
        s_snapshot_update ();
    }
    proto_msg_t error = { .type = PROTO_ERROR, .error = { 409, reason } };
    s_send_to (from, &error);
}

void
shards_hello (const ident_t *from, const char *address, const proto_shard_hello_t *hello)
{
    size_t index = 0;
    while (index < s_shard_count && strcmp (s_shards [index].id, hello->shard_id) < 0)
        index++;
    shard_t *shard = &s_shards [index];
    //  A shard that was not live here (new, dropped while silent, or
    //  restarted) may hold copies of rooms served elsewhere meanwhile: the
    //  welcome tells it to drop them (proto.h, Ownership).
    bool fresh = false;
    if (index == s_shard_count || strcmp (shard->id, hello->shard_id) != 0) {
        if (s_shard_count == SHARDS_MAX) {
            log_warn ("room shard %s refused: %d shards are live already", hello->shard_id,
                      SHARDS_MAX);
            return;
        }
        memmove (shard + 1, shard, (s_shard_count - index) * sizeof *shard);
        s_shard_count++;
        s_generation++;
        memset (shard, 0, sizeof *shard);
        snprintf (shard->id, sizeof shard->id, "%s", hello->shard_id);
        shard->identity = *from;
        snprintf (shard->address, sizeof shard->address, "%s", address);
        log_info ("room shard %s joined (%u rooms); %zu live", shard->id, hello->rooms,
                  s_shard_count);
        fresh = true;
        s_snapshot_update ();
    }
    else
    if (!s_same (&shard->identity, from)) {
        if (!s_old_link_gone (shard)) {
            s_refuse_rival (shard, from, address);
            return;
        }
        //  The same shard id on a new link, the old one gone: it
        //  restarted. Whatever was sent to the old link will not be answered.
        log_info ("room shard %s reconnected", shard->id);
        shard->identity = *from;
        snprintf (shard->address, sizeof shard->address, "%s", address);
        if (shard->rival_seen_ms && s_same (&shard->rival, from))
            shard->rival_seen_ms = 0;   //  the second took the id over
        s_snapshot_update ();
        pending_fail_shard (shard->id, "restarted", true);
        pending_resend_parked (shard);
        fresh = true;
    }
    shard->seen_ms = clock_mono_ms ();
    //  Events the shard sent while it was not live here (or on its old
    //  link) may be lost: the last of a burst would show as no gap at all.
    if (fresh)
        s_audit = true;

    const char *ids [SHARDS_MAX];
    for (size_t i = 0; i < s_shard_count; i++)
        ids [i] = s_shards [i].id;
    proto_msg_t welcome = { .type = PROTO_SHARD_WELCOME, .shard_welcome = {
        .gateway_id = gateway_config.gateway_id, .shards = ids,
        .shard_count = (uint32_t) s_shard_count, .fresh = fresh } };
    s_send_to (from, &welcome);
}

bool
shards_take_audit (void)
{
    bool audit = s_audit;
    s_audit = false;
    return audit;
}

const shard_t *
shards_owner (const char *room_id)
{
    const char *ids [SHARDS_MAX];
    for (size_t i = 0; i < s_shard_count; i++)
        ids [i] = s_shards [i].id;
    int index = route_pick (room_id, ids, s_shard_count);
    return index < 0? NULL: &s_shards [index];
}

const shard_t *
shards_find (const char *shard_id)
{
    for (size_t i = 0; i < s_shard_count; i++)
        if (strcmp (s_shards [i].id, shard_id) == 0)
            return &s_shards [i];
    return NULL;
}

void
shards_reset (void)
{
    s_shard_count = 0;
    s_snapshot_update ();
}
