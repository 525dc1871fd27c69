/*  =========================================================================
    wsframe.h - the server side of RFC 6455 framing, over buffers

    Once civetweb has answered a WebSocket's upgrade, the gateway's event
    loop (loop.c) serves the socket itself, because civetweb 1.15 holds
    each WebSocket on a thread of its own and has no event-driven API. The
    framing a server needs is small: masked frames in, unmasked frames out.
    The parser is a pure function with a fuzz target and unit tests.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_WSFRAME_H_INCLUDED
#define NEARCHAT_GATEWAY_WSFRAME_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WSFRAME_CONTINUATION = 0x0,
    WSFRAME_TEXT         = 0x1,
    WSFRAME_BINARY       = 0x2,
    WSFRAME_CLOSE        = 0x8,
    WSFRAME_PING         = 0x9,
    WSFRAME_PONG         = 0xA
};

//  Close statuses (RFC 6455 section 7.4.1).
enum {
    WSFRAME_NORMAL       = 1000,
    WSFRAME_GOING_AWAY   = 1001,
    WSFRAME_PROTOCOL     = 1002,
    WSFRAME_POLICY       = 1008,        //  a slow reader, dropped
    WSFRAME_TOO_BIG      = 1009,
    WSFRAME_INTERNAL     = 1011,        //  missed messages could not be read: rejoin
    WSFRAME_RESTART      = 1012         //  service restart: reconnect
};

#define WSFRAME_HEADER_MAX  10          //  a server frame's longest header

typedef struct {
    int opcode;
    bool fin;
    uint8_t *payload;                   //  into the parsed buffer, unmasked
    size_t length;
} wsframe_t;

//  One client frame at the start of data. Returns 0 while it is incomplete,
//  the bytes it takes once whole (its payload unmasked in place), or -1
//  with a close status in *status when the client broke the protocol: an
//  unmasked frame, reserved bits or opcodes, a control frame longer than
//  125 bytes or fragmented, or a payload over max (WSFRAME_TOO_BIG).
long wsframe_parse (uint8_t *data, size_t size, size_t max, wsframe_t *frame, int *status);

//  A server frame's header (FIN set, no mask) for a payload of size bytes.
//  Returns its length (2, 4 or 10).
size_t wsframe_header (uint8_t out [WSFRAME_HEADER_MAX], int opcode, size_t size);

#endif
