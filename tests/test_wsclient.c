/*  =========================================================================
    test_wsclient - the tests' WebSocket and HTTP clients, against a small
    civetweb server of this file's own (no nearchat daemon involved)

    The API tests trust wsclient to tell them what the gateway sent; this
    checks that it does: frames queued in order, expect leaving the others
    queued, quiet, fragments put together, a refused handshake's status, a
    client that never reads, and http_call's checks of every answer.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <civetweb.h>
#include "harness.h"
#include "wsclient.h"

//  ---------------------------------------------------------------------------
//  The server

static int
s_ws_connect (const struct mg_connection *conn, void *arg)
{
    (void) arg;
    const char *query = mg_get_request_info (conn)->query_string;
    if (query && strstr (query, "userId="))
        return 0;
    //  Not mg_send_http_error: in a WebSocket connect handler civetweb 1.15
    //  writes its body without a status line.
    const char *body = "{\"error\":\"no userId\"}";
    mg_printf ((struct mg_connection *) conn, "HTTP/1.1 400 Bad Request\r\n"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n%s", strlen (body), body);
    return 1;
}

//  A frame with FIN set or not, written by hand (civetweb's own writer
//  always sets FIN).
static void
s_write_frame (struct mg_connection *conn, int first_byte, const char *text)
{
    unsigned char head [2] = { (unsigned char) first_byte, (unsigned char) strlen (text) };
    mg_write (conn, head, 2);
    mg_write (conn, text, strlen (text));
}

static int
s_ws_data (struct mg_connection *conn, int flags, char *data, size_t size, void *arg)
{
    (void) arg;
    if ((flags & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
        return 0;
    if ((flags & 0x0f) != MG_WEBSOCKET_OPCODE_TEXT)
        return 1;
    json_t *request = json_loadb (data, size, 0, NULL);
    const char *action = json_string_value (json_object_get (request, "action"));
    int keep = 1;
    if (action && !strcmp (action, "burst")) {
        //  n frames, types a, b, a, b, ... with k = 0, 1, 2, ...
        json_int_t count = json_integer_value (json_object_get (request, "n"));
        for (json_int_t k = 0; k < count; k++) {
            char text [128];
            int length = snprintf (text, sizeof text, "{\"type\":\"%s\",\"k\":\"%lld\"}",
                                   k % 2? "b": "a", (long long) k);
            mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_TEXT, text, (size_t) length);
        }
    }
    else
    if (action && !strcmp (action, "fragments")) {
        mg_lock_connection (conn);
        s_write_frame (conn, 0x01, "{\"type\":\"frag");          //  text, not final
        s_write_frame (conn, 0x00, "ments\",\"text\":");         //  continuation
        s_write_frame (conn, 0x80, "\"whole\"}");                //  continuation, final
        mg_unlock_connection (conn);
    }
    else
    if (action && !strcmp (action, "close-with-reason"))
        mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xf0too slow", 10);
    else
    if (action && !strcmp (action, "close"))
        keep = 0;
    else
        mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_TEXT, data, size);
    json_decref (request);
    return keep;
}

static int
s_http (struct mg_connection *conn, void *arg)
{
    (void) arg;
    const struct mg_request_info *request = mg_get_request_info (conn);
    char body [256] = "";
    int got = mg_read (conn, body, sizeof body - 1);
    body [got > 0? got: 0] = 0;
    int status = 200;
    const char *type = "application/json", *origin = "*";
    char answer [512];
    if (!strcmp (request->local_uri, "/missing")) {
        status = 404;
        snprintf (answer, sizeof answer, "{\"error\":\"No such path\"}");
    }
    else
    if (!strcmp (request->local_uri, "/bare-error")) {
        status = 400;
        snprintf (answer, sizeof answer, "{}");
    }
    else
    if (!strcmp (request->local_uri, "/text")) {
        type = "text/plain";
        origin = "";
        snprintf (answer, sizeof answer, "plain");
    }
    else
        snprintf (answer, sizeof answer, "{\"method\":\"%s\",\"query\":\"%s\",\"body\":%s}",
                  request->request_method, request->query_string? request->query_string: "",
                  *body? body: "null");
    mg_printf (conn, "HTTP/1.1 %d X\r\nContent-Type: %s\r\n%s%s%sContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n%s", status, type,
               *origin? "Access-Control-Allow-Origin: ": "", origin, *origin? "\r\n": "",
               strlen (answer), answer);
    return status;
}

//  ---------------------------------------------------------------------------
//  The tests

static void
s_test_handshakes (int port)
{
    printf ("handshakes: a refused one's status, an accepted one's\n");
    CHECK (ws_handshake_status (port, "/ws") == 400);
    CHECK (ws_handshake_status (port, "/ws?userId=a") == 101);
    CHECK (ws_open (port, "/ws") == NULL);
    CHECK (ws_handshake_status (harness_free_port (), "/ws?userId=a") == -1);
}

static void
s_test_queue (int port)
{
    printf ("frames: queued in order, expect keeps the others, quiet, fragments\n");
    ws_client_t *client = ws_open (port, "/ws?userId=a");
    REQUIRE (client);
    CHECK (ws_send (client, "{s:s, s:i}", "action", "burst", "n", 100) == 0);

    //  The first "b" is the second frame; the first "a" stays queued.
    json_t *frame = ws_expect (client, "b", 2000);
    CHECK (frame && !strcmp (json_string_value (json_object_get (frame, "k")), "1"));
    CHECK (ws_arrival (client) == 2);
    json_decref (frame);
    frame = ws_expect_where (client, "a", "k", "98", 2000);
    CHECK (frame != NULL);
    CHECK (ws_arrival (client) == 99);
    json_decref (frame);
    frame = ws_next (client, 1000);
    CHECK (frame && !strcmp (json_string_value (json_object_get (frame, "k")), "0"));
    CHECK (ws_arrival (client) == 1);
    json_decref (frame);
    CHECK (ws_pending (client, NULL) == 97);
    CHECK (ws_pending (client, "b") == 49);
    CHECK (ws_quiet (client, "c", 100));
    CHECK (!ws_quiet_where (client, "a", "k", "50", 100));
    CHECK (ws_quiet_where (client, "a", "k", "98", 100));
    CHECK (ws_expect (client, "c", 100) == NULL);
    CHECK (ws_drop (client, "b") == 49);
    CHECK (ws_pending (client, "b") == 0 && ws_pending (client, "a") == 48);
    ws_discard (client);
    CHECK (ws_pending (client, NULL) == 0);

    CHECK (ws_send (client, "{s:s}", "action", "fragments") == 0);
    frame = ws_expect (client, "fragments", 2000);
    CHECK (frame && !strcmp (json_string_value (json_object_get (frame, "text")), "whole"));
    json_decref (frame);

    //  An echo of what ws_send_raw sent, byte for byte.
    const char *text = "{\"type\":\"echo\",\"text\":\"caf\xc3\xa9\"}";
    CHECK (ws_send_raw (client, text, strlen (text)) == 0);
    frame = ws_expect (client, "echo", 2000);
    CHECK (frame && !strcmp (json_string_value (json_object_get (frame, "text")), "caf\xc3\xa9"));
    json_decref (frame);
    CHECK (!ws_is_closed (client, 50));

    //  The server ends the connection: seen, and the close is quick.
    CHECK (ws_send (client, "{s:s}", "action", "close") == 0);
    CHECK (ws_is_closed (client, 2000));
    CHECK (ws_next (client, 50) == NULL);
    ws_close (&client);
    CHECK (client == NULL);

    //  A client closing while frames are in flight.
    client = ws_open (port, "/ws?userId=b");
    REQUIRE (client);
    ws_send (client, "{s:s, s:i}", "action", "burst", "n", 1000);
    ws_close (&client);
}

static void
s_test_raw (int port)
{
    printf ("by hand: a client that reads nothing until asked\n");
    ws_raw_t *raw = ws_raw_open (port, "/ws?userId=r", 4096);
    REQUIRE (raw);
    CHECK (ws_raw_send (raw, "{\"type\":\"echo\"}") == 0);
    //  Long enough for the 16-bit length form.
    char text [1000];
    snprintf (text, sizeof text, "{\"type\":\"echo\",\"pad\":\"%0900d\"}", 0);
    CHECK (ws_raw_send (raw, text) == 0);
    ws_raw_drained_t drained;
    CHECK (!ws_raw_drain (raw, 300, &drained));
    CHECK (drained.bytes == 2 + 15 + 4 + strlen (text));
    CHECK (drained.frames == 2 && drained.close_code == 0 && !drained.ended);
    //  A close frame with a reason, taken apart.
    CHECK (ws_raw_send (raw, "{\"action\":\"close-with-reason\"}") == 0);
    CHECK (ws_raw_drain (raw, 2000, &drained));
    CHECK (drained.close_code == 1008 && !strcmp (drained.close_reason, "too slow"));
    ws_raw_close (&raw);
    //  The end of the stream.
    raw = ws_raw_open (port, "/ws?userId=r", 4096);
    REQUIRE (raw);
    CHECK (ws_raw_send (raw, "{\"action\":\"close\"}") == 0);
    CHECK (ws_raw_drain (raw, 2000, &drained));
    CHECK (drained.ended);
    ws_raw_close (&raw);
    CHECK (raw == NULL);
    CHECK (ws_raw_open (port, "/ws", 0) == NULL);
}

static void
s_test_http (int port)
{
    printf ("http: answers read whole, checks of every answer\n");
    json_t *answer = NULL;
    CHECK (http_call (port, "GET", "/api/x?a=1&b=%20", NULL, &answer) == 200);
    CHECK (answer && !strcmp (json_string_value (json_object_get (answer, "query")), "a=1&b=%20"));
    json_decref (answer);
    CHECK (http_callf (port, "POST", "/api/x", &answer, "{s:s, s:f}", "userId", "u",
                       "latitude", 48.5) == 200);
    CHECK (answer && json_real_value (json_object_get (json_object_get (answer, "body"),
                                                       "latitude")) == 48.5);
    CHECK (answer && !strcmp (json_string_value (json_object_get (answer, "method")), "POST"));
    json_decref (answer);
    CHECK (http_call (port, "GET", "/missing", NULL, NULL) == 404);

    //  What http_call must refuse: seen with http_request, which checks nothing.
    http_response_t response;
    CHECK (http_request (port, "GET", "/text", NULL, 0, &response) == 200);
    CHECK (!strcmp (response.content_type, "text/plain") && !*response.allow_origin);
    CHECK (!strcmp (response.body, "plain") && response.size == 5);
    http_response_free (&response);
    CHECK (http_request (port, "GET", "/bare-error", NULL, 0, &response) == 400);
    CHECK (!strcmp (response.body, "{}"));
    http_response_free (&response);
    CHECK (http_request (harness_free_port (), "GET", "/", NULL, 0, &response) == -1);
    http_response_free (&response);

    char escaped [64];
    CHECK (!strcmp (http_escape ("Ann B&c=\xc3\xa9", escaped, sizeof escaped),
                    "Ann%20B%26c%3D%C3%A9"));
}

int
main (void)
{
    harness_init ("wsclient");
    mg_init_library (0);
    int port = harness_free_port ();
    char ports [32];
    snprintf (ports, sizeof ports, "127.0.0.1:%d", port);
    const char *options [] = { "listening_ports", ports, "num_threads", "8", NULL };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *server = mg_start (&callbacks, NULL, options);
    REQUIRE (server);
    mg_set_websocket_handler (server, "/ws", s_ws_connect, NULL, s_ws_data, NULL, NULL);
    mg_set_request_handler (server, "/", s_http, NULL);

    s_test_handshakes (port);
    s_test_queue (port);
    s_test_raw (port);
    s_test_http (port);

    mg_stop (server);
    return harness_finish ();
}
