/*  =========================================================================
    proto.h - the nearchat wire contract

    Every message between nearchat daemons is one ZeroMQ frame holding one
    msgpack array, the envelope:

        [version, type, request_id, trace_id, sent_at_ms, body]

        version     uint, PROTO_VERSION; any other version is rejected.
        type        uint, a proto_type_t below.
        request_id  uint64 chosen by the requester and echoed in the reply;
                    0 for events that expect no reply.
        trace_id    str of 0..PROTO_TRACE_MAX bytes, created at the gateway
                    for each client request and carried by every message
                    that request causes, so one id finds its log lines.
        sent_at_ms  int64, the sender's wall clock in ms since the epoch.
        body        map from field name (str) to value; each type's fields,
                    their msgpack types and their limits are written once,
                    in the tables of codec.c, and nowhere else.

    Every link that carries these frames is CURVE-encrypted and admits
    only the keys of KEYS_DIR, each with a role (bus.h); a message one role
    alone may send (bus_may_send) is refused, 403, from any other. No frame
    over BUS_MSG_MAX (PROTO_FRAME_MAX and a margin) is read at all.

    Records that stored keeps in LMDB (rooms, messages, connections) use the
    same msgpack maps as the bodies that carry them, through proto_room_pack
    and friends, so the storage format is written here too.

    Decoding is strict: a field of the wrong msgpack type, out of range, too
    long, not valid UTF-8, repeated, unknown to the type, or a required field
    that is missing rejects the whole message with a reason. Unknown fields
    are rejected rather than skipped because all daemons ship from one image
    and one version number; a field added without a version bump is a bug we
    want to see at once.

    Conventions of the structs below:
      - strings are NUL-terminated UTF-8 without control characters (text
        may hold newlines and tabs); NULL means "absent";
      - an optional number or enum reads 0 when absent and the encoder
        omits a zero, so 0 is never a meaningful optional value;
      - required fields are always encoded, even when zero.
    =========================================================================
*/

#ifndef NEARCHAT_PROTO_H_INCLUDED
#define NEARCHAT_PROTO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION           1

//  Limits, in bytes unless said otherwise. Every decoder enforces them.
#define PROTO_ID_MAX            64      //  room, user, message, connection, gateway and shard ids
#define PROTO_TRACE_MAX         64      //  trace id
#define PROTO_PROFILE_MAX       256     //  userName, userIcon, userColor, roadName
#define PROTO_TEXT_MAX          8192    //  message text (MAX_MESSAGE_CHARS counts characters; this caps bytes)
#define PROTO_REASON_MAX        256     //  error reason
#define PROTO_PARTICIPANTS_MAX  100     //  participants of one room; MAX_PARTICIPANTS may not exceed it
#define PROTO_LIST_MAX          1000    //  entries of any list in a reply, and any request's limit
#define PROTO_RADIUS_MAX_M      50000   //  a room's radius
#define PROTO_FRAME_MAX         (4 * 1024 * 1024)   //  a whole encoded message
#define PROTO_WHY_MAX           160     //  room for a decoder's reason

//  Bytes of encoded entries (messages, rooms) one reply may carry, besides
//  PROTO_LIST_MAX by count; stored stops a reply there. A count alone does
//  not bound a reply: 600 messages of 8 KiB of emoji are 4.9 MB, past
//  PROTO_FRAME_MAX, and a reply its peer refuses fails again every time it
//  is asked. 1 MiB leaves the frame room for the envelope and a join
//  reply's room record (at most about 7 KiB), and keeps the gateway's
//  message-history frame near 1 MiB too (DynamoDB, the original's store,
//  cut a Query at 1 MB). One entry is always given if one exists: a message
//  is at most PROTO_TEXT_MAX of text and some ids, far under it. A reply
//  cut short says so with `more` where it has one.
#define PROTO_REPLY_BYTES_MAX   (1024 * 1024)

