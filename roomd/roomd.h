/*  =========================================================================
    roomd.h - a room shard's state and internal interfaces

    roomd is a single-threaded actor that owns the live state of the rooms
    that hash to it (route.h): each room's record as stored last wrote it,
    the sockets that are in it (members), and typing throttles. It changes
    rooms and appends messages through stored, and only once stored has
    answered does it reply and fan the event out: one ZeroMQ message per
    gateway per event. A chat message is the exception: numbered here, it
    is fanned out before it is durable and acked after (handle_send.c).

    Its peers:
      - every gateway (GATEWAY_ENDPOINTS): a DEALER a gateway, on which
        roomd says shard-hello every heartbeat, takes requests and sends
        replies and events (links.c);
      - stored: a DEALER on which requests go out with a continuation each
        and come back in any order, matched by request id (store.c).

    Invariants:
      - a room is in the table in one of two states: LOADING (its record
        and members are being read from stored; requests wait in its
        queue, in order) or READY (requests run at once);
      - roomd writes a room only through stored's conditional room-update,
        so stored stays the source of truth; the copy here is replaced by
        every room stored sends back;
      - nothing in this process blocks: every wait is a pending operation
        with a deadline.
    =========================================================================
*/

#ifndef NEARCHAT_ROOMD_H_INCLUDED
#define NEARCHAT_ROOMD_H_INCLUDED

#include <czmq.h>
#include "proto.h"
#include "metrics.h"
#include "monitor.h"
#include "requests.h"
#include "tap.h"
#include "ids.h"

typedef struct roomd roomd_t;
//  A call of the turn's frames to stored: sent, or not (store_flush).
typedef struct {
    uint64_t id;
    bool failed;
} settle_t;
typedef struct room room_t;
typedef struct link link_t;
typedef struct op op_t;

//  ---------------------------------------------------------------------------
//  Settings

typedef struct {
    const char *shard_id;
    const char *gateway_endpoints;      //  comma-separated
    const char *stored_endpoint;
    int64_t heartbeat_ms;
    int64_t request_timeout_ms;         //  for each call to stored
    int64_t typing_throttle_ms;
    int64_t history_on_join;            //  newest messages a joining socket is sent; 0: none
    int64_t room_idle_evict_s;          //  a room unused this long leaves memory
} roomd_config_t;

//  ---------------------------------------------------------------------------
//  Gateway links (links.c)

#define LINKS_MAX 16

struct link {
    zsock_t *socket;                    //  DEALER connected to one gateway's backend
    monitor_t *monitor;                 //  its events: logged with ZMQ_MONITOR=1; connects
    char endpoint [256];
    char gateway_id [PROTO_ID_MAX + 1]; //  from its last welcome, "" before
    int64_t welcomed_ms;                //  monotonic time of its last welcome
    uint64_t shard_digest;              //  of the shard set it last told us
    int64_t evicted_ms;                 //  when its set last drove an eviction
    bool refused;                       //  it refused our hello (another shard has our id)
    //  What this turn has for the gateway, sent as one frame when the turn
    //  ends (links_flush): under load a frame carries many events and
    //  answers, each ZeroMQ message paying its CURVE box and its hand-offs
    //  between threads once.
    msgpack_sbuffer out;
};

//  Connect one link per endpoint. Returns 0, or -1 if an endpoint is bad.
int  links_open (roomd_t *self);
void links_close (roomd_t *self);
//  Say shard-hello on every link.
void links_hello (roomd_t *self);
//  Say shard-hello on link if its connection just came up (its monitor).
void links_up (roomd_t *self, link_t *link);
//  Send msg on one link (a reply), or on every link (an event). A gateway
//  that is not there loses the message: events are not queued for it.
void link_send (roomd_t *self, link_t *link, const proto_msg_t *msg);
void fanout_to_gateways (roomd_t *self, const proto_msg_t *event);
//  Send what the turn queued on each link (link_send, fanout_to_gateways):
//  at the end of every turn, and before the links close.
void links_flush (roomd_t *self);
//  Answer a gateway's PROTO_METRICS on link with this shard's metrics.
void links_metrics (roomd_t *self, link_t *link, const proto_msg_t *request);
//  Read one frame from link, if there is one, and act on each message in
//  it. Returns false when there was none.
bool link_receive (roomd_t *self, link_t *link);

