/*  =========================================================================
    test_monitor - ZMQ_MONITOR=1: every daemon logs its sockets' events
    (stored, gateway, 1 shard, the reaper)

    stored's ROUTER is listening and accepts; the shard's DEALERs connect
    to the gateway and to stored; the gateway's shard backend accepts and,
    when the shard stops, logs the disconnect; the reaper's sockets
    connect. Without the setting, no such line is written.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;

//  True once the log has a line whose msg begins with "zmq " + what
//  (waiting up to 15 s: the events come on threads of their own, and the
//  suite may be running others beside this one).
static bool
s_logged (const harness_daemon_t *daemon, const char *what)
{
    char prefix [256];
    snprintf (prefix, sizeof prefix, "zmq %s", what);
    int64_t deadline = clock_mono_ms () + 15000;
    do {
        if (harness_log_lines (daemon, NULL, prefix, NULL, 0))
            return true;
        usleep (100 * 1000);
    } while (clock_mono_ms () < deadline);
    fprintf (stderr, "  %s never logged '%s'\n", daemon->binary, prefix);
    return false;
}

int
main (void)
{
    harness_init ("monitor");
    const char *env [] = { "ZMQ_MONITOR=1", NULL };
    REQUIRE (harness_system_start (&s_system, 1, true, env) == 0);

    printf ("every daemon logs its sockets' events\n");
    CHECK (s_logged (&s_system.stored, "router: listening"));
    CHECK (s_logged (&s_system.stored, "router: accepted"));
    CHECK (s_logged (&s_system.gateways [0], "shard backend: listening"));
    CHECK (s_logged (&s_system.gateways [0], "shard backend: accepted"));
    CHECK (s_logged (&s_system.gateways [0], "stored: connected"));
    CHECK (s_logged (&s_system.shards [0], "gateway tcp://"));
    CHECK (s_logged (&s_system.shards [0], "stored: connected"));
    CHECK (s_logged (&s_system.reaper, "tcp://127.0.0.1:"));     //  its clients, by endpoint

    printf ("a shard that goes is a disconnect in the gateway's log\n");
    harness_shard_stop (&s_system, 0, false);
    CHECK (s_logged (&s_system.gateways [0], "shard backend: disconnected"));

    printf ("without ZMQ_MONITOR, no such line\n");
    harness_daemon_t quiet;
    harness_stored_init (&quiet);
    REQUIRE (harness_start (&quiet) == 0);
    harness_stop (&quiet);
    FILE *file = fopen (quiet.log_path, "r");
    REQUIRE (file);
    char line [4096];
    int lines = 0, zmq_lines = 0;
    while (fgets (line, sizeof line, file)) {
        lines++;
        zmq_lines += strstr (line, "\"msg\":\"zmq ") != NULL;
    }
    fclose (file);
    CHECK (lines > 0 && zmq_lines == 0);
    return harness_finish ();
}