//  Message types. Requests and their replies sit side by side; every request
//  may also be answered with PROTO_ERROR. Numbers are part of the wire format:
//  never renumber, only add.
typedef enum {
    PROTO_ERROR             = 1,    //  any request -> error {status, reason}
    PROTO_OK                = 2,    //  a request that returns nothing -> ok {}

    PROTO_STORE_STATS       = 10,   //  stored: counters and map usage
    PROTO_STATS_REPLY       = 11,
    PROTO_METRICS           = 12,   //  any daemon (through a gateway: stored or one shard)
    PROTO_METRICS_REPLY     = 13,   //  <- metrics; the reaper also sends one unasked

    PROTO_ROOM_PUT          = 20,   //  stored: create or replace a room
    PROTO_ROOM_GET          = 21,   //  stored: one room by id
    PROTO_ROOM_UPDATE       = 22,   //  stored: conditional change of one room
    PROTO_ROOM_REPLY        = 23,   //  <- put, get, update
    PROTO_ROOMS_IDLE        = 24,   //  stored: active rooms idle since a cutoff
    PROTO_ROOM_LIST         = 25,   //  <- rooms idle
    PROTO_GEO_SEARCH        = 26,   //  stored: active rooms whose radius covers a point
    PROTO_GEO_REPLY         = 27,

    PROTO_MSG_APPEND        = 30,   //  stored: append one chat message (idempotent)
    PROTO_APPEND_REPLY      = 31,
    PROTO_HISTORY           = 32,   //  stored: a room's messages by seq
    PROTO_HISTORY_REPLY     = 33,
    PROTO_TTL_SWEEP         = 34,   //  stored: delete expired messages now
    PROTO_SWEEP_REPLY       = 35,

    PROTO_CONN_PUT          = 40,   //  stored: create or replace a connection (no room: keeps its) -> ok
    PROTO_CONN_DEL          = 41,   //  stored: delete a connection -> ok, or 404
    PROTO_CONN_LIST         = 42,   //  stored: connections by gateway, user or room
    PROTO_CONN_LIST_REPLY   = 43,
    PROTO_GATEWAY_BEAT      = 44,   //  stored: a gateway's run is alive (or, gone, forget it) -> ok
    PROTO_GATEWAYS_SILENT   = 45,   //  stored: gateway runs dead or not heard from since a time
    PROTO_GATEWAY_LIST      = 46,   //  <- gateways silent

    PROTO_SHARD_HELLO       = 50,   //  roomd -> gateway: register, then heartbeat
    PROTO_SHARD_WELCOME     = 51,   //  <- hello: the gateway's id and live shard set

    PROTO_ROOM_JOIN         = 60,   //  roomd: a user, maybe with a socket, joins
    PROTO_JOIN_REPLY        = 61,
    PROTO_ROOM_LEAVE        = 62,   //  roomd: a user, or one of its sockets, leaves -> room reply
    PROTO_ROOM_SEND         = 63,   //  roomd: a chat message -> append reply, once durable
    PROTO_ROOM_TYPING       = 64,   //  roomd: a participant types -> ok
    PROTO_ROOM_INFO         = 65,   //  roomd: a room and who is online
    PROTO_INFO_REPLY        = 66,
    PROTO_ROOM_CLOSE        = 67,   //  roomd: the creator or the reaper closes -> room reply

    PROTO_EVENT_JOINED      = 80,   //  roomd -> every gateway: events of one room,
    PROTO_EVENT_LEFT        = 81,   //  request_id 0, no reply; each gateway writes
    PROTO_EVENT_MESSAGE     = 82,   //  them to its own sockets in that room
    PROTO_EVENT_TYPING      = 83,
    PROTO_EVENT_CLOSED      = 84,

    PROTO_TYPE_LIMIT        = 200   //  every type is below this
} proto_type_t;

//  Enumerations travel as short strings ("public", "active", ...) so that a
//  captured message reads well; 0 always means "absent / any".
typedef enum {
    PROTO_ROOM_TYPE_ANY     = 0,
    PROTO_ROOM_PUBLIC       = 1,
    PROTO_ROOM_PRIVATE      = 2
} proto_room_type_t;

typedef enum {
    PROTO_STATUS_ANY        = 0,
    PROTO_STATUS_ACTIVE     = 1,
    PROTO_STATUS_CLOSED     = 2
} proto_room_status_t;

//  ---------------------------------------------------------------------------
//  Records

