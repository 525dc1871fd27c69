/*  =========================================================================
    rooms.c - which sockets are in which room, and the fan-out of a room's
    events to them

    A socket is in at most one room of the index (room id -> its conns).
    An event is rendered to JSON once and its text queued to each conn in
    the room (sockets_queue).

    A socket that asks to join a room is put in the room at once, marked
    joining: the events of the room are held for it until its join is
    answered, and then queued after its user-joined and message-history
    (less the messages the history already holds). roomd sends the events
    of other joins, leaves and typing as they commit, and the answer to a
    join only after its history is read, so without this a socket would
    miss what happened in between although it was a member already.

    Messages reach a socket in seq order, each once (recovery.c says how).
    The index and every conn's room fields are the loop's thread's alone.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include "conn.h"
#include "log.h"

typedef struct {
    conn_t **conns;
    size_t count, max;
} room_t;

static zhashx_t *s_rooms;                   //  room id -> room_t

//  ---------------------------------------------------------------------------
//  The index
static void
s_room_destroy (void **item)
{
    room_t *room = *item;
    free (room->conns);
    free (room);
    *item = NULL;
}

static void
s_room_add (conn_t *conn, const char *room_id)
{
    room_t *room = zhashx_lookup (s_rooms, room_id);
    if (!room) {
        room = calloc (1, sizeof *room);
        assert (room);
        zhashx_insert (s_rooms, room_id, room);
    }
    if (room->count == room->max) {
        room->max = room->max? room->max * 2: 8;
        room->conns = realloc (room->conns, room->max * sizeof *room->conns);
        assert (room->conns);
    }
    room->conns [room->count++] = conn;
    snprintf (conn->room_id, sizeof conn->room_id, "%s", room_id);
}

static void
s_held_drop (conn_t *conn)
{
    for (size_t i = 0; i < conn->held_count; i++)
        frame_unref (conn->held [i].frame);
    free (conn->held);
    conn->held = NULL;
    conn->held_count = conn->held_max = 0;
}

static void
s_room_remove (conn_t *conn)
{
    conn->joining = false;
    s_held_drop (conn);
    //  A read of missed messages still under way is for the room left.
    conn->seq = conn->seen = 0;
    conn->recovering = conn->paging = false;
    conn->recovery++;
    if (!conn->room_id [0])
        return;
    room_t *room = zhashx_lookup (s_rooms, conn->room_id);
    if (room) {
        for (size_t i = 0; i < room->count; i++)
            if (room->conns [i] == conn) {
                room->conns [i] = room->conns [--room->count];
                break;
            }
        if (room->count == 0)
            zhashx_delete (s_rooms, conn->room_id);
    }
    conn->room_id [0] = 0;
}

conn_t **
rooms_members (const char *room_id, size_t *count)
{
    room_t *room = zhashx_lookup (s_rooms, room_id);
    *count = room? room->count: 0;
    return room? room->conns: NULL;
}

zlistx_t *
rooms_list (void)
{
    zlistx_t *ids = zlistx_new ();
    assert (ids);
    zlistx_set_destructor (ids, (czmq_destructor *) zstr_free);
    for (room_t *room = zhashx_first (s_rooms); room; room = zhashx_next (s_rooms))
        zlistx_add_end (ids, strdup ((const char *) zhashx_cursor (s_rooms)));
    return ids;
}

void
rooms_start (void)
{
    s_rooms = zhashx_new ();
    assert (s_rooms);
    zhashx_set_destructor (s_rooms, s_room_destroy);
}

void
rooms_stop (void)
{
    zhashx_destroy (&s_rooms);
}

//  ---------------------------------------------------------------------------
//  A socket's room

void
rooms_of (conn_t *conn, char *room_id)
{
    snprintf (room_id, PROTO_ID_MAX + 1, "%s", conn->joining? "": conn->room_id);
}

void
rooms_join_begin (conn_t *conn, const char *room_id)
{
    s_room_remove (conn);
    s_room_add (conn, room_id);
    conn->joining = true;
}

void
rooms_join_abort (conn_t *conn, const char *room_id)
{
    if (conn->joining && strcmp (conn->room_id, room_id) == 0)
        s_room_remove (conn);
}

void
rooms_leave (conn_t *conn, char *room_id)
{
    snprintf (room_id, PROTO_ID_MAX + 1, "%s", conn->room_id);
    s_room_remove (conn);
}

void
rooms_user_left (const char *room_id, const char *user_id)
{
    room_t *room = zhashx_lookup (s_rooms, room_id);
    for (size_t i = room? room->count: 0; i-- > 0; )
        if (strcmp (room->conns [i]->user_id, user_id) == 0) {
            conn_t *conn = room->conns [i];
            bool last = room->count == 1;
            s_room_remove (conn);       //  may free the room when it empties
            if (last)
                break;
        }
}

//  ---------------------------------------------------------------------------
//  Fan-out, and a join's answer

//  Hold frame for a joining conn, or a recovering one (recovery.c).
void
rooms_hold (conn_t *conn, frame_t *frame, uint64_t seq)
{
    if (conn->held_count >= (size_t) gateway_config.socket_queue_max)
        return;                 //  its queue would overflow as soon as it joined
    if (conn->held_count == conn->held_max) {
        conn->held_max = conn->held_max? conn->held_max * 2: 8;
        conn->held = realloc (conn->held, conn->held_max * sizeof *conn->held);
        assert (conn->held);
    }
    atomic_fetch_add (&frame->refs, 1);
    conn->held [conn->held_count].frame = frame;
    conn->held [conn->held_count++].seq = seq;
}

//  The frame of event: a new-message, the one made for every message,
//  written as text (jsontext.c); the rest through jansson's tree.
static frame_t *
s_render (const proto_msg_t *event)
{
    if (event->type == PROTO_EVENT_MESSAGE)
        return render_message_frame (&event->event_message.message);
    json_t *json = render_event (event);
    char *text = json? render_text (json): NULL;
    json_decref (json);
    frame_t *frame = text? frame_new (text): NULL;
    free (text);
    return frame;
}

void
rooms_deliver (const proto_msg_t *event)
{
    const char *room_id = proto_room_of (event);
    frame_t *frame = room_id? s_render (event): NULL;
    if (!frame) {
        log_write (LOG_LEVEL_WARN, event->trace_id, "an %s could not be rendered",
                   proto_type_name (event->type));
        return;
    }
    const char *except_conn = event->type == PROTO_EVENT_JOINED? event->event_joined.except_conn: NULL;
    const char *except_user = event->type == PROTO_EVENT_TYPING? event->event_typing.user_id: NULL;
    bool closed = event->type == PROTO_EVENT_CLOSED;
    recoveries_t starts = { 0 };
    room_t *room = zhashx_lookup (s_rooms, room_id);
    size_t count = room? room->count: 0;
    uint64_t seq = event->type == PROTO_EVENT_MESSAGE? event->event_message.message.seq: 0;
    for (size_t i = 0; i < count; i++) {
        conn_t *conn = room->conns [i];
        if ((except_conn && strcmp (conn->id, except_conn) == 0)
        ||  (except_user && strcmp (conn->user_id, except_user) == 0))
            continue;
        if (conn->joining && !closed)
            rooms_hold (conn, frame, seq);
        else
        if (seq)
            recovery_offer (conn, frame, seq, &starts);
        else
            sockets_queue (conn, frame);
    }
    if (closed && room) {
        for (size_t i = 0; i < count; i++) {
            conn_t *conn = room->conns [i];
            s_held_drop (conn);
            conn->joining = false;
            conn->room_id [0] = 0;
        }
        zhashx_delete (s_rooms, room_id);
    }
    frame_unref (frame);
    recovery_send (&starts);
    log_write (LOG_LEVEL_DEBUG, event->trace_id, "%s for room %s to %zu sockets",
               proto_type_name (event->type), room_id, count);
}

bool
rooms_join_done (conn_t *conn, const char *room_id, uint64_t since_seq,
                 const json_t *request_id, const proto_join_reply_t *reply)
{
    const profile_t *profile = &conn->profile;
    json_t *joined = json_object ();
    json_object_set_new (joined, "type", json_string ("user-joined"));
    json_object_set_new (joined, "userId", json_string (conn->user_id));
    json_object_set_new (joined, "userName", json_string (profile->has_name? profile->user_name: ""));
    json_object_set_new (joined, "userIcon", json_string (profile->has_icon? profile->user_icon: ""));
    json_object_set_new (joined, "userColor", json_string (profile->has_color? profile->user_color: ""));
    json_object_set_new (joined, "creatorId", json_string (reply->room.creator));
    json_object_set_new (joined, "roomId", json_string (reply->room.id));
    json_object_set_new (joined, "roomInfo", render_room_info (&reply->room));
    bool more = reply->more;
    frame_t *history = recovery_history_frame (reply->room.id, reply->messages, reply->count, 0, more);
    //  The socket has every message up to its history's last, or, with no
    //  history, up to the room's newest when the join was committed; but a
    //  sinceSeq join whose history could not be read has only what it said.
    uint64_t history_seq = reply->count? reply->messages [reply->count - 1].seq
                         : more? since_seq: reply->room.last_seq;
    recoveries_t starts = { 0 };

    //  Not joining that room any more: it closed, its user left the room
    //  from another socket, or the room closed meanwhile.
    bool joined_now = conn->state != CONN_CLOSED && conn->joining
                   && strcmp (conn->room_id, room_id) == 0;
    if (joined_now) {
        conn->joining = false;
        if (request_id)
            json_object_set (joined, "requestId", (json_t *) request_id);
        char *joined_text = render_text (joined);
        if (joined_text && history) {
            frame_t *first = frame_new (joined_text);
            sockets_queue (conn, first);
            sockets_queue (conn, history);
            frame_unref (first);
        }
        free (joined_text);
        conn->seq = history_seq;
        if (more) {
            //  The rest of its history, page by page, before anything newer.
            conn->paging = true;
            conn->seen = history_seq;
            recovery_begin (conn, &starts);
        }
        //  Then what happened while it joined, in order, but for the
        //  messages its history holds already (held again while its pages
        //  are read: the array is taken out first).
        __typeof__ (conn->held) held = conn->held;
        size_t held_count = conn->held_count;
        conn->held = NULL;
        conn->held_count = conn->held_max = 0;
        for (size_t i = 0; i < held_count; i++) {
            if (held [i].seq)
                recovery_offer (conn, held [i].frame, held [i].seq, &starts);
            else
                sockets_queue (conn, held [i].frame);
            frame_unref (held [i].frame);
        }
        free (held);
    }
    json_decref (joined);
    frame_unref (history);
    recovery_send (&starts);
    return joined_now;
}
