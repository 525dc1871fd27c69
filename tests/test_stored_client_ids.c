/*  =========================================================================
    test_stored_client_ids - the messageId index's newest entries wait in
    stored's memory (stored/client_ids.c), and a resend is still idempotent:
    before they are written, after a kill -9 (rebuilt from the messages),
    after a clean stop (written out), after the timed write, after the TTL
    sweep took their message, and at seqs the shard chose. The LMDB layout version: an old data
    directory (no version) opens and is marked, a newer one is refused.

    The test reads and writes the LMDB file only while stored is stopped.
    =========================================================================
*/

#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "lmdb_peek.h"
#include "clock.h"

#define FIRST       300             //  messages of the first run
#define TIMED       50              //  messages written by the timed flush

static char s_room_id [64];
static uint64_t s_seq_of [FIRST];

//  nearchat.meta "layout": set it (layout > 0) or delete it (0); returns
//  the LMDB error. With layout NULL, read it into *read (0 when absent).
typedef struct { uint32_t layout, *read; } s_layout_t;

static int
s_layout_work (MDB_txn *txn, MDB_dbi dbi, void *arg)
{
    s_layout_t *self = arg;
    MDB_val key = { 6, "layout" }, value = { sizeof self->layout, &self->layout };
    if (self->read) {
        *self->read = 0;
        if (mdb_get (txn, dbi, &key, &value) == 0 && value.mv_size == sizeof *self->read)
            memcpy (self->read, value.mv_data, sizeof *self->read);
        return 0;
    }
    return self->layout? mdb_put (txn, dbi, &key, &value, 0): mdb_del (txn, dbi, &key, NULL);
}

static int
s_layout (const char *dir, uint32_t layout, uint32_t *read)
{
    s_layout_t self = { layout, read };
    return lmdb_peek_write (dir, "nearchat.meta", s_layout_work, &self);
}

//  An append of client_id; the reply (NULL on timeout).
static proto_msg_t *
s_append (proto_client_t *client, const char *client_id, int64_t expires_at_ms)
{
    proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = s_room_id, .client_id = client_id, .user_id = "u", .text = "once",
        .created_at_ms = clock_now_ms (), .expires_at_ms = expires_at_ms } };
    return harness_call (client, &request);
}

//  Whether a resend of client_id is answered as a duplicate of seq.
static bool
s_resend_is_duplicate (proto_client_t *client, const char *client_id, uint64_t seq)
{
    proto_msg_t *reply = s_append (client, client_id, 0);
    bool ok = reply && reply->type == PROTO_APPEND_REPLY && reply->append_reply.duplicate
           && reply->append_reply.seq == seq;
    proto_msg_destroy (&reply);
    return ok;
}

//  stored's gauge of entries held in memory, or -1.
static double
s_pending (proto_client_t *client)
{
    proto_msg_t request = { .type = PROTO_METRICS };
    proto_msg_t *reply = harness_call (client, &request);
    double value = -1;
    for (uint32_t i = 0; reply && reply->type == PROTO_METRICS_REPLY
                         && i < reply->metrics_reply.count; i++)
        if (strcmp (reply->metrics_reply.metrics [i].name,
                    "nearchat_stored_client_ids_pending") == 0)
            value = reply->metrics_reply.metrics [i].value;
    proto_msg_destroy (&reply);
    return value;
}

static uint64_t
s_last_seq (proto_client_t *client)
{
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = s_room_id };
    proto_msg_t *reply = harness_call (client, &get);
    uint64_t seq = reply && reply->type == PROTO_ROOM_REPLY? reply->room_reply.room.last_seq: 0;
    proto_msg_destroy (&reply);
    return seq;
}

