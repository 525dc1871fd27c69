/*  =========================================================================
    links.h - what the gateway's ZeroMQ side shares: links.c (the sockets),
    pending.c (requests in flight) and shards.c (the live shard set)

    All three run on the event loop's thread alone (loop.c), which owns
    every ZeroMQ socket; the rest of the gateway sees gateway.h's
    pending_*, shards_* and links_* functions.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_LINKS_H_INCLUDED
#define NEARCHAT_GATEWAY_LINKS_H_INCLUDED

#include <czmq.h>
#include "gateway.h"

#define LINKS_PARTS_MAX 4

//  A ZeroMQ routing identity (at most 255 bytes by the ZMTP spec).
typedef struct {
    size_t size;
    unsigned char data [255];
} ident_t;

//  A live room shard.
typedef struct {
    char id [PROTO_ID_MAX + 1];
    ident_t identity;                   //  of its DEALER; a restarted shard has a new one
    char address [64];                  //  its peer's address, for the log
    int64_t seen_ms;                    //  monotonic time of its last hello
    //  Another peer that says hello with this id while this one is live
    //  (two shards with one SHARD_ID): refused, shown in /healthz.
    ident_t rival;
    int64_t rival_seen_ms;              //  0: none
} shard_t;

//  ---------------------------------------------------------------------------
//  links.c

//  Send the encoded message data to stored, or to the peer to of the
//  shard ROUTER, without blocking. Returns 0, or -1 with errno
//  (EHOSTUNREACH: the peer's link is gone; EAGAIN: the queue is full).
int  links_to_stored (const void *data, size_t size);
int  links_to_peer (const ident_t *to, const void *data, size_t size);
//  Queue the encoded request data for the shard at to, to go with the rest
//  of the turn's for it as one frame (links_flush). What cannot be sent
//  then is pending_unsent's.
void links_to_shard (const ident_t *to, const void *data, size_t size);
//  The run this gateway is now (proto.h, gateway-beat), for the records
//  of its sockets.
const char *links_run (void);

//  ---------------------------------------------------------------------------
//  pending.c

//  Who waits for a request's answer.
typedef enum {
    ORIGIN_PEER,                        //  a peer of the ROUTER (the reaper): answer there
    ORIGIN_POST,                        //  nobody: log failures
    ORIGIN_LOOP                         //  the loop's own (a socket's action, a call): its then
} origin_t;

//  Send request on to stored or its room's shard under an id of ours; or
//  answer the asker at once (503, 404, 400) when that cannot be done.
//  from: a peer's identity (ORIGIN_PEER), else NULL.
void pending_forward (proto_msg_t *request, origin_t origin, const ident_t *from,
                      int expected, pending_then_fn *then, void *then_arg);
//  An answer, encoded in data: from stored (from NULL) or from a peer.
void pending_reply (const void *data, size_t size, const ident_t *from);
//  Answer 503 to every request waiting on shard_id. sent_only: not those
//  that wait for its link (parked), which pending_resend_parked sends once
//  the shard is heard again.
void pending_fail_shard (const char *shard_id, const char *why, bool sent_only);
void pending_resend_parked (const shard_t *shard);
//  The requests in data (a frame of messages) could not go to the peer to
//  (errno error): each is parked for its shard's link (EHOSTUNREACH) or
//  answered 503, as if its own send had failed.
void pending_unsent (const ident_t *to, const void *data, size_t size, int error);
//  The link to stored dropped: what was sent there will not be answered.
//  Returns how many requests failed (503).
size_t pending_fail_stored (void);

//  ---------------------------------------------------------------------------
//  shards.c

//  A shard said hello from identity from (at address, for the log; may be
//  ""): record it and answer shard-welcome; or, when a live shard of its
//  id is another peer, refuse it with 409.
void shards_hello (const ident_t *from, const char *address, const proto_shard_hello_t *hello);
//  The live shard that owns room_id, or NULL when none is live.
const shard_t *shards_owner (const char *room_id);
//  The live shard of that id, or NULL.
const shard_t *shards_find (const char *shard_id);

#endif
