/*  =========================================================================
    health.c - GET /healthz: whether this gateway can serve, and what it
    is connected to

    stored is asked (store-stats, at most HEALTH_TIMEOUT_MS); the shards,
    the conflicts between them, the reaper's reports and the run are what
    the loop last saw. 200 when stored and at least one shard are up and
    no two shards share an id, else 503: a load balancer's health check.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "gateway.h"

#define HEALTH_TIMEOUT_MS   1000
#define SHARDS_SHOWN        256

json_t *
health_render (struct mg_connection *mg, const char *trace, int *status_p)
{
    proto_msg_t request = { .type = PROTO_STORE_STATS };
    snprintf (request.trace_id, sizeof request.trace_id, "%s", trace);
    int status;
    char reason [PROTO_REASON_MAX];
    proto_msg_t *reply = backend_call (&request, PROTO_STATS_REPLY, HEALTH_TIMEOUT_MS,
                                       &status, reason, sizeof reason);
    bool stored_up = reply != NULL;
    proto_msg_destroy (&reply);
    static __thread char shards [SHARDS_SHOWN][PROTO_ID_MAX + 1];
    size_t shard_count = shards_live (shards, SHARDS_SHOWN);
    static __thread char conflicts [SHARDS_SHOWN][PROTO_ID_MAX + 1];
    size_t conflict_count = shards_conflicts (conflicts, SHARDS_SHOWN);
    //  Two shards with one id is a fault to fix (one is refused); a dead
    //  reaper is not: chat goes on without it (idle rooms stay open, a
    //  dead gateway's sockets linger), so it is shown, not failed on.
    bool ok = stored_up && shard_count > 0 && conflict_count == 0;
    char incarnation [64];
    links_incarnation (incarnation, sizeof incarnation);

    json_t *answer = json_object ();
    json_object_set_new (answer, "status", json_string (ok? "ok": "degraded"));
    json_object_set_new (answer, "gatewayId", json_string (gateway_config.gateway_id));
    json_object_set_new (answer, "stored", json_string (stored_up? "up": "down"));
    json_t *list = json_array ();
    for (size_t i = 0; i < shard_count; i++)
        json_array_append_new (list, json_string (shards [i]));
    json_object_set_new (answer, "shards", list);
    list = json_array ();
    for (size_t i = 0; i < conflict_count; i++)
        json_array_append_new (list, json_string (conflicts [i]));
    json_object_set_new (answer, "shardConflicts", list);
    json_object_set_new (answer, "reaper", json_string (links_reaper_up ()? "up": "down"));
    json_object_set_new (answer, "incarnation", json_string (incarnation));
    json_object_set_new (answer, "connections", json_integer ((json_int_t) sockets_open ()));
    json_object_set_new (answer, "auth", json_string (auth_mode ()));
    json_t *endpoint = NULL;
    if (strcmp (gateway_config.websocket_endpoint, "auto") != 0)
        endpoint = json_string (gateway_config.websocket_endpoint);
    else {
        //  Where this client reached us is where its WebSocket can go, over
        //  TLS if it came over TLS: to the edge, which ended TLS and says
        //  so as proxies do (X-Forwarded-Proto); the gateway holds none.
        //  The Host is the client's to write: it is used only when it is a
        //  hostname[:port] (guard_host_ok), never written back otherwise;
        //  then the address and port it reached us on stand in.
        const char *host = mg_get_header (mg, "Host");
        const char *forwarded = mg_get_header (mg, "X-Forwarded-Proto");
        bool secure = forwarded && strcasecmp (forwarded, "https") == 0;
        const char *bind = gateway_config.http_bind;
        bool wildcard = strcmp (bind, "0.0.0.0") == 0 || strcmp (bind, "::") == 0 || !*bind;
        char here [80], url [300];
        snprintf (here, sizeof here, strchr (bind, ':')? "[%s]:%d": "%s:%d",
                  wildcard? "127.0.0.1": bind, mg_get_request_info (mg)->server_port);
        snprintf (url, sizeof url, "%s://%s/ws", secure? "wss": "ws",
                  guard_host_ok (host)? host: here);
        endpoint = json_string (url);
    }
    json_object_set_new (answer, "websocketEndpoint", endpoint? endpoint: json_null ());
    *status_p = ok? 200: 503;
    return answer;
}
