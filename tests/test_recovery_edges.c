/*  =========================================================================
    test_recovery_edges - the edges of delivery after faults (issue 10's
    review): against the real system

    - a gap bigger than a socket's queue (SOCKET_QUEUE_MAX): a client
      whose gateway was stopped while more messages were sent than its
      queue holds gets every one of them, in order, once the gateway runs
      again, and is not closed as a slow reader (it read all along);
    - a resend under a stored messageId with another text, after stored
      stalled past the timeout over the first: the room is given what is
      stored (what history says), not the resend's text;
    - a shard killed -9 between stored's commit of a message and its
      fan-out, and not restarted (its rooms move to the other shard), the
      sender not resending: the room's members get the message all the
      same (nothing later in the room would show them the gap);
    - a sinceSeq join far in the past of a big room (pages cut by bytes)
      while messages keep coming: every seq after it once, in order,
      across the message-history pages and the new-messages after them.
    =========================================================================
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"

//  The harness keeps pointers to the daemons it started: one system a test.
static harness_system_t s_systems [4];
//  Each part sends hundreds of messages as fast as they are acknowledged:
//  MESSAGES_PER_S is not what it tests.
static const char *s_no_rate [] = { "MESSAGES_PER_S=0", NULL };

//  ---------------------------------------------------------------------------

static void
s_test_gap_past_queue (void)
{
    printf ("a gap of more messages than a socket's queue holds\n");
    harness_system_t *sys = &s_systems [0];
    //  The queue's bound is a setting; 1,024 frames by default, and a read
    //  of what was missed is a page of up to 1,000.
    const char *env [] = { "SOCKET_QUEUE_MAX=100", "MESSAGES_PER_S=0", NULL };
    REQUIRE (harness_system_start_many (sys, 2, 1, false, env) == 0);
    int one = sys->http_ports [0], two = sys->http_ports [1];
    const char *room = api_create_room (one, "sam", 40, 40, NULL, 0);
    REQUIRE (room);
    ws_client_t *sam = api_connect (one, "sam", "Sam");
    ws_client_t *tia = api_connect (two, "tia", "Tia");
    json_decref (api_join (sam, room, "sam", -1));
    json_decref (api_join (tia, room, "tia", -1));
    char id [32];
    long long last = 0;
    for (int i = 1; i <= 10; i++) {
        snprintf (id, sizeof id, "sam-%d", i);
        last = api_say_retrying (sam, room, id, id, 5);
        CHECK (last == i);
    }
    //  tia's gateway stops long enough for the shard's link to it to time
    //  out; 250 messages meanwhile (sam reads his own as they come).
    kill (sys->gateways [1].pid, SIGSTOP);
    usleep (4000 * 1000);
    for (int i = 11; i <= 260; i++) {
        snprintf (id, sizeof id, "sam-%d", i);
        last = api_say_retrying (sam, room, id, id, 5);
        CHECK (last == i);
        ws_drop (sam, "new-message");
    }
    kill (sys->gateways [1].pid, SIGCONT);
    api_heard_t heard = { .count = 0 };
    api_listen (tia, &heard, last, 10000);
    api_heard_exactly (&heard, last, "tia, on the gateway that stopped");
    CHECK (!ws_is_closed (tia, 0));
    ws_close (&sam);
    ws_close (&tia);
    harness_system_stop (sys);
}

static void
s_test_resend_other_text (void)
{
    printf ("a resend of a stored message under its messageId with another text\n");
    harness_system_t *sys = &s_systems [1];
    const char *env [] = { "REQUEST_TIMEOUT_MS=1000", "MESSAGES_PER_S=0", NULL };
    REQUIRE (harness_system_start (sys, 1, false, env) == 0);
    int port = sys->http_port;
    const char *room = api_create_room (port, "ada", 41, 41, NULL, 0);
    REQUIRE (room);
    ws_client_t *ada = api_connect (port, "ada", "Ada");
    ws_client_t *bo = api_connect (port, "bo", "Bo");
    json_decref (api_join (ada, room, "ada", -1));
    json_decref (api_join (bo, room, "bo", -1));
    //  stored takes the append and stops; the shard gives up at its
    //  timeout (no fan-out), the sender hears 503; resumed, stored commits.
    kill (sys->stored.pid, SIGSTOP);
    pthread_t thread;
    api_resume_later (sys->stored.pid, 2500, &thread);
    ws_send (ada, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "messageId", "ada-1", "message", "the first text");
    json_t *error = ws_expect (ada, "error", API_WAIT_MS);
    CHECK (error != NULL);
    json_decref (error);
    pthread_join (thread, NULL);
    //  The resend says something else under the same messageId.
    long long seq = api_say_retrying (ada, room, "ada-1", "another text", 10);
    CHECK (seq == 1);
    json_t *heard = ws_expect (bo, "new-message", API_WAIT_MS);
    CHECK (heard != NULL);
    json_t *messages = NULL;
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    CHECK (http_call (port, "GET", path, NULL, &messages) == 200);
    CHECK (json_is_array (messages) && json_array_size (messages) == 1);
    const char *stored_text = j_str (json_array_get (messages, 0), "text");
    CHECK (stored_text && strcmp (stored_text, "the first text") == 0);
    if (heard && stored_text) {
        //  What the room was given is what anyone reading history sees.
        CHECK (j_is (heard, "text", stored_text));
        CHECK (j_num (heard, "seq") == 1);
    }
    json_decref (heard);
    json_decref (messages);
    ws_close (&ada);
    ws_close (&bo);
    harness_system_stop (sys);
}

static void
s_test_dead_shard_no_resend (void)
{
    printf ("a shard killed between a message's commit and its fan-out, never resent\n");
    harness_system_t *sys = &s_systems [2];
    REQUIRE (harness_system_start (sys, 2, false, s_no_rate) == 0);
    int port = sys->http_port;
    const char *room = NULL;
    for (int i = 0; i < 40 && !room; i++) {
        const char *made = api_create_room (port, "ada", 42, 42, NULL, 0);
        REQUIRE (made);
        if (harness_shard_owner (sys, made) == 0)
            room = made;
    }
    REQUIRE (room);
    ws_client_t *ada = api_connect (port, "ada", "Ada");
    ws_client_t *bo = api_connect (port, "bo", "Bo");
    json_decref (api_join (ada, room, "ada", -1));
    json_decref (api_join (bo, room, "bo", -1));
    char id [32];
    for (int i = 1; i <= 3; i++) {
        snprintf (id, sizeof id, "ada-%d", i);
        CHECK (api_say (ada, room, id, id) == i);
        CHECK (api_heard (bo, id) == i);
    }
    //  The append waits in stored's hands while its shard dies; stored,
    //  resumed, commits it, and nobody is left to fan it out.
    kill (sys->stored.pid, SIGSTOP);
    ws_send (ada, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "messageId", "ada-4", "message", "ada-4");
    usleep (300 * 1000);
    harness_kill (&sys->shards [0]);
    kill (sys->stored.pid, SIGCONT);
    json_t *error = ws_expect (ada, "error", API_WAIT_MS);
    CHECK (error != NULL);              //  ada is told it failed, and gives up
    json_decref (error);
    CHECK (harness_system_wait (sys, 1, 15000) == 0);
    json_t *messages = NULL;
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    CHECK (http_call (port, "GET", path, NULL, &messages) == 200);
    CHECK (json_is_array (messages) && json_array_size (messages) == 4);
    json_decref (messages);
    //  Stored, so delivered: to bo, and to ada's own socket.
    CHECK (api_heard (bo, "ada-4") == 4);
    CHECK (api_heard (ada, "ada-4") == 4);
    ws_close (&ada);
    ws_close (&bo);
    harness_system_stop (sys);
}

//  A client that keeps sending while another joins.
typedef struct {
    int port;
    const char *room;
    int count;
    long long last;
} talker_t;

static void *
s_talk (void *arg)
{
    talker_t *talker = arg;
    ws_client_t *cy = api_connect (talker->port, "cy", "Cy");
    json_decref (api_join (cy, talker->room, "cy", -1));
    char id [32];
    for (int i = 0; i < talker->count; i++) {
        snprintf (id, sizeof id, "cy-%d", i);
        long long seq = api_say_retrying (cy, talker->room, id, id, 5);
        if (seq > talker->last)
            talker->last = seq;
        ws_drop (cy, "new-message");
        usleep (5 * 1000);
    }
    ws_close (&cy);
    return NULL;
}

static void
s_test_since_while_flowing (void)
{
    printf ("a sinceSeq join far back in a big room while messages keep coming\n");
    harness_system_t *sys = &s_systems [3];
    REQUIRE (harness_system_start (sys, 1, false, s_no_rate) == 0);
    int port = sys->http_port;
    const char *room = api_create_room (port, "ada", 43, 43, NULL, 0);
    REQUIRE (room);
    ws_client_t *ada = api_connect (port, "ada", "Ada");
    json_decref (api_join (ada, room, "ada", -1));
    //  800 of 1,900 characters: a page stops near 1 MiB, about 500. Sent
    //  100 at a time, each hundred's acks awaited.
    static char text [1901];
    memset (text, 'x', 1900);
    char id [32];
    int acked = 0;
    for (int i = 1; i <= 800; i++) {
        snprintf (id, sizeof id, "ada-%d", i);
        memcpy (text, id, strlen (id));
        ws_send (ada, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
                 "messageId", id, "message", text);
        if (i % 100 == 0)
            for (int k = 0; k < 100; k++) {
                json_t *ack = ws_expect (ada, "ack", API_WAIT_MS);
                acked += ack != NULL;
                json_decref (ack);
                ws_drop (ada, "new-message");
            }
    }
    REQUIRE (acked == 800);
    talker_t talker = { port, room, 100, 0 };
    pthread_t thread;
    pthread_create (&thread, NULL, s_talk, &talker);
    usleep (100 * 1000);                //  cy is talking
    ws_client_t *late = api_connect (port, "late", "Late");
    ws_send (late, "{s:s, s:s, s:I}", "action", "join-room", "roomId", room, "sinceSeq",
             (json_int_t) 1);
    //  Every seq from 2 on, in arrival order, whichever frame carries it.
    static long long seqs [2000];
    size_t count = 0;
    bool done = false;
    while (!done && count < 2000) {
        json_t *frame = ws_next (late, API_WAIT_MS);
        if (!frame) {
            done = true;
            break;
        }
        const char *type = j_str (frame, "type");
        if (type && strcmp (type, "message-history") == 0) {
            json_t *messages = j_get (frame, "messages");
            for (size_t i = 0; i < json_array_size (messages) && count < 2000; i++)
                seqs [count++] = (long long) j_num (json_array_get (messages, i), "seq");
        }
        else
        if (type && strcmp (type, "new-message") == 0)
            seqs [count++] = (long long) j_num (frame, "seq");
        json_decref (frame);
    }
    pthread_join (thread, NULL);
    long long newest = talker.last;
    CHECK (newest == 800 + 100);
    bool ok = count == (size_t) (newest - 1);
    size_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        if (seqs [i] != (long long) i + 2) {
            ok = false;
            wrong = i;
            break;
        }
    if (!ok)
        fprintf (stderr, "  late heard %zu messages (expected seq 2..%lld); first wrong at %zu: "
                 "%lld\n", count, newest, wrong, count? seqs [wrong]: -1);
    CHECK (ok);
    ws_close (&late);
    ws_close (&ada);
    harness_system_stop (sys);
}

int
main (void)
{
    harness_init ("recovery_edges");
    s_test_gap_past_queue ();
    s_test_resend_other_text ();
    s_test_dead_shard_no_resend ();
    s_test_since_while_flowing ();
    return harness_finish ();
}
