/*  =========================================================================
    test_loadgen_smoke - a few seconds of each load scenario, small, against
    the real system (stored, gateway, 2 shards) and the fanout against the
    reference peer: each completes, every message arrives once and in
    order, nothing fails. Then --tls and --jwt-secret against a system with
    AUTH=jwt behind the edge (nearchat-edge, HAProxy, as ./nearchat up runs
    it with TLS): the fanout over wss and https with every user's token, the
    handshakes scenario (full handshakes, none resumed), and a wrong secret
    refused. No speed is asserted.
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

#define SECRET  "loadgen-smoke-secret-of-32-bytes-and-more"

//  Run nearchat-load with args; its exit status (-1 if it did not exit).
static int
s_run (const char *args, const char *json_path)
{
    char command [2 * PATH_MAX];
    unlink (json_path);
    snprintf (command, sizeof command, "timeout 60 %s/nearchat-load %s --json '%s' >&2",
              NEARCHAT_BIN_DIR, args, json_path);
    int status = system (command);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

//  Run nearchat-load with args; its JSON report is read back (caller decrefs).
static json_t *
s_load (const char *args)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/load.json", harness_dir ());
    if (!CHECK (s_run (args, path) == 0))
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

//  --tls and --jwt-secret, against a system with AUTH=jwt and TLS on
//  tls_port: a second of fanout over wss, a second of handshakes, and a
//  wrong secret that gets nowhere.
static void
s_check_tls_and_tokens (int tls_port)
{
    char args [512];
    printf ("fanout over wss with tokens: 3 rooms x 3 members, 1 s\n");
    snprintf (args, sizeof args, "fanout --port %d --tls --jwt-secret %s --rooms 3 --members 3"
              " --rate 5 --seconds 1", tls_port, SECRET);
    json_t *report = s_load (args);
    s_check_fanout (report, 3);
    CHECK (report && json_is_true (json_object_get (report, "tls"))
           && json_is_true (json_object_get (report, "jwt")));
    json_decref (report);

    printf ("handshakes over TLS: 2 clients, 1 s, each a full handshake\n");
    snprintf (args, sizeof args, "handshakes --port %d --tls --clients 2 --seconds 1", tls_port);
    report = s_load (args);
    REQUIRE (report);
    CHECK (j_num (report, "handshakes") > 0 && j_num (report, "cycles") > 0);
    CHECK (j_num (report, "failures") == 0 && j_num (report, "resumed") == 0);
    CHECK (json_is_true (json_object_get (report, "tls")));
    json_decref (report);

    printf ("a wrong secret: its tokens are refused, so no room is made\n");
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/refused.json", harness_dir ());
    snprintf (args, sizeof args, "fanout --port %d --tls --jwt-secret %s-not --rooms 1"
              " --members 2 --seconds 1", tls_port, SECRET);
    CHECK (s_run (args, path) == 1);
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
    harness_system_stop (&s_system);

    //  AUTH=jwt behind the edge, which holds the TLS.
    const char *gateway_env [] = { "AUTH=jwt", "JWT_SECRET=" SECRET, "TRUST_PROXY_HEADERS=1",
                                   NULL };
    REQUIRE (harness_system_start (&s_system, 2, false, gateway_env) == 0);
    char cert [PATH_MAX], key [PATH_MAX], command [3 * PATH_MAX];
    snprintf (cert, sizeof cert, "%s/cert.pem", harness_dir ());
    snprintf (key, sizeof key, "%s/key.pem", harness_dir ());
    snprintf (command, sizeof command, "openssl req -x509 -newkey ec -pkeyopt"
              " ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 -keyout '%s' -out '%s'"
              " 2>/dev/null", key, cert);
    REQUIRE (system (command) == 0);
    int edge_port = harness_free_port (), tls_port = harness_free_port ();
    char settings [5][PATH_MAX + 32];
    snprintf (settings [0], sizeof settings [0], "TLS_CERT=%s", cert);
    snprintf (settings [1], sizeof settings [1], "TLS_KEY=%s", key);
    snprintf (settings [2], sizeof settings [2], "HTTP_PORT=%d", edge_port);
    snprintf (settings [3], sizeof settings [3], "HTTPS_PORT=%d", tls_port);
    snprintf (settings [4], sizeof settings [4], "EDGE_GATEWAY=127.0.0.1:%d", s_system.http_port);
    harness_daemon_t edge;
    harness_daemon_init (&edge, "nearchat-edge");
    const char *edge_env [] = { settings [0], settings [1], settings [2], settings [3],
                                settings [4], "HTTP_BIND=127.0.0.1",
                                "EDGE_REQUESTS_PER_ADDR=1000000", NULL };
    memcpy (edge.env, edge_env, sizeof edge_env);
    REQUIRE (harness_spawn (&edge) == 0);
    //  Up when its plain port answers: HAProxy binds both ports before it
    //  serves either.
    bool edge_up = false;
    for (int64_t deadline = clock_mono_ms () + 10000; !edge_up && clock_mono_ms () < deadline; ) {
        http_response_t response;
        edge_up = http_request (edge_port, "GET", "/healthz", NULL, 0, &response) == 200;
        http_response_free (&response);
        if (!edge_up)
            usleep (100 * 1000);
    }
    if (!CHECK (edge_up))
        harness_print_log (&edge);
    else
        s_check_tls_and_tokens (tls_port);
    return harness_finish ();
}
