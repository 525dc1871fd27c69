/*  fuzz_wsproto - libFuzzer target for what nearchat-load reads from a
    server: the upgrade answer and the frames after it. The first byte
    picks which; the rest is the input. Whatever parses must describe
    bytes inside the input, and a frame that parses is whole. */

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "load/wsproto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *input = data + 1;
    size_t length = size - 1;
    if (data [0] & 1) {
        //  The key whose accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo= (RFC 6455).
        int head = wsproto_response ((const char *) input, length, "dGhlIHNhbXBsZSBub25jZQ==");
        assert (head >= -1 && head <= (int) length);
        return 0;
    }
    size_t at = 0;
    while (at < length) {
        wsproto_frame_t frame;
        long used = wsproto_parse (input + at, length - at, &frame);
        if (used <= 0)
            break;
        assert ((size_t) used <= length - at);
        assert (frame.payload >= input + at && frame.payload + frame.length <= input + at + used);
        assert (frame.opcode >= 0 && frame.opcode <= 15);
        at += (size_t) used;
    }
    return 0;
}
