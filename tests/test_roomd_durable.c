/*  =========================================================================
    test_roomd_durable - a message fanned out before it is durable, acked
    after: real stored, real roomd, the test as the gateway (shard_peer.c)

    stored is paused (SIGSTOP) to hold an append in flight, and killed with
    -9 where a fault is the point. What is checked:
      - the event comes while stored is paused, the ack only once it goes on;
      - a resend while the first is in flight is neither stored nor fanned
        out twice, and is acked with the first one's seq;
      - an acked message is in stored: stored killed with the append in
        flight and started again, the shard sends it again;
      - roomd killed with a message fanned out and not yet durable: the
        shard that loads the room never uses that seq for another message;
      - a join while a fanned-out message is not durable gets it in its
        history, once, in seq order;
      - stored itself: a numbered append at or below the room's last is
        refused (421, nothing written), but for a retry of what it holds.
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "shard_peer.h"
#include "clock.h"

//  A room with alice's socket in it.
static const char *
s_room_with_alice (void)
{
    const char *room = peer_create_room ("alice");
    proto_msg_t request = peer_join (room, "alice", "c-alice", 0);
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_JOINED, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    proto_msg_destroy (&msg);
    return room;
}

//  The room's messages in stored, oldest first (the first page).
static proto_msg_t *
s_stored_history (const char *room)
{
    proto_msg_t history = { .type = PROTO_HISTORY, .history = {
        .room_id = room, .from_seq = 1, .limit = PROTO_LIST_MAX } };
    proto_msg_t *reply = harness_call (peer_store, &history);
    CHECK (reply && reply->type == PROTO_HISTORY_REPLY);
    return reply;
}

//  How many messages stored holds with text, and at which seq (the last).
static int
s_stored_copies (const char *room, const char *text, uint64_t *seq)
{
    proto_msg_t *reply = s_stored_history (room);
    int copies = 0;
    for (uint32_t i = 0; reply && i < reply->history_reply.count; i++)
        if (strcmp (reply->history_reply.messages [i].text, text) == 0) {
            copies++;
            if (seq)
                *seq = reply->history_reply.messages [i].seq;
        }
    proto_msg_destroy (&reply);
    return copies;
}

static void
s_test_early_and_resend (void)
{
    printf ("fanned out while stored is paused, acked after; a resend in flight waits\n");
    const char *room = s_room_with_alice ();
    REQUIRE (kill (peer_stored.pid, SIGSTOP) == 0);
    proto_msg_t request = peer_message (room, "alice", "m-1", "early");
    uint64_t first = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    CHECK (msg && msg->event_message.message.seq == 1 && msg->event_message.message.id
           && strcmp (msg->event_message.message.text, "early") == 0);
    proto_msg_destroy (&msg);
    CHECK (peer_next (300) == NULL);            //  no ack while it is not durable
    //  The sender resends: nothing more is fanned out, nothing answered yet.
    request = peer_message (room, "alice", "m-1", "early");
    uint64_t again = peer_send (&request);
    CHECK (peer_next (300) == NULL);
    REQUIRE (kill (peer_stored.pid, SIGCONT) == 0);
    msg = peer_expect (PROTO_APPEND_REPLY, first);
    CHECK (msg && msg->append_reply.seq == 1 && !msg->append_reply.duplicate);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, again);
    CHECK (msg && msg->append_reply.seq == 1 && msg->append_reply.duplicate);
    proto_msg_destroy (&msg);
    uint64_t seq = 0;
    CHECK (s_stored_copies (room, "early", &seq) == 1 && seq == 1);
}

static void
s_test_stored_restart (void)
{
    printf ("stored killed with an append in flight: sent again, acked once stored\n");
    const char *room = s_room_with_alice ();
    REQUIRE (kill (peer_stored.pid, SIGSTOP) == 0);
    proto_msg_t request = peer_message (room, "alice", "r-1", "through a restart");
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    uint64_t fanned = msg? msg->event_message.message.seq: 0;
    proto_msg_destroy (&msg);
    harness_kill (&peer_stored);
    REQUIRE (harness_start (&peer_stored) == 0);
    //  A join now: its history is read while the append may still be on
    //  its way again; it has the message once either way.
    proto_msg_t join = peer_join (room, "alice", "c-alice-2", 0);
    uint64_t joined = peer_send (&join);
    bool acked = false, got_join = false;
    int64_t deadline = clock_mono_ms () + 15000;
    while ((!acked || !got_join) && clock_mono_ms () < deadline) {
        msg = peer_next (1000);
        if (msg && msg->type == PROTO_APPEND_REPLY && msg->request_id == id) {
            CHECK (msg->append_reply.seq == fanned);
            acked = true;
        }
        else
        if (msg && msg->type == PROTO_JOIN_REPLY && msg->request_id == joined) {
            got_join = true;
            int copies = 0;
            uint64_t last = 0;
            for (uint32_t i = 0; i < msg->join_reply.count; i++) {
                CHECK (msg->join_reply.messages [i].seq > last);
                last = msg->join_reply.messages [i].seq;
                copies += strcmp (msg->join_reply.messages [i].text, "through a restart") == 0;
            }
            CHECK (copies == 1);
        }
        else
        if (msg && msg->type == PROTO_ERROR && msg->request_id == joined
        &&  msg->error.status == 503)
        {
            usleep (50 * 1000);                 //  before the shard's link was up again
            joined = peer_send (&join);
        }
        else
        if (msg && msg->type != PROTO_EVENT_JOINED) {
            fprintf (stderr, "  unexpected %s %s\n", proto_type_name (msg->type),
                     msg->type == PROTO_ERROR? msg->error.reason: "");
            CHECK (false);
        }
        proto_msg_destroy (&msg);
    }
    CHECK (acked && got_join);
    uint64_t seq = 0;
    CHECK (s_stored_copies (room, "through a restart", &seq) == 1 && seq == fanned);
}

static void
s_test_roomd_killed (void)
{
    printf ("roomd killed with a message fanned out, not durable: its seq is not reused\n");
    const char *room = s_room_with_alice ();
    REQUIRE (kill (peer_stored.pid, SIGSTOP) == 0);
    proto_msg_t request = peer_message (room, "alice", "k-1", "before the kill");
    peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    uint64_t fanned = msg? msg->event_message.message.seq: 0;
    proto_msg_destroy (&msg);
    harness_kill (&peer_roomd);
    REQUIRE (kill (peer_stored.pid, SIGCONT) == 0);
    peer_start_roomd ();
    request = peer_message (room, "alice", "k-2", "after the kill");
    uint64_t id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    uint64_t after = msg? msg->event_message.message.seq: 0;
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    CHECK (msg && msg->append_reply.seq == after);
    proto_msg_destroy (&msg);
    CHECK (fanned >= 1 && after > fanned + 1024);
    //  Whatever stored made of the first, no seq holds two messages, and
    //  the second is where it was fanned out.
    uint64_t seq = 0;
    CHECK (s_stored_copies (room, "before the kill", &seq) <= 1);
    CHECK (s_stored_copies (room, "after the kill", &seq) == 1 && seq == after);
}

//  Whether stored answers append with an append-reply at seq (a duplicate
//  or not), or refuses it with status.
static bool
s_stored_at (proto_msg_t *append, uint64_t seq, bool duplicate)
{
    proto_msg_t *msg = harness_call (peer_store, append);
    bool ok = msg && msg->type == PROTO_APPEND_REPLY && msg->append_reply.seq == seq
           && msg->append_reply.duplicate == duplicate;
    proto_msg_destroy (&msg);
    return ok;
}

static bool
s_refused (proto_msg_t *append, uint16_t status)
{
    proto_msg_t *msg = harness_call (peer_store, append);
    bool ok = msg && msg->type == PROTO_ERROR && msg->error.status == status;
    proto_msg_destroy (&msg);
    return ok;
}

static void
s_test_stored_refuses (void)
{
    printf ("stored: a numbered append not above the room's last is refused, but a retry,\n"
            "        and the owner's own overtaken retry, into its hole\n");
    const char *room = s_room_with_alice ();
    proto_msg_t request = peer_message (room, "alice", NULL, "ten");
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    proto_message_t stored_at = { 0 };
    char stored_id [64] = "";
    if (msg) {
        stored_at.seq = msg->event_message.message.seq;
        snprintf (stored_id, sizeof stored_id, "%s", msg->event_message.message.id);
    }
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    proto_msg_destroy (&msg);
    proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = room };
    id = peer_send (&info);
    msg = peer_expect (PROTO_INFO_REPLY, id);
    uint64_t epoch = msg? msg->info_reply.room.epoch: 0;
    proto_msg_destroy (&msg);

    //  As a shard would: the same seq with another id is refused.
    proto_msg_t append = { .type = PROTO_MSG_APPEND, .msg_append = {
        .message = { .room_id = room, .user_id = "alice", .text = "other",
                     .seq = stored_at.seq, .id = "another-id",
                     .created_at_ms = clock_now_ms () }, .if_epoch = epoch } };
    CHECK (s_refused (&append, 421));
    //  The same message again is its retry: answered as the first was.
    append.msg_append.message.id = stored_id;
    append.msg_append.message.text = "ten";
    CHECK (s_stored_at (&append, stored_at.seq, true));
    CHECK (s_stored_copies (room, "other", NULL) == 0);
    CHECK (s_stored_copies (room, "ten", NULL) == 1);

    //  A retry that later appends overtook (stored restarted between them)
    //  lands in its hole below the room's last: the owner's epoch, a free
    //  seq. Its client id is then known at once, as any out of order.
    uint64_t hole = stored_at.seq + 50, above = stored_at.seq + 100;
    proto_message_t *message = &append.msg_append.message;
    *message = (proto_message_t) {
        .room_id = room, .user_id = "alice", .text = "overtaking", .seq = above,
        .id = "id-above", .client_id = "c-above", .created_at_ms = clock_now_ms () };
    CHECK (s_stored_at (&append, above, false));
    message->seq = hole;
    message->id = "id-hole";
    message->client_id = "c-hole";
    message->text = "overtaken";
    CHECK (s_stored_at (&append, hole, false));
    CHECK (s_stored_at (&append, hole, true));      //  its retry, answered as the first
    message->seq = above + 1;                       //  its resend at a new seq
    message->id = "id-resend";
    CHECK (s_stored_at (&append, hole, true));
    //  Refused: the hole's seq with another message; a free seq below the
    //  last without an epoch, or with another one.
    message->seq = hole;
    message->id = "id-other";
    message->client_id = "c-other";
    message->text = "other at the hole";
    CHECK (s_refused (&append, 421));
    message->seq = hole + 1;
    append.msg_append.if_epoch = 0;
    CHECK (s_refused (&append, 421));
    append.msg_append.if_epoch = epoch + 1;
    CHECK (s_refused (&append, 421));
    uint64_t seq = 0;
    CHECK (s_stored_copies (room, "overtaken", &seq) == 1 && seq == hole);
    CHECK (s_stored_copies (room, "other at the hole", NULL) == 0);
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = room };
    msg = harness_call (peer_store, &get);
    CHECK (msg && msg->type == PROTO_ROOM_REPLY && msg->room_reply.room.last_seq == above);
    proto_msg_destroy (&msg);
}

int
main (void)
{
    harness_init ("roomd_durable");
    peer_open ();
    s_test_early_and_resend ();
    s_test_stored_restart ();
    s_test_roomd_killed ();
    s_test_stored_refuses ();
    peer_close ();
    return harness_finish ();
}
