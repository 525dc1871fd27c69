/*  =========================================================================
    test_http_deadline - a whole request body must come within
    HTTP_BODY_TIMEOUT_MS, against the real system (stored, gateway, 1 shard)

    civetweb bounds each read of a body, not the whole: a client that
    trickles a byte a second gets every single read answered in time, and
    held a worker thread for as long as its body lasted. Here such clients
    (the declared body would take 200 s at that pace) are answered 408,
    JSON with CORS, and their connection is closed, within the deadline and
    a slack; meanwhile /healthz keeps answering. A body that comes slowly
    but whole within the deadline is served as any other (the deadline is
    on the whole body, not a guess about a slow client), and so is a
    request after the 408s: their threads are free again.
    Waits are bounded; the times printed are figures, not checks.
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
#include "clock.h"
#include "harness_system.h"

#define DEADLINE_MS     3000
#define SLACK_MS        3000        //  the watch, the answer, a loaded machine
#define TRICKLERS       4
#define BODY_BYTES      200         //  declared: 200 s at a byte a second
#define ANSWER_MAX      4096

static harness_system_t s_system;

//  A connection that has sent a request's headers and sends its body later.
typedef struct {
    int fd;
    char answer [ANSWER_MAX];
    size_t got;
    bool ended;                     //  the server closed the connection
    int64_t answered_ms;            //  when the first answer bytes came (0: none yet)
} client_t;

static void
s_connect (client_t *self, const char *head)
{
    memset (self, 0, sizeof *self);
    self->fd = socket (AF_INET, SOCK_STREAM, 0);
    REQUIRE (self->fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET,
                                   .sin_port = htons ((uint16_t) s_system.http_port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    REQUIRE (connect (self->fd, (struct sockaddr *) &address, sizeof address) == 0);
    REQUIRE (send (self->fd, head, strlen (head), MSG_NOSIGNAL) == (ssize_t) strlen (head));
}

//  Send size bytes of body; false when the server no longer takes them.
static bool
s_send (client_t *self, const char *bytes, size_t size)
{
    return send (self->fd, bytes, size, MSG_NOSIGNAL) == (ssize_t) size;
}

//  Read what the server sent, waiting at most timeout_ms for something.
static void
s_read (client_t *self, int timeout_ms)
{
    struct pollfd item = { .fd = self->fd, .events = POLLIN };
    while (!self->ended && poll (&item, 1, timeout_ms) == 1) {
        ssize_t rc = recv (self->fd, self->answer + self->got, ANSWER_MAX - 1 - self->got, 0);
        if (rc <= 0) {
            self->ended = true;
            break;
        }
        if (!self->answered_ms)
            self->answered_ms = clock_mono_ms ();
        self->got += (size_t) rc;
        self->answer [self->got] = 0;
        timeout_ms = 0;
    }
}

static int
s_status (const client_t *self)
{
    int status = -1;
    if (sscanf (self->answer, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

//  True when the answer is a JSON {"error"} of status with CORS.
static bool
s_json_error (const client_t *self, int status)
{
    const char *end = strstr (self->answer, "\r\n\r\n");
    const char *type = strcasestr (self->answer, "\r\nContent-Type: application/json");
    const char *cors = strcasestr (self->answer, "\r\nAccess-Control-Allow-Origin: *");
    json_t *body = end? json_loads (end + 4, JSON_DISABLE_EOF_CHECK, NULL): NULL;
    bool error = body && json_is_string (json_object_get (body, "error"));
    json_decref (body);
    bool ok = s_status (self) == status && type && type < end && cors && cors < end && error;
    if (!ok)
        fprintf (stderr, "  expected a JSON error %d with CORS, got:\n%.600s\n", status,
                 self->answer);
    return ok;
}

static bool
s_healthz (void)
{
    http_response_t response;
    int status = http_request (s_system.http_port, "GET", "/healthz", NULL, 0, &response);
    http_response_free (&response);
    return status == 200;
}

static void
s_test_trickle (void)
{
    printf ("%d clients trickle a %d-byte body, a byte a second: 408 within %d ms (+%d), "
            "their connections closed, /healthz answering meanwhile\n",
            TRICKLERS, BODY_BYTES, DEADLINE_MS, SLACK_MS);
    char head [256];
    snprintf (head, sizeof head, "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", BODY_BYTES);
    client_t *clients = calloc (TRICKLERS, sizeof *clients);
    REQUIRE (clients);
    int64_t started = clock_mono_ms ();
    for (int i = 0; i < TRICKLERS; i++) {
        s_connect (&clients [i], head);
        s_send (&clients [i], "{", 1);
    }
    int healthy = 0, asked = 0, answered = 0;
    //  A byte a second each, until every one is answered or the bound.
    for (int second = 0; second < (DEADLINE_MS + SLACK_MS) / 1000 && answered < TRICKLERS;
         second++) {
        int64_t tick = clock_mono_ms ();
        asked++;
        healthy += s_healthz ();
        answered = 0;
        for (int i = 0; i < TRICKLERS; i++) {
            s_read (&clients [i], 0);
            //  The last byte goes well before the deadline: one in flight
            //  when the gateway closes would be answered with a reset,
            //  which can reach this client before the 408 it is sent
            //  after. Without the deadline, civetweb would
            //  wait its 10 s per read for the next byte.
            if (!clients [i].answered_ms && clock_mono_ms () - started < DEADLINE_MS - 500)
                s_send (&clients [i], " ", 1);
            answered += clients [i].answered_ms != 0;
        }
        int64_t rest = 1000 - (clock_mono_ms () - tick);
        if (rest > 0 && answered < TRICKLERS)
            s_read (&clients [0], (int) rest);
    }
    for (int i = 0; i < TRICKLERS; i++) {
        s_read (&clients [i], 500);
        if (!CHECK (clients [i].answered_ms)) {
            fprintf (stderr, "  client %d had no answer after %lld ms\n", i,
                     (long long) (clock_mono_ms () - started));
            continue;
        }
        printf ("  client %d answered %d after %lld ms\n", i, s_status (&clients [i]),
                (long long) (clients [i].answered_ms - started));
        CHECK (s_json_error (&clients [i], 408));
        CHECK (strcasestr (clients [i].answer, "\r\nConnection: close") != NULL);
        //  Its connection ends after the answer: nothing more is read from it.
        s_read (&clients [i], 2000);
        CHECK (clients [i].ended);
        close (clients [i].fd);
    }
    printf ("  /healthz answered 200 %d times of %d\n", healthy, asked);
    CHECK (healthy == asked);
    free (clients);
}

static void
s_test_slow_but_whole (void)
{
    printf ("a body that comes in three pieces, slowly but whole within the deadline, "
            "is served\n");
    const char *body = "{\"userId\": \"slow\", \"latitude\": 48.85, \"longitude\": 2.35}";
    size_t size = strlen (body), third = size / 3;
    char head [256];
    snprintf (head, sizeof head, "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", size);
    client_t client;
    s_connect (&client, head);
    CHECK (s_send (&client, body, third));
    usleep (DEADLINE_MS / 4 * 1000);
    CHECK (s_send (&client, body + third, third));
    usleep (DEADLINE_MS / 4 * 1000);
    CHECK (s_send (&client, body + 2 * third, size - 2 * third));
    for (int rounds = 0; rounds < 50 && !strstr (client.answer, "\r\n\r\n{"); rounds++)
        s_read (&client, 100);
    if (!CHECK (s_status (&client) == 200))
        fprintf (stderr, "  got:\n%.600s\n", client.answer);
    CHECK (strstr (client.answer, "\"roomId\"") != NULL);
    close (client.fd);
}

static void
s_test_after (void)
{
    printf ("after the 408s: HTTP and a room as before\n");
    CHECK (s_healthz ());
    CHECK (api_create_room (s_system.http_port, "after", 48.85, 2.35, NULL, 0) != NULL);
}

int
main (void)
{
    harness_init ("http_deadline");
    char deadline [64];
    snprintf (deadline, sizeof deadline, "HTTP_BODY_TIMEOUT_MS=%d", DEADLINE_MS);
    const char *env [] = { deadline, NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_test_trickle ();
    s_test_slow_but_whole ();
    s_test_after ();
    return harness_finish ();
}
