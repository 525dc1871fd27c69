/*  =========================================================================
    test_roomd - a room shard's contract over ZeroMQ, the test playing the
    gateway: real stored, real roomd, and a ROUTER that the shard links to

    What only this level can see: the order of events and replies on the
    link (an event before the reply it belongs to), that a resend is not
    delivered twice, that a join without a socket (HTTP) sends no event, the typing throttle, a shard killed with -9 that
    comes back and reloads its rooms (and their sockets, from the records
    it wrote) from stored, and a close that races its join.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "harness.h"
#include "shard_peer.h"
#include "bus.h"
#include "clock.h"

static void
s_test_conversation (void)
{
    printf ("join, send, resend, typing, info, leave, close: events before replies\n");
    const char *room = peer_create_room ("alice");

    proto_msg_t request = peer_join (room, "alice", "c-alice", 0);
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_JOINED, 0);
    CHECK (msg && strcmp (msg->event_joined.user_id, "alice") == 0
           && strcmp (msg->event_joined.except_conn, "c-alice") == 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    CHECK (msg && msg->join_reply.count == 0 && msg->join_reply.room.participant_count == 1);
    proto_msg_destroy (&msg);

    request = peer_join (room, "bob", "c-bob", 0);
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_JOINED, 0);
    CHECK (msg && msg->event_joined.room.participant_count == 2);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    proto_msg_destroy (&msg);

    //  A message: the event (with seq and id from stored), then the ack.
    request = peer_message (room, "alice", "m-1", "hello bob");
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    CHECK (msg && msg->event_message.message.seq == 1 && msg->event_message.message.id
           && strcmp (msg->event_message.message.text, "hello bob") == 0);
    CHECK (msg && strcmp (msg->trace_id, request.trace_id) == 0);     //  one trace, end to end
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    CHECK (msg && msg->append_reply.seq == 1 && !msg->append_reply.duplicate);
    proto_msg_destroy (&msg);

    //  The same client id again: neither stored nor fanned out again (the
    //  shard knows it appended it), acknowledged with the first one's seq.
    //  (The next expectation, an error, fails on an event in between.)
    request = peer_message (room, "alice", "m-1", "hello bob");
    id = peer_send (&request);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    CHECK (msg && msg->append_reply.seq == 1 && msg->append_reply.duplicate);
    proto_msg_destroy (&msg);

    //  Only participants send and type.
    request = peer_message (room, "mallory", NULL, "let me in");
    peer_expect_error (peer_send (&request), 403);
    proto_msg_t typing = { .type = PROTO_ROOM_TYPING, .room_typing = { room, "mallory", NULL } };
    peer_expect_error (peer_send (&typing), 403);

    //  Typing: an event, then within the throttle only the ok.
    typing.room_typing.user_id = "bob";
    id = peer_send (&typing);
    msg = peer_expect (PROTO_EVENT_TYPING, 0);
    CHECK (msg && strcmp (msg->event_typing.user_id, "bob") == 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_OK, id);
    proto_msg_destroy (&msg);
    id = peer_send (&typing);
    msg = peer_expect (PROTO_OK, id);
    proto_msg_destroy (&msg);

    proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = room };
    id = peer_send (&info);
    msg = peer_expect (PROTO_INFO_REPLY, id);
    CHECK (msg && msg->info_reply.online_count == 2 && msg->info_reply.room.last_seq == 1);
    proto_msg_destroy (&msg);

    //  A third joins with sinceSeq 0 and gets the history.
    request = peer_join (room, "carol", "c-carol", 0);
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_JOINED, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    CHECK (msg && msg->join_reply.count == 1
           && strcmp (msg->join_reply.messages [0].text, "hello bob") == 0);
    proto_msg_destroy (&msg);
    //  ... and after sinceSeq 1, nothing.
    request = peer_join (room, "carol", "c-carol-2", 1);
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_JOINED, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    CHECK (msg && msg->join_reply.count == 0);
    proto_msg_destroy (&msg);

    //  Bob's only socket leaves: bob leaves.
    proto_msg_t leave = { .type = PROTO_ROOM_LEAVE, .room_leave = {
        .room_id = room, .user_id = "bob", .conn_id = "c-bob", .user_name = "Bob" } };
    id = peer_send (&leave);
    msg = peer_expect (PROTO_EVENT_LEFT, 0);
    CHECK (msg && strcmp (msg->event_left.user_id, "bob") == 0
           && msg->event_left.room.participant_count == 2);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_ROOM_REPLY, id);
    proto_msg_destroy (&msg);
    //  One of carol's two sockets leaves: carol stays.
    leave.room_leave = (proto_room_leave_t) { room, "carol", "c-carol", NULL, false };
    id = peer_send (&leave);
    msg = peer_expect (PROTO_ROOM_REPLY, id);
    CHECK (msg && !msg->room_reply.changed && msg->room_reply.room.participant_count == 2);
    proto_msg_destroy (&msg);

    //  Close: not by carol; by alice, the creator.
    proto_msg_t close = { .type = PROTO_ROOM_CLOSE, .room_close = { room, "carol", 0 } };
    peer_expect_error (peer_send (&close), 403);
    close.room_close.user_id = "alice";
    id = peer_send (&close);
    msg = peer_expect (PROTO_EVENT_CLOSED, 0);
    CHECK (msg && strcmp (msg->event_closed.room_id, room) == 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_ROOM_REPLY, id);
    CHECK (msg && msg->room_reply.room.status == PROTO_STATUS_CLOSED);
    proto_msg_destroy (&msg);
    request = peer_message (room, "alice", NULL, "anyone?");
    peer_expect_error (peer_send (&request), 404);
    request = peer_message (room, "alice", "m-new", "too late");
    peer_expect_error (peer_send (&request), 404);
    //  A resend of what was stored before the close is still acknowledged
    //  (and not fanned out again: the shard knows it appended it).
    request = peer_message (room, "alice", "m-1", "hello bob");
    id = peer_send (&request);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    CHECK (msg && msg->append_reply.seq == 1 && msg->append_reply.duplicate);
    proto_msg_destroy (&msg);
    request = peer_join (room, "dave", NULL, 0);
    peer_expect_error (peer_send (&request), 404);
}

static void
s_test_http_join (void)
{
    printf ("a join without a socket (over HTTP) tells no one; its socket's join, once\n");
    const char *room = peer_create_room ("fay");
    proto_msg_t request = peer_join (room, "gus", NULL, 0);
    uint64_t id = peer_send (&request);
    //  The reply, with no event before it (the original sent none).
    proto_msg_t *msg = peer_expect (PROTO_JOIN_REPLY, id);
    CHECK (msg && msg->join_reply.room.participant_count == 2);
    proto_msg_destroy (&msg);
    CHECK (peer_next (300) == NULL);
    //  Twice is harmless, and as quiet.
    id = peer_send (&request);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    CHECK (msg && msg->join_reply.room.participant_count == 2);
    proto_msg_destroy (&msg);
    //  The participant's socket joins: the room hears of it now.
    request = peer_join (room, "gus", "c-gus", 0);
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_JOINED, 0);
    CHECK (msg && strcmp (msg->event_joined.user_id, "gus") == 0
           && strcmp (msg->event_joined.user_name, "gus") == 0
           && msg->event_joined.room.participant_count == 2);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    proto_msg_destroy (&msg);
    CHECK (peer_next (300) == NULL);
}

static void
s_test_errors (void)
{
    printf ("unknown rooms, full rooms, what roomd does not serve, bad bytes\n");
    proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = "no-such-room" };
    peer_expect_error (peer_send (&info), 404);

    //  A room of one seat, taken by its creator.
    proto_room_t room = harness_room (1, 1);
    const char *creator = "solo";
    room.creator = creator;
    room.participants = &creator;
    room.participant_count = 1;
    room.max_participants = 1;
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
    proto_msg_t *reply = harness_call (peer_store, &put);
    proto_msg_destroy (&reply);
    proto_msg_t join = peer_join (room.id, "second", NULL, 0);
    peer_expect_error (peer_send (&join), 400);

    proto_msg_t stats = { .type = PROTO_STORE_STATS };
    peer_expect_error (peer_send (&stats), 400);

    zframe_t *identity = zframe_dup (peer_shard);
    zframe_send (&identity, peer_router, ZFRAME_MORE);
    zstr_send (peer_router, "not msgpack");
    CHECK (peer_next (300) == NULL);       //  nothing to answer: no request id
}

//  An expected message (peer_expect checks it), done with.
static void
s_drop (proto_msg_t *msg)
{
    proto_msg_destroy (&msg);
}

//  A frame may hold several requests back to back (the gateway sends a
//  turn's for a shard as one; proto_next): each is served, in order, and
//  bytes after them that are no whole message are refused alone.
static void
s_test_frames (void)
{
    printf ("a frame of several requests: each served in order; what follows them refused\n");
    const char *room = peer_create_room ("frank");
    proto_msg_t join = peer_join (room, "frank", "c-frank", 0);
    uint64_t id = peer_send (&join);
    s_drop (peer_expect (PROTO_EVENT_JOINED, 0));
    s_drop (peer_expect (PROTO_JOIN_REPLY, id));

    proto_msg_t sends [3] = {
        peer_message (room, "frank", "f-1", "one"), peer_message (room, "frank", "f-2", "two"),
        peer_message (room, "frank", "f-3", "three") };
    uint64_t first = peer_send_frame (sends, 3, NULL, 0);
    uint64_t event_seq = 0, acked = 0;
    for (int i = 0; i < 6; i++) {
        proto_msg_t *msg = peer_next (5000);
        CHECK (msg != NULL);
        if (!msg)
            break;
        if (msg->type == PROTO_EVENT_MESSAGE) {
            CHECK (msg->event_message.message.seq == event_seq + 1);
            CHECK (strcmp (msg->event_message.message.client_id,
                           sends [event_seq].room_send.message.client_id) == 0);
            event_seq++;
        }
        else {
            CHECK (msg->type == PROTO_APPEND_REPLY && msg->request_id == first + acked);
            CHECK (msg->type == PROTO_APPEND_REPLY && msg->append_reply.seq == acked + 1);
            acked++;
        }
        proto_msg_destroy (&msg);
    }
    CHECK (event_seq == 3 && acked == 3);

    //  One more, then bytes that are no message: the one is served, the
    //  bytes (no request id in them) answered by nothing, the shard fine.
    proto_msg_t last = peer_message (room, "frank", "f-4", "four");
    id = peer_send_frame (&last, 1, "\x93\x01\xc1", 3);
    s_drop (peer_expect (PROTO_EVENT_MESSAGE, 0));
    s_drop (peer_expect (PROTO_APPEND_REPLY, id));
    CHECK (peer_next (300) == NULL);
    proto_msg_t again = peer_message (room, "frank", "f-5", "five");
    id = peer_send (&again);
    s_drop (peer_expect (PROTO_EVENT_MESSAGE, 0));
    s_drop (peer_expect (PROTO_APPEND_REPLY, id));
}

static void
s_test_restart (void)
{
    printf ("kill -9 of the shard: it comes back and reloads its rooms from stored\n");
    const char *room = peer_create_room ("erin");
    proto_msg_t request = peer_join (room, "erin", "c-erin", 0);
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_JOINED, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    proto_msg_destroy (&msg);
    //  The socket's record, in the room, is the shard's (the join's write).
    request = peer_message (room, "erin", "e-1", "before");
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    proto_msg_destroy (&msg);

    harness_kill (&peer_roomd);
    peer_start_roomd ();

    proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = room };
    id = peer_send (&info);
    msg = peer_expect (PROTO_INFO_REPLY, id);
    CHECK (msg && msg->info_reply.online_count == 1
           && strcmp (msg->info_reply.online [0], "erin") == 0);
    CHECK (msg && msg->info_reply.room.last_seq == 1);
    proto_msg_destroy (&msg);
    //  The shard that loads the room numbers past anything the dead one
    //  may have fanned out (roomd/handle_send.c): seq 1 + 1 + SEND_WINDOW.
    request = peer_message (room, "erin", "e-2", "after");
    id = peer_send (&request);
    msg = peer_expect (PROTO_EVENT_MESSAGE, 0);
    CHECK (msg && msg->event_message.message.seq == 2 + 1024);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    proto_msg_destroy (&msg);
}

//  Sockets that close while their join is on its way: the gateway sends
//  the leave on the same link right after the join, and its conn-del to
//  stored, which may land first (here it does). The shard writes the leave
//  after the join: no record, no member and no participant remain.
static void
s_test_close_races (void)
{
    enum { ROUNDS = 50 };
    printf ("%d sockets closed while their join is on its way: nothing of them stays\n", ROUNDS);
    const char *room = peer_create_room ("hal");
    int left_behind = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char conn [32];
        snprintf (conn, sizeof conn, "c-ivy-%d", round);
        proto_msg_t del = { .type = PROTO_CONN_DEL, .conn_del.conn_id = conn };
        proto_msg_t *msg = harness_call (peer_store, &del);     //  404: nothing yet
        proto_msg_destroy (&msg);
        proto_msg_t join = peer_join (room, "ivy", conn, 0);
        proto_msg_t leave = { .type = PROTO_ROOM_LEAVE, .room_leave = {
            room, "ivy", conn, "Ivy", true } };
        uint64_t joined = peer_send (&join), left = peer_send (&leave);
        int answered = 0;
        for (int i = 0; i < 8 && answered < 2 && (msg = peer_next (5000)); i++) {
            answered += msg->request_id == joined || msg->request_id == left;
            proto_msg_destroy (&msg);
        }
        CHECK (answered == 2);
        //  Once both are answered, ivy is gone, all of her.
        proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = room };
        uint64_t asked = peer_send (&info);
        msg = peer_expect (PROTO_INFO_REPLY, asked);
        left_behind += !msg || msg->info_reply.online_count
                    || msg->info_reply.room.participant_count != 1;
        proto_msg_destroy (&msg);
    }
    CHECK (left_behind == 0);
    proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list.room_id = room };
    proto_msg_t *msg = harness_call (peer_store, &list);
    CHECK (msg && msg->type == PROTO_CONN_LIST_REPLY && msg->conn_list_reply.count == 0);
    proto_msg_destroy (&msg);
    list.conn_list = (proto_conn_list_t) { .user_id = "ivy" };     //  deleted, not just out
    msg = harness_call (peer_store, &list);
    CHECK (msg && msg->type == PROTO_CONN_LIST_REPLY && msg->conn_list_reply.count == 0);
    proto_msg_destroy (&msg);
}

//  The test as another shard that claims room_id in stored (proto.h,
//  Ownership), adding or removing a participant on the way. Returns the
//  room's epoch after.
static uint64_t
s_claim_elsewhere (const char *room_id, const char *add, const char *remove)
{
    proto_msg_t update = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = room_id, .claim = true, .add_participant = add,
        .remove_participant = remove } };
    proto_msg_t *reply = harness_call (peer_store, &update);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    uint64_t epoch = reply->room_reply.room.epoch;
    proto_msg_destroy (&reply);
    return epoch;
}

static uint64_t
s_stored_epoch (const char *room_id)
{
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = room_id };
    proto_msg_t *reply = harness_call (peer_store, &get);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    uint64_t epoch = reply->room_reply.room.epoch;
    proto_msg_destroy (&reply);
    return epoch;
}

//  Welcome the shard unasked, as a gateway that had dropped it does.
static void
s_welcome (bool fresh)
{
    const char *shards [] = { "shard-1" };
    proto_msg_t welcome = { .type = PROTO_SHARD_WELCOME, .shard_welcome = {
        .gateway_id = "gw-test", .shards = shards, .shard_count = 1, .fresh = fresh } };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    proto_encode (&welcome, &buffer);
    zframe_t *identity = zframe_dup (peer_shard);
    zframe_send (&identity, peer_router, ZFRAME_MORE);
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    zframe_send (&frame, peer_router, 0);
    msgpack_sbuffer_destroy (&buffer);
}

//  A send acknowledged with seq, and fanned out at it last: a send whose
//  room moved while it was in flight was fanned out at its first seq too,
//  before it was served again (README: what a reader may see).
static bool
s_sends (const char *room, const char *user, const char *client_id, uint64_t seq)
{
    proto_msg_t request = peer_message (room, user, client_id, "hi");
    uint64_t id = peer_send (&request);
    uint64_t fanned = 0;
    proto_msg_t *msg;
    for (int i = 0; i < 3 && (msg = peer_expect (PROTO_EVENT_MESSAGE, 0)); i++) {
        CHECK (msg->event_message.message.seq > fanned);
        fanned = msg->event_message.message.seq;
        proto_msg_destroy (&msg);
        if (fanned == seq)
            break;
    }
    msg = peer_expect (PROTO_APPEND_REPLY, id);
    bool ok = fanned == seq && msg && msg->append_reply.seq == seq;
    proto_msg_destroy (&msg);
    return CHECK (ok);
}

static void
s_test_ownership (void)
{
    printf ("ownership: another shard's claim makes this one's copy stale; it reloads\n");
    const char *room = peer_create_room ("fay");
    proto_msg_t request = peer_join (room, "fay", "c-fay", 0);
    uint64_t id = peer_send (&request);
    proto_msg_t *msg = peer_expect (PROTO_EVENT_JOINED, 0);
    proto_msg_destroy (&msg);
    msg = peer_expect (PROTO_JOIN_REPLY, id);
    uint64_t loaded = msg? msg->join_reply.room.epoch: 0;
    CHECK (loaded >= 1 && loaded == s_stored_epoch (room));     //  loading claimed it
    proto_msg_destroy (&msg);

    //  A write of the old epoch is refused by stored itself.
    uint64_t elsewhere = s_claim_elsewhere (room, "gus", NULL);
    CHECK (elsewhere == loaded + 1);
    proto_msg_t stale = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = room, .if_epoch = loaded, .touch_ms = clock_now_ms () } };
    msg = harness_call (peer_store, &stale);
    CHECK (msg && msg->type == PROTO_ERROR && msg->error.status == 421);
    proto_msg_destroy (&msg);

    //  gus joined elsewhere: the copy here says he is no participant, but
    //  the refusal is checked against stored, and the room reloaded.
    //  (Each load after another shard's claim numbers from stored's last
    //  + 1 + SEND_WINDOW.)
    CHECK (s_sends (room, "gus", "g-1", 1 + 1024));
    CHECK (s_stored_epoch (room) == elsewhere + 1);

    //  Claimed elsewhere again: fay's append carries a stale epoch, is
    //  refused, and served again after a reload.
    elsewhere = s_claim_elsewhere (room, NULL, NULL);
    CHECK (s_sends (room, "fay", "f-1", 1025 + 1 + 1024));
    CHECK (s_stored_epoch (room) == elsewhere + 1);

    //  A gateway that had dropped the shard welcomes it back fresh: what
    //  changed meanwhile (gus left elsewhere) is read again, not served
    //  from the copy.
    s_claim_elsewhere (room, NULL, "gus");
    s_welcome (true);
    proto_msg_t info = { .type = PROTO_ROOM_INFO, .room_info.room_id = room };
    id = peer_send (&info);
    msg = peer_expect (PROTO_INFO_REPLY, id);
    CHECK (msg && msg->info_reply.room.participant_count == 1
           && strcmp (msg->info_reply.room.participants [0], "fay") == 0);
    proto_msg_destroy (&msg);
}

int
main (void)
{
    harness_init ("roomd");
    peer_open ();

    s_test_conversation ();
    s_test_http_join ();
    s_test_errors ();
    s_test_frames ();
    s_test_restart ();
    s_test_close_races ();
    s_test_ownership ();

    peer_close ();
    return harness_finish ();
}
