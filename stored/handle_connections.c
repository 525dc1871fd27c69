/*  =========================================================================
    handle_connections.c - connections: put, delete, list by gateway, user
    or room; the gateways' heartbeats; and stored's own statistics

    Each connection record has an entry in byGateway and byUser, and in
    byRoom while it is in a room; every writer (connections_replace and
    connections_delete, here for conn-put and conn-del and for room-update
    in handle_rooms.c) mends all three. byGateway is by gateway id and then
    incarnation, so one run's connections are listed apart from another's
    of the same GATEWAY_ID.

    Who writes what: a gateway puts a socket's record at open (no room) and
    deletes it at close; the room's shard writes the room into it, in the
    room-update of the join, and takes it out (or deletes the record, for
    a socket that closed) in the leave's (proto.h, room-update). The two
    travel different links and may cross, so a put without a room that
    lands on a record with one changes only its connectedAt.

    Gateways beat per run (proto.h, gateway-beat). A run that stops beating,
    or that a new run of its gateway id replaced, left its connections
    behind: the reaper finds it here (gateways-silent, which declares it
    dead in the same transaction, so that no beat of it is taken from then
    on), clears them, and forgets it. A beat of a dead or forgotten run is
    refused with 410, so a run that was only stalled learns that its
    sockets no longer count and closes them.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "stored.h"

//  The (index, key) pairs a connection is listed under; room only when set.
//  Each key is a length-prefixed value and the conn id; byGateway's has
//  the incarnation between them.
static int
s_connection_indexes (db_t *db, const proto_connection_t *connection,
                      MDB_dbi dbis [3], db_key_t keys [3])
{
    int count = 0;
    dbis [count] = db->connections_by_gateway;
    db_key_lstr (db_key_lstr (db_key_begin (&keys [count++]), connection->gateway_id),
                 connection->incarnation? connection->incarnation: "");
    dbis [count] = db->connections_by_user;
    db_key_lstr (db_key_begin (&keys [count++]), connection->user_id);
    if (connection->room_id) {
        dbis [count] = db->connections_by_room;
        db_key_lstr (db_key_begin (&keys [count++]), connection->room_id);
    }
    for (int i = 0; i < count; i++)
        db_key_str (&keys [i], connection->conn_id);
    return count;
}

//  The key of one run in the gateways database.
static db_key_t *
s_run_key (db_key_t *key, const char *gateway_id, const char *incarnation)
{
    return db_key_str (db_key_lstr (db_key_begin (key), gateway_id), incarnation);
}

//  Add (or, with remove, delete) a connection's index entries.
static int
s_index (db_t *db, MDB_txn *txn, const proto_connection_t *connection, bool remove)
{
    MDB_dbi dbis [3];
    db_key_t keys [3];
    int count = s_connection_indexes (db, connection, dbis, keys);
    for (int i = 0; i < count; i++) {
        MDB_val k = db_val (&keys [i]);
        MDB_val empty = { 0, NULL };
        int rc = remove? mdb_del (txn, dbis [i], &k, NULL): mdb_put (txn, dbis [i], &k, &empty, 0);
        if (rc && !(remove && rc == MDB_NOTFOUND))
            return rc;
    }
    return 0;
}

int
connections_replace (handler_ctx_t *ctx, const proto_connection_t *old,
                     const proto_connection_t *connection)
{
    int rc = old? s_index (ctx->db, ctx->txn, old, true): 0;
    if (rc)
        return rc;
    msgpack_sbuffer_clear (ctx->scratch);
    rc = proto_connection_pack (ctx->scratch, connection);
    assert (rc == 0);           //  it decoded, or was made of what decoded
    db_key_t key;
    MDB_val k = db_val (db_key_str (db_key_begin (&key), connection->conn_id));
    MDB_val v = { ctx->scratch->size, ctx->scratch->data };
    rc = mdb_put (ctx->txn, ctx->db->connections, &k, &v, 0);
    return rc? rc: s_index (ctx->db, ctx->txn, connection, false);
}

int
connections_delete (handler_ctx_t *ctx, const proto_connection_t *old, const char *conn_id)
{
    //  Unreadable (no old): its index entries stay orphaned, the record goes.
    int rc = old? s_index (ctx->db, ctx->txn, old, true): 0;
    if (rc)
        return rc;
    db_key_t key;
    MDB_val k = db_val (db_key_str (db_key_begin (&key), conn_id));
    return mdb_del (ctx->txn, ctx->db->connections, &k, NULL);
}

int
connections_leave_room (handler_ctx_t *ctx, const char *room_id, const char *user_id)
{
    //  By the user's index, which holds a few sockets (a room may hold
    //  thousands); the records first, then the changes: a cursor does not
    //  walk entries that move under it.
    db_key_t prefix;
    db_key_lstr (db_key_begin (&prefix), user_id);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, ctx->db->connections_by_user, &cursor);
    if (rc)
        return rc;
    size_t count = 0, max = 8;
    proto_connection_t *leaving = msgpack_zone_malloc (ctx->zone, max * sizeof *leaving);
    assert (leaving);
    MDB_val k = db_val (&prefix), v;
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= prefix.size || memcmp (k.mv_data, prefix.bytes, prefix.size) != 0)
            break;
        if (k.mv_size - prefix.size > PROTO_ID_MAX)
            continue;
        char conn_id [PROTO_ID_MAX + 1];
        memcpy (conn_id, (char *) k.mv_data + prefix.size, k.mv_size - prefix.size);
        conn_id [k.mv_size - prefix.size] = 0;
        leaving = db_zone_grow (ctx->zone, leaving, count, &max, sizeof *leaving);
        if (db_connection_get (ctx->db, ctx->txn, conn_id, ctx->zone, &leaving [count]) == 0
        &&  leaving [count].room_id && strcmp (leaving [count].room_id, room_id) == 0)
            count++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        proto_connection_t out = leaving [i];
        out.room_id = NULL;
        rc = connections_replace (ctx, &leaving [i], &out);
    }
    return rc;
}

int
connections_run_dead (handler_ctx_t *ctx, const proto_connection_t *connection, bool *dead)
{
    *dead = false;
    if (!connection->incarnation)
        return 0;
    db_key_t key;
    MDB_val k = db_val (s_run_key (&key, connection->gateway_id, connection->incarnation)), v;
    int rc = mdb_get (ctx->txn, ctx->db->gateways, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    *dead = rc == 0 && v.mv_size == 8 && db_read_u64 (v.mv_data) == 0;
    return rc;
}

int
handle_conn_put (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    proto_connection_t connection = request->conn_put.connection, old;
    int rc = db_connection_get (ctx->db, ctx->txn, connection.conn_id, ctx->zone, &old);
    if (rc && rc != MDB_NOTFOUND && rc != EPROTO)
        return rc;
    //  A put without a room (a gateway's, at open) that crossed the shard's
    //  write of the join leaves that record as the shard wrote it (the
    //  join's profile is the newer), but for when the socket opened.
    if (rc == 0 && !connection.room_id && old.room_id) {
        int64_t connected_at_ms = connection.connected_at_ms;
        connection = old;
        connection.connected_at_ms = connected_at_ms;
    }
    rc = connections_replace (ctx, rc == 0? &old: NULL, &connection);
    if (rc)
        return rc;
    reply->type = PROTO_OK;
    return 0;
}

int
handle_conn_del (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const char *conn_id = request->conn_del.conn_id;
    proto_connection_t old;
    int rc = db_connection_get (ctx->db, ctx->txn, conn_id, ctx->zone, &old);
    if (rc == MDB_NOTFOUND)
        return reply_error (ctx, reply, 404, "no connection %s", conn_id);
    if (rc && rc != EPROTO)
        return rc;
    rc = connections_delete (ctx, rc == 0? &old: NULL, conn_id);
    if (rc)
        return rc;
    reply->type = PROTO_OK;
    return 0;
}

int
handle_conn_list (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_conn_list_t *list = &request->conn_list;
    uint32_t limit = list->limit? list->limit: PROTO_LIST_MAX;
    MDB_dbi dbi = list->gateway_id? ctx->db->connections_by_gateway
                : list->user_id?    ctx->db->connections_by_user
                :                   ctx->db->connections_by_room;
    const char *value = list->gateway_id? list->gateway_id
                      : list->user_id?    list->user_id
                      :                   list->room_id;
    assert (value);             //  the decoder insists on exactly one
    proto_connection_t *connections = msgpack_zone_malloc (ctx->zone, limit * sizeof *connections);
    assert (connections);
    uint32_t count = 0;
    db_key_t prefix;
    db_key_lstr (db_key_begin (&prefix), value);
    if (list->incarnation)
        db_key_lstr (&prefix, list->incarnation);
    //  By gateway without an incarnation: every run's, past each one's.
    bool skip_incarnation = list->gateway_id && !list->incarnation;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, dbi, &cursor);
    if (rc)
        return rc;
    MDB_val k = db_val (&prefix), v;
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE);
         rc == 0 && count < limit;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= prefix.size || memcmp (k.mv_data, prefix.bytes, prefix.size) != 0)
            break;
        char conn_id [PROTO_ID_MAX + 1];
        size_t at = prefix.size;
        if (skip_incarnation)
            at += 1 + ((const uint8_t *) k.mv_data) [at];
        if (at >= k.mv_size || k.mv_size - at > PROTO_ID_MAX)
            continue;
        size_t size = k.mv_size - at;
        memcpy (conn_id, (char *) k.mv_data + at, size);
        conn_id [size] = 0;
        if (db_connection_get (ctx->db, ctx->txn, conn_id, ctx->zone, &connections [count]) == 0)
            count++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    reply->type = PROTO_CONN_LIST_REPLY;
    reply->conn_list_reply.connections = connections;
    reply->conn_list_reply.count = count;
    return 0;
}

//  Read a gateways key back into gateway id and incarnation (zone copies).
//  False for a key of another layout.
static bool
s_run_of (handler_ctx_t *ctx, const MDB_val *k, proto_gateway_run_t *run)
{
    const uint8_t *bytes = k->mv_data;
    if (k->mv_size < 2)
        return false;
    size_t id_size = bytes [0], incarnation_size = k->mv_size - 1 - id_size;
    if (id_size == 0 || id_size > PROTO_ID_MAX || 1 + id_size >= k->mv_size
    ||  incarnation_size > PROTO_ID_MAX)
        return false;
    char *id = msgpack_zone_malloc (ctx->zone, id_size + 1);
    char *incarnation = msgpack_zone_malloc (ctx->zone, incarnation_size + 1);
    assert (id && incarnation);
    memcpy (id, bytes + 1, id_size);
    id [id_size] = 0;
    memcpy (incarnation, bytes + 1 + id_size, incarnation_size);
    incarnation [incarnation_size] = 0;
    run->gateway_id = id;
    run->incarnation = incarnation;
    return true;
}

//  A new run of gateway_id: every other run of it is dead (set to 0).
static int
s_replace_runs (handler_ctx_t *ctx, const char *gateway_id, const char *incarnation)
{
    db_key_t prefix;
    db_key_lstr (db_key_begin (&prefix), gateway_id);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, ctx->db->gateways, &cursor);
    if (rc)
        return rc;
    MDB_val k = db_val (&prefix), v;
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= prefix.size || memcmp (k.mv_data, prefix.bytes, prefix.size) != 0)
            break;
        size_t size = k.mv_size - prefix.size;
        if (v.mv_size != 8 || db_read_u64 (v.mv_data) == 0
        || (size == strlen (incarnation)
            && memcmp ((char *) k.mv_data + prefix.size, incarnation, size) == 0))
            continue;
        db_key_t dead;
        MDB_val value = db_val (db_key_u64 (db_key_begin (&dead), 0));
        rc = mdb_cursor_put (cursor, &k, &value, MDB_CURRENT);
        if (rc)
            break;
    }
    mdb_cursor_close (cursor);
    return rc == MDB_NOTFOUND? 0: rc;
}

int
handle_gateway_beat (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_gateway_beat_t *beat = &request->gateway_beat;
    db_key_t key, when;
    MDB_val k = db_val (s_run_key (&key, beat->gateway_id, beat->incarnation)), v;
    int rc;
    if (beat->gone) {
        rc = mdb_del (ctx->txn, ctx->db->gateways, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    else {
        rc = mdb_get (ctx->txn, ctx->db->gateways, &k, &v);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        bool known = rc == 0, dead = known && v.mv_size == 8 && db_read_u64 (v.mv_data) == 0;
        if (dead || (!known && !beat->first))
            return reply_error (ctx, reply, 410, "run %s of gateway %s %s: its connections "
                                "were cleared", beat->incarnation, beat->gateway_id,
                                dead? "was declared dead": "is unknown");
        rc = known? 0: s_replace_runs (ctx, beat->gateway_id, beat->incarnation);
        //  at 0 is the mark of the dead: a live run is heard at 1 at least.
        MDB_val at = db_val (db_key_u64 (db_key_begin (&when),
                                         beat->at_ms > 0? (uint64_t) beat->at_ms: 1));
        if (rc == 0)
            rc = mdb_put (ctx->txn, ctx->db->gateways, &k, &at, 0);
    }
    if (rc)
        return rc;
    reply->type = PROTO_OK;
    return 0;
}

int
handle_gateways_silent (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_gateways_silent_t *silent = &request->gateways_silent;
    uint32_t limit = silent->limit? silent->limit: 100;
    proto_gateway_run_t *runs = msgpack_zone_malloc (ctx->zone, limit * sizeof *runs);
    assert (runs);
    uint32_t count = 0;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, ctx->db->gateways, &cursor);
    if (rc)
        return rc;
    //  A handful of gateways: a walk over all of them is the index. Each
    //  run listed is dead from now on (at 0), in this transaction.
    MDB_val k, v;
    db_key_t dead;
    MDB_val zero = db_val (db_key_u64 (db_key_begin (&dead), 0));
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_FIRST);
         rc == 0 && count < limit;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        if (v.mv_size != 8 || db_read_u64 (v.mv_data) >= (uint64_t) silent->before_ms
        ||  !s_run_of (ctx, &k, &runs [count]))
            continue;
        if (db_read_u64 (v.mv_data) != 0 && (rc = mdb_cursor_put (cursor, &k, &zero, MDB_CURRENT)))
            break;
        count++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    reply->type = PROTO_GATEWAY_LIST;
    reply->gateway_list.gateways = runs;
    reply->gateway_list.count = count;
    return 0;
}

static uint64_t
s_entries (MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat stat;
    return mdb_stat (txn, dbi, &stat) == 0? stat.ms_entries: 0;
}

int
handle_store_stats (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    (void) request;
    proto_stats_reply_t *stats = &reply->stats_reply;
    db_usage (ctx->db, &stats->map_used, &stats->map_size);
    stats->rooms = s_entries (ctx->txn, ctx->db->rooms);
    stats->active_rooms = s_entries (ctx->txn, ctx->db->rooms_by_activity);
    stats->messages = s_entries (ctx->txn, ctx->db->messages);
    stats->connections = s_entries (ctx->txn, ctx->db->connections);
    stats->commits = ctx->commits;
    stats->writes = ctx->writes;
    stats->swept = ctx->swept;
    stats->map_grows = ctx->db->map_grows;
    reply->type = PROTO_STATS_REPLY;
    return 0;
}

int
handle_metrics (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    //  The same numbers as store-stats, and the commit histograms.
    proto_msg_t scratch = { 0 };
    handle_store_stats (ctx, request, &scratch);
    const proto_stats_reply_t stats = scratch.stats_reply;
    //  One reply at a time is encoded before the next request is read.
    static metrics_set_t set;
    metrics_set_init (&set, "stored", "stored");
    metrics_gauge (&set, "nearchat_stored_map_size_bytes", "LMDB map size.",
                   (double) stats.map_size);
    metrics_gauge (&set, "nearchat_stored_map_used_bytes", "LMDB map in use.",
                   (double) stats.map_used);
    metrics_gauge (&set, "nearchat_stored_rooms", "Rooms stored, open or closed.",
                   (double) stats.rooms);
    metrics_gauge (&set, "nearchat_stored_rooms_active", "Rooms stored as active.",
                   (double) stats.active_rooms);
    metrics_gauge (&set, "nearchat_stored_messages", "Messages stored.",
                   (double) stats.messages);
    metrics_gauge (&set, "nearchat_stored_connections", "Connection records stored.",
                   (double) stats.connections);
    metrics_counter (&set, "nearchat_stored_commits_total", "Write transactions committed.",
                     (double) stats.commits);
    metrics_counter (&set, "nearchat_stored_writes_total", "Write requests committed.",
                     (double) stats.writes);
    metrics_counter (&set, "nearchat_stored_swept_total", "Messages deleted by TTL.",
                     (double) stats.swept);
    metrics_counter (&set, "nearchat_stored_map_grows_total", "Times the LMDB map grew.",
                     (double) stats.map_grows);
    metrics_gauge (&set, "nearchat_stored_client_ids_pending",
                   "messageId index entries held in memory, not yet written (their messages are).",
                   (double) client_ids_pending (ctx->client_ids));
    metrics_histogram (&set, "nearchat_stored_commit_batch_writes",
                       "Writes in one group commit.", &ctx->batch_writes);
    metrics_histogram (&set, "nearchat_stored_commit_seconds",
                       "Applying and durably committing one batch.", &ctx->commit_seconds);
    reply->type = PROTO_METRICS_REPLY;
    reply->metrics_reply = set.reply;
    return 0;
}
