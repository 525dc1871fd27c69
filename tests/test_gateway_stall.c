/*  =========================================================================
    test_gateway_stall - a gateway declared dead while it was only stalled,
    against the real system (stored, 2 gateways, 1 shard, the reaper)

    Gateway two is stopped (SIGSTOP) for longer than GATEWAY_TIMEOUT_S (2 s
    here): the reaper clears its run, and the user it held leaves the room
    (the others hear user-left). When it goes on (SIGCONT), its socket is
    still open but would hear nothing more (issue 10): stored refuses the
    dead run's next beat, and the gateway closes the socket with 1012 and
    a reason that says to join again with sinceSeq. The client does so,
    through the same gateway (a new run now), and hears the room again.
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;

static void
s_test_stall (void)
{
    printf ("a gateway stopped past GATEWAY_TIMEOUT_S: its client is told (1012)\n");
    int one = s_system.http_ports [0], two = s_system.http_ports [1];
    const char *room = api_create_room (one, "olga", 42.0, 42.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *olga = api_connect (one, "olga", "Olga");
    REQUIRE (olga);
    json_decref (api_join (olga, room, "olga", -1));
    ws_raw_t *sam = ws_raw_open (two, "/ws?userId=sam&userName=Sam", 0);
    REQUIRE (sam);
    char join [256];
    snprintf (join, sizeof join, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
    CHECK (ws_raw_send (sam, join) == 0);
    json_t *joined = ws_expect_where (olga, "user-joined", "userId", "sam", API_WAIT_MS);
    REQUIRE (joined);
    json_decref (joined);
    long long seq = api_say (olga, room, "o-1", "before the stall");
    CHECK (seq > 0);

    //  Stopped: the reaper declares its run dead and Sam leaves the room.
    pid_t pid = s_system.gateways [1].pid;
    REQUIRE (kill (pid, SIGSTOP) == 0);
    json_t *left = ws_expect_where (olga, "user-left", "userId", "sam", 20000);
    CHECK (left != NULL);
    json_decref (left);
    REQUIRE (kill (pid, SIGCONT) == 0);

    //  Going on, it finds out and closes Sam's socket, saying why.
    ws_raw_drained_t drained;
    bool closed = ws_raw_drain (sam, 15000, &drained);
    printf ("  sam: %zu frames, then %d \"%s\"%s\n", drained.frames, drained.close_code,
            drained.close_reason, drained.ended? " (stream ended)": "");
    CHECK (closed);
    CHECK (drained.close_code == 1012);
    CHECK (strstr (drained.close_reason, "sinceSeq") != NULL);
    ws_raw_close (&sam);
    char line [512] = "";
    CHECK (harness_log_lines (&s_system.gateways [1], NULL, "stored refused the beat", line,
                              sizeof line) == 1);
    printf ("  gateway two: %s\n", line);

    //  Sam comes back through the same gateway, joins with sinceSeq, and
    //  hears the room again; both gateways serve on.
    CHECK (harness_system_wait (&s_system, 1, 15000) == 0);
    ws_client_t *back = api_connect (two, "sam", "Sam");
    REQUIRE (back);
    json_t *history = api_join (back, room, "sam", seq - 1);
    CHECK (json_array_size (j_get (history, "messages")) == 1);
    json_decref (history);
    CHECK (api_say (olga, room, "o-2", "welcome back") == seq + 1);
    CHECK (api_heard (back, "welcome back") == seq + 1);
    CHECK (api_say (back, room, "s-1", "I am back") == seq + 2);
    CHECK (api_heard (olga, "I am back") == seq + 2);
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", room);
    json_t *info = NULL;
    CHECK (http_call (one, "GET", path, NULL, &info) == 200);
    json_t *online = j_get (info, "online");
    CHECK (json_array_size (online) == 2 && j_holds_once (online, "sam")
           && j_holds_once (online, "olga"));
    json_decref (info);
    ws_close (&back);
    ws_close (&olga);
}

int
main (void)
{
    harness_init ("gateway_stall");
    const char *env [] = { "REAPER_INTERVAL_S=1", "ROOM_IDLE_TIMEOUT_S=3600",
                           "GATEWAY_TIMEOUT_S=2", NULL };
    REQUIRE (harness_system_start_many (&s_system, 2, 1, true, env) == 0);

    s_test_stall ();

    return harness_finish ();
}
