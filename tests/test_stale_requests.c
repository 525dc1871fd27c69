/*  =========================================================================
    test_stale_requests - a request the gateway answered 503 because its
    shard was paused (and then dropped) is not done later, when the shard
    runs again and reads it: against the real system

    A join that waited in the paused shard was refused to its client; the
    shard, resumed, read it before the gateway's fresh welcome and made
    the user a participant all the same (issue 10 names "the join still
    made the participant" as a defect of a join answered 503). A shard
    that finds it was stalled refuses what waited out its stall.
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"

static void
s_test_stale_join (void)
{
    printf ("a join refused while its shard was paused is not done when it resumes\n");
    static harness_system_t system;
    harness_system_t *sys = &system;
    REQUIRE (harness_system_start (sys, 2, false, NULL) == 0);
    int port = sys->http_port;
    const char *room = NULL;
    for (int i = 0; i < 40 && !room; i++) {
        const char *made = api_create_room (port, "ann", 45, 45, NULL, 0);
        REQUIRE (made);
        if (harness_shard_owner (sys, made) == 0)
            room = made;
    }
    REQUIRE (room);
    ws_client_t *ann = api_connect (port, "ann", "Ann");
    json_decref (api_join (ann, room, "ann", -1));
    ws_client_t *zed = api_connect (port, "zed", "Zed");
    kill (sys->shards [0].pid, SIGSTOP);
    ws_send (zed, "{s:s, s:s}", "action", "join-room", "roomId", room);
    json_t *error = ws_expect (zed, "error", 10000);
    CHECK (error != NULL);              //  zed is told the join failed
    json_decref (error);
    kill (sys->shards [0].pid, SIGCONT);
    CHECK (harness_system_wait (sys, 2, 15000) == 0);
    usleep (500 * 1000);
    CHECK (ws_quiet_where (ann, "user-joined", "userId", "zed", 1000));
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", room);
    json_t *info = NULL;
    CHECK (http_call (port, "GET", path, NULL, &info) == 200);
    CHECK (j_lacks (j_get (info, "participants"), "zed"));
    json_decref (info);
    ws_close (&ann);
    ws_close (&zed);
}

int
main (void)
{
    harness_init ("stale_requests");
    s_test_stale_join ();
    return harness_finish ();
}
