/*  =========================================================================
    stored.h - the storage daemon's shared state and internal interfaces

    stored is the only process that opens the LMDB environment, and within
    it one thread does everything: reads are answered as they arrive, writes
    are gathered into one transaction per turn of the loop (group commit)
    and answered after that transaction is durable. One thread means no
    locks, and LMDB's single-writer rule holds by construction.

    The databases and their key layouts (every integer in a key is big-endian
    so that keys sort in numeric order; a length-prefixed string is one byte
    of length then the bytes, so a prefix can never run into its neighbour):

      CHAT_ROOMS_TABLE (ChatRooms)
          room id -> proto_room_pack(room)
      MESSAGES_TABLE (Messages)
          len|room id, seq u64 -> proto_message_pack(message)
      CONNECTIONS_TABLE (Connections)
          conn id -> proto_connection_pack(connection)

    and the indexes, named after the table they serve:

      <rooms>.byCell       cell u64, room id -> geo_entry_t (only ACTIVE rooms)
      <rooms>.byActivity   last activity u64 (ms, rounded down to the
                           second), room id -> "" (only ACTIVE rooms)
      <messages>.byClientId  len|room id, client id -> seq u64 (the newest
                             may be in memory instead: client_ids.c)
      <messages>.byClientIdTail  len|room id -> seq u64: byClientId may lack
                             this room's entries from seq on (client_ids.c)
      <messages>.byExpiry    expires ms u64, len|room id, seq u64 -> ""
      <connections>.byGateway  len|gateway id, len|incarnation ("" when
                               none), conn id -> ""
      <connections>.byUser     len|user id, conn id -> ""
      <connections>.byRoom     len|room id, conn id -> ""
      <connections>.gateways   len|gateway id, incarnation -> u64, when
                               that run was last heard (ms); 0: it is dead
                               (replaced by a new run, or declared dead by
                               the reaper's gateways-silent), its beats are
                               refused until the reaper forgets it
      nearchat.meta        "maxRadius" -> u32, the largest radius ever indexed
                           "layout" -> u32, DB_LAYOUT (absent: 1, before
                           byClientIdTail; a larger one is refused at open)

    Invariant: an index entry exists exactly when its record does and the
    record has the indexed value; every handler that writes a record mends
    its index entries in the same transaction.
    =========================================================================
*/

#ifndef NEARCHAT_STORED_H_INCLUDED
#define NEARCHAT_STORED_H_INCLUDED

#include <lmdb.h>
#include <czmq.h>
#include "proto.h"
#include "metrics.h"

//  ---------------------------------------------------------------------------
//  Settings

typedef struct {
    const char *endpoint;           //  ROUTER bind endpoint
    const char *data_dir;
    const char *rooms_table;
    const char *connections_table;
    const char *messages_table;
    int64_t message_ttl_s;
    int64_t sweep_interval_ms;
    int64_t sweep_batch;
    int64_t map_size_mb;            //  initial map size
    int64_t batch_max;              //  most writes in one commit
    int64_t client_id_flush_ms;     //  how long byClientId entries wait in memory
} stored_config_t;

//  ---------------------------------------------------------------------------
//  The environment and its databases (db.c)

typedef struct {
    MDB_env *env;
    MDB_dbi rooms, messages, connections;
    MDB_dbi rooms_by_cell, rooms_by_activity;
    MDB_dbi messages_by_client_id, messages_by_expiry, messages_tail;
    MDB_dbi connections_by_gateway, connections_by_user, connections_by_room;
    MDB_dbi gateways;
    MDB_dbi meta;
    uint32_t max_radius_m;          //  cached nearchat.meta maxRadius
    uint64_t map_grows;
} db_t;

//  What the geo index keeps beside each room, so a search can filter
//  candidates without reading their records. Native byte order: an LMDB
//  file is not portable across architectures anyway.
typedef struct {
    double latitude;
    double longitude;
    uint32_t radius_m;
    uint8_t room_type;
} __attribute__ ((packed)) geo_entry_t;

//  Longest key: two length bytes, three ids and a u64 (byGateway's is
//  two length-prefixed ids and a conn id).
#define DB_KEY_MAX  (2 + 3 * PROTO_ID_MAX + 16)

typedef struct {
    uint8_t bytes [DB_KEY_MAX];
    size_t size;
} db_key_t;

//  The layout this stored writes: 2 added byClientIdTail. Layout 1 is read
//  as it is (it has no tail) and marked 2; a newer one is refused.
#define DB_LAYOUT 2

