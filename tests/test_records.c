/*  =========================================================================
    test_records - sockets' connection records, written by the room's shard
    in the join's own transaction (proto.h, room-update): against the real
    system (stored, one gateway, two shards)

    - right after a socket's join is answered, stored lists its record in
      the room, with its gateway, the gateway's run and its profile;
    - a shard that loads the room (the owner killed -9 and back, or the
      other shard taking it over) counts the socket online;
    - a socket that moves from A to B is in B, whichever of A's leave and
      B's join lands last in stored (A's shard paused, then resumed);
    - a socket closed right after its join (cleanly, or reset), 50 times
      over, leaves no record and no one online, even for a shard that
      loads the room afresh. (The gateway handles a socket's close after
      its join's reply, one action at a time: the race of a leave with a
      join still on its way is test_roomd's, which plays the gateway.)
    =========================================================================
*/

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;
static proto_client_t *s_stored;
static int s_port;

//  conn-list by room or by user: the reply (the caller destroys it).
static proto_msg_t *
s_list (const char *room_id, const char *user_id)
{
    proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list = {
        .room_id = room_id, .user_id = user_id } };
    proto_msg_t *reply = harness_call (s_stored, &list);
    if (reply && reply->type != PROTO_CONN_LIST_REPLY)
        proto_msg_destroy (&reply);
    return reply;
}

//  The room of user's one socket ("" in none, "?" with no record or more).
static const char *
s_room_of (const char *user_id)
{
    static char room [PROTO_ID_MAX + 1];
    proto_msg_t *reply = s_list (NULL, user_id);
    snprintf (room, sizeof room, "?");
    if (reply && reply->conn_list_reply.count == 1) {
        const char *in = reply->conn_list_reply.connections [0].room_id;
        snprintf (room, sizeof room, "%s", in? in: "");
    }
    proto_msg_destroy (&reply);
    return room;
}

//  Whether GET /rooms/{room} counts user online.
static bool
s_online (const char *room, const char *user)
{
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", room);
    json_t *info = NULL;
    bool online = http_call (s_port, "GET", path, NULL, &info) == 200
               && j_holds_once (j_get (info, "online"), user);
    json_decref (info);
    return online;
}