//  ---------------------------------------------------------------------------
//  Calls to stored (store.c)

//  What to do when stored answers a call: reply is NULL when the call timed
//  out or could not be sent (then the caller answers 503). The callee owns
//  nothing; op is freed by whoever finishes it (op_finish).
typedef void (op_done_fn) (roomd_t *self, op_t *op, proto_msg_t *reply);

//  One request from a gateway being served, and the call to stored it is
//  waiting on (at most one at a time).
struct op {
    char room_id [PROTO_ID_MAX + 1];    //  the room it is about
    proto_msg_t *request;               //  the gateway's request (owned; NULL for roomd's own)
    link_t *link;                       //  where the reply goes
    op_done_fn *done;                   //  continuation of the current call
    uint64_t call_id;                   //  request id of that call, 0 if none
    int64_t received_ns;                //  monotonic, when the request came
    proto_room_t result_room;           //  a room to carry between steps
    msgpack_zone *zone;                 //  holds result_room's strings
    bool retried;                       //  served again after its room moved (421)
    bool leave_again;                   //  a leave's second update: its user goes too
    bool join_added;                    //  a socket's join made it a member (s_join)
    char refusal [96];                  //  a 403 waiting for stored to confirm it
    op_t *queued_next;                  //  a LOADING room's queue
    //  A send (handle_send.c): its message as numbered here, fanned out
    //  before it is durable, kept in its room's window until it is.
    proto_message_t message;            //  seq and id ours; strings in request
    char message_id [IDS_UUID_SIZE];
    uint64_t generation;                //  of the room whose window holds it; 0: none
    uint64_t epoch;                     //  the claim its append is conditional on
    bool careful;                       //  fanned out only once durable
    bool fanned, durable, acked;
    bool unsent;                        //  its append waits in store_out: not fanned yet
    void (*sent) (roomd_t *self, op_t *op);     //  run once its call went (store_flush)
    bool hole;                          //  stored holds it under another seq: not fanned
    int attempts;                       //  appends sent again
    int64_t give_up_ms, retry_at_ms;    //  monotonic
    uint64_t ack_seq;                   //  stored's answer: the seq it holds it at
    int64_t ack_at_ms;
    bool ack_duplicate;
    char ack_id [PROTO_ID_MAX + 1];
    op_t *waiters, *waiter_next;        //  resends of its messageId, waiting for it
    //  A join: the seq from which the window is kept for its history.
    uint64_t pin_seq, pin_generation;
};

int  store_open (roomd_t *self);
void store_close (roomd_t *self);
//  Send call (its request_id is set here) for op; done runs on the reply.
//  It goes with the turn's other calls (store_flush); done runs with NULL
//  then if it cannot be sent (stored is not there), as for a call that
//  timed out, but with self->sending = op: its send itself failed.
void store_call (roomd_t *self, op_t *op, proto_msg_t *call, op_done_fn *done);
//  Send the turn's calls as one frame, before the shard waits; then each
//  sent call's op->sent runs, if it has one (a send's message may go out).
void store_flush (roomd_t *self);
//  Read one reply from stored, if there is one, and run its continuation.
//  Returns false when there was none.
bool store_receive (roomd_t *self);
//  Run the continuations of calls past their deadline, with NULL.
void store_expire (roomd_t *self);
//  Run the continuation of every call in flight with NULL (at shutdown).
void store_abandon (roomd_t *self);
//  The link to stored went down (its monitor says so): the calls in
//  flight on it will never be answered, so they fail now (503).
void store_lost (roomd_t *self);
//  Wait up to timeout_ms for the link to stored to be up (its handshake
//  done). False if it is not: the shard starts all the same, and what it
//  cannot load is answered 503 until stored is there.
bool store_wait_up (roomd_t *self, int timeout_ms);
//  Milliseconds until the oldest call's deadline, or -1 if none.
int64_t store_next_deadline (roomd_t *self);

