/*  =========================================================================
    test_shards - rooms spread over 3 roomd shards, and shards that stop
    and come back mid-session, against the real system (stored, gateway,
    3 shards)

    Rooms are chosen so that each shard owns some (by proto's rendezvous
    routing over the shard ids, which the gateway uses too); two users join
    and chat in each. Then: one shard stopped (SIGTERM) - the others' rooms
    go on untouched, its own rooms are served again once the gateway has
    dropped it, and again after it is back with the same SHARD_ID; another
    shard killed with -9 and started at once - its rooms' clients carry on,
    history and order intact. A client that gets an error while a shard is
    away resends with the same messageId, as a real client would; every
    message is still delivered once, with a seq above the last (a shard
    that takes a room over numbers past what its last owner may have
    fanned out: roomd/handle_send.c).
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"

#define SHARDS          3
#define ROOMS_A_SHARD   3
#define ROOMS           (SHARDS * ROOMS_A_SHARD)

typedef struct {
    const char *id;
    int owner;                      //  the shard index that owns it
    char users [2][32];
    ws_client_t *clients [2];
    long long last_seq;             //  seq of the room's newest message
    int said;                       //  messages sent, for unique ids
} s_room_t;

static harness_system_t s_system;
static int s_port;
static s_room_t s_rooms [ROOMS];

//  One of the room's two users says something (resending through errors
//  when retrying); the other hears it once, with a seq above the last.
static void
s_talk (s_room_t *room, int speaker, const char *text, bool retrying)
{
    char id [64];
    snprintf (id, sizeof id, "%s-%d", room->users [speaker], ++room->said);
    long long seq = retrying
                  ? api_say_retrying (room->clients [speaker], room->id, id, text, 6)
                  : api_say (room->clients [speaker], room->id, id, text);
    CHECK (seq > room->last_seq);
    long long heard = api_heard (room->clients [1 - speaker], text);
    CHECK (heard == seq);
    CHECK (ws_quiet_where (room->clients [1 - speaker], "new-message", "text", text,
                           retrying? API_QUIET_MS: 0));
    json_decref (ws_expect_where (room->clients [speaker], "new-message", "text", text, API_WAIT_MS));
    if (seq > 0)
        room->last_seq = seq;
}

static void
s_test_spread (void)
{
    printf ("rooms on every shard: each works\n");
    json_t *health = NULL;
    CHECK (http_call (s_port, "GET", "/healthz", NULL, &health) == 200);
    CHECK (json_array_size (j_get (health, "shards")) == SHARDS);
    for (int i = 0; i < SHARDS; i++)
        CHECK (j_holds_once (j_get (health, "shards"), s_system.shard_ids [i]));
    json_decref (health);

    //  Rooms until each shard owns ROOMS_A_SHARD of those kept (bounded).
    int owned [SHARDS] = { 0 }, kept = 0;
    for (int attempt = 0; attempt < 200 && kept < ROOMS; attempt++) {
        char creator [32];
        snprintf (creator, sizeof creator, "creator-%d", attempt);
        const char *id = api_create_room (s_port, creator, 20.0 + attempt * 0.01, 40.0, NULL, 0);
        REQUIRE (id);
        int owner = harness_shard_owner (&s_system, id);
        if (owned [owner] < ROOMS_A_SHARD) {
            owned [owner]++;
            s_rooms [kept].id = id;
            s_rooms [kept].owner = owner;
            kept++;
        }
    }
    REQUIRE (kept == ROOMS);

    for (int i = 0; i < ROOMS; i++) {
        s_room_t *room = &s_rooms [i];
        for (int u = 0; u < 2; u++) {
            snprintf (room->users [u], sizeof room->users [u], "r%d-%c", i, 'a' + u);
            room->clients [u] = api_connect (s_port, room->users [u], room->users [u]);
            REQUIRE (room->clients [u]);
            json_decref (api_join (room->clients [u], room->id, room->users [u], -1));
        }
    }
    for (int i = 0; i < ROOMS; i++) {
        char text [64];
        snprintf (text, sizeof text, "hello in room %d", i);
        s_talk (&s_rooms [i], 0, text, false);
        snprintf (text, sizeof text, "reply in room %d", i);
        s_talk (&s_rooms [i], 1, text, false);
    }
}

//  History by HTTP and on a fresh join: every message, in seq order, up to the last.
static void
s_check_history (s_room_t *room)
{
    char path [256];
    json_t *messages = NULL;
    snprintf (path, sizeof path, "/rooms/%s/messages", room->id);
    CHECK (http_call (s_port, "GET", path, NULL, &messages) == 200);
    CHECK ((int) json_array_size (messages) == room->said);
    size_t index;
    json_t *message;
    double before = 0;
    json_array_foreach (messages, index, message) {
        CHECK (j_num (message, "seq") > before);
        before = j_num (message, "seq");
    }
    CHECK (before == (double) room->last_seq);
    json_decref (messages);

    ws_client_t *late = api_connect (s_port, "latecomer", "Late");
    json_t *history = api_join (late, room->id, "latecomer", -1);
    CHECK ((int) json_array_size (j_get (history, "messages")) == room->said);
    json_decref (history);
    ws_send (late, "{s:s, s:s}", "action", "room-info", "roomId", room->id);
    json_t *info = ws_expect (late, "room-info", API_WAIT_MS);
    json_t *online = j_get (info, "online");
    CHECK (j_holds_once (online, room->users [0]) && j_holds_once (online, room->users [1])
           && j_holds_once (online, "latecomer"));
    json_decref (info);
    ws_close (&late);
    for (int u = 0; u < 2; u++) {
        json_decref (ws_expect_where (room->clients [u], "user-left", "userId", "latecomer", API_WAIT_MS));
        ws_discard (room->clients [u]);
    }
}

static void
s_test_sigterm (void)
{
    printf ("a shard stopped: the others' rooms go on; its rooms move, then come back\n");
    int down = s_rooms [0].owner;
    harness_shard_stop (&s_system, down, false);
    for (int i = 0; i < ROOMS; i++)
        if (s_rooms [i].owner != down)
            s_talk (&s_rooms [i], 0, "while a shard is away", false);

    //  Once the gateway has dropped it, its rooms are served by the others,
    //  reloaded from stored.
    CHECK (harness_system_wait (&s_system, SHARDS - 1, 10000) == 0);
    for (int i = 0; i < ROOMS; i++)
        if (s_rooms [i].owner == down)
            s_talk (&s_rooms [i], 1, "served elsewhere", true);

    //  Back with the same id: its rooms are its own again, nothing lost.
    REQUIRE (harness_shard_start (&s_system, down) == 0);
    for (int i = 0; i < ROOMS; i++)
        if (s_rooms [i].owner == down) {
            s_talk (&s_rooms [i], 0, "the shard is back", true);
            s_talk (&s_rooms [i], 1, "welcome back", true);
        }
    s_check_history (&s_rooms [0]);
}

static void
s_test_kill9 (void)
{
    printf ("a shard killed with -9 and restarted at once: its clients carry on\n");
    int victim = -1;
    for (int i = 0; i < ROOMS && victim < 0; i++)
        if (s_rooms [i].owner != s_rooms [0].owner)
            victim = i;
    REQUIRE (victim >= 0);
    int down = s_rooms [victim].owner;
    harness_shard_stop (&s_system, down, true);
    REQUIRE (harness_shard_start (&s_system, down) == 0);
    for (int i = 0; i < ROOMS; i++)
        if (s_rooms [i].owner == down) {
            s_talk (&s_rooms [i], 0, "after the crash", true);
            s_talk (&s_rooms [i], 1, "still talking", true);
        }
    s_check_history (&s_rooms [victim]);

    //  Every room, on every shard, still works.
    for (int i = 0; i < ROOMS; i++)
        s_talk (&s_rooms [i], i % 2, "the last word", true);
}

int
main (void)
{
    harness_init ("shards");
    REQUIRE (harness_system_start (&s_system, SHARDS, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_spread ();
    s_test_sigterm ();
    s_test_kill9 ();

    for (int i = 0; i < ROOMS; i++)
        for (int u = 0; u < 2; u++)
            ws_close (&s_rooms [i].clients [u]);
    return harness_finish ();
}
