/*  =========================================================================
    test_ws_refused - a WebSocket the event loop cannot take over is
    refused, never served on a civetweb thread, against the real system
    (stored, gateway, 1 shard)

    Every WebSocket is the event loop's (loop.c): civetweb answers the
    handshake, and the loop takes the socket over with descriptors of its
    own. Here the daemons run with few descriptors (RLIMIT_NOFILE), and
    sockets are opened one by one until the gateway has none left to take
    one over: that socket must get its 101 and then a close frame of 1011
    and the end of the stream, and the gateway must log the refusal. The
    sockets taken before it are still served (ping, pong), and once some
    of them close, a new socket is taken over again.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include "api.h"
#include "harness_system.h"

#define FILES_MAX       160         //  each daemon's descriptors
#define SOCKETS_MAX     FILES_MAX   //  a bound: the refusal comes well before
#define FREED           16          //  sockets closed to make room again

static harness_system_t s_system;

//  Whether raw's first frames are a pong (the loop serves it).
static bool
s_served (ws_raw_t *raw)
{
    if (ws_raw_send (raw, "{\"action\":\"ping\"}"))
        return false;
    ws_raw_drained_t drained;
    ws_raw_drain (raw, 1000, &drained);
    return drained.texts >= 1 && strstr (drained.text, "pong") && drained.close_code == 0;
}

int
main (void)
{
    harness_init ("ws_refused");
    //  The daemons inherit a low limit; this process keeps its own.
    struct rlimit saved, low;
    REQUIRE (getrlimit (RLIMIT_NOFILE, &saved) == 0);
    low = saved;
    low.rlim_cur = FILES_MAX;
    REQUIRE (setrlimit (RLIMIT_NOFILE, &low) == 0);
    int started = harness_system_start (&s_system, 1, false, NULL);
    REQUIRE (setrlimit (RLIMIT_NOFILE, &saved) == 0);
    REQUIRE (started == 0);

    printf ("sockets opened one by one until the gateway has no descriptors left for one: "
            "101, then a close of 1011\n");
    static ws_raw_t *sockets [SOCKETS_MAX];
    int open = 0;
    ws_raw_drained_t refused = { 0 };
    bool seen = false;
    while (open < SOCKETS_MAX && !seen) {
        char path [64];
        snprintf (path, sizeof path, "/ws?userId=fd-%d", open);
        ws_raw_t *raw = ws_raw_open (s_system.http_port, path, 0);
        if (!raw)
            break;                      //  no 101: not what this test is after
        //  A refused socket is closed at once; a served one stays quiet.
        ws_raw_drained_t drained;
        if (ws_raw_drain (raw, 300, &drained)) {
            refused = drained;
            seen = true;
            //  After its close frame, the end of the stream.
            if (!refused.ended && ws_raw_drain (raw, 2000, &drained))
                refused.ended = drained.ended;
            ws_raw_close (&raw);
        }
        else
            sockets [open++] = raw;
    }
    printf ("  %d sockets taken over before the refusal\n", open);
    if (CHECK (seen)) {
        CHECK (refused.close_code == 1011);
        CHECK (*refused.close_reason);
        CHECK (refused.ended);
        char line [512] = "";
        CHECK (harness_log_lines (&s_system.gateways [0], NULL, "a WebSocket of user fd-",
                                  line, sizeof line) == 1);
        CHECK (strstr (line, "could not be taken over") && strstr (line, "refused (1011)"));
    }
    CHECK (open > 0);

    printf ("the sockets taken before it are served; after %d close, a new one is taken\n",
            FREED);
    int freed = 0;
    for (int i = open - 1; i >= 0 && freed < FREED; i--, freed++)
        ws_raw_close (&sockets [i]);
    open -= freed;
    if (open > 0)
        CHECK (s_served (sockets [0]));
    ws_raw_t *again = NULL;
    for (int tries = 0; tries < 50 && !again; tries++) {
        again = ws_raw_open (s_system.http_port, "/ws?userId=again", 0);
        if (again && !s_served (again))
            ws_raw_close (&again);
        if (!again)
            usleep (100 * 1000);        //  the loop closes the freed ones in its next turns
    }
    CHECK (again != NULL);
    if (again)
        ws_raw_close (&again);
    for (int i = 0; i < open; i++)
        ws_raw_close (&sockets [i]);
    return harness_finish ();
}
