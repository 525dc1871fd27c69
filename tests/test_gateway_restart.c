/*  =========================================================================
    test_gateway_restart - a gateway restarted with a fixed GATEWAY_ID,
    against the real system (stored, gateway, 1 shard, the reaper)

    Issue 10: the old run's connection records stayed behind, so rooms
    listed everyone as participant and online after they had left. Each
    run has an incarnation of its own now: the new run's first beat makes
    the old one dead, and the reaper's next pass clears it. GATEWAY_TIMEOUT_S
    is 60 here, so what clears the old run within the 20 s this test waits
    is the restart, not the old run's silence. A user who comes back
    through the new run stays a participant and online, and keeps hearing
    the room (the new run's records are never touched); a user who does
    not come back leaves the room, and the others hear user-left.
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

static char *
s_incarnation (void)
{
    json_t *health = NULL;
    CHECK (http_call (s_port, "GET", "/healthz", NULL, &health) == 200);
    const char *incarnation = j_str (health, "incarnation");
    char *copy = strdup (incarnation? incarnation: "");
    json_decref (health);
    return copy;
}

static void
s_test_restart (void)
{
    printf ("a gateway restarted with GATEWAY_ID=gw-fixed: the old run's users leave\n");
    harness_daemon_t *gateway = &s_system.gateways [0];
    const char *room = api_create_room (s_port, "ann", 41.0, 41.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *ann = api_connect (s_port, "ann", "Ann");
    ws_client_t *bob = api_connect (s_port, "bob", "Bob");
    REQUIRE (ann && bob);
    json_decref (api_join (ann, room, "ann", -1));
    json_decref (api_join (bob, room, "bob", -1));
    char *before = s_incarnation ();

    //  The gateway dies with its sockets and comes back at once, the
    //  same id on the same port.
    harness_kill (gateway);
    ws_is_closed (ann, API_WAIT_MS);
    ws_is_closed (bob, API_WAIT_MS);
    ws_client_t *gone_ann = ann, *gone_bob = bob;
    REQUIRE (harness_spawn (gateway) == 0);
    REQUIRE (harness_system_wait (&s_system, 1, 15000) == 0);
    char *after = s_incarnation ();
    printf ("  run %s, then run %s\n", before, after);
    CHECK (*before && *after && strcmp (before, after) != 0);
    free (before);
    free (after);

    //  Ann comes back and joins again; Bob does not.
    ann = api_connect (s_port, "ann", "Ann");
    REQUIRE (ann);
    json_decref (api_join (ann, room, "ann", -1));

    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", room);
    bool right = false;
    json_t *info = NULL;
    int64_t deadline = clock_mono_ms () + 20000;
    while (!right && clock_mono_ms () < deadline) {
        json_decref (info);
        info = NULL;
        http_response_t response;
        if (http_request (s_port, "GET", path, NULL, 0, &response) == 200)
            info = json_loads (response.body, 0, NULL);
        http_response_free (&response);
        json_t *online = j_get (info, "online"), *participants = j_get (info, "participants");
        right = json_array_size (online) == 1 && j_holds_once (online, "ann")
             && j_holds_once (participants, "ann") && j_lacks (participants, "bob");
        if (!right)
            usleep (100 * 1000);
    }
    CHECK (right);
    if (!right) {
        char *text = json_dumps (info, 0);
        fprintf (stderr, "  the room still says %s\n", text? text: "nothing");
        free (text);
    }
    json_decref (info);
    char line [512] = "";
    CHECK (harness_log_lines (&s_system.reaper, NULL, "cleared ", line, sizeof line) >= 1);
    printf ("  reaper: %s\n", line);
    CHECK (strstr (line, "of gateway gw-fixed") != NULL);

    //  Bob's leaving was heard; Ann's socket of the new run was not touched.
    ws_client_t *cid = api_connect (s_port, "cid", "Cid");
    json_t *history = api_join (cid, room, "cid", -1);
    CHECK (history != NULL);
    json_decref (history);
    CHECK (api_say (cid, room, "c-1", "is anyone left?") > 0);
    CHECK (api_heard (ann, "is anyone left?") > 0);
    ws_send (ann, "{s:s, s:s}", "action", "room-info", "roomId", room);
    info = ws_expect (ann, "room-info", API_WAIT_MS);
    json_t *online = j_get (info, "online");
    CHECK (json_array_size (online) == 2 && j_holds_once (online, "ann")
           && j_holds_once (online, "cid"));
    json_decref (info);
    CHECK (ws_quiet_where (ann, "user-left", "userId", "ann", API_QUIET_MS));

    ws_close (&cid);
    ws_close (&ann);
    //  The old clients' sockets died with the first run.
    ws_discard (gone_ann);
    ws_discard (gone_bob);
    ws_close (&gone_ann);
    ws_close (&gone_bob);
}

int
main (void)
{
    harness_init ("gateway_restart");
    //  A dead run is found within a second, a silent one only after 60 s.
    const char *env [] = { "REAPER_INTERVAL_S=1", "ROOM_IDLE_TIMEOUT_S=3600",
                           "GATEWAY_TIMEOUT_S=60", "GATEWAY_ID=gw-fixed", NULL };
    REQUIRE (harness_system_start (&s_system, 1, true, env) == 0);
    s_port = s_system.http_port;

    s_test_restart ();

    return harness_finish ();
}
