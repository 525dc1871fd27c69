/*  =========================================================================
    test_edge - slow clients do not deny service through the edge (HAProxy,
    nearchat-edge) in front of the real system (stored, a gateway, one
    shard), and the edge's per-address caps answer 429 JSON

    On each port an operator exposes, plain and TLS in turn, 300 clients
    trickle their request headers and 300 their request body (a byte every
    2 s), from other loopback addresses than the legitimate client's
    (127.0.0.2, ...: four addresses, 150 each, past the cap of 100 a client
    address may hold here). While they trickle, a client on 127.0.0.1
    keeps getting /healthz, and a new WebSocket joins a room, sends, and
    receives its own new-message, each answer waited for 2 s at most. The
    edge ends every trickler once its whole request is late
    (EDGE_REQUEST_TIMEOUT_S, 10 s by default) with 408: JSON for a late
    body, HAProxy's own page for late headers (its HTTP/1 layer answers
    those before any error reply of ours applies). Then: a client address holding its 100 connections is
    answered 429 JSON with CORS on the next, while another address is
    served; one making more than its 100 requests in 10 s is answered 429
    JSON too. (A client's own X-Forwarded-For is replaced by the edge; no
    part of the gateway here shows the address it believes, so that is not
    checked.) Every loop is bounded in count and time.
    =========================================================================
*/

#define _GNU_SOURCE                 //  strcasestr
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "api.h"
#include "clock.h"
#include "harness_system.h"
#include "tlsclient.h"

#define TRICKLERS           300     //  of each kind, on each port
#define ATTACKER_ADDRESSES  4       //  they come from, TRICKLERS * 2 / 4 each
#define CAP                 100     //  EDGE_CONNECTIONS_PER_ADDR here
#define RATE                100     //  EDGE_REQUESTS_PER_ADDR here (per 10 s)
#define TRICKLE_EVERY_MS    2000
#define TRICKLE_FOR_MS      8000    //  the service is checked all this while
#define REQUEST_TIMEOUT_S   10      //  the edge's default EDGE_REQUEST_TIMEOUT_S
#define ANSWER_MS           2000    //  the service's answers are waited for this long

static harness_system_t s_system;

//  ---------------------------------------------------------------------------
//  A connection from a chosen address, plain or TLS

typedef struct {
    int fd;                         //  plain: the socket; -1 when closed
    tls_raw_t *tls;                 //  TLS: the session; NULL when closed
    bool over;                      //  the edge has ended it
    char answer [256];              //  the start of what it answered
    size_t answered;
} conn_t;

static bool
s_open (conn_t *conn, const char *source, int port, bool tls)
{
    memset (conn, 0, sizeof *conn);
    conn->fd = -1;
    if (tls)
        conn->tls = tls_raw_open (source, port, 0);
    else
        conn->fd = tcp_connect_from (source, port, 0);
    return conn->tls || conn->fd >= 0;
}

static int
s_write (conn_t *conn, const char *text)
{
    size_t size = strlen (text);
    if (conn->tls)
        return tls_raw_write (conn->tls, text, size);
    return conn->fd >= 0 && send (conn->fd, text, size, MSG_NOSIGNAL) == (ssize_t) size? 0: -1;
}

//  Read what has come within timeout_ms: bytes (> 0), 0 at the end of the
//  stream, -1 when nothing came.
static int
s_read (conn_t *conn, char *buffer, size_t size, int timeout_ms)
{
    if (conn->tls)
        return tls_raw_read (conn->tls, buffer, size, timeout_ms);
    struct pollfd item = { .fd = conn->fd, .events = POLLIN };
    if (poll (&item, 1, timeout_ms) != 1)
        return -1;
    ssize_t got = recv (conn->fd, buffer, size, 0);
    return got > 0? (int) got: got == 0 || errno != EINTR? 0: -1;
}

static void
s_close (conn_t *conn)
{
    tls_raw_close (&conn->tls);
    if (conn->fd >= 0)
        close (conn->fd);
    conn->fd = -1;
}

