/*  =========================================================================
    client.h - requests to a nearchat daemon over a ZeroMQ DEALER

    A proto_client_t sends proto messages to one ROUTER endpoint (stored, a
    roomd, a gateway's backend) and matches replies to requests by
    request_id. It keeps many requests in flight (proto_client_send and
    proto_client_recv) or does one at a time (proto_client_call). Every wait
    has a timeout and the socket has bounded high-water marks and no linger,
    so a dead peer never hangs a caller. Not thread-safe: one per thread.
    =========================================================================
*/

#ifndef NEARCHAT_CLIENT_H_INCLUDED
#define NEARCHAT_CLIENT_H_INCLUDED

#include <czmq.h>
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct proto_client proto_client_t;

//  Connect a new client to stored at endpoint (e.g. "tcp://127.0.0.1:5555")
//  over CURVE, with the key of bus_setup (bus.h). Returns NULL if the
//  endpoint is invalid or there is no key.
proto_client_t *
    proto_client_new (const char *endpoint);

//  The same to a listener of another role (BUS_GATEWAY: a gateway's shard
//  backend).
proto_client_t *
    proto_client_new_to (const char *endpoint, const char *server_role);

//  Close the socket, free the client and set *self_p to NULL.
void
    proto_client_destroy (proto_client_t **self_p);

//  Send req. When req->request_id is 0 the client gives it the next id of
//  its own (and writes it into req). Returns 0, or -1 if req does not
//  encode or the send would block past the high-water mark.
int
    proto_client_send (proto_client_t *self, proto_msg_t *req);

//  Queue req (an id as proto_client_send gives) for one frame with the
//  others queued, sent by proto_client_flush: as a shard sends a turn's
//  calls. Returns 0, or -1 if req does not encode.
int
    proto_client_queue (proto_client_t *self, proto_msg_t *req);
//  Send what was queued as one frame. Returns 0 (also with nothing
//  queued), or -1 if the send would block past the high-water mark.
int
    proto_client_flush (proto_client_t *self);
//  Receive the next reply, waiting at most timeout_ms (-1: forever). A
//  frame of several replies is given one reply a call.
//  Returns the decoded reply for the caller to destroy, or NULL on timeout
//  (errno ETIMEDOUT), interruption (EINTR) or an undecodable reply (EPROTO).
proto_msg_t *
    proto_client_recv (proto_client_t *self, int timeout_ms);

//  Send req and wait at most timeout_ms for its reply, dropping replies to
//  other (earlier, timed-out) requests. Returns as proto_client_recv.
proto_msg_t *
    proto_client_call (proto_client_t *self, proto_msg_t *req, int timeout_ms);

//  The DEALER socket, for a caller's poller. Do not read from it directly.
//  (Replies left of a frame of several are not seen there: take them with
//  proto_client_recv first.)
zsock_t *
    proto_client_socket (proto_client_t *self);

#ifdef __cplusplus
}
#endif

#endif
