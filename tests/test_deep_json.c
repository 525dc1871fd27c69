/*  =========================================================================
    test_deep_json - client JSON that nests deep is refused before it is
    parsed, against the real system (stored, gateway, 1 shard)

    jansson recurses a level deep per array or object, and HTTP bodies are
    parsed on civetweb's small worker stacks: a body of 600 '[' killed the
    gateway. Every HTTP route that reads a body answers such a body 400
    with {"error"} and the gateway stays up (/healthz 200 after each); a
    well-formed body nested too deep is refused though it holds every
    field a create needs; one nested exactly INPUT_DEPTH_MAX (3) deep still
    creates. Over WebSocket, a frame 1,000 levels deep gets an error frame
    and the socket still answers a ping.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"

static harness_system_t s_system;
static int s_port;

//  True when /healthz answers 200: the gateway is up.
static bool
s_healthy (void)
{
    json_t *health = NULL;
    int status = api_health (s_port, &health);
    json_decref (health);
    return status == 200;
}

//  depth '[' then, when closed, as many ']' (a well-formed deep array).
static char *
s_brackets (size_t depth, bool closed, const char *prefix, const char *suffix)
{
    size_t size = strlen (prefix) + 2 * depth + strlen (suffix) + 1;
    char *text = malloc (size);
    REQUIRE (text);
    strcpy (text, prefix);
    size_t at = strlen (text);
    memset (text + at, '[', depth);
    at += depth;
    if (closed) {
        memset (text + at, ']', depth);
        at += depth;
    }
    strcpy (text + at, suffix);
    return text;
}

static void
s_test_http (void)
{
    printf ("HTTP: 600 '[' on every route that reads a body: 400, and the gateway stays up\n");
    const char *routes [] = {
        "/rooms", "/create-room", "/rooms/join", "/join-room", "/rooms/close", "/close-room"
    };
    char *deep = s_brackets (600, false, "", "");
    for (size_t i = 0; i < sizeof routes / sizeof routes [0]; i++) {
        int status = http_call (s_port, "POST", routes [i], deep, NULL);
        if (status != 400)
            fprintf (stderr, "  POST %s with 600 '[': %d\n", routes [i], status);
        CHECK (status == 400);
        CHECK (s_healthy ());
    }
    free (deep);

    printf ("HTTP: a well-formed create nested 1,000 deep is refused; 4 deep too; 3 deep creates\n");
    deep = s_brackets (1000, true, "{\"userId\":\"deep\",\"latitude\":1,\"longitude\":1,\"x\":", "}");
    json_t *answer = NULL;
    CHECK (http_call (s_port, "POST", "/rooms", deep, &answer) == 400);
    CHECK (answer && j_str (answer, "error") && strstr (j_str (answer, "error"), "nest"));
    json_decref (answer);
    free (deep);
    CHECK (http_call (s_port, "POST", "/rooms",
                      "{\"userId\":\"deep\",\"latitude\":1,\"longitude\":1,\"x\":{\"y\":[[1]]}}",
                      NULL) == 400);
    //  A string holding brackets and escaped quotes is no nesting.
    CHECK (http_call (s_port, "POST", "/rooms",
                      "{\"userId\":\"deep\",\"latitude\":1,\"longitude\":1,"
                      "\"roadName\":\"[[[[{{{{\\\"[[[[\\\\\",\"x\":{\"y\":[1]}}", NULL) == 200);
    CHECK (s_healthy ());
}

static void
s_test_ws (void)
{
    printf ("WebSocket: a frame 1,000 levels deep gets an error frame; the socket still works\n");
    ws_client_t *client = api_connect (s_port, "deep-ws", NULL);
    REQUIRE (client);
    char *deep = s_brackets (1000, true, "{\"action\":\"ping\",\"x\":", "}");
    CHECK (ws_send_raw (client, deep, strlen (deep)) == 0);
    free (deep);
    json_t *error = ws_expect (client, "error", API_WAIT_MS);
    CHECK (error && j_num (error, "status") == 400);
    CHECK (error && j_str (error, "error") && strstr (j_str (error, "error"), "nest"));
    json_decref (error);
    CHECK (ws_quiet (client, "pong", API_QUIET_MS));

    deep = s_brackets (1000, false, "", "");
    CHECK (ws_send_raw (client, deep, strlen (deep)) == 0);
    free (deep);
    error = ws_expect (client, "error", API_WAIT_MS);
    CHECK (error && j_num (error, "status") == 400);
    json_decref (error);

    //  3 deep is a frame like any other.
    CHECK (ws_send_raw (client, "{\"action\":\"ping\",\"x\":{\"y\":[1]}}", 31) == 0);
    json_t *pong = ws_expect (client, "pong", API_WAIT_MS);
    CHECK (pong != NULL);
    json_decref (pong);
    CHECK (!ws_is_closed (client, 0));
    ws_close (&client);
    CHECK (s_healthy ());
}

int
main (void)
{
    harness_init ("deep_json");
    REQUIRE (harness_system_start (&s_system, 1, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_http ();
    s_test_ws ();

    return harness_finish ();
}
