/*  =========================================================================
    handle_rooms.c - rooms: put, get, conditional update, idle rooms and
    geo search

    A room's record and its index entries change together: an ACTIVE room is
    in byCell (for search) and byActivity (for the reaper); a CLOSED one is in
    neither. Every writer below keeps that so.

    A room update also writes the connection records that go with it (a
    socket's join, leave or close: proto.h, room-update), in the same
    transaction and under the same conditions, through handle_connections.c's
    writers: a shard that loads the room lists its sockets as of that commit.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "stored.h"
#include "geo.h"

#define ROOMS_IDLE_LIMIT    100
#define GEO_SEARCH_LIMIT    50

//  Map an LMDB result of a room lookup to a reply, or pass an LMDB failure up.
static int
s_room_lookup_failed (handler_ctx_t *ctx, proto_msg_t *reply, int rc, const char *room_id)
{
    if (rc == MDB_NOTFOUND)
        return reply_error (ctx, reply, 404, "no room %s", room_id);
    if (rc == EPROTO)
        return reply_error (ctx, reply, 500, "room %s is unreadable", room_id);
    return rc;
}

static int
s_reply_room (proto_msg_t *reply, const proto_room_t *room, bool changed)
{
    reply->type = PROTO_ROOM_REPLY;
    reply->room_reply.room = *room;
    reply->room_reply.changed = changed;
    return 0;
}

int
handle_room_put (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_room_t *room = &request->room_put.room;
    if (room->participant_count > room->max_participants)
        return reply_error (ctx, reply, 400, "room has %u participants, more than its maximum %u",
                            room->participant_count, room->max_participants);
    proto_room_t old;
    int rc = db_room_get (ctx->db, ctx->txn, room->id, ctx->zone, &old);
    if (rc == 0 && request->room_put.if_absent)
        return reply_error (ctx, reply, 409, "room %s exists", room->id);
    if (rc == 0 && old.status == PROTO_STATUS_ACTIVE)
        rc = db_room_unindex (ctx->db, ctx->txn, &old);
    else
    if (rc == MDB_NOTFOUND || rc == EPROTO)
        rc = 0;                 //  a new room, or an unreadable one replaced
    if (rc == 0)
        rc = db_room_put (ctx->db, ctx->txn, room, ctx->scratch);
    if (rc == 0 && room->status == PROTO_STATUS_ACTIVE)
        rc = db_room_index (ctx->db, ctx->txn, room);
    return rc? rc: s_reply_room (reply, room, true);
}

int
handle_room_get (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    proto_room_t room;
    int rc = db_room_get (ctx->db, ctx->txn, request->room_get.room_id, ctx->zone, &room);
    if (rc)
        return s_room_lookup_failed (ctx, reply, rc, request->room_get.room_id);
    return s_reply_room (reply, &room, false);
}

static int
s_participant_index (const proto_room_t *room, const char *user_id)
{
    for (uint32_t i = 0; i < room->participant_count; i++)
        if (strcmp (room->participants [i], user_id) == 0)
            return (int) i;
    return -1;
}

//  The connection records of a room update, once its conditions held
//  (proto.h, room-update): the socket that left, then the records of a
//  participant who left, then the socket that joined.
static int
s_update_connections (handler_ctx_t *ctx, const proto_room_update_t *update, bool user_left)
{
    int rc = 0;
    proto_connection_t old;
    if (update->leave_conn_id) {
        rc = db_connection_get (ctx->db, ctx->txn, update->leave_conn_id, ctx->zone, &old);
        if (rc == MDB_NOTFOUND)
            rc = 0;             //  its gateway deleted it first, or the reaper did
        else
        if (rc == EPROTO && update->closed)
            rc = connections_delete (ctx, NULL, update->leave_conn_id);
        else
        if (rc == EPROTO)
            rc = 0;             //  unreadable: its gateway's conn-del takes it
        else
        if (rc == 0 && update->closed)
            rc = connections_delete (ctx, &old, update->leave_conn_id);
        else
        //  A socket that moved on keeps the room it moved to, should its
        //  join there have been written first (another shard's link).
        if (rc == 0 && old.room_id && strcmp (old.room_id, update->room_id) == 0) {
            proto_connection_t out = old;
            out.room_id = NULL;
            rc = connections_replace (ctx, &old, &out);
        }
    }
    if (rc == 0 && user_left)
        rc = connections_leave_room (ctx, update->room_id, update->remove_participant);
    if (rc == 0 && update->connection) {
        rc = db_connection_get (ctx->db, ctx->txn, update->connection->conn_id, ctx->zone, &old);
        if (rc && rc != MDB_NOTFOUND && rc != EPROTO)
            return rc;
        proto_connection_t joined = *update->connection;
        if (rc == 0)            //  since its socket opened, whoever wrote it first
            joined.connected_at_ms = old.connected_at_ms;
        rc = connections_replace (ctx, rc == 0? &old: NULL, &joined);
    }
    return rc;
}

int
handle_room_update (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_room_update_t *update = &request->room_update;
    proto_room_t room;
    int rc = db_room_get (ctx->db, ctx->txn, update->room_id, ctx->zone, &room);
    if (rc)
        return s_room_lookup_failed (ctx, reply, rc, update->room_id);

    //  Every condition before any change; a stale owner's first of all.
    if (update->if_epoch && room.epoch != update->if_epoch)
        return reply_error (ctx, reply, 421, "room %s is owned by another shard (epoch %llu, not %llu)",
                            room.id, (unsigned long long) room.epoch,
                            (unsigned long long) update->if_epoch);
    if (update->if_status && room.status != update->if_status)
        return reply_error (ctx, reply, 409, "room %s is %s", room.id,
                            proto_room_status_name (room.status));
    if (update->if_creator && strcmp (room.creator, update->if_creator) != 0)
        return reply_error (ctx, reply, 403, "only the room's creator may do this");
    if (update->if_idle_before_ms && room.last_activity_ms >= update->if_idle_before_ms)
        return reply_error (ctx, reply, 409, "room %s was active since", room.id);
    bool joins = update->add_participant
              && s_participant_index (&room, update->add_participant) < 0;
    if (joins && room.participant_count >= room.max_participants)
        return reply_error (ctx, reply, 400, "Room is full");
    bool dead = false;
    if (update->connection && (rc = connections_run_dead (ctx, update->connection, &dead)))
        return rc;
    if (dead)       //  its records are being cleared: one written now would stay behind
        return reply_error (ctx, reply, 410, "run %s of gateway %s was declared dead",
                            update->connection->incarnation, update->connection->gateway_id);

    proto_room_t old = room;
    bool changed = false;
    if (joins) {
        const char **participants = msgpack_zone_malloc (
            ctx->zone, (room.participant_count + 1) * sizeof (char *));
        assert (participants);
        if (room.participant_count)
            memcpy (participants, room.participants, room.participant_count * sizeof (char *));
        participants [room.participant_count++] = update->add_participant;
        room.participants = participants;
        changed = true;
    }
    int leaver = update->remove_participant
               ? s_participant_index (&room, update->remove_participant): -1;
    if (leaver >= 0) {
        //  The array may be the one the stored record was unpacked into;
        //  it is ours (in the zone) to edit. Order of joining is kept.
        const char **participants = (const char **) room.participants;
        memmove (participants + leaver, participants + leaver + 1,
                 (room.participant_count - (uint32_t) leaver - 1) * sizeof (char *));
        room.participant_count--;
        changed = true;
    }
    if (update->set_status && update->set_status != room.status) {
        room.status = update->set_status;
        changed = true;
    }
    if (update->touch_ms > room.last_activity_ms) {
        room.last_activity_ms = update->touch_ms;
        changed = true;
    }
    if (update->claim) {
        room.epoch++;
        changed = true;
    }

    //  The index entries depend on status, position and activity; remove the
    //  old ones and add the new ones rather than track which moved.
    if (changed && old.status == PROTO_STATUS_ACTIVE)
        rc = db_room_unindex (ctx->db, ctx->txn, &old);
    if (changed && rc == 0)
        rc = db_room_put (ctx->db, ctx->txn, &room, ctx->scratch);
    if (changed && rc == 0 && room.status == PROTO_STATUS_ACTIVE)
        rc = db_room_index (ctx->db, ctx->txn, &room);
    if (rc == 0)
        rc = s_update_connections (ctx, update, leaver >= 0);
    return rc? rc: s_reply_room (reply, &room, changed);
}

//  A room's size encoded, as a reply carries it: for PROTO_REPLY_BYTES_MAX.
//  A room of 100 long ids is about 6.7 KiB, so 1,000 of them would not fit a
//  frame; packing one again costs microseconds.
static size_t
s_room_size (handler_ctx_t *ctx, const proto_room_t *room)
{
    msgpack_sbuffer_clear (ctx->scratch);
    return proto_room_pack (ctx->scratch, room) == 0? ctx->scratch->size
                                                    : PROTO_REPLY_BYTES_MAX;
}

static int
s_activity_compare (const void *a, const void *b)
{
    const proto_room_t *left = a, *right = b;
    if (left->last_activity_ms != right->last_activity_ms)
        return left->last_activity_ms < right->last_activity_ms? -1: 1;
    return strcmp (left->id, right->id);
}

int
handle_rooms_idle (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    uint32_t limit = request->rooms_idle.limit? request->rooms_idle.limit: ROOMS_IDLE_LIMIT;
    size_t capacity = limit + 16;
    uint32_t count = 0;
    proto_room_t *rooms = msgpack_zone_malloc (ctx->zone, capacity * sizeof *rooms);
    assert (rooms);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, ctx->db->rooms_by_activity, &cursor);
    if (rc)
        return rc;
    MDB_val k, v;
    //  byActivity sorts by the second of last activity: read whole seconds up
    //  to the cutoff, keep the rooms whose exact time is before it, then
    //  sort by that time. A second is finished before the limit applies, so
    //  the rooms kept are the oldest.
    uint64_t stop_at_second = UINT64_MAX;
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_FIRST);
         rc == 0;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= 8)
            continue;
        uint64_t second = db_read_u64 (k.mv_data);
        if (second >= (uint64_t) request->rooms_idle.before_ms || second > stop_at_second)
            break;
        char room_id [PROTO_ID_MAX + 1];
        size_t length = k.mv_size - 8 > PROTO_ID_MAX? PROTO_ID_MAX: k.mv_size - 8;
        memcpy (room_id, (char *) k.mv_data + 8, length);
        room_id [length] = 0;
        rooms = db_zone_grow (ctx->zone, rooms, count, &capacity, sizeof *rooms);
        if (db_room_get (ctx->db, ctx->txn, room_id, ctx->zone, &rooms [count]) == 0
        &&  rooms [count].last_activity_ms < request->rooms_idle.before_ms)
            count++;
        if (count >= limit)
            stop_at_second = second;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    qsort (rooms, count, sizeof *rooms, s_activity_compare);
    if (count > limit)
        count = limit;
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t size = s_room_size (ctx, &rooms [i]);
        if (i > 0 && bytes + size > PROTO_REPLY_BYTES_MAX) {
            count = i;                  //  the rest are read again next time
            break;
        }
        bytes += size;
    }
    reply->type = PROTO_ROOM_LIST;
    reply->room_list.rooms = rooms;
    reply->room_list.count = count;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Geo search

typedef struct {
    double distance_m;
    char room_id [PROTO_ID_MAX + 1];
} s_candidate_t;

static int
s_candidate_compare (const void *a, const void *b)
{
    const s_candidate_t *left = a, *right = b;
    if (left->distance_m != right->distance_m)
        return left->distance_m < right->distance_m? -1: 1;
    return strcmp (left->room_id, right->room_id);
}

//  Candidates grow in a heap array kept across searches: the loop is single-
//  threaded, and a busy area's candidate count is not known in advance.
static s_candidate_t *s_candidates;
static size_t s_candidates_max;
static geo_cell_t *s_cells;
static size_t s_cells_max;

static void
s_candidate_add (size_t count, double distance_m, const char *id, size_t id_size)
{
    if (count == s_candidates_max) {
        s_candidates_max = s_candidates_max? s_candidates_max * 2: 256;
        s_candidates = realloc (s_candidates, s_candidates_max * sizeof *s_candidates);
        assert (s_candidates);
    }
    s_candidate_t *candidate = &s_candidates [count];
    candidate->distance_m = distance_m;
    if (id_size > PROTO_ID_MAX)
        id_size = PROTO_ID_MAX;
    memcpy (candidate->room_id, id, id_size);
    candidate->room_id [id_size] = 0;
}

int
handle_geo_search (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_geo_search_t *search = &request->geo_search;
    uint32_t limit = search->limit? search->limit: GEO_SEARCH_LIMIT;

    //  Every room whose radius may reach the point has its centre within the
    //  largest radius of it, so the cells covering that circle hold them all.
    size_t cells = geo_cover (search->latitude, search->longitude, ctx->db->max_radius_m,
                              s_cells, s_cells_max);
    if (cells > s_cells_max) {
        s_cells_max = cells;
        s_cells = realloc (s_cells, s_cells_max * sizeof *s_cells);
        assert (s_cells);
        cells = geo_cover (search->latitude, search->longitude, ctx->db->max_radius_m,
                           s_cells, s_cells_max);
    }
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, ctx->db->rooms_by_cell, &cursor);
    if (rc)
        return rc;
    size_t candidates = 0;
    for (size_t cell = 0; cell < cells; cell++) {
        db_key_t key;
        MDB_val k = db_val (db_key_u64 (db_key_begin (&key), s_cells [cell])), v;
        for (rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE);
             rc == 0;
             rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
            if (k.mv_size <= 8 || db_read_u64 (k.mv_data) != s_cells [cell])
                break;
            geo_entry_t entry;
            if (v.mv_size != sizeof entry)
                continue;
            memcpy (&entry, v.mv_data, sizeof entry);
            if (search->room_type && entry.room_type != search->room_type)
                continue;
            double distance_m = geo_distance_m (search->latitude, search->longitude,
                                                entry.latitude, entry.longitude);
            if (distance_m <= entry.radius_m)
                s_candidate_add (candidates++, distance_m, (char *) k.mv_data + 8,
                                 k.mv_size - 8);
        }
        if (rc && rc != MDB_NOTFOUND)
            break;
        rc = 0;
    }
    mdb_cursor_close (cursor);
    if (rc)
        return rc;

    //  Nearest first; ties by id so that the order is stable.
    //  (qsort's base must not be null, even for no candidates.)
    if (candidates > 1)
        qsort (s_candidates, candidates, sizeof *s_candidates, s_candidate_compare);
    proto_geo_hit_t *hits = msgpack_zone_malloc (
        ctx->zone, (candidates < limit? candidates: limit) * sizeof *hits + 1);
    assert (hits);
    uint32_t count = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < candidates && count < limit; i++) {
        proto_room_t *room = &hits [count].room;
        if (db_room_get (ctx->db, ctx->txn, s_candidates [i].room_id, ctx->zone, room))
            continue;
        if (room->status != PROTO_STATUS_ACTIVE
        ||  room->participant_count >= room->max_participants)
            continue;           //  full rooms are not offered
        size_t size = s_room_size (ctx, room);
        if (count > 0 && bytes + size > PROTO_REPLY_BYTES_MAX)
            break;              //  the nearest that fit in a reply
        bytes += size;
        hits [count++].distance_m = s_candidates [i].distance_m;
    }
    reply->type = PROTO_GEO_REPLY;
    reply->geo_reply.hits = hits;
    reply->geo_reply.count = count;
    return 0;
}
