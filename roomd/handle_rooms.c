/*  =========================================================================
    handle_rooms.c - what a shard does with each request for a room

    Each request becomes an op that runs in steps: checks against the room
    as held here, then a call to stored, then (in the continuation) the
    reply and the event. An event goes out only after stored has made the
    change durable, and before the reply, so a gateway that sees the reply
    has already seen the event (they travel on one link, in order).

    Ordering that the clients see:
      - a joining socket is sent its history from a read made after its
        join was committed; any message committed later reaches the gateway
        as an event after the join reply, so the socket misses nothing and
        sees nothing twice;
      - new messages fan out in the order stored answers their appends,
        which is the order of their seq.

    A socket's connection record in stored (what a shard that loads the
    room rebuilds its members from) is written here: the room into it in
    the join's room-update, out of it (or the record deleted, for a socket
    that closed) in the leave's. Calls to stored go on one link and are
    committed in the order sent, so a leave that came after a join (one
    gateway's link, in order) is written after it, even while the join's
    answer is still on its way: no record outlives a close that raced its
    join, and no member outlives it here either (s_leave_updated).
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "roomd.h"
#include "clock.h"
#include "log.h"

//  ---------------------------------------------------------------------------
//  Helpers

//  Stored refused a write of ours with 421: another shard claimed the room
//  since we loaded it (proto.h, Ownership), so the copy here is stale. Drop
//  it and serve the request once more from a fresh load, which claims the
//  room back (the gateways route it here again, or they would not ask).
void
handle_moved (roomd_t *self, op_t **op_p, const char *reason)
{
    op_t *op = *op_p;
    *op_p = NULL;
    room_t *room = rooms_find (self, op->room_id);
    if (room && room->state == ROOM_READY) {
        log_write (LOG_LEVEL_INFO, op->request->trace_id, "room %s moved away (%s); reloading it",
                   op->room_id, reason);
        rooms_remove (self, &room);
    }
    if (op->retried) {
        op_fail (self, &op, 503, "room %s is moving between shards; try again", op->room_id);
        return;
    }
    op->retried = true;
    handle_serve (self, op);
}

//  Answer an error reply from stored, or none (stored unreachable), as the
//  gateway's answer. closed_is_gone: a 409 "closed" means 404 to a client.
static void
s_fail_from_store (roomd_t *self, op_t **op_p, const proto_msg_t *reply, bool closed_is_gone)
{
    if (reply && reply->type == PROTO_ERROR && reply->error.status == 421)
        handle_moved (self, op_p, reply->error.reason);
    else
    if (!reply)
        op_fail (self, op_p, 503, "stored is unreachable");
    else
    if (reply->type == PROTO_ERROR && reply->error.status == 409 && closed_is_gone)
        op_fail (self, op_p, 404, "room %s is closed", (*op_p)->room_id);
    else
    if (reply->type == PROTO_ERROR)
        op_fail (self, op_p, reply->error.status, "%s", reply->error.reason);
    else
        op_fail (self, op_p, 500, "stored answered with a %s", proto_type_name (reply->type));
}

//  Keep a deep copy of room in op, for a later step.
//  A refusal made from the copy here (not a participant) is checked with
//  stored before it is given: a copy another shard has moved past (its
//  epoch is behind stored's) is dropped and the request served again from
//  a fresh load; otherwise the copy was right and the refusal stands.
static void
s_refusal_checked (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    room_t *room = rooms_find (self, op->room_id);
    bool checked = reply && reply->type == PROTO_ROOM_REPLY;
    if (checked && (!room || room->state != ROOM_READY))
        handle_moved (self, &op, "its copy went while the refusal was checked");
    else
    if (checked && reply->room_reply.room.epoch != room->record.epoch)
        handle_moved (self, &op, "its epoch moved on");
    else
        op_fail (self, &op, 403, "%s", op->refusal);
}

static void
s_refuse_checked (roomd_t *self, room_t *room, op_t *op, const char *refusal)
{
    snprintf (op->refusal, sizeof op->refusal, "%s", refusal);
    proto_msg_t call = { .type = PROTO_ROOM_GET, .room_get = { .room_id = room->id } };
    store_call (self, op, &call, s_refusal_checked);
}

static void
s_keep_room (op_t *op, const proto_room_t *room)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    int rc = proto_room_pack (&buffer, room);
    assert (rc == 0);
    if (!op->zone)
        op->zone = msgpack_zone_new (1024);
    assert (op->zone);
    char why [PROTO_WHY_MAX];
    rc = proto_room_unpack (buffer.data, buffer.size, op->zone, &op->result_room, why, sizeof why);
    assert (rc == 0);
    msgpack_sbuffer_destroy (&buffer);
}

//  The room as stored answered it: the copy here follows.
static void
s_room_changed (roomd_t *self, op_t *op, const proto_room_t *record)
{
    room_t *room = rooms_find (self, op->room_id);
    if (room && room->state == ROOM_READY)
        room_set_record (room, record);
}

static void
s_reply_room (roomd_t *self, op_t **op_p, const proto_room_t *room, bool changed)
{
    proto_msg_t reply = { .type = PROTO_ROOM_REPLY,
                          .room_reply = { .room = *room, .changed = changed } };
    op_finish (self, op_p, &reply);
}

//  ---------------------------------------------------------------------------
//  join

//  The join reply with the history stored answered. A sinceSeq join's
//  history is one page forward from there: `more` tells the gateway that
//  it stopped before the newest message (proto_join_reply_t). A plain
//  join's is the newest messages, which never leave a gap after them.
static void
s_join_history (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    const proto_room_join_t *join = &op->request->room_join;
    bool since = join->since_seq != 0;
    proto_msg_t answer = { .type = PROTO_JOIN_REPLY,
                           .join_reply = { .room = op->result_room } };
    const proto_message_t *history = NULL;
    uint32_t count = 0;
    bool more = false;
    if (reply && reply->type == PROTO_HISTORY_REPLY) {
        history = reply->history_reply.messages;
        count = reply->history_reply.count;
        more = since && reply->history_reply.more;
    }
    else {      //  joined all the same: the history can be read again later
        log_write (LOG_LEVEL_WARN, op->request->trace_id, "no history for a join to room %s",
                   op->room_id);
        more = since;
    }
    //  With what the room fanned out that the read may not have seen (its
    //  messages not durable yet): see the file's header.
    proto_message_t *merged = NULL;
    answer.join_reply.count = send_merge (self, op, history, count, join->since_seq,
                                          since? 0: (uint32_t) self->config->history_on_join,
                                          &more, &merged);
    answer.join_reply.messages = merged? merged: (proto_message_t *) history;
    answer.join_reply.more = more;
    uint64_t fanned = send_fanned_seq (self, op->room_id);
    if (fanned > answer.join_reply.room.last_seq)
        answer.join_reply.room.last_seq = fanned;
    char room_id [PROTO_ID_MAX + 1];
    snprintf (room_id, sizeof room_id, "%s", op->room_id);
    op_finish (self, &op, &answer);
    free (merged);
    send_trim (self, room_id);
}

static void
s_join_updated (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    const proto_room_join_t *join = &op->request->room_join;
    room_t *room = rooms_find (self, op->room_id);
    if (!reply || reply->type != PROTO_ROOM_REPLY) {
        //  The socket it made a member is none (a leave may have taken it
        //  out already; the room may have gone with a move).
        if (op->join_added && room && room->state == ROOM_READY)
            room_remove_member (room, join->conn_id);
        op->join_added = false;
        s_fail_from_store (self, &op, reply, true);
        return;
    }
    const proto_room_t *record = &reply->room_reply.room;
    s_room_changed (self, op, record);
    //  A join over HTTP (no socket) makes a participant and tells no one,
    //  as the original did: the app joins over HTTP and then over its
    //  socket, and shows every user-joined it gets, so an event here would
    //  be a second, nameless " joined the chat" line. The socket's join
    //  that follows is the one the room hears of.
    if (!join->conn_id) {
        proto_msg_t answer = { .type = PROTO_JOIN_REPLY, .join_reply = { .room = *record } };
        op_finish (self, &op, &answer);
        return;
    }
    //  Every member hears of a socket that joins, the joiner from its own
    //  gateway (rooms_join_done, in order with its history): unless the
    //  socket was a member already, or a leave of it came meanwhile.
    if (op->join_added && room && room_has_member (room, join->conn_id)) {
        proto_msg_t event = { .type = PROTO_EVENT_JOINED, .event_joined = {
            .room = *record, .user_id = join->user_id, .user_name = join->user_name,
            .user_icon = join->user_icon, .user_color = join->user_color,
            .except_conn = join->conn_id } };
        memcpy (event.trace_id, op->request->trace_id, sizeof event.trace_id);
        fanout_to_gateways (self, &event);
    }
    //  A plain join where HISTORY_ON_JOIN=0: no history (stored reads a
    //  limit of 0 as its default, so it is not asked).
    if (!join->since_seq && self->config->history_on_join == 0) {
        //  Its socket has every message up to the newest fanned out.
        proto_msg_t answer = { .type = PROTO_JOIN_REPLY, .join_reply = { .room = *record } };
        uint64_t fanned = send_fanned_seq (self, op->room_id);
        if (fanned > answer.join_reply.room.last_seq)
            answer.join_reply.room.last_seq = fanned;
        op_finish (self, &op, &answer);
        return;
    }
    //  The history is read after the join's commit: see the file's header.
    //  stored cuts the page by bytes as well (PROTO_REPLY_BYTES_MAX).
    s_keep_room (op, record);
    proto_msg_t call = { .type = PROTO_HISTORY, .history = { .room_id = op->room_id } };
    if (join->since_seq) {
        call.history.from_seq = join->since_seq + 1;
        call.history.limit = PROTO_LIST_MAX;
    }
    else
        call.history.limit = (uint32_t) self->config->history_on_join;
    if (room && room->state == ROOM_READY)
        send_pin (room, op);
    store_call (self, op, &call, s_join_history);
}

static void
s_join (roomd_t *self, room_t *room, op_t *op)
{
    const proto_room_join_t *join = &op->request->room_join;
    if (room->record.status != PROTO_STATUS_ACTIVE) {
        op_fail (self, &op, 404, "room %s is closed", room->id);
        return;
    }
    proto_msg_t call = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = room->id, .if_status = PROTO_STATUS_ACTIVE, .if_epoch = room->record.epoch,
        .add_participant = join->user_id, .touch_ms = clock_now_ms () } };
    //  A socket's record, in the room, in the same transaction (see the
    //  file's header). stored keeps the connectedAt of the gateway's put.
    proto_connection_t connection = {
        .conn_id = join->conn_id, .gateway_id = join->gateway_id,
        .incarnation = join->incarnation, .user_id = join->user_id, .room_id = room->id,
        .user_name = join->user_name, .user_icon = join->user_icon,
        .user_color = join->user_color, .connected_at_ms = clock_now_ms () };
    if (join->conn_id)
        call.room_update.connection = &connection;
    //  The socket is a member from now on, not from the commit: a leave of
    //  another socket of its user that comes meanwhile must see the user
    //  is still here, or it would take them out of the participants while
    //  this join puts their socket in the room (a send from it was refused
    //  403 then, tests/test_stress.c). A join that fails takes it out.
    op->join_added = join->conn_id
                  && room_add_member (room, join->conn_id, join->gateway_id, join->user_id);
    store_call (self, op, &call, s_join_updated);
}

//  ---------------------------------------------------------------------------
//  leave

static void s_leave_call (roomd_t *self, room_t *room, op_t *op, bool user_goes);

static void
s_leave_updated (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    if (!reply || reply->type != PROTO_ROOM_REPLY) {
        s_fail_from_store (self, &op, reply, false);
        return;
    }
    const proto_room_leave_t *leave = &op->request->room_leave;
    const proto_room_t *record = &reply->room_reply.room;
    s_room_changed (self, op, record);
    //  A join that was in flight when the leave came was committed before
    //  it and has added its socket since: out again.
    room_t *room = rooms_find (self, op->room_id);
    bool ready = room && room->state == ROOM_READY;
    if (ready && leave->conn_id)
        room_remove_member (room, leave->conn_id);
    else
    if (ready)
        room_remove_user (room, leave->user_id);
    if (reply->room_reply.changed) {
        proto_msg_t event = { .type = PROTO_EVENT_LEFT, .event_left = {
            .room = *record, .user_id = leave->user_id, .user_name = leave->user_name } };
        memcpy (event.trace_id, op->request->trace_id, sizeof event.trace_id);
        fanout_to_gateways (self, &event);
    }
    //  That join made its user a participant, which the copy did not know
    //  when the leave was weighed: with the last socket gone, so is the user.
    if (ready && leave->conn_id && !op->leave_again && !room_user_online (room, leave->user_id)
    &&  room_is_participant (room, leave->user_id)) {
        op->leave_again = true;
        s_leave_call (self, room, op, true);
        return;
    }
    s_reply_room (self, &op, record, reply->room_reply.changed);
}

//  The room-update of a leave: the user goes, or the socket's record
//  changes, or both (the second time round, the socket's change is made).
static void
s_leave_call (roomd_t *self, room_t *room, op_t *op, bool user_goes)
{
    const proto_room_leave_t *leave = &op->request->room_leave;
    proto_msg_t call = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = room->id, .if_epoch = room->record.epoch,
        .remove_participant = user_goes? leave->user_id: NULL } };
    if (!op->leave_again) {
        call.room_update.leave_conn_id = leave->conn_id;
        call.room_update.closed = leave->closed;
    }
    store_call (self, op, &call, s_leave_updated);
}

static void
s_leave (roomd_t *self, room_t *room, op_t *op)
{
    const proto_room_leave_t *leave = &op->request->room_leave;
    //  One socket went: the user stays while another of theirs is here.
    if (leave->conn_id)
        room_remove_member (room, leave->conn_id);
    else
        room_remove_user (room, leave->user_id);
    bool user_goes = room_is_participant (room, leave->user_id)
                  && !(leave->conn_id && room_user_online (room, leave->user_id));
    //  A socket's record changes even when its user stays (see the file's
    //  header); a user who is no participant has nothing to change.
    if (!user_goes && !leave->conn_id) {
        s_reply_room (self, &op, &room->record, false);
        return;
    }
    s_leave_call (self, room, op, user_goes);
}

//  ---------------------------------------------------------------------------
//  send

void
handle_store_failed (roomd_t *self, op_t **op_p, const proto_msg_t *reply)
{
    s_fail_from_store (self, op_p, reply, true);
}

//  A message is numbered, fanned out and appended in handle_send.c.
static void
s_send (roomd_t *self, room_t *room, op_t *op)
{
    const proto_message_t *message = &op->request->room_send.message;
    //  A resend to a room closed since its message was stored is owed its
    //  ack: stored answers a duplicate before it looks at the status (and
    //  409, a 404 here, for a message it does not hold).
    if (room->record.status != PROTO_STATUS_ACTIVE && !message->client_id) {
        op_fail (self, &op, 404, "room %s is closed", room->id);
        return;
    }
    if (room->record.status == PROTO_STATUS_ACTIVE
    &&  !room_is_participant (room, message->user_id)) {
        s_refuse_checked (self, room, op, "only participants may send messages in this room");
        return;
    }
    send_start (self, room, op);
}

//  ---------------------------------------------------------------------------
//  typing, info

static void
s_typing (roomd_t *self, room_t *room, op_t *op)
{
    const proto_typing_t *typing = &op->request->room_typing;
    if (room->record.status != PROTO_STATUS_ACTIVE) {
        op_fail (self, &op, 404, "room %s is closed", room->id);
        return;
    }
    if (!room_is_participant (room, typing->user_id)) {
        s_refuse_checked (self, room, op, "only participants may type in this room");
        return;
    }
    if (room_typing_allowed (room, typing->user_id, clock_mono_ms (),
                             self->config->typing_throttle_ms)) {
        proto_msg_t event = { .type = PROTO_EVENT_TYPING, .event_typing = *typing };
        memcpy (event.trace_id, op->request->trace_id, sizeof event.trace_id);
        fanout_to_gateways (self, &event);
    }
    proto_msg_t ok = { .type = PROTO_OK };
    op_finish (self, &op, &ok);
}

static void
s_info (roomd_t *self, room_t *room, op_t *op)
{
    const char *online [PROTO_LIST_MAX];
    proto_msg_t reply = { .type = PROTO_INFO_REPLY, .info_reply = { .room = room->record } };
    reply.info_reply.online = online;
    reply.info_reply.online_count = room_online (room, online, PROTO_LIST_MAX);
    op_finish (self, &op, &reply);
}

//  ---------------------------------------------------------------------------
//  close

static void
s_closed (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    room_t *closing = rooms_find (self, op->room_id);
    if (closing && closing->state == ROOM_READY)
        send_close_begins (closing, false);
    if (!reply || reply->type != PROTO_ROOM_REPLY) {
        s_fail_from_store (self, &op, reply, false);
        return;
    }
    const proto_room_t *record = &reply->room_reply.room;
    s_room_changed (self, op, record);
    room_t *room = rooms_find (self, op->room_id);
    if (room)
        while (room->member_count)
            room_remove_member (room, room->members [0].conn_id);
    proto_msg_t event = { .type = PROTO_EVENT_CLOSED, .event_closed.room_id = op->room_id };
    memcpy (event.trace_id, op->request->trace_id, sizeof event.trace_id);
    fanout_to_gateways (self, &event);
    log_write (LOG_LEVEL_INFO, op->request->trace_id, "room %s closed%s", op->room_id,
               op->request->room_close.idle_before_ms? " for idleness": "");
    s_reply_room (self, &op, record, true);
}

static void
s_close (roomd_t *self, room_t *room, op_t *op)
{
    const proto_room_close_t *close = &op->request->room_close;
    if (room->record.status != PROTO_STATUS_ACTIVE) {
        op_fail (self, &op, 404, "room %s is closed", room->id);
        return;
    }
    if (close->user_id && strcmp (close->user_id, room->record.creator) != 0) {
        op_fail (self, &op, 403, "only the room's creator may close it");
        return;
    }
    //  The same conditions again in stored, where they hold atomically.
    proto_msg_t call = { .type = PROTO_ROOM_UPDATE, .room_update = {
        .room_id = room->id, .if_status = PROTO_STATUS_ACTIVE, .if_creator = close->user_id,
        .if_idle_before_ms = close->idle_before_ms, .set_status = PROTO_STATUS_CLOSED,
        .if_epoch = room->record.epoch } };
    send_close_begins (room, true);
    store_call (self, op, &call, s_closed);
}

//  ---------------------------------------------------------------------------
//  Dispatch and loading

void
handle_request (roomd_t *self, room_t *room, op_t *op)
{
    assert (room->state == ROOM_READY);
    switch (op->request->type) {
        case PROTO_ROOM_JOIN:   s_join (self, room, op); break;
        case PROTO_ROOM_LEAVE:  s_leave (self, room, op); break;
        case PROTO_ROOM_SEND:   s_send (self, room, op); break;
        case PROTO_ROOM_TYPING: s_typing (self, room, op); break;
        case PROTO_ROOM_INFO:   s_info (self, room, op); break;
        case PROTO_ROOM_CLOSE:  s_close (self, room, op); break;
        default:
            op_fail (self, &op, 400, "roomd does not serve %s", proto_type_name (op->request->type));
    }
}

//  Run or refuse the requests that waited for a room to load. With status 0
//  the room is READY and they run in order; otherwise each gets the error
//  and the room leaves the table.
static void
s_loaded (roomd_t *self, room_t *room, uint16_t status, const char *reason)
{
    op_t *queued = room->queue_head;
    room->queue_head = room->queue_tail = NULL;
    if (status)
        rooms_remove (self, &room);
    while (queued) {
        op_t *op = queued;
        queued = op->queued_next;
        op->queued_next = NULL;
        if (status)
            op_fail (self, &op, status, "%s", reason);
        else {
            //  An earlier request may have closed the room: look again each time.
            room_t *again = rooms_find (self, op->room_id);
            if (again && again->state == ROOM_READY)
                handle_request (self, again, op);
            else
                op_fail (self, &op, 503, "room %s could not be loaded", op->room_id);
        }
    }
}

static void
s_load_members (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    room_t *room = rooms_find (self, op->room_id);
    assert (room && room->state == ROOM_LOADING);
    if (reply && reply->type == PROTO_CONN_LIST_REPLY) {
        for (uint32_t i = 0; i < reply->conn_list_reply.count; i++) {
            const proto_connection_t *connection = &reply->conn_list_reply.connections [i];
            if (connection->room_id && strcmp (connection->room_id, room->id) == 0)
                room_add_member (room, connection->conn_id, connection->gateway_id,
                                 connection->user_id);
        }
        log_debug ("room %s loaded with %zu sockets", room->id, room->member_count);
    }
    else        //  the room works without them; only `online` is short
        log_warn ("room %s loaded without its sockets: stored did not list them", room->id);
    room_set_record (room, &op->result_room);
    send_room_ready (room);
    op_finish (self, &op, NULL);
    s_loaded (self, room, 0, NULL);
}

static void
s_load_record (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    room_t *room = rooms_find (self, op->room_id);
    assert (room && room->state == ROOM_LOADING);
    if (!reply || reply->type != PROTO_ROOM_REPLY) {
        uint16_t status = !reply? 503: reply->type == PROTO_ERROR? reply->error.status: 500;
        char reason [PROTO_REASON_MAX];
        snprintf (reason, sizeof reason, "%s", !reply? "stored is unreachable"
                  : reply->type == PROTO_ERROR? reply->error.reason: "stored answered oddly");
        op_finish (self, &op, NULL);
        s_loaded (self, room, status, reason);
        return;
    }
    s_keep_room (op, &reply->room_reply.room);
    proto_msg_t call = { .type = PROTO_CONN_LIST, .conn_list = { .room_id = room->id } };
    store_call (self, op, &call, s_load_members);
}

void
handle_dispatch (roomd_t *self, proto_msg_t *request, link_t *link)
{
    const char *room_id = proto_room_of (request);
    assert (room_id);                   //  links.c lets only room requests through
    log_write (LOG_LEVEL_DEBUG, request->trace_id, "%s for room %s", proto_type_name (request->type),
               room_id);
    handle_serve (self, op_new (room_id, request, link));
}

//  Serve op: find its room or load it, then handle it.
void
handle_serve (roomd_t *self, op_t *op)
{
    const char *room_id = op->room_id;
    room_t *room = rooms_find (self, room_id);
    if (!room) {
        //  Not held here: read it from stored (a restart, or a room that
        //  became ours), keeping this request and any that follow in order.
        room = rooms_add (self, room_id);
        op_t *load = op_new (room_id, NULL, NULL);
        //  Loading is claiming: from now on another shard's writes of the
        //  room are refused, and ours until another claims it (proto.h).
        proto_msg_t call = { .type = PROTO_ROOM_UPDATE, .room_update = {
            .room_id = room->id, .claim = true } };
        memcpy (call.trace_id, op->request->trace_id, sizeof call.trace_id);
        room->queue_head = room->queue_tail = op;
        store_call (self, load, &call, s_load_record);
        return;
    }
    room->used_ms = clock_mono_ms ();
    if (room->state == ROOM_LOADING) {
        room->queue_tail->queued_next = op;
        room->queue_tail = op;
        return;
    }
    handle_request (self, room, op);
}