int  db_open (db_t *db, const stored_config_t *config);
void db_close (db_t *db);
//  Double the map. No transaction
//  may be open in this process. Returns 0 or an LMDB error.
int  db_grow (db_t *db);
//  Bytes of the map in use and its size.
void db_usage (db_t *db, uint64_t *used, uint64_t *size);

//  Key builders: each resets key and appends its parts.
db_key_t *db_key_begin (db_key_t *key);
db_key_t *db_key_u64 (db_key_t *key, uint64_t value);
db_key_t *db_key_str (db_key_t *key, const char *text);     //  raw bytes
db_key_t *db_key_lstr (db_key_t *key, const char *text);    //  length-prefixed
uint64_t  db_read_u64 (const void *bytes);
MDB_val   db_val (const db_key_t *key);

//  Records: get and unpack into zone (MDB_NOTFOUND when absent, EPROTO
//  when the stored bytes do not decode), pack and put.
int db_room_get (db_t *db, MDB_txn *txn, const char *room_id, msgpack_zone *zone,
                 proto_room_t *room);
int db_room_put (db_t *db, MDB_txn *txn, const proto_room_t *room, msgpack_sbuffer *buf);
int db_message_get (db_t *db, MDB_txn *txn, const char *room_id, uint64_t seq,
                    msgpack_zone *zone, proto_message_t *message);
//  An array of count items of size bytes in zone, with room for *max:
//  itself while there is room, else a copy twice as large (*max doubled).
//  Zones free as a whole, so the old one goes with the zone.
void *db_zone_grow (msgpack_zone *zone, void *items, size_t count, size_t *max, size_t size);
int db_connection_get (db_t *db, MDB_txn *txn, const char *conn_id, msgpack_zone *zone,
                       proto_connection_t *connection);

//  Room indexes: add or remove one room's entries in byCell and byActivity.
int db_room_index (db_t *db, MDB_txn *txn, const proto_room_t *room);
int db_room_unindex (db_t *db, MDB_txn *txn, const proto_room_t *room);
//  An ACTIVE room's last activity went from old_ms to new_ms: move its
//  byActivity entry if its second changed (and do nothing else).
int db_room_activity_moved (db_t *db, MDB_txn *txn, const char *room_id, int64_t old_ms,
                            int64_t new_ms);
#define DB_ACTIVITY_BUCKET_MS 1000

//  ---------------------------------------------------------------------------
//  Handlers (handle_*.c)

//  Rooms that appends changed: each is read once and written once a batch
//  rather than once a message (a chatty room takes hundreds of messages in
//  one batch), and kept from one batch to the next while only appends
//  come (stored is the only writer: after the commit, the copy is what the
//  file holds). Open addressing on the id's hash.
#define ROOM_CACHE_SLOTS 512
typedef struct {
    proto_room_t room;              //  as the batch left it (strings in room_zone)
    int64_t stored_activity_ms;     //  last activity as in the database
    bool used, dirty;
} cached_room_t;

typedef struct client_ids client_ids_t;

//  What a handler works with. Replies point into zone, which lives until
//  the reply is encoded.
typedef struct {
    db_t *db;
    const stored_config_t *config;
    MDB_txn *txn;               //  write txn for writes, read txn for reads
    msgpack_zone *zone;
    msgpack_sbuffer *scratch;   //  for packing records
    uint64_t swept;             //  messages deleted by TTL since start
    uint64_t commits, writes;   //  for stats
    metrics_histogram_t batch_writes;   //  writes a commit
    metrics_histogram_t commit_seconds; //  applying and committing a batch
    cached_room_t *room_cache;  //  ROOM_CACHE_SLOTS entries
    size_t room_cache_count;
    msgpack_zone *room_zone;    //  the cached rooms' strings, cleared when it empties
    client_ids_t *client_ids;   //  byClientId's entries not yet written
} handler_ctx_t;

//  A handler fills reply (type and body) for request. It returns 0 when
//  reply holds the answer, error replies included, or an LMDB error code
//  when the transaction failed under it (the batch is then retried).
//  A write handler checks everything before it writes anything, so an
//  error reply leaves the transaction as it found it.
typedef int (handler_fn) (handler_ctx_t *ctx, const proto_msg_t *request, proto_msg_t *reply);

