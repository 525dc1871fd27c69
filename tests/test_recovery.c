/*  =========================================================================
    test_recovery - what is stored is delivered, once and in order, through
    the faults a deployment meets (issue 10): against the real system

    - stored paused past the request timeout while a message is in its
      hands, then killed -9 mid-stream: the sender's resend of a message
      stored meanwhile is fanned out then (it never was), and every member
      gets every stored message exactly once, in seq order;
    - a shard paused long enough for the gateway to route its rooms to the
      other one, while users join and leave there, then resumed: it serves
      the rooms as stored has them, not from its old copy;
    - one of two gateways stopped while messages flow: its clients get
      every message, in order, once it runs again (the missed ones are
      read from stored).
    =========================================================================
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

//  The harness keeps pointers to the daemons it started: one system a test.
static harness_system_t s_systems [3];

//  The messages of room over HTTP, oldest first: how many, and whether
//  their seqs are 1..count.
static long long
s_history_count (int port, const char *room)
{
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages?limit=1000", room);
    json_t *messages = NULL;
    CHECK (http_call (port, "GET", path, NULL, &messages) == 200);
    long long count = json_is_array (messages)? (long long) json_array_size (messages): -1;
    for (long long i = 0; i < count; i++)
        CHECK (j_num (json_array_get (messages, (size_t) i), "seq") == (double) (i + 1));
    json_decref (messages);
    return count;
}

//  ---------------------------------------------------------------------------

static void
s_test_stored_faults (void)
{
    printf ("stored paused past the timeout, then killed -9, mid-stream\n");
    harness_system_t *sys = &s_systems [0];
    const char *env [] = { "REQUEST_TIMEOUT_MS=1000", NULL };
    REQUIRE (harness_system_start (sys, 1, false, env) == 0);
    int port = sys->http_port;
    const char *room = api_create_room (port, "ada", 10, 10, NULL, 0);
    REQUIRE (room);
    const char *users [] = { "ada", "bo", "cy" };
    ws_client_t *clients [3];
    for (int i = 0; i < 3; i++) {
        clients [i] = api_connect (port, users [i], users [i]);
        json_decref (api_join (clients [i], room, users [i], -1));
    }
    ws_client_t *ada = clients [0];
    static api_heard_t heard [3];
    long long last = 0;
    char id [32], text [32];
    for (int i = 1; i <= 30; i++) {
        snprintf (id, sizeof id, "ada-%d", i);
        snprintf (text, sizeof text, "message %d", i);
        if (i == 10) {
            //  stored takes the append into its socket's buffer and stops;
            //  the shard gives up at its timeout and the sender hears 503.
            //  Resumed, stored commits it: the resend must deliver it.
            kill (sys->stored.pid, SIGSTOP);
            pthread_t thread;
            api_resume_later (sys->stored.pid, 2500, &thread);
            last = api_say_retrying (ada, room, id, text, 20);
            pthread_join (thread, NULL);
        }
        else
        if (i == 20) {
            //  Killed with the append maybe committed, maybe not.
            ws_send (ada, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
                     "messageId", id, "message", text);
            usleep (2000);
            harness_kill (&sys->stored);
            REQUIRE (harness_start (&sys->stored) == 0);
            last = api_say_retrying (ada, room, id, text, 20);
        }
        else
            last = api_say_retrying (ada, room, id, text, 20);
        CHECK (last == i);
        if (i == 10 || i == 20)
            //  Delivered now, by the resend, not later as a gap that the
            //  next message would reveal.
            for (int member = 0; member < 3; member++) {
                api_listen (clients [member], &heard [member], i, API_WAIT_MS);
                CHECK (heard [member].count && heard [member].seqs [heard [member].count - 1] == i);
            }
    }
    for (int i = 0; i < 3; i++) {
        api_listen (clients [i], &heard [i], last, API_WAIT_MS);
        api_heard_exactly (&heard [i], last, users [i]);
        ws_close (&clients [i]);
    }
    CHECK (s_history_count (port, room) == last);
    harness_system_stop (sys);
}

static void
s_test_paused_shard (void)
{
    printf ("a shard paused while users join and leave its rooms elsewhere, resumed\n");
    harness_system_t *sys = &s_systems [1];
    REQUIRE (harness_system_start (sys, 2, false, NULL) == 0);
    int port = sys->http_port;
    //  Rooms of the first shard's.
    const char *rooms [4];
    int count = 0;
    for (int i = 0; i < 40 && count < 4; i++) {
        const char *room = api_create_room (port, "owner", 20, 20, NULL, 0);
        REQUIRE (room);
        if (harness_shard_owner (sys, room) == 0)
            rooms [count++] = room;
    }
    REQUIRE (count == 4);
    ws_client_t *stays [4], *leaves [4], *comes [4];
    char user [32];
    for (int i = 0; i < count; i++) {
        snprintf (user, sizeof user, "stays-%d", i);
        stays [i] = api_connect (port, user, user);
        json_decref (api_join (stays [i], rooms [i], user, -1));
        snprintf (user, sizeof user, "leaves-%d", i);
        leaves [i] = api_connect (port, user, user);
        json_decref (api_join (leaves [i], rooms [i], user, -1));
    }
    kill (sys->shards [0].pid, SIGSTOP);
    CHECK (harness_system_wait (sys, 1, 15000) == 0);      //  the gateway dropped it
    for (int i = 0; i < count; i++) {
        snprintf (user, sizeof user, "comes-%d", i);
        comes [i] = api_connect (port, user, user);
        json_decref (api_join (comes [i], rooms [i], user, -1));
        ws_send (leaves [i], "{s:s, s:s}", "action", "leave-room", "roomId", rooms [i]);
        snprintf (user, sizeof user, "leaves-%d", i);
        json_t *left = ws_expect_where (stays [i], "user-left", "userId", user, API_WAIT_MS);
        CHECK (left != NULL);
        json_decref (left);
    }
    kill (sys->shards [0].pid, SIGCONT);
    CHECK (harness_system_wait (sys, 2, 15000) == 0);
    for (int i = 0; i < count; i++) {
        //  The one who left is neither participant nor online (read before
        //  anything is written: nothing has told the shard so but the
        //  gateway's fresh welcome); the one who joined may send.
        snprintf (user, sizeof user, "comes-%d", i);
        char path [256];
        snprintf (path, sizeof path, "/rooms/%s", rooms [i]);
        json_t *info = NULL;
        CHECK (http_call (port, "GET", path, NULL, &info) == 200);
        CHECK (j_holds_once (j_get (info, "participants"), user));
        CHECK (j_holds_once (j_get (info, "online"), user));
        snprintf (user, sizeof user, "leaves-%d", i);
        CHECK (j_lacks (j_get (info, "participants"), user));
        CHECK (j_lacks (j_get (info, "online"), user));
        json_decref (info);
        CHECK (api_say_retrying (comes [i], rooms [i], "hello", "I came during the pause", 3) > 0);
        ws_close (&stays [i]);
        ws_close (&leaves [i]);
        ws_close (&comes [i]);
    }
    harness_system_stop (sys);
}

static void
s_test_stopped_gateway (void)
{
    printf ("one of two gateways stopped while messages flow, then resumed\n");
    harness_system_t *sys = &s_systems [2];
    REQUIRE (harness_system_start_many (sys, 2, 1, false, NULL) == 0);
    int one = sys->http_ports [0], two = sys->http_ports [1];
    const char *room = api_create_room (one, "sam", 30, 30, NULL, 0);
    REQUIRE (room);
    ws_client_t *sam = api_connect (one, "sam", "Sam");
    ws_client_t *tia = api_connect (two, "tia", "Tia");
    json_decref (api_join (sam, room, "sam", -1));
    json_decref (api_join (tia, room, "tia", -1));
    long long last = 0;
    char id [32];
    for (int i = 1; i <= 90; i++) {
        if (i == 20)
            //  Long enough for the shard's link to the gateway to time out
            //  (its events for it are dropped, not queued).
            kill (sys->gateways [1].pid, SIGSTOP);
        if (i == 70)
            kill (sys->gateways [1].pid, SIGCONT);
        snprintf (id, sizeof id, "sam-%d", i);
        last = api_say_retrying (sam, room, id, id, 5);
        CHECK (last == i);
        usleep (100 * 1000);
    }
    //  Stopped again for the last messages of all: no later message shows
    //  the gap, the shard's coming back to the gateway does.
    kill (sys->gateways [1].pid, SIGSTOP);
    usleep (4000 * 1000);               //  the shard's link to it times out
    for (int i = 91; i <= 100; i++) {
        snprintf (id, sizeof id, "sam-%d", i);
        last = api_say_retrying (sam, room, id, id, 5);
        CHECK (last == i);
    }
    kill (sys->gateways [1].pid, SIGCONT);
    api_heard_t heard = { .count = 0 };
    api_listen (tia, &heard, last, 10000);
    api_heard_exactly (&heard, last, "tia, on the gateway that stopped");
    heard.count = 0;
    api_listen (sam, &heard, last, API_WAIT_MS);
    api_heard_exactly (&heard, last, "sam");
    ws_close (&sam);
    ws_close (&tia);
    harness_system_stop (sys);
}

int
main (void)
{
    harness_init ("recovery");
    s_test_stored_faults ();
    s_test_paused_shard ();
    s_test_stopped_gateway ();
    return harness_finish ();
}
