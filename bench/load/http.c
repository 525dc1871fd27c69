/*  =========================================================================
    http.c - the http scenario of nearchat-load: create, search and join
    rates and latencies, over keep-alive connections in one epoll loop

    Three phases, each from --clients connections keeping one request in
    flight: POST /rooms until --rooms-total rooms exist in a 1 x 1 degree
    square (or --seconds x 3 pass), GET /rooms at random points of the
    square for --seconds, POST /rooms/join of random rooms by new users for
    --seconds. Each answer's status is checked (200, or it is an error);
    its latency goes into the phase's histogram. With --jwt-secret every
    request carries the token of the user it names (the search one of a
    user of its own). Plain HTTP only: --tls is refused here.
    =========================================================================
*/

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "loadtls.h"
#include "scenarios.h"
#include "stats.h"

#define ANSWER_MAX  (1024 * 1024)
#define ID_MAX      64

typedef enum { PHASE_CREATE, PHASE_SEARCH, PHASE_JOIN } phase_t;

typedef struct {
    int fd;
    char *in;
    size_t in_size;
    uint64_t sent_us;
    bool busy;
} client_t;

static struct {
    int port;
    const char *jwt_secret;
    phase_t phase;
    char (*ids) [ID_MAX];               //  the rooms made
    size_t id_count, id_max;
    uint64_t requests, errors, users, owners;
    uint64_t full;                      //  joins refused as the room was full: no error
    stats_t latency;
    int epoll;
} s_http;

static double
s_random (double low, double high)
{
    return low + (high - low) * ((double) rand () / RAND_MAX);
}

static int
s_connect (client_t *client)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) s_http.port) };
    inet_pton (AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd < 0 || connect (fd, (struct sockaddr *) &to, sizeof to)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client->fd = fd;
    client->in_size = 0;
    client->busy = false;
    struct epoll_event event = { .events = EPOLLIN, .data.ptr = client };
    epoll_ctl (s_http.epoll, EPOLL_CTL_ADD, fd, &event);
    return 0;
}

//  "Authorization: Bearer ...\r\n" for user_id under --jwt-secret, else "".
static const char *
s_bearer (const char *user_id)
{
    static char header [600];
    char token [512];
    *header = 0;
    if (s_http.jwt_secret && loadtls_token (s_http.jwt_secret, user_id, token, sizeof token) > 0)
        snprintf (header, sizeof header, "Authorization: Bearer %s\r\n", token);
    return header;
}

static void
s_send_request (client_t *client)
{
    char body [256], request [2048], user [48];
    int length;
    if (s_http.phase == PHASE_SEARCH)
        length = snprintf (request, sizeof request,
            "GET /rooms?latitude=%.6f&longitude=%.6f HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n",
            s_random (40, 41), s_random (10, 11), s_bearer ("http-searcher"));
    else {
        //  Each room its own owner: the gateway caps the rooms a user makes
        //  a minute, far below what this asks.
        if (s_http.phase == PHASE_CREATE)
            snprintf (body, sizeof body,
                      "{\"userId\":\"http-owner-%llu\",\"latitude\":%.6f,\"longitude\":%.6f}",
                      (unsigned long long) ++s_http.owners, s_random (40, 41), s_random (10, 11));
        else
            snprintf (body, sizeof body, "{\"roomId\":\"%s\",\"userId\":\"http-user-%llu\"}",
                      s_http.ids [(size_t) rand () % s_http.id_count],
                      (unsigned long long) ++s_http.users);
        snprintf (user, sizeof user, s_http.phase == PHASE_CREATE? "http-owner-%llu": "http-user-%llu",
                  (unsigned long long) (s_http.phase == PHASE_CREATE? s_http.owners: s_http.users));
        length = snprintf (request, sizeof request,
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
            "Content-Length: %zu\r\n\r\n%s", s_http.phase == PHASE_CREATE? "/rooms": "/rooms/join",
            s_bearer (user), strlen (body), body);
    }
    client->sent_us = load_now_us ();
    client->busy = true;
    if (send (client->fd, request, (size_t) length, MSG_NOSIGNAL) != length) {
        s_http.errors++;
        client->busy = false;
    }
}

//  One whole answer at the start of client->in: its length (head and
//  body), 0 while incomplete, -1 if it is no HTTP answer.
static long
s_answer_size (const client_t *client, int *status)
{
    char *end = memmem (client->in, client->in_size, "\r\n\r\n", 4);
    if (!end)
        return client->in_size > 65536? -1: 0;
    if (sscanf (client->in, "HTTP/1.1 %d", status) != 1)
        return -1;
    size_t head = (size_t) (end + 4 - client->in);
    long body = 0;
    for (char *line = client->in; line < end; line = strstr (line, "\r\n") + 2)
        if (!strncasecmp (line, "Content-Length:", 15))
            body = atol (line + 15);
    if (body < 0 || head + (size_t) body > ANSWER_MAX)
        return -1;
    return client->in_size >= head + (size_t) body? (long) (head + (size_t) body): 0;
}

static void
s_on_answer (const char *answer, size_t size, int status)
{
    if (status == 400 && s_http.phase == PHASE_JOIN && memmem (answer, size, "Room is full", 12)) {
        s_http.full++;
        return;
    }
    if (status != 200) {
        if (s_http.errors++ < 5)
            fprintf (stderr, "nearchat-load: http %d: %.*s\n", status,
                     (int) (size < 200? size: 200), answer);
        return;
    }
    if (s_http.phase != PHASE_CREATE)
        return;
    const char *at = memmem (answer, size, "\"roomId\":\"", 10);
    if (!at)
        return;
    at += 10;
    size_t length = strcspn (at, "\"");
    if (length >= ID_MAX)
        return;
    if (s_http.id_count == s_http.id_max) {
        s_http.id_max = s_http.id_max? s_http.id_max * 2: 1024;
        s_http.ids = realloc (s_http.ids, s_http.id_max * ID_MAX);
    }
    memcpy (s_http.ids [s_http.id_count], at, length);
    s_http.ids [s_http.id_count++][length] = 0;
}

