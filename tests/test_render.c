/*  =========================================================================
    test_render - the frames written as text by hand (gateway/frames.c)
    are byte for byte what jansson writes for the same shapes

    new-message against render_text (render_message ()), the frame every
    other path (history, recovery) still renders with jansson; the ack
    against the tree the gateway built before, with a requestId appended
    as s_send appends it. Strings are random: every control byte, quotes,
    backslashes, '/', DEL, UTF-8 of every length, and (for new-message)
    NULL and bytes that are not UTF-8, which both write as "".
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "conn.h"

#define ROUNDS      20000
#define STRING_MAX  40

//  A random string into out (STRING_MAX * 4 + 1 bytes): valid UTF-8, or
//  with broken allowed, sometimes not.
static const char *
s_random_string (char *out, bool broken)
{
    static const char *pieces [] = {
        "\"", "\\", "/", "\x7f", "\x01", "\x1f", "\b", "\f", "\n", "\r", "\t", "a", "Z", " ",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\\u0041", "{}", ":,"
    };
    if (broken && rand () % 8 == 0)
        return NULL;
    char *at = out;
    int count = rand () % STRING_MAX;
    for (int i = 0; i < count; i++) {
        if (rand () % 3 == 0) {
            int c = rand () % 0x80;
            *at++ = (char) (c? c: ' ');
        }
        else {
            const char *piece = pieces [rand () % (sizeof pieces / sizeof pieces [0])];
            size_t size = strlen (piece);
            if (at + size > out + STRING_MAX * 4)
                break;
            memcpy (at, piece, size);
            at += size;
        }
    }
    if (broken && rand () % 8 == 0)
        *at++ = (char) 0xc3;            //  a lead byte without its continuation
    *at = 0;
    return out;
}

static bool
s_same (const frame_t *frame, const char *expected, const char *what)
{
    bool same = frame && expected && frame->size == strlen (expected)
             && memcmp (frame->data, expected, frame->size) == 0 && frame->data [frame->size] == 0;
    if (!same)
        printf ("  %s differs:\n    by hand %s\n    jansson %s\n", what,
                frame? frame->data: "(none)", expected? expected: "(none)");
    return same;
}

static void
s_test_new_message (void)
{
    printf ("new-message: %d random messages, by hand as jansson writes them\n", ROUNDS);
    int differ = 0;
    for (int round = 0; round < ROUNDS && differ < 3; round++) {
        char strings [8][STRING_MAX * 4 + 1];
        proto_message_t message = {
            .room_id = s_random_string (strings [0], true),
            .id = s_random_string (strings [1], true),
            .client_id = rand () % 2? s_random_string (strings [2], true): NULL,
            .seq = round % 5 == 0? (uint64_t) INT64_MAX - (uint64_t) round: (uint64_t) rand (),
            .user_id = s_random_string (strings [3], true),
            .user_name = s_random_string (strings [4], true),
            .user_icon = s_random_string (strings [5], true),
            .user_color = s_random_string (strings [6], true),
            .text = s_random_string (strings [7], true),
            .created_at_ms = (int64_t) rand () * 1000 + rand () % 1000 };
        json_t *tree = render_message (&message);
        char *expected = render_text (tree);
        frame_t *frame = render_message_frame (&message);
        if (!s_same (frame, expected, "new-message"))
            differ++;
        frame_unref (frame);
        free (expected);
        json_decref (tree);
    }
    CHECK (differ == 0);
}

//  The ack as the gateway built it with jansson, requestId last.
static char *
s_ack_by_jansson (const char *id, const char *room_id, uint64_t seq, const json_t *request_id)
{
    json_t *ack = json_object ();
    json_object_set_new (ack, "type", json_string ("ack"));
    json_object_set_new (ack, "action", json_string ("send-message"));
    json_object_set_new (ack, "messageId", json_string (id));
    json_object_set_new (ack, "id", json_string (id));
    json_object_set_new (ack, "roomId", json_string (room_id));
    json_object_set_new (ack, "seq", json_integer ((json_int_t) seq));
    if (request_id)
        json_object_set (ack, "requestId", (json_t *) request_id);
    char *text = render_text (ack);
    json_decref (ack);
    return text;
}

static void
s_test_ack (void)
{
    printf ("ack: %d random acks, with requestIds of each kind, as jansson writes them\n", ROUNDS);
    int differ = 0;
    for (int round = 0; round < ROUNDS && differ < 3; round++) {
        char id [STRING_MAX * 4 + 1], room_id [STRING_MAX * 4 + 1], request [STRING_MAX * 4 + 1];
        s_random_string (id, false);
        s_random_string (room_id, false);
        json_t *request_id = NULL;
        switch (round % 5) {
            case 1: request_id = json_integer ((json_int_t) rand () - RAND_MAX / 2); break;
            case 2: request_id = json_real ((double) rand () / 7.0); break;
            case 3: request_id = json_string (s_random_string (request, false)); break;
            case 4: request_id = json_real (1e300); break;
            default: break;
        }
        uint64_t seq = (uint64_t) rand () * (uint64_t) rand ();
        char *expected = s_ack_by_jansson (id, room_id, seq, request_id);
        frame_t *frame = render_ack_frame (id, room_id, seq, request_id);
        if (!s_same (frame, expected, "ack"))
            differ++;
        frame_unref (frame);
        free (expected);
        json_decref (request_id);
    }
    CHECK (differ == 0);
}

int
main (void)
{
    harness_init ("render");
    srand (13);
    s_test_new_message ();
    s_test_ack ();
    return harness_finish ();
}
