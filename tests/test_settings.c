/*  =========================================================================
    test_settings - every binary's command line: --help lists each setting
    with its environment variable and default, --version answers, --check
    prints the settings, and a bad value or an unknown flag exits 2 with a
    message that names it
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "harness.h"

//  Run binary with args and env (a shell line), stdout into out; returns
//  the exit status.
static int
s_stdout (const char *env, const char *binary, const char *args, char *out, size_t size)
{
    char command [1024];
    snprintf (command, sizeof command, "env %s %s/%s %s 2>/dev/null", env, NEARCHAT_BIN_DIR,
              binary, args);
    FILE *pipe = popen (command, "r");
    if (!pipe)
        return -1;
    size_t used = fread (out, 1, size - 1, pipe);
    out [used] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

typedef struct {
    const char *binary;
    const char *settings [8];       //  some of what --help must list
    const char *bad;                //  NAME=value it must refuse
} case_t;

static const case_t s_cases [] = {
    { "stored", { "STORED_ENDPOINT", "DATA_DIR", "MESSAGE_TTL_S", "LMDB_MAP_SIZE_MB",
                  "ZMQ_MONITOR", "TAP_ENDPOINT", "LOG_LEVEL", NULL }, "LMDB_MAP_SIZE_MB=lots" },
    { "gateway", { "HTTP_PORT", "STORED_ENDPOINT", "MAX_CONNECTIONS", "HTTP_BIND",
                   "HTTP_BODY_TIMEOUT_MS", "ZMQ_MONITOR", "LOG_LEVEL", NULL }, "HTTP_PORT=70000" },
    { "roomd", { "SHARD_ID", "GATEWAY_ENDPOINTS", "HEARTBEAT_MS", "TYPING_THROTTLE_MS",
                 "ZMQ_MONITOR", "TAP_ENDPOINT", "LOG_LEVEL", NULL }, "HEARTBEAT_MS=-1" },
    { "reaper", { "ROOM_IDLE_TIMEOUT_S", "REAPER_INTERVAL_S", "GATEWAY_TIMEOUT_S",
                  "ZMQ_MONITOR", "TAP_ENDPOINT", "LOG_LEVEL", NULL }, "LOG_LEVEL=loud" },
};

int
main (void)
{
    harness_init ("settings");
    static char out [16384];
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases [0]; i++) {
        const case_t *c = &s_cases [i];
        printf ("%s: --help, --version, --check, bad values\n", c->binary);
        CHECK (s_stdout ("", c->binary, "--help", out, sizeof out) == 0);
        CHECK (strstr (out, "usage:") != NULL);
        for (int s = 0; c->settings [s]; s++)
            if (!CHECK (strstr (out, c->settings [s]) != NULL))
                fprintf (stderr, "  %s --help does not list %s\n", c->binary, c->settings [s]);
        CHECK (strstr (out, "default") != NULL);
        CHECK (s_stdout ("", c->binary, "--version", out, sizeof out) == 0);
        CHECK (strstr (out, c->binary) && strstr (out, "0."));
        CHECK (s_stdout ("LOG_LEVEL=warn", c->binary, "--check", out, sizeof out) == 0);
        CHECK (strstr (out, "LOG_LEVEL=warn\n") != NULL);

        char output [1024];
        const char *bad_env [] = { c->bad, NULL };
        CHECK (harness_run (c->binary, bad_env, NULL, output, sizeof output) == 2);
        char name [64];
        snprintf (name, sizeof name, "%.*s", (int) strcspn (c->bad, "="), c->bad);
        if (!CHECK (strstr (output, name) != NULL))
            fprintf (stderr, "  %s said: %s\n", c->binary, output);
        const char *no_env [] = { NULL };
        const char *unknown [] = { "--no-such-flag=1", NULL };
        CHECK (harness_run (c->binary, no_env, unknown, output, sizeof output) == 2);
        CHECK (strstr (output, "--no-such-flag") != NULL);
        //  A flag's value is checked as the variable's is.
        char flag [96];
        snprintf (flag, sizeof flag, "--%s", c->bad);
        for (char *at = flag + 2; *at && *at != '='; at++)
            *at = *at == '_'? '-': (char) (*at - 'A' + 'a');
        const char *bad_flag [] = { flag, NULL };
        CHECK (harness_run (c->binary, no_env, bad_flag, output, sizeof output) == 2);
        CHECK (strstr (output, name) != NULL);
    }
    printf ("gateway: listens on 127.0.0.1 unless told otherwise, and holds no TLS\n");
    CHECK (s_stdout ("", "gateway", "--check", out, sizeof out) == 0);
    CHECK (strstr (out, "HTTP_BIND=127.0.0.1\n") != NULL);
    CHECK (s_stdout ("HTTP_BIND=0.0.0.0", "gateway", "--check", out, sizeof out) == 0);
    CHECK (strstr (out, "HTTP_BIND=0.0.0.0\n") != NULL);
    //  TLS_CERT, TLS_KEY and HTTPS_PORT configure the edge (gateway/edge/),
    //  and no writer threads are left to count.
    CHECK (s_stdout ("", "gateway", "--help", out, sizeof out) == 0);
    const char *gone [] = { "TLS_CERT", "TLS_KEY", "HTTPS_PORT", "WRITER_THREADS" };
    for (size_t i = 0; i < sizeof gone / sizeof gone [0]; i++)
        if (!CHECK (strstr (out, gone [i]) == NULL))
            fprintf (stderr, "  gateway --help still lists %s\n", gone [i]);
    const char *slow [] = { "HTTP_BODY_TIMEOUT_MS=50", NULL };
    char refused [1024];
    CHECK (harness_run ("gateway", slow, NULL, refused, sizeof refused) == 2);
    CHECK (strstr (refused, "HTTP_BODY_TIMEOUT_MS") != NULL);

    printf ("the tools: nearchat-spy and nearchat-ping\n");
    CHECK (s_stdout ("", "nearchat-spy", "--help", out, sizeof out) == 0 && strstr (out, "--room"));
    CHECK (s_stdout ("", "nearchat-ping", "--version", out, sizeof out) == 0);
    CHECK (s_stdout ("", "nearchat-ping", "--timeout x tcp://127.0.0.1:1", out, sizeof out) == 2);
    CHECK (s_stdout ("", "nearchat-ping", "--timeout 200 tcp://127.0.0.1:1", out, sizeof out) == 1);
    return harness_finish ();
}