static void
s_test_kill_and_stop (harness_daemon_t *stored)
{
    printf ("entries held in memory: resends are duplicates before the write, after a "
            "kill -9, after a clean stop\n");
    stored->env [0] = "STORED_CLIENT_ID_FLUSH_MS=3600000";    //  never written by age
    REQUIRE (harness_start (stored) == 0);
    proto_client_t *client = proto_client_new (stored->endpoint);
    proto_room_t room = harness_room (48.1, 11.6);
    snprintf (s_room_id, sizeof s_room_id, "%s", room.id);
    room.id = s_room_id;
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
    proto_msg_t *reply = harness_call (client, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    char id [32];
    for (int i = 0; i < FIRST; i++) {
        snprintf (id, sizeof id, "c-%d", i);
        reply = s_append (client, id, 0);
        REQUIRE (reply && reply->type == PROTO_APPEND_REPLY && !reply->append_reply.duplicate);
        s_seq_of [i] = reply->append_reply.seq;
        proto_msg_destroy (&reply);
    }
    CHECK (s_resend_is_duplicate (client, "c-7", s_seq_of [7]));
    CHECK (s_pending (client) == FIRST);
    proto_client_destroy (&client);
    harness_kill (stored);
    //  Nothing of them in byClientId: only the room's mark says where they are.
    CHECK (lmdb_peek_entries (stored->data_dir, "Messages.byClientId") == 0);
    CHECK (lmdb_peek_entries (stored->data_dir, "Messages.byClientIdTail") == 1);
    CHECK (lmdb_peek_entries (stored->data_dir, "Messages") == FIRST);

    REQUIRE (harness_start (stored) == 0);
    CHECK (harness_log_lines (stored, NULL, "client-id tail: 300 entries of 1 rooms", NULL, 0) == 1);
    client = proto_client_new (stored->endpoint);
    CHECK (s_pending (client) == FIRST);
    int duplicates = 0;
    for (int i = 0; i < FIRST; i++) {
        snprintf (id, sizeof id, "c-%d", i);
        duplicates += s_resend_is_duplicate (client, id, s_seq_of [i]);
    }
    printf ("  after kill -9: %d of %d resends answered as the first\n", duplicates, FIRST);
    CHECK (duplicates == FIRST);
    CHECK (s_last_seq (client) == s_seq_of [FIRST - 1]);  //  no second copy
    reply = s_append (client, "fresh", 0);
    CHECK (reply && reply->type == PROTO_APPEND_REPLY && !reply->append_reply.duplicate
           && reply->append_reply.seq == s_seq_of [FIRST - 1] + 1);
    proto_msg_destroy (&reply);
    proto_client_destroy (&client);
    //  A clean stop writes them all.
    CHECK (harness_stop (stored) == 0);
    CHECK (lmdb_peek_entries (stored->data_dir, "Messages.byClientId") == FIRST + 1);
    CHECK (lmdb_peek_entries (stored->data_dir, "Messages.byClientIdTail") == 0);
}

static void
s_test_timed_write (harness_daemon_t *stored)
{
    printf ("entries are written by age, and resends read them from the file\n");
    stored->env [0] = "STORED_CLIENT_ID_FLUSH_MS=20";
    REQUIRE (harness_start (stored) == 0);
    proto_client_t *client = proto_client_new (stored->endpoint);
    char id [32];
    for (int i = 0; i < TIMED; i++) {
        snprintf (id, sizeof id, "t-%d", i);
        proto_msg_t *reply = s_append (client, id, 0);
        CHECK (reply && reply->type == PROTO_APPEND_REPLY && !reply->append_reply.duplicate);
        proto_msg_destroy (&reply);
    }
    //  The write rides on the next commit: keep committing until it came (bounded).
    double pending = -1;
    for (int i = 0; i < 100 && (pending < 0 || pending > 1); i++) {
        usleep (30 * 1000);
        snprintf (id, sizeof id, "nudge-%d", i);
        proto_msg_t *reply = s_append (client, id, 0);
        proto_msg_destroy (&reply);
        pending = s_pending (client);
    }
    //  The last nudge may still wait; every t- one is written.
    CHECK (pending >= 0 && pending <= 1);
    CHECK (s_resend_is_duplicate (client, "c-9", s_seq_of [9]));
    proto_client_destroy (&client);
    harness_kill (stored);
    long written = lmdb_peek_entries (stored->data_dir, "Messages.byClientId");
    long messages = lmdb_peek_entries (stored->data_dir, "Messages");
    printf ("  after kill -9: %ld index entries in the file for %ld messages\n", written, messages);
    CHECK (written >= messages - 1 && messages >= FIRST + 1 + TIMED);
}

static void
s_test_sweep (harness_daemon_t *stored)
{
    printf ("the TTL sweep takes a held entry with its message\n");
    stored->env [0] = "STORED_CLIENT_ID_FLUSH_MS=3600000";
    stored->env [1] = "TTL_SWEEP_INTERVAL_MS=50";
    REQUIRE (harness_start (stored) == 0);
    proto_client_t *client = proto_client_new (stored->endpoint);
    double before = s_pending (client);
    proto_msg_t *reply = s_append (client, "brief", clock_now_ms () + 1);
    REQUIRE (reply && reply->type == PROTO_APPEND_REPLY);
    uint64_t first = reply->append_reply.seq;
    proto_msg_destroy (&reply);
    uint64_t swept = 0;
    for (int i = 0; i < 100 && swept == 0; i++) {
        usleep (50 * 1000);
        proto_msg_t stats = { .type = PROTO_STORE_STATS };
        reply = harness_call (client, &stats);
        swept = reply && reply->type == PROTO_STATS_REPLY? reply->stats_reply.swept: 0;
        proto_msg_destroy (&reply);
    }
    CHECK (swept == 1);
    CHECK (s_pending (client) == before);
    //  Its message is gone, so its id is free again (as when it was in the file).
    reply = s_append (client, "brief", 0);
    CHECK (reply && reply->type == PROTO_APPEND_REPLY && !reply->append_reply.duplicate
           && reply->append_reply.seq > first);
    proto_msg_destroy (&reply);
    proto_client_destroy (&client);
    CHECK (harness_stop (stored) == 0);
    stored->env [1] = NULL;
}

//  An append at a seq the shard chose (as roomd may: above the last, with a
//  hole; or below it, into a hole), then a kill -9.
static proto_msg_t *
s_append_at (proto_client_t *client, const char *client_id, uint64_t seq)
{
    //  (A numbered append carries the id its shard gave it.)
    char id [64];
    snprintf (id, sizeof id, "placed-%s", client_id);
    proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = s_room_id, .client_id = client_id, .user_id = "u", .text = "placed",
        .seq = seq, .id = id, .created_at_ms = clock_now_ms () } };
    return harness_call (client, &request);
}

