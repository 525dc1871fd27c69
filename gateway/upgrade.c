/*  =========================================================================
    upgrade.c - a WebSocket's handshake, on civetweb's threads, and its
    handover to the event loop

    civetweb answers the upgrade; these are its WebSocket handlers. The
    connect handler checks the path and the query (or the token, auth.c)
    and takes the socket's places (limits.c's for its user and address,
    one of MAX_CONNECTIONS) before the handshake is answered, so that the
    limits are exact however many handshakes run at once; a refusal is a
    plain HTTP error with {"error"}. Once civetweb has answered, the ready
    handler takes the socket over (fds_take) and makes its conn; the data
    handler gives the loop the frames civetweb read with the upgrade
    request (client_preface); the close handler, once civetweb's read has
    ended, hands the conn to the loop (client_adopt). From then on the
    socket is the loop's alone (loop.c, ws.c).
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"
#include "log.h"

//  A connection's user data from ws_connect to ws_close: until it opens
//  it holds the places it was admitted to (sockets_admit, and limits.c's
//  for its user and address); from ws_ready on, the event loop's conn
//  holds them (or they were given back, when the loop could not take it).
typedef struct {
    char user_id [PROTO_ID_MAX + 1];
    char address [LIMITS_ADDRESS_MAX];
    bool opened;                        //  the places are no longer the slot's
    conn_t *conn;                       //  taken over: the loop's once civetweb's read ends
} slot_t;

//  Read the upgrade's query: userId (required) and the profile defaults.
//  Returns 0, or an HTTP status with a reason in why.
static int
s_query (const struct mg_request_info *info, char *user_id, profile_t *profile,
         char *why, size_t why_size)
{
    const char *query = info->query_string? info->query_string: "";
    size_t length = strlen (query);
    memset (profile, 0, sizeof *profile);
    int rc;
    if (auth_required ()) {
        //  The token says who it is; a userId beside it must agree (auth.c).
        int status = auth_query (query, user_id, why, why_size);
        if (status)
            return status;
    }
    else {
        rc = mg_get_var (query, length, "userId", user_id, PROTO_ID_MAX + 1);
        if (rc == -1) {
            snprintf (why, why_size, "userId is required in the query string");
            return 400;
        }
        if (rc < 0) {
            snprintf (why, why_size, "userId must be at most %d bytes", PROTO_ID_MAX);
            return 400;
        }
        if (input_text_id (user_id, why, why_size, "userId"))
            return 400;
    }
    struct { const char *key; char *out; bool *has; } fields [] = {
        { "userName", profile->user_name, &profile->has_name },
        { "userIcon", profile->user_icon, &profile->has_icon },
        { "userColor", profile->user_color, &profile->has_color },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++) {
        rc = mg_get_var (query, length, fields [i].key, fields [i].out, PROTO_PROFILE_MAX + 1);
        if (rc == -1)
            continue;
        if (rc < 0) {
            snprintf (why, why_size, "%s must be at most %d bytes", fields [i].key,
                      PROTO_PROFILE_MAX);
            return 400;
        }
        if (input_text_profile (fields [i].out, why, why_size, fields [i].key))
            return 400;
        *fields [i].has = true;
    }
    return 0;
}

int
ws_connect (const struct mg_connection *mg, void *data)
{
    (void) data;
    const struct mg_request_info *info = mg_get_request_info (mg);
    //  civetweb hands us any upgrade whose path starts with "/". Served:
    //  /, /ws, and WEBSOCKET_ENDPOINT's path (the original's API Gateway
    //  stage, "/prod", which deployed clients still have in their URL).
    const char *path = info->local_uri? info->local_uri: "";
    const char *stage = gateway_config.websocket_path;
    int status = 0;
    char why [400] = "";
    slot_t slot = { .opened = false };
    if (strcmp (path, "/") != 0 && strcmp (path, "/ws") != 0
    &&  (!*stage || strcmp (path, stage) != 0)) {
        status = 404;
        snprintf (why, sizeof why, "no WebSocket at %.100s; use / or /ws%s%.200s", path,
                  *stage? " or ": "", stage);
    }
    else {
        profile_t profile;
        status = s_query (info, slot.user_id, &profile, why, sizeof why);
    }
    //  The places are taken here, before the handshake is answered, so
    //  that the limits are exact however many handshakes run at once:
    //  the user's and the address's (429), then one of MAX_CONNECTIONS.
    if (status == 0) {
        limits_address (mg, slot.address);
        status = limits_socket_take (slot.user_id, slot.address, why, sizeof why);
    }
    if (status == 0 && !sockets_admit ()) {
        limits_socket_give (slot.user_id, slot.address);
        status = 503;
        snprintf (why, sizeof why, "the gateway holds its most sockets (%lld)",
                  (long long) gateway_config.max_connections);
    }
    if (status == 0) {
        slot_t *kept = malloc (sizeof *kept);
        assert (kept);
        *kept = slot;
        mg_set_user_connection_data (mg, kept);
        return 0;
    }
    if (status == 429)
        log_debug ("an upgrade from %s was refused: %s", slot.address, why);
    //  civetweb itself sends nothing when we refuse: the client must see a
    //  plain HTTP error, so write it here (no handshake has been sent).
    json_t *body = json_object ();
    json_object_set_new (body, "error", json_string (why));
    http_reply ((struct mg_connection *) mg, status, body);
    return 1;
}

void
ws_ready (struct mg_connection *mg, void *data)
{
    (void) data;
    char user_id [PROTO_ID_MAX + 1], why [160];
    profile_t profile;
    slot_t *slot = mg_get_user_connection_data (mg);
    if (!slot || s_query (mg_get_request_info (mg), user_id, &profile, why, sizeof why))
        return;                         //  checked in ws_connect; cannot happen
    //  The places ws_connect took are the conn's from here on.
    slot->opened = true;
    //  The socket goes to the event loop, and civetweb's read loop ends
    //  at once (loop.c); its close handler hands the conn to the loop.
    int fd = fds_take (mg);
    if (fd >= 0) {
        //  civetweb may have read frames sent with the upgrade request:
        //  its read loop hands them to ws_data before it ends (ws_close),
        //  and the loop takes the conn with them, in front of the socket.
        slot->conn = conn_new (fd, slot->user_id, &profile, slot->address);
        return;
    }
    //  Every WebSocket is the loop's: one it cannot take is refused, never
    //  served on this thread, and its places are given back now. fds_take
    //  has ended civetweb's read of it when it found the descriptor; else
    //  civetweb closes it when the client answers the close (ws_data).
    sockets_unadmit ();
    limits_socket_give (slot->user_id, slot->address);
    const struct mg_request_info *info = mg_get_request_info (mg);
    log_warn ("a WebSocket of user %s from %s:%d could not be taken over from civetweb; "
              "refused (1011)", slot->user_id, info->remote_addr, info->remote_port);
    static const char refusal [] = "\x03\xf3" "the gateway cannot serve this socket now";
    mg_websocket_write (mg, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, refusal,
                        sizeof refusal - 1);
}

int
ws_data (struct mg_connection *mg, int bits, char *data, size_t size, void *data_)
{
    (void) data_;
    //  A taken socket's frames that civetweb read with its upgrade request
    //  (ws_ready): the loop's, in front of what it reads.
    slot_t *slot = mg_get_user_connection_data (mg);
    if (slot && slot->conn) {
        client_preface (slot->conn, bits, data, size);
        return 1;                       //  civetweb's read then ends: the socket is ours
    }
    return 0;                           //  a refused socket: close it
}

void
ws_close (const struct mg_connection *mg, void *data)
{
    (void) data;
    slot_t *slot = mg_get_user_connection_data (mg);
    mg_set_user_connection_data (mg, NULL);
    if (slot && slot->conn)
        client_adopt (slot->conn);        //  civetweb has handed over all it read
    if (slot && !slot->opened) {        //  its handshake never opened it
        sockets_unadmit ();
        limits_socket_give (slot->user_id, slot->address);
    }
    free (slot);
}