//  A chat room, as stored in ChatRooms and shown (translated) as roomInfo.
typedef struct {
    const char *id;                 //  required
    double latitude;                //  required, [-90, 90]
    double longitude;               //  required, [-180, 180]
    const char *road_name;          //  optional
    uint32_t radius_m;              //  required, 1..PROTO_RADIUS_MAX_M
    const char *creator;            //  required, a user id
    const char **participants;      //  user ids, in joining order, no repeats
    uint32_t participant_count;     //  0..PROTO_PARTICIPANTS_MAX
    int64_t created_at_ms;          //  required
    int64_t last_activity_ms;       //  required
    proto_room_status_t status;     //  required, ACTIVE or CLOSED
    proto_room_type_t room_type;    //  required, PUBLIC or PRIVATE
    uint32_t max_participants;      //  required, 1..PROTO_PARTICIPANTS_MAX
    uint64_t last_seq;              //  optional: seq of the room's newest message
    uint64_t epoch;                 //  optional: its ownership epoch (room-update's claim)
} proto_room_t;

//  A chat message, as stored in Messages and shown (translated) as new-message.
typedef struct {
    const char *room_id;            //  required
    const char *id;                 //  server message id (a UUID); required once stored
    const char *client_id;          //  optional: the client's messageId, the idempotency key
    uint64_t seq;                   //  per-room order from 1, with holes; the shard's in an
                                    //  append (with id), or 0: stored assigns
    const char *user_id;            //  required
    const char *user_name;          //  optional
    const char *user_icon;          //  optional
    const char *user_color;         //  optional
    const char *text;               //  required, 1..PROTO_TEXT_MAX bytes
    int64_t created_at_ms;          //  required
    int64_t expires_at_ms;          //  optional in an append: stored sets it from MESSAGE_TTL_S
} proto_message_t;

//  One WebSocket connection on one gateway, as stored in Connections.
typedef struct {
    const char *conn_id;            //  required, unique across gateways
    const char *gateway_id;         //  required
    const char *incarnation;        //  optional: the gateway's run that holds it (see gateway-beat)
    const char *user_id;            //  required
    const char *room_id;            //  optional: the room the socket is in (its shard
                                    //  writes it: room-update; a gateway's conn-put has none)
    const char *user_name;          //  optional
    const char *user_icon;          //  optional
    const char *user_color;         //  optional
    int64_t connected_at_ms;        //  required
} proto_connection_t;

//  ---------------------------------------------------------------------------
//  Bodies, one struct per message type

typedef struct {
    uint16_t status;                //  required, an HTTP status: 400, 403, 404, 409, 413, 421
                                    //  (a stale owner: see Ownership), 500, 503
    const char *reason;             //  required, for a human
} proto_error_t;

typedef struct {
    uint64_t map_size;              //  LMDB map size, bytes
    uint64_t map_used;              //  bytes of the map in use
    uint64_t rooms;                 //  entries in ChatRooms
    uint64_t active_rooms;          //  rooms indexed as active
    uint64_t messages;              //  entries in Messages
    uint64_t connections;           //  entries in Connections
    uint64_t commits;               //  write transactions committed since start
    uint64_t writes;                //  write requests committed since start
    uint64_t swept;                 //  messages deleted by TTL since start
    uint64_t map_grows;             //  times the map was grown since start
} proto_stats_reply_t;

//  Ask a daemon for its metrics. Sent to a gateway's backend, shard_id
//  names the shard to ask; without it, stored answers.
typedef struct {
    const char *shard_id;
} proto_metrics_t;

typedef enum {
    PROTO_METRIC_COUNTER    = 1,
    PROTO_METRIC_GAUGE      = 2,
    PROTO_METRIC_HISTOGRAM  = 3
} proto_metric_kind_t;

#define PROTO_BUCKETS_MAX       32      //  buckets of one histogram
#define PROTO_METRICS_MAX       100     //  metrics of one daemon

//  One bucket of a histogram: how many observations were <= le (cumulative,
//  as Prometheus has them; the +Inf bucket is the metric's count).
typedef struct {
    double le;
    uint64_t count;
} proto_bucket_t;

//  One metric family of one daemon, in Prometheus's terms.
typedef struct {
    const char *name;               //  required, [a-zA-Z_:][a-zA-Z0-9_:]*
    const char *help;               //  required
    uint16_t kind;                  //  required, a proto_metric_kind_t
    double value;                   //  counter or gauge; a histogram's sum
    uint64_t count;                 //  a histogram's observations
    proto_bucket_t *buckets;        //  a histogram's, le ascending, counts not falling
    uint32_t bucket_count;          //  0..PROTO_BUCKETS_MAX
} proto_metric_t;

