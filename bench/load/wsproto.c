/*  =========================================================================
    wsproto.c - the client side of RFC 6455, as pure functions over buffers
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include "wsproto.h"

#define WSPROTO_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"     //  RFC 6455 1.3

void
wsproto_key (const uint8_t random [16], char key [WSPROTO_KEY_SIZE])
{
    EVP_EncodeBlock ((unsigned char *) key, random, 16);
}

int
wsproto_request (char *out, size_t size, const char *host, int port, const char *path,
                 const char *key)
{
    int length = snprintf (out, size,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, port, key);
    return length < 0 || (size_t) length >= size? -1: length;
}

//  The value of header name in the header block, copied to out.
static int
s_header (const char *head, size_t size, const char *name, char *out, size_t out_size)
{
    size_t name_length = strlen (name);
    for (const char *line = head; line && line < head + size; ) {
        const char *end = memchr (line, '\n', (size_t) (head + size - line));
        if (!end)
            break;
        if ((size_t) (end - line) > name_length && strncasecmp (line, name, name_length) == 0
        &&  line [name_length] == ':') {
            const char *value = line + name_length + 1;
            while (value < end && (*value == ' ' || *value == '\t'))
                value++;
            size_t length = (size_t) (end - value);
            while (length && (value [length - 1] == '\r' || value [length - 1] == ' '))
                length--;
            if (length >= out_size)
                return -1;
            memcpy (out, value, length);
            out [length] = 0;
            return 0;
        }
        line = end + 1;
    }
    return -1;
}

int
wsproto_response (const char *data, size_t size, const char *key)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < size && !end; i++)
        if (memcmp (data + i, "\r\n\r\n", 4) == 0)
            end = data + i + 4;
    if (!end)
        return size > 8192? -1: 0;
    size_t length = (size_t) (end - data);
    if (length < 12 || strncmp (data, "HTTP/1.1 101", 12) != 0)
        return -1;
    char accept [64], expected [64];
    if (s_header (data, length, "Sec-WebSocket-Accept", accept, sizeof accept))
        return -1;
    char joined [WSPROTO_KEY_SIZE + sizeof WSPROTO_GUID];
    snprintf (joined, sizeof joined, "%s%s", key, WSPROTO_GUID);
    unsigned char digest [SHA_DIGEST_LENGTH];
    SHA1 ((const unsigned char *) joined, strlen (joined), digest);
    EVP_EncodeBlock ((unsigned char *) expected, digest, SHA_DIGEST_LENGTH);
    return strcmp (accept, expected) == 0? (int) length: -1;
}

int
wsproto_frame (uint8_t *out, size_t size, int opcode, const void *payload, size_t length,
               const uint8_t mask [4])
{
    size_t head = 2 + (length < 126? 0: length < 65536? 2: 8) + 4;
    if (head + length > size)
        return -1;
    size_t at = 0;
    out [at++] = (uint8_t) (0x80 | (opcode & 0x0F));
    if (length < 126)
        out [at++] = (uint8_t) (0x80 | length);
    else
    if (length < 65536) {
        out [at++] = 0x80 | 126;
        out [at++] = (uint8_t) (length >> 8);
        out [at++] = (uint8_t) length;
    }
    else {
        out [at++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out [at++] = (uint8_t) ((uint64_t) length >> shift);
    }
    memcpy (out + at, mask, 4);
    at += 4;
    const uint8_t *bytes = payload;
    for (size_t i = 0; i < length; i++)
        out [at + i] = bytes [i] ^ mask [i & 3];
    return (int) (at + length);
}

long
wsproto_parse (const uint8_t *data, size_t size, wsproto_frame_t *frame)
{
    if (size < 2)
        return 0;
    if (data [0] & 0x70)
        return -1;                      //  no extension was agreed: reserved bits are 0
    if (data [1] & 0x80)
        return -1;                      //  a server never masks
    frame->fin = (data [0] & 0x80) != 0;
    frame->opcode = data [0] & 0x0F;
    uint64_t length = data [1] & 0x7F;
    size_t at = 2;
    if (length == 126) {
        if (size < 4)
            return 0;
        length = (uint64_t) data [2] << 8 | data [3];
        at = 4;
    }
    else
    if (length == 127) {
        if (size < 10)
            return 0;
        length = 0;
        for (int i = 0; i < 8; i++)
            length = length << 8 | data [2 + i];
        at = 10;
        if (length >> 62)
            return -1;
    }
    if (frame->opcode >= 0x8 && (length > 125 || !frame->fin))
        return -1;
    if (size - at < length)
        return 0;
    frame->payload = data + at;
    frame->length = (size_t) length;
    return (long) (at + length);
}
