/*  =========================================================================
    settings.c - the gateway's settings: each one's name, default, bounds
    and help (config.c reads them from the environment or --NAME=value),
    and the checks that need more than one setting or a parse

    Written once, by settings_load in main before any other thread starts,
    and only read afterwards.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"
#include "config.h"
#include "ids.h"
#include "log.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"
#include "utf8.h"

gateway_config_t gateway_config;
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

void
settings_load (int argc, char *argv [])
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
    log_init ("gateway", s_log_level);
}
