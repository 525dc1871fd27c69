/*  fuzz_wsframe - libFuzzer target for the gateway's reading of what a
    client sends once its WebSocket is the event loop's: wslay's frame API
    driven through its recv callback, as loop.c does (gateway/wsin.c).
    The first byte sets the message limit (times 16); the rest is what the
    socket gives, handed over in reads of varying size, some of them
    "nothing now" (an empty socket, or a socket not read while its action
    waits), as the loop's budget does. Whatever comes out must lie within
    the limit and be what a client may send: whole text messages in UTF-8,
    control frames of at most 125 bytes, close statuses a peer may send;
    an error closes with 1002, 1007 or 1009 only. Between reads the reader
    is told it may be idle (wsin_idle frees what an idle socket held), as
    the loop does at the end of each socket's turn. */

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wsin.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *data;
    size_t size, at;
    uint32_t seed;
} feed_t;

static uint32_t
s_next (feed_t *feed)
{
    feed->seed ^= feed->seed << 13;
    feed->seed ^= feed->seed >> 17;
    feed->seed ^= feed->seed << 5;
    return feed->seed;
}

static ssize_t
s_read (void *user, uint8_t *buf, size_t size)
{
    feed_t *feed = user;
    uint32_t roll = s_next (feed);
    if (feed->at == feed->size || roll % 5 == 0)
        return -1;                      //  nothing now
    size_t chunk = 1 + roll % 300;
    if (chunk > size)
        chunk = size;
    if (chunk > feed->size - feed->at)
        chunk = feed->size - feed->at;
    memcpy (buf, feed->data + feed->at, chunk);
    feed->at += chunk;
    return (ssize_t) chunk;
}

//  An independent UTF-8 check (RFC 3629), on a whole message.
static bool
s_utf8 (const uint8_t *text, size_t size)
{
    size_t i = 0;
    while (i < size) {
        uint32_t c = text [i];
        size_t need = c < 0x80? 0: (c & 0xE0) == 0xC0? 1: (c & 0xF0) == 0xE0? 2
                    : (c & 0xF8) == 0xF0? 3: 9;
        if (need == 9 || i + need >= size)
            return false;
        if (need)
            c &= 0x3F >> need;
        for (size_t k = 1; k <= need; k++) {
            if ((text [i + k] & 0xC0) != 0x80)
                return false;
            c = c << 6 | (text [i + k] & 0x3F);
        }
        static const uint32_t least [] = { 0, 0x80, 0x800, 0x10000 };
        if (c < least [need] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = (size_t) data [0] * 16;
    feed_t feed = { data + 1, size - 1, 0, (uint32_t) size * 2654435761u | 1 };
    wsin_t in = { 0 };
    if (data [0] == 0x7f && size >= 2) {
        //  Limit byte 0x7f: the bytes after the third (as many as the
        //  second says, at most 125) went as a frame read with the upgrade
        //  request, the third its header's first byte (loop_preface).
        size_t length = data [1] % 126;
        if (size >= 3 + length) {
            wsin_preface (&in, data [2], data + 3, length);
            feed.data = data + 3 + length;
            feed.size = size - 3 - length;
        }
    }
    wsin_init (&in, s_read, &feed);
    int quiet = 0;
    while (quiet < 64) {
        wsin_msg_t msg;
        wsin_result_t result = wsin_next (&in, max, &msg);
        if (result == WSIN_ERROR) {
            assert (msg.status == 1002 || msg.status == 1007 || msg.status == 1009);
            assert (msg.reason);
            break;
        }
        if (result == WSIN_MORE) {
            if (feed.at == feed.size)
                quiet++;
            wsin_idle (&in);            //  as the loop does after each turn
            continue;
        }
        quiet = 0;
        if (msg.opcode == WSLAY_TEXT_FRAME || msg.opcode == WSLAY_BINARY_FRAME) {
            assert (msg.size <= max);
            assert (msg.opcode == WSLAY_BINARY_FRAME || s_utf8 (msg.data, msg.size));
        }
        else {
            assert (msg.opcode == WSLAY_PING || msg.opcode == WSLAY_PONG
                 || msg.opcode == WSLAY_CONNECTION_CLOSE);
            assert (msg.size <= 125);
            if (msg.opcode == WSLAY_CONNECTION_CLOSE) {
                assert (msg.size != 1);
                assert ((msg.status >= 1000 && msg.status <= 1014 && msg.status != 1004
                         && msg.status != 1005 && msg.status != 1006)
                     || (msg.status >= 3000 && msg.status <= 4999));
                assert (msg.size < 2 || s_utf8 (msg.data + 2, msg.size - 2));
                break;                  //  the loop reads no more after a close
            }
        }
        if (msg.size)
            assert (msg.data != NULL);
        for (size_t i = 0; i < msg.size; i++)
            (void) *(volatile const uint8_t *) (msg.data + i);  //  readable, all of it
    }
    wsin_free (&in);
    return 0;
}
