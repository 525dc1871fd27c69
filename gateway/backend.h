/*  =========================================================================
    backend.h - what the backend's three files share

    Private to backend.c (the actor: sockets, pending requests, routing),
    shards.c (the live shard set) and calls.c (the workers' side). The
    rest of the gateway sees only gateway.h's backend_* functions.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_BACKEND_H_INCLUDED
#define NEARCHAT_GATEWAY_BACKEND_H_INCLUDED

#include <czmq.h>
#include "gateway.h"

#define BACKEND_INPROC      "inproc://gateway-backend"
#define BACKEND_WAKE_MS     100         //  longest sleep: shard timeouts, stop flags
#define BACKEND_PARTS_MAX   4

//  A ZeroMQ routing identity (at most 255 bytes by the ZMTP spec).
typedef struct {
    size_t size;
    unsigned char data [255];
} ident_t;

//  The frames of one message.
typedef struct {
    zmq_msg_t part [BACKEND_PARTS_MAX];
    int count;
} parts_t;

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
//  backend.c

//  A socket with no linger and bounded high-water marks.
zsock_t *backend_socket (int type, int hwm);
//  Read one whole message without waiting; parts past BACKEND_PARTS_MAX
//  are dropped. Returns false when there was none.
bool backend_recv (void *handle, parts_t *parts);
void backend_parts_close (parts_t *parts);
//  Send parts as one message without blocking. Returns 0, or -1.
int  backend_send_parts (void *handle, const void *const *data, const size_t *size, int count);
//  True once calls should give up (the gateway is stopping).
bool backend_cancelled (void);
//  Backend thread: answer 503 to every request waiting on shard_id.
//  sent_only: not those that wait for its link (parked), which
//  backend_resend_parked sends once the shard is heard again.
void backend_fail_shard (const char *shard_id, const char *why, bool sent_only);
void backend_resend_parked (const shard_t *shard);

//  ---------------------------------------------------------------------------
//  loop.c: the backend thread's event loop (epoll) over the owned sockets,
//  the adoption mailbox and the ZeroMQ sockets' descriptors

//  Make the epoll set, watching handles' ZMQ_FD. Returns 0, or -1.
int  loop_start (void *const *handles, int count);
//  Wait at most timeout_ms for a client socket, an adoption or a ZeroMQ
//  socket (at once when one has a message already), and handle the
//  client sockets' input. Returns how many client sockets had some.
int  loop_wait (int timeout_ms);
//  Go on with the sockets whose action ended (their reply came).
void loop_resume (void);
//  Something waits to be written (loop_flush).
bool loop_unwritten (void);
//  Write what was queued.
void loop_flush (void);
//  A turn left messages unread (more): the next wait does not sleep.
void loop_hurry (bool more);
//  Close every owned socket (the gateway is stopping).
void loop_close_all (void);
//  Free what loop_start made (after the thread has ended).
void loop_destroy (void);

//  ---------------------------------------------------------------------------
//  shards.c (backend thread only, but for backend_shards in gateway.h)

//  A shard said hello on router from identity from (at address, for the
//  log; may be ""): record it and answer shard-welcome, encoded in buffer;
//  or, when a live shard of its id is another peer, refuse it with 409.
void shards_hello (void *router, msgpack_sbuffer *buffer, const ident_t *from,
                   const char *address, const proto_shard_hello_t *hello);
//  Drop the shards silent for SHARD_TIMEOUT_MS.
void shards_check (void);
//  The live shard that owns room_id, or NULL when none is live.
const shard_t *shards_owner (const char *room_id);
//  The live shard of that id, or NULL.
const shard_t *shards_find (const char *shard_id);
//  Forget every shard (at start).
void shards_reset (void);

#endif
