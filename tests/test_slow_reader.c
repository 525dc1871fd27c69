/*  =========================================================================
    test_slow_reader - a client that never reads does not stop the others
    from receiving, against the real system (stored, gateway, 1 shard)

    Several raw sockets with small receive buffers join a room and read
    nothing. A sender then puts enough into the room (thousands of messages
    of 4000 characters, far more than the kernel's socket buffers hold) that
    a gateway writing to those sockets in line with the others, or with a
    few threads that each wait on one of them, would stall. The other member
    must receive every message, in order, with no gap longer than 10 s. The
    slow sockets must end up closed (issue 3: a bounded queue per socket,
    past it the socket is closed), and each, once it reads, must read every
    byte that was on its way and then a close frame of 1008 with a reason
    (issue 10: it saw the stream end, 1006); how much each was sent and the
    gateway's memory are printed.
    =========================================================================
*/

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define MESSAGES        3000
#define SLOW_READERS    8
#define TEXT_CHARS      4000
#define IN_FLIGHT       32          //  sends not yet acknowledged, at most

static harness_system_t s_system;
static int s_port;

//  One slow reader's drain, on a thread of its own: they all read at once,
//  as clients would, rather than each waiting for the ones before.
typedef struct {
    ws_raw_t *raw;
    ws_raw_drained_t drained;
    bool closed;
} drain_t;

static void *
s_drain (void *arg)
{
    drain_t *drain = arg;
    //  Generous: a socket that has not read for seconds has a closed
    //  window, and the gateway's kernel probes it ever more rarely (TCP's
    //  persist timer backs off); under ASan with another suite beside it,
    //  the data already sent took over 5 s to start flowing again once read.
    drain->closed = ws_raw_drain (drain->raw, 20000, &drain->drained);
    return NULL;
}