typedef struct {
    const char *daemon;             //  required: "stored", "roomd", "reaper"
    const char *instance;           //  required: its id ("stored", the shard id, ...)
    proto_metric_t *metrics;
    uint32_t count;                 //  0..PROTO_METRICS_MAX
} proto_metrics_reply_t;

typedef struct {
    proto_room_t room;
    bool if_absent;                 //  fail with 409 if the id exists
} proto_room_put_t;

typedef struct {
    const char *room_id;            //  required
} proto_room_get_t;

//  A conditional change of one room, applied atomically: every condition is
//  checked first (409 with a reason if one fails, 404 if no such room), then
//  every change. The reply carries the room as it is afterwards.
//
//  Connection records that say a socket is in a room are the room's
//  shard's to write, here, in the transaction of the change they go with
//  (a join's, a leave's), under the same conditions: a refused update
//  writes none. So a shard that loads the room (claim, then conn-list by
//  room) sees every socket whose join was committed, and no other. A
//  record is in a room only while its user is a participant of it:
//  remove_participant also takes every record of that user out of the
//  room. `changed` in the reply is about the room record alone.
typedef struct {
    const char *room_id;                //  required
    proto_room_status_t if_status;      //  condition: status is this
    const char *if_creator;             //  condition: creator is this user (else 403)
    int64_t if_idle_before_ms;          //  condition: last_activity_ms < this
    const char *add_participant;        //  change: join; full room -> 400 "Room is full"; present -> no change
    const char *remove_participant;     //  change: leave; absent -> no change
    proto_room_status_t set_status;     //  change: status
    int64_t touch_ms;                   //  change: last_activity_ms = max(last_activity_ms, this)
    uint64_t if_epoch;                  //  condition: epoch is this (else 421)
    bool claim;                         //  change: epoch + 1 (a shard takes the room over)
    const proto_connection_t *connection;   //  change: write this socket's record (a join);
                                        //  its room must be room_id; an existing record's
                                        //  connected_at_ms is kept
    const char *leave_conn_id;          //  change: this socket left the room: with closed its
                                        //  record goes; else its room is cleared if it is
                                        //  still room_id (a socket that moved on to another
                                        //  room keeps that one, whichever write comes last)
    bool closed;                        //  with leave_conn_id: the socket closed
} proto_room_update_t;

typedef struct {
    proto_room_t room;
    bool changed;                   //  false when the update changed nothing
} proto_room_reply_t;

//  The oldest-idle first. A page also stops before PROTO_REPLY_BYTES_MAX
//  of encoded rooms, so it may be shorter than limit with more idle.
typedef struct {
    int64_t before_ms;              //  required: last_activity_ms < this
    uint32_t limit;                 //  0: 100
} proto_rooms_idle_t;

typedef struct {
    proto_room_t *rooms;
    uint32_t count;
} proto_room_list_t;

//  The nearest `limit` rooms, and no more than PROTO_REPLY_BYTES_MAX of
//  encoded rooms (about 150 of the largest; the farthest are left out).
typedef struct {
    double latitude;                //  required
    double longitude;               //  required
    proto_room_type_t room_type;    //  ANY: both types
    uint32_t limit;                 //  0: 50
} proto_geo_search_t;

typedef struct {
    proto_room_t room;
    double distance_m;              //  required, from the search point to the room's centre
} proto_geo_hit_t;

typedef struct {
    proto_geo_hit_t *hits;          //  nearest first
    uint32_t count;
} proto_geo_reply_t;

