/*  =========================================================================
    handle_messages.c - messages: append, history and the TTL sweep

    A message lives under len|room id, seq: one room's messages are one run
    of keys in seq order, so history is a cursor walk either way. Beside it:
    byClientId (room, client id -> seq, through client_ids.c, which holds
    its newest entries in memory a while) makes a resend idempotent, and
    byExpiry (expiry, room, seq) lets the sweep find what is due without
    reading anything that is not. A history page stops at its limit or at
    PROTO_REPLY_BYTES_MAX of messages, whichever comes first, and says
    `more` when it stopped with messages left in its direction.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "stored.h"
#include "clock.h"
#include "ids.h"
#include "log.h"
#include "route.h"

#define HISTORY_LIMIT   50

static void
s_message_key (db_key_t *key, const char *room_id, uint64_t seq)
{
    db_key_u64 (db_key_lstr (db_key_begin (key), room_id), seq);
}

static void
s_expiry_key (db_key_t *key, int64_t expires_at_ms, const char *room_id, uint64_t seq)
{
    db_key_u64 (db_key_lstr (db_key_u64 (db_key_begin (key), (uint64_t) expires_at_ms),
                             room_id), seq);
}

//  The cache's copy of a room: found, or read from the database and kept
//  (its strings in ctx->room_zone, which lives as long as the cache).
//  Returns 0 with *cached set, or MDB_NOTFOUND, EPROTO, an LMDB error.
static int
s_room_cached (handler_ctx_t *ctx, const char *room_id, cached_room_t **cached)
{
    if (ctx->room_cache_count >= ROOM_CACHE_SLOTS / 2) {
        int rc = rooms_flush (ctx);     //  keep the table sparse
        if (rc)
            return rc;
    }
    size_t slot = route_hash (room_id, strlen (room_id), 0) % ROOM_CACHE_SLOTS;
    while (ctx->room_cache [slot].used) {
        if (strcmp (ctx->room_cache [slot].room.id, room_id) == 0) {
            *cached = &ctx->room_cache [slot];
            return 0;
        }
        slot = (slot + 1) % ROOM_CACHE_SLOTS;
    }
    cached_room_t *entry = &ctx->room_cache [slot];
    int rc = db_room_get (ctx->db, ctx->txn, room_id, ctx->room_zone, &entry->room);
    if (rc)
        return rc;
    entry->used = true;
    entry->dirty = false;
    entry->stored_activity_ms = entry->room.last_activity_ms;
    ctx->room_cache_count++;
    *cached = entry;
    return 0;
}

//  Write every changed room; keep them (keep) or empty the cache.
static int
s_rooms_write (handler_ctx_t *ctx, bool keep)
{
    int rc = 0;
    size_t seen = 0, count = ctx->room_cache_count;
    for (size_t slot = 0; slot < ROOM_CACHE_SLOTS && seen < count; slot++) {
        cached_room_t *entry = &ctx->room_cache [slot];
        if (!entry->used)
            continue;
        seen++;
        if (entry->dirty && rc == 0) {
            rc = db_room_put (ctx->db, ctx->txn, &entry->room, ctx->scratch);
            if (rc == 0 && entry->room.status == PROTO_STATUS_ACTIVE)
                rc = db_room_activity_moved (ctx->db, ctx->txn, entry->room.id,
                                             entry->stored_activity_ms,
                                             entry->room.last_activity_ms);
            entry->dirty = false;
            entry->stored_activity_ms = entry->room.last_activity_ms;
        }
        if (!keep) {
            entry->used = false;
            ctx->room_cache_count--;
        }
    }
    if (rc || !keep)
        rooms_forget (ctx);
    return rc;
}

int
rooms_flush (handler_ctx_t *ctx)
{
    return s_rooms_write (ctx, false);
}

int
rooms_write (handler_ctx_t *ctx)
{
    return s_rooms_write (ctx, true);
}

void
rooms_forget (handler_ctx_t *ctx)
{
    memset (ctx->room_cache, 0, ROOM_CACHE_SLOTS * sizeof *ctx->room_cache);
    ctx->room_cache_count = 0;
    msgpack_zone_clear (ctx->room_zone);
}

static int
s_reply_appended (proto_msg_t *reply, const proto_message_t *message, bool duplicate)
{
    reply->type = PROTO_APPEND_REPLY;
    reply->append_reply.seq = message->seq;
    reply->append_reply.id = message->id;
    reply->append_reply.created_at_ms = message->created_at_ms;
    reply->append_reply.duplicate = duplicate;
    return 0;
}

int
handle_msg_append (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    db_t *db = ctx->db;
    proto_message_t message = request->msg_append.message;
    cached_room_t *cached;
    int rc = s_room_cached (ctx, message.room_id, &cached);
    if (rc == MDB_NOTFOUND)
        return reply_error (ctx, reply, 404, "no room %s", message.room_id);
    if (rc == EPROTO)
        return reply_error (ctx, reply, 500, "room %s is unreadable", message.room_id);
    if (rc)
        return rc;
    db_key_t key;
    MDB_val k, v;
    //  The shard numbers the room's messages (proto.h, msg-append). A retry
    //  of one stored already (its answer was lost) answers as the first
    //  did, whatever became of the room since: its sender is owed the ack.
    if (message.seq && message.id && message.seq <= cached->room.last_seq) {
        proto_message_t first;
        rc = db_message_get (db, ctx->txn, message.room_id, message.seq, ctx->zone, &first);
        if (rc == 0 && first.id && strcmp (first.id, message.id) == 0)
            return s_reply_appended (reply, &first, true);
        if (rc && rc != MDB_NOTFOUND && rc != EPROTO)
            return rc;
    }
    //  A shard that lost the room (proto.h, Ownership) writes nothing.
    uint64_t if_epoch = request->msg_append.if_epoch;
    if (if_epoch && cached->room.epoch != if_epoch)
        return reply_error (ctx, reply, 421, "room %s is owned by another shard (epoch %llu, not %llu)",
                            message.room_id, (unsigned long long) cached->room.epoch,
                            (unsigned long long) if_epoch);

    //  A resend of a message already stored answers as the first did, even
    //  after the room closed: the client is owed its acknowledgement.
    if (message.client_id) {
        uint64_t first_seq;
        rc = client_ids_find (ctx, message.room_id, message.client_id, &first_seq);
        if (rc == 0) {
            proto_message_t first;
            rc = db_message_get (db, ctx->txn, message.room_id, first_seq, ctx->zone, &first);
            //  The key is the room's and the client's id, as in the original;
            //  another user's message under it is a collision, not a resend,
            //  and is refused rather than acknowledged as what it is not.
            if (rc == 0 && strcmp (first.user_id, message.user_id) != 0)
                return reply_error (ctx, reply, 409, "messageId %s is another user's in room %s",
                                    message.client_id, message.room_id);
            if (rc == 0)
                return s_reply_appended (reply, &first, true);
        }
        if (rc && rc != MDB_NOTFOUND && rc != EPROTO)
            return rc;
    }
    proto_room_t *room = &cached->room;
    if (room->status != PROTO_STATUS_ACTIVE)
        return reply_error (ctx, reply, 409, "room %s is closed", room->id);
    //  Below the room's last, only the owner's own message may land: the
    //  retry of an append that later ones overtook (stored restarted
    //  between them), into the hole it left. if_epoch, checked above, says
    //  its shard still owns the room, and an owner numbers a seq for one
    //  message only (roomd/handle_send.c). Without an epoch, or on a seq
    //  that holds a message, another owner may have fanned the seq out
    //  with another message: it is never used again (roomd reloads).
    bool below = message.seq && message.seq <= room->last_seq;
    if (message.seq == 0)
        message.seq = room->last_seq + 1;
    else
    if (below && !if_epoch)
        return reply_error (ctx, reply, 421, "seq %llu is not above room %s's last, %llu",
                            (unsigned long long) message.seq, room->id,
                            (unsigned long long) room->last_seq);
    else {
        s_message_key (&key, message.room_id, message.seq);
        k = db_val (&key);
        rc = mdb_get (ctx->txn, db->messages, &k, &v);
        if (rc == 0 && below)
            return reply_error (ctx, reply, 421, "room %s has another message at %llu, "
                                "below its last, %llu", room->id,
                                (unsigned long long) message.seq,
                                (unsigned long long) room->last_seq);
        if (rc == 0)
            return reply_error (ctx, reply, 409, "room %s has a message %llu already",
                                room->id, (unsigned long long) message.seq);
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    if (!message.id) {
        char id [IDS_UUID_SIZE];
        message.id = zone_strdup (ctx->zone, ids_uuid (id));
    }
    if (!message.expires_at_ms)
        message.expires_at_ms = message.created_at_ms + ctx->config->message_ttl_s * 1000;

    //  The message, then its two index entries.
    msgpack_sbuffer_clear (ctx->scratch);
    if (proto_message_pack (ctx->scratch, &message))
        return reply_error (ctx, reply, 400, "message does not encode");
    s_message_key (&key, message.room_id, message.seq);
    k = db_val (&key);
    v.mv_size = ctx->scratch->size;
    v.mv_data = ctx->scratch->data;
    rc = mdb_put (ctx->txn, db->messages, &k, &v, 0);
    if (rc == 0 && message.client_id)
        rc = client_ids_add (ctx, message.room_id, message.client_id, message.seq,
                             message.seq > room->last_seq);
    if (rc == 0) {
        s_expiry_key (&key, message.expires_at_ms, message.room_id, message.seq);
        k = db_val (&key);
        v.mv_size = 0;
        v.mv_data = NULL;
        rc = mdb_put (ctx->txn, db->messages_by_expiry, &k, &v, 0);
    }
    //  The room remembers its newest seq (where numbering continues after a
    //  restart) and its last activity (what the reaper reads); written when
    //  the batch flushes its rooms.
    if (rc == 0 && message.seq > room->last_seq) {
        room->last_seq = message.seq;
        cached->dirty = true;
    }
    if (rc == 0 && message.created_at_ms > room->last_activity_ms) {
        room->last_activity_ms = message.created_at_ms;
        cached->dirty = true;
    }
    return rc? rc: s_reply_appended (reply, &message, false);
}

//  Whether a page of count messages (bytes of them encoded) is full before
//  the next, of size bytes: by count, or by PROTO_REPLY_BYTES_MAX, but
//  never before its first message. A record is stored as it travels (the
//  same msgpack map), so its size in LMDB is its size in the reply.
static bool
s_page_full (uint32_t count, uint32_t limit, size_t bytes, size_t size)
{
    return count == limit || (count > 0 && bytes + size > PROTO_REPLY_BYTES_MAX);
}

int
handle_history (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    const proto_history_t *history = &request->history;
    uint32_t limit = history->limit? history->limit: HISTORY_LIMIT;
    proto_room_t room;
    int rc = db_room_get (ctx->db, ctx->txn, history->room_id, ctx->zone, &room);
    if (rc == MDB_NOTFOUND)
        return reply_error (ctx, reply, 404, "no room %s", history->room_id);
    if (rc && rc != EPROTO)
        return rc;

    proto_message_t *messages = msgpack_zone_malloc (ctx->zone, limit * sizeof *messages);
    assert (messages);
    uint32_t count = 0;
    size_t bytes = 0;                   //  of the messages taken, as they are encoded
    bool more = false;
    db_key_t prefix;
    db_key_lstr (db_key_begin (&prefix), history->room_id);
    MDB_cursor *cursor;
    rc = mdb_cursor_open (ctx->txn, ctx->db->messages, &cursor);
    if (rc)
        return rc;
    //  Whether a key belongs to this room: the length-prefixed id, then a seq.
    #define IN_ROOM(k) ((k).mv_size == prefix.size + 8 \
                     && memcmp ((k).mv_data, prefix.bytes, prefix.size) == 0)
    db_key_t key;
    MDB_val k, v;
    char why [PROTO_WHY_MAX];
    if (history->from_seq) {
        //  Forward from from_seq.
        s_message_key (&key, history->room_id, history->from_seq);
        k = db_val (&key);
        for (rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE);
             rc == 0 && IN_ROOM (k);
             rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
            if (s_page_full (count, limit, bytes, v.mv_size)) {
                more = true;
                break;
            }
            if (proto_message_unpack (v.mv_data, v.mv_size, ctx->zone, &messages [count],
                                      why, sizeof why) == 0) {
                count++;
                bytes += v.mv_size;
            }
        }
    }
    else {
        //  Backward from before_seq - 1 (or the newest), then reversed.
        uint64_t before = history->before_seq? history->before_seq: UINT64_MAX;
        s_message_key (&key, history->room_id, before);
        k = db_val (&key);
        rc = mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE);
        rc = rc == 0? mdb_cursor_get (cursor, &k, &v, MDB_PREV)
                    : mdb_cursor_get (cursor, &k, &v, MDB_LAST);
        for (; rc == 0 && IN_ROOM (k); rc = mdb_cursor_get (cursor, &k, &v, MDB_PREV)) {
            if (s_page_full (count, limit, bytes, v.mv_size)) {
                more = true;
                break;
            }
            if (proto_message_unpack (v.mv_data, v.mv_size, ctx->zone, &messages [count],
                                      why, sizeof why) == 0) {
                count++;
                bytes += v.mv_size;
            }
        }
        for (uint32_t i = 0; i < count / 2; i++) {
            proto_message_t swap = messages [i];
            messages [i] = messages [count - 1 - i];
            messages [count - 1 - i] = swap;
        }
    }
    #undef IN_ROOM
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    reply->type = PROTO_HISTORY_REPLY;
    reply->history_reply.messages = messages;
    reply->history_reply.count = count;
    reply->history_reply.more = more;
    return 0;
}

int
messages_sweep (handler_ctx_t *ctx, int64_t now_ms, uint32_t max, uint32_t *deleted, bool *more)
{
    db_t *db = ctx->db;
    uint32_t dropped = 0;
    *deleted = 0;
    *more = false;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (ctx->txn, db->messages_by_expiry, &cursor);
    if (rc)
        return rc;
    MDB_val k, v;
    //  byExpiry sorts by expiry: everything due is at the front.
    for (rc = mdb_cursor_get (cursor, &k, &v, MDB_FIRST);
         rc == 0;
         rc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT)) {
        const uint8_t *bytes = k.mv_data;
        if (k.mv_size >= 8 && db_read_u64 (bytes) > (uint64_t) now_ms)
            break;
        if (*deleted + dropped == max) {
            *more = true;
            break;
        }
        //  Key: expiry u64, len|room id, seq u64. The id is checked
        //  before it is copied: a corrupt key may say 255 bytes, and
        //  room_id holds PROTO_ID_MAX. A key of another shape is not one
        //  we wrote: it is logged and dropped (the batch counts it, so a
        //  run of them stays bounded), never followed.
        size_t id_size = k.mv_size > 8? bytes [8]: 0;
        if (id_size == 0 || id_size > PROTO_ID_MAX || k.mv_size != 8 + 1 + id_size + 8
        ||  memchr (bytes + 9, 0, id_size)) {
            log_warn ("TTL index: dropped a key of %zu bytes that is not expiry, room id "
                      "and seq", k.mv_size);
            rc = mdb_cursor_del (cursor, 0);
            if (rc)
                break;
            dropped++;
            continue;
        }
        char room_id [PROTO_ID_MAX + 1];
        memcpy (room_id, bytes + 9, id_size);
        room_id [id_size] = 0;
        uint64_t seq = db_read_u64 (bytes + 9 + id_size);
        proto_message_t message;
        rc = db_message_get (db, ctx->txn, room_id, seq, ctx->zone, &message);
        if (rc == 0 && message.client_id)
            rc = client_ids_remove (ctx, room_id, message.client_id);
        if (rc == 0 || rc == MDB_NOTFOUND || rc == EPROTO) {
            db_key_t key;
            s_message_key (&key, room_id, seq);
            MDB_val message_key = db_val (&key);
            rc = mdb_del (ctx->txn, db->messages, &message_key, NULL);
        }
        if (rc == 0 || rc == MDB_NOTFOUND)
            rc = mdb_cursor_del (cursor, 0);
        if (rc)
            break;
        (*deleted)++;
    }
    mdb_cursor_close (cursor);
    ctx->swept += *deleted;
    return rc == MDB_NOTFOUND? 0: rc;
}

int
handle_ttl_sweep (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply)
{
    int64_t now_ms = request->ttl_sweep.now_ms? request->ttl_sweep.now_ms: clock_now_ms ();
    uint32_t max = request->ttl_sweep.max? request->ttl_sweep.max
                                         : (uint32_t) ctx->config->sweep_batch;
    uint32_t deleted;
    bool more;
    int rc = messages_sweep (ctx, now_ms, max, &deleted, &more);
    if (rc)
        return rc;
    reply->type = PROTO_SWEEP_REPLY;
    reply->sweep_reply.deleted = deleted;
    reply->sweep_reply.more = more;
    return 0;
}
