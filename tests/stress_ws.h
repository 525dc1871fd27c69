/*  =========================================================================
    stress_ws.h - many WebSockets in one poll loop, for test_stress

    ws_client_t gives each socket a civetweb thread and closes only with a
    close frame; test_stress holds a few hundred sockets at once, closes
    them abruptly too, and writes frames no client library would. So each
    socket here is a plain non-blocking descriptor: the upgrade and the
    frames are the load generator's (bench/load/wsproto.h, over wslay), the
    caller polls sws_events and calls sws_service, and takes the server's
    text frames, parsed as JSON, with sws_take. Pings are answered and a
    close frame echoed here, as a live client does.
    =========================================================================
*/

#ifndef NEARCHAT_STRESS_WS_H_INCLUDED
#define NEARCHAT_STRESS_WS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "load/wsproto.h"

typedef enum {
    SWS_IDLE,                       //  no descriptor
    SWS_UPGRADING,                  //  the upgrade is sent or under way
    SWS_OPEN,                       //  101 read: frames flow
    SWS_ENDED                       //  the stream ended, was reset or refused
} sws_state_t;

typedef struct {
    int fd;                         //  -1 when none
    sws_state_t state;
    int status;                     //  the upgrade's HTTP status (101), 0 before, -1 if unreadable
    char key [WSPROTO_KEY_SIZE];
    unsigned char *in;              //  bytes read and not yet taken apart
    size_t in_used, in_max;
    unsigned char *out;             //  bytes to write, from out_sent on
    size_t out_used, out_sent, out_max;
    unsigned char *message;         //  a fragmented text message being put together
    size_t message_size, message_max;
    json_t *frames;                 //  text frames read, parsed, oldest first
    int close_code;                 //  the server's close frame's code, 1005 without one; 0: none
    size_t not_json;                //  text frames that were no JSON object
    size_t bad_frames;              //  frames that broke RFC 6455 (masked, unknown opcode)
} sws_t;

//  Start a socket to 127.0.0.1:port with the upgrade for path_and_query
//  queued. Returns 0, or -1 if no socket could be made (state SWS_ENDED).
int
    sws_open (sws_t *self, int port, const char *path_and_query);

//  The poll events the socket waits for (0 once ended or idle).
short
    sws_events (const sws_t *self);

//  Write what is queued and read what came, as revents says; takes whole
//  frames apart. A read of 0 or an error ends the socket.
void
    sws_service (sws_t *self, short revents);

//  Queue a masked text frame of text (or a frame of opcode and payload).
//  Returns 0, or -1 if the socket is not open.
int
    sws_send_text (sws_t *self, const char *text);
int
    sws_send_frame (sws_t *self, int opcode, const void *payload, size_t size);

//  Queue json as a text frame (the reference is stolen).
int
    sws_send_json (sws_t *self, json_t *json);

//  Queue bytes as they are: a frame built by hand, garbage.
int
    sws_send_raw (sws_t *self, const void *bytes, size_t size);

//  The oldest text frame read (the caller owns it), or NULL.
json_t *
    sws_take (sws_t *self);

//  Close the descriptor at once (no close frame: an abrupt disconnect) and
//  free the buffers; the socket is SWS_IDLE after, ready for sws_open.
void
    sws_drop (sws_t *self);

#endif
