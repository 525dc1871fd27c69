/*  =========================================================================
    test_loadgen_smoke - a few seconds of each load scenario, small, against
    the real system (stored, gateway, 2 shards) and the fanout against the
    reference peer: each completes, every message arrives once and in
    order, nothing fails. No speed is asserted.
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;

//  Run nearchat-load with args; its JSON report is read back (caller decrefs).
static json_t *
s_load (const char *args)
{
    char path [PATH_MAX], command [2 * PATH_MAX];
    snprintf (path, sizeof path, "%s/load.json", harness_dir ());
    unlink (path);
    snprintf (command, sizeof command, "timeout 60 %s/nearchat-load %s --json '%s' >&2",
              NEARCHAT_BIN_DIR, args, path);
    int status = system (command);
    if (!CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0))
        return NULL;
    json_t *report = json_load_file (path, 0, NULL);
    CHECK (report != NULL);
    return report;
}

static void
s_check_fanout (json_t *report, double expected)
{
    REQUIRE (report);
    CHECK (j_num (report, "sent") > 0);
    CHECK (j_num (report, "expected") == expected * j_num (report, "sent"));
    CHECK (j_num (report, "delivered") == j_num (report, "expected"));
    CHECK (j_num (report, "missing") == 0 && j_num (report, "gaps") == 0);
    CHECK (j_num (report, "duplicated") == 0 && j_num (report, "errors") == 0);
    CHECK (j_num (report, "failed_sockets") == 0);
    CHECK (j_num (report, "p99_ms") >= j_num (report, "p50_ms"));
}

int
main (void)
{
    harness_init ("loadgen_smoke");
    //  The load generator measures capacity: one user makes every room,
    //  each member sends faster than a person would. Limits off.
    const char *env [] = { "ROOMS_PER_MINUTE=0", "MESSAGES_PER_S=0", NULL };
    REQUIRE (harness_system_start (&s_system, 2, false, env) == 0);
    char args [512];

    printf ("fanout against nearchat: 5 rooms x 4 members, 2 s\n");
    snprintf (args, sizeof args, "fanout --port %d --rooms 5 --members 4 --rate 5 --seconds 2",
              s_system.http_port);
    json_t *report = s_load (args);
    s_check_fanout (report, 4);
    json_decref (report);

    printf ("connections against nearchat: 40 idle sockets, the gateway's memory read\n");
    snprintf (args, sizeof args, "connections --port %d --sockets 40 --members 10 --hold 1 --pids %d",
              s_system.http_port, (int) s_system.gateways [0].pid);
    report = s_load (args);
    REQUIRE (report);
    CHECK (j_num (report, "joined") == 40 && j_num (report, "rss_kib") > 0);
    json_decref (report);

    printf ("churn against nearchat: 10 clients over 2 rooms, 2 s\n");
    snprintf (args, sizeof args, "churn --port %d --sockets 10 --rooms 2 --seconds 2",
              s_system.http_port);
    report = s_load (args);
    REQUIRE (report);
    CHECK (j_num (report, "cycles") > 10);
    CHECK (j_num (report, "errors") == 0 && j_num (report, "failed_sockets") == 0);
    json_decref (report);

    printf ("http against nearchat: 300 rooms made, 1 s of searches and of joins\n");
    snprintf (args, sizeof args, "http --port %d --clients 4 --rooms-total 300 --seconds 1",
              s_system.http_port);
    report = s_load (args);
    REQUIRE (report);
    CHECK (j_num (report, "rooms") >= 300);
    CHECK (j_num (report, "search_per_s") > 0 && j_num (report, "join_per_s") > 0);
    CHECK (j_num (report, "create_errors") == 0 && j_num (report, "search_errors") == 0
           && j_num (report, "join_errors") == 0);
    json_decref (report);

    printf ("fanout against the reference peer\n");
    int port = harness_free_port ();
    pid_t peer = fork ();
    if (peer == 0) {
        char port_text [16];
        snprintf (port_text, sizeof port_text, "%d", port);
        setenv ("NODE_PATH", NEARCHAT_SOURCE_DIR "/bench/node_modules", 1);
        execlp ("node", "node", NEARCHAT_SOURCE_DIR "/bench/peers/ws-peer.js", "--port",
                port_text, (char *) NULL);
        _exit (127);
    }
    bool up = false;
    for (int64_t deadline = clock_mono_ms () + 10000; !up && clock_mono_ms () < deadline; ) {
        http_response_t response;
        up = http_request (port, "GET", "/healthz", NULL, 0, &response) == 200;
        http_response_free (&response);
        if (!up)
            usleep (100 * 1000);
    }
    if (CHECK (up)) {
        snprintf (args, sizeof args, "fanout --port %d --rooms 5 --members 4 --rate 5 --seconds 2"
                  " --label peer", port);
        report = s_load (args);
        s_check_fanout (report, 4);
        CHECK (report && j_is (report, "label", "peer"));
        json_decref (report);
    }
    kill (peer, SIGTERM);
    waitpid (peer, NULL, 0);
    return harness_finish ();
}
