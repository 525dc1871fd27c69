/*  =========================================================================
    test_stored - every stored operation and every error it answers,
    against the real daemon over ZeroMQ
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "harness.h"
#include "clock.h"

static proto_client_t *s_client;
static proto_client_t *s_gateway;           //  with the gateway's key: beats
static proto_client_t *s_reaper;            //  with the reaper's: silent, gone
static const char *s_endpoint;

//  Send a request, expect an error with this status.
static bool
s_refused (proto_msg_t *request, uint16_t status)
{
    proto_msg_t *reply = harness_call (s_client, request);
    bool ok = reply && reply->type == PROTO_ERROR && reply->error.status == status;
    if (!ok)
        fprintf (stderr, "  %s: expected error %u, got %s %u %s\n",
                 proto_type_name (request->type), status,
                 reply? proto_type_name (reply->type): "nothing",
                 reply && reply->type == PROTO_ERROR? reply->error.status: 0,
                 reply && reply->type == PROTO_ERROR? reply->error.reason: "");
    proto_msg_destroy (&reply);
    return ok;
}

static bool
s_put (const proto_room_t *room)
{
    proto_msg_t request = { .type = PROTO_ROOM_PUT, .room_put = { .room = *room } };
    proto_msg_t *reply = harness_call (s_client, &request);
    bool ok = reply && reply->type == PROTO_ROOM_REPLY;
    proto_msg_destroy (&reply);
    return ok;
}

static proto_msg_t *
s_update (proto_room_update_t update)
{
    proto_msg_t request = { .type = PROTO_ROOM_UPDATE, .room_update = update };
    return harness_call (s_client, &request);
}

static proto_msg_t *
s_append (const char *room_id, const char *client_id, const char *text)
{
    proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = room_id, .client_id = client_id, .user_id = "alice", .user_name = "Alice",
        .text = text, .created_at_ms = clock_now_ms () } };
    return harness_call (s_client, &request);
}

static proto_msg_t *
s_history (const char *room_id, uint64_t from, uint64_t before, uint32_t limit)
{
    proto_msg_t request = { .type = PROTO_HISTORY, .history = {
        .room_id = room_id, .from_seq = from, .before_seq = before, .limit = limit } };
    return harness_call (s_client, &request);
}

static void
s_test_rooms (void)
{
    printf ("rooms: put, get, conditional updates\n");
    proto_room_t room = harness_room (48.85, 2.35);
    room.road_name = "A6";
    REQUIRE (s_put (&room));
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = room.id };
    proto_msg_t *reply = harness_call (s_client, &get);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    CHECK (strcmp (reply->room_reply.room.road_name, "A6") == 0);
    CHECK (reply->room_reply.room.latitude == 48.85);
    CHECK (reply->room_reply.room.status == PROTO_STATUS_ACTIVE);
    proto_msg_destroy (&reply);

    get.room_get.room_id = "no-such-room";
    CHECK (s_refused (&get, 404));
    proto_msg_t again = { .type = PROTO_ROOM_PUT, .room_put = { .room = room, .if_absent = true } };
    CHECK (s_refused (&again, 409));
    const char *crowd [] = { "a", "b", "c" };
    proto_room_t crowded = harness_room (1, 1);
    crowded.participants = crowd;
    crowded.participant_count = 3;
    crowded.max_participants = 2;
    proto_msg_t overfull = { .type = PROTO_ROOM_PUT, .room_put.room = crowded };
    CHECK (s_refused (&overfull, 400));

    //  Conditions.
    proto_msg_t update = { .type = PROTO_ROOM_UPDATE, .room_update = { .room_id = "nope",
                                                                      .touch_ms = 5 } };
    CHECK (s_refused (&update, 404));
    update.room_update = (proto_room_update_t) { .room_id = room.id,
                                                 .if_status = PROTO_STATUS_CLOSED };
    CHECK (s_refused (&update, 409));
    update.room_update = (proto_room_update_t) { .room_id = room.id, .if_creator = "mallory",
                                                 .set_status = PROTO_STATUS_CLOSED };
    CHECK (s_refused (&update, 403));
    update.room_update = (proto_room_update_t) { .room_id = room.id,
                                                 .if_idle_before_ms = room.last_activity_ms };
    CHECK (s_refused (&update, 409));

    //  Participants: join, join again (no change), full, leave.
    proto_room_t small = harness_room (10, 10);
    small.max_participants = 2;
    REQUIRE (s_put (&small));
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .add_participant = "u1",
                                              .if_status = PROTO_STATUS_ACTIVE });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && reply->room_reply.changed
           && reply->room_reply.room.participant_count == 1);
    proto_msg_destroy (&reply);
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .add_participant = "u1" });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && !reply->room_reply.changed
           && reply->room_reply.room.participant_count == 1);
    proto_msg_destroy (&reply);
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .add_participant = "u2" });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && reply->room_reply.room.participant_count == 2);
    proto_msg_destroy (&reply);
    update.room_update = (proto_room_update_t) { .room_id = small.id, .add_participant = "u3" };
    CHECK (s_refused (&update, 400));
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .remove_participant = "u1" });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && reply->room_reply.room.participant_count == 1
           && strcmp (reply->room_reply.room.participants [0], "u2") == 0);
    proto_msg_destroy (&reply);
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .remove_participant = "u9" });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && !reply->room_reply.changed);
    proto_msg_destroy (&reply);

    //  Touch only moves forward.
    reply = s_update ((proto_room_update_t) { .room_id = small.id,
                                              .touch_ms = small.last_activity_ms + 1000 });
    CHECK (reply && reply->room_reply.room.last_activity_ms == small.last_activity_ms + 1000);
    proto_msg_destroy (&reply);
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .touch_ms = 1 });
    CHECK (reply && !reply->room_reply.changed
           && reply->room_reply.room.last_activity_ms == small.last_activity_ms + 1000);
    proto_msg_destroy (&reply);

    //  Closing by the creator takes the room out of search.
    reply = s_update ((proto_room_update_t) { .room_id = small.id, .if_creator = "creator",
                                              .set_status = PROTO_STATUS_CLOSED });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY
           && reply->room_reply.room.status == PROTO_STATUS_CLOSED);
    proto_msg_destroy (&reply);
    proto_msg_t search = { .type = PROTO_GEO_SEARCH, .geo_search = { .latitude = 10,
                                                                    .longitude = 10 } };
    reply = harness_call (s_client, &search);
    CHECK (reply && reply->type == PROTO_GEO_REPLY && reply->geo_reply.count == 0);
    proto_msg_destroy (&reply);
}

static void
s_test_rooms_idle (void)
{
    printf ("rooms idle since a cutoff, oldest first, active only\n");
    int64_t base = 1000000;         //  far in the past: older than any other test room
    const char *ids [3];
    for (int i = 0; i < 3; i++) {
        proto_room_t room = harness_room (20, 20 + i);
        room.last_activity_ms = base + (2 - i) * 10;
        REQUIRE (s_put (&room));
        ids [i] = room.id;
    }
    proto_msg_t close = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = ids [1], .set_status = PROTO_STATUS_CLOSED } };
    proto_msg_t *reply = harness_call (s_client, &close);
    proto_msg_destroy (&reply);
    proto_msg_t idle = { .type = PROTO_ROOMS_IDLE, .rooms_idle = { .before_ms = base + 100 } };
    reply = harness_call (s_client, &idle);
    REQUIRE (reply && reply->type == PROTO_ROOM_LIST);
    CHECK (reply->room_list.count == 2);
    if (reply->room_list.count == 2) {
        CHECK (strcmp (reply->room_list.rooms [0].id, ids [2]) == 0);
        CHECK (strcmp (reply->room_list.rooms [1].id, ids [0]) == 0);
    }
    proto_msg_destroy (&reply);
    idle.rooms_idle.limit = 1;
    reply = harness_call (s_client, &idle);
    CHECK (reply && reply->room_list.count == 1);
    proto_msg_destroy (&reply);
    idle.rooms_idle = (proto_rooms_idle_t) { .before_ms = base + 15 };
    reply = harness_call (s_client, &idle);
    CHECK (reply && reply->room_list.count == 1);
    proto_msg_destroy (&reply);
}

static void
s_test_append (void)
{
    printf ("append: seq, idempotency, refusals\n");
    proto_room_t room = harness_room (30, 30), other = harness_room (30, 30.001);
    REQUIRE (s_put (&room) && s_put (&other));
    proto_msg_t *first = s_append (room.id, "m-1", "hello");
    REQUIRE (first && first->type == PROTO_APPEND_REPLY);
    CHECK (first->append_reply.seq == 1 && !first->append_reply.duplicate);
    proto_msg_t *second = s_append (room.id, "m-2", "world");
    CHECK (second && second->append_reply.seq == 2);
    proto_msg_t *resend = s_append (room.id, "m-1", "hello");
    CHECK (resend && resend->type == PROTO_APPEND_REPLY && resend->append_reply.duplicate
           && resend->append_reply.seq == 1
           && strcmp (resend->append_reply.id, first->append_reply.id) == 0);
    proto_msg_t *elsewhere = s_append (other.id, "m-1", "same client id, other room");
    CHECK (elsewhere && elsewhere->append_reply.seq == 1 && !elsewhere->append_reply.duplicate);
    //  Another user's message under a taken client id is refused, not
    //  acknowledged as the first one.
    proto_msg_t collision = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = room.id, .client_id = "m-1", .user_id = "mallory", .text = "mine",
        .created_at_ms = clock_now_ms () } };
    proto_msg_t *refused = harness_call (s_client, &collision);
    CHECK (refused && refused->type == PROTO_ERROR && refused->error.status == 409);
    proto_msg_destroy (&refused);
    proto_msg_destroy (&first);
    proto_msg_destroy (&second);
    proto_msg_destroy (&resend);
    proto_msg_destroy (&elsewhere);

    proto_msg_t *history = s_history (room.id, 0, 0, 0);
    CHECK (history && history->type == PROTO_HISTORY_REPLY && history->history_reply.count == 2);
    proto_msg_destroy (&history);

    //  The room learned its newest seq and its activity.
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = room.id };
    proto_msg_t *reply = harness_call (s_client, &get);
    CHECK (reply && reply->room_reply.room.last_seq == 2
           && reply->room_reply.room.last_activity_ms >= room.last_activity_ms);
    proto_msg_destroy (&reply);

    proto_msg_t append = { .type = PROTO_MSG_APPEND, .msg_append.message = {
        .room_id = "no-room", .user_id = "alice", .text = "x", .created_at_ms = 1 } };
    CHECK (s_refused (&append, 404));
    append.msg_append.message.room_id = room.id;
    append.msg_append.message.seq = 2;          //  a shard's numbered append names it
    msgpack_sbuffer unsent;
    msgpack_sbuffer_init (&unsent);
    CHECK (proto_encode (&append, &unsent) == -1);
    msgpack_sbuffer_destroy (&unsent);
    append.msg_append.message.id = "x-2";       //  taken, not above the room's last: 421
    CHECK (s_refused (&append, 421));
    append.msg_append.message.seq = 10;         //  a roomd may number ahead
    reply = harness_call (s_client, &append);
    CHECK (reply && reply->type == PROTO_APPEND_REPLY && reply->append_reply.seq == 10);
    proto_msg_destroy (&reply);
    reply = s_append (room.id, NULL, "after 10");
    CHECK (reply && reply->append_reply.seq == 11);
    proto_msg_destroy (&reply);

    reply = s_update ((proto_room_update_t) { .room_id = other.id,
                                              .set_status = PROTO_STATUS_CLOSED });
    proto_msg_destroy (&reply);
    append.msg_append.message = (proto_message_t) { .room_id = other.id, .user_id = "alice",
                                                    .text = "late", .created_at_ms = 1 };
    CHECK (s_refused (&append, 409));
    //  A resend of a message stored before the close still gets its ack.
    reply = s_append (other.id, "m-1", "same client id, other room");
    CHECK (reply && reply->type == PROTO_APPEND_REPLY && reply->append_reply.duplicate);
    proto_msg_destroy (&reply);
}

static void
s_test_concurrent_appends (void)
{
    printf ("appends from 4 pipelined clients: one seq each, no gaps\n");
    proto_room_t room = harness_room (40, 40);
    REQUIRE (s_put (&room));
    enum { CLIENTS = 4, EACH = 250 };
    static bool seen [CLIENTS * EACH + 1];
    proto_client_t *clients [CLIENTS];
    char client_ids [CLIENTS][EACH][16];
    for (int c = 0; c < CLIENTS; c++) {
        clients [c] = proto_client_new (s_endpoint);
        for (int i = 0; i < EACH; i++) {
            snprintf (client_ids [c][i], sizeof client_ids [c][i], "c%d-%d", c, i);
            proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
                .room_id = room.id, .client_id = client_ids [c][i], .user_id = "bob",
                .text = "pipelined", .created_at_ms = clock_now_ms () } };
            CHECK (proto_client_send (clients [c], &request) == 0);
        }
    }
    int acked = 0, duplicates = 0;
    for (int c = 0; c < CLIENTS; c++)
        for (int i = 0; i < EACH; i++) {
            proto_msg_t *reply = proto_client_recv (clients [c], 10000);
            if (reply && reply->type == PROTO_APPEND_REPLY) {
                uint64_t seq = reply->append_reply.seq;
                if (seq >= 1 && seq <= CLIENTS * EACH && !seen [seq])
                    seen [seq] = true, acked++;
                else
                    duplicates++;
            }
            proto_msg_destroy (&reply);
        }
    CHECK (acked == CLIENTS * EACH);
    CHECK (duplicates == 0);
    for (int c = 0; c < CLIENTS; c++)
        proto_client_destroy (&clients [c]);

    //  And history walks them all, both ways, page by page.
    printf ("history: pagination forward and backward\n");
    uint64_t expected = 1, from = 1;
    int pages = 0;
    for (;;) {
        proto_msg_t *page = s_history (room.id, from, 0, 64);
        REQUIRE (page && page->type == PROTO_HISTORY_REPLY);
        for (uint32_t i = 0; i < page->history_reply.count; i++)
            CHECK (page->history_reply.messages [i].seq == expected++);
        bool more = page->history_reply.more;
        if (page->history_reply.count)
            from = page->history_reply.messages [page->history_reply.count - 1].seq + 1;
        pages++;
        proto_msg_destroy (&page);
        if (!more)
            break;
    }
    CHECK (expected == CLIENTS * EACH + 1);
    CHECK (pages == (CLIENTS * EACH + 63) / 64);
    uint64_t before = 0;
    expected = CLIENTS * EACH;
    for (;;) {
        proto_msg_t *page = s_history (room.id, 0, before, 100);
        REQUIRE (page && page->type == PROTO_HISTORY_REPLY);
        uint32_t count = page->history_reply.count;
        //  Each page is oldest first and ends just below the previous one.
        for (uint32_t i = 0; i < count; i++)
            CHECK (page->history_reply.messages [i].seq == expected - count + 1 + i);
        expected -= count;
        bool more = page->history_reply.more;
        if (count)
            before = page->history_reply.messages [0].seq;
        proto_msg_destroy (&page);
        if (!more)
            break;
    }
    CHECK (expected == 0);
    proto_msg_t *newest = s_history (room.id, 0, 0, 3);
    CHECK (newest && newest->history_reply.count == 3 && newest->history_reply.more
           && newest->history_reply.messages [2].seq == CLIENTS * EACH);
    proto_msg_destroy (&newest);
    proto_msg_t request = { .type = PROTO_HISTORY, .history.room_id = "no-such-room" };
    CHECK (s_refused (&request, 404));
}

static bool
s_conn_put (const char *conn_id, const char *gateway_id, const char *user_id, const char *room_id)
{
    proto_msg_t request = { .type = PROTO_CONN_PUT, .conn_put.connection = {
        .conn_id = conn_id, .gateway_id = gateway_id, .user_id = user_id, .room_id = room_id,
        .user_name = "Name", .connected_at_ms = clock_now_ms () } };
    proto_msg_t *reply = harness_call (s_client, &request);
    bool ok = reply && reply->type == PROTO_OK;
    proto_msg_destroy (&reply);
    return ok;
}

//  How many connections a list by one key finds, and whether conn_id is among them.
static uint32_t
s_conn_count (const char *gateway_id, const char *user_id, const char *room_id,
              const char *conn_id, bool *found)
{
    proto_msg_t request = { .type = PROTO_CONN_LIST, .conn_list = {
        .gateway_id = gateway_id, .user_id = user_id, .room_id = room_id } };
    proto_msg_t *reply = harness_call (s_client, &request);
    uint32_t count = 0;
    *found = false;
    if (reply && reply->type == PROTO_CONN_LIST_REPLY) {
        count = reply->conn_list_reply.count;
        for (uint32_t i = 0; i < count; i++)
            if (conn_id && strcmp (reply->conn_list_reply.connections [i].conn_id, conn_id) == 0)
                *found = true;
    }
    proto_msg_destroy (&reply);
    return count;
}

static void
s_test_connections (void)
{
    printf ("connections: put, replace, delete, list by gateway, user and room\n");
    bool found;
    CHECK (s_conn_put ("conn-1", "gw-a", "alice", "room-x"));
    CHECK (s_conn_put ("conn-2", "gw-a", "bob", "room-x"));
    CHECK (s_conn_put ("conn-3", "gw-b", "alice", NULL));
    CHECK (s_conn_count ("gw-a", NULL, NULL, "conn-1", &found) == 2 && found);
    CHECK (s_conn_count (NULL, "alice", NULL, "conn-3", &found) == 2 && found);
    CHECK (s_conn_count (NULL, NULL, "room-x", "conn-2", &found) == 2 && found);
    //  A prefix of a key is not the key.
    CHECK (s_conn_count ("gw-", NULL, NULL, NULL, &found) == 0);
    //  Replacing moves it between rooms.
    CHECK (s_conn_put ("conn-1", "gw-a", "alice", "room-y"));
    CHECK (s_conn_count (NULL, NULL, "room-x", "conn-1", &found) == 1 && !found);
    CHECK (s_conn_count (NULL, NULL, "room-y", "conn-1", &found) == 1 && found);
    proto_msg_t del = { .type = PROTO_CONN_DEL, .conn_del.conn_id = "conn-1" };
    proto_msg_t *reply = harness_call (s_client, &del);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    CHECK (s_refused (&del, 404));
    CHECK (s_conn_count (NULL, NULL, "room-y", NULL, &found) == 0);
    CHECK (s_conn_count ("gw-a", NULL, NULL, "conn-1", &found) == 1 && !found);
    CHECK (s_conn_count (NULL, "alice", NULL, "conn-3", &found) == 1 && found);
    //  Exactly one key: the decoder refuses two.
    proto_msg_t both = { .type = PROTO_CONN_LIST, .conn_list = { .gateway_id = "gw-a",
                                                                .user_id = "bob" } };
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    CHECK (proto_encode (&both, &buf) == -1);
    msgpack_sbuffer_destroy (&buf);
}

//  A beat of one run of a gateway: true if stored took it (ok).
static bool
s_beat (const char *gateway_id, const char *incarnation, bool first)
{
    proto_msg_t request = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
        .gateway_id = gateway_id, .incarnation = incarnation, .at_ms = clock_now_ms (),
        .first = first } };
    proto_msg_t *reply = harness_call (s_client, &request);
    bool ok = reply && reply->type == PROTO_OK;
    proto_msg_destroy (&reply);
    return ok;
}

//  The runs gateways-silent lists (and so declares dead) before before_ms,
//  as "gateway/incarnation" joined by spaces into out.
static uint32_t
s_silent (int64_t before_ms, char *out, size_t size)
{
    proto_msg_t request = { .type = PROTO_GATEWAYS_SILENT, .gateways_silent = {
        .before_ms = before_ms } };
    proto_msg_t *reply = harness_call (s_reaper, &request);
    uint32_t count = 0;
    out [0] = 0;
    if (reply && reply->type == PROTO_GATEWAY_LIST)
        for (count = 0; count < reply->gateway_list.count; count++) {
            size_t used = strlen (out);
            snprintf (out + used, size - used, "%s%s/%s", used? " ": "",
                      reply->gateway_list.gateways [count].gateway_id,
                      reply->gateway_list.gateways [count].incarnation);
        }
    proto_msg_destroy (&reply);
    return count;
}

static void
s_test_gateway_runs (void)
{
    printf ("gateway runs: first beats, a restart makes the old run dead, 410 for the dead\n");
    char runs [512];
    int64_t long_ago = clock_now_ms () - 3600 * 1000;
    //  Beats are a gateway's, listing and forgetting runs the reaper's:
    //  another key is refused (403), whatever it asks.
    proto_msg_t beat = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
        .gateway_id = "gw-r", .incarnation = "run-a", .at_ms = clock_now_ms (), .first = true } };
    CHECK (s_refused (&beat, 403));
    proto_msg_t silent = { .type = PROTO_GATEWAYS_SILENT, .gateways_silent.before_ms = 1 };
    CHECK (s_refused (&silent, 403));
    proto_client_t *tool = s_client;
    s_client = s_gateway;
    CHECK (s_refused (&silent, 403));
    beat.gateway_beat.gone = true;
    CHECK (s_refused (&beat, 403));
    //  An unknown run is taken only with first; after its first ok, always.
    CHECK (!s_beat ("gw-r", "run-a", false));
    CHECK (s_beat ("gw-r", "run-a", true));
    CHECK (s_beat ("gw-r", "run-a", false));
    CHECK (s_beat ("gw-r", "run-a", true));         //  its ok was lost: harmless
    CHECK (s_silent (long_ago, runs, sizeof runs) == 0);
    //  Its records, and another gateway's.
    proto_msg_t put = { .type = PROTO_CONN_PUT, .conn_put.connection = {
        .conn_id = "rc-1", .gateway_id = "gw-r", .incarnation = "run-a", .user_id = "ulla",
        .room_id = "room-r", .connected_at_ms = clock_now_ms () } };
    proto_msg_t *reply = harness_call (s_client, &put);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    put.conn_put.connection.conn_id = "rc-2";
    put.conn_put.connection.incarnation = "run-b";
    reply = harness_call (s_client, &put);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);

    //  A restart: run-b's first beat makes run-a dead, at once.
    CHECK (s_beat ("gw-r", "run-b", true));
    CHECK (s_beat ("gw-other", "run-x", true));
    proto_msg_t request = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
        .gateway_id = "gw-r", .incarnation = "run-a", .at_ms = clock_now_ms () } };
    CHECK (s_refused (&request, 410));
    CHECK (s_silent (long_ago, runs, sizeof runs) == 1);
    CHECK (!strcmp (runs, "gw-r/run-a"));
    CHECK (s_beat ("gw-r", "run-b", false));
    //  Only the dead run's records are listed by its run.
    proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list = {
        .gateway_id = "gw-r", .incarnation = "run-a" } };
    reply = harness_call (s_client, &list);
    CHECK (reply && reply->type == PROTO_CONN_LIST_REPLY && reply->conn_list_reply.count == 1
           && !strcmp (reply->conn_list_reply.connections [0].conn_id, "rc-1")
           && !strcmp (reply->conn_list_reply.connections [0].incarnation, "run-a"));
    proto_msg_destroy (&reply);
    bool found;
    CHECK (s_conn_count ("gw-r", NULL, NULL, "rc-2", &found) == 2 && found);
    //  Forgotten, it stays refused (it is unknown now, and not first).
    request.gateway_beat.gone = true;
    reply = harness_call (s_reaper, &request);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    request.gateway_beat.gone = false;
    CHECK (s_refused (&request, 410));
    CHECK (s_silent (long_ago, runs, sizeof runs) == 0);

    //  Silent: listed, and dead from then on (a late beat is refused).
    CHECK (s_silent (clock_now_ms () + 1000, runs, sizeof runs) == 2);
    CHECK (strstr (runs, "gw-r/run-b") && strstr (runs, "gw-other/run-x"));
    CHECK (!s_beat ("gw-r", "run-b", false));
    CHECK (!s_beat ("gw-other", "run-x", true));
    CHECK (s_silent (long_ago, runs, sizeof runs) == 2);    //  until forgotten
    s_client = tool;
}

//  Send raw bytes; the answer must be an error 400 naming request_id.
static bool
s_raw_refused (const void *data, size_t size, uint64_t request_id)
{
    zsock_t *socket = proto_client_socket (s_client);
    zframe_t *frame = zframe_new (data, size);
    zframe_send (&frame, socket, 0);
    proto_msg_t *reply = proto_client_recv (s_client, 5000);
    bool ok = reply && reply->type == PROTO_ERROR && reply->error.status == 400
           && reply->request_id == request_id;
    if (!ok)
        fprintf (stderr, "  raw input of %zu bytes: %s\n", size,
                 reply? proto_type_name (reply->type): "no answer");
    proto_msg_destroy (&reply);
    return ok;
}

static void
s_test_malformed (void)
{
    printf ("malformed input: refused with 400, stored keeps serving\n");
    CHECK (s_raw_refused ("garbage", 7, 0));
    CHECK (s_raw_refused ("", 0, 0));
    CHECK (s_raw_refused ("\xdd\xff\xff\xff\xff", 5, 0));
    //  A valid envelope with a bad body: the refusal names the request.
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 6);
    msgpack_pack_uint8 (&pk, PROTO_VERSION);
    msgpack_pack_uint16 (&pk, PROTO_GEO_SEARCH);
    msgpack_pack_uint64 (&pk, 777);
    msgpack_pack_str (&pk, 0);
    msgpack_pack_str_body (&pk, "", 0);
    msgpack_pack_int64 (&pk, 1);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str (&pk, 8);
    msgpack_pack_str_body (&pk, "latitude", 8);
    msgpack_pack_double (&pk, 91.0);
    msgpack_pack_str (&pk, 9);
    msgpack_pack_str_body (&pk, "longitude", 9);
    msgpack_pack_double (&pk, 0.0);
    CHECK (s_raw_refused (buf.data, buf.size, 777));
    //  Truncated at every length.
    for (size_t size = 1; size < buf.size; size += 3)
        CHECK (s_raw_refused (buf.data, size, 0));
    msgpack_sbuffer_destroy (&buf);
    //  A type stored does not serve.
    proto_msg_t ok = { .type = PROTO_OK };
    CHECK (s_refused (&ok, 400));
    //  And it still serves.
    proto_msg_t stats = { .type = PROTO_STORE_STATS };
    proto_msg_t *reply = harness_call (s_client, &stats);
    CHECK (reply && reply->type == PROTO_STATS_REPLY && reply->stats_reply.rooms > 0
           && reply->stats_reply.commits > 0);
    proto_msg_destroy (&reply);
}

int
main (void)
{
    harness_init ("stored");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    REQUIRE (harness_start (&stored) == 0);
    s_endpoint = stored.endpoint;
    s_client = proto_client_new (stored.endpoint);
    s_gateway = harness_client_as (stored.endpoint, BUS_STORED, BUS_GATEWAY);
    s_reaper = harness_client_as (stored.endpoint, BUS_STORED, BUS_REAPER);
    REQUIRE (s_gateway && s_reaper);
    s_test_rooms ();
    s_test_rooms_idle ();
    s_test_append ();
    s_test_concurrent_appends ();
    s_test_connections ();
    s_test_gateway_runs ();
    s_test_malformed ();
    proto_client_destroy (&s_client);
    proto_client_destroy (&s_gateway);
    proto_client_destroy (&s_reaper);
    CHECK (harness_stop (&stored) == 0);
    return harness_finish ();
}
