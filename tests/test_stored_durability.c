/*  =========================================================================
    test_stored_durability - kill -9 stored in the middle of a stream of
    pipelined appends, restart it on the same data, and find every append
    it had acknowledged, with the seq it was given. Three rounds.
    =========================================================================
*/

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "clock.h"

#define ROUNDS      3
#define MAX_ACKS    200000
#define IN_FLIGHT   64

typedef struct {
    char client_id [24];
    uint64_t seq;
} ack_t;

static ack_t s_acks [MAX_ACKS];
static atomic_int s_ack_count;
static atomic_bool s_stop;
static const char *s_endpoint;
static char s_room_id [64];
static int s_round;

//  Keep IN_FLIGHT appends in flight until stored stops answering.
static void *
s_appender (void *arg)
{
    (void) arg;
    proto_client_t *client = proto_client_new (s_endpoint);
    static char ids [MAX_ACKS / ROUNDS + IN_FLIGHT][24];
    int sent = 0, outstanding = 0;
    while (!atomic_load (&s_stop)) {
        while (outstanding < IN_FLIGHT && sent < MAX_ACKS / ROUNDS) {
            snprintf (ids [sent], sizeof ids [sent], "r%d-%d", s_round, sent);
            proto_msg_t request = { .type = PROTO_MSG_APPEND, .request_id = (uint64_t) sent + 1,
                .msg_append.message = { .room_id = s_room_id, .client_id = ids [sent],
                                        .user_id = "u", .text = "durable?",
                                        .created_at_ms = clock_now_ms () } };
            if (proto_client_send (client, &request))
                break;
            sent++;
            outstanding++;
        }
        proto_msg_t *reply = proto_client_recv (client, 500);
        if (!reply)
            continue;               //  stored is gone: wait to be told to stop
        outstanding--;
        if (reply->type == PROTO_APPEND_REPLY && reply->request_id >= 1
        &&  reply->request_id <= (uint64_t) sent) {
            int slot = atomic_load (&s_ack_count);
            if (slot < MAX_ACKS) {
                snprintf (s_acks [slot].client_id, sizeof s_acks [slot].client_id, "%s",
                          ids [reply->request_id - 1]);
                s_acks [slot].seq = reply->append_reply.seq;
                atomic_store (&s_ack_count, slot + 1);
            }
        }
        proto_msg_destroy (&reply);
    }
    proto_client_destroy (&client);
    return NULL;
}

int
main (void)
{
    harness_init ("stored-durability");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    s_endpoint = stored.endpoint;
    REQUIRE (harness_start (&stored) == 0);
    proto_client_t *client = proto_client_new (stored.endpoint);
    proto_room_t room = harness_room (52.52, 13.40);
    snprintf (s_room_id, sizeof s_room_id, "%s", room.id);
    room.id = s_room_id;
    room.max_participants = ROUNDS + 1;
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
    proto_msg_t *reply = harness_call (client, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    proto_client_destroy (&client);

    for (s_round = 0; s_round < ROUNDS; s_round++) {
        printf ("round %d: appending, then kill -9 mid-stream\n", s_round + 1);
        int before = atomic_load (&s_ack_count);
        atomic_store (&s_stop, false);
        pthread_t thread;
        pthread_create (&thread, NULL, s_appender, NULL);
        //  A room update acknowledged just before the crash must survive too.
        client = proto_client_new (stored.endpoint);
        char user [16];
        snprintf (user, sizeof user, "user-%d", s_round);
        proto_msg_t join = { .type = PROTO_ROOM_UPDATE, .room_update = {
            .room_id = s_room_id, .add_participant = user } };
        reply = harness_call (client, &join);
        CHECK (reply && reply->type == PROTO_ROOM_REPLY);
        proto_msg_destroy (&reply);
        proto_client_destroy (&client);
        //  Let a few hundred acks through, then pull the plug (bounded wait).
        int target = before + 300 + (int) (harness_random () * 700);
        for (int waited = 0; atomic_load (&s_ack_count) < target && waited < 2000; waited++)
            usleep (5000);
        harness_kill (&stored);
        atomic_store (&s_stop, true);
        pthread_join (thread, NULL);
        int acked = atomic_load (&s_ack_count);
        printf ("  %d appends acknowledged before the kill\n", acked - before);
        CHECK (acked > before);

        REQUIRE (harness_start (&stored) == 0);
        client = proto_client_new (stored.endpoint);
        //  Read the whole history back and look every acknowledged append up.
        static uint64_t seq_of [MAX_ACKS + 1];
        static char client_id_of [MAX_ACKS + 1][24];
        memset (seq_of, 0, sizeof seq_of);
        uint64_t from = 1, highest = 0;
        for (bool more = true; more; ) {
            proto_msg_t request = { .type = PROTO_HISTORY, .history = {
                .room_id = s_room_id, .from_seq = from, .limit = PROTO_LIST_MAX } };
            reply = harness_call (client, &request);
            REQUIRE (reply && reply->type == PROTO_HISTORY_REPLY);
            for (uint32_t i = 0; i < reply->history_reply.count; i++) {
                const proto_message_t *message = &reply->history_reply.messages [i];
                if (message->seq <= MAX_ACKS && message->client_id) {
                    seq_of [message->seq] = message->seq;
                    snprintf (client_id_of [message->seq], 24, "%s", message->client_id);
                }
                highest = message->seq;
            }
            more = reply->history_reply.more;
            from = highest + 1;
            proto_msg_destroy (&reply);
        }
        int lost = 0;
        for (int i = 0; i < acked; i++) {
            uint64_t seq = s_acks [i].seq;
            if (seq == 0 || seq > MAX_ACKS || seq_of [seq] != seq
            ||  strcmp (client_id_of [seq], s_acks [i].client_id) != 0) {
                if (lost++ < 5)
                    fprintf (stderr, "  lost: %s acknowledged as seq %llu\n",
                             s_acks [i].client_id, (unsigned long long) seq);
            }
        }
        printf ("  after restart: %llu messages stored, %d acknowledged ones missing\n",
                (unsigned long long) highest, lost);
        CHECK (lost == 0);
        proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = s_room_id };
        reply = harness_call (client, &get);
        CHECK (reply && reply->type == PROTO_ROOM_REPLY
               && reply->room_reply.room.participant_count == (uint32_t) s_round + 1
               && reply->room_reply.room.last_seq == highest);
        proto_msg_destroy (&reply);
        proto_client_destroy (&client);
    }
    CHECK (harness_stop (&stored) == 0);
    return harness_finish ();
}
