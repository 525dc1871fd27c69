/*  =========================================================================
    wsin.h - a WebSocket's client messages, read with wslay's frame API

    The event loop (loop.c) reads each socket through this: wslay parses
    the frames (its recv callback is the loop's read, non-blocking), and
    wsin reassembles fragmented messages, checks what wslay's frame API
    leaves to its caller (masking, reserved bits and opcodes, the order of
    fragments, close codes, UTF-8 in text and close reasons) and bounds a
    message to max bytes. It makes no system call of its own, so the fuzz
    target (tests/fuzz/fuzz_wsframe.c) drives it as the loop does.

    Why wslay's frame API and not its event API: the event API reads until
    the socket is empty and hands over every message it parsed, so it
    cannot stop reading a socket while its action waits; and it copies
    each message it sends into a queue of its own per socket, where the
    loop shares one frame among a room's queues (sockets.c) and coalesces
    many into one write (output.c). The frame API keeps both as they were.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_WSIN_H_INCLUDED
#define NEARCHAT_GATEWAY_WSIN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <wslay/wslay.h>

//  Fill at most size bytes of buf: the bytes filled, or -1 when none can be
//  had now (the socket is empty, or the reader may not read it now).
typedef ssize_t wsin_read_fn (void *user, uint8_t *buf, size_t size);

typedef struct {
    wslay_frame_context_ptr wslay;      //  NULL while nothing is held (an idle socket)
    wsin_read_fn *read;
    void *user;
    size_t held;                        //  bytes given to wslay, not yet in whole frames
    uint8_t tail [14];                  //  the last bytes given to wslay (a header's most)
    //  The frame being read.
    bool in_frame;
    int opcode;
    bool fin;
    uint64_t length, got;
    uint8_t control [125];
    //  The message being reassembled (text or binary).
    int message;                        //  its opcode; 0: none under way
    uint8_t *data;
    size_t size, max;
    uint8_t utf8_need, utf8_lo, utf8_hi;
} wsin_t;

typedef enum { WSIN_MORE, WSIN_MESSAGE, WSIN_ERROR } wsin_result_t;

typedef struct {
    int opcode;                         //  text, binary, ping, pong or close
    const uint8_t *data;                //  valid until the next wsin call
    size_t size;
    int status;                         //  a close's status to echo; an error's close status
    const char *reason;                 //  an error's (static)
} wsin_msg_t;

void wsin_init (wsin_t *self, wsin_read_fn *read, void *user);
//  The next whole message (a data message or a control frame), WSIN_MORE
//  when its bytes are not all in yet, or WSIN_ERROR with the status to
//  close with (1002, 1007, 1009). Messages are at most max bytes.
wsin_result_t wsin_next (wsin_t *self, size_t max, wsin_msg_t *msg);
//  Free what an idle reader holds (between messages, no byte held):
//  returns the bytes freed.
size_t wsin_idle (wsin_t *self);
//  Bytes held now (wslay's context and the message buffer).
size_t wsin_footprint (const wsin_t *self);
void wsin_free (wsin_t *self);

#endif
