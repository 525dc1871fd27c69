/*  =========================================================================
    test_stored_lifecycle - stored over time: TTL sweeps (asked for and by
    its own timer), a map that fills and grows, a restart that keeps
    everything, and settings that are refused
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "clock.h"

static proto_msg_t *
s_call (proto_client_t *client, proto_msg_t request)
{
    return harness_call (client, &request);
}

static bool
s_put (proto_client_t *client, const proto_room_t *room)
{
    proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_ROOM_PUT,
                                                         .room_put.room = *room });
    bool ok = reply && reply->type == PROTO_ROOM_REPLY;
    proto_msg_destroy (&reply);
    return ok;
}

static bool
s_append (proto_client_t *client, const char *room_id, const char *client_id,
          const char *text, int64_t expires_at_ms)
{
    proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_MSG_APPEND,
        .msg_append.message = { .room_id = room_id, .client_id = client_id, .user_id = "u",
                                .text = text, .created_at_ms = clock_now_ms (),
                                .expires_at_ms = expires_at_ms } });
    bool ok = reply && reply->type == PROTO_APPEND_REPLY && !reply->append_reply.duplicate;
    proto_msg_destroy (&reply);
    return ok;
}

//  The room's messages, counted page by page: a page of long messages
//  stops at PROTO_REPLY_BYTES_MAX before it reaches its limit.
static uint32_t
s_history_count (proto_client_t *client, const char *room_id)
{
    uint32_t count = 0;
    uint64_t from = 1;
    for (bool more = true; more; ) {
        proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_HISTORY,
            .history = { .room_id = room_id, .from_seq = from, .limit = PROTO_LIST_MAX } });
        uint32_t got = reply && reply->type == PROTO_HISTORY_REPLY? reply->history_reply.count: 0;
        more = got && reply->history_reply.more;
        if (got)
            from = reply->history_reply.messages [got - 1].seq + 1;
        count += got;
        proto_msg_destroy (&reply);
    }
    return count;
}

static proto_stats_reply_t
s_stats (proto_client_t *client)
{
    proto_stats_reply_t stats = { 0 };
    proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_STORE_STATS });
    if (reply && reply->type == PROTO_STATS_REPLY)
        stats = reply->stats_reply;
    proto_msg_destroy (&reply);
    return stats;
}

static void
s_test_ttl (void)
{
    printf ("TTL: an asked-for sweep, in bounded steps, frees the client id\n");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    stored.env [0] = "TTL_SWEEP_INTERVAL_MS=3600000";     //  only when asked
    REQUIRE (harness_start (&stored) == 0);
    //  A sweep is the reaper's to ask for; a tool's is refused.
    proto_client_t *client = proto_client_new (stored.endpoint);
    proto_msg_t *refused = s_call (client, (proto_msg_t) { .type = PROTO_TTL_SWEEP,
                                                           .ttl_sweep = { .now_ms = 1 } });
    CHECK (refused && refused->type == PROTO_ERROR && refused->error.status == 403);
    proto_msg_destroy (&refused);
    proto_client_destroy (&client);
    client = harness_client_as (stored.endpoint, BUS_STORED, BUS_REAPER);
    proto_room_t room = harness_room (1, 2);
    REQUIRE (s_put (client, &room));
    int64_t now = clock_now_ms ();
    char client_id [32];
    for (int i = 0; i < 25; i++) {
        snprintf (client_id, sizeof client_id, "old-%d", i);
        CHECK (s_append (client, room.id, client_id, "expires soon", now + 1000));
    }
    CHECK (s_append (client, room.id, "keeper", "stays", now + 3600 * 1000));
    CHECK (s_history_count (client, room.id) == 26);

    //  Not yet due: nothing goes.
    proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_TTL_SWEEP,
                                                         .ttl_sweep = { .now_ms = now } });
    CHECK (reply && reply->type == PROTO_SWEEP_REPLY && reply->sweep_reply.deleted == 0);
    proto_msg_destroy (&reply);
    //  Due, ten at a time.
    uint32_t deleted = 0;
    int steps = 0;
    for (bool more = true; more && steps < 10; steps++) {
        reply = s_call (client, (proto_msg_t) { .type = PROTO_TTL_SWEEP,
                                               .ttl_sweep = { .now_ms = now + 2000, .max = 10 } });
        REQUIRE (reply && reply->type == PROTO_SWEEP_REPLY);
        CHECK (reply->sweep_reply.deleted <= 10);
        deleted += reply->sweep_reply.deleted;
        more = reply->sweep_reply.more;
        proto_msg_destroy (&reply);
    }
    CHECK (deleted == 25);
    CHECK (steps == 3);
    CHECK (s_history_count (client, room.id) == 1);
    CHECK (s_stats (client).swept == 25);
    //  The swept message's client id may be used again.
    CHECK (s_append (client, room.id, "old-3", "a new message", now + 3600 * 1000));
    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);

    printf ("TTL: stored's own timer sweeps messages past MESSAGE_TTL_S\n");
    harness_stored_init (&stored);
    stored.env [0] = "TTL_SWEEP_INTERVAL_MS=100";
    stored.env [1] = "MESSAGE_TTL_S=1";
    stored.env [2] = "TTL_SWEEP_BATCH=7";
    REQUIRE (harness_start (&stored) == 0);
    client = proto_client_new (stored.endpoint);
    room = harness_room (1, 2);
    REQUIRE (s_put (client, &room));
    for (int i = 0; i < 20; i++)
        CHECK (s_append (client, room.id, NULL, "short-lived", 0));
    //  Poll, bounded: the sweep comes within about a second.
    uint32_t left = 20;
    for (int i = 0; i < 100 && left; i++) {
        usleep (100 * 1000);
        left = s_history_count (client, room.id);
    }
    CHECK (left == 0);
    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);
}

static void
s_test_growth_and_restart (void)
{
    printf ("a 1 MiB map fills, grows, and every write goes through\n");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    stored.env [0] = "LMDB_MAP_SIZE_MB=1";
    REQUIRE (harness_start (&stored) == 0);
    proto_client_t *client = proto_client_new (stored.endpoint);
    proto_room_t room = harness_room (-33.86, 151.2);
    room.road_name = "George Street";
    REQUIRE (s_put (client, &room));
    static char text [4001];
    memset (text, 'x', sizeof text - 1);
    //  About 4 MB of messages, pipelined so that batches hit the full map.
    enum { MESSAGES = 1000 };
    int acked = 0;
    for (int sent = 0, received = 0; received < MESSAGES; ) {
        while (sent < MESSAGES && sent - received < 64) {
            proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
                .room_id = room.id, .user_id = "u", .text = text,
                .created_at_ms = clock_now_ms () } };
            REQUIRE (proto_client_send (client, &request) == 0);
            sent++;
        }
        proto_msg_t *reply = proto_client_recv (client, 10000);
        REQUIRE (reply);
        acked += reply->type == PROTO_APPEND_REPLY;
        if (reply->type == PROTO_ERROR)
            fprintf (stderr, "  append refused: %s\n", reply->error.reason);
        proto_msg_destroy (&reply);
        received++;
    }
    CHECK (acked == MESSAGES);
    proto_stats_reply_t stats = s_stats (client);
    CHECK (stats.map_grows >= 2);
    CHECK (stats.map_size >= 4 << 20);
    CHECK (stats.messages == MESSAGES);
    printf ("  map grew %llu times to %llu MiB\n", (unsigned long long) stats.map_grows,
            (unsigned long long) (stats.map_size >> 20));

    //  A connection and a closed room too, to see them after the restart.
    proto_msg_t *reply = s_call (client, (proto_msg_t) { .type = PROTO_CONN_PUT,
        .conn_put.connection = { .conn_id = "c-1", .gateway_id = "g", .user_id = "u",
                                 .room_id = room.id, .connected_at_ms = 1 } });
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    proto_room_t closed = harness_room (-33.87, 151.2);
    closed.status = PROTO_STATUS_CLOSED;
    REQUIRE (s_put (client, &closed));
    char closed_id [64];
    snprintf (closed_id, sizeof closed_id, "%s", closed.id);
    proto_client_destroy (&client);

    printf ("a restart keeps everything\n");
    CHECK (harness_stop (&stored) == 0);
    REQUIRE (harness_start (&stored) == 0);
    client = proto_client_new (stored.endpoint);
    stats = s_stats (client);
    CHECK (stats.messages == MESSAGES && stats.rooms == 2 && stats.connections == 1);
    CHECK (s_history_count (client, room.id) == MESSAGES);
    reply = s_call (client, (proto_msg_t) { .type = PROTO_ROOM_GET,
                                           .room_get.room_id = room.id });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY
           && strcmp (reply->room_reply.room.road_name, "George Street") == 0
           && reply->room_reply.room.last_seq == MESSAGES);
    proto_msg_destroy (&reply);
    reply = s_call (client, (proto_msg_t) { .type = PROTO_ROOM_GET,
                                           .room_get.room_id = closed_id });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY
           && reply->room_reply.room.status == PROTO_STATUS_CLOSED);
    proto_msg_destroy (&reply);
    //  Indexes came back too: search finds the active room, not the closed one.
    reply = s_call (client, (proto_msg_t) { .type = PROTO_GEO_SEARCH,
        .geo_search = { .latitude = -33.86, .longitude = 151.2 } });
    CHECK (reply && reply->type == PROTO_GEO_REPLY && reply->geo_reply.count == 1
           && strcmp (reply->geo_reply.hits [0].room.id, room.id) == 0);
    proto_msg_destroy (&reply);
    //  Numbering carries on.
    CHECK (s_append (client, room.id, NULL, "after the restart", 0));
    CHECK (s_stats (client).messages == MESSAGES + 1);
    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);
}

static void
s_test_settings (void)
{
    printf ("settings: --help, --version, and bad values exit 2 naming the setting\n");
    char output [8192];
    const char *help [] = { "--help", NULL };
    CHECK (harness_run ("stored", NULL, help, output, sizeof output) == 0);
    CHECK (strstr (output, "MESSAGE_TTL_S") && strstr (output, "DATA_DIR")
           && strstr (output, "CHAT_ROOMS_TABLE") && strstr (output, "--data-dir"));
    const char *version [] = { "--version", NULL };
    CHECK (harness_run ("stored", NULL, version, output, sizeof output) == 0);
    CHECK (strstr (output, "stored") != NULL);

    const char *bad [][2] = {
        { "MESSAGE_TTL_S=abc", "MESSAGE_TTL_S" },
        { "MESSAGE_TTL_S=-5", "MESSAGE_TTL_S" },
        { "LMDB_MAP_SIZE_MB=0", "LMDB_MAP_SIZE_MB" },
        { "LOG_LEVEL=loud", "LOG_LEVEL" },
        { "TTL_SWEEP_BATCH=12x", "TTL_SWEEP_BATCH" },
        { "STORED_ENDPOINT=", "STORED_ENDPOINT" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        const char *env [] = { bad [i][0], NULL };
        int status = harness_run ("stored", env, NULL, output, sizeof output);
        CHECK (status == 2);
        CHECK (strstr (output, bad [i][1]) != NULL);
    }
    const char *flag [] = { "--message-ttl-s=never", NULL };
    CHECK (harness_run ("stored", NULL, flag, output, sizeof output) == 2);
    CHECK (strstr (output, "MESSAGE_TTL_S") != NULL);
    const char *unknown [] = { "--no-such-flag", NULL };
    CHECK (harness_run ("stored", NULL, unknown, output, sizeof output) == 2);
}

int
main (void)
{
    harness_init ("stored-lifecycle");
    s_test_settings ();
    s_test_ttl ();
    s_test_growth_and_restart ();
    return harness_finish ();
}
