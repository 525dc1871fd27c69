/*  =========================================================================
    http.c - the gateway's HTTP routes

    DESIGN.md's HTTP table is the contract; the aliases (/create-room,
    /search-rooms, /join-room, /close-room) are kept for the original
    clients, which also test for exactly 200 on success. Every answer is
    JSON with Access-Control-Allow-Origin: *, errors are {"error": "..."};
    /metrics alone answers Prometheus text.

    A route runs on the civetweb thread that read the request; a call to
    the backend (stored for creation, search and history, the room's shard
    for everything that touches a live room) is handed to the event loop,
    which owns every ZeroMQ socket, and the route waits for its answer
    (calls.c).
    =========================================================================
*/

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "gateway.h"
#include "clock.h"
#include "ids.h"
#include "log.h"

#define HISTORY_MAX         PROTO_LIST_MAX

//  One request being served.
typedef struct {
    struct mg_connection *mg;
    const struct mg_request_info *info;
    char trace [IDS_TRACE_SIZE];
    int status;                         //  what was answered, for civetweb's log
} request_t;

//  ---------------------------------------------------------------------------
//  Answers

//  headers: more header lines as name, value, ..., NULL (Allow, X-More), or NULL.
static void
s_reply (struct mg_connection *mg, int status, const char *content_type, const char *body,
         size_t size, const char *const *headers)
{
    char length [32];
    snprintf (length, sizeof length, "%zu", size);
    if (mg_response_header_start (mg, status) < 0) {
        //  civetweb refuses its header API in a WebSocket's connect
        //  handler (the request is no plain request yet): write it raw.
        mg_printf (mg, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                   "Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, mg_get_response_code_text (mg, status), content_type, size);
        if (size)
            mg_write (mg, body, size);
        return;
    }
    mg_response_header_add (mg, "Content-Type", content_type, -1);
    mg_response_header_add (mg, "Access-Control-Allow-Origin", "*", -1);
    mg_response_header_add (mg, "Cache-Control", "no-store", -1);
    for (size_t i = 0; headers && headers [i]; i += 2)
        mg_response_header_add (mg, headers [i], headers [i + 1], -1);
    mg_response_header_add (mg, "Content-Length", length, -1);
    mg_response_header_send (mg);
    if (size)
        mg_write (mg, body, size);
}

static void
s_reply_json (struct mg_connection *mg, int status, json_t *body, const char *const *headers)
{
    char *text = render_text (body);
    json_decref (body);
    const char *fallback = "{\"error\":\"the answer could not be written\"}";
    if (!text)
        status = 500;
    s_reply (mg, status, "application/json", text? text: fallback,
             strlen (text? text: fallback), text? headers: NULL);
    free (text);
}

void
http_reply (struct mg_connection *mg, int status, json_t *body)
{
    s_reply_json (mg, status, body, NULL);
}

static int
s_answer (request_t *self, int status, json_t *body)
{
    http_reply (self->mg, status, body);
    self->status = status;
    return status;
}

static int
s_error (request_t *self, int status, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static int
s_error (request_t *self, int status, const char *fmt, ...)
{
    char reason [PROTO_REASON_MAX + 64];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    log_write (status >= 500? LOG_LEVEL_WARN: LOG_LEVEL_DEBUG, self->trace, "%s %s: %d %s",
               self->info->request_method, self->info->local_uri, status, reason);
    json_t *body = json_object ();
    json_t *text = json_string (reason);
    json_object_set_new (body, "error", text? text: json_string ("bad request"));
    return s_answer (self, status, body);
}

static int
s_not_allowed (request_t *self, const char *allow)
{
    const char *body = "{\"error\":\"method not allowed\"}";
    const char *headers [] = { "Allow", allow, NULL };
    s_reply (self->mg, 405, "application/json", body, strlen (body), headers);
    return self->status = 405;
}

//  ---------------------------------------------------------------------------
//  Input

//  The request's body as a JSON object, or NULL after answering why not.
static json_t *
s_body (request_t *self)
{
    int status;
    char why [PROTO_REASON_MAX];
    json_t *body = body_json (self->mg, &status, why, sizeof why);
    if (!body)
        s_error (self, status, "%s", why);
    return body;
}

//  A query parameter into out (size bytes). Returns 0, 1 when absent or
//  empty, or -1 after answering why it is bad.
static int
s_query (request_t *self, const char *key, char *out, size_t size)
{
    const char *query = self->info->query_string? self->info->query_string: "";
    int rc = mg_get_var (query, strlen (query), key, out, size);
    if (rc == -1 || (rc == 0 && !*out))
        return 1;
    if (rc < 0) {
        s_error (self, 400, "%s is too long", key);
        return -1;
    }
    return 0;
}

//  A query parameter that is a number in [min, max]. Returns 0, 1 when
//  absent (and not required), or -1 after answering why it is bad.
static int
s_query_number (request_t *self, const char *key, bool required, double min, double max,
                double *out)
{
    char text [64];
    int rc = s_query (self, key, text, sizeof text);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (required)
            s_error (self, 400, "%s is required", key);
        return required? -1: 1;
    }
    if (input_text_number (text, out) || *out < min || *out > max) {
        s_error (self, 400, "%s must be a number from %g to %g", key, min, max);
        return -1;
    }
    return 0;
}

//  The same for a whole number.
static int
s_query_integer (request_t *self, const char *key, int64_t min, int64_t max, int64_t *out)
{
    char text [64];
    double number;
    int rc = s_query (self, key, text, sizeof text);
    if (rc)
        return rc;
    if (input_text_number (text, &number) || number != floor (number)
    ||  number < (double) min || number > (double) max) {
        s_error (self, 400, "%s must be a whole number from %lld to %lld", key,
                 (long long) min, (long long) max);
        return -1;
    }
    *out = (int64_t) number;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Identity (auth.c)

//  With AUTH=jwt, the user of the request's bearer token into subject
//  ("" with AUTH=none). Returns 0, or the status answered (401).
static int
s_subject (request_t *self, char *subject)
{
    char why [200];
    int status = auth_http (self->mg, subject, why, sizeof why);
    return status? s_error (self, status, "%s", why): 0;
}

//  With AUTH=jwt the request acts as subject: a userId the client gave
//  (given: input_id said 0) must be it, and one left out is it. Returns
//  0, or the status answered (403). With AUTH=none user_id stays.
static int
s_acting_user (request_t *self, const char *subject, bool given, char *user_id)
{
    if (!auth_required ())
        return 0;
    char why [160];
    int status = auth_claim (subject, given? user_id: NULL, why, sizeof why);
    if (status)
        return s_error (self, status, "%s", why);
    snprintf (user_id, PROTO_ID_MAX + 1, "%s", subject);
    return 0;
}

//  A read as subject: a userId in its query must be the token's.
static int
s_query_user (request_t *self, const char *subject)
{
    char user_id [PROTO_ID_MAX + 1];
    int rc = s_query (self, "userId", user_id, sizeof user_id);
    return rc < 0? self->status: s_acting_user (self, subject, rc == 0, user_id);
}

//  ---------------------------------------------------------------------------
//  Calls

//  Call the backend; the reply when it is of type expected, else NULL
//  after answering the client (an error from roomd or stored keeps its status).
static proto_msg_t *
s_call (request_t *self, proto_msg_t *request, int expected, int timeout_ms)
{
    snprintf (request->trace_id, sizeof request->trace_id, "%s", self->trace);
    int status;
    char reason [PROTO_REASON_MAX];
    proto_msg_t *reply = backend_call (request, expected, timeout_ms, &status, reason,
                                         sizeof reason);
    if (!reply)
        s_error (self, status, "%s", reason);
    return reply;
}

static int
s_timeout (void)
{
    //  The backend answers 503 itself at REQUEST_TIMEOUT_MS; this is the
    //  backstop should it not.
    return (int) gateway_config.request_timeout_ms + 1000;
}

//  ---------------------------------------------------------------------------
//  Routes

static int
s_create_room (request_t *self)
{
    char subject [PROTO_ID_MAX + 1];
    if (s_subject (self, subject))
        return self->status;
    json_t *body = s_body (self);
    if (!body)
        return self->status;
    char user_id [PROTO_ID_MAX + 1], road_name [PROTO_PROFILE_MAX + 1], why [160];
    double latitude, longitude;
    int64_t max_participants = gateway_config.max_participants;
    proto_room_type_t room_type = PROTO_ROOM_PUBLIC;
    int status = 0, rc, user_rc;
    if ((user_rc = input_id (body, "userId", !auth_required (), user_id, why, sizeof why)) < 0
    ||  input_number (body, "latitude", true, -90, 90, &latitude, why, sizeof why) < 0
    ||  input_number (body, "longitude", true, -180, 180, &longitude, why, sizeof why) < 0
    ||  (rc = input_profile (body, "roadName", road_name, why, sizeof why)) < 0
    ||  input_integer (body, "maxParticipants", false, 1, 1000000000, &max_participants,
                       why, sizeof why) < 0)
        status = 400;
    const json_t *type = json_object_get (body, "roomType");
    if (!status && type && !json_is_null (type)) {
        if (json_is_string (type) && strcmp (json_string_value (type), "public") == 0)
            room_type = PROTO_ROOM_PUBLIC;
        else
        if (json_is_string (type) && strcmp (json_string_value (type), "private") == 0)
            room_type = PROTO_ROOM_PRIVATE;
        else {
            snprintf (why, sizeof why, "roomType must be \"public\" or \"private\"");
            status = 400;
        }
    }
    if (status) {
        json_decref (body);
        return s_error (self, status, "%s", why);
    }
    if (s_acting_user (self, subject, user_rc == 0, user_id)) {
        json_decref (body);
        return self->status;
    }
    if (!limits_room (user_id)) {
        json_decref (body);
        return s_error (self, 429, "user %s may create at most %lld rooms a minute", user_id,
                        (long long) gateway_config.rooms_per_minute);
    }
    //  The cap is the gateway's: a client may ask for fewer, never more.
    if (max_participants > gateway_config.max_participants)
        max_participants = gateway_config.max_participants;
    char room_id [IDS_UUID_SIZE];
    const char *participants [] = { user_id };
    int64_t now = clock_now_ms ();
    proto_msg_t request = { .type = PROTO_ROOM_PUT, .room_put = { .if_absent = true, .room = {
        .id = ids_uuid (room_id), .latitude = latitude, .longitude = longitude,
        .road_name = rc == 0? road_name: NULL, .radius_m = (uint32_t) gateway_config.room_radius_m,
        .creator = user_id, .participants = participants, .participant_count = 1,
        .created_at_ms = now, .last_activity_ms = now, .status = PROTO_STATUS_ACTIVE,
        .room_type = room_type, .max_participants = (uint32_t) max_participants } } };
    json_decref (body);
    proto_msg_t *reply = s_call (self, &request, PROTO_ROOM_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    json_t *answer = json_object ();
    json_object_set_new (answer, "roomId", json_string (reply->room_reply.room.id));
    json_object_set_new (answer, "roomInfo", render_room_info (&reply->room_reply.room));
    proto_msg_destroy (&reply);
    log_write (LOG_LEVEL_INFO, self->trace, "room %s created by %s", room_id, user_id);
    return s_answer (self, 200, answer);
}

static int
s_search_rooms (request_t *self)
{
    double latitude, longitude;
    if (s_query_number (self, "latitude", true, -90, 90, &latitude) < 0
    ||  s_query_number (self, "longitude", true, -180, 180, &longitude) < 0)
        return self->status;
    char type [16];
    int rc = s_query (self, "roomType", type, sizeof type);
    if (rc < 0)
        return self->status;
    //  Without roomType, public rooms: a private room is found only by
    //  those who ask for private ones.
    proto_room_type_t room_type = PROTO_ROOM_PUBLIC;
    if (rc == 0 && strcmp (type, "private") == 0) {
        //  With AUTH=jwt a private room is never listed: it is joined by
        //  its id, which is the invitation.
        if (auth_required ())
            return s_answer (self, 200, json_array ());
        room_type = PROTO_ROOM_PRIVATE;
    }
    else
    if (rc == 0 && strcmp (type, "public") != 0)
        return s_error (self, 400, "roomType must be \"public\" or \"private\"");
    proto_msg_t request = { .type = PROTO_GEO_SEARCH, .geo_search = {
        .latitude = latitude, .longitude = longitude, .room_type = room_type } };
    proto_msg_t *reply = s_call (self, &request, PROTO_GEO_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    json_t *rooms = json_array ();
    for (uint32_t i = 0; i < reply->geo_reply.count; i++) {
        json_t *info = render_room_info (&reply->geo_reply.hits [i].room);
        json_object_set_new (info, "distance", json_real (reply->geo_reply.hits [i].distance_m));
        json_array_append_new (rooms, info);
    }
    proto_msg_destroy (&reply);
    return s_answer (self, 200, rooms);
}

//  The body of join and close: {roomId, userId}. Returns 0, or the status
//  of the error already answered.
static int
s_room_and_user (request_t *self, char *room_id, char *user_id)
{
    char subject [PROTO_ID_MAX + 1];
    if (s_subject (self, subject))
        return self->status;
    json_t *body = s_body (self);
    if (!body)
        return self->status;
    char why [160];
    int user_rc = 0;
    int rc = input_id (body, "roomId", true, room_id, why, sizeof why) < 0
          || (user_rc = input_id (body, "userId", !auth_required (), user_id, why, sizeof why)) < 0;
    json_decref (body);
    if (rc)
        return s_error (self, 400, "%s", why);
    return s_acting_user (self, subject, user_rc == 0, user_id);
}

static int
s_join_room (request_t *self)
{
    char room_id [PROTO_ID_MAX + 1], user_id [PROTO_ID_MAX + 1];
    if (s_room_and_user (self, room_id, user_id))
        return self->status;
    proto_msg_t request = { .type = PROTO_ROOM_JOIN, .room_join = {
        .room_id = room_id, .user_id = user_id } };
    proto_msg_t *reply = s_call (self, &request, PROTO_JOIN_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    json_t *answer = json_object ();
    json_object_set_new (answer, "success", json_true ());
    json_object_set_new (answer, "roomInfo", render_room_info (&reply->join_reply.room));
    json_object_set_new (answer, "creatorId", json_string (reply->join_reply.room.creator));
    proto_msg_destroy (&reply);
    return s_answer (self, 200, answer);
}

static int
s_close_room (request_t *self)
{
    char room_id [PROTO_ID_MAX + 1], user_id [PROTO_ID_MAX + 1];
    if (s_room_and_user (self, room_id, user_id))
        return self->status;
    proto_msg_t request = { .type = PROTO_ROOM_CLOSE, .room_close = {
        .room_id = room_id, .user_id = user_id } };
    proto_msg_t *reply = s_call (self, &request, PROTO_ROOM_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    proto_msg_destroy (&reply);
    json_t *answer = json_object ();
    json_object_set_new (answer, "success", json_true ());
    return s_answer (self, 200, answer);
}

static int
s_room_info (request_t *self, const char *room_id)
{
    char subject [PROTO_ID_MAX + 1];
    if (s_subject (self, subject) || s_query_user (self, subject))
        return self->status;
    proto_msg_t request = { .type = PROTO_ROOM_INFO, .room_info = { .room_id = room_id } };
    proto_msg_t *reply = s_call (self, &request, PROTO_INFO_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    if (!auth_may_read (&reply->info_reply.room, subject)) {
        proto_msg_destroy (&reply);
        return s_error (self, 403, "room %s is private: for its participants only", room_id);
    }
    json_t *answer = render_room_info (&reply->info_reply.room);
    json_t *online = json_array ();
    for (uint32_t i = 0; i < reply->info_reply.online_count; i++)
        json_array_append_new (online, json_string (reply->info_reply.online [i]));
    json_object_set_new (answer, "online", online);
    proto_msg_destroy (&reply);
    return s_answer (self, 200, answer);
}

static int
s_messages (request_t *self, const char *room_id)
{
    char subject [PROTO_ID_MAX + 1];
    if (s_subject (self, subject) || s_query_user (self, subject))
        return self->status;
    int64_t before = 0, limit = gateway_config.history_limit;
    bool known = false;                 //  the room's record was read
    if (s_query_integer (self, "before", 0, 9007199254740991LL, &before) < 0
    ||  s_query_integer (self, "limit", 1, HISTORY_MAX, &limit) < 0)
        return self->status;
    if (auth_required ()) {
        //  Whether it is private, and who takes part, the record tells.
        proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get = { .room_id = room_id } };
        proto_msg_t *room = s_call (self, &get, PROTO_ROOM_REPLY, s_timeout ());
        if (!room)
            return self->status;
        bool may = auth_may_read (&room->room_reply.room, subject);
        proto_msg_destroy (&room);
        if (!may)
            return s_error (self, 403, "room %s is private: for its participants only", room_id);
        known = true;
    }
    proto_msg_t request = { .type = PROTO_HISTORY, .history = {
        .room_id = room_id, .before_seq = (uint64_t) before, .limit = (uint32_t) limit } };
    proto_msg_t *reply = s_call (self, &request, PROTO_HISTORY_REPLY, s_timeout ());
    if (!reply)
        return self->status;
    json_t *messages = json_array ();
    for (uint32_t i = 0; i < reply->history_reply.count; i++)
        json_array_append_new (messages, render_message (&reply->history_reply.messages [i]));
    bool empty = reply->history_reply.count == 0, more = reply->history_reply.more;
    proto_msg_destroy (&reply);
    if (empty && !known) {
        //  No messages, or no room: only the room's record tells which.
        proto_msg_t get = { .type = PROTO_ROOM_GET, .room_get = { .room_id = room_id } };
        proto_msg_t *room = s_call (self, &get, PROTO_ROOM_REPLY, s_timeout ());
        if (!room) {
            json_decref (messages);
            return self->status;
        }
        proto_msg_destroy (&room);
    }
    //  The body stays the array the original clients read. A page may be
    //  shorter than limit (stored's byte bound); X-More says whether older
    //  messages remain, so a client that reads it can stop a request early.
    const char *headers [] = { "X-More", more? "true": "false",
                               "Access-Control-Expose-Headers", "X-More", NULL };
    s_reply_json (self->mg, 200, messages, headers);
    return self->status = 200;
}

static int
s_healthz (request_t *self)
{
    int status = 500;
    json_t *answer = health_render (self->mg, self->trace, &status);
    return s_answer (self, status, answer);
}

static int
s_metrics (request_t *self)
{
    size_t size = 0;
    char *text = metrics_render (self->trace, &size);
    if (!text)
        return s_error (self, 500, "the metrics could not be written");
    s_reply (self->mg, 200, "text/plain; version=0.0.4", text, size, NULL);
    free (text);
    return self->status = 200;
}

static int
s_preflight (request_t *self)
{
    const char *body = "{}";
    mg_response_header_start (self->mg, 200);
    mg_response_header_add (self->mg, "Content-Type", "application/json", -1);
    mg_response_header_add (self->mg, "Access-Control-Allow-Origin", "*", -1);
    mg_response_header_add (self->mg, "Access-Control-Allow-Methods", "GET, POST, OPTIONS", -1);
    const char *asked = mg_get_header (self->mg, "Access-Control-Request-Headers");
    mg_response_header_add (self->mg, "Access-Control-Allow-Headers",
                            asked && *asked? asked: "Content-Type", -1);
    mg_response_header_add (self->mg, "Access-Control-Max-Age", "86400", -1);
    mg_response_header_add (self->mg, "Content-Length", "2", -1);
    mg_response_header_send (self->mg);
    mg_write (self->mg, body, 2);
    return self->status = 200;
}

//  ---------------------------------------------------------------------------
//  The router

//  A route of a fixed path: its methods and handlers.
static int
s_route (request_t *self, const char *method, bool get_ok, int (*get) (request_t *),
         bool post_ok, int (*post) (request_t *))
{
    if (get_ok && strcmp (method, "GET") == 0)
        return get (self);
    if (post_ok && strcmp (method, "POST") == 0)
        return post (self);
    return s_not_allowed (self, get_ok && post_ok? "GET, POST, OPTIONS"
                                : get_ok? "GET, OPTIONS": "POST, OPTIONS");
}

int
http_handle (struct mg_connection *mg, void *data)
{
    (void) data;
    request_t self = { .mg = mg, .info = mg_get_request_info (mg), .status = 500 };
    ids_trace (self.trace);
    atomic_fetch_add (&gateway_metrics.http_requests, 1);
    const char *method = self.info->request_method;
    //  civetweb leaves the URI as sent (main.c: decode_url): a room id may
    //  be percent-encoded. guard.c refused %00, so a NUL here is none.
    char path [512];
    const char *uri = self.info->local_uri? self.info->local_uri: "/";
    int decoded = mg_url_decode (uri, (int) strlen (uri), path, (int) sizeof path, 0);
    if (decoded < 0)
        return s_error (&self, 404, "no such path: %.100s", uri);
    if ((size_t) decoded != strlen (path))
        return s_error (&self, 400, "the path must not hold %%00");
    size_t length = strlen (path);
    if (length > 1 && path [length - 1] == '/')
        path [--length] = 0;            //  /rooms/ is /rooms

    if (strcmp (method, "OPTIONS") == 0)
        return s_preflight (&self);
    if (strcmp (path, "/rooms") == 0)
        return s_route (&self, method, true, s_search_rooms, true, s_create_room);
    if (strcmp (path, "/create-room") == 0)
        return s_route (&self, method, false, NULL, true, s_create_room);
    if (strcmp (path, "/search-rooms") == 0)
        return s_route (&self, method, true, s_search_rooms, false, NULL);
    if (strcmp (path, "/rooms/join") == 0 || strcmp (path, "/join-room") == 0)
        return s_route (&self, method, false, NULL, true, s_join_room);
    if (strcmp (path, "/rooms/close") == 0 || strcmp (path, "/close-room") == 0)
        return s_route (&self, method, false, NULL, true, s_close_room);
    if (strcmp (path, "/healthz") == 0)
        return s_route (&self, method, true, s_healthz, false, NULL);
    if (strcmp (path, "/metrics") == 0)
        return s_route (&self, method, true, s_metrics, false, NULL);
    if (strncmp (path, "/rooms/", 7) == 0) {
        //  /rooms/{id} and /rooms/{id}/messages
        char room_id [PROTO_ID_MAX + 1] = "", why [160];
        const char *id = path + 7, *slash = strchr (id, '/');
        size_t id_length = slash? (size_t) (slash - id): strlen (id);
        bool messages = slash && strcmp (slash, "/messages") == 0;
        if (!slash || messages) {
            if (strcmp (method, "GET") != 0)
                return s_not_allowed (&self, "GET, OPTIONS");
            if (id_length > PROTO_ID_MAX)
                return s_error (&self, 404, "no such room");
            memcpy (room_id, id, id_length);
            room_id [id_length] = 0;
            if (input_text_id (room_id, why, sizeof why, "the room id"))
                return s_error (&self, 400, "%s", why);
            return messages? s_messages (&self, room_id): s_room_info (&self, room_id);
        }
    }
    return s_error (&self, 404, "no such path: %.100s", path);
}
