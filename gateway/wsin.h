/*  =========================================================================
    wsin.h - a WebSocket's client messages, read with wslay's frame API

    The event loop (loop.c) reads each socket through this: wslay parses
    the frames (its recv callback is the loop's read, non-blocking), and
    wsin reassembles fragmented messages, checks what wslay's frame API
    leaves to its caller (masking, reserved bits and opcodes, the order of
    fragments, close codes, UTF-8 in text and close reasons) and bounds a
    message to max bytes. It makes no system call of its own, so the fuzz
    target (tests/fuzz/fuzz_wsframe.c) drives it as the loop does.

    Why wslay's frame API and not its event API (measured with libwslay
    1.1.1, glibc's mallinfo2 over 1,000 contexts): an event context costs
    8,784 bytes a socket for the socket's whole life, where a frame
    context costs 4,272 and only while the socket holds unread bytes (an
    idle socket: none, as before); wslay_event_queue_msg copies every
    message into the socket's own queue (192 bytes for a 100-byte one),
    where the loop queues one shared frame to a whole room (sockets.c) and
    coalesces many frames into one send (output.c), and its queue has no
    bound of ours (SOCKET_QUEUE_MAX, slow readers 1008); and
    wslay_event_recv reads until the socket is empty and hands over every
    message it parsed, so it cannot leave a socket unread while its action
    waits. The frame API keeps all of that as it was.
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
    //  Frames read before the socket was ours (wsin_preface), given first.
    uint8_t *preface;
    size_t preface_size, preface_at;
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

//  Set up a reader (zeroed, or with only a preface given); it keeps a
//  preface given before it.
void wsin_init (wsin_t *self, wsin_read_fn *read, void *user);
//  A frame already read and unmasked by someone else (bits: its first
//  header byte), framed again as the client sent it, to be read before
//  anything read gives: civetweb's, read with the upgrade request.
void wsin_preface (wsin_t *self, int bits, const void *data, size_t size);
bool wsin_has_preface (const wsin_t *self);
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
