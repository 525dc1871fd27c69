/*  =========================================================================
    test_api_ws - the WebSocket API of DESIGN.md with two, three and four
    users, against the real system (stored, gateway, 2 shards)

    join (user-joined to every member, the joiner included, then
    message-history to the joiner), profiles from the query and from the
    frame, send-message (new-message to all, ack to the sender), typing
    (not echoed to the sender, throttled per user), room-info, history on
    join and after sinceSeq, a message's id (the client's messageId, else a
    server UUID) in new-message, ack and history, a resent messageId
    delivered once and acked twice, a join by HTTP that no socket hears of, leave-room, joining a second room leaves the first, disconnects
    (user-left only when a user's last socket goes), close by a non-creator
    (403) and by the creator (room-closed to all, by WebSocket and by
    HTTP), and GET messages paged by before and limit.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;
static int s_port;

#define CAR "\xf0\x9f\x9a\x97"          //  U+1F697, an icon in UTF-8

//  CHECK a new-message frame against what was sent; returns its seq (or -1).
static long long
s_check_message (json_t *message, const char *room, const char *user, const char *name,
                 const char *text)
{
    CHECK (message != NULL);
    if (!message)
        return -1;
    CHECK (j_str (message, "id") && *j_str (message, "id"));
    CHECK (j_is (message, "roomId", room));
    CHECK (json_is_integer (j_get (message, "seq")) && j_num (message, "seq") >= 1);
    CHECK (j_is (message, "text", text));
    CHECK (j_is_iso8601_ms (j_str (message, "createdAt")));
    int64_t created = 0;
    if (j_str (message, "createdAt") && !clock_iso8601_parse (j_str (message, "createdAt"), &created))
        CHECK (llabs (created - clock_now_ms ()) < 600000);     //  the server's clock, not a timing
    CHECK (j_is (message, "userId", user));
    if (name)
        CHECK (j_is (message, "userName", name));
    return json_is_integer (j_get (message, "seq")) ? json_integer_value (j_get (message, "seq")): -1;
}

static void
s_test_conversation (void)
{
    printf ("three users: join, profiles, messages, acks, resend, typing, room-info\n");
    const char *room = api_create_room (s_port, "alice", 48.1, 11.5, NULL, 0);
    REQUIRE (room);

    //  Alice's profile comes from her query, percent-encoded.
    char path [512], name [64], icon [64], color [64];
    snprintf (path, sizeof path, "/ws?userId=alice&userName=%s&userIcon=%s&userColor=%s",
              http_escape ("Alice A", name, sizeof name), http_escape (CAR, icon, sizeof icon),
              http_escape ("#e91e63", color, sizeof color));
    ws_client_t *alice = ws_open (s_port, path);
    ws_client_t *bob = api_connect (s_port, "bob", "Bob");
    ws_client_t *carol = api_connect (s_port, "carol", NULL);
    REQUIRE (alice && bob && carol);

    //  Alice joins: user-joined for her, then her history (empty).
    ws_send (alice, "{s:s, s:s}", "action", "join-room", "roomId", room);
    json_t *joined = ws_expect (alice, "user-joined", API_WAIT_MS);
    uint64_t joined_at = ws_arrival (alice);
    CHECK (j_is (joined, "userId", "alice"));
    CHECK (j_is (joined, "userName", "Alice A"));
    CHECK (j_is (joined, "userIcon", CAR));
    CHECK (j_is (joined, "userColor", "#e91e63"));
    CHECK (j_is (joined, "creatorId", "alice"));
    api_check_room_info (j_get (joined, "roomInfo"), "user-joined");
    CHECK (j_is (joined, "roomInfo.id", room));
    CHECK (j_holds_once (j_get (joined, "roomInfo.participants"), "alice"));
    json_decref (joined);
    json_t *history = ws_expect (alice, "message-history", API_WAIT_MS);
    CHECK (history && ws_arrival (alice) > joined_at);
    CHECK (j_is (history, "roomId", room));
    CHECK (json_is_array (j_get (history, "messages")) && json_array_size (j_get (history, "messages")) == 0);
    json_decref (history);

    //  Bob joins with his query's profile: both hear it, he gets his history.
    ws_send (bob, "{s:s, s:s}", "action", "join-room", "roomId", room);
    joined = ws_expect_where (alice, "user-joined", "userId", "bob", API_WAIT_MS);
    CHECK (j_is (joined, "userName", "Bob"));
    CHECK (j_is (joined, "creatorId", "alice"));
    CHECK (j_holds_once (j_get (joined, "roomInfo.participants"), "bob"));
    CHECK (j_holds_once (j_get (joined, "roomInfo.participants"), "alice"));
    json_decref (joined);
    joined = ws_expect_where (bob, "user-joined", "userId", "bob", API_WAIT_MS);
    joined_at = ws_arrival (bob);
    CHECK (joined != NULL);
    json_decref (joined);
    history = ws_expect (bob, "message-history", API_WAIT_MS);
    CHECK (history && ws_arrival (bob) > joined_at);
    json_decref (history);

    //  Carol's profile comes in her join frame.
    ws_send (carol, "{s:s, s:s, s:s, s:s, s:s}", "action", "join-room", "roomId", room,
             "userName", "Carol", "userIcon", "c.png", "userColor", "blue");
    for (int i = 0; i < 3; i++) {
        ws_client_t *member = i == 0? alice: i == 1? bob: carol;
        joined = ws_expect_where (member, "user-joined", "userId", "carol", API_WAIT_MS);
        CHECK (j_is (joined, "userName", "Carol"));
        CHECK (j_is (joined, "userIcon", "c.png"));
        CHECK (j_is (joined, "userColor", "blue"));
        CHECK (json_array_size (j_get (joined, "roomInfo.participants")) == 3);
        json_decref (joined);
    }
    history = ws_expect (carol, "message-history", API_WAIT_MS);
    CHECK (history != NULL);
    json_decref (history);

    //  A message: new-message to all three, the same seq, and as id the
    //  client's messageId (the app replaces its optimistic copy by id); ack
    //  to alice, with the same id.
    ws_send (alice, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "hello all", "messageId", "m-1", "requestId", "r-1");
    json_t *message = ws_expect (alice, "new-message", API_WAIT_MS);
    long long seq = s_check_message (message, room, "alice", "Alice A", "hello all");
    CHECK (j_is (message, "id", "m-1"));
    CHECK (j_is (message, "messageId", "m-1"));
    CHECK (j_is (message, "userIcon", CAR));
    CHECK (j_is (message, "userColor", "#e91e63"));
    json_decref (message);
    for (int i = 0; i < 2; i++) {
        message = ws_expect (i? carol: bob, "new-message", API_WAIT_MS);
        CHECK (s_check_message (message, room, "alice", "Alice A", "hello all") == seq);
        CHECK (j_is (message, "id", "m-1"));
        json_decref (message);
    }
    json_t *ack = ws_expect (alice, "ack", API_WAIT_MS);
    CHECK (j_is (ack, "action", "send-message"));
    CHECK (j_is (ack, "messageId", "m-1"));
    CHECK (j_is (ack, "id", "m-1"));
    CHECK (j_is (ack, "requestId", "r-1"));
    CHECK (json_is_integer (j_get (ack, "seq")) && j_num (ack, "seq") == seq);
    json_decref (ack);
    CHECK (ws_quiet (bob, "ack", API_QUIET_MS));

    //  The next message has the next seq; profile fields in the frame are shown.
    ws_send (bob, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "hi alice \xc3\xa9\xe2\x82\xac \"quoted\"\nsecond line", "messageId", "b-1",
             "userName", "Bobby");
    for (int i = 0; i < 3; i++) {
        message = ws_expect (i == 0? alice: i == 1? bob: carol, "new-message", API_WAIT_MS);
        CHECK (s_check_message (message, room, "bob", "Bobby",
                                "hi alice \xc3\xa9\xe2\x82\xac \"quoted\"\nsecond line") == seq + 1);
        json_decref (message);
    }
    ack = ws_expect (bob, "ack", API_WAIT_MS);
    CHECK (j_is (ack, "messageId", "b-1") && j_num (ack, "seq") == seq + 1);
    CHECK (j_get (ack, "requestId") == NULL);
    json_decref (ack);

    //  m-1 again: acked with its first seq and id, delivered to nobody.
    ws_send (alice, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "hello all", "messageId", "m-1");
    ack = ws_expect (alice, "ack", API_WAIT_MS);
    CHECK (j_is (ack, "messageId", "m-1") && j_num (ack, "seq") == seq);
    CHECK (j_is (ack, "id", "m-1"));
    json_decref (ack);
    CHECK (ws_quiet (bob, "new-message", API_QUIET_MS));
    CHECK (ws_quiet (alice, "new-message", 0));
    CHECK (ws_quiet (carol, "new-message", 0));

    //  Without a messageId the server names the message: a UUID, the same in
    //  every member's new-message and in the ack (as id and messageId).
    ws_send (carol, "{s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "no id of mine");
    char id [128] = "";
    message = ws_expect (carol, "new-message", API_WAIT_MS);
    CHECK (s_check_message (message, room, "carol", "Carol", "no id of mine") == seq + 2);
    snprintf (id, sizeof id, "%s", j_str (message, "id")? j_str (message, "id"): "");
    CHECK (strlen (id) == 36 && id [8] == '-' && id [13] == '-');
    CHECK (j_is (message, "messageId", id));
    json_decref (message);
    for (int i = 0; i < 2; i++) {
        message = ws_expect (i? bob: alice, "new-message", API_WAIT_MS);
        CHECK (j_is (message, "id", id));
        json_decref (message);
    }
    ack = ws_expect (carol, "ack", API_WAIT_MS);
    CHECK (j_is (ack, "id", id) && j_is (ack, "messageId", id) && j_num (ack, "seq") == seq + 2);
    json_decref (ack);

    //  Typing: the others hear it, bob does not.
    ws_send (bob, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room, "userName", "Bob");
    for (int i = 0; i < 2; i++) {
        json_t *typing = ws_expect (i? carol: alice, "user-typing", API_WAIT_MS);
        CHECK (j_is (typing, "userId", "bob"));
        CHECK (j_is (typing, "userName", "Bob"));
        CHECK (j_is (typing, "roomId", room));
        json_decref (typing);
    }
    CHECK (ws_quiet (bob, "user-typing", API_QUIET_MS));
    //  Throttled (TYPING_THROTTLE_MS is a minute here): bob again is not
    //  heard; carol, another user, is.
    ws_send (bob, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room, "userName", "Bob");
    ws_send (carol, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room, "userName", "Carol");
    json_t *typing = ws_expect_where (alice, "user-typing", "userId", "carol", API_WAIT_MS);
    CHECK (typing != NULL);
    json_decref (typing);
    CHECK (ws_quiet_where (alice, "user-typing", "userId", "bob", API_QUIET_MS));
    CHECK (ws_quiet (carol, "user-typing", 0));
    ws_discard (bob);

    //  room-info: the fields at top level and as roomInfo, creatorId, online.
    ws_send (carol, "{s:s, s:s, s:s}", "action", "room-info", "roomId", room, "requestId", "i-1");
    json_t *info = ws_expect (carol, "room-info", API_WAIT_MS);
    api_check_room_info (info, "room-info (top level)");
    api_check_room_info (j_get (info, "roomInfo"), "room-info (roomInfo)");
    CHECK (j_is (info, "id", room));
    CHECK (j_is (info, "roomInfo.id", room));
    CHECK (j_is (info, "creator", "alice"));
    CHECK (j_is (info, "creatorId", "alice"));
    CHECK (j_is (info, "status", "active"));
    CHECK (j_num (info, "location.latitude") == 48.1 && j_num (info, "location.longitude") == 11.5);
    json_t *participants = j_get (info, "participants"), *online = j_get (info, "online");
    CHECK (j_holds_once (participants, "alice") && j_holds_once (participants, "bob")
           && j_holds_once (participants, "carol"));
    CHECK (json_array_size (online) == 3 && j_holds_once (online, "alice")
           && j_holds_once (online, "bob") && j_holds_once (online, "carol"));
    json_decref (info);
    CHECK (ws_quiet (alice, "room-info", 0));

    //  The same online set by HTTP.
    char route [256];
    snprintf (route, sizeof route, "/rooms/%s", room);
    CHECK (http_call (s_port, "GET", route, NULL, &info) == 200);
    CHECK (json_array_size (j_get (info, "online")) == 3);
    json_decref (info);

    ws_close (&alice);
    ws_close (&bob);
    ws_close (&carol);
}

static void
s_test_history (void)
{
    printf ("history on join, after sinceSeq; GET messages paged by before and limit\n");
    const char *room = api_create_room (s_port, "hugo", 48.2, 11.6, NULL, 0);
    REQUIRE (room);
    ws_client_t *hugo = api_connect (s_port, "hugo", "Hugo");
    json_t *history = api_join (hugo, room, "hugo", -1);
    json_decref (history);
    long long seqs [7];
    for (int i = 0; i < 7; i++) {
        char text [32], id [32];
        snprintf (text, sizeof text, "h%d", i + 1);
        snprintf (id, sizeof id, "hugo-%d", i + 1);
        seqs [i] = api_say (hugo, room, id, text);
        CHECK (i == 0 || seqs [i] == seqs [i - 1] + 1);
    }
    CHECK (seqs [0] == 1);

    //  A newcomer gets every message, oldest first, as new-message has them.
    ws_client_t *iris = api_connect (s_port, "iris", "Iris");
    history = api_join (iris, room, "iris", -1);
    json_t *messages = j_get (history, "messages");
    CHECK (json_array_size (messages) == 7);
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        char text [32], id [32];
        snprintf (text, sizeof text, "h%zu", index + 1);
        snprintf (id, sizeof id, "hugo-%zu", index + 1);
        CHECK (s_check_message (message, room, "hugo", "Hugo", text) == seqs [index]);
        CHECK (j_is (message, "id", id));
    }
    json_decref (history);

    //  After sinceSeq 5: 6 and 7 only. After the last: nothing.
    ws_client_t *jude = api_connect (s_port, "jude", NULL);
    history = api_join (jude, room, "jude", seqs [4]);
    messages = j_get (history, "messages");
    CHECK (json_array_size (messages) == 2);
    CHECK (j_num (json_array_get (messages, 0), "seq") == seqs [5]);
    CHECK (j_num (json_array_get (messages, 1), "seq") == seqs [6]);
    CHECK (j_is (json_array_get (messages, 0), "text", "h6"));
    json_decref (history);
    ws_client_t *jude2 = api_connect (s_port, "jude", NULL);
    history = api_join (jude2, room, "jude", seqs [6]);
    CHECK (json_is_array (j_get (history, "messages"))
           && json_array_size (j_get (history, "messages")) == 0);
    json_decref (history);

    //  GET messages: all, oldest first; the newest page; pages before a seq.
    char path [256];
    json_t *page = NULL;
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    CHECK (http_call (s_port, "GET", path, NULL, &page) == 200);
    CHECK (json_array_size (page) == 7);
    json_array_foreach (page, index, message) {
        char text [32], id [32];
        snprintf (text, sizeof text, "h%zu", index + 1);
        snprintf (id, sizeof id, "hugo-%zu", index + 1);
        CHECK (s_check_message (message, room, "hugo", "Hugo", text) == seqs [index]);
        CHECK (j_is (message, "id", id) && j_is (message, "messageId", id));
    }
    json_decref (page);
    snprintf (path, sizeof path, "/rooms/%s/messages?limit=3", room);
    CHECK (http_call (s_port, "GET", path, NULL, &page) == 200);
    CHECK (json_array_size (page) == 3 && j_num (json_array_get (page, 0), "seq") == 5
           && j_num (json_array_get (page, 2), "seq") == 7);
    json_decref (page);
    snprintf (path, sizeof path, "/rooms/%s/messages?before=5&limit=3", room);
    CHECK (http_call (s_port, "GET", path, NULL, &page) == 200);
    CHECK (json_array_size (page) == 3 && j_num (json_array_get (page, 0), "seq") == 2
           && j_num (json_array_get (page, 1), "seq") == 3 && j_num (json_array_get (page, 2), "seq") == 4);
    CHECK (j_is (json_array_get (page, 0), "text", "h2"));
    json_decref (page);
    snprintf (path, sizeof path, "/rooms/%s/messages?before=2&limit=3", room);
    CHECK (http_call (s_port, "GET", path, NULL, &page) == 200);
    CHECK (json_array_size (page) == 1 && j_num (json_array_get (page, 0), "seq") == 1);
    json_decref (page);
    snprintf (path, sizeof path, "/rooms/%s/messages?before=1", room);
    CHECK (http_call (s_port, "GET", path, NULL, &page) == 200);
    CHECK (json_is_array (page) && json_array_size (page) == 0);
    json_decref (page);
    CHECK (http_call (s_port, "GET", "/rooms/no-such-room/messages", NULL, NULL) == 404);

    ws_close (&hugo);
    ws_close (&iris);
    ws_close (&jude);
    ws_close (&jude2);
}

static void
s_test_leaving (void)
{
    printf ("leave-room, joining another room, disconnects, several sockets of one user\n");
    const char *room = api_create_room (s_port, "kim", 48.3, 11.7, NULL, 0);
    REQUIRE (room);
    ws_client_t *kim = api_connect (s_port, "kim", "Kim");
    ws_client_t *leo = api_connect (s_port, "leo", "Leo");
    ws_client_t *mia = api_connect (s_port, "mia", "Mia");
    ws_client_t *ned = api_connect (s_port, "ned", "Ned");
    ws_client_t *ned2 = api_connect (s_port, "ned", "Ned");
    json_decref (api_join (kim, room, "kim", -1));
    json_decref (api_join (leo, room, "leo", -1));
    json_decref (api_join (mia, room, "mia", -1));
    json_decref (api_join (ned, room, "ned", -1));
    json_decref (api_join (ned2, room, "ned", -1));

    //  Mia leaves: the others hear it, and she hears the room no more.
    ws_send (mia, "{s:s, s:s}", "action", "leave-room", "roomId", room);
    for (int i = 0; i < 3; i++) {
        json_t *left = ws_expect_where (i == 0? kim: i == 1? leo: ned, "user-left",
                                        "userId", "mia", API_WAIT_MS);
        CHECK (j_is (left, "userName", "Mia"));
        CHECK (j_is (left, "roomId", room));
        api_check_room_info (j_get (left, "roomInfo"), "user-left");
        CHECK (j_lacks (j_get (left, "roomInfo.participants"), "mia"));
        CHECK (j_holds_once (j_get (left, "roomInfo.participants"), "kim"));
        json_decref (left);
    }
    ws_discard (mia);
    api_say (kim, room, "kim-1", "mia has gone");
    CHECK (api_heard (leo, "mia has gone") > 0);
    CHECK (ws_quiet (mia, "new-message", API_QUIET_MS));
    //  ... and may not speak in it.
    ws_send (mia, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "still here?", "requestId", "mia-1");
    json_t *error = ws_expect (mia, "error", API_WAIT_MS);
    CHECK (j_num (error, "status") == 403);
    CHECK (j_is (error, "requestId", "mia-1"));
    json_decref (error);
    CHECK (ws_quiet (leo, "new-message", API_QUIET_MS));

    //  Leo's only socket joins another room: he has left the first.
    const char *other = api_create_room (s_port, "leo", 48.31, 11.71, NULL, 0);
    REQUIRE (other);
    json_decref (api_join (leo, other, "leo", -1));
    json_t *left = ws_expect_where (kim, "user-left", "userId", "leo", API_WAIT_MS);
    CHECK (left && j_is (left, "roomId", room));
    json_decref (left);
    ws_discard (leo);
    api_say (kim, room, "kim-2", "leo has moved on");
    CHECK (api_heard (ned, "leo has moved on") > 0);
    CHECK (ws_quiet_where (leo, "new-message", "text", "leo has moved on", API_QUIET_MS));

    //  One of Ned's two sockets closes: Ned is still here; the second: Ned has left.
    ws_close (&ned2);
    CHECK (ws_quiet_where (kim, "user-left", "userId", "ned", API_QUIET_MS));
    api_say (kim, room, "kim-3", "ned, still there?");
    CHECK (api_heard (ned, "ned, still there?") > 0);
    ws_close (&ned);
    left = ws_expect_where (kim, "user-left", "userId", "ned", API_WAIT_MS);
    CHECK (j_is (left, "userName", "Ned"));
    CHECK (j_lacks (j_get (left, "roomInfo.participants"), "ned"));
    json_decref (left);

    //  An abrupt disconnect (no close frame) counts as one too.
    ws_raw_t *raw = ws_raw_open (s_port, "/ws?userId=olga&userName=Olga", 0);
    REQUIRE (raw);
    char frame [256];
    snprintf (frame, sizeof frame, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
    CHECK (ws_raw_send (raw, frame) == 0);
    json_decref (ws_expect_where (kim, "user-joined", "userId", "olga", API_WAIT_MS));
    ws_raw_close (&raw);
    left = ws_expect_where (kim, "user-left", "userId", "olga", API_WAIT_MS);
    CHECK (left != NULL);
    json_decref (left);

    char path [256];
    json_t *info = NULL;
    snprintf (path, sizeof path, "/rooms/%s", room);
    CHECK (http_call (s_port, "GET", path, NULL, &info) == 200);
    CHECK (j_holds_once (j_get (info, "online"), "kim") && json_array_size (j_get (info, "online")) == 1);
    json_decref (info);

    ws_close (&kim);
    ws_close (&leo);
    ws_close (&mia);
}

static void
s_test_closing (void)
{
    printf ("close-room: not by a member who is not the creator; by the creator, by HTTP\n");
    const char *room = api_create_room (s_port, "pam", 48.4, 11.8, NULL, 0);
    REQUIRE (room);
    ws_client_t *pam = api_connect (s_port, "pam", "Pam");
    ws_client_t *rex = api_connect (s_port, "rex", "Rex");
    json_decref (api_join (pam, room, "pam", -1));
    json_decref (api_join (rex, room, "rex", -1));

    ws_send (rex, "{s:s, s:s, s:s}", "action", "close-room", "roomId", room, "requestId", "c-1");
    json_t *error = ws_expect (rex, "error", API_WAIT_MS);
    CHECK (j_num (error, "status") == 403);
    CHECK (j_is (error, "action", "close-room"));
    CHECK (j_is (error, "requestId", "c-1"));
    CHECK (j_str (error, "error") && *j_str (error, "error"));
    json_decref (error);
    CHECK (ws_quiet (pam, "room-closed", API_QUIET_MS));
    //  The socket stays open and the room goes on.
    api_say (rex, room, "rex-1", "sorry");
    CHECK (api_heard (pam, "sorry") > 0);

    ws_send (pam, "{s:s, s:s}", "action", "close-room", "roomId", room);
    for (int i = 0; i < 2; i++) {
        json_t *closed = ws_expect (i? rex: pam, "room-closed", API_WAIT_MS);
        CHECK (j_is (closed, "roomId", room));
        json_decref (closed);
    }
    char path [256];
    json_t *info = NULL;
    snprintf (path, sizeof path, "/rooms/%s", room);
    CHECK (http_call (s_port, "GET", path, NULL, &info) == 200);
    CHECK (j_is (info, "status", "closed"));
    json_decref (info);
    //  Nobody speaks in a closed room, nobody joins it.
    ws_send (pam, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "anyone?", "requestId", "late-1");
    error = ws_expect (pam, "error", API_WAIT_MS);
    CHECK (error && j_num (error, "status") >= 400 && j_num (error, "status") < 500);
    json_decref (error);
    ws_client_t *sam = api_connect (s_port, "sam", NULL);
    ws_send (sam, "{s:s, s:s}", "action", "join-room", "roomId", room);
    error = ws_expect (sam, "error", API_WAIT_MS);
    CHECK (j_num (error, "status") == 404);
    CHECK (j_is (error, "action", "join-room"));
    json_decref (error);
    CHECK (ws_quiet_where (rex, "new-message", "text", "anyone?", 0));

    //  Closed by HTTP: the members hear it on their sockets.
    room = api_create_room (s_port, "sam", 48.41, 11.81, NULL, 0);
    REQUIRE (room);
    ws_discard (sam);
    json_decref (api_join (sam, room, "sam", -1));
    ws_discard (rex);
    json_decref (api_join (rex, room, "rex", -1));
    CHECK (http_callf (s_port, "POST", "/close-room", NULL, "{s:s, s:s}",
                       "roomId", room, "userId", "sam") == 200);
    for (int i = 0; i < 2; i++) {
        json_t *closed = ws_expect (i? rex: sam, "room-closed", API_WAIT_MS);
        CHECK (j_is (closed, "roomId", room));
        json_decref (closed);
    }
    ws_close (&pam);
    ws_close (&rex);
    ws_close (&sam);
}

static void
s_test_http_participants (void)
{
    printf ("joined by HTTP first (no event), then by WebSocket (one user-joined); "
            "a full room refuses a socket\n");
    const char *room = api_create_room (s_port, "tom", 48.5, 11.9, NULL, 2);
    REQUIRE (room);
    ws_client_t *tom = api_connect (s_port, "tom", "Tom");
    json_decref (api_join (tom, room, "tom", -1));
    //  Whoever holds the two seats (tom holds one as creator), uma joins by
    //  HTTP: a participant, of whom the room's sockets hear nothing...
    int status = api_join_http (s_port, room, "uma");
    ws_client_t *uma = api_connect (s_port, "uma", "Uma");
    CHECK (ws_quiet (tom, "user-joined", API_QUIET_MS));
    if (status == 200) {
        //  ... until her socket joins, without taking another seat: then
        //  once, with her name, to tom and to her.
        json_decref (api_join (uma, room, "uma", -1));
        json_t *joined = ws_expect_where (tom, "user-joined", "userId", "uma", API_WAIT_MS);
        CHECK (j_is (joined, "userName", "Uma"));
        json_decref (joined);
        CHECK (ws_quiet (tom, "user-joined", API_QUIET_MS));
        CHECK (ws_quiet (uma, "user-joined", 0));
        ws_client_t *vic = api_connect (s_port, "vic", "Vic");
        ws_send (vic, "{s:s, s:s, s:s}", "action", "join-room", "roomId", room, "requestId", "v-1");
        json_t *error = ws_expect (vic, "error", API_WAIT_MS);
        CHECK (j_num (error, "status") == 400);
        CHECK (j_is (error, "error", "Room is full"));
        CHECK (j_is (error, "action", "join-room"));
        CHECK (j_is (error, "requestId", "v-1"));
        json_decref (error);
        CHECK (ws_quiet_where (tom, "user-joined", "userId", "vic", API_QUIET_MS));
        ws_close (&vic);
    }
    CHECK (status == 200);
    ws_close (&uma);
    ws_close (&tom);
}

//  A socket's sends go to the shard without waiting for each other's
//  answers (the gateway's client.c, SENDS_MAX in flight); what the client
//  sees must be as if they went one by one: acks in the order sent, seqs
//  rising in that order, every member given them in that order, a resend
//  among them acked with the first one's seq and delivered once, a bad
//  one refused without stopping the rest, and an action of another kind
//  behind them answered after their acks.
static void
s_test_burst (void)
{
    printf ("a burst of sends on one socket: answered and delivered in the order sent\n");
    const char *room = api_create_room (s_port, "wes", 48.2, 11.6, NULL, 0);
    REQUIRE (room);
    ws_client_t *wes = api_connect (s_port, "wes", "Wes");
    ws_client_t *xia = api_connect (s_port, "xia", "Xia");
    REQUIRE (wes && xia);
    json_decref (api_join (wes, room, "wes", -1));
    json_decref (api_join (xia, room, "xia", -1));
    ws_discard (wes);
    ws_discard (xia);

    #define BURST 40
    char id [BURST][16];
    for (int i = 0; i < BURST; i++) {
        snprintf (id [i], sizeof id [i], "burst-%d", i);
        ws_send (wes, "{s:s, s:s, s:s, s:s, s:i}", "action", "send-message", "roomId", room,
                 "message", id [i], "messageId", id [i], "requestId", i);
        if (i == 20)        //  a resend of an earlier one, in the middle
            ws_send (wes, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
                     "message", id [5], "messageId", id [5], "requestId", "resend");
        if (i == 30)        //  a bad one: refused at once, the rest go on
            ws_send (wes, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
                     "message", "", "requestId", "empty");
    }
    ws_send (wes, "{s:s, s:s, s:s}", "action", "room-info", "roomId", room, "requestId", "info");

    //  The sender's acks: in the order sent, seqs rising.
    long long seq [BURST], resend_seq = -1;
    int acked = 0, own = 0;
    bool info_seen = false, info_early = false, error_seen = false;
    char own_ids [BURST + 2][16];
    for (int frames = 0; frames < 3 * BURST + 10 && !info_seen; frames++) {
        json_t *frame = ws_next (wes, API_WAIT_MS);
        if (!frame)
            break;
        const char *type = j_str (frame, "type");
        json_t *request_id = j_get (frame, "requestId");
        if (type && strcmp (type, "new-message") == 0 && own < BURST + 2)
            snprintf (own_ids [own++], sizeof own_ids [0], "%s", j_str (frame, "id")? j_str (frame, "id"): "");
        else
        if (type && strcmp (type, "ack") == 0) {
            if (json_is_string (request_id) && !strcmp (json_string_value (request_id), "resend"))
                resend_seq = j_num (frame, "seq");
            else {
                CHECK (acked < BURST && j_is (frame, "messageId", id [acked]));
                CHECK (json_integer_value (j_get (frame, "requestId")) == acked);
                seq [acked] = j_num (frame, "seq");
                if (acked > 0)
                    CHECK (seq [acked] > seq [acked - 1]);
                acked++;
            }
        }
        else
        if (type && strcmp (type, "error") == 0) {
            CHECK (json_is_string (request_id) && !strcmp (json_string_value (request_id), "empty"));
            CHECK (json_integer_value (j_get (frame, "status")) == 400);
            error_seen = true;
        }
        else
        if (type && strcmp (type, "room-info") == 0) {
            info_seen = true;
            info_early = acked < BURST || resend_seq < 0;
        }
        json_decref (frame);
    }
    CHECK (acked == BURST);
    CHECK (error_seen);
    CHECK (info_seen && !info_early);
    CHECK (resend_seq == seq [5]);

    //  Every member has them in that order, each once (the resend's first
    //  copy only): the sender... (Most came with the acks. The resend of a
    //  message already acked is numbered again until stored says it holds
    //  it; if a later send was numbered meanwhile, that seq is a hole, and
    //  the members' gateway reads the gap from stored before it gives what
    //  came after: those may come after the room-info.)
    for (int frames = 0; frames < 2 * BURST && own < BURST; frames++) {
        json_t *message = ws_expect (wes, "new-message", API_WAIT_MS);
        if (!message)
            break;
        snprintf (own_ids [own++], sizeof own_ids [0], "%s", j_str (message, "id")? j_str (message, "id"): "");
        json_decref (message);
    }
    CHECK (own == BURST);
    for (int i = 0; i < own && i < BURST; i++)
        CHECK (strcmp (own_ids [i], id [i]) == 0);
    CHECK (ws_quiet (wes, "new-message", API_QUIET_MS));
    //  ...and the other member.
    int next = 0;
    for (int frames = 0; frames < 2 * BURST && next < BURST; frames++) {
        json_t *message = ws_expect (xia, "new-message", API_WAIT_MS);
        if (!message)
            break;
        CHECK (j_is (message, "id", id [next]));
        CHECK (j_num (message, "seq") == seq [next]);
        next++;
        json_decref (message);
    }
    CHECK (next == BURST);
    CHECK (ws_quiet (xia, "new-message", API_QUIET_MS));
    #undef BURST
    ws_close (&wes);
    ws_close (&xia);
}

int
main (void)
{
    harness_init ("api_ws");
    const char *env [] = { "TYPING_THROTTLE_MS=60000", NULL };
    REQUIRE (harness_system_start (&s_system, 2, false, env) == 0);
    s_port = s_system.http_port;

    s_test_conversation ();
    s_test_history ();
    s_test_leaving ();
    s_test_closing ();
    s_test_http_participants ();
    s_test_burst ();

    return harness_finish ();
}
