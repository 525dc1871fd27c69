/*  =========================================================================
    test_gateways - gateways side by side (DESIGN: "several gateways may
    run side by side"), against the real system (stored, 2 gateways, 2
    shards, the reaper)

    Users on different gateways share a room: joins, messages (one seq for
    all), typing and room-info cross from one gateway to the other, and
    either gateway answers the HTTP API for any room. Then one gateway is
    killed with -9: the sockets it held are gone, so the others must hear
    user-left and the room's online list must drop them (issue 3: the
    reaper removes connections whose gateway is gone), while the surviving
    gateway goes on serving.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;

static void
s_test_across (void)
{
    printf ("two gateways: one room, users on each\n");
    int one = s_system.http_ports [0], two = s_system.http_ports [1];
    const char *room = api_create_room (one, "uli", 33.0, 33.0, NULL, 0);
    REQUIRE (room);

    //  Either gateway knows the room, and both see the same shards.
    char path [256];
    json_t *info = NULL;
    snprintf (path, sizeof path, "/rooms/%s", room);
    CHECK (http_call (two, "GET", path, NULL, &info) == 200);
    CHECK (j_is (info, "creator", "uli"));
    json_decref (info);
    json_t *health_one = NULL, *health_two = NULL;
    CHECK (http_call (one, "GET", "/healthz", NULL, &health_one) == 200);
    CHECK (http_call (two, "GET", "/healthz", NULL, &health_two) == 200);
    CHECK (json_equal (j_get (health_one, "shards"), j_get (health_two, "shards")));
    CHECK (j_str (health_one, "gatewayId") && j_str (health_two, "gatewayId")
           && strcmp (j_str (health_one, "gatewayId"), j_str (health_two, "gatewayId")));
    json_decref (health_one);
    json_decref (health_two);

    ws_client_t *uli = api_connect (one, "uli", "Uli");
    ws_client_t *vera = api_connect (two, "vera", "Vera");
    ws_client_t *walt = api_connect (two, "walt", "Walt");
    json_decref (api_join (uli, room, "uli", -1));
    json_decref (api_join (vera, room, "vera", -1));
    json_t *joined = ws_expect_where (uli, "user-joined", "userId", "vera", API_WAIT_MS);
    CHECK (joined != NULL);
    json_decref (joined);
    json_decref (api_join (walt, room, "walt", -1));
    joined = ws_expect_where (uli, "user-joined", "userId", "walt", API_WAIT_MS);
    CHECK (joined != NULL);
    json_decref (joined);

    //  Messages both ways, one seq for all, each delivered once.
    long long seq = api_say (uli, room, "u-1", "hello from gateway one");
    CHECK (api_heard (vera, "hello from gateway one") == seq);
    CHECK (api_heard (walt, "hello from gateway one") == seq);
    CHECK (api_heard (uli, "hello from gateway one") == seq);
    CHECK (api_say (vera, room, "v-1", "hello from gateway two") == seq + 1);
    CHECK (api_heard (uli, "hello from gateway two") == seq + 1);
    CHECK (api_heard (walt, "hello from gateway two") == seq + 1);
    CHECK (ws_quiet (walt, "new-message", API_QUIET_MS));

    //  Typing crosses too, and is still not echoed.
    ws_send (walt, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room, "userName", "Walt");
    json_t *typing = ws_expect_where (uli, "user-typing", "userId", "walt", API_WAIT_MS);
    CHECK (typing != NULL);
    json_decref (typing);
    typing = ws_expect_where (vera, "user-typing", "userId", "walt", API_WAIT_MS);
    CHECK (typing != NULL);
    json_decref (typing);
    CHECK (ws_quiet (walt, "user-typing", API_QUIET_MS));

    //  Online counts the sockets of every gateway, asked of either.
    ws_send (uli, "{s:s, s:s}", "action", "room-info", "roomId", room);
    info = ws_expect (uli, "room-info", API_WAIT_MS);
    json_t *online = j_get (info, "online");
    CHECK (json_array_size (online) == 3 && j_holds_once (online, "uli")
           && j_holds_once (online, "vera") && j_holds_once (online, "walt"));
    json_decref (info);
    CHECK (http_call (two, "GET", path, NULL, &info) == 200);
    CHECK (json_array_size (j_get (info, "online")) == 3);
    json_decref (info);

    //  Gateway two dies with its sockets: within 20 s, uli hears both leave
    //  and the online list (asked of gateway one) drops them.
    harness_kill (&s_system.gateways [1]);
    bool dropped = false, heard = false;
    int64_t deadline = clock_mono_ms () + 20000;
    while (!(dropped && heard) && clock_mono_ms () < deadline) {
        heard = ws_pending (uli, "user-left") >= 2;
        http_response_t response;
        if (!dropped && http_request (one, "GET", path, NULL, 0, &response) == 200) {
            info = json_loads (response.body, 0, NULL);
            online = j_get (info, "online");
            dropped = json_array_size (online) == 1 && j_holds_once (online, "uli");
            json_decref (info);
        }
        http_response_free (&response);
        usleep (100 * 1000);
    }
    json_t *left = ws_expect_where (uli, "user-left", "userId", "vera", 0);
    CHECK (left != NULL);
    json_decref (left);
    left = ws_expect_where (uli, "user-left", "userId", "walt", 0);
    CHECK (left != NULL);
    json_decref (left);
    CHECK (dropped);

    //  Gateway one goes on.
    ws_client_t *xena = api_connect (one, "xena", "Xena");
    json_t *history = api_join (xena, room, "xena", -1);
    CHECK (json_array_size (j_get (history, "messages")) == 2);
    json_decref (history);
    CHECK (api_say (xena, room, "x-1", "one gateway is enough") == seq + 2);
    CHECK (api_heard (uli, "one gateway is enough") == seq + 2);

    ws_close (&uli);
    ws_close (&vera);
    ws_close (&walt);
    ws_close (&xena);
}

int
main (void)
{
    harness_init ("gateways");
    //  The reaper looks every second; no room is idle long enough to close.
    const char *env [] = { "REAPER_INTERVAL_S=1", "ROOM_IDLE_TIMEOUT_S=3600", "GATEWAY_TIMEOUT_S=2",
                           NULL };
    REQUIRE (harness_system_start_many (&s_system, 2, 2, true, env) == 0);

    s_test_across ();

    return harness_finish ();
}
