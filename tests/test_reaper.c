/*  =========================================================================
    test_reaper - idle rooms closed by the reaper, busy rooms left alone,
    against the real system (stored, gateway, 1 shard, reaper) with
    ROOM_IDLE_TIMEOUT_S=2 and REAPER_INTERVAL_S=1

    An idle room is closed and its members hear room-closed; a room where
    someone speaks every few hundred ms stays open for several idle
    timeouts; once it falls silent, it is closed too. Waits are bounded;
    nothing asserts how soon.
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
static int s_port;

static const char *
s_status (const char *room)
{
    static char status [32];
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", room);
    json_t *info = NULL;
    CHECK (http_call (s_port, "GET", path, NULL, &info) == 200);
    snprintf (status, sizeof status, "%s", j_str (info, "status")? j_str (info, "status"): "?");
    json_decref (info);
    return status;
}

static void
s_test_reaper (void)
{
    printf ("an idle room is closed; a busy one is not, until it falls silent\n");
    const char *idle = api_create_room (s_port, "ida", 30.0, 30.0, NULL, 0);
    const char *busy = api_create_room (s_port, "bea", 30.01, 30.0, NULL, 0);
    REQUIRE (idle && busy);
    int64_t started = clock_mono_ms ();
    ws_client_t *ida = api_connect (s_port, "ida", "Ida");
    ws_client_t *bea = api_connect (s_port, "bea", "Bea");
    ws_client_t *ben = api_connect (s_port, "ben", "Ben");
    json_decref (api_join (ida, idle, "ida", -1));
    json_decref (api_join (bea, busy, "bea", -1));
    json_decref (api_join (ben, busy, "ben", -1));

    //  Bea speaks every 300 ms for at least 6 s (three idle timeouts and
    //  more) and until the idle room has been closed (20 s at most).
    json_t *closed = NULL;
    int said = 0;
    while (clock_mono_ms () - started < 20000) {
        char id [32];
        snprintf (id, sizeof id, "bea-%d", ++said);
        if (api_say (bea, busy, id, "still here") < 0)
            break;
        usleep (300 * 1000);
        if (!closed && ws_pending (ida, "room-closed"))
            closed = ws_expect (ida, "room-closed", 0);
        if (closed && clock_mono_ms () - started >= 6000)
            break;
    }
    CHECK (closed != NULL);
    CHECK (j_is (closed, "roomId", idle));
    json_decref (closed);
    CHECK (!strcmp (s_status (idle), "closed"));

    //  The busy room was never closed.
    CHECK (ws_quiet (bea, "room-closed", 0));
    CHECK (ws_quiet (ben, "room-closed", 0));
    CHECK (!strcmp (s_status (busy), "active"));
    CHECK (api_heard (ben, "still here") > 0);

    //  An idle room is no longer offered by search.
    json_t *rooms = NULL;
    CHECK (http_call (s_port, "GET", "/rooms?latitude=30&longitude=30&roomType=public", NULL, &rooms) == 200);
    size_t index;
    json_t *room;
    json_array_foreach (rooms, index, room)
        CHECK (!j_str (room, "id") || strcmp (j_str (room, "id"), idle));
    json_decref (rooms);

    //  Silence: the busy room is closed in its turn, and both members hear it.
    ws_discard (ben);
    closed = ws_expect (ben, "room-closed", 15000);
    CHECK (j_is (closed, "roomId", busy));
    json_decref (closed);
    closed = ws_expect (bea, "room-closed", API_WAIT_MS);
    CHECK (j_is (closed, "roomId", busy));
    json_decref (closed);
    CHECK (!strcmp (s_status (busy), "closed"));

    ws_close (&ida);
    ws_close (&bea);
    ws_close (&ben);
}

//  The reaper's state in /healthz (and the status), and in /metrics.
static const char *
s_reaper (int port, int *status, int *up)
{
    static char reaper [16];
    json_t *health = NULL;
    http_response_t response;
    *status = http_request (port, "GET", "/healthz", NULL, 0, &response);
    health = json_loads (response.body, 0, NULL);
    http_response_free (&response);
    snprintf (reaper, sizeof reaper, "%s", j_str (health, "reaper")? j_str (health, "reaper"): "?");
    json_decref (health);
    *up = -1;
    if (http_request (port, "GET", "/metrics", NULL, 0, &response) == 200) {
        const char *at = strstr (response.body, "nearchat_up{daemon=\"reaper\"} ");
        if (at)
            *up = atoi (at + strlen ("nearchat_up{daemon=\"reaper\"} "));
    }
    http_response_free (&response);
    return reaper;
}

static void
s_test_dead_reaper (void)
{
    printf ("the reaper killed: /healthz and nearchat_up say so\n");
    int port = s_port, status, up;
    CHECK (!strcmp (s_reaper (port, &status, &up), "up"));
    CHECK (status == 200 && up == 1);
    harness_kill (&s_system.reaper);
    bool down = false;
    int64_t deadline = clock_mono_ms () + 15000;
    while (!down && clock_mono_ms () < deadline) {
        down = !strcmp (s_reaper (port, &status, &up), "down");
        if (!down)
            usleep (200 * 1000);
    }
    CHECK (down);
    CHECK (status == 200);
    CHECK (up == 0);
}

int
main (void)
{
    harness_init ("reaper");
    const char *env [] = { "ROOM_IDLE_TIMEOUT_S=2", "REAPER_INTERVAL_S=1", "REAPER_TIMEOUT_S=3",
                           NULL };
    REQUIRE (harness_system_start (&s_system, 1, true, env) == 0);
    s_port = s_system.http_port;

    s_test_reaper ();
    s_test_dead_reaper ();

    return harness_finish ();
}
