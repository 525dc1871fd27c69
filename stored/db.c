/*  =========================================================================
    db.c - the LMDB environment, its databases, key layouts and records

    The layouts are listed in stored.h; this file is the only one that knows
    how a key is put together, and the only one that opens or resizes the
    environment.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "stored.h"
#include "geo.h"
#include "log.h"

#define DB_MAX_DATABASES 16

static int
s_open_dbi (MDB_txn *txn, const char *table, const char *suffix, MDB_dbi *dbi)
{
    char name [256];
    snprintf (name, sizeof name, "%s%s", table, suffix);
    int rc = mdb_dbi_open (txn, name, MDB_CREATE, dbi);
    if (rc)
        log_error ("cannot open database %s: %s", name, mdb_strerror (rc));
    return rc;
}

//  The layout in the file: absent is 1 (before byClientIdTail, which layout
//  2 reads as it is: no tail), marked 2 from now on. A newer one was written
//  by a newer stored, whose indexes this one would misread: refused.
static int
s_check_layout (db_t *db, MDB_txn *txn, const char *data_dir)
{
    MDB_val key = { 6, "layout" }, value;
    uint32_t layout = 1;
    int rc = mdb_get (txn, db->meta, &key, &value);
    if (rc == 0 && value.mv_size == sizeof layout)
        memcpy (&layout, value.mv_data, sizeof layout);
    else
    if (rc != MDB_NOTFOUND)
        layout = UINT32_MAX;
    if (layout > DB_LAYOUT) {
        log_error ("DATA_DIR %s holds LMDB layout %u, newer than this stored's %u: "
                   "run the stored that wrote it", data_dir, layout, DB_LAYOUT);
        return MDB_VERSION_MISMATCH;
    }
    if (layout == DB_LAYOUT)
        return 0;
    log_info ("DATA_DIR %s: LMDB layout %u marked %u (nothing to convert)", data_dir, layout,
              DB_LAYOUT);
    layout = DB_LAYOUT;
    value.mv_size = sizeof layout;
    value.mv_data = &layout;
    return mdb_put (txn, db->meta, &key, &value, 0);
}

int
db_open (db_t *db, const stored_config_t *config)
{
    assert (db && config);
    memset (db, 0, sizeof *db);
    if (mkdir (config->data_dir, 0750) && errno != EEXIST) {
        log_error ("cannot create DATA_DIR %s: %s", config->data_dir, strerror (errno));
        return errno;
    }
    int rc = mdb_env_create (&db->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs (db->env, DB_MAX_DATABASES);
    //  A map larger than the file costs nothing but address space; the
    //  configured size only sets where growth starts. An existing, larger
    //  file keeps its size (LMDB takes the larger of the two).
    if (rc == 0)
        rc = mdb_env_set_mapsize (db->env, (size_t) config->map_size_mb << 20);
    //  No MDB_NOSYNC or MDB_NOMETASYNC: a commit is durable when it returns,
    //  which is what lets stored acknowledge a write after commit.
    if (rc == 0)
        rc = mdb_env_open (db->env, config->data_dir, MDB_NORDAHEAD, 0640);
    if (rc) {
        log_error ("cannot open LMDB in %s: %s", config->data_dir, mdb_strerror (rc));
        if (db->env)
            mdb_env_close (db->env);
        db->env = NULL;
        return rc;
    }
    MDB_txn *txn = NULL;
    rc = mdb_txn_begin (db->env, NULL, 0, &txn);
    //  Each database by its table's name and suffix; the first that fails
    //  stops the open with LMDB's own code.
    struct { const char *table, *suffix; MDB_dbi *dbi; } databases [] = {
        { config->rooms_table, "", &db->rooms },
        { config->messages_table, "", &db->messages },
        { config->connections_table, "", &db->connections },
        { config->rooms_table, ".byCell", &db->rooms_by_cell },
        { config->rooms_table, ".byActivity", &db->rooms_by_activity },
        { config->messages_table, ".byClientId", &db->messages_by_client_id },
        { config->messages_table, ".byExpiry", &db->messages_by_expiry },
        { config->messages_table, ".byClientIdTail", &db->messages_tail },
        { config->connections_table, ".byGateway", &db->connections_by_gateway },
        { config->connections_table, ".byUser", &db->connections_by_user },
        { config->connections_table, ".byRoom", &db->connections_by_room },
        { config->connections_table, ".gateways", &db->gateways },
        { "nearchat", ".meta", &db->meta },
    };
    for (size_t i = 0; rc == 0 && i < sizeof databases / sizeof databases [0]; i++)
        rc = s_open_dbi (txn, databases [i].table, databases [i].suffix, databases [i].dbi);
    if (rc == 0) {
        MDB_val key = { 9, "maxRadius" }, value;
        if (mdb_get (txn, db->meta, &key, &value) == 0 && value.mv_size == sizeof (uint32_t))
            memcpy (&db->max_radius_m, value.mv_data, sizeof (uint32_t));
        rc = s_check_layout (db, txn, config->data_dir);
    }
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else
    if (txn)
        mdb_txn_abort (txn);
    if (rc) {
        log_error ("cannot open databases: %s", mdb_strerror (rc));
        mdb_env_close (db->env);
        db->env = NULL;
    }
    return rc;
}

void
db_close (db_t *db)
{
    assert (db);
    if (db->env) {
        mdb_env_close (db->env);
        db->env = NULL;
    }
}

int
db_grow (db_t *db)
{
    assert (db);
    MDB_envinfo info;
    mdb_env_info (db->env, &info);
    size_t size = info.me_mapsize * 2;
    int rc = mdb_env_set_mapsize (db->env, size);
    if (rc == 0) {
        db->map_grows++;
        log_info ("LMDB map grown to %zu MiB", size >> 20);
    }
    else
        log_error ("cannot grow the LMDB map to %zu MiB: %s", size >> 20, mdb_strerror (rc));
    return rc;
}

void
db_usage (db_t *db, uint64_t *used, uint64_t *size)
{
    MDB_envinfo info;
    MDB_stat stat;
    mdb_env_info (db->env, &info);
    mdb_env_stat (db->env, &stat);
    *used = (uint64_t) (info.me_last_pgno + 1) * stat.ms_psize;
    *size = info.me_mapsize;
}

//  ---------------------------------------------------------------------------
//  Keys

db_key_t *
db_key_begin (db_key_t *key)
{
    key->size = 0;
    return key;
}

db_key_t *
db_key_u64 (db_key_t *key, uint64_t value)
{
    assert (key->size + 8 <= DB_KEY_MAX);
    for (int shift = 56; shift >= 0; shift -= 8)
        key->bytes [key->size++] = (uint8_t) (value >> shift);
    return key;
}

db_key_t *
db_key_str (db_key_t *key, const char *text)
{
    size_t length = strlen (text);
    assert (key->size + length <= DB_KEY_MAX);
    memcpy (key->bytes + key->size, text, length);
    key->size += length;
    return key;
}

db_key_t *
db_key_lstr (db_key_t *key, const char *text)
{
    size_t length = strlen (text);
    assert (length <= PROTO_ID_MAX && key->size + 1 + length <= DB_KEY_MAX);
    key->bytes [key->size++] = (uint8_t) length;
    return db_key_str (key, text);
}

uint64_t
db_read_u64 (const void *bytes)
{
    const uint8_t *byte = bytes;
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | byte [i];
    return value;
}

MDB_val
db_val (const db_key_t *key)
{
    MDB_val value = { key->size, (void *) key->bytes };
    return value;
}

//  ---------------------------------------------------------------------------
//  Records

//  Stored bytes that do not decode mean a bug or a damaged file: say so
//  loudly and treat the record as unreadable rather than crash on it.
static int
s_unpack_failed (const char *what, const char *id, const char *why)
{
    log_error ("stored %s %s does not decode: %s", what, id, why);
    return EPROTO;
}

int
db_room_get (db_t *db, MDB_txn *txn, const char *room_id, msgpack_zone *zone, proto_room_t *room)
{
    db_key_t key;
    MDB_val k = db_val (db_key_str (db_key_begin (&key), room_id)), v;
    int rc = mdb_get (txn, db->rooms, &k, &v);
    if (rc)
        return rc;
    char why [PROTO_WHY_MAX];
    if (proto_room_unpack (v.mv_data, v.mv_size, zone, room, why, sizeof why))
        return s_unpack_failed ("room", room_id, why);
    return 0;
}

int
db_room_put (db_t *db, MDB_txn *txn, const proto_room_t *room, msgpack_sbuffer *buf)
{
    msgpack_sbuffer_clear (buf);
    if (proto_room_pack (buf, room))
        return EINVAL;
    db_key_t key;
    MDB_val k = db_val (db_key_str (db_key_begin (&key), room->id));
    MDB_val v = { buf->size, buf->data };
    return mdb_put (txn, db->rooms, &k, &v, 0);
}

int
db_message_get (db_t *db, MDB_txn *txn, const char *room_id, uint64_t seq,
                msgpack_zone *zone, proto_message_t *message)
{
    db_key_t key;
    MDB_val k = db_val (db_key_u64 (db_key_lstr (db_key_begin (&key), room_id), seq)), v;
    int rc = mdb_get (txn, db->messages, &k, &v);
    if (rc)
        return rc;
    char why [PROTO_WHY_MAX];
    if (proto_message_unpack (v.mv_data, v.mv_size, zone, message, why, sizeof why))
        return s_unpack_failed ("message in room", room_id, why);
    return 0;
}

int
db_connection_get (db_t *db, MDB_txn *txn, const char *conn_id, msgpack_zone *zone,
                   proto_connection_t *connection)
{
    db_key_t key;
    MDB_val k = db_val (db_key_str (db_key_begin (&key), conn_id)), v;
    int rc = mdb_get (txn, db->connections, &k, &v);
    if (rc)
        return rc;
    char why [PROTO_WHY_MAX];
    if (proto_connection_unpack (v.mv_data, v.mv_size, zone, connection, why, sizeof why))
        return s_unpack_failed ("connection", conn_id, why);
    return 0;
}

//  ---------------------------------------------------------------------------
//  Room indexes

static void
s_cell_key (db_key_t *key, const proto_room_t *room)
{
    db_key_str (db_key_u64 (db_key_begin (key), geo_cell_of (room->latitude, room->longitude)),
                room->id);
}

//  byActivity keys hold the second of the last activity, not the ms: a
//  room that is chatting moves its key once a second at most, not once a
//  message. rooms_idle reads the exact time from the record.
static void
s_activity_key (db_key_t *key, int64_t last_activity_ms, const char *room_id)
{
    uint64_t second = (uint64_t) last_activity_ms / DB_ACTIVITY_BUCKET_MS * DB_ACTIVITY_BUCKET_MS;
    db_key_str (db_key_u64 (db_key_begin (key), second), room_id);
}

int
db_room_activity_moved (db_t *db, MDB_txn *txn, const char *room_id, int64_t old_ms,
                        int64_t new_ms)
{
    if (old_ms / DB_ACTIVITY_BUCKET_MS == new_ms / DB_ACTIVITY_BUCKET_MS)
        return 0;
    db_key_t key;
    s_activity_key (&key, old_ms, room_id);
    MDB_val k = db_val (&key), empty = { 0, NULL };
    int rc = mdb_del (txn, db->rooms_by_activity, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_activity_key (&key, new_ms, room_id);
    k = db_val (&key);
    return mdb_put (txn, db->rooms_by_activity, &k, &empty, 0);
}

int
db_room_index (db_t *db, MDB_txn *txn, const proto_room_t *room)
{
    assert (room->status == PROTO_STATUS_ACTIVE);
    db_key_t key;
    geo_entry_t entry = {
        .latitude = room->latitude, .longitude = room->longitude,
        .radius_m = room->radius_m, .room_type = (uint8_t) room->room_type
    };
    s_cell_key (&key, room);
    MDB_val k = db_val (&key), v = { sizeof entry, &entry };
    int rc = mdb_put (txn, db->rooms_by_cell, &k, &v, 0);
    if (rc)
        return rc;
    s_activity_key (&key, room->last_activity_ms, room->id);
    k = db_val (&key);
    MDB_val empty = { 0, NULL };
    rc = mdb_put (txn, db->rooms_by_activity, &k, &empty, 0);
    if (rc)
        return rc;
    //  Searches cover the largest radius ever indexed; it only grows, which
    //  costs a wider cover after a large room closes, never a missed room.
    //  Compared with the value in this transaction, not the cached one: a
    //  batch that is rolled back and applied again must write it again.
    MDB_val meta_key = { 9, "maxRadius" }, meta_value;
    uint32_t indexed = 0;
    if (mdb_get (txn, db->meta, &meta_key, &meta_value) == 0
    &&  meta_value.mv_size == sizeof indexed)
        memcpy (&indexed, meta_value.mv_data, sizeof indexed);
    if (room->radius_m > indexed) {
        meta_value.mv_size = sizeof room->radius_m;
        meta_value.mv_data = (void *) &room->radius_m;
        rc = mdb_put (txn, db->meta, &meta_key, &meta_value, 0);
        if (rc == 0 && room->radius_m > db->max_radius_m)
            db->max_radius_m = room->radius_m;
    }
    return rc;
}

int
db_room_unindex (db_t *db, MDB_txn *txn, const proto_room_t *room)
{
    db_key_t key;
    s_cell_key (&key, room);
    MDB_val k = db_val (&key);
    int rc = mdb_del (txn, db->rooms_by_cell, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_activity_key (&key, room->last_activity_ms, room->id);
    k = db_val (&key);
    rc = mdb_del (txn, db->rooms_by_activity, &k, NULL);
    return rc == MDB_NOTFOUND? 0: rc;
}

void *
db_zone_grow (msgpack_zone *zone, void *items, size_t count, size_t *max, size_t size)
{
    if (count < *max)
        return items;
    void *grown = msgpack_zone_malloc (zone, 2 * *max * size);
    assert (grown);
    memcpy (grown, items, count * size);
    *max *= 2;
    return grown;
}