//  Append a message. Idempotent on (room_id, client_id): a second append
//  with the same pair stores nothing and answers with the first one's seq
//  and id, duplicate = true. The room must exist (404), be active (409) and,
//  with if_epoch, be of that epoch (421).
//  A shard numbers its room's messages itself (roomd/handle_send.c): its
//  append carries seq, id and createdAt, and stored keeps the message at
//  that seq or refuses it. A seq not above the room's last stored seq is
//  refused with 421 (another owner numbered past it; nothing is written),
//  but for the same message (same seq and id) stored already: a retry
//  whose answer was lost, answered as the first (duplicate = true, the
//  same seq), whatever became of the room since; and for a free seq with
//  if_epoch the room's: its owner's retry that later appends overtook,
//  stored in its hole (the owner numbers a seq once). A duplicate answer for
//  another seq than the append's leaves a hole at the append's: the seq
//  is never used again. seq 0 (no id needed): stored numbers it, last + 1.
typedef struct {
    proto_message_t message;
    uint64_t if_epoch;              //  condition: the room's epoch is this (else 421)
} proto_msg_append_t;

typedef struct {
    uint64_t seq;                   //  required
    const char *id;                 //  required
    int64_t created_at_ms;          //  required
    bool duplicate;
} proto_append_reply_t;

//  History of one room, oldest first. With from_seq: the first `limit`
//  messages with seq >= from_seq (seqs start at 1, so from_seq 1 is the
//  beginning and a client's "since N" is from_seq N + 1). Otherwise the
//  newest `limit` messages with seq < before_seq (or of all, when 0).
//  Either way the page also stops before PROTO_REPLY_BYTES_MAX of encoded
//  messages (it holds one at least, if there is one), so it may hold
//  fewer than limit with more set: the caller pages on from the last seq
//  it got (forward) or the first (backward).
typedef struct {
    const char *room_id;            //  required
    uint64_t from_seq;
    uint64_t before_seq;
    uint32_t limit;                 //  0: 50
} proto_history_t;

typedef struct {
    proto_message_t *messages;      //  oldest first
    uint32_t count;
    bool more;                      //  more messages lie beyond the page in the asked direction
} proto_history_reply_t;

typedef struct {
    int64_t now_ms;                 //  0: stored's clock
    uint32_t max;                   //  0: stored's batch size
} proto_ttl_sweep_t;

typedef struct {
    uint32_t deleted;
    bool more;                      //  expired messages remain
} proto_sweep_reply_t;

//  A gateway's record of a socket it opened, in no room yet. A put without
//  a room that finds a record in a room changes only its connected_at_ms:
//  rooms are roomd's to write (room-update), and a gateway's put at open
//  and the shard's write at join travel different links, so they may cross.
typedef struct {
    proto_connection_t connection;
} proto_conn_put_t;

typedef struct {
    const char *conn_id;            //  required
} proto_conn_del_t;

//  Exactly one of gateway_id, user_id, room_id must be set; incarnation
//  only with gateway_id (then only that run's connections are listed).
typedef struct {
    const char *gateway_id;
    const char *incarnation;
    const char *user_id;
    const char *room_id;
    uint32_t limit;                 //  0: PROTO_LIST_MAX
} proto_conn_list_t;

typedef struct {
    proto_connection_t *connections;
    uint32_t count;
} proto_conn_list_reply_t;

//  Gateways say they are alive every second or so, each run of a gateway
//  (a process, from its start to its end) under an incarnation of its own,
//  a new id made at start, so that records of two runs of one GATEWAY_ID
//  are never taken for each other. stored keeps (gateway id, incarnation)
//  -> when last heard, and answers every beat:
//    - first (a run beats with it until its first ok): a new run. Every
//      other run of that gateway id is dead from now on (a restart: the
//      old run's sockets are gone with its process);
//    - a beat of a run that is dead, or unknown without first (the reaper
//      declared it dead and has cleared or is clearing its connections),
//      is refused with 410: the run must close every socket it holds (the
//      shards no longer count them) and go on as a new run.
//  The reaper asks which runs are dead or silent (gateways-silent, which
//  declares the silent ones dead, in the same transaction), clears each
//  one's connections and then forgets the run (gone = true).
typedef struct {
    const char *gateway_id;         //  required
    const char *incarnation;        //  required: the run
    int64_t at_ms;                  //  required: when it was heard
    bool first;                     //  a new run: older runs of gateway_id are dead
    bool gone;                      //  forget the run (the reaper, once it is cleared)
} proto_gateway_beat_t;

//  The runs not heard from since before_ms, or dead; each is dead from
//  the moment it is listed (its beats are refused with 410 from then on).
typedef struct {
    int64_t before_ms;              //  required: last heard before this
    uint32_t limit;                 //  0: 100
} proto_gateways_silent_t;

