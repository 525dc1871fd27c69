/*  fuzz_wsframe - libFuzzer target for the gateway's parser of what a
    client sends once its WebSocket is the event loop's (gateway/wsframe.c).
    The first byte sets the payload limit; the rest is the input, parsed
    frame after frame as the loop does. Whatever parses must lie inside
    the input, be within the limit, and be a frame a client may send. */

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wsframe.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = (size_t) data [0] * 16;
    size_t length = size - 1;
    uint8_t *input = malloc (length + 1);       //  parsed in place: unmasked
    assert (input);
    memcpy (input, data + 1, length);
    size_t at = 0;
    while (at < length) {
        wsframe_t frame;
        int status = 0;
        long used = wsframe_parse (input + at, length - at, max, &frame, &status);
        if (used < 0)
            assert (status == WSFRAME_PROTOCOL || status == WSFRAME_TOO_BIG);
        if (used <= 0)
            break;
        assert ((size_t) used <= length - at);
        assert (frame.payload >= input + at && frame.payload + frame.length <= input + at + used);
        assert (frame.length <= max);
        assert (frame.opcode <= WSFRAME_BINARY
            || (frame.opcode >= WSFRAME_CLOSE && frame.opcode <= WSFRAME_PONG
                && frame.fin && frame.length <= 125));
        at += (size_t) used;
    }
    free (input);
    return 0;
}
