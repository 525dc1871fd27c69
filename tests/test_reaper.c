/*  =========================================================================
    test_reaper - idle rooms closed by the reaper, busy rooms left alone,
    against the real system (stored, gateway, 1 shard, reaper) with
    ROOM_IDLE_TIMEOUT_S=2 and REAPER_INTERVAL_S=1

    An idle room is closed and its members hear room-closed; a room where
    someone speaks every few hundred ms stays open for several idle
    timeouts; once it falls silent, it is closed too. A dead run's 3,000
    connection records (written to stored as its gateway would) are cleared
    in one pass, but for those whose room's shard is away, which a pass
    after the shard is back clears. Waits are bounded; nothing asserts how
    soon.
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

//  Connections of a dead run in stored, as a gateway's key writes them.
#define DEAD_CONNECTIONS 3000

static proto_msg_t *
s_stored_call (proto_client_t *client, proto_msg_t request)
{
    return harness_call (client, &request);
}

//  Lines of the reaper's log that begin with prefix; the last one in last.
static int
s_reaper_said (const char *prefix, char *last, size_t size)
{
    FILE *file = fopen (s_system.reaper.log_path, "r");
    int count = 0;
    char line [4096];
    while (file && fgets (line, sizeof line, file)) {
        json_t *object = json_loads (line, 0, NULL);
        const char *msg = j_str (object, "msg");
        if (msg && !strncmp (msg, prefix, strlen (prefix))) {
            count++;
            if (last)
                snprintf (last, size, "%s", msg);
        }
        json_decref (object);
    }
    if (file)
        fclose (file);
    return count;
}

//  The number after prefix in the reaper's index-th line (1-based) that
//  begins with prefix; -1 if there is none.
static int
s_reaper_number (const char *prefix, int index)
{
    FILE *file = fopen (s_system.reaper.log_path, "r");
    int count = 0, number = -1;
    char line [4096];
    while (file && number < 0 && fgets (line, sizeof line, file)) {
        json_t *object = json_loads (line, 0, NULL);
        const char *msg = j_str (object, "msg");
        if (msg && !strncmp (msg, prefix, strlen (prefix)) && ++count == index)
            number = atoi (msg + strlen (prefix));
        json_decref (object);
    }
    if (file)
        fclose (file);
    return number;
}

//  Wait (120 s at most: a pass comes every REAPER_INTERVAL_S and takes a
//  few round trips a connection) until the reaper has said prefix count
//  times.
static bool
s_reaper_says (const char *prefix, int count)
{
    int64_t deadline = clock_mono_ms () + 120000;
    while (s_reaper_said (prefix, NULL, 0) < count && clock_mono_ms () < deadline)
        usleep (200 * 1000);
    return s_reaper_said (prefix, NULL, 0) >= count;
}

static uint32_t
s_dead_left (proto_client_t *client)
{
    proto_msg_t *reply = s_stored_call (client, (proto_msg_t) { .type = PROTO_CONN_LIST,
        .conn_list = { .gateway_id = "gw-dead", .incarnation = "run-dead" } });
    uint32_t left = reply && reply->type == PROTO_CONN_LIST_REPLY
                  ? reply->conn_list_reply.count: UINT32_MAX;
    proto_msg_destroy (&reply);
    return left;
}

static void
s_test_dead_run (void)
{
    printf ("a dead run's %d connections are cleared in one pass, but for those whose "
            "room's shard is away\n", DEAD_CONNECTIONS);
    const char *room = api_create_room (s_port, "gil", 31.0, 31.0, NULL, 0);
    REQUIRE (room);
    char room_id [64];
    snprintf (room_id, sizeof room_id, "%s", room);
    //  With the only shard away, a connection in a room cannot leave it
    //  (the gateway answers 503): it is kept for a later pass. One in ten
    //  is in the room, so each batch keeps some (the reaper used to stop
    //  at the first batch that kept one, and list the same ones first in
    //  the next pass: under a hundred a pass).
    harness_shard_stop (&s_system, 0, false);
    REQUIRE (harness_system_wait (&s_system, 0, 10000) == 0);
    proto_client_t *gateway = harness_client_as (s_system.stored.endpoint, BUS_STORED,
                                                 BUS_GATEWAY);
    REQUIRE (gateway);
    //  The records first (pipelined, 64 at a time), then the run's only
    //  beat, a minute old: the reaper's next pass finds it silent and dead
    //  with every record already there.
    int acked = 0, in_room = 0;
    for (int sent = 0, received = 0; received < DEAD_CONNECTIONS; ) {
        while (sent < DEAD_CONNECTIONS && sent - received < 64) {
            char conn_id [32], user_id [32];
            snprintf (conn_id, sizeof conn_id, "dead-%05d", sent);
            snprintf (user_id, sizeof user_id, "ghost-%d", sent);
            bool in = sent % 10 == 0;
            in_room += in;
            proto_msg_t put = { .type = PROTO_CONN_PUT, .conn_put.connection = {
                .conn_id = conn_id, .gateway_id = "gw-dead", .incarnation = "run-dead",
                .user_id = user_id, .room_id = in? room_id: NULL,
                .connected_at_ms = clock_now_ms () } };
            REQUIRE (proto_client_send (gateway, &put) == 0);
            sent++;
        }
        proto_msg_t *reply = proto_client_recv (gateway, 10000);
        REQUIRE (reply);
        acked += reply->type == PROTO_OK;
        proto_msg_destroy (&reply);
        received++;
    }
    CHECK (acked == DEAD_CONNECTIONS);
    proto_msg_t *reply = s_stored_call (gateway, (proto_msg_t) { .type = PROTO_GATEWAY_BEAT,
        .gateway_beat = { .gateway_id = "gw-dead", .incarnation = "run-dead",
                          .at_ms = clock_now_ms () - 60000, .first = true } });
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);

    //  One pass: one line for the run, with every connection not in the room.
    CHECK (s_reaper_says ("cleared ", 1));
    char said [256] = "", expected [96];
    CHECK (s_reaper_said ("cleared ", said, sizeof said) == 1);
    snprintf (expected, sizeof expected, "cleared %d connections of gateway gw-dead ",
              DEAD_CONNECTIONS - in_room);
    if (!CHECK (!strncmp (said, expected, strlen (expected))))
        fprintf (stderr, "  the reaper said: %s\n", said);
    CHECK (s_dead_left (gateway) == (uint32_t) in_room);
    CHECK (s_reaper_said ("forgot gateway gw-dead", NULL, 0) == 0);

    //  The shard back: a later pass clears the rest (the pass under way
    //  when it came back may clear some of them) and forgets the run.
    REQUIRE (harness_shard_start (&s_system, 0) == 0);
    CHECK (s_reaper_says ("forgot gateway gw-dead", 1));
    int lines = s_reaper_said ("cleared ", NULL, 0), total = 0;
    for (int i = 1; i <= lines; i++)
        total += s_reaper_number ("cleared ", i);
    CHECK (lines >= 2);
    if (!CHECK (total == DEAD_CONNECTIONS))
        fprintf (stderr, "  the reaper cleared %d in %d lines\n", total, lines);
    CHECK (s_dead_left (gateway) == 0);
    //  Forgotten: a beat of it is refused as unknown.
    reply = s_stored_call (gateway, (proto_msg_t) { .type = PROTO_GATEWAY_BEAT,
        .gateway_beat = { .gateway_id = "gw-dead", .incarnation = "run-dead",
                          .at_ms = clock_now_ms () } });
    CHECK (reply && reply->type == PROTO_ERROR && reply->error.status == 410);
    proto_msg_destroy (&reply);
    proto_client_destroy (&gateway);
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
    s_test_dead_run ();
    s_test_dead_reaper ();

    return harness_finish ();
}