//  One request (Connection: close) from source, its answer read to the end
//  within timeout_ms. Returns the status, or -1; the head and body go to
//  head and body (size bytes each) when not NULL.
static int
s_request (const char *source, int port, bool tls, const char *method, const char *path,
           int timeout_ms, char *head, char *body, size_t size)
{
    conn_t conn;
    if (!s_open (&conn, source, port, tls))
        return -1;
    char request [512], answer [8192];
    snprintf (request, sizeof request, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
              "Connection: close\r\n\r\n", method, path, port);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    size_t used = 0;
    bool ended = false;
    if (s_write (&conn, request) == 0)
        while (used < sizeof answer - 1) {
            int64_t left = deadline - clock_mono_ms ();
            int got = left > 0? s_read (&conn, answer + used, sizeof answer - 1 - used, (int) left): -1;
            if (got <= 0) {
                ended = got == 0;
                break;
            }
            used += (size_t) got;
        }
    s_close (&conn);
    answer [used] = 0;
    int status = -1;
    if (!ended || sscanf (answer, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    char *split = strstr (answer, "\r\n\r\n");
    if (split)
        *split = 0;
    if (head)
        snprintf (head, size, "%s", answer);
    if (body)
        snprintf (body, size, "%s", split? split + 4: "");
    return status;
}

//  An answer of the edge's own is JSON {"error": "..."} with CORS.
static bool
s_is_json_error (const char *head, const char *body)
{
    json_t *json = json_loads (body, 0, NULL);
    bool ok = json && json_is_string (json_object_get (json, "error"))
           && strcasestr (head, "content-type: application/json")
           && strcasestr (head, "access-control-allow-origin: *");
    if (!ok)
        fprintf (stderr, "  not a JSON error with CORS: %s\n\n%s\n", head, body);
    json_decref (json);
    return ok;
}

//  ---------------------------------------------------------------------------
//  The service a legitimate client on 127.0.0.1 gets

//  /healthz answers 200 (its answer waited for ANSWER_MS at most), and a
//  new WebSocket joins room, sends, and hears its own message (each frame
//  waited for ANSWER_MS at most).
static bool
s_served (int port, bool tls, const char *room, int round)
{
    char body [4096];
    int status = s_request (NULL, port, tls, "GET", "/healthz", ANSWER_MS, NULL, body, sizeof body);
    if (status != 200) {
        fprintf (stderr, "  round %d: /healthz said %d within %d ms\n", round, status, ANSWER_MS);
        return false;
    }
    char path [96], text [64], id [32];
    snprintf (path, sizeof path, "/ws?userId=visitor-%d", round);
    snprintf (text, sizeof text, "round %d%s", round, tls? " over tls": "");
    snprintf (id, sizeof id, "r-%d", round);
    ws_client_t *client = tls? ws_open_tls (port, path): ws_open (port, path);
    if (!client) {
        fprintf (stderr, "  round %d: no WebSocket\n", round);
        return false;
    }
    ws_send (client, "{s:s, s:s}", "action", "join-room", "roomId", room);
    json_t *history = ws_expect (client, "message-history", ANSWER_MS);
    ws_send (client, "{s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
             "message", text, "messageId", id);
    json_t *heard = history? ws_expect_where (client, "new-message", "text", text, ANSWER_MS)
                           : NULL;
    if (!history || !heard)
        fprintf (stderr, "  round %d: %s within %d ms\n", round,
                 history? "no new-message of its own": "no message-history", ANSWER_MS);
    bool ok = history && heard;
    json_decref (history);
    json_decref (heard);
    ws_close (&client);
    return ok;
}

//  ---------------------------------------------------------------------------
//  Tricklers

static conn_t s_tricklers [2 * TRICKLERS];

//  Take what the edge has answered a trickler, without waiting; mark it
//  over when its stream has ended.
static void
s_collect (conn_t *conn)
{
    while (!conn->over) {
        char buffer [512];
        int got = s_read (conn, buffer, sizeof buffer, 0);
        if (got < 0)
            return;
        if (got == 0) {
            conn->over = true;
            s_close (conn);
            return;
        }
        size_t room = sizeof conn->answer - 1 - conn->answered;
        size_t take = (size_t) got < room? (size_t) got: room;
        memcpy (conn->answer + conn->answered, buffer, take);
        conn->answered += take;
        conn->answer [conn->answered] = 0;
    }
}

static void
s_test_tricklers (int port, bool tls, int first_address)
{
    printf ("%s port: %d clients trickle headers and %d a body (a byte every %d ms) "
            "from 127.0.0.%d..%d\n", tls? "TLS": "plain", TRICKLERS, TRICKLERS,
            TRICKLE_EVERY_MS, first_address, first_address + ATTACKER_ADDRESSES - 1);
    const char *room = api_create_room (s_system.edge_port, "host", 40.0, 40.0, NULL, 0);
    REQUIRE (room);
    int64_t started = clock_mono_ms ();
    int opened = 0;
    for (int i = 0; i < 2 * TRICKLERS; i++) {
        char source [32], start [256];
        snprintf (source, sizeof source, "127.0.0.%d", first_address + i % ATTACKER_ADDRESSES);
        conn_t *conn = &s_tricklers [i];
        if (!s_open (conn, source, port, tls)) {
            conn->over = true;
            continue;
        }
        opened++;
        if (i < TRICKLERS)
            snprintf (start, sizeof start, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "X-Slow: ", port);
        else
            snprintf (start, sizeof start, "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", port);
        s_write (conn, start);
    }
    printf ("  %d opened in %lld ms\n", opened, (long long) (clock_mono_ms () - started));
    CHECK (opened == 2 * TRICKLERS);

    //  Trickle, and meanwhile be served.
    int rounds = 0, served = 0;
    int64_t next_trickle = clock_mono_ms () + TRICKLE_EVERY_MS;
    while (clock_mono_ms () - started < TRICKLE_FOR_MS) {
        if (clock_mono_ms () >= next_trickle) {
            for (int i = 0; i < 2 * TRICKLERS; i++) {
                conn_t *conn = &s_tricklers [i];
                s_collect (conn);
                if (!conn->over && s_write (conn, i < TRICKLERS? "a": " ") != 0)
                    s_collect (conn);
            }
            next_trickle += TRICKLE_EVERY_MS;
        }
        served += s_served (port, tls, room, rounds++);
        usleep (500 * 1000);            //  well within its own request rate
    }
    int still = 0;
    for (int i = 0; i < 2 * TRICKLERS; i++) {
        s_collect (&s_tricklers [i]);
        still += !s_tricklers [i].over;
    }
    printf ("  served %d of %d rounds while %d tricklers were still open\n", served, rounds, still);
    CHECK (rounds >= 3);
    CHECK (served == rounds);

    //  Their requests are late: the edge ends every one.
    int64_t deadline = started + (REQUEST_TIMEOUT_S + 6) * 1000;
    do {
        still = 0;
        for (int i = 0; i < 2 * TRICKLERS; i++) {
            s_collect (&s_tricklers [i]);
            still += !s_tricklers [i].over;
        }
        if (still)
            usleep (100 * 1000);
    } while (still && clock_mono_ms () < deadline);
    int late [2] = { 0, 0 }, json = 0, other = 0;
    for (int i = 0; i < 2 * TRICKLERS; i++) {
        conn_t *conn = &s_tricklers [i];
        if (!strncmp (conn->answer, "HTTP/1.1 408", 12)) {
            late [i >= TRICKLERS]++;
            char *body = strstr (conn->answer, "\r\n\r\n");
            *(body? body: conn->answer) = 0;
            if (i >= TRICKLERS)
                json += body && s_is_json_error (conn->answer, body + 4);
        }
        else
        if (conn->answered && other++ < 3)
            fprintf (stderr, "  a trickler was answered: %.80s\n", conn->answer);
        s_close (conn);
    }
    printf ("  after %lld ms: %d still open; 408 to %d header and %d body tricklers "
            "(%d JSON), %d other answers\n", (long long) (clock_mono_ms () - started), still,
            late [0], late [1], json, other);
    CHECK (still == 0);
    CHECK (late [0] == TRICKLERS);
    CHECK (late [1] == TRICKLERS);
    //  HAProxy 2.6 answers a request whose headers are late from its HTTP/1
    //  layer, with its built-in page, before any rule or error reply of
    //  ours applies; a late body it answers with our JSON.
    CHECK (json == late [1]);
    CHECK (other == 0);
}

//  ---------------------------------------------------------------------------
//  The caps

static void
s_test_connection_cap (void)
{
    printf ("a client address holding its %d connections is answered 429 on the next; "
            "another is served\n", CAP);
    static conn_t holders [CAP];
    int held = 0;
    for (int i = 0; i < CAP; i++)
        if (s_open (&holders [i], "127.0.0.50", s_system.edge_port, false)
        &&  s_write (&holders [i], "GET /healthz HTTP/1.1\r\n") == 0)
            held++;
    CHECK (held == CAP);
    //  The edge counts a connection once it has accepted it: a few tries.
    char head [2048], body [2048];
    int status = -1;
    for (int attempt = 0; attempt < 20 && status != 429; attempt++) {
        status = s_request ("127.0.0.50", s_system.edge_port, false, "GET", "/healthz", 5000,
                            head, body, sizeof body);
        if (status != 429)
            usleep (100 * 1000);
    }
    if (CHECK (status == 429))
        CHECK (s_is_json_error (head, body));
    CHECK (s_request ("127.0.0.51", s_system.edge_port, false, "GET", "/healthz", 5000,
                      NULL, NULL, 0) == 200);
    CHECK (s_request (NULL, s_system.edge_port, false, "GET", "/healthz", 5000,
                      NULL, NULL, 0) == 200);
    for (int i = 0; i < CAP; i++)
        s_close (&holders [i]);
}

static void
s_test_rate_cap (void)
{
    printf ("a client address past %d requests in 10 s is answered 429\n", RATE);
    int ok = 0, limited = 0, other = 0, first = -1;
    bool json = true;
    for (int i = 0; i < RATE + 50; i++) {
        char head [2048], body [2048];
        int status = s_request ("127.0.0.60", s_system.edge_port, false, "GET", "/healthz",
                                5000, head, body, sizeof body);
        if (first < 0)
            first = status;
        if (status == 200)
            ok++;
        else
        if (status == 429) {
            if (limited++ == 0)
                json = s_is_json_error (head, body);
        }
        else
            other++;
    }
    printf ("  %d answered 200, %d 429, %d otherwise\n", ok, limited, other);
    CHECK (first == 200);
    CHECK (ok >= RATE / 2 && ok <= RATE + 1);
    CHECK (limited >= 49);
    CHECK (json);
    CHECK (other == 0);
    //  Another address is not held back.
    CHECK (s_request ("127.0.0.61", s_system.edge_port, false, "GET", "/healthz", 5000,
                      NULL, NULL, 0) == 200);
}

int
main (void)
{
    harness_init ("edge");
    char cap [64], rate [64];
    snprintf (cap, sizeof cap, "EDGE_CONNECTIONS_PER_ADDR=%d", CAP);
    snprintf (rate, sizeof rate, "EDGE_REQUESTS_PER_ADDR=%d", RATE);
    const char *edge_env [] = { cap, rate, "LOG_LEVEL=warn", NULL };
    REQUIRE (harness_system_start_edge (&s_system, 1, true, NULL, edge_env) == 0);

    s_test_tricklers (s_system.edge_port, false, 2);
    s_test_tricklers (s_system.edge_tls_port, true, 10);
    s_test_connection_cap ();
    s_test_rate_cap ();
    printf ("X-Forwarded-For: not checked; nothing in the gateway shows the address it "
            "believes yet\n");
    return harness_finish ();
}
