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
    usleep (300 * 1000);                //  the last lines reach the files

    char traces [TRACES_MAX][64];
    int sends = s_read_log (&s_system.gateways [0], "gateway", "room-send -> ", traces);
    REQUIRE (sends == 2);
    CHECK (strlen (traces [0]) >= 16 && strcmp (traces [0], traces [1]) != 0);
    char none [TRACES_MAX][64];
    s_read_log (&s_system.shards [0], "roomd", NULL, none);
    s_read_log (&s_system.stored, "stored", NULL, none);
    for (int i = 0; i < 2; i++) {
        const char *trace = traces [i];
        if (!CHECK (harness_log_lines (&s_system.shards [0], trace, "room-send for room", NULL, 0) == 1)
        ||  !CHECK (harness_log_lines (&s_system.shards [0], trace, "msg-append -> stored", NULL, 0) == 1)
        ||  !CHECK (harness_log_lines (&s_system.shards [0], trace, "event-message fanned out", NULL, 0) == 1)
        ||  !CHECK (harness_log_lines (&s_system.stored, trace, "msg-append committed", NULL, 0) == 1)
        ||  !CHECK (harness_log_lines (&s_system.gateways [0], trace, "event-message for room", NULL, 0) == 1))
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
