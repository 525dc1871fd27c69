/*  =========================================================================
    test_loadgen_units - the load generator's own parts: the WebSocket
    client protocol (RFC 6455's worked examples, partial input, refusals)
    and the latency histogram's quantiles (within its stated error)
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include "harness.h"
#include "load/stats.h"
#include "load/wsproto.h"

static void
s_test_handshake (void)
{
    printf ("handshake: RFC 6455's key and accept, partial and wrong answers\n");
    char key [WSPROTO_KEY_SIZE];
    wsproto_key ((const uint8_t *) "the sample nonce", key);
    CHECK (strcmp (key, "dGhlIHNhbXBsZSBub25jZQ==") == 0);
    char request [512];
    int length = wsproto_request (request, sizeof request, "127.0.0.1", 8080, "/ws?userId=a", key);
    CHECK (length > 0 && strstr (request, "GET /ws?userId=a HTTP/1.1\r\n") == request);
    CHECK (strstr (request, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    CHECK (wsproto_request (request, 40, "127.0.0.1", 8080, "/ws", key) == -1);

    const char *good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nsec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    size_t size = strlen (good);
    CHECK (wsproto_response (good, size, key) == (int) size);
    for (size_t cut = 0; cut < size; cut++)
        if (!CHECK (wsproto_response (good, cut, key) == 0))
            break;
    const char *wrong = "HTTP/1.1 101 Switching Protocols\r\n"
                        "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
    CHECK (wsproto_response (wrong, strlen (wrong), key) == -1);
    const char *refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    CHECK (wsproto_response (refused, strlen (refused), key) == -1);
    const char *no_accept = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    CHECK (wsproto_response (no_accept, strlen (no_accept), key) == -1);
}

static void
s_test_frames (void)
{
    printf ("frames: RFC 6455's masked Hello, lengths of 7, 16 and 64 bits, partial input\n");
    uint8_t mask [4] = { 0x37, 0xfa, 0x21, 0x3d };
    uint8_t out [70000];
    int length = wsproto_frame (out, sizeof out, WSPROTO_TEXT, "Hello", 5, mask);
    const uint8_t expected [] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                  0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    CHECK (length == 11 && memcmp (out, expected, 11) == 0);
    CHECK (wsproto_frame (out, 10, WSPROTO_TEXT, "Hello", 5, mask) == -1);
    length = wsproto_frame (out, sizeof out, WSPROTO_TEXT, out + 20000, 300, mask);
    CHECK (length == 2 + 2 + 4 + 300 && out [1] == (0x80 | 126) && out [2] == 1 && out [3] == 44);
    static uint8_t big [70000];
    length = wsproto_frame (big, sizeof big, WSPROTO_TEXT, out, 65536, mask);
    CHECK (length == 2 + 8 + 4 + 65536 && big [1] == (0x80 | 127));
    CHECK (wsproto_frame (big, 2 + 8 + 4 + 65535, WSPROTO_TEXT, out, 65536, mask) == -1);

    //  Server frames: unmasked.
    const uint8_t hello [] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
    wsproto_frame_t frame;
    CHECK (wsproto_parse (hello, sizeof hello, &frame) == 7);
    CHECK (frame.opcode == WSPROTO_TEXT && frame.fin && frame.length == 5
           && memcmp (frame.payload, "Hello", 5) == 0);
    for (size_t cut = 0; cut < sizeof hello; cut++)
        CHECK (wsproto_parse (hello, cut, &frame) == 0);
    uint8_t medium [4 + 300] = { 0x81, 126, 1, 44 };
    CHECK (wsproto_parse (medium, sizeof medium, &frame) == (long) sizeof medium
           && frame.length == 300);
    CHECK (wsproto_parse (medium, 3, &frame) == 0);
    static uint8_t large [10 + 70000] = { 0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70 };
    CHECK (wsproto_parse (large, sizeof large, &frame) == (long) sizeof large
           && frame.length == 70000);
    CHECK (wsproto_parse (large, 9, &frame) == 0);
    CHECK (wsproto_parse (large, 5000, &frame) == 0);

    printf ("frames: refused when masked, reserved bits, long or fragmented control\n");
    const uint8_t masked [] = { 0x81, 0x85, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e' };
    CHECK (wsproto_parse (masked, sizeof masked, &frame) == -1);
    const uint8_t reserved [] = { 0xC1, 0x01, 'x' };
    CHECK (wsproto_parse (reserved, sizeof reserved, &frame) == -1);
    const uint8_t long_ping [] = { 0x89, 126, 0, 200 };
    CHECK (wsproto_parse (long_ping, sizeof long_ping, &frame) == -1);
    const uint8_t split_close [] = { 0x08, 0x00 };
    CHECK (wsproto_parse (split_close, sizeof split_close, &frame) == -1);
    const uint8_t close [] = { 0x88, 0x02, 0x03, 0xE8 };
    CHECK (wsproto_parse (close, sizeof close, &frame) == 4 && frame.opcode == WSPROTO_CLOSE);
}

static void
s_test_stats (void)
{
    printf ("stats: quantiles within 1/%d of the truth, small values exact, merge\n", STATS_SUB);
    static stats_t stats, other;
    stats_reset (&stats);
    CHECK (stats_quantile (&stats, 0.5) == 0 && stats_mean (&stats) == 0);
    for (uint64_t value = 1; value <= 100000; value++)
        stats_record (&stats, value);
    CHECK (stats.count == 100000 && stats.max == 100000);
    double quantiles [] = { 0.5, 0.9, 0.99, 0.999 };
    for (int i = 0; i < 4; i++) {
        double truth = quantiles [i] * 100000;
        double got = (double) stats_quantile (&stats, quantiles [i]);
        if (!CHECK (got >= truth && got <= truth * (1 + 1.0 / STATS_SUB) + 1))
            fprintf (stderr, "  q%g: %g, truth %g\n", quantiles [i], got, truth);
    }
    CHECK (stats_quantile (&stats, 1.0) == 100000);
    CHECK (stats_mean (&stats) > 50000 && stats_mean (&stats) < 50001);

    stats_reset (&other);
    for (int i = 0; i < 10; i++)
        stats_record (&other, 7);           //  below STATS_SUB: a bucket each, exact
    CHECK (stats_quantile (&other, 0.5) == 7 && stats_quantile (&other, 0.99) == 7);
    stats_record (&other, (uint64_t) 1 << 40);
    CHECK (stats_quantile (&other, 1.0) == (uint64_t) 1 << 40);
    stats_merge (&stats, &other);
    CHECK (stats.count == 100011 && stats.max == (uint64_t) 1 << 40);
}

int
main (void)
{
    harness_init ("loadgen_units");
    s_test_handshake ();
    s_test_frames ();
    s_test_stats ();
    return harness_finish ();
}
