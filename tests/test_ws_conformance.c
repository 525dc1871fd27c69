/*  =========================================================================
    test_ws_conformance - the gateway's RFC 6455, as an independent client
    sees it: npm's ws (tests/test_ws_conformance.js) against the real
    system (stored, gateway, 1 shard)

    The script sends fragments with control frames between them, every
    close status (those a peer may send are echoed; 999, 1004, 1005, 1006,
    1015 and the like, and a close of one byte, close 1002), invalid UTF-8
    (1007), a message over 64 KiB in fragments (1009), and a frame in the
    same packet as the upgrade request. Each of its lines is a check here.
    Node and bench/node_modules/ws are installed by ./nearchat test.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "harness_system.h"

static harness_system_t s_system;

int
main (void)
{
    harness_init ("ws_conformance");
    char modules [512];
    snprintf (modules, sizeof modules, "%s/bench/node_modules/ws", NEARCHAT_SOURCE_DIR);
    FILE *found = fopen (modules, "r");
    if (!found)
        printf ("node's ws is missing (%s): ./nearchat test installs it\n", modules);
    REQUIRE (found);
    fclose (found);
    const char *env [] = { "LOG_LEVEL=info", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    char command [1024];
    snprintf (command, sizeof command,
              "NODE_PATH=%s/bench/node_modules timeout 120 node %s/tests/test_ws_conformance.js %d 2>&1",
              NEARCHAT_SOURCE_DIR, NEARCHAT_SOURCE_DIR, s_system.http_port);
    FILE *script = popen (command, "r");
    REQUIRE (script);
    char line [1024];
    int checks = 0;
    while (fgets (line, sizeof line, script)) {
        fputs (line, stdout);
        if (strncmp (line, "ok ", 3) == 0)
            CHECK (++checks > 0);
        else
        if (strncmp (line, "FAIL ", 5) == 0)
            CHECK (!"the script's check above");
    }
    int status = pclose (script);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    CHECK (checks >= 30);               //  every check ran
    return harness_finish ();
}
