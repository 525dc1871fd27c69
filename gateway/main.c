/*  =========================================================================
    gateway - nearchat's public HTTP and WebSocket API

    Wires the parts together: settings, the socket table (sockets.c), the
    deadline on request bodies (body.c), the ZeroMQ backend thread and its
    event loop, which serves every WebSocket (backend.c, loop.c), then
    civetweb with the HTTP routes (http.c) and the WebSocket handshakes
    (ws.c). The gateway holds no TLS: TLS_CERT and TLS_KEY configure the
    edge in front of it (gateway/edge/). It runs until SIGINT or SIGTERM
    and then stops in the reverse order: calls in flight give up, civetweb
    stops, the event loop closes every socket (each close is posted to
    stored and the shards) and the backend sends what is left.

    Exit status: 0 after a clean stop, 1 when a port or endpoint cannot be
    used, 2 for a bad setting (config.c).
    =========================================================================
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <czmq.h>
#include "gateway.h"
#include "config.h"
#include "ids.h"
#include "log.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"
#include "utf8.h"

//  civetweb's threads: HTTP requests and WebSocket handshakes, one at a
//  time each (every WebSocket is the event loop's once it is open).
#define HTTP_THREADS    32
#define SHARDS_WAIT_MS  1000        //  longest wait at start for the shards to be heard
#define SHARDS_STILL_MS 100         //  ... which ends once the set stood still this long

gateway_config_t gateway_config;
gateway_metrics_t gateway_metrics;
static log_level_t s_log_level;

static config_option_t s_options [] = {
    { "HTTP_PORT", CONFIG_INT, "8080", 1, 65535,
      "TCP port of the HTTP and WebSocket API", &gateway_config.http_port },
    { "HTTP_BIND", CONFIG_STRING, "127.0.0.1", 0, 255,
      "address the API listens on (0.0.0.0: every interface; the edge is what to expose)",
      &gateway_config.http_bind },
    { "GATEWAY_BACKEND_ENDPOINT", CONFIG_STRING, "tcp://127.0.0.1:5556", 0, 256,
      "ZeroMQ endpoint the room shards (and the reaper) connect to", &gateway_config.backend_endpoint },
    { "STORED_ENDPOINT", CONFIG_STRING, "tcp://127.0.0.1:5555", 0, 256,
      "ZeroMQ endpoint of stored", &gateway_config.stored_endpoint },
    { "GATEWAY_ID", CONFIG_STRING, "auto", 0, PROTO_ID_MAX,
      "this gateway's id, unique among gateways; auto: gw- and a new UUID", &gateway_config.gateway_id },
    { "MAX_PARTICIPANTS", CONFIG_INT, "20", 1, PROTO_PARTICIPANTS_MAX,
      "default and cap of a room's maxParticipants", &gateway_config.max_participants },
    { "ROOM_RADIUS_M", CONFIG_INT, "500", 1, PROTO_RADIUS_MAX_M,
      "radius of a new room, in metres", &gateway_config.room_radius_m },
    { "MAX_MESSAGE_CHARS", CONFIG_INT, "2000", 1, PROTO_TEXT_MAX,
      "most characters in a chat message", &gateway_config.max_message_chars },
    { "HISTORY_LIMIT", CONFIG_INT, "50", 1, PROTO_LIST_MAX,
      "messages in a page of GET /rooms/{id}/messages without limit", &gateway_config.history_limit },
    { "MAX_CONNECTIONS", CONFIG_INT, "1000", 1, 100000,
      "WebSockets held at once (a descriptor each, served by the event loop)",
      &gateway_config.max_connections },
    { "SOCKET_QUEUE_MAX", CONFIG_INT, "1024", 1, 1000000,
      "frames queued for one socket before it is closed as a slow reader",
      &gateway_config.socket_queue_max },
    { "REQUEST_TIMEOUT_MS", CONFIG_INT, "5000", 100, 600000,
      "how long a call to stored or a shard may take before the client gets 503",
      &gateway_config.request_timeout_ms },
    { "SHARD_TIMEOUT_MS", CONFIG_INT, "3500", 100, 600000,
      "a room shard silent this long is dropped", &gateway_config.shard_timeout_ms },
    { "REAPER_TIMEOUT_S", CONFIG_INT, "15", 2, 86400,
      "the reaper reports every second; not heard from this long, /healthz says it is down",
      &gateway_config.reaper_timeout_s },
    { "HTTP_BODY_TIMEOUT_MS", CONFIG_INT, "10000", 100, 600000,
      "longest time to read a whole HTTP request body; past it the client gets 408 and "
      "its connection is closed", &gateway_config.http_body_timeout_ms },
    { "WEBSOCKET_ENDPOINT", CONFIG_STRING, "auto", 0, 1024,
      "the public WebSocket URL (ws:// or wss://) advertised in /healthz, whose path is "
      "served too (wss://host/prod: /prod); auto: from the request's Host and scheme",
      &gateway_config.websocket_endpoint },
    { "AUTH", CONFIG_STRING, "none", 0, 16,
      "none: the user id is what a client says (the original's way; a warning at start); "
      "jwt: the sub of a token signed with JWT_SECRET or JWT_PUBLIC_KEY, sent as ?token= "
      "on the WebSocket upgrade and Authorization: Bearer on HTTP",
      &gateway_config.auth },
    { "JWT_SECRET", CONFIG_STRING, "", 0, 4096,
      "AUTH=jwt with HS256: the shared secret, at least 32 bytes (openssl rand -hex 32)",
      &gateway_config.jwt_secret },
    { "JWT_PUBLIC_KEY", CONFIG_STRING, "", 0, 4096,
      "AUTH=jwt with RS256 (an RSA key) or ES256 (an EC P-256 key): the PEM public key file",
      &gateway_config.jwt_public_key },
    //  Limits (limits.c): defaults a chat user never meets; 0 is none.
    { "MESSAGES_PER_S", CONFIG_INT, "20", 0, 1000000,
      "messages and typing events a user may send a second, on average over all their "
      "sockets (a token bucket; past it an error frame, status 429); 0: no limit",
      &gateway_config.messages_per_s },
    { "MESSAGES_BURST", CONFIG_INT, "100", 1, 1000000,
      "... and at once (the bucket's size)", &gateway_config.messages_burst },
    { "ROOMS_PER_MINUTE", CONFIG_INT, "20", 0, 1000000,
      "rooms a user may create a minute (HTTP 429 past it); 0: no limit",
      &gateway_config.rooms_per_minute },
    { "SOCKETS_PER_USER", CONFIG_INT, "32", 0, 100000,
      "WebSockets one user may hold (the upgrade is answered 429 past it); 0: no limit",
      &gateway_config.sockets_per_user },
    { "SOCKETS_PER_ADDRESS", CONFIG_INT, "256", 0, 100000,
      "WebSockets one client address may hold (429 past it); 0: no limit",
      &gateway_config.sockets_per_address },
    { "WS_PING_S", CONFIG_INT, "30", 1, 86400,
      "a WebSocket silent this long is pinged, and closed (1001) if silent as long again",
      &gateway_config.ws_ping_s },
    { "TRUST_PROXY_HEADERS", CONFIG_INT, "0", 0, 1,
      "1: a client's address is the last of X-Forwarded-For (set it behind the edge, which "
      "writes it; never when clients reach the gateway directly)",
      &gateway_config.trust_proxy_headers },
    MONITOR_OPTION,
    TAP_OPTION,
    BUS_OPTION,
    { "LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0,
      "debug, info, warn or error", &s_log_level },
    { .name = NULL }
};

//  civetweb's own complaints become our log lines.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    log_warn ("civetweb: %s", message);
    return 1;
}

//  A setting that config.c cannot check alone: exit 2, as it would.
static void
s_bad_setting (const char *name, const char *value, const char *why)
{
    fprintf (stderr, "gateway: bad value for %s: '%s' (%s)\n", name, value, why);
    exit (2);
}

//  WEBSOCKET_ENDPOINT is "auto" or the ws:// or wss:// URL clients are
//  given. Its path (the original's API Gateway stage: wss://host/prod) is
//  served besides / and /ws, because deployed clients still connect to
//  it; a path of "/" or none adds nothing. Sets websocket_path, or exits 2.
static void
s_websocket_path (void)
{
    static char path [1024 + 1];
    const char *endpoint = gateway_config.websocket_endpoint;
    gateway_config.websocket_path = "";
    if (strcmp (endpoint, "auto") == 0)
        return;
    const char *rest = strncmp (endpoint, "ws://", 5) == 0? endpoint + 5
                     : strncmp (endpoint, "wss://", 6) == 0? endpoint + 6: NULL;
    if (!rest)
        s_bad_setting ("WEBSOCKET_ENDPOINT", endpoint,
                       "must be auto, or a ws:// or wss:// URL such as wss://chat.example.com/prod");
    for (const char *c = endpoint; *c; c++)
        if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
            s_bad_setting ("WEBSOCKET_ENDPOINT", endpoint,
                           "must be a URL without spaces, control or non-ASCII characters");
    size_t host = strcspn (rest, "/?#");
    if (host == 0)
        s_bad_setting ("WEBSOCKET_ENDPOINT", endpoint, "must name a host after the scheme");
    if (rest [host] != '/')
        return;                         //  no path: / and /ws serve it
    //  civetweb compares the decoded path (local_uri): decode ours too.
    const char *start = rest + host;
    int length = mg_url_decode (start, (int) strcspn (start, "?#"), path, sizeof path, 0);
    if (length < 0 || (int) strlen (path) != length)
        s_bad_setting ("WEBSOCKET_ENDPOINT", endpoint, "must have a path without %00");
    while (length > 1 && path [length - 1] == '/')
        path [--length] = 0;            //  /prod/ is /prod
    if (strcmp (path, "/") != 0)
        gateway_config.websocket_path = path;
}

//  Stop what started, in the reverse order: the loop (which closes every
//  WebSocket, posting each one's leave and conn-del, and answers what is
//  in flight), then the ZeroMQ sockets, which send what is left.
static void
s_stop (void)
{
    loop_stop ();
    links_stop ();
    pending_stop ();
    body_stop ();
    sockets_stop ();
}

int
main (int argc, char *argv [])
{
    config_load ("gateway", "gateway: nearchat's public HTTP and WebSocket API.",
                 s_options, argc, argv);
    static char gateway_id [PROTO_ID_MAX + 1];
    if (strcmp (gateway_config.gateway_id, "auto") == 0) {
        char uuid [IDS_UUID_SIZE];
        snprintf (gateway_id, sizeof gateway_id, "gw-%s", ids_uuid (uuid));
        gateway_config.gateway_id = gateway_id;
    }
    const char *id = gateway_config.gateway_id;
    if (!utf8_valid (id, strlen (id)) || utf8_has_control (id, strlen (id), false))
        s_bad_setting ("GATEWAY_ID", id, "must be UTF-8 without control characters");
    const char *bind = gateway_config.http_bind;
    if (strpbrk (bind, ", \t"))
        s_bad_setting ("HTTP_BIND", bind, "must be one address");
    s_websocket_path ();
    auth_check_settings ();
    log_init ("gateway", s_log_level);
    auth_log_start ();

    //  Signals are taken by this thread alone, in sigwait below: block
    //  them before any thread starts, so every thread inherits the mask.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    zsys_set_logstream (NULL);
    //  civetweb's threads serve HTTP requests and WebSocket handshakes;
    //  no WebSocket stays on one (the event loop takes each over, loop.c),
    //  so their number does not grow with MAX_CONNECTIONS. Each thread
    //  that calls the backend has a DEALER.
    int64_t civetweb_threads = HTTP_THREADS;
    zsys_set_max_sockets ((size_t) (civetweb_threads + 64));
    zsys_init ();
    zsys_set_io_threads (1);

    //  Each WebSocket holds its TCP socket: warn now rather than fail at
    //  the thousandth client.
    struct rlimit files;
    int64_t needed = gateway_config.max_connections + 2 * civetweb_threads + 256;
    if (getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
    &&  (int64_t) files.rlim_cur < needed)
        log_warn ("open files are limited to %llu; MAX_CONNECTIONS=%lld needs about %lld",
                  (unsigned long long) files.rlim_cur,
                  (long long) gateway_config.max_connections, (long long) needed);

    if (bus_start (BUS_GATEWAY) || bus_own_key (gateway_config.gateway_id))
        return 1;
    limits_start ();
    pending_start ();
    if (sockets_start () || body_start () || links_start () || loop_start ()) {
        s_stop ();
        bus_close ();                   //  before czmq's own exit handler, which asserts else
        return 1;
    }
    //  Shards running already say hello the moment our backend is up: a
    //  moment for them before the first client, so that a restarted
    //  gateway's clients, rejoining at once, are not refused for want of a
    //  shard (53 joins answered 503 after a kill -9, bench faults), nor
    //  routed to the first shard heard before the others are. Until the set
    //  has stood still a while, or SHARDS_WAIT_MS: none running is no reason
    //  to wait longer, the API answers what it can.
    long long shards = 0;
    for (int waited_ms = 0, still_ms = 0;
         waited_ms < SHARDS_WAIT_MS && (!shards || still_ms < SHARDS_STILL_MS);
         waited_ms += 10, still_ms += 10) {
        zclock_sleep (10);
        long long live = atomic_load (&gateway_metrics.shards_live);
        if (live != shards)
            still_ms = 0;
        shards = live;
    }

    char ports [300], threads [32];
    snprintf (ports, sizeof ports, strchr (bind, ':')? "[%s]:%lld": "%s:%lld", bind,
              (long long) gateway_config.http_port);
    snprintf (threads, sizeof threads, "%lld", (long long) civetweb_threads);
    const char *options [] = {
        "listening_ports", ports,
        "num_threads", threads,
        //  Frames are small and a header and payload may go as two
        //  writes: without this, Nagle and delayed ACKs hold each ~40 ms.
        "tcp_nodelay", "1",
        "enable_keep_alive", "yes",
        //  The headers of a request must all come within this from its
        //  start (civetweb counts from the request's first read, so a
        //  client trickling them is dropped, 400 as JSON, guard.c); the
        //  next one on a kept-alive connection within keep_alive_timeout_ms.
        //  It is also how long one read or one write of civetweb's may
        //  wait; a whole body is bounded by HTTP_BODY_TIMEOUT_MS (body.c).
        "request_timeout_ms", "10000",
        //  How often a refused WebSocket's worker looks up from its read
        //  (ws_ready): no open WebSocket stays on civetweb.
        "websocket_timeout_ms", "10000",
        "connection_queue", "256",
        "listen_backlog", "1024",
        //  We answer CORS ourselves, on every response, preflights included.
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "enable_directory_listing", "no",
        //  The URI as sent, so that guard.c can refuse a %00 in it;
        //  http.c decodes paths itself (mg_get_var decodes queries).
        "decode_url", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    callbacks.begin_request = guard_begin_request;
    callbacks.http_error = guard_http_error;
    mg_init_library (0);                //  no TLS: the edge's (gateway/edge/)
    struct mg_context *context = mg_start (&callbacks, NULL, options);
    if (!context) {
        log_error ("cannot serve HTTP on %s", ports);
        s_stop ();
        mg_exit_library ();
        bus_close ();
        return 1;
    }
    mg_set_request_handler (context, "/", http_handle, NULL);
    mg_set_websocket_handler (context, "/", ws_connect, ws_ready, ws_data, ws_close, NULL);
    mg_set_websocket_handler (context, "/ws", ws_connect, ws_ready, ws_data, ws_close, NULL);
    const char *stage = gateway_config.websocket_path;
    bool staged = *stage && strcmp (stage, "/ws") != 0;
    if (staged)
        mg_set_websocket_handler (context, stage, ws_connect, ws_ready, ws_data, ws_close, NULL);
    log_info ("gateway %s serving http on %s (WebSocket on /, /ws%s%s), shards on %s, stored at %s",
              gateway_config.gateway_id, ports,
              staged? ", ": "", staged? stage: "", gateway_config.backend_endpoint,
              gateway_config.stored_endpoint);

    int signal_number = 0;
    sigwait (&signals, &signal_number);
    log_info ("stopping on %s", signal_number == SIGINT? "SIGINT": "SIGTERM");

    //  Calls give up so that civetweb's threads return, then the event
    //  loop closes every WebSocket (each socket's leave and conn-del still
    //  go out) as the backend stops.
    calls_interrupt ();
    mg_stop (context);
    log_debug ("civetweb stopped");
    s_stop ();
    mg_exit_library ();
    limits_stop ();
    bus_close ();
    zsys_shutdown ();
    log_info ("stopped");
    return 0;
}