typedef struct {
    const char *gateway_id;         //  required
    const char *incarnation;        //  required
} proto_gateway_run_t;

typedef struct {
    proto_gateway_run_t *gateways;
    uint32_t count;                 //  0..PROTO_LIST_MAX
} proto_gateway_list_t;

//  ---------------------------------------------------------------------------
//  Ownership of a room. A shard that loads a room claims it (room-update
//  with claim, which raises the room's epoch in stored) and makes every
//  write of the room's (room-update, msg-append) conditional on the epoch it
//  got: once another shard has claimed the room, a stale owner's write is
//  refused with 421 and the stale owner drops its copy and loads the room
//  again (or lets it go). A shard that a gateway dropped (silent: paused,
//  its link down) and hears again is welcomed with fresh = true: its rooms
//  may have been served elsewhere meanwhile, so it drops every copy it holds
//  and reloads on the next request, which also serves its reads right.

//  ---------------------------------------------------------------------------
//  Shards and gateways. A roomd connects a DEALER to each gateway's backend
//  ROUTER and sends shard-hello at once and then every heartbeat; the
//  gateway answers each with shard-welcome. A shard silent for three
//  heartbeats is dropped from the gateway's live set, and rooms are routed
//  over that set (route.h), so every gateway agrees once they have heard
//  the same shards.

typedef struct {
    const char *shard_id;           //  required, unique among live shards
    uint32_t heartbeat_ms;          //  required, how often hellos come, 1..60000
    uint32_t rooms;                 //  rooms the shard holds in memory
} proto_shard_hello_t;

typedef struct {
    const char *gateway_id;         //  required
    const char **shards;            //  the gateway's live shard set, sorted
    uint32_t shard_count;           //  0..PROTO_LIST_MAX
    bool fresh;                     //  this hello made the shard live again: see below
} proto_shard_welcome_t;

//  ---------------------------------------------------------------------------
//  Requests a gateway (or the reaper, through a gateway) makes of the shard
//  that owns a room. Each may be answered with an error: 400 (bad or full),
//  403 (not allowed), 404 (no such room, or closed), 503 (stored is down).

//  Join a room. With conn_id, a socket joins too: it receives the room's
//  events from then on and its join reply carries the history it missed,
//  and the shard writes the socket's connection record (in the room, with
//  this gateway, run and profile) in the join's room-update. Without, a
//  user becomes a participant only (POST /rooms/join).
typedef struct {
    const char *room_id;            //  required
    const char *user_id;            //  required
    const char *conn_id;            //  optional: the socket that joins
    const char *gateway_id;         //  required with conn_id: where the socket is
    const char *user_name;          //  optional profile, shown to the others
    const char *user_icon;
    const char *user_color;
    uint64_t since_seq;             //  history after this seq; 0: the most recent
    const char *incarnation;        //  optional, with conn_id: the gateway's run (its
                                    //  backend fills it in: proto_incarnation_of)
} proto_room_join_t;

//  A socket's join reply carries the history it is owed: the newest
//  HISTORY_ON_JOIN messages (none when that is 0), or those after since_seq
//  as far as one history page goes (PROTO_REPLY_BYTES_MAX). more is set
//  when messages after the last one given (after since_seq, when none is
//  given) were not given: the page was cut, or stored could not be read.
//  The newest-messages history of a plain join is never `more`: what it
//  leaves out is older, for the client to page back through over HTTP.
typedef struct {
    proto_room_t room;              //  as it is after the join
    proto_message_t *messages;      //  history for the socket, oldest first
    uint32_t count;
    bool more;                      //  the history stopped before the newest message
} proto_join_reply_t;

//  Leave a room. Without conn_id the user stops being a participant. With
//  conn_id one socket left the room (it closed, or joined another room):
//  the user stops being a participant only if that was their last socket
//  in the room. Either way the others hear user-left when the user goes.
//  The shard changes the socket's record in stored as it goes (room-update
//  leave_conn_id), after any join of it that came first.
typedef struct {
    const char *room_id;            //  required
    const char *user_id;            //  required
    const char *conn_id;            //  optional
    const char *user_name;          //  optional, for user-left
    bool closed;                    //  with conn_id: the socket closed (not: it moved on)
} proto_room_leave_t;

