/*  =========================================================================
    shard_peer.h - the test as a gateway to one real shard (shard_peer.c)
    =========================================================================
*/

#ifndef NEARCHAT_SHARD_PEER_H_INCLUDED
#define NEARCHAT_SHARD_PEER_H_INCLUDED

#include "harness.h"

extern harness_daemon_t peer_stored, peer_roomd;
extern zsock_t *peer_router;                //  the test, as a gateway
extern zframe_t *peer_shard;                //  the shard's routing identity
extern proto_client_t *peer_store;          //  the test, as the gateway's stored client
extern char peer_gateway_endpoint [64];

//  Start stored, bind the gateway's ROUTER and start the shard; and undo.
void peer_open (void);
void peer_close (void);
//  (Re)start the shard, ready once it said hello.
void peer_start_roomd (void);
//  Next message from the shard that is not a hello (hellos are answered as
//  a gateway would). NULL after timeout_ms.
proto_msg_t *peer_next (int timeout_ms);
//  Send a request to the shard; returns its request id.
uint64_t peer_send (proto_msg_t *request);
//  Send count requests (their ids consecutive from the one returned) and
//  then tail's bytes (may be none) as one frame, as a gateway sends what
//  one turn made for a shard.
uint64_t peer_send_frame (proto_msg_t *requests, size_t count, const void *tail,
                          size_t tail_size);
//  The next message must be of type (and answer request_id when not 0).
proto_msg_t *peer_expect (int type, uint64_t request_id);
bool peer_expect_error (uint64_t request_id, uint16_t status);
//  A room in stored, as the gateway's POST /rooms makes it.
const char *peer_create_room (const char *creator);
proto_msg_t peer_join (const char *room_id, const char *user, const char *conn,
                       uint64_t since_seq);
proto_msg_t peer_message (const char *room_id, const char *user, const char *client_id,
                          const char *text);

#endif
