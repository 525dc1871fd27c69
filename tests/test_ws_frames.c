/*  =========================================================================
    test_ws_frames - RFC 6455 as the gateway's event loop speaks it, frame
    by frame, against the real system (stored, gateway, 1 shard)

    A plain WebSocket is served by the gateway's own framing once its
    handshake is done (gateway/loop.c over wslay, wsin.c), so what civetweb used
    to check is checked here with a client done by hand: pings answered
    with their payload, control frames between the frames of a burst,
    frames cut into pieces or sent several to a write, what a client may
    not send (unmasked frames, reserved bits and opcodes,
    a frame over the limit), binary refused, fragments reassembled, a close answered with its status,
    and a client that leaves while its action waits for its reply.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define WAIT_MS     10000

static harness_system_t s_system;
static int s_port;

//  Read what the server sends until want texts and want_pongs pongs came
//  in all, a close, the end of the stream, or WAIT_MS. Returns the totals.
static ws_raw_drained_t
s_read (ws_raw_t *raw, size_t texts, size_t pongs)
{
    ws_raw_drained_t total;
    memset (&total, 0, sizeof total);
    int64_t deadline = clock_mono_ms () + WAIT_MS;
    while (clock_mono_ms () < deadline && (total.texts < texts || total.pongs < pongs)) {
        ws_raw_drained_t part;
        bool over = ws_raw_drain (raw, 100, &part);
        total.frames += part.frames;
        total.bytes += part.bytes;
        total.texts += part.texts;
        total.pongs += part.pongs;
        if (part.texts)
            memcpy (total.text, part.text, sizeof total.text);
        if (part.pongs)
            memcpy (total.pong, part.pong, sizeof total.pong);
        if (over) {
            total.close_code = part.close_code;
            memcpy (total.close_reason, part.close_reason, sizeof total.close_reason);
            total.ended = part.ended;
            break;
        }
    }
    return total;
}

static ws_raw_t *
s_open (const char *user)
{
    char path [96];
    snprintf (path, sizeof path, "/ws?userId=%s", user);
    ws_raw_t *raw = ws_raw_open (s_port, path, 0);
    REQUIRE (raw);
    return raw;
}

//  The socket still answers: a ping action gets its pong frame.
static bool
s_still_serves (ws_raw_t *raw)
{
    if (ws_raw_send (raw, "{\"action\":\"ping\",\"requestId\":\"alive\"}"))
        return false;
    ws_raw_drained_t got = s_read (raw, 1, 0);
    return got.texts == 1 && strstr (got.text, "\"pong\"") && strstr (got.text, "alive")
        && !got.close_code && !got.ended;
}

//  The server closes the socket with status, after a close frame.
static void
s_expect_close (ws_raw_t *raw, int status, const char *what)
{
    ws_raw_drained_t got = s_read (raw, (size_t) -1, 0);
    printf ("  %s: close %d '%s'%s\n", what, got.close_code, got.close_reason,
            got.ended? " (stream ended)": "");
    CHECK (got.close_code == status);
    ws_raw_drained_t after;
    CHECK (ws_raw_drain (raw, WAIT_MS, &after) && after.ended);
}

static void
s_test_control_frames (void)
{
    printf ("a ping is answered with its payload; pongs and pings go between actions\n");
    ws_raw_t *raw = s_open ("pinger");
    CHECK (ws_raw_frame (raw, 0x9, true, true, "are you there", 13) == 0);
    ws_raw_drained_t got = s_read (raw, 0, 1);
    CHECK (got.pongs == 1 && strcmp (got.pong, "are you there") == 0);
    //  An unasked pong is ignored (a heartbeat), an empty ping answered.
    CHECK (ws_raw_frame (raw, 0xA, true, true, "", 0) == 0);
    CHECK (ws_raw_frame (raw, 0x9, true, true, "", 0) == 0);
    got = s_read (raw, 0, 1);
    CHECK (got.pongs == 1 && got.pong [0] == 0);
    CHECK (s_still_serves (raw));
    ws_raw_close (&raw);
}

static void
s_test_pieces_and_bursts (void)
{
    printf ("a frame cut into single bytes, and several frames in one write\n");
    const char *room = api_create_room (s_port, "burster", 5.0, 5.0, NULL, 0);
    REQUIRE (room);
    ws_raw_t *raw = s_open ("burster");
    char text [256];
    snprintf (text, sizeof text, "{\"action\":\"join-room\",\"roomId\":\"%s\",\"requestId\":1}",
              room);
    unsigned char frame [512];
    size_t size = ws_raw_build (frame, sizeof frame, 0x1, true, true, text, strlen (text));
    for (size_t i = 0; i < size; i++) {
        CHECK (ws_raw_write (raw, frame + i, 1) == 0);
        usleep (200);
    }
    //  user-joined and message-history
    ws_raw_drained_t got = s_read (raw, 2, 0);
    CHECK (got.texts == 2 && strstr (got.text, "message-history"));
    //  Ten sends, a ping among them, in one write: the join above made the
    //  socket a member, each send is answered in order, the ping too.
    unsigned char burst [8192];
    size_t used = 0;
    for (int i = 0; i < 10; i++) {
        snprintf (text, sizeof text, "{\"action\":\"send-message\",\"roomId\":\"%s\","
                  "\"message\":\"burst %d\",\"messageId\":\"b%d\"}", room, i, i);
        used += ws_raw_build (burst + used, sizeof burst - used, 0x1, true, true, text,
                              strlen (text));
        if (i == 4)
            used += ws_raw_build (burst + used, sizeof burst - used, 0x9, true, true, "mid", 3);
    }
    CHECK (ws_raw_write (raw, burst, used) == 0);
    //  Each send: its new-message (the sender hears it) and its ack.
    got = s_read (raw, 20, 1);
    printf ("  %zu text frames and %zu pongs; the last: %.60s\n", got.texts, got.pongs, got.text);
    CHECK (got.texts == 20 && got.pongs == 1);
    CHECK (strstr (got.text, "\"ack\"") && strstr (got.text, "\"b9\""));
    //  And the room's history holds them in order.
    ws_client_t *reader = api_connect (s_port, "reader", "Reader");
    json_t *history = api_join (reader, room, "reader", -1);
    REQUIRE (history);
    json_t *messages = json_object_get (history, "messages");
    CHECK (json_array_size (messages) == 10);
    for (size_t i = 0; i < json_array_size (messages); i++) {
        char expected [32];
        snprintf (expected, sizeof expected, "burst %zu", i);
        const char *said = json_string_value (json_object_get (json_array_get (messages, i),
                                                               "text"));
        CHECK (said && strcmp (said, expected) == 0);
    }
    json_decref (history);
    ws_close (&reader);
    ws_raw_close (&raw);
}

static void
s_test_frames_we_refuse_politely (void)
{
    printf ("binary frames get an error frame; fragments are one message; the socket stays\n");
    ws_raw_t *raw = s_open ("fragmenter");
    CHECK (ws_raw_frame (raw, 0x2, true, true, "{\"action\":\"ping\"}", 17) == 0);
    ws_raw_drained_t got = s_read (raw, 1, 0);
    CHECK (got.texts == 1 && strstr (got.text, "\"error\"") && strstr (got.text, "whole text"));
    CHECK (ws_raw_frame (raw, 0x1, false, true, "{\"action\":", 10) == 0);
    CHECK (ws_raw_frame (raw, 0x0, true, true, "\"ping\"}", 7) == 0);
    got = s_read (raw, 1, 0);
    CHECK (got.texts == 1 && strstr (got.text, "\"pong\""));
    CHECK (s_still_serves (raw));
    ws_raw_close (&raw);
}

static void
s_test_protocol_errors (void)
{
    printf ("what a client may not send closes its socket with a status\n");
    ws_raw_t *raw = s_open ("unmasked");
    CHECK (ws_raw_frame (raw, 0x1, true, false, "{\"action\":\"ping\"}", 17) == 0);
    s_expect_close (raw, 1002, "an unmasked frame");
    ws_raw_close (&raw);

    raw = s_open ("reserved-opcode");
    CHECK (ws_raw_frame (raw, 0x3, true, true, "x", 1) == 0);
    s_expect_close (raw, 1002, "opcode 3");
    ws_raw_close (&raw);

    raw = s_open ("reserved-bit");
    unsigned char frame [64];
    size_t size = ws_raw_build (frame, sizeof frame, 0x1, true, true, "{}", 2);
    frame [0] |= 0x40;                  //  RSV1, with no extension agreed
    CHECK (ws_raw_write (raw, frame, size) == 0);
    s_expect_close (raw, 1002, "RSV1 set");
    ws_raw_close (&raw);

    raw = s_open ("long-ping");
    char payload [200];
    memset (payload, 'p', sizeof payload);
    CHECK (ws_raw_frame (raw, 0x9, true, true, payload, sizeof payload) == 0);
    s_expect_close (raw, 1002, "a ping of 200 bytes");
    ws_raw_close (&raw);

    raw = s_open ("huge");
    //  Only the header of a 2 MiB frame: refused before its payload comes.
    unsigned char header [14] = { 0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4 };
    CHECK (ws_raw_write (raw, header, sizeof header) == 0);
    s_expect_close (raw, 1009, "a 2 MiB frame");
    ws_raw_close (&raw);

    raw = s_open ("big");
    //  Over 64 KiB of text (DESIGN.md's most): refused as too big, as
    //  soon as its header says so.
    size_t big = 70 * 1024;
    char *text = malloc (big);
    REQUIRE (text);
    memset (text, ' ', big);
    text [0] = '{';
    text [big - 1] = '}';
    ws_raw_frame (raw, 0x1, true, true, text, big);     //  may fail once it is closed
    free (text);
    s_expect_close (raw, 1009, "a 70 KiB frame");
    ws_raw_close (&raw);

    raw = s_open ("closer");
    unsigned char status [2] = { 1000 >> 8, 1000 & 0xff };
    CHECK (ws_raw_frame (raw, 0x8, true, true, status, 2) == 0);
    s_expect_close (raw, 1000, "a close frame");
    ws_raw_close (&raw);
}

static void
s_test_leaving_mid_action (void)
{
    printf ("clients that leave while their action waits, and the gateway goes on\n");
    const char *room = api_create_room (s_port, "leaver", 5.0, 5.0, NULL, 0);
    REQUIRE (room);
    for (int i = 0; i < 20; i++) {
        ws_raw_t *raw = s_open ("leaver");
        char text [256];
        snprintf (text, sizeof text, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
        CHECK (ws_raw_send (raw, text) == 0);
        snprintf (text, sizeof text, "{\"action\":\"send-message\",\"roomId\":\"%s\","
                  "\"message\":\"gone %d\"}", room, i);
        CHECK (ws_raw_send (raw, text) == 0);
        ws_raw_close (&raw);            //  at once, the join most likely in flight
    }
    ws_client_t *stayer = api_connect (s_port, "stayer", "Stayer");
    json_decref (api_join (stayer, room, "stayer", -1));
    CHECK (api_say (stayer, room, "s-1", "still here") > 0);
    //  Every socket that left is out of the room again: room-info lists
    //  the one user online.
    json_t *info = NULL;
    int64_t deadline = clock_mono_ms () + WAIT_MS;
    while (clock_mono_ms () < deadline) {
        json_decref (info);
        CHECK (ws_send (stayer, "{s:s, s:s}", "action", "room-info", "roomId", room) == 0);
        info = ws_expect (stayer, "room-info", API_WAIT_MS);
        if (!info || json_array_size (json_object_get (info, "online")) == 1)
            break;
        usleep (100 * 1000);
    }
    CHECK (info && json_array_size (json_object_get (info, "online")) == 1);
    json_decref (info);
    ws_close (&stayer);
}

int
main (void)
{
    harness_init ("ws_frames");
    const char *env [] = { "LOG_LEVEL=info", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;
    s_test_control_frames ();
    s_test_pieces_and_bursts ();
    s_test_frames_we_refuse_politely ();
    s_test_protocol_errors ();
    s_test_leaving_mid_action ();
    return harness_finish ();
}