static void
s_test_slow_reader (void)
{
    printf ("a socket that never reads; %d messages of %d characters to its room\n",
            MESSAGES, TEXT_CHARS);
    const char *room = api_create_room (s_port, "sender", 5.0, 5.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *sender = api_connect (s_port, "sender", "Sender");
    ws_client_t *reader = api_connect (s_port, "reader", "Reader");
    json_decref (api_join (sender, room, "sender", -1));
    json_decref (api_join (reader, room, "reader", -1));

    ws_raw_t *slow [SLOW_READERS];
    for (int i = 0; i < SLOW_READERS; i++) {
        char path [64], user [32], join [256];
        snprintf (user, sizeof user, "slow-%d", i);
        snprintf (path, sizeof path, "/ws?userId=%s", user);
        slow [i] = ws_raw_open (s_port, path, 4096);
        REQUIRE (slow [i]);
        snprintf (join, sizeof join, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
        CHECK (ws_raw_send (slow [i], join) == 0);
        json_t *joined = ws_expect_where (reader, "user-joined", "userId", user, API_WAIT_MS);
        REQUIRE (joined);
        json_decref (joined);
    }
    long rss_before = harness_rss_kib (&s_system.gateways [0]);

    //  Send with a bounded window of unacknowledged messages; an error
    //  (a rate limit, say) puts the message back to be sent again. The
    //  reader's frames are taken as they come. Neither the sender's acks
    //  nor the reader's messages may stop for 10 s while some are due: that
    //  is the slow sockets holding the others up (the sender then resends
    //  what is in flight; the messageId makes that harmless).
    enum { UNSENT, SENT, ACKED };
    static int state [MESSAGES];
    char *text = malloc (TEXT_CHARS + 1);
    REQUIRE (text);
    int next = 0, in_flight = 0, done = 0, errors = 0, heard = 0, stalls = 0;
    long long last_seq = 0;
    bool ordered = true;
    int64_t started = clock_mono_ms (), deadline = started + 120000;
    int64_t sender_since = started, reader_since = started;
    while ((done < MESSAGES || heard < done) && clock_mono_ms () < deadline) {
        for (; in_flight < IN_FLIGHT && next < MESSAGES; next++)
            if (state [next] == UNSENT) {
                char id [32];
                snprintf (id, sizeof id, "m-%d", next);
                memset (text, 'a' + next % 26, TEXT_CHARS);
                snprintf (text, 16, "%06d:", next);
                text [7] = (char) ('a' + next % 26);
                text [TEXT_CHARS] = 0;
                ws_send (sender, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message",
                         "roomId", room, "message", text, "messageId", id, "requestId", id);
                state [next] = SENT;
                in_flight++;
            }
        //  What the reader has heard so far.
        while (ws_pending (reader, "new-message")) {
            json_t *message = ws_expect (reader, "new-message", 0);
            long long seq = (long long) j_num (message, "seq");
            if (seq <= last_seq)
                ordered = false;
            last_seq = seq;
            heard++;
            reader_since = clock_mono_ms ();
            json_decref (message);
        }
        if (heard >= done)
            reader_since = clock_mono_ms ();
        else
        if (clock_mono_ms () - reader_since > 10000) {
            fprintf (stderr, "  the reader heard nothing for 10 s (%d heard, %d acknowledged)\n",
                     heard, done);
            stalls++;
            reader_since = clock_mono_ms ();
        }
        //  What the sender hears: acks, errors, and its own messages.
        while (ws_pending (sender, "ack") + ws_pending (sender, "error")) {
            json_t *frame = ws_expect_either (sender, "ack", NULL, NULL, "error", NULL, NULL, 0);
            sender_since = clock_mono_ms ();
            const char *type = j_str (frame, "type");
            bool ack = type && !strcmp (type, "ack");
            const char *id = j_str (frame, ack? "messageId": "requestId");
            int number = id && !strncmp (id, "m-", 2)? atoi (id + 2): -1;
            if (number >= 0 && number < MESSAGES && state [number] != ACKED) {
                if (state [number] == SENT)
                    in_flight--;
                if (ack) {
                    state [number] = ACKED;
                    done++;
                }
                else {
                    if (errors++ < 5)
                        fprintf (stderr, "  m-%d: error %.0f %s (sent again)\n", number,
                                 j_num (frame, "status"), j_str (frame, "error"));
                    state [number] = UNSENT;
                    if (next > number)
                        next = number;
                }
            }
            json_decref (frame);
        }
        ws_drop (sender, "new-message");
        if (!in_flight)
            sender_since = clock_mono_ms ();
        else
        if (clock_mono_ms () - sender_since > 10000) {
            fprintf (stderr, "  the sender heard nothing for 10 s with %d in flight\n", in_flight);
            stalls++;
            for (int i = 0; i < MESSAGES; i++)
                if (state [i] == SENT)
                    state [i] = UNSENT;
            in_flight = 0;
            next = 0;
            sender_since = clock_mono_ms ();
        }
        usleep (1000);
    }
    free (text);
    printf ("  %d acknowledged and %d heard in %lld ms (%d errors on the way)\n", done, heard,
            (long long) (clock_mono_ms () - started), errors);
    CHECK (done == MESSAGES);
    CHECK (heard == MESSAGES);
    CHECK (ordered);
    CHECK (stalls == 0);
    CHECK (ws_quiet (reader, "new-message", API_QUIET_MS));

    //  The gateway is still well: a newcomer joins and hears the reader.
    ws_client_t *late = api_connect (s_port, "late", "Late");
    json_decref (api_join (late, room, "late", -1));
    CHECK (api_say (reader, room, "reader-1", "are you all still there?") > 0);
    CHECK (api_heard (late, "are you all still there?") > 0);
    CHECK (api_heard (sender, "are you all still there?") > 0);

    long rss_after = harness_rss_kib (&s_system.gateways [0]);
    printf ("  gateway RSS %ld -> %ld KiB\n", rss_before, rss_after);
    drain_t drains [SLOW_READERS];
    pthread_t threads [SLOW_READERS];
    for (int i = 0; i < SLOW_READERS; i++) {
        drains [i] = (drain_t) { .raw = slow [i] };
        REQUIRE (pthread_create (&threads [i], NULL, s_drain, &drains [i]) == 0);
    }
    for (int i = 0; i < SLOW_READERS; i++) {
        pthread_join (threads [i], NULL);
        ws_raw_drained_t *drained = &drains [i].drained;
        printf ("  slow-%d: %zu frames (%zu bytes) were waiting; %s%d %s%s%s\n", i,
                drained->frames, drained->bytes, drained->close_code? "then a close frame: ": "",
                drained->close_code, drained->close_reason,
                drained->ended? " (stream ended)": "", drains [i].closed? "": " still open");
        CHECK (drains [i].closed);
        CHECK (drained->close_code == 1008);
        CHECK (drained->close_reason [0]);
        ws_raw_close (&slow [i]);
    }
    ws_close (&late);
    ws_close (&sender);
    ws_close (&reader);
}

int
main (void)
{
    harness_init ("slow_reader");
    //  One sender, as fast as it is acknowledged (MESSAGES_PER_S off), and
    //  readers that never read, found out here as slow readers (1008)
    //  rather than as silent ones (WS_PING_S).
    const char *env [] = { "LOG_LEVEL=info", "MAX_MESSAGE_CHARS=4000", "MESSAGES_PER_S=0",
                           "WS_PING_S=3600", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;

    s_test_slow_reader ();

    return harness_finish ();
}