static void
s_test_join_writes (void)
{
    printf ("a join's record is in stored when its reply comes, and a loading shard reads it\n");
    json_t *health = NULL;
    REQUIRE (api_health (s_port, &health) == 200);
    char incarnation [PROTO_ID_MAX + 1];
    snprintf (incarnation, sizeof incarnation, "%s", j_str (health, "incarnation")? : "");
    json_decref (health);
    const char *room = api_create_room (s_port, "ada", 45.0, 5.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *ada = api_connect (s_port, "ada", "Ada");
    json_decref (api_join (ada, room, "ada", -1));
    //  No wait: the record was committed with the join, before its reply.
    proto_msg_t *reply = s_list (room, NULL);
    REQUIRE (reply && reply->conn_list_reply.count == 1);
    const proto_connection_t *record = &reply->conn_list_reply.connections [0];
    CHECK (!strcmp (record->user_id, "ada") && record->room_id && !strcmp (record->room_id, room));
    CHECK (!strcmp (record->gateway_id, "gw-records"));
    CHECK (*incarnation && record->incarnation && !strcmp (record->incarnation, incarnation));
    CHECK (record->user_name && !strcmp (record->user_name, "Ada"));
    proto_msg_destroy (&reply);

    //  Its shard killed -9 and back: it loads the room from stored.
    int owner = harness_shard_owner (&s_system, room);
    harness_shard_stop (&s_system, owner, true);
    REQUIRE (harness_shard_start (&s_system, owner) == 0);
    CHECK (s_online (room, "ada"));
    //  Its shard stopped for good: the other one takes the room over.
    harness_shard_stop (&s_system, owner, false);
    REQUIRE (harness_system_wait (&s_system, 1, 15000) == 0);
    CHECK (s_online (room, "ada"));
    REQUIRE (harness_shard_start (&s_system, owner) == 0);
    CHECK (s_online (room, "ada"));
    ws_close (&ada);
}

//  Has carol (in room) say something and waits for its ack: every write
//  the room's shard sent to stored before it has been committed (one
//  link, committed in order).
static void
s_flush (ws_client_t *carol, const char *room, int round)
{
    char id [32];
    snprintf (id, sizeof id, "flush-%d", round);
    CHECK (api_say (carol, room, id, "and now?") > 0);
}

static void
s_test_moves (void)
{
    printf ("a socket that moves from A to B stays in B, whichever write lands last\n");
    //  Two rooms on two shards: A's leave and B's join go by two links.
    const char *a = NULL, *b = NULL;
    for (int i = 0; i < 64 && !b; i++) {
        const char *room = api_create_room (s_port, "cat", 45.0 + i * 0.01, 5.1, NULL, 0);
        REQUIRE (room);
        if (!a)
            a = room;
        else
        if (harness_shard_owner (&s_system, room) != harness_shard_owner (&s_system, a))
            b = room;
    }
    REQUIRE (a && b);
    ws_client_t *cat = api_connect (s_port, "cat", "Cat");
    ws_client_t *bob = api_connect (s_port, "bob", "Bob");
    json_decref (api_join (cat, a, "cat", -1));
    json_decref (api_join (bob, a, "bob", -1));
    CHECK (!strcmp (s_room_of ("bob"), a));

    //  A's leave first (the gateway sends it before B's join), as a rule.
    json_decref (api_join (bob, b, "bob", -1));
    CHECK (!strcmp (s_room_of ("bob"), b));
    s_flush (cat, a, 1);
    CHECK (!strcmp (s_room_of ("bob"), b));

    //  Back to A, then to B with A's shard paused: B's join is written
    //  first and A's leave, held, after it.
    json_decref (api_join (bob, a, "bob", -1));
    CHECK (!strcmp (s_room_of ("bob"), a));
    pid_t paused = s_system.shards [harness_shard_owner (&s_system, a)].pid;
    REQUIRE (kill (paused, SIGSTOP) == 0);
    json_decref (api_join (bob, b, "bob", -1));
    CHECK (!strcmp (s_room_of ("bob"), b));
    REQUIRE (kill (paused, SIGCONT) == 0);
    s_flush (cat, a, 2);
    CHECK (!strcmp (s_room_of ("bob"), b));
    CHECK (s_online (b, "bob") && !s_online (a, "bob"));
    proto_msg_t *in_a = s_list (a, NULL);
    CHECK (in_a && in_a->conn_list_reply.count == 1
           && !strcmp (in_a->conn_list_reply.connections [0].user_id, "cat"));
    proto_msg_destroy (&in_a);
    ws_close (&bob);
    ws_close (&cat);
}

//  Until every socket is closed at the gateway (so every leave is sent)
//  and the room's shard has answered a write of its own after them (so
//  every one of them is committed: one link to stored, in order).
static void
s_settle (const char *room)
{
    CHECK (api_wait_connections (s_port, 0));
    CHECK (api_join_http (s_port, room, "eli") == 200);
}

static void
s_test_close_after_join (void)
{
    enum { ROUNDS = 50 };
    printf ("%d sockets closed right after their join: no record, no one online\n", ROUNDS);
    const char *room = api_create_room (s_port, "eli", 45.5, 5.5, NULL, 0);
    REQUIRE (room);
    char join [256];
    snprintf (join, sizeof join, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
    for (int round = 0; round < ROUNDS; round++) {
        if (round % 2) {            //  the peer goes at once, without a close frame
            ws_raw_t *dan = ws_raw_open (s_port, "/ws?userId=dan&userName=Dan", 0);
            REQUIRE (dan);
            CHECK (ws_raw_send (dan, join) == 0);
            ws_raw_reset (&dan);
        }
        else {
            ws_client_t *dan = api_connect (s_port, "dan", "Dan");
            REQUIRE (dan);
            ws_send (dan, "{s:s, s:s}", "action", "join-room", "roomId", room);
            ws_close (&dan);
        }
    }
    s_settle (room);
    proto_msg_t *by_room = s_list (room, NULL), *by_user = s_list (NULL, "dan");
    uint32_t in_room = by_room? by_room->conn_list_reply.count: UINT32_MAX;
    uint32_t of_dan = by_user? by_user->conn_list_reply.count: UINT32_MAX;
    proto_msg_destroy (&by_room);
    proto_msg_destroy (&by_user);
    if (in_room || of_dan)
        fprintf (stderr, "  left behind: %u records in the room, %u of dan's\n", in_room, of_dan);
    CHECK (in_room == 0 && of_dan == 0);
    CHECK (!s_online (room, "dan"));
    //  ... and a shard that loads the room afresh finds no one either.
    int owner = harness_shard_owner (&s_system, room);
    harness_shard_stop (&s_system, owner, true);
    REQUIRE (harness_shard_start (&s_system, owner) == 0);
    CHECK (!s_online (room, "dan"));
}

//  How many lines of the gateway's log hold text.
static int
s_logged (const char *text)
{
    return harness_logged_lines (s_system.gateways [0].log_path, text);
}

//  Until the gateway's log holds more than count lines with text (10 s at most).
static bool
s_wait_logged (const char *text, int count)
{
    for (int i = 0; i < 1000; i++) {
        if (s_logged (text) > count)
            return true;
        usleep (10 * 1000);
    }
    return false;
}

//  A user's second socket joins while their first leaves the room (a
//  user's leave takes every socket of theirs out): the second's join is
//  answered, with an error, not left without an answer; and a socket of
//  the user that joins after is in the room and may send.
static void
s_test_left_while_joining (void)
{
    printf ("a user leaves from one socket while another joins: the join is answered\n");
    const char *room = api_create_room (s_port, "fay", 46.0, 6.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *first = api_connect (s_port, "fay", "Fay");
    ws_client_t *second = api_connect (s_port, "fay", "Fay");
    REQUIRE (first && second);
    json_decref (api_join (first, room, "fay", -1));
    //  With the shard paused, the second's join waits for it there, and
    //  the first's leave-room follows it to the same shard.
    pid_t paused = s_system.shards [harness_shard_owner (&s_system, room)].pid;
    REQUIRE (kill (paused, SIGSTOP) == 0);
    //  (The gateway logs each request it sends at debug level.)
    int joins = s_logged ("\"room-join -> "), leaves = s_logged ("\"room-leave -> ");
    ws_send (second, "{s:s, s:s, s:s}", "action", "join-room", "roomId", room,
             "requestId", "j2");
    CHECK (s_wait_logged ("\"room-join -> ", joins));     //  sent before the leave is read
    ws_send (first, "{s:s, s:s}", "action", "leave-room", "roomId", room);
    CHECK (s_wait_logged ("\"room-leave -> ", leaves));
    REQUIRE (kill (paused, SIGCONT) == 0);
    json_t *answer = NULL;
    for (int i = 0; i < 20 && !answer; i++) {
        json_t *frame = ws_next (second, 5000);
        if (!frame)
            break;
        const char *type = j_str (frame, "type");
        if (type && (!strcmp (type, "error") || !strcmp (type, "user-joined"))
        &&  j_str (frame, "requestId") && !strcmp (j_str (frame, "requestId"), "j2"))
            answer = frame;
        else
            json_decref (frame);
    }
    CHECK (answer != NULL);
    //  The leave came after the join, so the join is undone: an error says so.
    CHECK (answer && j_is (answer, "type", "error") && j_num (answer, "status") == 409);
    json_decref (answer);
    //  Joined again, the user is a participant and the socket can send.
    json_decref (api_join (second, room, "fay", -1));
    CHECK (api_say (second, room, "after-leave", "still here") > 0);
    ws_close (&first);
    ws_close (&second);
}

int
main (void)
{
    harness_init ("records");
    const char *env [] = { "GATEWAY_ID=gw-records", NULL };
    REQUIRE (harness_system_start (&s_system, 2, false, env) == 0);
    s_port = s_system.http_port;
    s_stored = proto_client_new (s_system.stored.endpoint);
    REQUIRE (s_stored);
    s_test_join_writes ();
    s_test_moves ();
    s_test_close_after_join ();
    s_test_left_while_joining ();
    proto_client_destroy (&s_stored);
    return harness_finish ();
}