static void
s_on_readable (client_t *client, bool go_on)
{
    ssize_t got = recv (client->fd, client->in + client->in_size, ANSWER_MAX - client->in_size, 0);
    if (got <= 0) {
        s_http.errors++;
        epoll_ctl (s_http.epoll, EPOLL_CTL_DEL, client->fd, NULL);
        close (client->fd);
        if (s_connect (client) == 0 && go_on)
            s_send_request (client);
        return;
    }
    client->in_size += (size_t) got;
    int status = 0;
    long size = s_answer_size (client, &status);
    if (size < 0) {
        s_http.errors++;
        client->in_size = 0;
        return;
    }
    if (size == 0)
        return;
    stats_record (&s_http.latency, load_now_us () - client->sent_us);
    s_http.requests++;
    s_on_answer (client->in, (size_t) size, status);
    memmove (client->in, client->in + size, client->in_size - (size_t) size);
    client->in_size -= (size_t) size;
    client->busy = false;
    if (go_on)
        s_send_request (client);
}

//  One phase: every client keeps a request in flight until the deadline
//  (or, creating, until target rooms exist); the last answers are awaited.
static double
s_phase (client_t *clients, int count, phase_t phase, uint64_t deadline_us, size_t target)
{
    s_http.phase = phase;
    s_http.requests = s_http.errors = s_http.full = 0;
    stats_reset (&s_http.latency);
    uint64_t start = load_now_us ();
    for (int i = 0; i < count; i++)
        s_send_request (&clients [i]);
    struct epoll_event events [256];
    for (;;) {
        bool go_on = load_now_us () < deadline_us && (!target || s_http.id_count < target);
        bool busy = false;
        for (int i = 0; i < count && !busy; i++)
            busy = clients [i].busy;
        if (!go_on && !busy)
            break;
        if (!go_on && load_now_us () > deadline_us + 5000000)
            break;                          //  an answer that never comes
        int ready = epoll_wait (s_http.epoll, events, 256, 100);
        for (int i = 0; i < ready; i++)
            s_on_readable (events [i].data.ptr, go_on);
    }
    return (double) (load_now_us () - start) / 1e6;
}

static void
s_print (const char *label, const char *what, double seconds, FILE *json, bool first)
{
    double rate = (double) s_http.requests / seconds;
    printf ("  %-7s %8llu requests in %5.1f s: %8.0f/s; ms p50 %.2f p99 %.2f max %.2f; errors %llu"
            "%s\n", what, (unsigned long long) s_http.requests, seconds, rate,
            (double) stats_quantile (&s_http.latency, 0.5) / 1000,
            (double) stats_quantile (&s_http.latency, 0.99) / 1000,
            (double) s_http.latency.max / 1000, (unsigned long long) s_http.errors,
            s_http.full? " (and rooms full)": "");
    if (json)
        fprintf (json, "%s\"%s_per_s\":%.1f,\"%s_p50_ms\":%.3f,\"%s_p99_ms\":%.3f,\"%s_errors\":%llu",
                 first? "": ",", what, rate, what,
                 (double) stats_quantile (&s_http.latency, 0.5) / 1000, what,
                 (double) stats_quantile (&s_http.latency, 0.99) / 1000, what,
                 (unsigned long long) s_http.errors);
    (void) label;
}

int
scenario_http (const load_options_t *options)
{
    if (options->tls) {
        fprintf (stderr, "nearchat-load: the http scenario is plain HTTP only (no --tls)\n");
        return 2;
    }
    s_http.port = options->port;
    s_http.jwt_secret = options->jwt_secret;
    s_http.epoll = epoll_create1 (0);
    client_t *clients = calloc ((size_t) options->clients, sizeof *clients);
    for (int i = 0; i < options->clients; i++) {
        clients [i].in = malloc (ANSWER_MAX);
        if (s_connect (&clients [i])) {
            fprintf (stderr, "nearchat-load: cannot connect to port %d\n", options->port);
            return 1;
        }
    }
    FILE *json = options->json_path? fopen (options->json_path, "w"): NULL;
    if (json)
        fprintf (json, "{\"label\":\"%s\",\"scenario\":\"http\",\"clients\":%d,", options->label,
                 options->clients);
    printf ("%s http: %d clients, rooms in a 1 x 1 degree square\n", options->label,
            options->clients);
    double seconds = s_phase (clients, options->clients, PHASE_CREATE,
                              load_now_us () + (uint64_t) (options->seconds * 3e6),
                              (size_t) options->rooms_total);
    s_print (options->label, "create", seconds, json, true);
    if (json)
        fprintf (json, ",\"rooms\":%zu", s_http.id_count);
    printf ("  (%zu rooms exist)\n", s_http.id_count);
    if (s_http.id_count) {
        seconds = s_phase (clients, options->clients, PHASE_SEARCH,
                           load_now_us () + (uint64_t) (options->seconds * 1e6), 0);
        s_print (options->label, "search", seconds, json, false);
        seconds = s_phase (clients, options->clients, PHASE_JOIN,
                           load_now_us () + (uint64_t) (options->seconds * 1e6), 0);
        s_print (options->label, "join", seconds, json, false);
    }
    if (json) {
        fprintf (json, "}\n");
        fclose (json);
    }
    for (int i = 0; i < options->clients; i++) {
        close (clients [i].fd);
        free (clients [i].in);
    }
    free (clients);
    return s_http.id_count? 0: 1;
}
