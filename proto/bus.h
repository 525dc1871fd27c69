/*  =========================================================================
    bus.h - every ZeroMQ link authenticated, encrypted and bounded

    Each daemon has a CURVE key pair, a czmq zcert made by nearchat-keys
    (`./nearchat keys`) in KEYS_DIR, one per role:

        KEYS_DIR/<role>.key          public cert (metadata "role" = <role>)
        KEYS_DIR/<role>.key_secret   its secret key, mode 0600

    with role one of stored, gateway, shard, reaper, tool. A listener
    (stored's ROUTER, a gateway's shard backend) is a CURVE server with its
    own key and admits only the clients whose public cert is in KEYS_DIR
    (czmq's zauth, a ZAP handler, with KEYS_DIR as its allow-list; it
    rereads the directory when it changes, so a key added or removed takes
    effect on the next connection, without a restart). A connector is a
    CURVE client with its own key and the listener's public key. A peer
    without a key, or with one not in the allow-list, never gets a message
    through. Each message received on a listener carries its sender's role
    (bus_role), read from the cert the operator put in the allow-list, not
    from anything the peer says.

    Every socket also refuses a message over BUS_MSG_MAX (ZMQ_MAXMSGSIZE):
    libzmq drops the connection as soon as a frame's header says it is
    larger, before reading it.

    A process may hold the secret of its own role only: bus_setup reads
    KEYS_DIR/<role>.key_secret and the public certs; a deployment that wants
    each daemon to see no other secret gives each its own KEYS_DIR with its
    secret and every public cert.
    =========================================================================
*/

#ifndef NEARCHAT_BUS_H_INCLUDED
#define NEARCHAT_BUS_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The roles: the names of the key pairs in KEYS_DIR.
#define BUS_STORED      "stored"
#define BUS_GATEWAY     "gateway"
#define BUS_SHARD       "shard"
#define BUS_REAPER      "reaper"
#define BUS_TOOL        "tool"

//  Every socket's ZMQ_MAXMSGSIZE: a whole encoded message and a margin.
#define BUS_MSG_MAX     (PROTO_FRAME_MAX + 64 * 1024)

//  The KEYS_DIR setting; each daemon puts BUS_OPTION in its table.
extern const char *bus_keys_dir;
#define BUS_KEYS_DIR_DEFAULT "./data/keys"
#define BUS_OPTION \
    { "KEYS_DIR", CONFIG_STRING, BUS_KEYS_DIR_DEFAULT, 0, 4000, \
      "directory of the CURVE keys of the bus, made by `./nearchat keys`", \
      &bus_keys_dir }

//  Make the key pair of every role in keys_dir (created, mode 0700, if
//  missing). A role whose key files exist already is kept, unless force.
//  Returns 0, or -1 with a message on stderr.
int
    bus_keys_make (const char *keys_dir, bool force);

//  Make a key pair of gateway_id's own in keys_dir: gateway-<id>.key (role
//  gateway, metadata "gateway" = gateway_id) and its secret. From then on
//  only that key may speak for gateway_id (bus_speaks_for). Returns 0, or
//  -1 with a message on stderr (an id unfit for a file name, say).
int
    bus_keys_make_gateway (const char *keys_dir, const char *gateway_id, bool force);

//  Can gateway_id have a key of its own (its name in a file name): letters,
//  digits, '.', '_' and '-', not starting with '.', at most 100?
bool
    bus_gateway_id_ok (const char *gateway_id);

//  Load this process's key pair (role) from keys_dir, for the sockets it
//  makes after. Returns 0, or -1 with a log line saying which file is
//  missing. Call once, after zsys_init.
int
    bus_setup (const char *keys_dir, const char *role);

//  bus_setup with KEYS_DIR (bus_keys_dir).
int
    bus_start (const char *role);

//  A gateway (after bus_start): when KEYS_DIR holds a key of gateway_id's
//  own (bus_keys_make_gateway), its links (bus_client) present that key
//  instead of the shared gateway key; its listener keeps the shared one,
//  which is what shards trust. Returns 0 (with or without such a key), or
//  -1 (logged) if the key is there but unreadable or another gateway's.
int
    bus_own_key (const char *gateway_id);

//  The role bus_setup was given, or NULL before it.
const char *
    bus_own_role (void);

//  Make socket, not yet bound, a CURVE server with this process's key,
//  admitting the keys of KEYS_DIR; starts the ZAP handler on first use.
//  Sets BUS_MSG_MAX. Returns 0, or -1 if bus_setup was not done.
int
    bus_server (zsock_t *socket);

//  Make socket, not yet connected, a CURVE client with this process's key,
//  trusting the listener whose role is server_role. Sets BUS_MSG_MAX.
//  Returns 0, or -1 (logged) without keys.
int
    bus_client (zsock_t *socket, const char *server_role);

//  The role of the peer that sent msg, received on a bus_server socket
//  (any frame of it), or NULL if unknown.
const char *
    bus_role (zmq_msg_t *msg);

//  May a peer of role (bus_role; NULL: unknown) send msg to a listener?
//  Everyone with a key may ask for what the API offers; the privileged
//  messages are for one role: a TTL sweep, the list of silent gateways and
//  forgetting a gateway's run (gateway-beat gone) for the reaper; a
//  gateway's heartbeat for a gateway; a shard-hello and every event for a
//  shard; a room-close without a user (an idle room's) for the reaper.
bool
    bus_may_send (const char *role, const proto_msg_t *msg);

//  May the gateway key that sent msg speak for the gateway msg names (a
//  heartbeat, a connection record)? A key of a gateway's own speaks for
//  that gateway alone; the shared gateway key for every gateway that has
//  no key of its own in KEYS_DIR. Messages naming no gateway, and peers of
//  other roles (bus_may_send judges those), are not this function's: true.
bool
    bus_speaks_for (zmq_msg_t *frame, const proto_msg_t *msg);

//  Is role (may be NULL) the role named?
bool
    bus_is (const char *role, const char *name);

//  Stop the ZAP handler and forget the key. Before zsys_shutdown.
void
    bus_close (void);

#ifdef __cplusplus
}
#endif

#endif
