/*  =========================================================================
    test_api_outage - a backend daemon unreachable: 503, and service again
    when it is back, against the real system (stored, gateway, 1 shard)
    with REQUEST_TIMEOUT_MS=1000

    stored stopped: /healthz says 503 with stored "down", the HTTP routes
    that need stored answer 503 with {"error"}, a send-message gets an error
    frame with status 503 (naming the send's roomId and messageId) and the
    socket stays open; stored started again:
    /healthz is 200, and the same client resends the same messageId and
    carries on, with the room and its history intact. The only shard
    stopped: joining answers 503; started again, the room is served.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;
static int s_port;

//  Poll /healthz (10 s at most) until it answers status with stored as
//  stored_state (NULL: any) and shards live shards (-1: any).
static bool
s_health_becomes (int status, const char *stored_state, int shards)
{
    int64_t deadline = clock_mono_ms () + 10000;
    char last [512] = "";
    while (clock_mono_ms () < deadline) {
        http_response_t response;
        int got = http_request (s_port, "GET", "/healthz", NULL, 0, &response);
        json_t *health = json_loads (response.body, 0, NULL);
        bool ok = got == status
               && (!stored_state || (j_str (health, "stored") && !strcmp (j_str (health, "stored"), stored_state)))
               && (shards < 0 || (int) json_array_size (j_get (health, "shards")) == shards);
        snprintf (last, sizeof last, "%d %s", got, response.body);
        if (ok) {
            //  JSON with the contract's headers; a 503 here carries the
            //  health JSON (DESIGN), not {"error"}.
            CHECK (!strncmp (response.content_type, "application/json", 16));
            CHECK (!strcmp (response.allow_origin, "*"));
            CHECK (j_str (health, "gatewayId") != NULL);
        }
        json_decref (health);
        http_response_free (&response);
        if (ok)
            return true;
        usleep (100 * 1000);
    }
    fprintf (stderr, "  /healthz never answered %d with stored %s and %d shards; last: %s\n",
             status, stored_state? stored_state: "any", shards, last);
    return false;
}

static void
s_test_stored_down (void)
{
    printf ("stored stopped: 503 everywhere it is needed; back: service goes on\n");
    const char *room = api_create_room (s_port, "olive", 12.0, 12.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *olive = api_connect (s_port, "olive", "Olive");
    json_decref (api_join (olive, room, "olive", -1));
    CHECK (api_say (olive, room, "o-1", "before the outage") == 1);

    harness_stop (&s_system.stored);
    CHECK (s_health_becomes (503, "down", -1));
    CHECK (http_callf (s_port, "POST", "/rooms", NULL, "{s:s, s:f, s:f}", "userId", "olive",
                       "latitude", 12.5, "longitude", 12.5) == 503);
    CHECK (http_call (s_port, "GET", "/rooms?latitude=12&longitude=12", NULL, NULL) == 503);

    ws_send (olive, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "during the outage", "messageId", "o-2", "requestId", "o-2");
    json_t *error = ws_expect (olive, "error", 15000);
    CHECK (j_num (error, "status") == 503);
    CHECK (j_is (error, "requestId", "o-2"));
    //  The refused send's own ids, for a client that sends no requestId.
    CHECK (j_is (error, "roomId", room));
    CHECK (j_is (error, "messageId", "o-2"));
    json_decref (error);
    ws_send (olive, "{s:s}", "action", "ping");
    json_t *pong = ws_expect (olive, "pong", API_WAIT_MS);
    CHECK (pong != NULL);
    json_decref (pong);

    REQUIRE (harness_start (&s_system.stored) == 0);
    CHECK (s_health_becomes (200, "up", 1));
    //  The same messageId again: stored once, seq 2.
    CHECK (api_say_retrying (olive, room, "o-2", "during the outage", 5) == 2);
    ws_client_t *pete = api_connect (s_port, "pete", "Pete");
    json_t *history = api_join (pete, room, "pete", -1);
    json_t *messages = j_get (history, "messages");
    CHECK (json_array_size (messages) == 2);
    CHECK (j_is (json_array_get (messages, 0), "text", "before the outage"));
    CHECK (j_is (json_array_get (messages, 1), "text", "during the outage"));
    json_decref (history);
    CHECK (api_say (pete, room, "p-1", "all good") == 3);
    CHECK (api_heard (olive, "all good") == 3);
    ws_close (&olive);
    ws_close (&pete);
}

static void
s_test_shard_down (void)
{
    printf ("the only shard stopped: 503; back: the room is served\n");
    const char *room = api_create_room (s_port, "quin", 13.0, 13.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *quin = api_connect (s_port, "quin", "Quin");
    json_decref (api_join (quin, room, "quin", -1));

    harness_shard_stop (&s_system, 0, false);
    CHECK (harness_system_wait (&s_system, 0, 10000) == 0);
    CHECK (api_join_http (s_port, room, "rosa") == 503);
    ws_send (quin, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", "anyone?", "messageId", "q-1");
    json_t *error = ws_expect (quin, "error", 15000);
    CHECK (j_num (error, "status") == 503);
    CHECK (j_is (error, "action", "send-message"));
    CHECK (j_is (error, "roomId", room));
    CHECK (j_is (error, "messageId", "q-1"));
    json_decref (error);
    //  With no shard live the gateway is degraded (503), stored still up.
    CHECK (s_health_becomes (503, "up", 0));
    http_response_t response;
    int status = http_request (s_port, "GET", "/healthz", NULL, 0, &response);
    json_t *health = json_loads (response.body, 0, NULL);
    CHECK (status == 503);
    CHECK (j_is (health, "status", "degraded"));
    CHECK (j_is (health, "stored", "up"));
    CHECK (json_array_size (j_get (health, "shards")) == 0);
    json_decref (health);
    http_response_free (&response);

    REQUIRE (harness_shard_start (&s_system, 0) == 0);
    CHECK (api_join_http (s_port, room, "rosa") == 200);
    //  A shard that loads a room numbers past what an owner that died may
    //  have fanned out (roomd/handle_send.c): 0 + 1 + SEND_WINDOW.
    CHECK (api_say_retrying (quin, room, "q-1", "anyone?", 5) == 1 + 1024);
    ws_close (&quin);
}

int
main (void)
{
    harness_init ("api_outage");
    const char *env [] = { "REQUEST_TIMEOUT_MS=1000", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;

    s_test_stored_down ();
    s_test_shard_down ();

    return harness_finish ();
}
