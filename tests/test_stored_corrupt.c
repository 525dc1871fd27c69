/*  =========================================================================
    test_stored_corrupt - stored meets index entries it did not write, and
    a database it cannot open

    The test writes corrupt keys straight into the LMDB file of a stopped
    stored (the test is the only process with the environment open then),
    starts it, and lets its own TTL sweep meet them: a key whose room id
    says it is longer than any id (it overflowed a 65-byte stack buffer), a
    key whose length byte disagrees with its size, and a key too short to
    hold an expiry. Each is logged and dropped; the daemon keeps running
    and sweeps the real expired message beside them.
    =========================================================================
*/

#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "harness.h"
#include "lmdb_peek.h"
#include "clock.h"

#define EXPIRY_DB "Messages.byExpiry"

//  Put each key (with an empty value) into EXPIRY_DB of the environment in
//  dir; returns the LMDB error, 0 when all went in.
typedef struct { MDB_val *keys; int count; } s_keys_t;

static int
s_put_keys_work (MDB_txn *txn, MDB_dbi dbi, void *arg)
{
    s_keys_t *self = arg;
    int rc = 0;
    for (int i = 0; i < self->count && rc == 0; i++) {
        MDB_val empty = { 0, NULL };
        rc = mdb_put (txn, dbi, &self->keys [i], &empty, 0);
    }
    return rc;
}

static int
s_put_keys (const char *dir, MDB_val *keys, int count)
{
    s_keys_t self = { keys, count };
    return lmdb_peek_write (dir, EXPIRY_DB, s_put_keys_work, &self);
}

static void
s_put_u64 (uint8_t *at, uint64_t value)
{
    for (int i = 7; i >= 0; i--, value >>= 8)
        at [i] = (uint8_t) value;
}

static uint32_t
s_history_count (proto_client_t *client, const char *room_id)
{
    proto_msg_t request = { .type = PROTO_HISTORY, .history = {
        .room_id = room_id, .from_seq = 1, .limit = PROTO_LIST_MAX } };
    proto_msg_t *reply = harness_call (client, &request);
    uint32_t count = reply && reply->type == PROTO_HISTORY_REPLY? reply->history_reply.count
                                                                 : UINT32_MAX;
    proto_msg_destroy (&reply);
    return count;
}

static void
s_test_corrupt_ttl_keys (void)
{
    printf ("corrupt TTL-index keys are logged and dropped by the sweep, never followed\n");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    stored.env [0] = "TTL_SWEEP_INTERVAL_MS=3600000";     //  no sweep in the first run
    REQUIRE (harness_start (&stored) == 0);
    proto_client_t *client = proto_client_new (stored.endpoint);
    proto_room_t room = harness_room (5, 6);
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
    proto_msg_t *reply = harness_call (client, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    //  A real message, due for the sweep once stored comes back.
    proto_msg_t append = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = room.id, .user_id = "u", .text = "expires",
        .created_at_ms = clock_now_ms (), .expires_at_ms = clock_now_ms () + 1 } };
    reply = harness_call (client, &append);
    REQUIRE (reply && reply->type == PROTO_APPEND_REPLY);
    proto_msg_destroy (&reply);
    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);
    CHECK (lmdb_peek_entries (stored.data_dir, EXPIRY_DB) == 1);

    //  Expiry 1 ms (due), then: a room id of 200 bytes with a size that
    //  agrees (the overflow); a length byte of 255 in a 30-byte key; and
    //  five bytes, too short for an expiry (they sort first).
    static uint8_t overlong [8 + 1 + 200 + 8], lying [30], stub [5];
    s_put_u64 (overlong, 1);
    overlong [8] = 200;
    memset (overlong + 9, 'r', 200);
    s_put_u64 (overlong + 9 + 200, 1);
    s_put_u64 (lying, 2);
    lying [8] = 255;
    memset (lying + 9, 'q', sizeof lying - 9);
    MDB_val keys [] = {
        { sizeof overlong, overlong }, { sizeof lying, lying }, { sizeof stub, stub } };
    REQUIRE (s_put_keys (stored.data_dir, keys, 3) == 0);
    CHECK (lmdb_peek_entries (stored.data_dir, EXPIRY_DB) == 4);

    stored.env [0] = "TTL_SWEEP_INTERVAL_MS=100";
    REQUIRE (harness_start (&stored) == 0);
    client = proto_client_new (stored.endpoint);
    //  Bounded: the sweep comes every 100 ms; the real message goes with it.
    uint32_t left = UINT32_MAX;
    for (int i = 0; i < 100 && left != 0; i++) {
        usleep (100 * 1000);
        left = s_history_count (client, room.id);
    }
    CHECK (left == 0);
    //  Still there and answering, after meeting all three.
    CHECK (kill (stored.pid, 0) == 0);
    proto_msg_t stats = { .type = PROTO_STORE_STATS };
    reply = harness_call (client, &stats);
    CHECK (reply && reply->type == PROTO_STATS_REPLY && reply->stats_reply.swept == 1);
    proto_msg_destroy (&reply);
    CHECK (harness_log_lines (&stored, NULL, "TTL index: dropped", NULL, 0) == 3);
    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);
    CHECK (lmdb_peek_entries (stored.data_dir, EXPIRY_DB) == 0);
}

//  A plain key in the main database under a name stored opens as a
//  database of its own: LMDB refuses the open (MDB_INCOMPATIBLE).
static int
s_put_plain_work (MDB_txn *txn, MDB_dbi dbi, void *arg)
{
    MDB_val key = { strlen (arg), arg }, value = { 1, "x" };
    return mdb_put (txn, dbi, &key, &value, 0);
}

static void
s_test_unopenable_database (void)
{
    printf ("a database that cannot be opened stops stored with LMDB's own error\n");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    REQUIRE (mkdir (stored.data_dir, 0750) == 0);
    REQUIRE (lmdb_peek_write (stored.data_dir, NULL, s_put_plain_work, EXPIRY_DB) == 0);
    char data_dir [PATH_MAX + 16], endpoint [96], output [4096];
    snprintf (data_dir, sizeof data_dir, "DATA_DIR=%s", stored.data_dir);
    snprintf (endpoint, sizeof endpoint, "STORED_ENDPOINT=%s", stored.endpoint);
    const char *env [] = { data_dir, endpoint, NULL };
    CHECK (harness_run ("stored", env, NULL, output, sizeof output) == 1);
    CHECK (strstr (output, "cannot open database " EXPIRY_DB ": MDB_INCOMPATIBLE"));
    CHECK (strstr (output, "cannot open databases: MDB_INCOMPATIBLE"));
}

int
main (void)
{
    harness_init ("stored-corrupt");
    s_test_corrupt_ttl_keys ();
    s_test_unopenable_database ();
    return harness_finish ();
}
