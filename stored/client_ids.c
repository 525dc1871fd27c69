/*  =========================================================================
    client_ids.c - the client-id index's tail: recent entries kept in memory

    Messages.byClientId (len|room id, client id -> seq) makes a resend
    idempotent. Its keys are the clients' random ids, so every append would
    put one entry on a page of its own: the one page per message that a
    commit dirties besides the room's tail of Messages, and (measured with
    bench_stored) the largest part of what each fsync writes.

    So an in-order append (a seq above every seq the room has) leaves its
    entry here, in memory, and a room's entries go into byClientId together,
    once a second (STORED_CLIENT_ID_FLUSH_MS) or when the room has many:
    entries that land on the same page share its write. What makes that
    durable is the message itself, which holds its client id, and a mark:

      <messages>.byClientIdTail   len|room id -> seq u64: byClientId may
                                  lack the entries of this room's messages
                                  from seq on; they are here instead

    The mark is put in the transaction of the room's first deferred entry
    and deleted in the transaction that writes the room's entries, so the
    file always tells which entries are missing. At open (and after a
    transaction that changed this table was aborted) the table is rebuilt
    from the marks and the messages they point at: nothing acknowledged is
    ever forgotten, a kill -9 included. A clean stop writes every entry.

    Invariant: for every message with a client id, its (room, client id)
    entry is in byClientId, or in this table and at or after its room's mark.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "stored.h"
#include "clock.h"
#include "log.h"

#define CLIENT_IDS_ROOM_MAX     4096        //  a room with this many is written at once
#define CLIENT_IDS_MAX          (1 << 18)   //  past this many (~250 B each), all are written
#define CLIENT_IDS_FLUSH_ROOMS  64          //  most rooms written a commit
#define CLIENT_IDS_SEPARATOR    '\x1f'      //  ids hold no control characters

//  A room's deferred entries.
typedef struct {
    char room_id [PROTO_ID_MAX + 1];
    int64_t since_ms;               //  monotonic: when its first entry came
    char **keys;                    //  its entries' keys in entries, in arrival order
    size_t count, max;
} tail_room_t;

struct client_ids {
    zhashx_t *entries;              //  "room id\x1fclient id" -> uint64_t seq (malloc'd)
    zhashx_t *rooms;                //  room id -> tail_room_t
    int64_t flush_ms;               //  0: entries go to byClientId at once
};

static void
s_free_item (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static void
s_room_destroy (void **item_p)
{
    tail_room_t *room = *item_p;
    for (size_t i = 0; i < room->count; i++)
        free (room->keys [i]);
    free (room->keys);
    free (room);
    *item_p = NULL;
}

client_ids_t *
client_ids_new (int64_t flush_ms)
{
    client_ids_t *self = calloc (1, sizeof *self);
    assert (self);
    self->entries = zhashx_new ();
    self->rooms = zhashx_new ();
    assert (self->entries && self->rooms);
    zhashx_set_destructor (self->entries, s_free_item);
    zhashx_set_destructor (self->rooms, s_room_destroy);
    self->flush_ms = flush_ms;
    return self;
}

void
client_ids_destroy (client_ids_t **self_p)
{
    assert (self_p);
    client_ids_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->entries);
    zhashx_destroy (&self->rooms);
    free (self);
    *self_p = NULL;
}

size_t
client_ids_pending (client_ids_t *self)
{
    assert (self);
    return zhashx_size (self->entries);
}

//  ---------------------------------------------------------------------------
//  Keys

//  "room id\x1fclient id" in name, of 2 * PROTO_ID_MAX + 2 bytes (ids are
//  checked at decode: at most PROTO_ID_MAX bytes each).
static void
s_entry_name (char *name, size_t size, const char *room_id, const char *client_id)
{
    size_t room_size = strlen (room_id), client_size = strlen (client_id);
    assert (room_size + 1 + client_size < size);
    memcpy (name, room_id, room_size);
    name [room_size] = CLIENT_IDS_SEPARATOR;
    memcpy (name + room_size + 1, client_id, client_size + 1);
}

static void
s_index_key (db_key_t *key, const char *room_id, const char *client_id)
{
    db_key_str (db_key_lstr (db_key_begin (key), room_id), client_id);
}

static MDB_val
s_mark_key (db_key_t *key, const char *room_id)
{
    return db_val (db_key_lstr (db_key_begin (key), room_id));
}

//  The room's tail, made if absent (its mark is then put at seq).
static int
s_room (client_ids_t *self, db_t *db, MDB_txn *txn, const char *room_id, uint64_t seq,
        tail_room_t **room_p)
{
    tail_room_t *room = zhashx_lookup (self->rooms, room_id);
    if (!room && txn) {
        db_key_t key, value;
        MDB_val k = s_mark_key (&key, room_id);
        MDB_val v = db_val (db_key_u64 (db_key_begin (&value), seq));
        int rc = mdb_put (txn, db->messages_tail, &k, &v, 0);
        if (rc)
            return rc;
    }
    if (!room) {
        room = calloc (1, sizeof *room);
        assert (room);
        snprintf (room->room_id, sizeof room->room_id, "%s", room_id);
        room->since_ms = clock_mono_ms ();
        zhashx_insert (self->rooms, room_id, room);
    }
    *room_p = room;
    return 0;
}

static void
s_remember (client_ids_t *self, tail_room_t *room, const char *client_id, uint64_t seq)
{
    char name [2 * PROTO_ID_MAX + 2];
    s_entry_name (name, sizeof name, room->room_id, client_id);
    uint64_t *value = malloc (sizeof *value);
    assert (value);
    *value = seq;
    zhashx_update (self->entries, name, value);
    if (room->count == room->max) {
        room->max = room->max? 2 * room->max: 16;
        room->keys = realloc (room->keys, room->max * sizeof *room->keys);
        assert (room->keys);
    }
    room->keys [room->count++] = strdup (name);
}

//  ---------------------------------------------------------------------------
//  Load: the table from the marks and their messages

int
client_ids_load (client_ids_t *self, db_t *db, MDB_txn *txn)
{
    assert (self && db && txn);
    zhashx_purge (self->entries);
    zhashx_purge (self->rooms);
    MDB_cursor *marks, *messages;
    int rc = mdb_cursor_open (txn, db->messages_tail, &marks);
    if (rc)
        return rc;
    rc = mdb_cursor_open (txn, db->messages, &messages);
    if (rc) {
        mdb_cursor_close (marks);
        return rc;
    }
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    MDB_val k, v;
    for (rc = mdb_cursor_get (marks, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get (marks, &k, &v, MDB_NEXT)) {
        const uint8_t *bytes = k.mv_data;
        //  A mark of another shape is not one we wrote: say so, skip it.
        if (k.mv_size < 2 || bytes [0] != k.mv_size - 1 || bytes [0] > PROTO_ID_MAX
        ||  v.mv_size != 8 || memchr (bytes + 1, 0, bytes [0])) {
            log_warn ("client-id tail: skipped a mark of %zu bytes that is no room id",
                      k.mv_size);
            continue;
        }
        char room_id [PROTO_ID_MAX + 1];
        memcpy (room_id, bytes + 1, bytes [0]);
        room_id [bytes [0]] = 0;
        tail_room_t *room;
        s_room (self, db, NULL, room_id, 0, &room);
        db_key_t from;
        MDB_val mk = db_val (db_key_u64 (db_key_lstr (db_key_begin (&from), room_id),
                                         db_read_u64 (v.mv_data))), mv;
        size_t prefix = 1 + strlen (room_id);
        int mrc;
        for (mrc = mdb_cursor_get (messages, &mk, &mv, MDB_SET_RANGE);
             mrc == 0 && mk.mv_size == prefix + 8 && memcmp (mk.mv_data, from.bytes, prefix) == 0;
             mrc = mdb_cursor_get (messages, &mk, &mv, MDB_NEXT)) {
            proto_message_t message;
            char why [PROTO_WHY_MAX];
            msgpack_zone_clear (&zone);
            if (proto_message_unpack (mv.mv_data, mv.mv_size, &zone, &message, why, sizeof why) == 0
            &&  message.client_id)
                s_remember (self, room, message.client_id, message.seq);
        }
        if (mrc && mrc != MDB_NOTFOUND) {
            rc = mrc;
            break;
        }
    }
    msgpack_zone_destroy (&zone);
    mdb_cursor_close (messages);
    mdb_cursor_close (marks);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && zhashx_size (self->rooms))
        log_info ("client-id tail: %zu entries of %zu rooms from their messages",
                  zhashx_size (self->entries), zhashx_size (self->rooms));
    return rc;
}

//  ---------------------------------------------------------------------------
//  Find, add, remove

int
client_ids_find (handler_ctx_t *ctx, const char *room_id, const char *client_id, uint64_t *seq)
{
    char name [2 * PROTO_ID_MAX + 2];
    s_entry_name (name, sizeof name, room_id, client_id);
    uint64_t *value = zhashx_lookup (ctx->client_ids->entries, name);
    if (value) {
        *seq = *value;
        return 0;
    }
    db_key_t key;
    s_index_key (&key, room_id, client_id);
    MDB_val k = db_val (&key), v;
    int rc = mdb_get (ctx->txn, ctx->db->messages_by_client_id, &k, &v);
    if (rc == 0 && v.mv_size != 8)
        rc = MDB_NOTFOUND;          //  not an entry we wrote: as if absent
    if (rc == 0)
        *seq = db_read_u64 (v.mv_data);
    return rc;
}

static int
s_put_entry (handler_ctx_t *ctx, const char *room_id, const char *client_id, uint64_t seq)
{
    db_key_t key, value;
    s_index_key (&key, room_id, client_id);
    MDB_val k = db_val (&key), v = db_val (db_key_u64 (db_key_begin (&value), seq));
    return mdb_put (ctx->txn, ctx->db->messages_by_client_id, &k, &v, 0);
}

int
client_ids_add (handler_ctx_t *ctx, const char *room_id, const char *client_id, uint64_t seq,
                bool in_order)
{
    client_ids_t *self = ctx->client_ids;
    //  Out of order, the rebuild from the mark could miss it: written now.
    if (!in_order || self->flush_ms == 0)
        return s_put_entry (ctx, room_id, client_id, seq);
    tail_room_t *room;
    int rc = s_room (self, ctx->db, ctx->txn, room_id, seq, &room);
    if (rc == 0)
        s_remember (self, room, client_id, seq);
    return rc;
}

int
client_ids_remove (handler_ctx_t *ctx, const char *room_id, const char *client_id)
{
    char name [2 * PROTO_ID_MAX + 2];
    s_entry_name (name, sizeof name, room_id, client_id);
    zhashx_delete (ctx->client_ids->entries, name);   //  its room's list skips it
    db_key_t key;
    s_index_key (&key, room_id, client_id);
    MDB_val k = db_val (&key);
    return mdb_del (ctx->txn, ctx->db->messages_by_client_id, &k, NULL);
}

//  ---------------------------------------------------------------------------
//  Flush: a room's entries into byClientId, and its mark out

static int
s_flush_room (handler_ctx_t *ctx, tail_room_t *room)
{
    client_ids_t *self = ctx->client_ids;
    size_t prefix = strlen (room->room_id) + 1;
    int rc = 0;
    for (size_t i = 0; i < room->count && rc == 0; i++) {
        uint64_t *seq = zhashx_lookup (self->entries, room->keys [i]);
        if (seq)                    //  else swept meanwhile
            rc = s_put_entry (ctx, room->room_id, room->keys [i] + prefix, *seq);
    }
    db_key_t key;
    MDB_val k = s_mark_key (&key, room->room_id);
    if (rc == 0)
        rc = mdb_del (ctx->txn, ctx->db->messages_tail, &k, NULL);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0) {
        for (size_t i = 0; i < room->count; i++)
            zhashx_delete (self->entries, room->keys [i]);
        zhashx_delete (self->rooms, room->room_id);
    }
    return rc;
}

int
client_ids_flush (handler_ctx_t *ctx, bool all)
{
    client_ids_t *self = ctx->client_ids;
    if (zhashx_size (self->entries) >= CLIENT_IDS_MAX)
        all = true;
    int64_t now = clock_mono_ms ();
    //  Chosen first, written after: the table may not change while it is
    //  walked. A few rooms a commit, so that rooms which came together are
    //  written over several commits, not all in one long one.
    while (zhashx_size (self->rooms)) {
        tail_room_t *due [CLIENT_IDS_FLUSH_ROOMS];
        size_t due_count = 0;
        for (tail_room_t *room = zhashx_first (self->rooms);
             room && due_count < CLIENT_IDS_FLUSH_ROOMS; room = zhashx_next (self->rooms))
            if (all || room->count >= CLIENT_IDS_ROOM_MAX || now - room->since_ms >= self->flush_ms)
                due [due_count++] = room;
        for (size_t i = 0; i < due_count; i++) {
            int rc = s_flush_room (ctx, due [i]);
            if (rc)
                return rc;
        }
        if (!all)
            break;
    }
    return 0;
}
