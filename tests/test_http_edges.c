/*  =========================================================================
    test_http_edges - requests no well-behaved client makes, written by hand
    on a raw socket, against the real system (stored, gateway, 1 shard)

    The errors civetweb answers itself (headers over its 16 KB, a request
    line too long, TRACE, a bad Content-Length) are JSON {"error"} with
    Access-Control-Allow-Origin: * as every other answer. A request with
    both Content-Length and Transfer-Encoding, or two different
    Content-Lengths, is refused 400 and the request hidden behind it is not
    served (no smuggling). %00 in a path or a room id is 400, not the route
    the decoded path would match. The Host header is never written back:
    /healthz's websocketEndpoint (WEBSOCKET_ENDPOINT=auto) takes a Host
    only when it is a hostname[:port], else the address it was reached on.
    =========================================================================
*/

#define _GNU_SOURCE             //  strcasestr
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "api.h"
#include "harness_system.h"

static harness_system_t s_system;
static int s_port;

#define ANSWER_MAX  (64 * 1024)

//  Send request as it is and read what comes back until the server closes
//  or 5 s pass; the answer (NUL-terminated) goes to answer.
static void
s_raw (const char *request, size_t size, char *answer)
{
    *answer = 0;
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    REQUIRE (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) s_port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    REQUIRE (connect (fd, (struct sockaddr *) &address, sizeof address) == 0);
    size_t sent = 0;
    while (sent < size) {
        ssize_t rc = send (fd, request + sent, size - sent, MSG_NOSIGNAL);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;                      //  the server may answer and close before all is sent
        sent += (size_t) rc;
    }
    shutdown (fd, SHUT_WR);
    size_t got = 0;
    for (int rounds = 0; rounds < 50 && got < ANSWER_MAX - 1; rounds++) {
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, 100) != 1)
            continue;
        ssize_t rc = recv (fd, answer + got, ANSWER_MAX - 1 - got, 0);
        if (rc <= 0)
            break;
        got += (size_t) rc;
    }
    answer [got] = 0;
    close (fd);
}

