/*  =========================================================================
    test_app - a client that behaves as the original React Native app does,
    against the real system (stored, gateway, 2 shards) with the gateway's
    WEBSOCKET_ENDPOINT at an API Gateway stage (wss://chat.example.com/prod)

    The app keeps one list of lines per screen. It creates a room over
    HTTP (POST /create-room), joins it over HTTP (POST /join-room), then
    opens its WebSocket on the stage path and sends join-room; it shows a
    line for every user-joined, user-left and room-closed it gets; when it
    sends, it shows its message at once (an optimistic copy, under the
    messageId it made) and merges every new-message and message-history
    entry into the list by id: a message whose id is there already
    replaces it, it is not shown again. This test asserts exactly the
    lines two people would see: each message once, one join line with a
    name per arrival (none for the HTTP join), one leave line, the room
    closed at the end, and a send refused without a requestId marked
    "not sent" because the error frame names its messageId and roomId.

    Also: WebSockets on the stage path as well as / and /ws, 404 on other
    paths, the HTTP routes unchanged, /healthz advertising the endpoint as
    configured, and a WEBSOCKET_ENDPOINT that is no ws:// or wss:// URL
    stopping the gateway with exit status 2.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define ENDPOINT    "wss://chat.example.com/prod"
#define LINES_MAX   64

static harness_system_t s_system;
static int s_port;

//  ---------------------------------------------------------------------------
//  The app

//  One line of the chat list, as the app keeps it.
typedef struct {
    char id [128];                      //  a message's id; "" for the other lines
    char text [512];                    //  as shown: "Ana: hello", "Ben left the chat"
    bool pending;                       //  an optimistic copy the server has not sent back
} line_t;

typedef struct {
    const char *user;
    const char *name;
    ws_client_t *socket;
    line_t lines [LINES_MAX];
    size_t count;
    size_t histories;                   //  message-history frames received
    json_t *error;                      //  the last error frame (for its fields)
} app_t;

static line_t *
s_app_line (app_t *self, const char *id, const char *text, bool pending)
{
    CHECK (self->count < LINES_MAX);
    if (self->count == LINES_MAX)
        return NULL;
    line_t *line = &self->lines [self->count++];
    snprintf (line->id, sizeof line->id, "%s", id? id: "");
    snprintf (line->text, sizeof line->text, "%s", text);
    line->pending = pending;
    return line;
}

static line_t *
s_app_find (app_t *self, const char *id)
{
    for (size_t i = 0; id && *id && i < self->count; i++)
        if (strcmp (self->lines [i].id, id) == 0)
            return &self->lines [i];
    return NULL;
}

//  A message (new-message, or an entry of message-history) into the list
//  by id, as the app merges them.
static void
s_app_merge (app_t *self, json_t *message)
{
    const char *id = j_str (message, "id");
    char text [512];
    snprintf (text, sizeof text, "%s: %s", j_str (message, "userName")? j_str (message, "userName"): "",
              j_str (message, "text")? j_str (message, "text"): "");
    line_t *line = s_app_find (self, id);
    if (line) {
        snprintf (line->text, sizeof line->text, "%s", text);
        line->pending = false;
    }
    else
        s_app_line (self, id, text, false);
}

//  One frame from the server, as the app handles it.
static void
s_app_apply (app_t *self, json_t *frame)
{
    const char *type = j_str (frame, "type")? j_str (frame, "type"): "";
    const char *name = j_str (frame, "userName")? j_str (frame, "userName"): "";
    char text [512];
    if (strcmp (type, "user-joined") == 0) {
        snprintf (text, sizeof text, "%s joined the chat", name);
        s_app_line (self, NULL, text, false);
    }
    else
    if (strcmp (type, "user-left") == 0) {
        snprintf (text, sizeof text, "%s left the chat", name);
        s_app_line (self, NULL, text, false);
    }
    else
    if (strcmp (type, "new-message") == 0)
        s_app_merge (self, frame);
    else
    if (strcmp (type, "message-history") == 0) {
        size_t index;
        json_t *message;
        json_array_foreach (j_get (frame, "messages"), index, message)
            s_app_merge (self, message);
        self->histories++;
    }
    else
    if (strcmp (type, "room-closed") == 0)
        s_app_line (self, NULL, "the room was closed", false);
    else
    if (strcmp (type, "error") == 0) {
        //  The app marks the message the error names; any other error it
        //  shows as it is.
        json_decref (self->error);
        self->error = json_incref (frame);
        line_t *line = s_app_find (self, j_str (frame, "messageId"));
        if (line && line->pending) {
            char failed [sizeof line->text];
            snprintf (failed, sizeof failed, "%.490s (not sent)", line->text);
            snprintf (line->text, sizeof line->text, "%s", failed);
            line->pending = false;
        }
        else {
            snprintf (text, sizeof text, "error: %s", j_str (frame, "error")? j_str (frame, "error"): "");
            s_app_line (self, NULL, text, false);
        }
    }
    else
    if (strcmp (type, "ack") != 0 && strcmp (type, "user-typing") != 0
    &&  strcmp (type, "pong") != 0) {
        snprintf (text, sizeof text, "(a %s frame)", type);
        s_app_line (self, NULL, text, false);
    }
}

//  Whether the list shows text on a line the server has confirmed.
static bool
s_app_shows (app_t *self, const char *text)
{
    for (size_t i = 0; i < self->count; i++)
        if (!self->lines [i].pending && strcmp (self->lines [i].text, text) == 0)
            return true;
    return false;
}

//  Handle frames until the list shows text (API_WAIT_MS at most).
static bool
s_app_wait (app_t *self, const char *text)
{
    int64_t deadline = clock_mono_ms () + API_WAIT_MS;
    while (!s_app_shows (self, text)) {
        int64_t left = deadline - clock_mono_ms ();
        json_t *frame = left > 0? ws_next (self->socket, (int) left): NULL;
        if (!frame) {
            fprintf (stderr, "  %s's list never showed \"%s\"\n", self->user, text);
            return false;
        }
        s_app_apply (self, frame);
        json_decref (frame);
    }
    return true;
}

//  Handle whatever else comes until the socket has been quiet API_QUIET_MS.
static void
s_app_settle (app_t *self)
{
    json_t *frame;
    for (int i = 0; i < 1000 && (frame = ws_next (self->socket, API_QUIET_MS)); i++) {
        s_app_apply (self, frame);
        json_decref (frame);
    }
}

//  The app's screen opens: the socket on the stage path, and join-room
//  with the profile; the list shows the user's arrival and the history.
static void
s_app_enter (app_t *self, const char *room)
{
    char path [256];
    snprintf (path, sizeof path, "/prod?userId=%s", self->user);
    self->socket = ws_open (s_port, path);
    REQUIRE (self->socket);
    size_t histories = self->histories;
    ws_send (self->socket, "{s:s, s:s, s:s, s:s, s:s, s:s}", "action", "join-room",
             "roomId", room, "userId", self->user, "userName", self->name,
             "userIcon", "car", "userColor", "#2196f3");
    //  Its own user-joined, then its history (the lists say the order).
    int64_t deadline = clock_mono_ms () + API_WAIT_MS;
    while (self->histories == histories && clock_mono_ms () < deadline) {
        json_t *frame = ws_next (self->socket, API_WAIT_MS);
        if (!frame)
            break;
        s_app_apply (self, frame);
        json_decref (frame);
    }
    CHECK (self->histories == histories + 1);
}

//  The user sends text: shown at once, under the app's own id.
static void
s_app_say (app_t *self, const char *room, const char *message_id, const char *text)
{
    char shown [512];
    snprintf (shown, sizeof shown, "%s: %s", self->name, text);
    s_app_line (self, message_id, shown, true);
    ws_send (self->socket, "{s:s, s:s, s:s, s:s, s:s, s:s}", "action", "send-message",
             "roomId", room, "message", text, "messageId", message_id,
             "userId", self->user, "userName", self->name);
}

//  CHECK that the list is exactly expected (NULL-terminated), and that no
//  line waits for the server; print both when not.
static void
s_app_expect (app_t *self, const char *const *expected)
{
    size_t count = 0;
    while (expected [count])
        count++;
    bool same = count == self->count;
    for (size_t i = 0; same && i < count; i++)
        same = strcmp (expected [i], self->lines [i].text) == 0 && !self->lines [i].pending;
    if (!same) {
        fprintf (stderr, "  %s's list is not as expected:\n", self->user);
        for (size_t i = 0; i < self->count || i < count; i++)
            fprintf (stderr, "    %-40s | %s%s\n", i < count? expected [i]: "-",
                     i < self->count? self->lines [i].text: "-",
                     i < self->count && self->lines [i].pending? " (pending)": "");
    }
    CHECK (same);
}

//  ---------------------------------------------------------------------------
//  Two users, as the app has them

static void
s_test_app (void)
{
    printf ("two users of the app: create and join over HTTP, then over WebSocket on /prod; "
            "talk, come back, leave, close\n");
    app_t ana = { .user = "ana", .name = "Ana" }, ben = { .user = "ben", .name = "Ben" };

    //  Ana creates the room where she is (the app sends numbers) and joins it.
    json_t *answer = NULL;
    CHECK (http_callf (s_port, "POST", "/create-room", &answer, "{s:s, s:f, s:f, s:s, s:s}",
                       "userId", "ana", "latitude", 48.137, "longitude", 11.575,
                       "roadName", "A9", "roomType", "public") == 200);
    char room [128] = "";
    snprintf (room, sizeof room, "%s", j_str (answer, "roomId")? j_str (answer, "roomId"): "");
    json_decref (answer);
    REQUIRE (*room);
    CHECK (http_callf (s_port, "POST", "/join-room", NULL, "{s:s, s:s}",
                       "roomId", room, "userId", "ana") == 200);
    s_app_enter (&ana, room);
    s_app_say (&ana, room, "ana-1", "anyone near the A9?");
    CHECK (s_app_wait (&ana, "Ana: anyone near the A9?"));

    //  Ben joins over HTTP (Ana's list shows nothing of it), then opens the
    //  room: both lists show his arrival once, his with Ana's first message.
    CHECK (http_callf (s_port, "POST", "/join-room", NULL, "{s:s, s:s}",
                       "roomId", room, "userId", "ben") == 200);
    CHECK (ws_quiet (ana.socket, "user-joined", API_QUIET_MS));
    s_app_enter (&ben, room);
    CHECK (s_app_shows (&ben, "Ana: anyone near the A9?"));
    CHECK (s_app_wait (&ana, "Ben joined the chat"));

    //  Two messages each, sent without waiting; every list merges by id.
    s_app_say (&ana, room, "ana-2", "hello from the A9");
    s_app_say (&ana, room, "ana-3", "traffic is stuck");
    CHECK (s_app_wait (&ana, "Ana: traffic is stuck"));
    CHECK (s_app_wait (&ben, "Ana: traffic is stuck"));
    s_app_say (&ben, room, "ben-1", "same here");
    s_app_say (&ben, room, "ben-2", "see you at the exit");
    CHECK (s_app_wait (&ben, "Ben: see you at the exit"));
    CHECK (s_app_wait (&ana, "Ben: see you at the exit"));

    //  Ana's app comes back from the background: a new socket joins (an
    //  arrival, shown once to each), its history holds her own messages,
    //  merged by id, and the old socket goes (she is still online).
    ws_client_t *old = ana.socket;
    s_app_enter (&ana, room);
    ws_close (&old);
    CHECK (s_app_wait (&ben, "Ana joined the chat"));

    //  Ben leaves; then, from a stale screen, sends to the room he is no
    //  longer in, with no requestId: the error names the message.
    ws_send (ben.socket, "{s:s, s:s}", "action", "leave-room", "roomId", room);
    CHECK (s_app_wait (&ana, "Ben left the chat"));
    s_app_say (&ben, room, "ben-3", "still there?");
    CHECK (s_app_wait (&ben, "Ben: still there? (not sent)"));
    CHECK (j_is (ben.error, "type", "error"));
    CHECK (j_is (ben.error, "action", "send-message"));
    CHECK (j_num (ben.error, "status") == 403);
    CHECK (j_is (ben.error, "roomId", room));
    CHECK (j_is (ben.error, "messageId", "ben-3"));
    CHECK (j_get (ben.error, "requestId") == NULL);

    //  Ana closes the room.
    CHECK (http_callf (s_port, "POST", "/close-room", NULL, "{s:s, s:s}",
                       "roomId", room, "userId", "ana") == 200);
    CHECK (s_app_wait (&ana, "the room was closed"));
    s_app_settle (&ana);
    s_app_settle (&ben);

    const char *ana_sees [] = {
        "Ana joined the chat",
        "Ana: anyone near the A9?",
        "Ben joined the chat",
        "Ana: hello from the A9",
        "Ana: traffic is stuck",
        "Ben: same here",
        "Ben: see you at the exit",
        "Ana joined the chat",
        "Ben left the chat",
        "the room was closed",
        NULL };
    const char *ben_sees [] = {
        "Ben joined the chat",
        "Ana: anyone near the A9?",
        "Ana: hello from the A9",
        "Ana: traffic is stuck",
        "Ben: same here",
        "Ben: see you at the exit",
        "Ana joined the chat",
        "Ben: still there? (not sent)",
        NULL };
    s_app_expect (&ana, ana_sees);
    s_app_expect (&ben, ben_sees);

    //  What the app would load as the room's history: the same ids.
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    json_t *messages = NULL;
    CHECK (http_call (s_port, "GET", path, NULL, &messages) == 200);
    const char *ids [] = { "ana-1", "ana-2", "ana-3", "ben-1", "ben-2" };
    CHECK (json_array_size (messages) == 5);
    for (size_t i = 0; i < 5 && i < json_array_size (messages); i++)
        CHECK (j_is (json_array_get (messages, i), "id", ids [i]));
    json_decref (messages);

    json_decref (ana.error);
    json_decref (ben.error);
    ws_close (&ana.socket);
    ws_close (&ben.socket);
}

//  ---------------------------------------------------------------------------
//  The stage path, and WEBSOCKET_ENDPOINT

static void
s_test_stage_path (void)
{
    printf ("WebSockets on /prod (WEBSOCKET_ENDPOINT's path), / and /ws; 404 elsewhere; "
            "HTTP as before\n");
    const struct { const char *path; int status; } upgrades [] = {
        { "/prod?userId=zoe", 101 }, { "/ws?userId=zoe", 101 }, { "/?userId=zoe", 101 },
        { "/other?userId=zoe", 404 }, { "/prod/x?userId=zoe", 404 }, { "/production?userId=zoe", 404 },
        { "/beta?userId=zoe", 404 }, { "/prod", 400 } };
    for (size_t i = 0; i < sizeof upgrades / sizeof upgrades [0]; i++) {
        int status = ws_handshake_status (s_port, upgrades [i].path);
        if (status != upgrades [i].status)
            fprintf (stderr, "  upgrade on %s: expected %d, got %d\n", upgrades [i].path,
                     upgrades [i].status, status);
        CHECK (status == upgrades [i].status);
    }
    //  A socket on /prod is a socket like any: ping, pong.
    ws_client_t *zoe = ws_open (s_port, "/prod?userId=zoe");
    CHECK (zoe != NULL);
    if (zoe) {
        ws_send (zoe, "{s:s, s:s}", "action", "ping", "requestId", "p-1");
        json_t *pong = ws_expect (zoe, "pong", API_WAIT_MS);
        CHECK (j_is (pong, "requestId", "p-1"));
        json_decref (pong);
    }
    ws_close (&zoe);

    //  HTTP: the routes as they were; /prod is no route; /healthz advertises
    //  the endpoint as configured.
    json_t *health = NULL;
    CHECK (http_call (s_port, "GET", "/healthz", NULL, &health) == 200);
    CHECK (j_is (health, "websocketEndpoint", ENDPOINT));
    json_decref (health);
    CHECK (http_call (s_port, "GET", "/prod", NULL, NULL) == 404);
    CHECK (http_call (s_port, "GET", "/rooms?latitude=1&longitude=1", NULL, NULL) == 200);

    printf ("a WEBSOCKET_ENDPOINT that is no ws:// or wss:// URL (or auto) exits 2\n");
    const char *bad [] = { "WEBSOCKET_ENDPOINT=https://chat.example.com/prod",
                           "WEBSOCKET_ENDPOINT=chat.example.com/prod",
                           "WEBSOCKET_ENDPOINT=wss:///prod", "WEBSOCKET_ENDPOINT=",
                           "WEBSOCKET_ENDPOINT=wss://chat.example.com/pr od",
                           "WEBSOCKET_ENDPOINT=Auto" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        char output [1024] = "";
        const char *env [] = { bad [i], NULL };
        int status = harness_run ("gateway", env, NULL, output, sizeof output);
        if (!CHECK (status == 2 && strstr (output, "WEBSOCKET_ENDPOINT")))
            fprintf (stderr, "  %s: status %d, said: %s\n", bad [i], status, output);
    }
}

int
main (void)
{
    harness_init ("app");
    const char *env [] = { "WEBSOCKET_ENDPOINT=" ENDPOINT, NULL };
    REQUIRE (harness_system_start (&s_system, 2, false, env) == 0);
    s_port = s_system.http_port;

    s_test_app ();
    s_test_stage_path ();

    return harness_finish ();
}
