/*  =========================================================================
    test_api_errors - every error case of DESIGN.md's tables, over HTTP and
    over WebSocket, against the real system (stored, gateway, 1 shard)

    HTTP: missing and malformed fields, out-of-range coordinates, bad
    numeric strings, bodies that are no JSON or no object, bodies too large
    (413), wrong methods (405), unknown paths and rooms (404). WebSocket: the
    handshake without userId (400), frames that are no JSON or no object,
    no or unknown action, missing fields, over-long text (counted in
    characters, not bytes), speaking and typing outside one's room (403),
    unknown rooms (404), each error naming the refused frame's roomId and
    messageId as given, ping -> pong, register-user ignored; after each
    error the socket is still open and still works.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"

static harness_system_t s_system;
static int s_port;

//  A request whose answer must be status (http_call checks the error body).
static bool
s_refused (const char *method, const char *path, const char *body, int status)
{
    int got = http_call (s_port, method, path, body, NULL);
    if (got != status)
        fprintf (stderr, "  %s %s %s: expected %d, got %d\n", method, path,
                 body? body: "", status, got);
    return got == status;
}

static void
s_test_http_bodies (void)
{
    printf ("HTTP: missing, malformed and out-of-range fields; bodies that are no JSON\n");
    //  Create: each required field missing, then malformed, then out of range.
    CHECK (s_refused ("POST", "/rooms", "{\"latitude\":1,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":1}", 400));
    CHECK (s_refused ("POST", "/create-room", "{\"latitude\":1,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"\",\"latitude\":1,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":42,\"latitude\":1,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":null,\"latitude\":1,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":\"abc\",\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":\"1.5abc\",\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":\"\",\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":true,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":null,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":[1],\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":1,\"longitude\":{}}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":90.5,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":-91,\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":1,\"longitude\":180.01}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":1,\"longitude\":-181}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":\"95\",\"longitude\":1}", 400));
    CHECK (s_refused ("POST", "/create-room", "{\"userId\":\"a\",\"latitude\":1,\"longitude\":\"-200\"}", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",\"latitude\":1e400,\"longitude\":1}", 400));
    //  Optional fields, when present, must make sense.
    CHECK (s_refused ("POST", "/rooms",
                      "{\"userId\":\"a\",\"latitude\":1,\"longitude\":1,\"roomType\":\"secret\"}", 400));
    CHECK (s_refused ("POST", "/rooms",
                      "{\"userId\":\"a\",\"latitude\":1,\"longitude\":1,\"maxParticipants\":-3}", 400));
    CHECK (s_refused ("POST", "/rooms",
                      "{\"userId\":\"a\",\"latitude\":1,\"longitude\":1,\"maxParticipants\":\"many\"}", 400));
    CHECK (s_refused ("POST", "/rooms",
                      "{\"userId\":\"a\",\"latitude\":1,\"longitude\":1,\"roadName\":7}", 400));
    //  An id longer than any id nearchat keeps (64 bytes).
    char body [512];
    char long_id [80];
    memset (long_id, 'u', 70);
    long_id [70] = 0;
    snprintf (body, sizeof body, "{\"userId\":\"%s\",\"latitude\":1,\"longitude\":1}", long_id);
    CHECK (s_refused ("POST", "/rooms", body, 400));

    //  Bodies that are no JSON object.
    CHECK (s_refused ("POST", "/rooms", "not json", 400));
    CHECK (s_refused ("POST", "/rooms", "{\"userId\":\"a\",", 400));
    CHECK (s_refused ("POST", "/rooms", "[1,2]", 400));
    CHECK (s_refused ("POST", "/rooms", "\"a string\"", 400));
    CHECK (s_refused ("POST", "/rooms", "", 400));
    CHECK (s_refused ("POST", "/rooms", NULL, 400));
    CHECK (s_refused ("POST", "/rooms/join", "nope", 400));
    CHECK (s_refused ("POST", "/rooms/close", "{]", 400));

    //  Join and close: each field missing or no string.
    CHECK (s_refused ("POST", "/rooms/join", "{\"userId\":\"a\"}", 400));
    CHECK (s_refused ("POST", "/rooms/join", "{\"roomId\":\"r\"}", 400));
    CHECK (s_refused ("POST", "/join-room", "{\"roomId\":5,\"userId\":\"a\"}", 400));
    CHECK (s_refused ("POST", "/rooms/join", "{}", 400));
    CHECK (s_refused ("POST", "/rooms/close", "{\"userId\":\"a\"}", 400));
    CHECK (s_refused ("POST", "/rooms/close", "{\"roomId\":\"r\"}", 400));
    CHECK (s_refused ("POST", "/close-room", "{\"roomId\":\"r\",\"userId\":[]}", 400));

    //  Search: coordinates required, numeric, in range; a known type.
    CHECK (s_refused ("GET", "/rooms", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?latitude=1", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?longitude=1", NULL, 400));
    CHECK (s_refused ("GET", "/search-rooms?latitude=abc&longitude=1", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?latitude=1&longitude=", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?latitude=91&longitude=1", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?latitude=1&longitude=-180.5", NULL, 400));
    CHECK (s_refused ("GET", "/rooms?latitude=1&longitude=1&roomType=secret", NULL, 400));
    CHECK (http_call (s_port, "GET", "/rooms?latitude=1&longitude=1&roomType=public", NULL, NULL) == 200);

    //  Messages: a limit that is no number.
    const char *room = api_create_room (s_port, "errors", 1.0, 1.0, NULL, 0);
    REQUIRE (room);
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages?limit=abc", room);
    CHECK (s_refused ("GET", path, NULL, 400));
    snprintf (path, sizeof path, "/rooms/%s/messages?before=xyz", room);
    CHECK (s_refused ("GET", path, NULL, 400));
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    CHECK (http_call (s_port, "GET", path, NULL, NULL) == 200);
}

static void
s_test_http_routes (void)
{
    printf ("HTTP: bodies too large, wrong methods, unknown paths and rooms\n");
    //  2 MiB of JSON to a route that takes a few hundred bytes.
    size_t size = 2 * 1024 * 1024;
    char *big = malloc (size + 64);
    REQUIRE (big);
    int used = snprintf (big, 64, "{\"userId\":\"a\",\"latitude\":1,\"longitude\":1,\"roadName\":\"");
    memset (big + used, 'x', size - (size_t) used - 2);
    memcpy (big + size - 2, "\"}", 3);
    CHECK (s_refused ("POST", "/rooms", big, 413));
    CHECK (s_refused ("POST", "/join-room", big, 413));
    free (big);
    //  Still serving.
    CHECK (http_call (s_port, "GET", "/healthz", NULL, NULL) == 200);

    CHECK (s_refused ("GET", "/create-room", NULL, 405));
    CHECK (s_refused ("GET", "/join-room", NULL, 405));
    CHECK (s_refused ("GET", "/close-room", NULL, 405));
    CHECK (s_refused ("POST", "/search-rooms", "{}", 405));
    CHECK (s_refused ("PUT", "/rooms", "{}", 405));
    CHECK (s_refused ("DELETE", "/rooms", NULL, 405));
    CHECK (s_refused ("PATCH", "/rooms/join", "{}", 405));
    CHECK (s_refused ("DELETE", "/rooms/close", NULL, 405));
    CHECK (s_refused ("POST", "/healthz", "{}", 405));
    CHECK (s_refused ("POST", "/metrics", "{}", 405));

    CHECK (s_refused ("GET", "/nope", NULL, 404));
    CHECK (s_refused ("POST", "/nope", "{}", 404));
    CHECK (s_refused ("GET", "/rooms/a/b/c", NULL, 404));
    CHECK (s_refused ("GET", "/rooms/no-such-room", NULL, 404));
    CHECK (s_refused ("GET", "/rooms/no-such-room/messages", NULL, 404));
    CHECK (s_refused ("POST", "/rooms/join", "{\"roomId\":\"no-such-room\",\"userId\":\"a\"}", 404));
    CHECK (s_refused ("POST", "/rooms/close", "{\"roomId\":\"no-such-room\",\"userId\":\"a\"}", 404));
}

//  The next frame must be an error for action with status; requestId echoed.
static void
s_expect_error (ws_client_t *client, const char *action, int status, const char *request_id)
{
    json_t *error = ws_expect (client, "error", API_WAIT_MS);
    CHECK (error != NULL);
    if (!error)
        return;
    if (j_num (error, "status") != status)
        fprintf (stderr, "  expected an error %d for %s, got %.0f: %s\n", status,
                 action? action: "(no action)", j_num (error, "status"), j_str (error, "error"));
    CHECK (j_num (error, "status") == status);
    CHECK (json_is_integer (j_get (error, "status")));
    CHECK (j_str (error, "error") && *j_str (error, "error"));
    if (action)
        CHECK (j_is (error, "action", action));
    if (request_id)
        CHECK (j_is (error, "requestId", request_id));
    json_decref (error);
}

//  The next frame is an error for action with status that names the refused
//  frame's roomId and messageId as it gave them (room_id NULL: none given;
//  a number when the client sent one), and no requestId, as none was sent.
static void
s_expect_ids (ws_client_t *client, const char *action, int status, json_t *room_id,
              json_t *message_id)
{
    json_t *error = ws_expect (client, "error", API_WAIT_MS);
    CHECK (error != NULL);
    if (error) {
        CHECK (j_num (error, "status") == status);
        CHECK (j_is (error, "action", action));
        CHECK (j_get (error, "requestId") == NULL);
        json_t *room_got = j_get (error, "roomId"), *message_got = j_get (error, "messageId");
        bool room_ok = room_id? json_equal (room_got, room_id): !room_got;
        bool message_ok = message_id? json_equal (message_got, message_id): !message_got;
        CHECK (room_ok);
        CHECK (message_ok);
        if (!room_ok || !message_ok) {
            char *text = json_dumps (error, JSON_COMPACT);
            fprintf (stderr, "  the error does not name the frame's ids: %s\n", text);
            free (text);
        }
    }
    json_decref (error);
    json_decref (room_id);
    json_decref (message_id);
}

//  The socket still answers: ping -> pong, with the requestId.
static void
s_still_open (ws_client_t *client)
{
    static int count;
    char id [32];
    snprintf (id, sizeof id, "ping-%d", ++count);
    CHECK (ws_send (client, "{s:s, s:s}", "action", "ping", "requestId", id) == 0);
    json_t *pong = ws_expect (client, "pong", API_WAIT_MS);
    CHECK (pong != NULL);
    CHECK (!pong || !j_get (pong, "requestId") || j_is (pong, "requestId", id));
    json_decref (pong);
}

static void
s_test_ws (void)
{
    printf ("WebSocket: the handshake, bad frames, bad actions and fields, not allowed\n");
    const struct { const char *path; int status; } handshakes [] = {
        { "/ws", 400 }, { "/", 400 }, { "/ws?userName=Nobody", 400 }, { "/ws?userId=", 400 },
        { "/ws?userId=zed", 101 }, { "/?userId=zed", 101 } };
    for (size_t i = 0; i < sizeof handshakes / sizeof handshakes [0]; i++) {
        int status = ws_handshake_status (s_port, handshakes [i].path);
        if (status != handshakes [i].status)
            fprintf (stderr, "  upgrade on %s: expected %d, got %d\n", handshakes [i].path,
                     handshakes [i].status, status);
        CHECK (status == handshakes [i].status);
    }
    ws_client_t *root = ws_open (s_port, "/?userId=zed");
    CHECK (root != NULL);
    if (root)
        s_still_open (root);
    ws_close (&root);

    ws_client_t *zed = api_connect (s_port, "zed", "Zed");
    REQUIRE (zed);
    s_still_open (zed);

    //  Frames that are no JSON object, or have no known action.
    const char *bad [] = { "not json", "{\"action\":", "[1,2,3]", "\"join-room\"", "42", "null", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        ws_send_raw (zed, bad [i], strlen (bad [i]));
        s_expect_error (zed, NULL, 400, NULL);
    }
    ws_send (zed, "{s:s}", "requestId", "q-1");
    s_expect_error (zed, NULL, 400, "q-1");
    ws_send (zed, "{s:i, s:s}", "action", 5, "requestId", "q-2");
    s_expect_error (zed, NULL, 400, "q-2");
    ws_send (zed, "{s:s, s:s}", "action", "fly-away", "requestId", "q-3");
    s_expect_error (zed, "fly-away", 400, "q-3");
    s_still_open (zed);

    //  Missing or malformed fields of each action.
    ws_send (zed, "{s:s, s:s}", "action", "join-room", "requestId", "f-1");
    s_expect_error (zed, "join-room", 400, "f-1");
    ws_send (zed, "{s:s, s:i, s:s}", "action", "join-room", "roomId", 12, "requestId", "f-2");
    s_expect_error (zed, "join-room", 400, "f-2");
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "join-room", "roomId", "r",
             "sinceSeq", "soon", "requestId", "f-3");
    s_expect_error (zed, "join-room", 400, "f-3");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "send-message", "message", "hi", "requestId", "f-4");
    s_expect_error (zed, "send-message", 400, "f-4");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "user-typing", "userName", "Zed", "requestId", "f-5");
    s_expect_error (zed, "user-typing", 400, "f-5");
    ws_send (zed, "{s:s, s:s}", "action", "room-info", "requestId", "f-6");
    s_expect_error (zed, "room-info", 400, "f-6");
    ws_send (zed, "{s:s, s:s}", "action", "close-room", "requestId", "f-7");
    s_expect_error (zed, "close-room", 400, "f-7");
    ws_send (zed, "{s:s, s:s}", "action", "leave-room", "requestId", "f-8");
    s_expect_error (zed, "leave-room", 400, "f-8");
    s_still_open (zed);

    //  Unknown rooms.
    ws_send (zed, "{s:s, s:s, s:s}", "action", "join-room", "roomId", "no-such-room", "requestId", "u-1");
    s_expect_error (zed, "join-room", 404, "u-1");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "room-info", "roomId", "no-such-room", "requestId", "u-2");
    s_expect_error (zed, "room-info", 404, "u-2");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "close-room", "roomId", "no-such-room", "requestId", "u-3");
    s_expect_error (zed, "close-room", 404, "u-3");

    //  A room zed is not in: he may not speak or type in it.
    const char *room = api_create_room (s_port, "yan", 2.0, 2.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *yan = api_connect (s_port, "yan", "Yan");
    json_decref (api_join (yan, room, "yan", -1));
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "let me in", "requestId", "n-1");
    s_expect_error (zed, "send-message", 403, "n-1");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room, "requestId", "n-2");
    s_expect_error (zed, "user-typing", 403, "n-2");
    CHECK (ws_quiet (yan, "new-message", API_QUIET_MS));
    CHECK (ws_quiet (yan, "user-typing", 0));

    //  Without a requestId, each refusal names the frame's roomId and
    //  messageId: refused by the gateway's checks, by the gateway (not in
    //  the room), by roomd (no such room); ids echoed as given, numbers too.
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "", "messageId", "e-1");
    s_expect_ids (zed, "send-message", 400, json_string (room), json_string ("e-1"));
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "let me in", "messageId", "e-2");
    s_expect_ids (zed, "send-message", 403, json_string (room), json_string ("e-2"));
    ws_send (zed, "{s:s, s:s, s:s, s:i}", "action", "send-message", "roomId", room,
             "message", "let me in", "messageId", 42);
    s_expect_ids (zed, "send-message", 403, json_string (room), json_integer (42));
    ws_send (zed, "{s:s, s:s, s:s, s:b}", "action", "send-message", "roomId", room,
             "message", "let me in", "messageId", 1);
    s_expect_ids (zed, "send-message", 400, json_string (room), NULL);
    ws_send (zed, "{s:s, s:s}", "action", "join-room", "roomId", "no-such-room");
    s_expect_ids (zed, "join-room", 404, json_string ("no-such-room"), NULL);
    ws_send (zed, "{s:s, s:i}", "action", "join-room", "roomId", 12);
    s_expect_ids (zed, "join-room", 400, json_integer (12), NULL);
    ws_send (zed, "{s:s, s:s}", "action", "user-typing", "roomId", room);
    s_expect_ids (zed, "user-typing", 403, json_string (room), NULL);
    CHECK (ws_quiet (yan, "new-message", 0));

    //  In the room: the text must be 1..2000 characters (not bytes), a string.
    json_decref (api_join (zed, room, "zed", -1));
    ws_discard (yan);
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "", "requestId", "t-1");
    s_expect_error (zed, "send-message", 400, "t-1");
    ws_send (zed, "{s:s, s:s, s:i, s:s}", "action", "send-message", "roomId", room,
             "message", 42, "requestId", "t-2");
    s_expect_error (zed, "send-message", 400, "t-2");
    ws_send (zed, "{s:s, s:s, s:s}", "action", "send-message", "roomId", room, "requestId", "t-3");
    s_expect_error (zed, "send-message", 400, "t-3");
    char *text = malloc (2 * 2001 + 1);
    REQUIRE (text);
    memset (text, 'x', 2001);
    text [2001] = 0;
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", text, "requestId", "t-4");
    s_expect_error (zed, "send-message", 400, "t-4");
    //  2000 two-byte characters (4000 bytes) are 2000 characters: accepted.
    for (int i = 0; i < 2000; i++)
        memcpy (text + 2 * i, "\xc3\xa9", 2);
    text [4000] = 0;
    CHECK (api_say (zed, room, "long-ok", text) > 0);
    CHECK (api_heard (yan, text) > 0);
    //  2001 of them are too many.
    memcpy (text + 4000, "\xc3\xa9", 3);
    ws_send (zed, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", text, "requestId", "t-5");
    s_expect_error (zed, "send-message", 400, "t-5");
    free (text);
    CHECK (ws_quiet (yan, "new-message", API_QUIET_MS));
    //  A frame far larger than any message: an error, or the socket closed
    //  with a reason; either way the gateway goes on.
    size_t size = 256 * 1024;
    char *huge = malloc (size + 128);
    REQUIRE (huge);
    int used = snprintf (huge, 128, "{\"action\":\"send-message\",\"roomId\":\"%s\",\"message\":\"", room);
    memset (huge + used, 'y', size);
    memcpy (huge + used + size, "\"}", 3);
    ws_send_raw (zed, huge, strlen (huge));
    free (huge);
    json_t *error = ws_expect (zed, "error", API_WAIT_MS);
    CHECK (error || ws_is_closed (zed, 0));
    CHECK (!error || (j_num (error, "status") == 400 || j_num (error, "status") == 413));
    json_decref (error);
    if (ws_is_closed (zed, 0)) {
        ws_close (&zed);
        zed = api_connect (s_port, "zed", "Zed");
        json_decref (api_join (zed, room, "zed", -1));
    }
    CHECK (ws_quiet (yan, "new-message", 0));

    //  register-user is accepted and ignored; ping answers pong.
    ws_send (zed, "{s:s, s:s, s:s}", "action", "register-user", "userId", "zed", "requestId", "reg-1");
    CHECK (ws_quiet (zed, "error", API_QUIET_MS));
    s_still_open (zed);
    //  After all of it, zed still talks.
    CHECK (api_say (zed, room, "zed-last", "still here") > 0);
    CHECK (api_heard (yan, "still here") > 0);

    ws_close (&zed);
    ws_close (&yan);
}

int
main (void)
{
    harness_init ("api_errors");
    REQUIRE (harness_system_start (&s_system, 1, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_http_bodies ();
    s_test_http_routes ();
    s_test_ws ();

    return harness_finish ();
}
