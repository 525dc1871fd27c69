/*  =========================================================================
    guard.c - what is refused before any route sees a request, and
    civetweb's own errors written as ours

    civetweb answers some requests itself (headers over its 16 KB, a
    request line too long, a method it does not know, a bad
    Content-Length) with text/plain; every answer of ours is JSON with
    Access-Control-Allow-Origin: *, so its error callback writes them so.

    Before a route runs (civetweb's begin_request, for WebSocket upgrades
    too), a request is refused 400 when:
    - it has both Content-Length and Transfer-Encoding, or Content-Lengths
      that differ: civetweb 1.15 reads the body by chunks in the first
      case and by the first Content-Length in the second, so whatever a
      proxy in front took for the body's end, the rest would be served as
      a request of its own (request smuggling). The connection is closed
      after the answer, so nothing behind it is read as a request;
    - its URI holds %00: decoded, a NUL ends the path, so /healthz%00.html
      was /healthz, and a query's ids would be cut the same. civetweb
      decodes the URI in place, leaving nothing to tell a %00 by, so
      main.c turns its decoding off (decode_url) and http.c decodes paths.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "gateway.h"
#include "log.h"

//  The longest hostname DNS allows, and ":65535".
#define HOST_MAX    (253 + 6)

//  Write status with {"error": message} and close: civetweb's response
//  header API is not usable in every state these answers are written in
//  (a request it could not parse), so the answer is written whole.
static void
s_refuse (struct mg_connection *mg, int status, const char *message)
{
    json_t *body = json_object ();
    json_t *text = json_string (message);
    json_object_set_new (body, "error", text? text: json_string ("bad request"));
    char *json = render_text (body);
    json_decref (body);
    const char *answer = json? json: "{\"error\":\"bad request\"}";
    mg_printf (mg, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
               "Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
               status, mg_get_response_code_text (mg, status), strlen (answer), answer);
    free (json);
}

//  ---------------------------------------------------------------------------
//  civetweb's error callback: 0 as it answered the error itself.

int
guard_http_error (struct mg_connection *mg, int status, const char *message)
{
    //  civetweb's own words ("Malformed message"), or its status text when
    //  it gave none; a JSON string either way, so escaped whatever it holds.
    const char *reason = message && *message? message: mg_get_response_code_text (mg, status);
    log_debug ("civetweb refused a request: %d %s", status, reason);
    s_refuse (mg, status, reason);
    return 0;
}

//  ---------------------------------------------------------------------------
//  civetweb's begin_request: 0 to let the request through, or the status
//  it was answered.

int
guard_begin_request (struct mg_connection *mg)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    const char *why = NULL;
    const char *length = NULL;
    bool chunked = false;
    for (int i = 0; i < info->num_headers && !why; i++) {
        const char *name = info->http_headers [i].name;
        const char *value = info->http_headers [i].value? info->http_headers [i].value: "";
        if (strcasecmp (name, "Transfer-Encoding") == 0)
            chunked = true;
        else
        if (strcasecmp (name, "Content-Length") == 0) {
            if (length && strcmp (length, value) != 0)
                why = "the request has two different Content-Lengths";
            length = value;
        }
    }
    if (!why && length && chunked)
        why = "the request has both Content-Length and Transfer-Encoding";
    const char *uri = info->request_uri? info->request_uri: "";
    const char *query = info->query_string? info->query_string: "";
    if (!why && (strstr (uri, "%00") || strstr (query, "%00")))
        why = "the path and the query must not hold %00";
    if (!why)
        return 0;
    log_debug ("%s %.100s: 400 %s", info->request_method, uri, why);
    //  civetweb keeps a connection open unless the request's own
    //  Connection header says close, and offers no call to close it from a
    //  handler: the refused request's first header becomes that (its
    //  headers are ours to drop, the request being refused), so what
    //  follows on the connection is never read as a request.
    if (info->num_headers > 0) {
        struct mg_header *first = (struct mg_header *) &info->http_headers [0];
        first->name = "Connection";
        first->value = "close";
    }
    s_refuse (mg, 400, why);
    return 400;
}

//  ---------------------------------------------------------------------------
//  Host

bool
guard_host_ok (const char *host)
{
    size_t length = host? strlen (host): 0;
    if (length == 0 || length > HOST_MAX)
        return false;
    const char *port = NULL;
    if (host [0] == '[') {
        //  [IPv6]: hex digits, colons and dots (an IPv4 tail) only.
        const char *end = strchr (host, ']');
        if (!end || end == host + 1
        ||  strspn (host + 1, "0123456789abcdefABCDEF:.") != (size_t) (end - host - 1))
            return false;
        if (end [1] == ':')
            port = end + 2;
        else
        if (end [1])
            return false;
    }
    else {
        //  A hostname (letters, digits, '-' and '.'), or an IPv4 address.
        size_t name = strspn (host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-.");
        if (name == 0 || name > 253 || host [0] == '-' || host [0] == '.')
            return false;
        if (host [name] == ':')
            port = host + name + 1;
        else
        if (host [name])
            return false;
    }
    if (port) {
        size_t digits = strspn (port, "0123456789");
        if (digits == 0 || digits > 5 || port [digits] || atoi (port) > 65535)
            return false;
    }
    return true;
}
