/*  =========================================================================
    wsproto.h - the client side of RFC 6455, as pure functions over buffers

    The load generator holds thousands of sockets in one epoll loop, which
    no client library we have does: civetweb's client gives each socket a
    thread, libwebsockets brings its own loop. The handshake (an upgrade
    request, the 101 check) is written here; the framing (masked frames
    out, unmasked frames in) is wslay's frame API, the gateway's too, so
    the project has one implementation of it. Unit tests: test_loadgen_units.
    =========================================================================
*/

#ifndef NEARCHAT_WSPROTO_H_INCLUDED
#define NEARCHAT_WSPROTO_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define WSPROTO_KEY_SIZE    25      //  base64 of 16 bytes, and a NUL

enum {
    WSPROTO_TEXT  = 0x1,
    WSPROTO_CLOSE = 0x8,
    WSPROTO_PING  = 0x9,
    WSPROTO_PONG  = 0xA
};

//  A fresh Sec-WebSocket-Key from 16 random bytes.
void wsproto_key (const uint8_t random [16], char key [WSPROTO_KEY_SIZE]);

//  The upgrade request for path on host:port. Returns its length, or -1 if
//  it does not fit in size.
int wsproto_request (char *out, size_t size, const char *host, int port, const char *path,
                     const char *key);

//  Check the server's answer in data: 0 while the header is incomplete,
//  its length once it is a 101 whose Sec-WebSocket-Accept fits key, -1
//  otherwise.
int wsproto_response (const char *data, size_t size, const char *key);

//  A masked client frame (FIN set) of opcode and payload into out. Returns
//  its length, or -1 if it does not fit.
int wsproto_frame (uint8_t *out, size_t size, int opcode, const void *payload, size_t length,
                   const uint8_t mask [4]);

//  One server frame at the start of data: 0 while incomplete, -1 if it is
//  malformed (masked, reserved bits, a control frame that is too long or
//  fragmented), else the bytes it takes, with its opcode, FIN bit and
//  payload (pointing into data).
typedef struct {
    int opcode;
    int fin;
    const uint8_t *payload;
    size_t length;
} wsproto_frame_t;

long wsproto_parse (const uint8_t *data, size_t size, wsproto_frame_t *frame);

#endif
