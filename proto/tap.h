/*  =========================================================================
    tap.h - a copy of every message a daemon sends and receives, for
    nearchat-spy (TAP_ENDPOINT)

    With TAP_ENDPOINT set, a daemon binds a PUB socket there and publishes
    each proto message that crosses one of its ZeroMQ sockets as four
    frames: the daemon ("roomd shard-1"), "in" or "out", the peer
    ("stored", a gateway's endpoint, ...), and the message's bytes,
    untouched. Nobody subscribed costs a send
    that ZeroMQ drops; a spy that reads too slowly loses copies (the PUB's
    high-water mark), never slows the daemon.

    Not thread-safe: each daemon taps from the one thread that owns its
    outside sockets.
    =========================================================================
*/

#ifndef NEARCHAT_TAP_H_INCLUDED
#define NEARCHAT_TAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  The TAP_ENDPOINT setting; each daemon puts TAP_OPTION in its table.
extern const char *tap_endpoint;
#define TAP_OPTION \
    { "TAP_ENDPOINT", CONFIG_STRING, "", 0, 256, \
      "ZeroMQ endpoint to publish a copy of every message on, for nearchat-spy (tcp://127.0.0.1:* picks a port, logged)", \
      &tap_endpoint }

typedef enum { TAP_IN, TAP_OUT } tap_direction_t;

//  Bind the tap when TAP_ENDPOINT is set; name says which daemon publishes
//  ("stored", "roomd shard-1"). Returns 0 (also when it is not set), or -1
//  if it cannot be bound (logged).
int  tap_open (const char *name);
void tap_close (void);
//  Publish a copy of one message (no-op without a tap).
void tap_message (tap_direction_t direction, const char *peer, const void *data, size_t size);

#endif
