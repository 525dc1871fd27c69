/*  =========================================================================
    gateway.h - the gateway's shared types and internal interfaces

    The gateway terminates HTTP and WebSocket (civetweb), validates client
    JSON and turns it into proto requests, and writes the events roomd
    sends back to its own sockets. It holds no room state beyond which of
    its sockets are in which room.

    The gateway holds no TLS: HTTPS and WSS end at the edge in front of it
    (HAProxy, gateway/edge/), which forwards plain HTTP and WebSocket here.

    Threads, and what each may touch (main.c has the whole map):
      - the event loop (loop.c) owns every ZeroMQ socket (links.c) and
        every WebSocket once civetweb has handed it over (client.c); it
        alone touches the socket table, the room index, the requests in
        flight and the shard set;
      - civetweb's threads serve HTTP (http.c), whose backend calls are
        mailed to the loop (calls.c), and WebSocket handshakes (upgrade.c),
        each ending in a handover to the loop (client_adopt);
      - the body deadline's thread (body.c) ends the read of an HTTP
        request body that is past HTTP_BODY_TIMEOUT_MS;
      - the main thread: settings, start, wait for a signal, stop.

    Settings are written once, in main, before any other thread starts,
    and only read afterwards.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_H_INCLUDED
#define NEARCHAT_GATEWAY_H_INCLUDED

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <civetweb.h>
#include <jansson.h>
#include "proto.h"

//  ---------------------------------------------------------------------------
//  Settings (settings.c)

typedef struct {
    int64_t http_port;
    const char *http_bind;
    const char *backend_endpoint;       //  the ROUTER shards connect to
    const char *stored_endpoint;
    const char *gateway_id;             //  "gw-" + a UUID unless set
    int64_t max_participants;
    int64_t room_radius_m;
    int64_t max_message_chars;
    int64_t history_limit;              //  default page of GET .../messages
    int64_t max_connections;            //  WebSockets held at once
    int64_t socket_queue_max;           //  frames queued per socket before it is a slow reader
    int64_t request_timeout_ms;
    int64_t shard_timeout_ms;           //  a shard silent this long is dropped
    int64_t reaper_timeout_s;           //  no report from the reaper this long: it is down
    int64_t http_body_timeout_ms;       //  longest read of a whole request body (body.c)
    const char *websocket_endpoint;     //  advertised in /healthz; "auto": from the Host header
    const char *websocket_path;         //  its path, served besides / and /ws; "" for none
    const char *auth;                   //  "none" or "jwt" (auth.c)
    const char *jwt_secret;             //  HS256 key; "" for none
    const char *jwt_public_key;         //  PEM file of the RS256 or ES256 key; "" for none
    //  Limits (limits.c; 0: none, but for the ping)
    int64_t messages_per_s;             //  messages and typing events a user may send, on average
    int64_t messages_burst;             //  ... and at once
    int64_t rooms_per_minute;           //  rooms a user may create
    int64_t sockets_per_user;
    int64_t sockets_per_address;
    int64_t ws_ping_s;                  //  an idle socket is pinged, then closed if silent as long
    int64_t trust_proxy_headers;        //  1: the client address is X-Forwarded-For's last
} gateway_config_t;

extern gateway_config_t gateway_config;

//  Read the settings (settings.c), start the log, and check what config.c
//  cannot check alone; exits 2 for a bad setting.
void settings_load (int argc, char *argv []);

//  ---------------------------------------------------------------------------
//  Counters for /metrics (metrics.c): atomics, bumped from any thread.

typedef struct {
    atomic_llong connections_open;
    atomic_ullong connects;
    atomic_ullong disconnects;
    atomic_ullong messages_received;    //  client frames read
    atomic_ullong messages_delivered;   //  frames written to sockets
    atomic_ullong socket_writes;        //  send(2)s that carried them
    atomic_ullong slow_reader_drops;    //  sockets closed as slow readers
    atomic_ullong frames_dropped;       //  frames queued for them, never written
    atomic_ullong gaps;                 //  sockets found to have missed messages (read again)
    atomic_ullong http_requests;
    atomic_ullong events;               //  events received from shards
    atomic_llong shards_live;
    atomic_llong loop_busy_permille;    //  the loop's busy share (loop.c, s_measure)
    atomic_llong hold_us;               //  how long frames are held now (s_hold_ns)
    //  Delivery latency, from a frame made (an event or a reply received)
    //  to its write: a histogram over metrics_seconds_bounds, kept in
    //  atomics because /metrics reads it from a civetweb thread.
    atomic_ullong delivery_buckets [PROTO_BUCKETS_MAX];
    atomic_ullong delivery_count;
    atomic_ullong delivery_sum_ns;
} gateway_metrics_t;

//  Count one delivery that took ns nanoseconds (any thread).
void gateway_metrics_delivered (int64_t ns);

extern gateway_metrics_t gateway_metrics;

//  ---------------------------------------------------------------------------
//  The event loop (loop.c): the one thread that owns every WebSocket and
//  every ZeroMQ socket

//  Start its thread, after links_start. Returns 0, or -1 (logged).
int  loop_start (void);
//  Close every WebSocket, answer what is in flight, and end the thread.
void loop_stop (void);
//  True on the loop's thread.
bool loop_on_thread (void);

//  Work another thread hands to the loop: run is called on the loop's
//  thread, once, in the order mailed. The one way into the loop.
typedef struct loop_mail loop_mail_t;
struct loop_mail {
    loop_mail_t *next;
    void (*run) (loop_mail_t *mail);
};
void loop_mail (loop_mail_t *mail);
//  The loop's thread: add, change or remove (op, epoll_ctl's) fd in the
//  loop's epoll set, with ptr for its events (client.c). 0, or -1.
int  loop_watch (int op, int fd, uint32_t events, void *ptr);

//  ---------------------------------------------------------------------------
//  ZeroMQ (links.c; the loop's thread, unless said)

//  Bind the shard ROUTER and connect to stored. Returns 0, or -1 when an
//  endpoint cannot be used (logged).
int  links_start (void);
//  Close them (the loop has stopped).
void links_stop (void);
//  The sockets for the loop's epoll set (their ZMQ_FD), at most max.
int  links_handles (void **handles, int max);
//  Read one frame from a peer of the ROUTER and handle each message in it
//  (hellos, answers, a peer's requests), but for the events: each is given
//  to deliver, which owns it, in the order they came. False: nothing to
//  read.
typedef void (links_deliver_fn) (proto_msg_t *event);
bool links_from_peer (links_deliver_fn *deliver);
//  Send the requests the turn queued for shards, a frame a shard: before
//  the loop waits.
void links_flush (void);
//  Read one message from stored and handle it. False: nothing to read.
bool links_from_stored (void);
//  Fail what was sent to stored when its link dropped (its monitor).
void links_watch (void);
//  Tell stored this run is alive (every GATEWAY_BEAT_MS).
void links_beat (void);
//  Whether stored declared this run dead since the last look (the
//  gateway goes on as a new run): every socket is to be closed then.
bool links_run_lost (void);
//  Any thread: this run's incarnation, copied into out; its length.
size_t links_incarnation (char *out, size_t size);
//  Any thread: the reaper's latest metrics report, decoded (NULL if none
//  came yet), for the caller to destroy; and whether it reported within
//  REAPER_TIMEOUT_S.
proto_msg_t *links_reaper_report (void);
bool links_reaper_up (void);

//  ---------------------------------------------------------------------------
//  Requests in flight (pending.c; the loop's thread)

//  What a request's answer is given to: the reply when it is of the type
//  expected (borrowed: it is destroyed after the call), else NULL with
//  the status and reason for the client (an error from roomd or stored
//  keeps its own).
typedef void pending_then_fn (void *arg, proto_msg_t *reply, int status, const char *reason);

void pending_start (void);
void pending_stop (void);
//  Send request (borrowed; its request_id is overwritten) to stored or
//  to its room's shard, and call then when its answer comes, or at once
//  when it cannot be sent. expected 0: any reply type is success.
void pending_send (proto_msg_t *request, int expected, pending_then_fn *then, void *then_arg);
//  Send request and forget it (failures are logged).
void pending_post (proto_msg_t *request);
//  Whether reply is of type expected (0: any); if not, the status and
//  reason to give the client.
bool pending_judge (const proto_msg_t *reply, int expected, int *status, char *reason,
                    size_t reason_size);
//  Answer 503 to what waited REQUEST_TIMEOUT_MS; how long until the next
//  does (-1: none); answer 503 with reason to everything (at stop).
void pending_expire (void);
int64_t pending_wait_ms (void);
void pending_fail_all (const char *reason);

//  ---------------------------------------------------------------------------
//  The live room shards (shards.c; the loop's thread, unless said)

void shards_reset (void);
//  Drop the shards silent for SHARD_TIMEOUT_MS.
void shards_check (void);
//  Whether a shard came back or went since the last look: this gateway
//  may have missed events then (recovery_audit).
bool shards_take_audit (void);
//  Any thread: the live shard ids, sorted, copied into ids (at most max);
//  and the ids of shards refused because another live shard has their id.
//  Each returns how many.
size_t shards_live (char (*ids) [PROTO_ID_MAX + 1], size_t max);
//  The loop's thread: a count of the live set's changes (a shard came or
//  went), after which a room may be another shard's.
uint64_t shards_generation (void);
size_t shards_conflicts (char (*ids) [PROTO_ID_MAX + 1], size_t max);

//  ---------------------------------------------------------------------------
//  Calls from the HTTP threads (calls.c)

//  Hand request to the loop and wait at most timeout_ms for its answer:
//  the reply when it is of type expected (0: any), for the caller to
//  destroy; else NULL with the HTTP status and reason for the client (an
//  error from roomd or stored keeps its own; 503 when the backend did not
//  answer in time or the gateway is stopping). request->request_id is
//  overwritten. Never on the loop's thread.
proto_msg_t *backend_call (proto_msg_t *request, int expected, int timeout_ms,
                           int *status, char *reason, size_t reason_size);
//  Make calls in flight and any later call give up at once: the first
//  step of a shutdown, so that no HTTP thread waits out a timeout.
void calls_interrupt (void);

//  ---------------------------------------------------------------------------
//  Connections and fan-out (sockets.c; conn.h has the struct, output.c
//  the writing)

typedef struct conn conn_t;

//  A socket's profile defaults, from its upgrade's query and join-room.
typedef struct {
    char user_name [PROTO_PROFILE_MAX + 1];
    char user_icon [PROTO_PROFILE_MAX + 1];
    char user_color [PROTO_PROFILE_MAX + 1];
    bool has_name, has_icon, has_color;
} profile_t;

//  The table of sockets (sockets.c). The loop's thread, unless said.
int  sockets_start (void);          //  0 or -1
void sockets_stop (void);           //  after the loop has stopped: free
//  Close every open socket with a close frame of status and reason (a
//  static string), as a slow reader is closed. Returns how many.
size_t sockets_close_all (int status, const char *reason);
//  Any thread: how many sockets are open.
size_t sockets_open (void);
//  Any thread: take one of MAX_CONNECTIONS places for a handshake
//  (atomically: false when all are taken). conn_new's conn then holds it,
//  and sockets_close gives it back; a handshake that never opens gives
//  it back with sockets_unadmit.
bool sockets_admit (void);
void sockets_unadmit (void);
//  civetweb's thread, in the ready handler: a new conn for socket fd
//  (taken over: fds_take) of user_id, with its profile defaults and the
//  client address it was admitted from. It holds the place sockets_admit
//  took, and one reference for the table, which it is in once the loop
//  has adopted it (client_adopt).
conn_t *conn_new (int fd, const char *user_id, const profile_t *profile, const char *address);
//  The socket closed (client.c, once out of its room: rooms_leave): out
//  of the table, no more writes to its socket once this returns. Drops
//  the table's reference (*conn_p = NULL).
void sockets_close (conn_t **conn_p);
//  Queue one frame (compact JSON of frame, which is taken) for conn.
void sockets_send (conn_t *conn, json_t *frame);
//  Queue the ack of a send-message (render_ack_frame: no jansson tree).
void sockets_send_ack (conn_t *conn, const char *id, const char *room_id, uint64_t seq,
                       const json_t *request_id);

const char *conn_id (const conn_t *conn);
const char *conn_user_id (const conn_t *conn);
//  The socket's profile (the loop's thread's, as the conn is).
profile_t *conn_profile (conn_t *conn);
//  The client address it was admitted from (limits.c).
const char *conn_address (const conn_t *conn);

//  ---------------------------------------------------------------------------
//  Which sockets are in which room (rooms.c; the loop's thread)

void rooms_start (void);
void rooms_stop (void);
//  The room the socket is in, copied to room_id ("" if none, or while
//  its join is not answered).
void rooms_of (conn_t *conn, char *room_id);
//  The socket asks to join room_id: from now on it is in the room, and
//  the room's events are held for it until rooms_join_done (on the
//  answer) or rooms_join_abort (the join failed).
void rooms_join_begin (conn_t *conn, const char *room_id);
void rooms_join_abort (conn_t *conn, const char *room_id);
//  Conn's join of room_id (with since_seq, and the client's request_id or
//  NULL) was answered with reply: queue its user-joined and
//  message-history, then the events held since rooms_join_begin, and let
//  later events through. Called in the join's then, before any later
//  event from the shard is delivered. False when the socket is no longer
//  joining the room (it closed, the room closed, or its user left the
//  room from another socket meanwhile): nothing was queued.
bool rooms_join_done (conn_t *conn, const char *room_id, uint64_t since_seq,
                      const json_t *request_id, const proto_join_reply_t *reply);
//  Take the socket out of its room; copies the room it left ("" if none).
void rooms_leave (conn_t *conn, char *room_id);
//  Take every socket of user_id out of room_id (the user left the room).
void rooms_user_left (const char *room_id, const char *user_id);
//  Deliver one event to the sockets in its room.
void rooms_deliver (const proto_msg_t *event);

//  ---------------------------------------------------------------------------
//  What sockets missed (recovery.c; the loop's thread)

//  This gateway may have missed events (a shard came back, or its link
//  did): ask stored for each room's newest seq, and read for each socket
//  what it missed.
void recovery_audit (void);
//  Each turn after the writes: start the reads of missed messages that
//  waited for their sockets' queues to drain.
void recovery_resume (void);
void recovery_stop (void);

//  ---------------------------------------------------------------------------
//  A WebSocket on the event loop (client.c)

//  Hand conn (added with the descriptor fds_take gave) to the event loop.
void client_adopt (conn_t *conn);
//  A frame civetweb read before the socket was taken (bits: its first
//  header byte; data: its payload, unmasked), for conn's reader to take
//  before the socket's bytes. Before client_adopt, on civetweb's thread.
void client_preface (conn_t *conn, int bits, const char *data, size_t size);
//  The loop's thread: conn's action has ended (its reply came and was
//  handled): its next frames may be handled.
void client_done (conn_t *conn);
//  The loop's thread: conn's send-message went to its shard (the next
//  frames may be handled meanwhile), or its answer came and was handled.
void client_send_begun (conn_t *conn);
void client_send_done (conn_t *conn);

//  ---------------------------------------------------------------------------
//  Limits (limits.c): what one user or one client address may take. Any thread.

#define LIMITS_ADDRESS_MAX  48          //  a client address as text (INET6_ADDRSTRLEN and more)

void limits_start (void);               //  after the settings, before any client
void limits_stop (void);
//  A message or typing event of user_id: true if MESSAGES_PER_S allows it
//  now (a token is taken), false to answer 429.
bool limits_event (const char *user_id);
//  A room user_id creates: true if ROOMS_PER_MINUTE allows it now.
bool limits_room (const char *user_id);
//  An upgrade of user_id from address takes a place of each: 0, or 429
//  with why (SOCKETS_PER_USER, SOCKETS_PER_ADDRESS); limits_socket_give
//  gives back what a 0 took, when the socket closes or never opens.
int  limits_socket_take (const char *user_id, const char *address, char *why, size_t why_size);
void limits_socket_give (const char *user_id, const char *address);
//  The client address of mg's request into address (LIMITS_ADDRESS_MAX
//  bytes): its peer's, or with TRUST_PROXY_HEADERS=1 the last address of
//  its X-Forwarded-For (the edge's), when that is an IPv4 or IPv6 address.
void limits_address (const struct mg_connection *mg, char *address);

//  ---------------------------------------------------------------------------
//  A civetweb connection's descriptor (fds.c)

//  The socket of civetweb's connection mg (its handler runs on this
//  thread), or -1 when none is found; it is known as a connection's, and
//  skipped by later looks, until fds_forget.
int  fds_find (const struct mg_connection *mg);
void fds_forget (int fd);
//  Fd is a client socket of ours (taken over): looks skip it.
void fds_claim (int fd);
//  Take mg's socket over from civetweb (in its ready handler): returns our
//  descriptor for it, or -1 when it cannot (its descriptor not found, or
//  none left to duplicate it; then civetweb's read of it has been ended
//  when it was found): the caller refuses the socket.
int  fds_take (const struct mg_connection *mg);

//  ---------------------------------------------------------------------------
//  The deadline on a request body (body.c)

int  body_start (void);             //  its thread; 0 or -1
void body_stop (void);
//  Read mg's request body into buffer, at most max + 1 bytes (one more
//  than max tells a longer body), within HTTP_BODY_TIMEOUT_MS of the
//  call. Returns the bytes read, or -1 when the deadline passed first:
//  the connection is then closed after the answer (408).
long body_read (struct mg_connection *mg, char *buffer, size_t max);
//  Mg's request body (at most BODY_MAX bytes, read by body_read) as a
//  JSON object (nesting at most INPUT_DEPTH_MAX), for the caller to
//  decref; or NULL with the HTTP status (400, 408, 413) and why.
json_t *body_json (struct mg_connection *mg, int *status, char *why, size_t why_size);
#define BODY_MAX    (64 * 1024)

//  ---------------------------------------------------------------------------
//  Identity (auth.c): AUTH=none trusts the user id a client gives; AUTH=jwt
//  takes it from a signed token's sub, checked with the one algorithm the
//  key allows (HS256 for JWT_SECRET, RS256 or ES256 for JWT_PUBLIC_KEY).

#define AUTH_TOKEN_MAX  8192            //  bytes of a token in a query

//  Check AUTH, JWT_SECRET and JWT_PUBLIC_KEY together and load the key;
//  exits 2 with a message naming the setting when they do not make sense.
void auth_check_settings (void);
//  Log how clients are identified (a warning under AUTH=none); after log_init.
void auth_log_start (void);
bool auth_required (void);              //  AUTH=jwt
const char *auth_mode (void);           //  "none" or "jwt", for /healthz
//  Verify token: 0 with its sub in user_id (PROTO_ID_MAX + 1 bytes), or
//  401 with why (missing, bad signature, wrong algorithm, expired, not yet
//  valid, no sub).
int auth_verify (const char *token, char *user_id, char *why, size_t why_size);
//  With AUTH=jwt, a userId the client gave (claimed; NULL: none) must be
//  subject: 0, or 403 with why. Always 0 with AUTH=none.
int auth_claim (const char *subject, const char *claimed, char *why, size_t why_size);
//  HTTP: with AUTH=jwt, the user of the Authorization: Bearer token into
//  user_id: 0, or 401 with why. With AUTH=none: 0 and user_id "".
int auth_http (struct mg_connection *mg, char *user_id, char *why, size_t why_size);
//  The WebSocket upgrade's query under AUTH=jwt: ?token= verified into
//  user_id, and a userId besides it must be the same: 0, 401 or 403.
int auth_query (const char *query, char *user_id, char *why, size_t why_size);
//  Whether user_id may see room's messages, online list and info: with
//  AUTH=jwt a private room's are for its participants only.
bool auth_may_read (const proto_room_t *room, const char *user_id);

//  ---------------------------------------------------------------------------
//  Metrics (metrics.c): every daemon's, gathered over ZeroMQ

//  The Prometheus text of /metrics: the gateway's own counters, then
//  stored's and every live shard's (asked now) and the reaper's last
//  report. Returns a malloc'd text and its size, or NULL.
char *metrics_render (const char *trace, size_t *size);

//  ---------------------------------------------------------------------------
//  Health (health.c)

//  The answer to GET /healthz on mg (HTTP threads), and its status in
//  *status (200, or 503 when the gateway cannot serve).
json_t *health_render (struct mg_connection *mg, const char *trace, int *status);

//  ---------------------------------------------------------------------------
//  JSON (json.c): the public shapes, and checks of client input

//  roomInfo of a room.
json_t *render_room_info (const proto_room_t *room);
//  A message as in new-message (and history entries): its id and messageId
//  are the client's messageId when it sent one, else the server's id.
json_t *render_message (const proto_message_t *message);
//  The frame an event becomes on a socket (user-joined, user-left,
//  new-message, user-typing, room-closed), or NULL for other types.
json_t *render_event (const proto_msg_t *event);
//  Compact text of value (NULL if it cannot be written); caller frees.
char *render_text (const json_t *value);

//  No client message nests arrays and objects deeper than this (DESIGN.md):
//  {"location": {"latitude": ...}} is 2.
#define INPUT_DEPTH_MAX 3

//  True when the JSON text data (size bytes) nests no deeper than
//  max_depth, counted without parsing (so without recursion): called on
//  every client body and frame before jansson sees it.
bool input_depth_ok (const char *data, size_t size, int max_depth);

//  Checks of one field of a client's JSON object. Each returns 0 and
//  fills *out, 1 when the field is absent (or null) and not required, or
//  -1 with a reason for the client in why.
int input_id (const json_t *object, const char *key, bool required, char *out,
              char *why, size_t why_size);
int input_profile (const json_t *object, const char *key, char *out,
                   char *why, size_t why_size);
//  A number, or a string that holds only a number ("48.85"), in [min, max].
int input_number (const json_t *object, const char *key, bool required,
                  double min, double max, double *out, char *why, size_t why_size);
//  A whole number as above.
int input_integer (const json_t *object, const char *key, bool required,
                   int64_t min, int64_t max, int64_t *out, char *why, size_t why_size);
//  A query-string or text value: the same checks on text.
int input_text_id (const char *text, char *why, size_t why_size, const char *key);
int input_text_profile (const char *text, char *why, size_t why_size, const char *key);
int input_text_number (const char *text, double *out);

//  ---------------------------------------------------------------------------
//  Guard (guard.c): civetweb's callbacks that see every request first

//  civetweb's http_error: its own errors written as JSON with CORS.
int  guard_http_error (struct mg_connection *mg, int status, const char *message);
//  civetweb's begin_request: a request that could smuggle another (both
//  Content-Length and Transfer-Encoding, or two different Content-Lengths)
//  or holds %00 in its URI is answered 400 and its connection closed;
//  returns 400 then, else 0.
int  guard_begin_request (struct mg_connection *mg);
//  True when host (a Host header) is a hostname, IPv4 or [IPv6] address,
//  with an optional :port, and at most 259 bytes: safe to write in a URL.
bool guard_host_ok (const char *host);

//  ---------------------------------------------------------------------------
//  Handlers (http.c, ws.c), registered with civetweb by main.c

int  http_handle (struct mg_connection *mg, void *data);
//  Write an HTTP response of status with body (taken) as JSON.
void http_reply (struct mg_connection *mg, int status, json_t *body);

//  A client's data frame for conn (any opcode but the control ones), in
//  two steps so that the socket's reader can choose when it runs:
//  ws_parse reads it into an action, or answers the error and returns
//  NULL (nothing then holds conn); ws_run does it, ending in client_done,
//  or for a send-message that went to its shard, in client_send_begun at
//  once and client_send_done with its answer. ws_alone says whether it
//  must wait until none of the socket's sends is in flight: every action
//  but send-message. ws_drop frees one never run (its socket went).
typedef struct action action_t;
action_t *ws_parse (conn_t *conn, int opcode, bool fin, const char *data, size_t size);
bool ws_alone (const action_t *action);
void ws_run (action_t *action);
void ws_drop (action_t *action);
//  Conn opened (tell stored), or closed (out of the table; its leave and
//  conn-del go): the ends of every socket's life, civetweb's or the loop's.
void ws_opened (conn_t *conn);
void ws_closed (conn_t *conn);

int  ws_connect (const struct mg_connection *mg, void *data);
void ws_ready (struct mg_connection *mg, void *data);
int  ws_data (struct mg_connection *mg, int bits, char *data, size_t size, void *data_);
void ws_close (const struct mg_connection *mg, void *data);

#endif