handler_fn handle_room_put, handle_room_get, handle_room_update;
handler_fn handle_rooms_idle, handle_geo_search;
handler_fn handle_msg_append, handle_history, handle_ttl_sweep;
handler_fn handle_conn_put, handle_conn_del, handle_conn_list;
handler_fn handle_gateway_beat, handle_gateways_silent;
handler_fn handle_store_stats;
handler_fn handle_metrics;

//  Connection records, for every handler that writes them (handle_connections.c);
//  each mends the record's index entries in the same transaction. old is the
//  record as db_connection_get read it, or NULL when there was none that reads.
//  Return 0 or an LMDB error.
int connections_replace (handler_ctx_t *ctx, const proto_connection_t *old,
                         const proto_connection_t *connection);
int connections_delete (handler_ctx_t *ctx, const proto_connection_t *old, const char *conn_id);
//  Take every record of user_id out of room_id (their room cleared).
int connections_leave_room (handler_ctx_t *ctx, const char *room_id, const char *user_id);
//  *dead: the run connection names (gateway id, incarnation) was declared
//  dead, and its records are being cleared (gateway-beat). A record without
//  an incarnation, or of a run unknown here, is not.
int connections_run_dead (handler_ctx_t *ctx, const proto_connection_t *connection, bool *dead);

//  Make reply an error with status and a formatted reason (in ctx->zone).
int reply_error (handler_ctx_t *ctx, proto_msg_t *reply, uint16_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

//  A copy of text in ctx->zone.
const char *zone_strdup (msgpack_zone *zone, const char *text);

//  Write every room the appends changed and empty the cache. Must run
//  before any other handler reads or writes rooms in the same transaction.
//  Returns 0 or an LMDB error.
int rooms_flush (handler_ctx_t *ctx);
//  Write every room the appends changed and keep them for the next batch:
//  before the commit of a batch. Returns 0 or an LMDB error.
int rooms_write (handler_ctx_t *ctx);
//  Forget the cache without writing (the transaction was aborted).
void rooms_forget (handler_ctx_t *ctx);

//  Delete up to max expired messages (expires_at <= now_ms) in txn.
//  Returns 0 or an LMDB error; sets *deleted and *more.
int messages_sweep (handler_ctx_t *ctx, int64_t now_ms, uint32_t max,
                    uint32_t *deleted, bool *more);

//  ---------------------------------------------------------------------------
//  The client-id index's tail (client_ids.c): byClientId's newest entries,
//  held in memory and written a room at a time. Every byClientId access
//  goes through these.

//  flush_ms: how long a room's entries wait; 0 writes each at once.
client_ids_t *client_ids_new (int64_t flush_ms);
void client_ids_destroy (client_ids_t **self_p);
//  Forget the table and rebuild it from the marks and their messages in
//  txn: at open, and after a write transaction was aborted. Returns 0 or an
//  LMDB error.
int client_ids_load (client_ids_t *self, db_t *db, MDB_txn *txn);
//  The seq of room_id's message with client_id: 0, or MDB_NOTFOUND, or an
//  LMDB error.
int client_ids_find (handler_ctx_t *ctx, const char *room_id, const char *client_id,
                     uint64_t *seq);
//  Index a message just put in ctx->txn. in_order: its seq is above every
//  seq its room had (else it is written at once). Returns 0 or an LMDB error.
int client_ids_add (handler_ctx_t *ctx, const char *room_id, const char *client_id,
                    uint64_t seq, bool in_order);
//  Forget an entry (its message is deleted): 0, MDB_NOTFOUND when it was not
//  in byClientId, or an LMDB error.
int client_ids_remove (handler_ctx_t *ctx, const char *room_id, const char *client_id);
//  Write the entries of rooms that waited long enough or have many (all:
//  every room) into byClientId in ctx->txn. Returns 0 or an LMDB error.
//  add, remove and flush change the table at once: a transaction they ran
//  in that is then aborted (or whose commit fails) must be followed by
//  client_ids_load.
int client_ids_flush (handler_ctx_t *ctx, bool all);
//  Entries held in memory.
size_t client_ids_pending (client_ids_t *self);

//  ---------------------------------------------------------------------------
//  The loop (batch.c)

typedef struct batch batch_t;

batch_t *batch_new (db_t *db, const stored_config_t *config, zsock_t *router);
void batch_destroy (batch_t **self_p);
//  Serve the ROUTER until zsys_interrupted is set (SIGINT, SIGTERM).
void batch_run (batch_t *self);

#endif
