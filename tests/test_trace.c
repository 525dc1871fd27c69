/*  =========================================================================
    test_trace - one message, followed through every daemon's log by the
    trace id the gateway gave it (LOG_LEVEL=debug; stored, gateway, 1 shard)

    Every line of every log is one JSON object with ts, level, daemon and
    msg. The gateway's line that passes the send to the shard names a trace;
    the shard's lines for that trace show the request, the append it sent
    to stored and the fan-out; stored's show the append committed. A second
    message has a trace of its own.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;

#define TRACES_MAX 8

//  Read a daemon's log; CHECK that every line is a log object of daemon.
//  Fills traces with the trace of each line whose msg starts with prefix
//  (at most TRACES_MAX). Returns how many lines matched.
static int
s_read_log (const harness_daemon_t *daemon, const char *name, const char *prefix,
            char traces [][64])
{
    FILE *file = fopen (daemon->log_path, "r");
    if (!CHECK (file))
        return 0;
    char line [4096];
    int found = 0, lines = 0, bad = 0;
    while (fgets (line, sizeof line, file)) {
        lines++;
        json_t *object = json_loads (line, 0, NULL);
        const char *msg = j_str (object, "msg");
        bool ok = object && j_str (object, "ts") && j_str (object, "level") && msg
               && j_str (object, "daemon") && !strcmp (j_str (object, "daemon"), name);
        if (!ok && bad++ < 3)
            fprintf (stderr, "  %s: not a log line: %s", name, line);
        if (ok && prefix && !strncmp (msg, prefix, strlen (prefix)) && j_str (object, "trace")
        &&  found < TRACES_MAX)
            snprintf (traces [found++], 64, "%s", j_str (object, "trace"));
        json_decref (object);
    }
    fclose (file);
    CHECK (lines > 0 && bad == 0);
    return found;
}

//  Each line the test looks for, for trace.
static const struct { int daemon; const char *prefix; } s_expected [] = {
    { 1, "room-send for room" }, { 1, "msg-append -> stored" },
    { 1, "event-message fanned out" }, { 2, "msg-append committed" },
    { 0, "event-message for room" } };
#define EXPECTED (sizeof s_expected / sizeof s_expected [0])

static const harness_daemon_t *
s_daemon (int which)
{
    return which == 0? &s_system.gateways [0]: which == 1? &s_system.shards [0]: &s_system.stored;
}

//  Wait (10 s at most) until the gateway has logged two sends and every
//  line of both traces is in the logs: a daemon writes its line after it
//  has passed the message on, so the client's ack may come first.
static void
s_wait_logged (void)
{
    int64_t deadline = clock_mono_ms () + 10000;
    while (clock_mono_ms () < deadline) {
        char traces [TRACES_MAX][64];
        int sends = 0, missing = 0;
        FILE *file = fopen (s_system.gateways [0].log_path, "r");
        char line [4096];
        while (file && fgets (line, sizeof line, file)) {
            json_t *object = json_loads (line, 0, NULL);
            const char *msg = j_str (object, "msg"), *trace = j_str (object, "trace");
            if (msg && trace && !strncmp (msg, "room-send -> ", 13) && sends < TRACES_MAX)
                snprintf (traces [sends++], 64, "%s", trace);
            json_decref (object);
        }
        if (file)
            fclose (file);
        for (int i = 0; i < sends; i++)
            for (size_t e = 0; e < EXPECTED; e++)
                missing += harness_log_lines (s_daemon (s_expected [e].daemon), traces [i],
                                              s_expected [e].prefix, NULL, 0) == 0;
        if (sends >= 2 && missing == 0)
            return;
        usleep (50 * 1000);
    }
}

static void
s_test_trace (void)
{
    printf ("a message's trace id is in the gateway's, the shard's and stored's logs\n");
    int port = s_system.http_port;
    const char *room = api_create_room (port, "ivy", 20, 20, NULL, 0);
    REQUIRE (room);
    ws_client_t *ivy = api_connect (port, "ivy", NULL);
    REQUIRE (ivy);
    json_decref (api_join (ivy, room, "ivy", -1));
    CHECK (api_say (ivy, room, "t-1", "first") > 0);
    CHECK (api_say (ivy, room, "t-2", "second") > 0);
    ws_close (&ivy);
    s_wait_logged ();

    char traces [TRACES_MAX][64];
    int sends = s_read_log (&s_system.gateways [0], "gateway", "room-send -> ", traces);
    REQUIRE (sends == 2);
    CHECK (strlen (traces [0]) >= 16 && strcmp (traces [0], traces [1]) != 0);
    char none [TRACES_MAX][64];
    s_read_log (&s_system.shards [0], "roomd", NULL, none);
    s_read_log (&s_system.stored, "stored", NULL, none);
    for (int i = 0; i < 2; i++) {
        const char *trace = traces [i];
        int missing = 0;
        for (size_t e = 0; e < EXPECTED; e++)
            missing += !CHECK (harness_log_lines (s_daemon (s_expected [e].daemon), trace,
                                                  s_expected [e].prefix, NULL, 0) == 1);
        if (missing)
            fprintf (stderr, "  trace %s is missing from a daemon's log\n", trace);
    }
}

int
main (void)
{
    harness_init ("trace");
    const char *env [] = { "LOG_LEVEL=debug", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_test_trace ();
    return harness_finish ();
}
