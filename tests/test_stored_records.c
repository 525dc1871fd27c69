/*  =========================================================================
    test_stored_records - the connection records a room update writes
    (proto.h, room-update): in its transaction, under its conditions,
    against the real stored over ZeroMQ

    A join's record goes in with the join and keeps the connectedAt of the
    gateway's put; a put without a room that lands after it keeps the room;
    a leave clears the room only while it is still the room left, and a
    close deletes the record; a participant who leaves takes their records
    out of the room; a refused update (stale epoch, closed or full room, a
    dead run) writes nothing; a malformed one is refused whole.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "harness.h"
#include "clock.h"

static proto_client_t *s_client;
static proto_client_t *s_gateway;           //  with the gateway's key: beats

static proto_msg_t *
s_update (proto_room_update_t update)
{
    proto_msg_t request = { .type = PROTO_ROOM_UPDATE, .room_update = update };
    return harness_call (s_client, &request);
}

//  The update is answered with a room reply (true), or refused with status.
static bool
s_answered (proto_room_update_t update, uint16_t status)
{
    proto_msg_t *reply = s_update (update);
    bool ok = status? reply && reply->type == PROTO_ERROR && reply->error.status == status
                    : reply && reply->type == PROTO_ROOM_REPLY;
    if (!ok)
        fprintf (stderr, "  room-update: expected %u, got %s %s\n", status,
                 reply? proto_type_name (reply->type): "nothing",
                 reply && reply->type == PROTO_ERROR? reply->error.reason: "");
    proto_msg_destroy (&reply);
    return ok;
}

static const char *
s_room (const char *creator, uint32_t max_participants)
{
    proto_room_t room = harness_room (48.85, 2.35);
    room.creator = creator;
    room.max_participants = max_participants;
    room.epoch = 5;
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put = { .room = room } };
    proto_msg_t *reply = harness_call (s_client, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    return room.id;
}

static proto_connection_t
s_connection (const char *conn_id, const char *user_id, const char *room_id)
{
    proto_connection_t connection = {
        .conn_id = conn_id, .gateway_id = "gw-s", .incarnation = "run-s", .user_id = user_id,
        .room_id = room_id, .user_name = "Name", .user_icon = "icon", .user_color = "#123456",
        .connected_at_ms = clock_now_ms () };
    return connection;
}

static bool
s_put (proto_connection_t connection)
{
    proto_msg_t put = { .type = PROTO_CONN_PUT, .conn_put.connection = connection };
    proto_msg_t *reply = harness_call (s_client, &put);
    bool ok = reply && reply->type == PROTO_OK;
    proto_msg_destroy (&reply);
    return ok;
}

//  conn_id's record as listed by its user (copied into *out, its strings
//  into the ring below), or false when it has none.
static bool
s_record (const char *user_id, const char *conn_id, proto_connection_t *out)
{
    static char strings [16][6][PROTO_PROFILE_MAX + 1];
    static int next;
    proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list.user_id = user_id };
    proto_msg_t *reply = harness_call (s_client, &list);
    bool found = false;
    for (uint32_t i = 0; reply && reply->type == PROTO_CONN_LIST_REPLY
                      && i < reply->conn_list_reply.count; i++) {
        const proto_connection_t *record = &reply->conn_list_reply.connections [i];
        if (strcmp (record->conn_id, conn_id) != 0)
            continue;
        char (*copy) [PROTO_PROFILE_MAX + 1] = strings [next++ % 16];
        const char *from [6] = { record->room_id, record->gateway_id, record->incarnation,
                                 record->user_name, record->user_icon, record->user_color };
        const char **to [6] = { &out->room_id, &out->gateway_id, &out->incarnation,
                                &out->user_name, &out->user_icon, &out->user_color };
        for (int f = 0; f < 6; f++) {
            snprintf (copy [f], sizeof copy [f], "%s", from [f]? from [f]: "");
            *to [f] = from [f]? copy [f]: NULL;
        }
        out->connected_at_ms = record->connected_at_ms;
        found = true;
    }
    proto_msg_destroy (&reply);
    return found;
}

//  How many records conn-list by room finds, and whether conn_id is one.
static uint32_t
s_in_room (const char *room_id, const char *conn_id, bool *found)
{
    proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list.room_id = room_id };
    proto_msg_t *reply = harness_call (s_client, &list);
    uint32_t count = 0;
    *found = false;
    if (reply && reply->type == PROTO_CONN_LIST_REPLY) {
        count = reply->conn_list_reply.count;
        for (uint32_t i = 0; i < count; i++)
            *found |= strcmp (reply->conn_list_reply.connections [i].conn_id, conn_id) == 0;
    }
    proto_msg_destroy (&reply);
    return count;
}

static void
s_test_join_and_leave (void)
{
    printf ("a join writes its record; a put at open keeps its room; a close deletes it\n");
    const char *room = s_room ("ann", 20);
    proto_connection_t joining = s_connection ("c-ann", "ann", room);
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .if_epoch = 5,
        .if_status = PROTO_STATUS_ACTIVE, .add_participant = "ann", .connection = &joining }, 0));
    proto_connection_t record;
    bool found;
    REQUIRE (s_record ("ann", "c-ann", &record));
    CHECK (record.room_id && strcmp (record.room_id, room) == 0);
    CHECK (!strcmp (record.gateway_id, "gw-s") && !strcmp (record.incarnation, "run-s"));
    CHECK (!strcmp (record.user_name, "Name") && !strcmp (record.user_color, "#123456"));
    CHECK (s_in_room (room, "c-ann", &found) == 1 && found);
    //  The gateway's put at open, landing after the join: the room stays.
    proto_connection_t opened = s_connection ("c-ann", "ann", NULL);
    opened.connected_at_ms = 1000;
    opened.user_name = "Query";                 //  the socket's default, older than the join's
    CHECK (s_put (opened));
    CHECK (s_record ("ann", "c-ann", &record) && record.room_id
           && !strcmp (record.room_id, room) && record.connected_at_ms == 1000
           && !strcmp (record.user_name, "Name"));
    //  Joining again (a participant already: no room change) writes the
    //  record all the same, and keeps when its socket opened.
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .add_participant = "ann",
                                               .connection = &joining }, 0));
    CHECK (s_record ("ann", "c-ann", &record) && record.connected_at_ms == 1000);
    //  A second socket of ann's; the first closes: its record goes, the
    //  other's stays, and so does ann.
    proto_connection_t second = s_connection ("c-ann-2", "ann", room);
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .add_participant = "ann",
                                               .connection = &second }, 0));
    proto_msg_t *reply = s_update ((proto_room_update_t) { .room_id = room,
        .leave_conn_id = "c-ann", .closed = true });
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && !reply->room_reply.changed
           && reply->room_reply.room.participant_count == 1);
    proto_msg_destroy (&reply);
    CHECK (!s_record ("ann", "c-ann", &record));
    CHECK (s_in_room (room, "c-ann-2", &found) == 1 && found);
    //  A leave of a socket stored no longer holds (its conn-del came first)
    //  is no error and writes nothing.
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .leave_conn_id = "c-ann",
                                               .closed = true }, 0));
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .leave_conn_id = "c-ann" }, 0));
    CHECK (!s_record ("ann", "c-ann", &record));
    //  ann leaves the room (leave-room): her records leave it with her.
    CHECK (s_answered ((proto_room_update_t) { .room_id = room,
                                               .remove_participant = "ann" }, 0));
    CHECK (s_in_room (room, "c-ann-2", &found) == 0);
    CHECK (s_record ("ann", "c-ann-2", &record) && record.room_id == NULL);
}

static void
s_test_moves (void)
{
    printf ("a socket that moves from A to B is in B, whichever write lands last\n");
    const char *a = s_room ("bo", 20), *b = s_room ("bo", 20);
    proto_connection_t in_a = s_connection ("c-bo", "bo", a), in_b = s_connection ("c-bo", "bo", b);
    proto_connection_t record;
    bool found;
    //  A's leave first, then B's join.
    CHECK (s_answered ((proto_room_update_t) { .room_id = a, .add_participant = "bo",
                                               .connection = &in_a }, 0));
    CHECK (s_answered ((proto_room_update_t) { .room_id = a, .leave_conn_id = "c-bo" }, 0));
    CHECK (s_record ("bo", "c-bo", &record) && record.room_id == NULL);
    CHECK (s_answered ((proto_room_update_t) { .room_id = b, .add_participant = "bo",
                                               .connection = &in_b }, 0));
    CHECK (s_record ("bo", "c-bo", &record) && record.room_id && !strcmp (record.room_id, b));
    //  Back to A; B's leave lands after A's join (two shards, two links).
    CHECK (s_answered ((proto_room_update_t) { .room_id = a, .add_participant = "bo",
                                               .connection = &in_a }, 0));
    CHECK (s_answered ((proto_room_update_t) { .room_id = b, .remove_participant = "bo",
                                               .leave_conn_id = "c-bo" }, 0));
    CHECK (s_record ("bo", "c-bo", &record) && record.room_id && !strcmp (record.room_id, a));
    CHECK (s_in_room (a, "c-bo", &found) == 1 && found);
    CHECK (s_in_room (b, "c-bo", &found) == 0);
}

static void
s_test_refused (void)
{
    printf ("a refused update writes no record\n");
    const char *room = s_room ("cy", 1);
    proto_connection_t joining = s_connection ("c-cy", "cy", room), record;
    bool found;
    //  A stale owner's (421), before anything else.
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .if_epoch = 4,
        .add_participant = "cy", .connection = &joining }, 421));
    CHECK (!s_record ("cy", "c-cy", &record));
    //  A full room's (400): the creator is not its one participant yet.
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .add_participant = "dee" }, 0));
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .add_participant = "cy",
                                               .connection = &joining }, 400));
    CHECK (!s_record ("cy", "c-cy", &record));
    //  A closed room's (409).
    CHECK (s_answered ((proto_room_update_t) { .room_id = room,
                                               .set_status = PROTO_STATUS_CLOSED }, 0));
    proto_connection_t dee = s_connection ("c-dee", "dee", room);
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .if_status = PROTO_STATUS_ACTIVE,
                                               .add_participant = "dee", .connection = &dee },
                       409));
    CHECK (!s_record ("dee", "c-dee", &record));
    //  A stale owner's leave does not delete a record either.
    const char *other = s_room ("cy", 20);
    proto_connection_t there = s_connection ("c-cy", "cy", other);
    CHECK (s_answered ((proto_room_update_t) { .room_id = other, .add_participant = "cy",
                                               .connection = &there }, 0));
    CHECK (s_answered ((proto_room_update_t) { .room_id = other, .if_epoch = 4,
                                               .leave_conn_id = "c-cy", .closed = true }, 421));
    CHECK (s_in_room (other, "c-cy", &found) == 1 && found);

    //  A run declared dead (its records are being cleared): its join is
    //  refused, 410, and leaves no record behind the clearing.
    proto_msg_t beat = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
        .gateway_id = "gw-s", .incarnation = "run-old", .at_ms = clock_now_ms (),
        .first = true } };
    proto_msg_t *reply = harness_call (s_gateway, &beat);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    beat.gateway_beat.incarnation = "run-s";        //  a restart: run-old is dead
    reply = harness_call (s_gateway, &beat);
    CHECK (reply && reply->type == PROTO_OK);
    proto_msg_destroy (&reply);
    proto_connection_t ghost = s_connection ("c-ghost", "eve", other);
    ghost.incarnation = "run-old";
    CHECK (s_answered ((proto_room_update_t) { .room_id = other, .add_participant = "eve",
                                               .connection = &ghost }, 410));
    CHECK (!s_record ("eve", "c-ghost", &record));
    ghost.incarnation = "run-s";                    //  the live run's is written
    CHECK (s_answered ((proto_room_update_t) { .room_id = other, .add_participant = "eve",
                                               .connection = &ghost }, 0));
    CHECK (s_record ("eve", "c-ghost", &record));
}

//  A room-update body written by hand, as no encoder of ours would: a
//  connection in room conn_room, with its connId unless conn_id is NULL;
//  closed without leaveConnId when bare_closed.
static void
s_raw_update (msgpack_sbuffer *buf, uint64_t request_id, const char *room_id,
              const char *conn_room, const char *conn_id, bool bare_closed)
{
    msgpack_sbuffer_clear (buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 6);
    msgpack_pack_uint8 (&pk, PROTO_VERSION);
    msgpack_pack_uint16 (&pk, PROTO_ROOM_UPDATE);
    msgpack_pack_uint64 (&pk, request_id);
    msgpack_pack_str (&pk, 0);
    msgpack_pack_str_body (&pk, "", 0);
    msgpack_pack_int64 (&pk, clock_now_ms ());
    #define S_STR(text) msgpack_pack_str (&pk, strlen (text)), \
                        msgpack_pack_str_body (&pk, text, strlen (text))
    msgpack_pack_map (&pk, 3);
    S_STR ("roomId"); S_STR (room_id);
    S_STR ("addParticipant"); S_STR ("fay");
    if (bare_closed) {
        S_STR ("closed");
        msgpack_pack_true (&pk);
        return;
    }
    S_STR ("connection");
    msgpack_pack_map (&pk, conn_id? 5: 4);
    if (conn_id) {
        S_STR ("connId"); S_STR (conn_id);
    }
    S_STR ("gatewayId"); S_STR ("gw-s");
    S_STR ("userId"); S_STR ("fay");
    S_STR ("roomId"); S_STR (conn_room);
    S_STR ("connectedAt");
    msgpack_pack_int64 (&pk, 1);
    #undef S_STR
}

static bool
s_raw_refused (const msgpack_sbuffer *buf, uint64_t request_id)
{
    zframe_t *frame = zframe_new (buf->data, buf->size);
    zframe_send (&frame, proto_client_socket (s_client), 0);
    proto_msg_t *reply = proto_client_recv (s_client, 5000);
    bool ok = reply && reply->type == PROTO_ERROR && reply->error.status == 400
           && reply->request_id == request_id;
    if (!ok)
        fprintf (stderr, "  raw room-update: %s\n", reply? proto_type_name (reply->type): "nothing");
    else
        printf ("  refused: %s\n", reply->error.reason);
    proto_msg_destroy (&reply);
    return ok;
}

static void
s_test_malformed (void)
{
    printf ("a malformed room update is refused whole: nothing written\n");
    const char *room = s_room ("fay", 20), *elsewhere = s_room ("fay", 20);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    //  Written as it should be, it is taken: the bytes are right.
    s_raw_update (&buf, 901, room, room, "c-fay-ok", false);
    zframe_t *frame = zframe_new (buf.data, buf.size);
    zframe_send (&frame, proto_client_socket (s_client), 0);
    proto_msg_t *reply = proto_client_recv (s_client, 5000);
    CHECK (reply && reply->type == PROTO_ROOM_REPLY && reply->request_id == 901);
    proto_msg_destroy (&reply);
    proto_connection_t record;
    CHECK (s_record ("fay", "c-fay-ok", &record));
    CHECK (s_answered ((proto_room_update_t) { .room_id = room, .leave_conn_id = "c-fay-ok",
                                               .closed = true,
                                               .remove_participant = "fay" }, 0));
    //  A connection of another room, one without its id, closed alone.
    s_raw_update (&buf, 902, room, elsewhere, "c-fay", false);
    CHECK (s_raw_refused (&buf, 902));
    s_raw_update (&buf, 903, room, room, NULL, false);
    CHECK (s_raw_refused (&buf, 903));
    s_raw_update (&buf, 904, room, room, "c-fay", true);
    CHECK (s_raw_refused (&buf, 904));
    msgpack_sbuffer_destroy (&buf);
    //  Nothing of them was written: no record, and fay is no participant.
    bool found;
    CHECK (!s_record ("fay", "c-fay", &record));
    CHECK (s_in_room (room, "c-fay", &found) == 0 && s_in_room (elsewhere, "c-fay", &found) == 0);
    proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get.room_id = room };
    reply = harness_call (s_client, &get);
    CHECK (reply && reply->type == PROTO_ROOM_REPLY
           && reply->room_reply.room.participant_count == 0);
    proto_msg_destroy (&reply);
}

int
main (void)
{
    harness_init ("stored_records");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    REQUIRE (harness_start (&stored) == 0);
    s_client = proto_client_new (stored.endpoint);
    s_gateway = harness_client_as (stored.endpoint, BUS_STORED, BUS_GATEWAY);
    REQUIRE (s_client && s_gateway);
    s_test_join_and_leave ();
    s_test_moves ();
    s_test_refused ();
    s_test_malformed ();
    proto_client_destroy (&s_client);
    proto_client_destroy (&s_gateway);
    CHECK (harness_stop (&stored) == 0);
    return harness_finish ();
}
