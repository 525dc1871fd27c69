/*  =========================================================================
    wsframe.c - the server side of RFC 6455 framing (see wsframe.h)
    =========================================================================
*/

#include <string.h>
#include "wsframe.h"

long
wsframe_parse (uint8_t *data, size_t size, size_t max, wsframe_t *frame, int *status)
{
    if (size < 2)
        return 0;
    int opcode = data [0] & 0x0f;
    bool fin = data [0] & 0x80;
    bool masked = data [1] & 0x80;
    uint64_t length = data [1] & 0x7f;
    *status = WSFRAME_PROTOCOL;
    //  No extension is negotiated, so no reserved bit may be set; and a
    //  client must mask every frame (section 5.1).
    if ((data [0] & 0x70) || !masked)
        return -1;
    bool control = opcode & 0x08;
    if (control? opcode > WSFRAME_PONG: opcode > WSFRAME_BINARY)
        return -1;
    if (control && (!fin || length > 125))
        return -1;
    size_t header = 2;
    if (length == 126) {
        if (size < 4)
            return 0;
        length = (uint64_t) data [2] << 8 | data [3];
        header = 4;
    }
    else
    if (length == 127) {
        if (size < 10)
            return 0;
        length = 0;
        for (int i = 0; i < 8; i++)
            length = length << 8 | data [2 + i];
        if (length >> 63)
            return -1;                  //  the most significant bit must be 0
        header = 10;
    }
    if (length > max) {
        *status = WSFRAME_TOO_BIG;
        return -1;
    }
    if (size < header + 4 + length)
        return 0;
    const uint8_t *mask = data + header;
    uint8_t *payload = data + header + 4;
    for (size_t i = 0; i < length; i++)
        payload [i] ^= mask [i & 3];
    frame->opcode = opcode;
    frame->fin = fin;
    frame->payload = payload;
    frame->length = (size_t) length;
    *status = 0;
    return (long) (header + 4 + length);
}

size_t
wsframe_header (uint8_t out [WSFRAME_HEADER_MAX], int opcode, size_t size)
{
    out [0] = (uint8_t) (0x80 | opcode);
    if (size < 126) {
        out [1] = (uint8_t) size;
        return 2;
    }
    if (size <= 0xFFFF) {
        out [1] = 126;
        out [2] = (uint8_t) (size >> 8);
        out [3] = (uint8_t) size;
        return 4;
    }
    out [1] = 127;
    for (int i = 0; i < 8; i++)
        out [2 + i] = (uint8_t) ((uint64_t) size >> (56 - 8 * i));
    return 10;
}