//  New op about room_id for request from link (request is taken over; both
//  NULL for an operation of roomd's own). op_finish, op_reply and op_fail
//  answer on op's link (links.c).
op_t *op_new (const char *room_id, proto_msg_t *request, link_t *link);
//  Answer op's request with reply (NULL: nothing to send) and free op.
void op_finish (roomd_t *self, op_t **op_p, proto_msg_t *reply);
//  Answer op's request with reply; op stays (its request answered once).
void op_reply (roomd_t *self, op_t *op, proto_msg_t *reply);
//  Answer op's request with an error and free op.
void op_fail (roomd_t *self, op_t **op_p, uint16_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

//  ---------------------------------------------------------------------------
//  Rooms (rooms.c)

typedef enum { ROOM_LOADING, ROOM_READY } room_state_t;

//  A socket in a room.
typedef struct {
    char *conn_id, *gateway_id, *user_id;
} member_t;

struct room {
    char id [PROTO_ID_MAX + 1];
    room_state_t state;
    proto_room_t record;                //  as stored last sent it (READY)
    msgpack_zone *zone;                 //  holds record's strings
    member_t *members;
    size_t member_count, member_max;
    struct { char *user_id; int64_t at_ms; } *typing;   //  last typing event per user
    size_t typing_count;
    op_t *queue_head, *queue_tail;      //  requests waiting for LOADING to end
    int64_t used_ms;                    //  monotonic time of the last request
    //  Numbering (handle_send.c), from the load on.
    uint64_t generation;                //  this load's, unique in the process
    uint64_t next_seq;                  //  the next message's
    uint64_t fanned_seq;                //  the newest fanned out
    uint64_t confirmed_seq;             //  the newest stored holds, as far as we know
    zlistx_t *window;                   //  sends in seq order, until durable and unpinned
    zhashx_t *ids;                      //  client ids appended since the load (the last
    char **id_ring;                     //  ROOM_IDS_MAX, oldest out first)
    size_t id_next;
    uint64_t *pins;                     //  joins' pin_seq
    size_t pin_count, pin_max;
    bool closing;                       //  a close is on its way to stored
};

//  The table of rooms, by id; it frees the rooms it holds, after gone (self
//  NULL at exit) has let go of what else each holds.
typedef void (rooms_gone_fn) (roomd_t *self, room_t *room);
zhashx_t *rooms_new (rooms_gone_fn *gone);
room_t *rooms_find (roomd_t *self, const char *room_id);
room_t *rooms_add (roomd_t *self, const char *room_id);
void    rooms_remove (roomd_t *self, room_t **room_p);
size_t  rooms_count (roomd_t *self);
//  Drop rooms this shard no longer owns under shards[], and rooms with no
//  members unused for room_idle_evict_s; with shards NULL, every room
//  (loading ones stay: their requests are on their way).
void    rooms_evict (roomd_t *self, const char *const *shards, size_t shard_count);

//  Replace the room's record with a deep copy of record.
void room_set_record (room_t *room, const proto_room_t *record);
bool room_is_participant (const room_t *room, const char *user_id);
//  Add a socket (no change if present); remove one socket, or every socket
//  of a user. Return true when something changed.
bool room_add_member (room_t *room, const char *conn_id, const char *gateway_id,
                      const char *user_id);
bool room_remove_member (room_t *room, const char *conn_id);
void room_remove_user (room_t *room, const char *user_id);
bool room_user_online (const room_t *room, const char *user_id);
//  Whether the socket conn_id is a member.
bool room_has_member (const room_t *room, const char *conn_id);
//  Distinct user ids with a socket in the room, into ids (at most max).
uint32_t room_online (const room_t *room, const char **ids, uint32_t max);
//  True if user may emit a typing event now (and remember that they did).
bool room_typing_allowed (room_t *room, const char *user_id, int64_t now_ms, int64_t throttle_ms);

//  ---------------------------------------------------------------------------
//  Handlers (handle_rooms.c): serve one request for a READY room; each
//  finishes op itself, now or from a continuation.

void handle_request (roomd_t *self, room_t *room, op_t *op);
//  A request from link (taken over): find or load its room, then serve it.
void handle_dispatch (roomd_t *self, proto_msg_t *request, link_t *link);

//  Serve op again from the start: find its room or load it.
void handle_serve (roomd_t *self, op_t *op);
//  Stored refused a write of op's with 421: reload the room, serve op again.
void handle_moved (roomd_t *self, op_t **op_p, const char *reason);
//  Answer stored's error reply (or none: unreachable) as op's.
void handle_store_failed (roomd_t *self, op_t **op_p, const proto_msg_t *reply);

//  ---------------------------------------------------------------------------
//  A chat message (handle_send.c)

//  Sends a room may have fanned out past the newest seq stored confirmed
//  (a loader numbers from stored's last + 1 + this); more wait.
#define SEND_WINDOW     1024
//  Client ids a room remembers as appended since its load.
#define ROOM_IDS_MAX    1024

//  Number op's message, fan it out when the window allows, append it, and
//  ack once durable (op is finished there).
void send_start (roomd_t *self, room_t *room, op_t *op);
//  A room just loaded (its record set): where its numbering starts.
void send_room_ready (room_t *room);
//  A room leaves memory: its sends in flight carry on without it; those
//  durable are acked (self may be NULL at exit) and freed.
void send_room_gone (roomd_t *self, room_t *room);
//  The newest seq a room has fanned out (0: not held).
uint64_t send_fanned_seq (roomd_t *self, const char *room_id);
//  A join about to read its history: keep what is fanned out from now on.
void send_pin (room_t *room, op_t *join);
//  The join's history with what the room fanned out that it may not hold,
//  in seq order, each seq once, after after_seq (the newest keep, if not
//  0); unpins. Returns the count and sets *merged (the caller frees it,
//  then calls send_trim) or, with nothing to add, returns count (merged
//  NULL). Sets *more if the merged page was cut.
uint32_t send_merge (roomd_t *self, op_t *join, const proto_message_t *history, uint32_t count,
                     uint64_t after_seq, uint32_t keep, bool *more, proto_message_t **merged);
void send_trim (roomd_t *self, const char *room_id);
//  A close of room is on its way (true) or answered (false): meanwhile
//  messages are fanned out only once durable.
void send_close_begins (room_t *room, bool begins);
//  Send again the appends whose retry is due; milliseconds until the next
//  (-1: none). send_stop fails them all (at exit).
void send_retry_due (roomd_t *self);
int64_t send_next_retry (roomd_t *self);
void send_stop (roomd_t *self);

//  ---------------------------------------------------------------------------
//  The actor

struct roomd {
    const roomd_config_t *config;
    link_t links [LINKS_MAX];
    size_t link_count;
    zsock_t *store;                     //  DEALER to stored
    monitor_t *store_monitor;
    uint64_t next_call_id;
    requests_t *calls;                  //  calls in flight: call_id -> op_t, by deadline
    //  The turn's calls, sent to stored as one frame when the turn ends
    //  (store_flush): each ZeroMQ message pays its CURVE box and its
    //  hand-offs between threads once, however many appends it carries.
    msgpack_sbuffer store_out;
    settle_t *settle;                   //  calls sent (or not) this turn, to settle
    size_t settle_count, settle_max;
    bool settling_failed;               //  the frame being noted was not sent
    zhashx_t *rooms;                    //  room id -> room_t
    msgpack_sbuffer buffer;             //  for encoding
    uint64_t events, requests;          //  counters, for the logs and metrics
    int64_t stalled_until_ms;           //  wall clock when a stall of ours was last seen to end
    uint64_t messages;                  //  chat messages stored and fanned out
    metrics_histogram_t send_seconds;   //  a room-send, from its arrival to its fan-out
    zlistx_t *retries;                  //  sends whose append waits to be sent again
    bool stopping;                      //  at exit: nothing is retried
    op_t *sending;                      //  the send whose append store_call is sending
};

#endif