static void
s_test_chosen_seqs (harness_daemon_t *stored)
{
    printf ("seqs chosen by the shard: above the last with a hole (held), below it (written "
            "at once); both survive a kill -9\n");
    stored->env [0] = "STORED_CLIENT_ID_FLUSH_MS=3600000";
    REQUIRE (harness_start (stored) == 0);
    proto_client_t *client = proto_client_new (stored->endpoint);
    uint64_t last = s_last_seq (client);
    double before = s_pending (client);
    proto_msg_t *reply = s_append_at (client, "above", last + 100);
    CHECK (reply && reply->type == PROTO_APPEND_REPLY && reply->append_reply.seq == last + 100);
    proto_msg_destroy (&reply);
    //  A stored that refuses a seq not above the room's last (as roomd's
    //  choosing of seqs asks) stores nothing here, and owes nothing.
    reply = s_append_at (client, "below", last + 50);
    bool below_stored = reply && reply->type == PROTO_APPEND_REPLY;
    CHECK (reply && (below_stored? reply->append_reply.seq == last + 50
                                 : reply->type == PROTO_ERROR));
    proto_msg_destroy (&reply);
    CHECK (s_pending (client) == before + 1);       //  only the one above waits
    proto_client_destroy (&client);
    harness_kill (stored);
    REQUIRE (harness_start (stored) == 0);
    client = proto_client_new (stored->endpoint);
    CHECK (s_resend_is_duplicate (client, "above", last + 100));
    if (below_stored)
        CHECK (s_resend_is_duplicate (client, "below", last + 50));
    proto_client_destroy (&client);
    CHECK (harness_stop (stored) == 0);
}

static void
s_test_layout (harness_daemon_t *stored)
{
    printf ("layout: a newer one is refused, an old one (none written) opens and is marked\n");
    uint32_t layout = 0;
    CHECK (s_layout (stored->data_dir, 0, &layout) == 0 && layout == 2);
    REQUIRE (s_layout (stored->data_dir, 99, NULL) == 0);
    char endpoint [96], data_dir [PATH_MAX + 16], output [4096];
    snprintf (endpoint, sizeof endpoint, "STORED_ENDPOINT=%s", stored->endpoint);
    snprintf (data_dir, sizeof data_dir, "DATA_DIR=%s", stored->data_dir);
    const char *env [] = { endpoint, data_dir, NULL };
    int status = harness_run ("stored", env, NULL, output, sizeof output);
    CHECK (status == 1);
    CHECK (strstr (output, "holds LMDB layout 99, newer than this stored's 2") != NULL);

    REQUIRE (s_layout (stored->data_dir, 0, NULL) == 0);        //  as before layouts
    stored->env [0] = NULL;
    REQUIRE (harness_start (stored) == 0);
    proto_client_t *client = proto_client_new (stored->endpoint);
    CHECK (s_resend_is_duplicate (client, "c-42", s_seq_of [42]));
    proto_client_destroy (&client);
    CHECK (harness_stop (stored) == 0);
    CHECK (s_layout (stored->data_dir, 0, &layout) == 0 && layout == 2);
}

int
main (void)
{
    harness_init ("stored-client-ids");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    s_test_kill_and_stop (&stored);
    s_test_timed_write (&stored);
    s_test_sweep (&stored);
    s_test_chosen_seqs (&stored);
    s_test_layout (&stored);
    return harness_finish ();
}
