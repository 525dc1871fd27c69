/*  =========================================================================
    frames.c - a frame's text, and the two every message makes, written as JSON text

    Each message sent becomes one new-message frame on every gateway with
    a member in the room, and one ack to its sender. Rendered with jansson
    (render_message, then json_dumps), each was a tree of a dozen values,
    each a malloc, and a hash table, then walked, then copied into the
    frame: at saturation that was a quarter of the gateway's one loop
    (perf, rate 30 fanout: json_dumps 15% of the loop, and much of malloc's
    9%). These two shapes are fixed and flat, so they are written here
    straight into the frame's buffer: one pass to size it, one to write.

    The text is byte for byte what jansson writes (render_text's flags):
    the same keys in the same order, strings escaped as jansson escapes
    them (\" \\ \b \f \n \r \t, other control bytes \u00XX, nothing else),
    no spaces. tests/test_render.c holds the two to that over random
    strings. A requestId, a number or a string the client chose, is still
    written by jansson (json_dumpb), into the same buffer.

    Every other frame is rare and keeps jansson's tree (json.c). A frame
    is shared by every queue it is on, and freed by the last unref.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "conn.h"
#include "clock.h"
#include "utf8.h"
#include "wsframe.h"

//  ---------------------------------------------------------------------------
//  A frame

frame_t *
frame_alloc (size_t size)
{
    frame_t *frame = malloc (sizeof *frame + size + 1);
    assert (frame);
    atomic_init (&frame->refs, 1);
    frame->made_ns = clock_mono_ns ();
    frame->opcode = WSFRAME_TEXT;
    frame->size = size;
    frame->data [size] = 0;
    return frame;
}

frame_t *
frame_new (const char *text)
{
    size_t size = strlen (text);
    frame_t *frame = frame_alloc (size);
    memcpy (frame->data, text, size);
    return frame;
}

frame_t *
frame_new_control (int opcode, const void *payload, size_t size)
{
    frame_t *frame = frame_alloc (size);
    frame->opcode = opcode;
    if (size)
        memcpy (frame->data, payload, size);
    return frame;
}

void
frame_unref (frame_t *frame)
{
    if (frame && atomic_fetch_sub (&frame->refs, 1) == 1)
        free (frame);
}

//  ---------------------------------------------------------------------------
//  The hot frames, as JSON text

//  A field of a flat object: a key and a string or an unsigned integer.
typedef struct {
    const char *key;
    const char *string;                 //  NULL: the integer
    uint64_t integer;
} field_t;

#define S_STRING(key, text)     { (key), (text), 0 }
#define S_INTEGER(key, value)   { (key), NULL, (value) }

//  A string as s_string takes it: NULL or not UTF-8 is "", as json.c's
//  s_string makes it (proto's decoder has checked every string it gives).
static const char *
s_text (const char *text)
{
    return text && utf8_valid (text, strlen (text))? text: "";
}

//  The size of text's JSON string, quotes included.
static size_t
s_string_size (const char *text)
{
    size_t size = 2;
    for (const unsigned char *at = (const unsigned char *) text; *at; at++) {
        if (*at == '"' || *at == '\\' || *at == '\b' || *at == '\f'
        ||  *at == '\n' || *at == '\r' || *at == '\t')
            size += 2;
        else
        if (*at < 0x20)
            size += 6;
        else
            size += 1;
    }
    return size;
}

static char *
s_put_string (char *out, const char *text)
{
    static const char hex [] = "0123456789ABCDEF";
    *out++ = '"';
    for (const unsigned char *at = (const unsigned char *) text; *at; at++) {
        unsigned char c = *at;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char) c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
            case '"':  *out++ = '"';  break;
            case '\\': *out++ = '\\'; break;
            case '\b': *out++ = 'b';  break;
            case '\f': *out++ = 'f';  break;
            case '\n': *out++ = 'n';  break;
            case '\r': *out++ = 'r';  break;
            case '\t': *out++ = 't';  break;
            default:
                memcpy (out, "u00", 3);
                out [3] = hex [c >> 4];
                out [4] = hex [c & 15];
                out += 5;
        }
    }
    *out++ = '"';
    return out;
}

static char *
s_put_integer (char *out, uint64_t value)
{
    char digits [20];
    size_t count = 0;
    do {
        digits [count++] = (char) ('0' + value % 10);
        value /= 10;
    } while (value);
    while (count)
        *out++ = digits [--count];
    return out;
}

//  The frame of the object of fields, and of "requestId": request_id
//  after them when there is one. NULL if the requestId cannot be written.
static frame_t *
s_render (const field_t *fields, size_t count, const json_t *request_id)
{
    //  render_text's flags, for the requestId
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION (15) | JSON_ENCODE_ANY;
    size_t size = 2;                    //  { }
    for (size_t i = 0; i < count; i++)
        size += strlen (fields [i].key) + 4
              + (fields [i].string? s_string_size (fields [i].string): 20);
    size_t request_id_size = request_id? json_dumpb (request_id, NULL, 0, flags): 0;
    if (request_id && !request_id_size)
        return NULL;
    size += request_id? sizeof "\"requestId\":," - 1 + request_id_size: 0;

    frame_t *frame = frame_alloc (size);
    char *out = frame->data;
    *out++ = '{';
    for (size_t i = 0; i < count; i++) {
        if (i)
            *out++ = ',';
        out = s_put_string (out, fields [i].key);
        *out++ = ':';
        out = fields [i].string? s_put_string (out, fields [i].string)
                               : s_put_integer (out, fields [i].integer);
    }
    if (request_id) {
        memcpy (out, ",\"requestId\":", sizeof ",\"requestId\":" - 1);
        out += sizeof ",\"requestId\":" - 1;
        out += json_dumpb (request_id, out, request_id_size, flags);
    }
    *out++ = '}';
    assert ((size_t) (out - frame->data) <= size);
    frame->size = (size_t) (out - frame->data);
    frame->data [frame->size] = 0;
    return frame;
}

frame_t *
render_message_frame (const proto_message_t *message)
{
    assert (message);
    char created [CLOCK_ISO8601_SIZE];
    clock_iso8601 (message->created_at_ms, created);
    //  render_message's keys, in its order (its comment says why id is
    //  the client's messageId when there is one)
    const char *id = s_text (message->client_id? message->client_id: message->id);
    field_t fields [] = {
        S_STRING ("type", "new-message"), S_STRING ("id", id), S_STRING ("messageId", id),
        S_STRING ("roomId", s_text (message->room_id)), S_INTEGER ("seq", message->seq),
        S_STRING ("text", s_text (message->text)), S_STRING ("createdAt", created),
        S_STRING ("userId", s_text (message->user_id)),
        S_STRING ("userName", s_text (message->user_name)),
        S_STRING ("userIcon", s_text (message->user_icon)),
        S_STRING ("userColor", s_text (message->user_color)) };
    return s_render (fields, sizeof fields / sizeof fields [0], NULL);
}

frame_t *
render_ack_frame (const char *id, const char *room_id, uint64_t seq, const json_t *request_id)
{
    field_t fields [] = {
        S_STRING ("type", "ack"), S_STRING ("action", "send-message"),
        S_STRING ("messageId", s_text (id)), S_STRING ("id", s_text (id)),
        S_STRING ("roomId", s_text (room_id)), S_INTEGER ("seq", seq) };
    return s_render (fields, sizeof fields / sizeof fields [0], request_id);
}