//  A participant types: the others hear it, at most once a throttle period.
//  Also the body of event-typing.
typedef struct {
    const char *room_id;            //  required
    const char *user_id;            //  required
    const char *user_name;          //  optional
} proto_typing_t;

//  A room by id: the body of room-info and event-closed.
typedef proto_room_get_t proto_room_ref_t;

typedef struct {
    proto_room_t room;
    const char **online;            //  user ids with a socket in the room now
    uint32_t online_count;          //  0..PROTO_LIST_MAX
} proto_info_reply_t;

//  Close a room: by its creator (user_id set: anyone else gets 403), or by
//  the reaper (idle_before_ms set: a room active since then is not closed,
//  409). Members hear room-closed.
typedef struct {
    const char *room_id;            //  required
    const char *user_id;            //  optional: must be the creator
    int64_t idle_before_ms;         //  optional: only if idle since before this
} proto_room_close_t;

//  A chat message: the body of room-send (gateway -> roomd; seq and id are
//  the shard's to give) and of event-message (roomd -> gateways, numbered:
//  fanned out as soon as it is ordered, before it is durable; the sender's
//  append reply comes once it is, see README "How one message travels").
typedef struct {
    proto_message_t message;
} proto_carried_message_t;

//  ---------------------------------------------------------------------------
//  Events (roomd -> gateways). A gateway writes each to its sockets in the
//  room: joined and message to all of them (joined but the except_conn),
//  typing to those of other users, left and closed to all.

typedef struct {
    proto_room_t room;              //  as it is after the join
    const char *user_id;            //  required: who joined
    const char *user_name;
    const char *user_icon;
    const char *user_color;
    const char *except_conn;        //  the joining socket: it hears of it in its join reply
} proto_event_joined_t;

typedef struct {
    proto_room_t room;              //  as it is after the leave
    const char *user_id;            //  required: who left
    const char *user_name;
} proto_event_left_t;

//  ---------------------------------------------------------------------------
//  A message: the envelope and one body. Types with an empty body
//  (PROTO_OK, PROTO_STORE_STATS) use none of the union.

typedef struct {
    uint16_t type;                          //  a proto_type_t
    uint64_t request_id;
    char trace_id [PROTO_TRACE_MAX + 1];    //  "" when none
    int64_t sent_at_ms;                     //  0 when encoding: proto_encode fills in now
    union {
        proto_error_t error;
        proto_stats_reply_t stats_reply;
        proto_metrics_t metrics;
        proto_metrics_reply_t metrics_reply;
        proto_room_put_t room_put;
        proto_room_get_t room_get;
        proto_room_update_t room_update;
        proto_room_reply_t room_reply;
        proto_rooms_idle_t rooms_idle;
        proto_room_list_t room_list;
        proto_geo_search_t geo_search;
        proto_geo_reply_t geo_reply;
        proto_msg_append_t msg_append;
        proto_append_reply_t append_reply;
        proto_history_t history;
        proto_history_reply_t history_reply;
        proto_ttl_sweep_t ttl_sweep;
        proto_sweep_reply_t sweep_reply;
        proto_conn_put_t conn_put;
        proto_conn_del_t conn_del;
        proto_conn_list_t conn_list;
        proto_conn_list_reply_t conn_list_reply;
        proto_gateway_beat_t gateway_beat;
        proto_gateways_silent_t gateways_silent;
        proto_gateway_list_t gateway_list;
        proto_shard_hello_t shard_hello;
        proto_shard_welcome_t shard_welcome;
        proto_room_join_t room_join;
        proto_join_reply_t join_reply;
        proto_room_leave_t room_leave;
        proto_carried_message_t room_send;
        proto_typing_t room_typing;
        proto_room_ref_t room_info;
        proto_info_reply_t info_reply;
        proto_room_close_t room_close;
        proto_event_joined_t event_joined;
        proto_event_left_t event_left;
        proto_carried_message_t event_message;
        proto_typing_t event_typing;
        proto_room_ref_t event_closed;
    };
    //  Private: the zone that holds this struct and everything it points to
    //  when it came from proto_decode.
    msgpack_zone *_zone;
} proto_msg_t;

//  ---------------------------------------------------------------------------
//  Encoding and decoding

