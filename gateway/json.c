/*  =========================================================================
    json.c - the public JSON shapes, and checks of what clients send

    The public shapes (roomInfo, new-message, the events) are those of the
    serverless original, whose clients must keep working: DESIGN.md's
    tables are the contract. Absent profile fields are written as "" in
    every frame, so a client never meets a missing key in one frame and an
    empty one in the next.

    Client input is checked here field by field, each check giving a
    reason a person can act on ("latitude must be from -90 to 90"). The
    limits are proto's (PROTO_ID_MAX, PROTO_PROFILE_MAX), so that what
    passes here always encodes.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"
#include "clock.h"
#include "utf8.h"

//  ---------------------------------------------------------------------------
//  Rendering

static json_t *
s_string (const char *text)
{
    //  Every string from proto was checked as UTF-8 by its decoder, so
    //  json_string cannot refuse it; "" stands in should it ever.
    json_t *value = json_string (text? text: "");
    return value? value: json_string ("");
}

json_t *
render_room_info (const proto_room_t *room)
{
    json_t *info = json_object ();
    json_object_set_new (info, "id", s_string (room->id));
    json_t *location = json_object ();
    json_object_set_new (location, "latitude", json_real (room->latitude));
    json_object_set_new (location, "longitude", json_real (room->longitude));
    json_object_set_new (info, "location", location);
    json_object_set_new (info, "roadName", s_string (room->road_name));
    json_object_set_new (info, "radius", json_integer (room->radius_m));
    json_object_set_new (info, "creator", s_string (room->creator));
    json_t *participants = json_array ();
    for (uint32_t i = 0; i < room->participant_count; i++)
        json_array_append_new (participants, s_string (room->participants [i]));
    json_object_set_new (info, "participants", participants);
    json_object_set_new (info, "createdAt", json_integer (room->created_at_ms));
    json_object_set_new (info, "lastActivity", json_integer (room->last_activity_ms));
    const char *status = proto_room_status_name (room->status);
    json_object_set_new (info, "status", s_string (status? status: "active"));
    const char *room_type = proto_room_type_name (room->room_type);
    json_object_set_new (info, "roomType", s_string (room_type? room_type: "public"));
    json_object_set_new (info, "maxParticipants", json_integer (room->max_participants));
    return info;
}

json_t *
render_message (const proto_message_t *message)
{
    char created [CLOCK_ISO8601_SIZE];
    json_t *frame = json_object ();
    json_object_set_new (frame, "type", json_string ("new-message"));
    //  id is the client's messageId when it sent one, as in the original,
    //  whose id duplicated messageId: the app keeps an optimistic copy of
    //  what it sends and replaces it by id, so a server id here would show
    //  every message twice. A room's client ids are unique (stored's
    //  idempotency key), so id still names one message of the room.
    const char *id = message->client_id? message->client_id: message->id;
    json_object_set_new (frame, "id", s_string (id));
    json_object_set_new (frame, "messageId", s_string (id));
    json_object_set_new (frame, "roomId", s_string (message->room_id));
    json_object_set_new (frame, "seq", json_integer ((json_int_t) message->seq));
    json_object_set_new (frame, "text", s_string (message->text));
    json_object_set_new (frame, "createdAt",
                         json_string (clock_iso8601 (message->created_at_ms, created)));
    json_object_set_new (frame, "userId", s_string (message->user_id));
    json_object_set_new (frame, "userName", s_string (message->user_name));
    json_object_set_new (frame, "userIcon", s_string (message->user_icon));
    json_object_set_new (frame, "userColor", s_string (message->user_color));
    return frame;
}

json_t *
render_event (const proto_msg_t *event)
{
    json_t *frame = NULL;
    switch (event->type) {
        case PROTO_EVENT_JOINED: {
            const proto_event_joined_t *joined = &event->event_joined;
            frame = json_object ();
            json_object_set_new (frame, "type", json_string ("user-joined"));
            json_object_set_new (frame, "userId", s_string (joined->user_id));
            json_object_set_new (frame, "userName", s_string (joined->user_name));
            json_object_set_new (frame, "userIcon", s_string (joined->user_icon));
            json_object_set_new (frame, "userColor", s_string (joined->user_color));
            json_object_set_new (frame, "creatorId", s_string (joined->room.creator));
            json_object_set_new (frame, "roomId", s_string (joined->room.id));
            json_object_set_new (frame, "roomInfo", render_room_info (&joined->room));
            break;
        }
        case PROTO_EVENT_LEFT: {
            const proto_event_left_t *left = &event->event_left;
            frame = json_object ();
            json_object_set_new (frame, "type", json_string ("user-left"));
            json_object_set_new (frame, "userId", s_string (left->user_id));
            json_object_set_new (frame, "userName", s_string (left->user_name));
            json_object_set_new (frame, "roomId", s_string (left->room.id));
            json_object_set_new (frame, "roomInfo", render_room_info (&left->room));
            break;
        }
        case PROTO_EVENT_MESSAGE:
            frame = render_message (&event->event_message.message);
            break;
        case PROTO_EVENT_TYPING: {
            const proto_typing_t *typing = &event->event_typing;
            frame = json_object ();
            json_object_set_new (frame, "type", json_string ("user-typing"));
            json_object_set_new (frame, "userId", s_string (typing->user_id));
            json_object_set_new (frame, "userName", s_string (typing->user_name));
            json_object_set_new (frame, "roomId", s_string (typing->room_id));
            break;
        }
        case PROTO_EVENT_CLOSED:
            frame = json_object ();
            json_object_set_new (frame, "type", json_string ("room-closed"));
            json_object_set_new (frame, "roomId", s_string (event->event_closed.room_id));
            break;
        default:
            break;
    }
    return frame;
}

char *
render_text (const json_t *value)
{
    //  15 significant digits: 48.85 is written "48.85", not
    //  48.850000000000001, and a coordinate keeps far below a millimetre.
    return json_dumps (value, JSON_COMPACT | JSON_REAL_PRECISION (15) | JSON_ENCODE_ANY);
}

//  ---------------------------------------------------------------------------
//  Nesting depth, before parsing

//  jansson's parser recurses once an array or object deep, and its only
//  bound is JSON_PARSER_MAX_DEPTH, fixed at 2048 when the library is built
//  (jansson_config.h; Debian's 2.14 has no run-time option for it). HTTP
//  bodies are parsed on civetweb's worker threads, whose stacks are
//  ~100 KiB: 600 '[' overflow one and kill the gateway. So the
//  depth is counted here first, by hand and without recursion: brackets
//  outside strings only (a '\' in a string escapes the next byte, so "\""
//  does not end it). Unbalanced or malformed input is the parser's to
//  refuse; this only says whether it would go deeper than max_depth.
bool
input_depth_ok (const char *data, size_t size, int max_depth)
{
    assert (data || size == 0);
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = data [i];
        if (in_string) {
            if (c == '\\')
                i++;
            else
            if (c == '"')
                in_string = false;
        }
        else
        if (c == '"')
            in_string = true;
        else
        if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return false;
        }
        else
        if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return true;
}

//  ---------------------------------------------------------------------------
//  Checks of text (query strings, and the strings inside JSON)

static int
s_fail (char *why, size_t why_size, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static int
s_fail (char *why, size_t why_size, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (why, why_size, fmt, args);
    va_end (args);
    return -1;
}

static int
s_check_text (const char *text, size_t length, size_t min, size_t max, const char *key,
              char *why, size_t why_size)
{
    if (length < min)
        return s_fail (why, why_size, "%s must not be empty", key);
    if (length > max)
        return s_fail (why, why_size, "%s must be at most %zu bytes", key, max);
    if (!utf8_valid (text, length))
        return s_fail (why, why_size, "%s must be valid UTF-8", key);
    if (utf8_has_control (text, length, false))
        return s_fail (why, why_size, "%s must not hold control characters", key);
    return 0;
}

int
input_text_id (const char *text, char *why, size_t why_size, const char *key)
{
    return s_check_text (text, strlen (text), 1, PROTO_ID_MAX, key, why, why_size);
}

int
input_text_profile (const char *text, char *why, size_t why_size, const char *key)
{
    return s_check_text (text, strlen (text), 0, PROTO_PROFILE_MAX, key, why, why_size);
}

int
input_text_number (const char *text, double *out)
{
    //  Plain decimal notation only: strtod would also take "inf", "nan",
    //  hex and leading blanks, none of which a coordinate is.
    if (!*text || strspn (text, "0123456789+-.eE") != strlen (text))
        return -1;
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || *end || !isfinite (value))
        return -1;
    *out = value;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Checks of a client's JSON object

//  The field's value, or NULL when absent or null.
static const json_t *
s_field (const json_t *object, const char *key)
{
    const json_t *value = json_is_object (object)? json_object_get (object, key): NULL;
    return value && !json_is_null (value)? value: NULL;
}

static int
s_string_field (const json_t *object, const char *key, bool required, size_t min, size_t max,
                char *out, char *why, size_t why_size)
{
    const json_t *value = s_field (object, key);
    if (!value)
        return required? s_fail (why, why_size, "%s is required", key): 1;
    if (!json_is_string (value))
        return s_fail (why, why_size, "%s must be a string", key);
    const char *text = json_string_value (value);
    size_t length = json_string_length (value);
    if (strlen (text) != length)
        return s_fail (why, why_size, "%s must not hold NUL characters", key);
    if (s_check_text (text, length, min, max, key, why, why_size))
        return -1;
    memcpy (out, text, length + 1);
    return 0;
}

int
input_id (const json_t *object, const char *key, bool required, char *out,
          char *why, size_t why_size)
{
    return s_string_field (object, key, required, 1, PROTO_ID_MAX, out, why, why_size);
}

int
input_profile (const json_t *object, const char *key, char *out, char *why, size_t why_size)
{
    return s_string_field (object, key, false, 0, PROTO_PROFILE_MAX, out, why, why_size);
}

int
input_number (const json_t *object, const char *key, bool required, double min, double max,
              double *out, char *why, size_t why_size)
{
    const json_t *value = s_field (object, key);
    if (!value)
        return required? s_fail (why, why_size, "%s is required", key): 1;
    double number;
    if (json_is_number (value))
        number = json_number_value (value);
    else
    if (!json_is_string (value) || input_text_number (json_string_value (value), &number))
        return s_fail (why, why_size, "%s must be a number", key);
    if (!isfinite (number) || number < min || number > max)
        return s_fail (why, why_size, "%s must be from %g to %g", key, min, max);
    *out = number;
    return 0;
}

int
input_integer (const json_t *object, const char *key, bool required, int64_t min, int64_t max,
               int64_t *out, char *why, size_t why_size)
{
    double number;
    int rc = input_number (object, key, required, -INFINITY, INFINITY, &number, why, why_size);
    if (rc)
        return rc;
    if (number != floor (number) || number < (double) min || number > (double) max)
        return s_fail (why, why_size, "%s must be a whole number from %lld to %lld", key,
                       (long long) min, (long long) max);
    *out = (int64_t) number;
    return 0;
}
