/*  =========================================================================
    ws.c - the WebSocket handlers and the actions clients send

    A client frame is handled on the event loop (loop.c), which reads
    every WebSocket. An action that calls the backend ends in a then, with
    the reply: the request is sent and the loop goes on, the socket's next
    frames waiting until the reply comes (client_done), so one socket's
    actions are done in the order they were sent. Every frame a socket
    gets, a reply as much as an event, goes through its queue
    (sockets.c), so that replies and events reach it in the order they
    happened: a sender's new-message (an event) is queued before its ack
    (the reply).

    DESIGN.md's WebSocket table is the contract. Any failure is an error
    frame {type, action, status, error, requestId?, roomId?, messageId?}
    and the socket stays open; an optional requestId (a string or a
    number) is echoed as given, and so are the refused frame's roomId and
    messageId, so that a client that sends no requestId (the original app
    does not) can still tell which of its messages failed.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"
#include "clock.h"
#include "ids.h"
#include "log.h"
#include "utf8.h"
#include "wsframe.h"

#define FRAME_MAX   (64 * 1024)     //  a client frame: a 2000-character message is far less

//  One client frame being handled. An action that calls the backend ends
//  in its then, with the reply, on the event loop (which goes on meanwhile).
typedef void action_then_fn (action_t *self, proto_msg_t *reply);

struct action {
    conn_t *conn;
    json_t *frame;                      //  the client's JSON, or NULL
    const char *action;                 //  NULL until known
    const json_t *request_id;           //  the client's, or NULL
    char trace [IDS_TRACE_SIZE];
    action_then_fn *then;               //  called with the reply (NULL: it failed, said)
    bool waiting;                       //  for the reply
    bool dispatching;                   //  still in ws_run
    bool pipelined;                     //  a send in flight: the socket went on meanwhile
    size_t handler;                     //  of s_actions
    //  What a then needs of the request.
    char room_id [PROTO_ID_MAX + 1];
    char client_id [PROTO_ID_MAX + 1];
    bool has_client_id;
    bool was_in_room;
    uint64_t since_seq;
};

//  ---------------------------------------------------------------------------
//  Replies

static void
s_send (action_t *self, json_t *frame)
{
    if (self->request_id)
        json_object_set (frame, "requestId", (json_t *) self->request_id);
    sockets_send (self->conn, frame);
}

static void
s_error (action_t *self, int status, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
s_error (action_t *self, int status, const char *fmt, ...)
{
    char reason [PROTO_REASON_MAX + 64];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    json_t *frame = json_object ();
    json_object_set_new (frame, "type", json_string ("error"));
    json_t *action = self->action? json_string (self->action): NULL;
    json_object_set_new (frame, "action", action? action: json_null ());
    json_object_set_new (frame, "status", json_integer (status));
    json_t *error = json_string (reason);
    json_object_set_new (frame, "error", error? error: json_string ("bad request"));
    //  The refused action's own ids, as the client gave them (on every
    //  path: a bad field, roomd's refusal, a timeout), even when one of
    //  them is what was wrong: it is what the client holds to match.
    const char *echoed [] = { "roomId", "messageId" };
    for (size_t i = 0; i < sizeof echoed / sizeof echoed [0]; i++) {
        json_t *given = json_is_object (self->frame)? json_object_get (self->frame, echoed [i]): NULL;
        if (given && (json_is_string (given) || json_is_number (given)))
            json_object_set (frame, echoed [i], given);
    }
    log_write (status >= 500? LOG_LEVEL_WARN: LOG_LEVEL_DEBUG, self->trace,
               "%s from user %s: %d %s", self->action? self->action: "a frame",
               conn_user_id (self->conn), status, reason);
    s_send (self, frame);
}

static void
s_free (action_t *self)
{
    json_decref (self->frame);
    free (self);
}

//  The action is over: free it, and let the socket's next frame in.
static void
s_end (action_t *self)
{
    if (self->pipelined)
        client_send_done (self->conn);
    else
        client_done (self->conn);
    s_free (self);
}

//  The answer to a socket's call (the loop's thread).
static void
s_answered (void *arg, proto_msg_t *reply, int status, const char *reason)
{
    action_t *self = arg;
    if (!reply)
        s_error (self, status, "%s", reason);
    self->then (self, reply);
    self->waiting = false;
    if (!self->dispatching)
        s_end (self);
}

//  Call the backend with request; then gets the reply when it is of type
//  expected, or NULL once the client has been told why not. Nothing of
//  the action may follow this call but its then.
static void
s_call (action_t *self, proto_msg_t *request, int expected, action_then_fn *then)
{
    snprintf (request->trace_id, sizeof request->trace_id, "%s", self->trace);
    self->then = then;
    self->waiting = true;
    pending_send (request, expected, s_answered, self);
}

//  Read roomId, which every action but ping has.
static bool
s_room_id (action_t *self, char *room_id)
{
    char why [128];
    if (input_id (self->frame, "roomId", true, room_id, why, sizeof why)) {
        s_error (self, 400, "%s", why);
        return false;
    }
    return true;
}

//  Read the profile fields of the frame over profile. False: told the client.
static bool
s_profile (action_t *self, profile_t *profile)
{
    struct { const char *key; char *out; bool *has; } fields [] = {
        { "userName", profile->user_name, &profile->has_name },
        { "userIcon", profile->user_icon, &profile->has_icon },
        { "userColor", profile->user_color, &profile->has_color },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++) {
        char why [128];
        int rc = input_profile (self->frame, fields [i].key, fields [i].out, why, sizeof why);
        if (rc < 0) {
            s_error (self, 400, "%s", why);
            return false;
        }
        if (rc == 0)
            *fields [i].has = true;
    }
    return true;
}

#define S_NAME(profile)  ((profile)->has_name? (profile)->user_name: NULL)
#define S_ICON(profile)  ((profile)->has_icon? (profile)->user_icon: NULL)
#define S_COLOR(profile) ((profile)->has_color? (profile)->user_color: NULL)

//  Tell stored of a socket that opened, in no room. Its room is its room
//  shard's to write, in the join's and the leave's own room-updates: a
//  shard that loads the room rebuilds its members from these records, so
//  they change in the same transaction as the room (proto.h, room-update).
static void
s_post_connection (conn_t *conn, const char *trace)
{
    const profile_t *profile = conn_profile (conn);
    proto_msg_t put = { .type = PROTO_CONN_PUT, .conn_put.connection = {
        .conn_id = conn_id (conn), .gateway_id = gateway_config.gateway_id,
        .user_id = conn_user_id (conn),
        .user_name = S_NAME (profile), .user_icon = S_ICON (profile),
        .user_color = S_COLOR (profile), .connected_at_ms = clock_now_ms () } };
    snprintf (put.trace_id, sizeof put.trace_id, "%s", trace? trace: "");
    pending_post (&put);
}

//  The socket left room_id for another: the shard takes it out, and the
//  user too if it was their last socket there, and clears the room of its
//  record unless the join of the next room came first.
static void
s_post_leave (conn_t *conn, const char *room_id, const char *trace)
{
    proto_msg_t leave = { .type = PROTO_ROOM_LEAVE, .room_leave = {
        .room_id = room_id, .user_id = conn_user_id (conn), .conn_id = conn_id (conn),
        .user_name = S_NAME (conn_profile (conn)) } };
    snprintf (leave.trace_id, sizeof leave.trace_id, "%s", trace? trace: "");
    pending_post (&leave);
}

//  ---------------------------------------------------------------------------
//  Actions

static void
s_joined (action_t *self, proto_msg_t *reply)
{
    if (!reply)
        rooms_join_abort (self->conn, self->room_id);
    else
    if (!rooms_join_done (self->conn, self->room_id, self->since_seq, self->request_id,
                          &reply->join_reply))
        //  The client waits for an answer to its join: this is it.
        s_error (self, 409, "this socket no longer joins room %s: the room closed, or its "
                 "user left it from another socket meanwhile", self->room_id);
}

static void
s_join_room (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1], why [128];
    profile_t profile = *conn_profile (self->conn);
    int64_t since_seq = 0;
    if (!s_room_id (self, room_id) || !s_profile (self, &profile))
        return;
    if (input_integer (self->frame, "sinceSeq", false, 0, 9007199254740991LL, &since_seq,
                       why, sizeof why) < 0) {
        s_error (self, 400, "%s", why);
        return;
    }
    //  A socket is in one room at most: joining another leaves the first.
    char current [PROTO_ID_MAX + 1];
    rooms_of (self->conn, current);
    if (*current && strcmp (current, room_id) != 0) {
        rooms_leave (self->conn, current);
        s_post_leave (self->conn, current, self->trace);
    }
    //  The profile given here is the socket's from now on.
    *conn_profile (self->conn) = profile;
    proto_msg_t request = { .type = PROTO_ROOM_JOIN, .room_join = {
        .room_id = room_id, .user_id = conn_user_id (self->conn),
        .conn_id = conn_id (self->conn), .gateway_id = gateway_config.gateway_id,
        .user_name = S_NAME (&profile), .user_icon = S_ICON (&profile),
        .user_color = S_COLOR (&profile), .since_seq = (uint64_t) since_seq } };
    //  The socket is in the room from now on, its events held; on success
    //  its then queues its user-joined, message-history and what was
    //  held (rooms_join_done).
    rooms_join_begin (self->conn, room_id);
    snprintf (self->room_id, sizeof self->room_id, "%s", room_id);
    self->since_seq = (uint64_t) since_seq;
    s_call (self, &request, PROTO_JOIN_REPLY, s_joined);
}

static void
s_sent (action_t *self, proto_msg_t *reply)
{
    if (!reply)
        return;
    //  The new-message itself reaches every socket in the room, this one
    //  included and first, as an event. Its id, as the ack's, is the
    //  client's messageId when it sent one (render_message).
    const char *id = self->has_client_id? self->client_id: reply->append_reply.id;
    sockets_send_ack (self->conn, id, self->room_id, reply->append_reply.seq, self->request_id);
}

//  MESSAGES_PER_S: true if the user may send this message or typing
//  event now; else the client is told 429 and nothing goes further.
static bool
s_within_rate (action_t *self)
{
    if (limits_event (conn_user_id (self->conn)))
        return true;
    s_error (self, 429, "at most %lld messages and typing events a second (%lld at once)",
             (long long) gateway_config.messages_per_s, (long long) gateway_config.messages_burst);
    return false;
}

static void
s_send_message (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1], client_id [PROTO_ID_MAX + 1], why [128];
    profile_t profile = *conn_profile (self->conn);
    if (!s_within_rate (self) || !s_room_id (self, room_id) || !s_profile (self, &profile))
        return;
    const json_t *message = json_object_get (self->frame, "message");
    if (!message || json_is_null (message)) {
        s_error (self, 400, "message is required");
        return;
    }
    if (!json_is_string (message)) {
        s_error (self, 400, "message must be a string");
        return;
    }
    const char *text = json_string_value (message);
    size_t length = json_string_length (message);
    size_t chars = utf8_chars (text, length);
    if (length == 0 || strlen (text) != length) {
        s_error (self, 400, "message must not be empty");
        return;
    }
    if (chars > (size_t) gateway_config.max_message_chars || length > PROTO_TEXT_MAX) {
        s_error (self, 400, "message must be at most %lld characters",
                 (long long) gateway_config.max_message_chars);
        return;
    }
    if (utf8_has_control (text, length, true)) {
        s_error (self, 400, "message must not hold control characters other than tab and newline");
        return;
    }
    //  The client's message id may be a string or a whole number.
    const json_t *given = json_object_get (self->frame, "messageId");
    bool has_client_id = false;
    if (given && json_is_integer (given)) {
        snprintf (client_id, sizeof client_id, "%" JSON_INTEGER_FORMAT, json_integer_value (given));
        has_client_id = true;
    }
    else {
        int rc = input_id (self->frame, "messageId", false, client_id, why, sizeof why);
        if (rc < 0) {
            s_error (self, 400, "%s", why);
            return;
        }
        has_client_id = rc == 0;
    }
    char current [PROTO_ID_MAX + 1];
    rooms_of (self->conn, current);
    if (strcmp (current, room_id) != 0) {
        s_error (self, 403, "join room %s before sending to it", room_id);
        return;
    }
    proto_msg_t request = { .type = PROTO_ROOM_SEND, .room_send.message = {
        .room_id = room_id, .client_id = has_client_id? client_id: NULL,
        .user_id = conn_user_id (self->conn), .user_name = S_NAME (&profile),
        .user_icon = S_ICON (&profile), .user_color = S_COLOR (&profile),
        .text = text, .created_at_ms = clock_now_ms () } };
    snprintf (self->room_id, sizeof self->room_id, "%s", room_id);
    snprintf (self->client_id, sizeof self->client_id, "%s", has_client_id? client_id: "");
    self->has_client_id = has_client_id;
    s_call (self, &request, PROTO_APPEND_REPLY, s_sent);
}

//  A then for actions whose reply says nothing to the client.
static void
s_nothing_more (action_t *self, proto_msg_t *reply)
{
    (void) self;
    (void) reply;
}

static void
s_user_typing (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1];
    profile_t profile = *conn_profile (self->conn);
    if (!s_within_rate (self) || !s_room_id (self, room_id) || !s_profile (self, &profile))
        return;
    char current [PROTO_ID_MAX + 1];
    rooms_of (self->conn, current);
    if (strcmp (current, room_id) != 0) {
        s_error (self, 403, "join room %s before typing in it", room_id);
        return;
    }
    proto_msg_t request = { .type = PROTO_ROOM_TYPING, .room_typing = {
        .room_id = room_id, .user_id = conn_user_id (self->conn),
        .user_name = S_NAME (&profile) } };
    s_call (self, &request, PROTO_OK, s_nothing_more);
}

static void
s_room_info_reply (action_t *self, proto_msg_t *reply)
{
    if (!reply)
        return;
    const proto_info_reply_t *info = &reply->info_reply;
    if (!auth_may_read (&info->room, conn_user_id (self->conn))) {
        s_error (self, 403, "room %s is private: for its participants only", info->room.id);
        return;
    }
    //  The room's fields at the top, as the original sent them, and again
    //  as roomInfo, as every other frame carries them.
    json_t *frame = json_pack ("{s:s}", "type", "room-info");     //  type first, for a reader
    json_t *fields = render_room_info (&info->room);
    json_object_update (frame, fields);
    json_object_set_new (frame, "roomInfo", fields);
    json_object_set_new (frame, "roomId", json_string (info->room.id));
    json_object_set_new (frame, "creatorId", json_string (info->room.creator));
    json_t *online = json_array ();
    for (uint32_t i = 0; i < info->online_count; i++)
        json_array_append_new (online, json_string (info->online [i]));
    json_object_set_new (frame, "online", online);
    s_send (self, frame);
}


static void
s_room_info (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1];
    if (!s_room_id (self, room_id))
        return;
    proto_msg_t request = { .type = PROTO_ROOM_INFO, .room_info = { .room_id = room_id } };
    s_call (self, &request, PROTO_INFO_REPLY, s_room_info_reply);
}

static void
s_closed_room (action_t *self, proto_msg_t *reply)
{
    if (reply && !self->was_in_room) {
        json_t *frame = json_object ();
        json_object_set_new (frame, "type", json_string ("room-closed"));
        json_object_set_new (frame, "roomId", json_string (self->room_id));
        s_send (self, frame);
    }
}

static void
s_close_room (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1];
    if (!s_room_id (self, room_id))
        return;
    //  Members hear room-closed as an event (which also takes them out of
    //  the room, so look before); a closer outside the room would not.
    char current [PROTO_ID_MAX + 1];
    rooms_of (self->conn, current);
    proto_msg_t request = { .type = PROTO_ROOM_CLOSE, .room_close = {
        .room_id = room_id, .user_id = conn_user_id (self->conn) } };
    snprintf (self->room_id, sizeof self->room_id, "%s", room_id);
    self->was_in_room = strcmp (current, room_id) == 0;
    s_call (self, &request, PROTO_ROOM_REPLY, s_closed_room);
}

static void
s_leave_room (action_t *self)
{
    char room_id [PROTO_ID_MAX + 1];
    if (!s_room_id (self, room_id))
        return;
    //  The user leaves, so none of their sockets here is in the room any
    //  more; taken out first, so they do not hear of their own leaving.
    //  (The shard takes their records out of the room with them.)
    rooms_user_left (room_id, conn_user_id (self->conn));
    proto_msg_t request = { .type = PROTO_ROOM_LEAVE, .room_leave = {
        .room_id = room_id, .user_id = conn_user_id (self->conn),
        .user_name = S_NAME (conn_profile (self->conn)) } };
    s_call (self, &request, PROTO_ROOM_REPLY, s_nothing_more);
}

static void
s_ping (action_t *self)
{
    json_t *frame = json_object ();
    json_object_set_new (frame, "type", json_string ("pong"));
    s_send (self, frame);
}

static void
s_register_user (action_t *self)
{
    (void) self;                        //  old clients send it; nothing to do
}

static const struct {
    const char *name;
    void (*handle) (action_t *self);
} s_actions [] = {
    { "join-room",      s_join_room },
    { "send-message",   s_send_message },
    { "user-typing",    s_user_typing },
    { "room-info",      s_room_info },
    { "close-room",     s_close_room },
    { "leave-room",     s_leave_room },
    { "register-user",  s_register_user },
    { "ping",           s_ping },
};

//  Read the frame's action (the JSON of data): true when it is one of
//  s_actions, else the client has been told why not.
static bool
s_parse (action_t *self, const char *data, size_t size)
{
    if (size > FRAME_MAX) {
        s_error (self, 400, "a frame may be at most %d bytes", FRAME_MAX);
        return false;
    }
    if (!input_depth_ok (data, size, INPUT_DEPTH_MAX)) {
        s_error (self, 400, "a frame may nest at most %d levels deep", INPUT_DEPTH_MAX);
        return false;
    }
    json_error_t error;
    json_t *frame = json_loadb (data, size, 0, &error);
    if (!frame) {
        s_error (self, 400, "the frame is not JSON: %s", error.text);
        return false;
    }
    self->frame = frame;
    if (!json_is_object (frame)) {
        s_error (self, 400, "a frame must be a JSON object");
        return false;
    }
    const json_t *request_id = json_object_get (frame, "requestId");
    if (request_id && (json_is_string (request_id) || json_is_number (request_id)))
        self->request_id = request_id;
    const json_t *action = json_object_get (frame, "action");
    if (json_is_string (action))
        self->action = json_string_value (action);
    if (request_id && !self->request_id && !json_is_null (request_id))
        s_error (self, 400, "requestId must be a string or a number");
    else
    if (!action || json_is_null (action))
        s_error (self, 400, "action is required");
    else
    if (!self->action)
        s_error (self, 400, "action must be a string");
    else {
        size_t i = 0;
        while (i < sizeof s_actions / sizeof s_actions [0]
           &&  strcmp (s_actions [i].name, self->action) != 0)
            i++;
        if (i < sizeof s_actions / sizeof s_actions [0]) {
            self->handler = i;
            return true;
        }
        s_error (self, 400, "unknown action '%.64s'", self->action);
    }
    return false;
}

action_t *
ws_parse (conn_t *conn, int opcode, bool fin, const char *data, size_t size)
{
    atomic_fetch_add (&gateway_metrics.messages_received, 1);
    action_t *self = calloc (1, sizeof *self);
    assert (self);
    self->conn = conn;
    ids_trace (self->trace);
    bool parsed = false;
    if (opcode != WSFRAME_TEXT || !fin)
        s_error (self, 400, "only whole text frames holding JSON are understood");
    else
        parsed = s_parse (self, data, size);
    if (parsed)
        return self;
    s_free (self);
    return NULL;
}

//  A socket's send-messages go to the room's shard in the order sent, on
//  one link, and its answers come back in that order: several may be in
//  flight at once without reordering them, so that one socket's rate is
//  not one message per durable round trip (under load, a commit is tens
//  of milliseconds). Any other action changes what a send is checked
//  against (its room), or answers at once (ping), so it waits for them.
bool
ws_alone (const action_t *self)
{
    return s_actions [self->handler].handle != s_send_message;
}

void
ws_run (action_t *self)
{
    self->dispatching = true;
    s_actions [self->handler].handle (self);
    self->dispatching = false;
    if (!self->waiting)
        s_end (self);
    else
    if (!ws_alone (self)) {
        self->pipelined = true;
        client_send_begun (self->conn);
    }
}

void
ws_drop (action_t *self)
{
    s_free (self);
}

void
ws_opened (conn_t *conn)
{
    char trace [IDS_TRACE_SIZE];
    ids_trace (trace);
    s_post_connection (conn, trace);
    log_write (LOG_LEVEL_DEBUG, trace, "socket %s of user %s opened", conn_id (conn),
               conn_user_id (conn));
}

void
ws_closed (conn_t *conn)
{
    //  Copies first: sockets_close drops the table's reference.
    char id [IDS_UUID_SIZE], user_id [PROTO_ID_MAX + 1], room_id [PROTO_ID_MAX + 1];
    char address [LIMITS_ADDRESS_MAX];
    profile_t profile = *conn_profile (conn);
    snprintf (id, sizeof id, "%s", conn_id (conn));
    snprintf (user_id, sizeof user_id, "%s", conn_user_id (conn));
    snprintf (address, sizeof address, "%s", conn_address (conn));
    rooms_leave (conn, room_id);
    sockets_close (&conn);
    limits_socket_give (user_id, address);
    char trace [IDS_TRACE_SIZE];
    ids_trace (trace);
    //  The shard deletes the record as it takes the socket out (after its
    //  join, should that still be on its way); the conn-del covers a socket
    //  in no room.
    if (*room_id) {
        proto_msg_t leave = { .type = PROTO_ROOM_LEAVE, .room_leave = {
            .room_id = room_id, .user_id = user_id, .conn_id = id,
            .user_name = S_NAME (&profile), .closed = true } };
        snprintf (leave.trace_id, sizeof leave.trace_id, "%s", trace);
        pending_post (&leave);
    }
    proto_msg_t del = { .type = PROTO_CONN_DEL, .conn_del = { .conn_id = id } };
    snprintf (del.trace_id, sizeof del.trace_id, "%s", trace);
    pending_post (&del);
    log_write (LOG_LEVEL_DEBUG, trace, "socket %s of user %s closed%s%s", id, user_id,
               *room_id? " in room ": "", room_id);
}