//  The status of the first response in answer, or -1.
static int
s_status (const char *answer)
{
    int status = -1;
    if (sscanf (answer, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

//  How many responses answer holds.
static int
s_responses (const char *answer)
{
    int count = 0;
    for (const char *at = answer; (at = strstr (at, "HTTP/1.")); at++)
        count++;
    return count;
}

//  True when the first response of answer is status, JSON {"error"} with
//  Access-Control-Allow-Origin: * (what every error of ours is).
static bool
s_json_error (const char *what, const char *answer, int status)
{
    const char *end = strstr (answer, "\r\n\r\n");
    bool json = end && strcasestr (answer, "\r\nContent-Type: application/json")
             && strcasestr (answer, "\r\nContent-Type: application/json") < end;
    bool cors = end && strcasestr (answer, "\r\nAccess-Control-Allow-Origin: *")
             && strcasestr (answer, "\r\nAccess-Control-Allow-Origin: *") < end;
    json_t *body = end? json_loads (end + 4, JSON_DISABLE_EOF_CHECK, NULL): NULL;
    bool error = body && json_is_string (json_object_get (body, "error"))
              && *json_string_value (json_object_get (body, "error"));
    json_decref (body);
    bool ok = s_status (answer) == status && json && cors && error;
    if (!ok)
        fprintf (stderr, "  %s: expected a JSON error %d with CORS, got:\n%.600s\n", what,
                 status, answer);
    return ok;
}

static void
s_test_civetweb_errors (void)
{
    printf ("civetweb's own errors are JSON with CORS\n");
    char *answer = malloc (ANSWER_MAX);
    size_t big = 20 * 1024;
    char *request = malloc (big + 256);
    REQUIRE (answer && request);

    //  Headers over civetweb's 16 KB.
    int at = sprintf (request, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset (request + at, 'x', big);
    strcpy (request + at + big, "\r\n\r\n");
    s_raw (request, strlen (request), answer);
    CHECK (s_status (answer) >= 400);
    CHECK (s_json_error ("headers over 16 KB", answer, s_status (answer)));

    //  A query as long.
    at = sprintf (request, "GET /rooms?latitude=");
    memset (request + at, '1', big);
    strcpy (request + at + big, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s_raw (request, strlen (request), answer);
    CHECK (s_status (answer) >= 400);
    CHECK (s_json_error ("a long query", answer, s_status (answer)));

    const char *trace = "TRACE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s_raw (trace, strlen (trace), answer);
    CHECK (s_json_error ("TRACE", answer, s_status (answer)));
    CHECK (s_status (answer) == 400 || s_status (answer) == 405);

    const char *bad_length = "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Length: abc\r\n\r\n{}";
    s_raw (bad_length, strlen (bad_length), answer);
    CHECK (s_status (answer) == 400 || s_status (answer) == 411);
    CHECK (s_json_error ("Content-Length: abc", answer, s_status (answer)));
    const char *negative = "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Length: -5\r\n\r\n{}";
    s_raw (negative, strlen (negative), answer);
    CHECK (s_status (answer) == 400 || s_status (answer) == 411);
    CHECK (s_json_error ("Content-Length: -5", answer, s_status (answer)));
    free (request);
    free (answer);
}

static void
s_test_smuggling (void)
{
    printf ("Content-Length with Transfer-Encoding, or two Content-Lengths: 400, nothing smuggled\n");
    char *answer = malloc (ANSWER_MAX);
    REQUIRE (answer);
    //  A front that goes by Content-Length sees one request; one that goes
    //  by chunks sees a second, the smuggled GET: neither may be served.
    const char *both = "POST /rooms/join HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Length: 47\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s_raw (both, strlen (both), answer);
    CHECK (s_json_error ("Content-Length and Transfer-Encoding", answer, 400));
    CHECK (s_responses (answer) == 1);
    CHECK (!strstr (answer, "\"stored\""));        //  no /healthz answer behind it

    const char *two = "POST /rooms/join HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Length: 2\r\nContent-Length: 44\r\n\r\n"
                      "{}GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s_raw (two, strlen (two), answer);
    CHECK (s_json_error ("two Content-Lengths", answer, 400));
    CHECK (s_responses (answer) == 1);
    CHECK (!strstr (answer, "\"stored\""));

    //  One Content-Length, as every client sends, still works.
    const char *plain = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    s_raw (plain, strlen (plain), answer);
    CHECK (s_status (answer) == 200);
    free (answer);
}

static void
s_test_nul (void)
{
    printf ("%%00 in a path or a room id: 400\n");
    char *answer = malloc (ANSWER_MAX);
    REQUIRE (answer);
    const char *paths [] = { "/healthz%00.html", "/rooms%00", "/rooms/abc%00def",
                             "/rooms/abc%00/messages", "/rooms/abc/messages%00" };
    char request [256];
    for (size_t i = 0; i < sizeof paths / sizeof paths [0]; i++) {
        snprintf (request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n", paths [i]);
        s_raw (request, strlen (request), answer);
        CHECK (s_json_error (paths [i], answer, 400));
    }
    //  In a query: an id would be cut at the NUL.
    CHECK (ws_handshake_status (s_port, "/ws?userId=alice%00bob") == 400);
    CHECK (http_call (s_port, "GET", "/rooms?latitude=1%00&longitude=1", NULL, NULL) == 400);
    //  Other escapes are decoded as before: %61 is 'a'.
    json_t *body = NULL;
    CHECK (http_call (s_port, "GET", "/rooms/%61bc", NULL, &body) == 404);
    CHECK (body && strstr (j_str (body, "error")? j_str (body, "error"): "", "abc"));
    json_decref (body);
    CHECK (ws_handshake_status (s_port, "/ws?userId=al%69ce") == 101);
    free (answer);
}

static void
s_test_host (void)
{
    printf ("the Host header is never written back\n");
    char *answer = malloc (ANSWER_MAX);
    REQUIRE (answer);
    const char *hosts [] = {
        "evil.example\"><script>alert(1)</script>", "a b", "x/y@evil", "\"quoted\"",
        "host:99999999999", "[::1]:80\\", ""
    };
    char request [512];
    for (size_t i = 0; i < sizeof hosts / sizeof hosts [0]; i++) {
        snprintf (request, sizeof request, "GET /healthz HTTP/1.1\r\nHost: %s\r\n"
                  "Connection: close\r\n\r\n", hosts [i]);
        s_raw (request, strlen (request), answer);
        CHECK (s_status (answer) == 200);
        if (*hosts [i])
            CHECK (!strstr (answer, hosts [i]));
        const char *end = strstr (answer, "\r\n\r\n");
        json_t *health = end? json_loads (end + 4, JSON_DISABLE_EOF_CHECK, NULL): NULL;
        char expected [64];
        snprintf (expected, sizeof expected, "ws://127.0.0.1:%d/ws", s_port);
        CHECK (health && j_is (health, "websocketEndpoint", expected));
        json_decref (health);
    }
    //  A long one: over any hostname's 253 bytes.
    char long_host [400];
    memset (long_host, 'h', 300);
    long_host [300] = 0;
    snprintf (request, sizeof request, "GET /healthz HTTP/1.1\r\nHost: %s\r\n"
              "Connection: close\r\n\r\n", long_host);
    s_raw (request, strlen (request), answer);
    CHECK (s_status (answer) == 200 && !strstr (answer, long_host));

    //  A hostname[:port], as browsers send, is where the socket goes.
    const char *good = "GET /healthz HTTP/1.1\r\nHost: chat.example.org:8443\r\n"
                       "Connection: close\r\n\r\n";
    s_raw (good, strlen (good), answer);
    const char *end = strstr (answer, "\r\n\r\n");
    json_t *health = end? json_loads (end + 4, JSON_DISABLE_EOF_CHECK, NULL): NULL;
    CHECK (health && j_is (health, "websocketEndpoint", "ws://chat.example.org:8443/ws"));
    json_decref (health);
    free (answer);
}

int
main (void)
{
    harness_init ("http_edges");
    REQUIRE (harness_system_start (&s_system, 1, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_civetweb_errors ();
    s_test_smuggling ();
    s_test_nul ();
    s_test_host ();

    return harness_finish ();
}