//  Encode msg into buf (appended; the caller owns and clears buf). Fills in
//  sent_at_ms when it is 0. Returns 0, or -1 when msg breaks the contract
//  (unknown type, a required field absent, a value out of range, more than
//  PROTO_FRAME_MAX in all; buf is then as it was): an encoder never writes
//  what the decoder would refuse.
int
    proto_encode (const proto_msg_t *msg, msgpack_sbuffer *buf);

//  Decode one message from data. On success returns a message the caller
//  owns and frees with proto_msg_destroy; it does not point into data. On
//  failure returns NULL and writes the reason into why (at most why_size
//  bytes, NUL-terminated), e.g. "body.latitude: 91 is outside [-90, 90]".
//  Never reads outside data, whatever it holds.
proto_msg_t *
    proto_decode (const void *data, size_t size, char *why, size_t why_size);

//  A ZeroMQ frame of the bus holds one message or several back to back
//  (a sender gathers what it has for one peer in one turn: proto_batch).
//  The size of the first message of data (its msgpack object, an
//  envelope's array), or size when none can be read: the rest, whose
//  decoding then says why.
size_t
    proto_next (const void *data, size_t size);

//  Call fn with each message of a frame (proto_next), in order, and arg;
//  an empty frame is one empty message.
typedef void (proto_each_fn) (const void *data, size_t size, void *arg);
void
    proto_each (const void *frame, size_t size, proto_each_fn *fn, void *arg);

//  Read only the envelope's type and request id from a message whose body
//  may be bad, so that an error reply can name the request it refuses.
//  Returns 0, or -1 if even those cannot be read.
int
    proto_peek (const void *data, size_t size, uint16_t *type, uint64_t *request_id);

//  A message as JSON, for people (nearchat-spy): {"type", "requestId",
//  "trace", "sentAt", "body"} with the body's msgpack as it is, and
//  "error" with the decoder's reason if proto_decode would refuse it.
//  Returns NULL if the bytes are not one msgpack object. The caller decrefs.
struct json_t;
struct json_t *
    proto_json (const void *data, size_t size);

//  Free a decoded message and set *msg_p to NULL. NULL is fine.
void
    proto_msg_destroy (proto_msg_t **msg_p);

//  Records as stored in LMDB: the same maps as in message bodies. pack
//  returns 0 or -1 as proto_encode. unpack fills *out with strings and
//  arrays allocated from zone (which must outlive *out) and returns 0, or
//  -1 with a reason in why.
int proto_room_pack (msgpack_sbuffer *buf, const proto_room_t *room);
int proto_room_unpack (const void *data, size_t size, msgpack_zone *zone,
                       proto_room_t *out, char *why, size_t why_size);
int proto_message_pack (msgpack_sbuffer *buf, const proto_message_t *message);
int proto_message_unpack (const void *data, size_t size, msgpack_zone *zone,
                          proto_message_t *out, char *why, size_t why_size);
int proto_connection_pack (msgpack_sbuffer *buf, const proto_connection_t *connection);
int proto_connection_unpack (const void *data, size_t size, msgpack_zone *zone,
                             proto_connection_t *out, char *why, size_t why_size);

//  The name of a type ("room-put", "error", ...), or NULL if unknown.
const char *
    proto_type_name (int type);

//  The reply type that answers a request type, or 0 if type is no request.
int
    proto_reply_type (int type);

//  The room a message is about: a room request's (join, leave, send,
//  typing, info, close: what a gateway routes to the room's shard and a
//  shard serves) or a room event's (what a gateway fans out to the room's
//  sockets). NULL for every other message: stored's calls name rooms too,
//  but they go to stored whatever the room. Points into msg.
const char *
    proto_room_of (const proto_msg_t *msg);

//  Where msg names the run of gateway_id that holds a socket: a conn-put's
//  record of that gateway's, a socket's room-join through it. The gateway's
//  backend fills it in (it alone knows its current run). NULL for others.
const char **
    proto_incarnation_of (proto_msg_t *msg, const char *gateway_id);

//  Names of the enumerations as they travel ("public", "active", ...);
//  NULL for 0 or unknown values.
const char *proto_room_type_name (proto_room_type_t room_type);
const char *proto_room_status_name (proto_room_status_t status);

//  Self-test of this module.
void
    proto_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
