/*  =========================================================================
    harness_system.c - starting the whole of nearchat for a test
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness_system.h"
#include "wsclient.h"
#include "clock.h"
#include "route.h"

//  A "NAME=value" string kept in the system's storage for as long as the
//  test runs (a daemon restarted later is given the same strings).
static const char *
s_setting (harness_system_t *sys, const char *format, const char *value)
{
    assert (sys->setting_count < HARNESS_SETTINGS_MAX);
    char *setting = sys->settings [sys->setting_count++];
    snprintf (setting, sizeof sys->settings [0], format, value);
    return setting;
}

static void
s_add_env (harness_daemon_t *daemon, const char *setting)
{
    int count = 0;
    while (daemon->env [count])
        count++;
    assert (count < 15);
    daemon->env [count] = setting;
}

static void
s_add_extra (harness_daemon_t *daemon, const char *const *extra_env)
{
    for (int i = 0; extra_env && extra_env [i]; i++)
        s_add_env (daemon, extra_env [i]);
}

static bool
s_built (const char *binary)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", NEARCHAT_BIN_DIR, binary);
    if (access (path, X_OK) == 0)
        return true;
    fprintf (stderr, "%s is not built (no %s)\n", binary, path);
    return false;
}

//  True while the daemon runs; reaps it and says so when it has ended.
static bool
s_alive (harness_daemon_t *daemon)
{
    if (!daemon->pid)
        return false;
    int status;
    if (waitpid (daemon->pid, &status, WNOHANG) == daemon->pid) {
        fprintf (stderr, "%s exited (%s %d)\n", daemon->binary,
                 WIFEXITED (status)? "status": "signal",
                 WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
        harness_print_log (daemon);
        daemon->pid = 0;
        return false;
    }
    return true;
}

static void
s_shard_init (harness_system_t *sys, int index, const char *const *extra_env)
{
    harness_daemon_t *shard = &sys->shards [index];
    harness_daemon_init (shard, "roomd");
    snprintf (sys->shard_ids [index], sizeof sys->shard_ids [0], "shard-%d", index + 1);
    s_add_env (shard, s_setting (sys, "SHARD_ID=%s", sys->shard_ids [index]));
    s_add_env (shard, s_setting (sys, "GATEWAY_ENDPOINTS=%s", sys->gateway_endpoints));
    s_add_env (shard, s_setting (sys, "STORED_ENDPOINT=%s", sys->stored.endpoint));
    s_add_env (shard, "HEARTBEAT_MS=250");
    s_add_extra (shard, extra_env);
}

static void
s_gateway_init (harness_system_t *sys, int index, const char *const *extra_env)
{
    harness_daemon_t *gateway = &sys->gateways [index];
    char port [16];
    sys->http_ports [index] = harness_free_port ();
    snprintf (port, sizeof port, "%d", sys->http_ports [index]);
    snprintf (sys->backends [index], sizeof sys->backends [0], "tcp://127.0.0.1:%d",
              harness_free_port ());
    harness_daemon_init (gateway, "gateway");
    s_add_env (gateway, s_setting (sys, "HTTP_PORT=%s", port));
    s_add_env (gateway, "HTTP_BIND=127.0.0.1");
    s_add_env (gateway, s_setting (sys, "GATEWAY_BACKEND_ENDPOINT=%s", sys->backends [index]));
    s_add_env (gateway, s_setting (sys, "STORED_ENDPOINT=%s", sys->stored.endpoint));
    s_add_env (gateway, "SHARD_TIMEOUT_MS=1500");
    s_add_extra (gateway, extra_env);
    size_t used = strlen (sys->gateway_endpoints);
    snprintf (sys->gateway_endpoints + used, sizeof sys->gateway_endpoints - used, "%s%s",
              used? ",": "", sys->backends [index]);
}

int
harness_system_start (harness_system_t *sys, int shards, bool reaper,
                      const char *const *extra_env)
{
    return harness_system_start_many (sys, 1, shards, reaper, extra_env);
}

int
harness_system_start_many (harness_system_t *sys, int gateways, int shards, bool reaper,
                           const char *const *extra_env)
{
    assert (sys);
    assert (gateways >= 1 && gateways <= HARNESS_GATEWAYS_MAX);
    assert (shards >= 1 && shards <= HARNESS_SHARDS_MAX);
    memset (sys, 0, sizeof *sys);
    if (!s_built ("stored") || !s_built ("gateway") || !s_built ("roomd")
    ||  (reaper && !s_built ("reaper")))
        return -1;

    harness_stored_init (&sys->stored);
    s_add_extra (&sys->stored, extra_env);
    if (harness_start (&sys->stored))
        return -1;

    sys->gateway_count = gateways;
    for (int i = 0; i < gateways; i++) {
        s_gateway_init (sys, i, extra_env);
        if (harness_spawn (&sys->gateways [i]))
            return -1;
    }
    sys->http_port = sys->http_ports [0];

    sys->shard_count = shards;
    for (int i = 0; i < shards; i++) {
        s_shard_init (sys, i, extra_env);
        if (harness_spawn (&sys->shards [i]))
            return -1;
    }
    if (reaper) {
        harness_daemon_init (&sys->reaper, "reaper");
        s_add_env (&sys->reaper, s_setting (sys, "STORED_ENDPOINT=%s", sys->stored.endpoint));
        s_add_env (&sys->reaper, s_setting (sys, "GATEWAY_ENDPOINTS=%s", sys->gateway_endpoints));
        s_add_extra (&sys->reaper, extra_env);
        if (harness_spawn (&sys->reaper))
            return -1;
    }
    return harness_system_wait (sys, shards, 15000);
}

//  True once this gateway's /healthz reports stored up and shards shards;
//  what it said goes to last.
static bool
s_gateway_ready (int port, int shards, char *last, size_t size)
{
    http_response_t response;
    int status = http_request (port, "GET", "/healthz", NULL, 0, &response);
    bool ready = false;
    if (status > 0) {
        snprintf (last, size, "%d %s", status, response.body);
        json_t *health = json_loads (response.body, 0, NULL);
        const char *stored = json_string_value (json_object_get (health, "stored"));
        json_t *live = json_object_get (health, "shards");
        ready = stored && !strcmp (stored, "up") && json_is_array (live)
             && json_array_size (live) == (size_t) shards;
        json_decref (health);
    }
    http_response_free (&response);
    return ready;
}

int
harness_system_wait (harness_system_t *sys, int shards, int timeout_ms)
{
    assert (sys);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    char last [512] = "no answer";
    int waiting_for = -1;
    while (clock_mono_ms () < deadline) {
        waiting_for = -1;
        for (int i = 0; i < sys->gateway_count && waiting_for < 0; i++) {
            if (!sys->gateways [i].pid)
                continue;           //  stopped by the test
            if (!s_alive (&sys->gateways [i]))
                return -1;
            if (!s_gateway_ready (sys->http_ports [i], shards, last, sizeof last))
                waiting_for = i;
        }
        if (waiting_for < 0)
            return 0;
        usleep (50 * 1000);
    }
    fprintf (stderr, "gateway %d did not report %d live shards; its /healthz said: %s\n",
             waiting_for + 1, shards, last);
    if (waiting_for >= 0)
        harness_print_log (&sys->gateways [waiting_for]);
    for (int i = 0; i < sys->shard_count; i++)
        s_alive (&sys->shards [i]);
    return -1;
}

void
harness_shard_stop (harness_system_t *sys, int index, bool kill9)
{
    assert (sys && index >= 0 && index < sys->shard_count);
    if (kill9)
        harness_kill (&sys->shards [index]);
    else
        harness_stop (&sys->shards [index]);
}

int
harness_shard_start (harness_system_t *sys, int index)
{
    assert (sys && index >= 0 && index < sys->shard_count);
    assert (sys->shards [index].pid == 0);
    if (harness_spawn (&sys->shards [index]))
        return -1;
    return harness_system_wait (sys, sys->shard_count, 15000);
}

int
harness_shard_owner (harness_system_t *sys, const char *room_id)
{
    assert (sys && room_id);
    const char *ids [HARNESS_SHARDS_MAX];
    for (int i = 0; i < sys->shard_count; i++)
        ids [i] = sys->shard_ids [i];
    return route_pick (room_id, ids, (size_t) sys->shard_count);
}

long
harness_rss_kib (const harness_daemon_t *daemon)
{
    if (!daemon->pid)
        return -1;
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) daemon->pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long kib = -1;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose (file);
    return kib;
}

void
harness_system_stop (harness_system_t *sys)
{
    if (sys->edge.pid)
        harness_stop (&sys->edge);
    for (int i = 0; i < sys->gateway_count; i++)
        if (sys->gateways [i].pid)
            harness_stop (&sys->gateways [i]);
    for (int i = 0; i < sys->shard_count; i++)
        if (sys->shards [i].pid)
            harness_stop (&sys->shards [i]);
    if (sys->reaper.pid)
        harness_stop (&sys->reaper);
    if (sys->stored.pid)
        harness_stop (&sys->stored);
}

//  ---------------------------------------------------------------------------
//  The edge

//  /healthz answers 200 on port, over TLS or not.
static bool
s_edge_ready (int port, bool tls)
{
    http_response_t response;
    int status = tls? https_request (port, "GET", "/healthz", NULL, 0, &response)
                    : http_request (port, "GET", "/healthz", NULL, 0, &response);
    http_response_free (&response);
    return status == 200;
}

int
harness_edge_start (harness_system_t *sys, bool tls, const char *const *edge_env)
{
    assert (sys && sys->gateway_count >= 1);
    if (!s_built ("nearchat-edge"))
        return -1;
    harness_daemon_t *edge = &sys->edge;
    harness_daemon_init (edge, "nearchat-edge");
    char value [64];
    sys->edge_port = harness_free_port ();
    snprintf (value, sizeof value, "%d", sys->edge_port);
    s_add_env (edge, s_setting (sys, "HTTP_PORT=%s", value));
    s_add_env (edge, "HTTP_BIND=127.0.0.1");
    snprintf (value, sizeof value, "127.0.0.1:%d", sys->http_ports [0]);
    s_add_env (edge, s_setting (sys, "EDGE_GATEWAY=%s", value));
    //  Its links to the certificate and key go under the test's directory.
    s_add_env (edge, s_setting (sys, "TMPDIR=%s", harness_dir ()));
    if (tls) {
        snprintf (sys->edge_cert, sizeof sys->edge_cert, "%s/edge-cert.pem", harness_dir ());
        snprintf (sys->edge_key, sizeof sys->edge_key, "%s/edge-key.pem", harness_dir ());
        //  RSA, so that a cipher with RSA key exchange could be agreed if
        //  the edge allowed one: the tests show it does not.
        char command [3 * PATH_MAX];
        snprintf (command, sizeof command,
                  "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                  "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null",
                  sys->edge_key, sys->edge_cert);
        if (system (command) != 0) {
            fprintf (stderr, "openssl could not make the edge's certificate\n");
            return -1;
        }
        sys->edge_tls_port = harness_free_port ();
        snprintf (value, sizeof value, "%d", sys->edge_tls_port);
        s_add_env (edge, s_setting (sys, "HTTPS_PORT=%s", value));
        s_add_env (edge, s_setting (sys, "TLS_CERT=%s", sys->edge_cert));
        s_add_env (edge, s_setting (sys, "TLS_KEY=%s", sys->edge_key));
    }
    s_add_extra (edge, edge_env);
    if (harness_spawn (edge))
        return -1;
    int64_t deadline = clock_mono_ms () + 10000;
    while (clock_mono_ms () < deadline) {
        if (!s_alive (edge))
            return -1;
        if (s_edge_ready (sys->edge_port, false) && (!tls || s_edge_ready (sys->edge_tls_port, true)))
            return 0;
        usleep (50 * 1000);
    }
    fprintf (stderr, "the edge did not answer /healthz on port %d%s within 10 s\n",
             sys->edge_port, tls? " and its TLS port": "");
    harness_print_log (edge);
    return -1;
}

int
harness_system_start_edge (harness_system_t *sys, int shards, bool tls,
                           const char *const *extra_env, const char *const *edge_env)
{
    const char *env [11] = { HARNESS_BEHIND_EDGE };
    int count = 1;
    for (int i = 0; extra_env && extra_env [i]; i++) {
        assert (count < 10);
        env [count++] = extra_env [i];
    }
    if (harness_system_start (sys, shards, false, env))
        return -1;
    return harness_edge_start (sys, tls, edge_env);
}
