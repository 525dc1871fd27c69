/*  =========================================================================
    test_shard_conflict - two shards with one SHARD_ID, and the exact
    connection limit, against the real system (stored, gateway, 1 shard)

    A second roomd started with the first one's SHARD_ID must be refused
    (issue 10: the gateway flapped between the two, failing requests): the
    gateway logs an error naming the id, /healthz lists the id under
    shardConflicts and is not ok, the second shard says at error level
    that it was refused, and requests keep being served by the first, the
    gateway never taking the second for a restart. Once the second stops,
    the conflict is gone.
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
static int s_port;


//  Wait (at most timeout_ms) until /healthz lists conflicts as its
//  shardConflicts (NULL: none); returns the last status.
static int
s_wait_conflicts (const char *conflict, int timeout_ms, bool *seen)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    int status = -1;
    *seen = false;
    while (!*seen && clock_mono_ms () < deadline) {
        json_t *health = NULL;
        status = api_health (s_port, &health);
        json_t *conflicts = j_get (health, "shardConflicts");
        *seen = json_is_array (conflicts)
             && (conflict? json_array_size (conflicts) == 1 && j_holds_once (conflicts, conflict)
                         : json_array_size (conflicts) == 0);
        if (*seen) {
            bool ok = j_is (health, "status", conflict? "degraded": "ok");
            CHECK (ok);
            CHECK (json_array_size (j_get (health, "shards")) == 1);
        }
        json_decref (health);
        if (!*seen)
            usleep (100 * 1000);
    }
    return status;
}

static void
s_test_conflict (void)
{
    printf ("two shards with one SHARD_ID: the second is refused, the first serves on\n");
    const char *room = api_create_room (s_port, "ada", 40.0, 40.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *ada = api_connect (s_port, "ada", "Ada");
    REQUIRE (ada);
    json_decref (api_join (ada, room, "ada", -1));
    CHECK (api_say (ada, room, "a-0", "before the second shard") > 0);

    //  The same settings as shard-1, its own log.
    static harness_daemon_t second;         //  the harness keeps a pointer to it
    second = s_system.shards [0];
    second.pid = 0;
    snprintf (second.log_path, sizeof second.log_path, "%s/roomd-second.log", harness_dir ());
    REQUIRE (harness_spawn (&second) == 0);

    bool seen;
    int status = s_wait_conflicts (s_system.shard_ids [0], 10000, &seen);
    CHECK (seen);
    CHECK (status == 503);
    char line [512] = "";
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "room shard shard-1 refused", line,
                              sizeof line) >= 1);
    printf ("  gateway: %s\n", line);
    CHECK (strstr (line, "peer") != NULL);
    //  The second says so at error level, and is not taken for a restart.
    char refused [256];
    snprintf (refused, sizeof refused, "gateway %s refuses shard shard-1", s_system.backends [0]);
    int64_t deadline = clock_mono_ms () + 5000;
    while (harness_log_lines (&second, NULL, refused, line, sizeof line) == 0
       &&  clock_mono_ms () < deadline)
        usleep (100 * 1000);
    printf ("  second shard: %s\n", line);
    CHECK (harness_log_lines (&second, NULL, refused, NULL, 0) == 1);

    //  Requests keep being served, for a while with the second saying
    //  hello four times a second.
    int said = 0, failed = 0;
    for (int i = 1; i <= 20; i++) {
        char id [32], text [64];
        snprintf (id, sizeof id, "a-%d", i);
        snprintf (text, sizeof text, "message %d beside a second shard", i);
        if (api_say (ada, room, id, text) > 0)
            said++;
        else
            failed++;
        usleep (100 * 1000);
    }
    printf ("  %d sends acknowledged, %d failed\n", said, failed);
    CHECK (said == 20 && failed == 0);
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "room shard shard-1 reconnected",
                              NULL, 0) == 0);
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "room shard shard-1 dropped",
                              NULL, 0) == 0);
    CHECK (second.pid != 0 && kill (second.pid, 0) == 0);      //  it waits, it does not exit

    //  The second goes: so does the conflict; the first is still the one.
    CHECK (harness_stop (&second) == 0);
    status = s_wait_conflicts (NULL, 10000, &seen);
    CHECK (seen);
    CHECK (status == 200);
    CHECK (api_say (ada, room, "a-21", "after the second shard") > 0);
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "room shard shard-1 reconnected",
                              NULL, 0) == 0);

    //  The second again, and then the first dies: the second takes the id
    //  over, as a restart would, and serves the room.
    REQUIRE (harness_spawn (&second) == 0);
    s_wait_conflicts (s_system.shard_ids [0], 10000, &seen);
    CHECK (seen);
    harness_kill (&s_system.shards [0]);
    s_wait_conflicts (NULL, 10000, &seen);
    CHECK (seen);
    CHECK (api_say_retrying (ada, room, "a-22", "served by the second", 10) > 0);
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "room shard shard-1 reconnected",
                              NULL, 0) == 1);
    ws_close (&ada);
}

int
main (void)
{
    harness_init ("shard_conflict");
    REQUIRE (harness_system_start (&s_system, 1, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_conflict ();

    return harness_finish ();
}
