/*  =========================================================================
    handshakes.c - the handshakes scenario of nearchat-load: new
    connections a second, each its own full TLS handshake

    --clients slots, each in a loop: connect (from a source address of its
    own, 127.0.0.2..), the TLS handshake if --tls (no session resumed: the
    context keeps none), GET /healthz with Connection: close, read the whole
    answer, close; then the slot's next connection. For --seconds; then the
    cycles under way are let finish (2 s at most). A cycle fails when the
    connect, the handshake or the request fails, or the answer is no 200.
    Counted: handshakes completed (TLS done, or the TCP connect without
    --tls) and cycles completed, a second, their latencies, failures.
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "loadtls.h"
#include "scenarios.h"
#include "stats.h"

#define ANSWER_MAX      8192
#define DRAIN_US        2000000

typedef enum { H_IDLE, H_CONNECTING, H_HANDSHAKING, H_REQUESTING, H_READING } step_t;

typedef struct {
    int fd;
    SSL *ssl;
    step_t step;
    int index;                          //  its source address
    uint64_t started_us;                //  when the connect began
    size_t sent, in_size;
    char in [ANSWER_MAX];
} slot_t;

static struct {
    const load_options_t *options;
    int epoll;
    char request [256];
    size_t request_size;
    uint64_t handshakes, cycles, failures, statuses;
    uint64_t resumed;                   //  sessions resumed: 0, or it measures the wrong thing
    stats_t handshake_latency, cycle_latency;
    bool stopping;
} s_hs;

static void
s_watch (slot_t *slot, uint32_t want)
{
    struct epoll_event event = { .events = want, .data.ptr = slot };
    epoll_ctl (s_hs.epoll, EPOLL_CTL_MOD, slot->fd, &event);
}

//  The cycle is over (failed or not): close. The slot's next connection
//  opens once the batch of events is done (a new socket may take the old
//  one's number, and an event of the old one still in the batch must not
//  reach it).
static void
s_end (slot_t *slot, bool failed)
{
    if (failed && s_hs.failures++ < 5)
        fprintf (stderr, "nearchat-load: handshakes: a cycle failed at step %d (%s)\n",
                 (int) slot->step, slot->in_size? slot->in: "no answer");
    epoll_ctl (s_hs.epoll, EPOLL_CTL_DEL, slot->fd, NULL);
    loadtls_free (&slot->ssl);
    close (slot->fd);
    slot->fd = -1;
    slot->step = H_IDLE;
}

static void
s_next (slot_t *slot)
{
    slot->sent = slot->in_size = 0;
    slot->started_us = load_now_us ();
    slot->step = H_CONNECTING;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        s_hs.failures++;
        slot->step = H_IDLE;
        return;
    }
    slot->fd = fd;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt (fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in from = { .sin_family = AF_INET };
    from.sin_addr.s_addr = htonl (0x7F000002u + (uint32_t) (slot->index % s_hs.options->sources));
    struct sockaddr_in to = { .sin_family = AF_INET,
                              .sin_port = htons ((uint16_t) s_hs.options->port) };
    inet_pton (AF_INET, "127.0.0.1", &to.sin_addr);
    struct epoll_event event = { .events = EPOLLOUT, .data.ptr = slot };
    epoll_ctl (s_hs.epoll, EPOLL_CTL_ADD, fd, &event);
    if (bind (fd, (struct sockaddr *) &from, sizeof from)
    ||  (connect (fd, (struct sockaddr *) &to, sizeof to) && errno != EINPROGRESS))
        s_end (slot, true);
}

static void
s_handshaken (slot_t *slot)
{
    s_hs.handshakes++;
    if (slot->ssl && SSL_session_reused (slot->ssl))
        s_hs.resumed++;
    stats_record (&s_hs.handshake_latency, load_now_us () - slot->started_us);
    slot->step = H_REQUESTING;
    s_watch (slot, EPOLLOUT);
}

static void
s_on_event (slot_t *slot, uint32_t events)
{
    uint32_t want = 0;
    if (slot->step == H_IDLE)
        return;                         //  ended earlier in this batch
    if (slot->step == H_CONNECTING) {
        int error = 0;
        socklen_t size = sizeof error;
        getsockopt (slot->fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error || (events & EPOLLERR)) {
            s_end (slot, true);
            return;
        }
        if (!s_hs.options->tls) {
            s_handshaken (slot);
            return;
        }
        slot->ssl = loadtls_new (slot->fd);
        if (!slot->ssl) {
            s_end (slot, true);
            return;
        }
        slot->step = H_HANDSHAKING;
    }
    if (slot->step == H_HANDSHAKING) {
        int rc = loadtls_handshake (slot->ssl, &want);
        if (rc < 0)
            s_end (slot, true);
        else
        if (rc == 0)
            s_watch (slot, want);
        else
            s_handshaken (slot);
        return;
    }
    if (slot->step == H_REQUESTING) {
        ssize_t wrote = loadtls_send (slot->fd, slot->ssl, s_hs.request + slot->sent,
                                      s_hs.request_size - slot->sent, &want);
        if (wrote < 0 && errno != EAGAIN) {
            s_end (slot, true);
            return;
        }
        if (wrote > 0)
            slot->sent += (size_t) wrote;
        if (slot->sent == s_hs.request_size) {
            slot->step = H_READING;
            want = EPOLLIN;
        }
        s_watch (slot, want);
        return;
    }
    //  H_READING: the answer, to the server's close (Connection: close).
    for (;;) {
        ssize_t got = loadtls_recv (slot->fd, slot->ssl, slot->in + slot->in_size,
                                    ANSWER_MAX - 1 - slot->in_size, &want);
        if (got > 0) {
            slot->in_size += (size_t) got;
            slot->in [slot->in_size] = 0;
            if (slot->in_size < ANSWER_MAX - 1)
                continue;
        }
        if (got < 0 && errno == EAGAIN) {
            s_watch (slot, want);
            return;
        }
        //  Closed (or reset, or too long): whole if a 200 with its body came.
        bool ok = slot->in_size >= 12 && !strncmp (slot->in, "HTTP/1.1 200", 12)
               && strstr (slot->in, "\r\n\r\n");
        if (slot->in_size >= 12 && !ok)
            s_hs.statuses++;
        if (ok) {
            s_hs.cycles++;
            stats_record (&s_hs.cycle_latency, load_now_us () - slot->started_us);
        }
        s_end (slot, !ok);
        return;
    }
}

static bool
s_any_busy (const slot_t *slots, int count)
{
    for (int i = 0; i < count; i++)
        if (slots [i].step != H_IDLE)
            return true;
    return false;
}

int
scenario_handshakes (const load_options_t *options)
{
    s_hs.options = options;
    s_hs.epoll = epoll_create1 (0);
    if (options->jwt_secret)
        fprintf (stderr, "nearchat-load: handshakes: /healthz needs no token; --jwt-secret unused\n");
    s_hs.request_size = (size_t) snprintf (s_hs.request, sizeof s_hs.request,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
        options->port);
    stats_reset (&s_hs.handshake_latency);
    stats_reset (&s_hs.cycle_latency);
    slot_t *slots = calloc ((size_t) options->clients, sizeof *slots);
    uint64_t start = load_now_us ();
    double cpu_start = load_cpu_s ();
    uint64_t stop = start + (uint64_t) (options->seconds * 1e6);
    for (int i = 0; i < options->clients; i++) {
        slots [i].index = i;
        slots [i].fd = -1;
    }
    struct epoll_event events [256];
    for (;;) {
        uint64_t now = load_now_us ();
        if (now >= stop && !s_hs.stopping) {
            s_hs.stopping = true;
            stop = now;
        }
        //  Counted over the --seconds: what finishes in the drain is not.
        if (s_hs.stopping && (!s_any_busy (slots, options->clients) || now > stop + DRAIN_US))
            break;
        for (int i = 0; i < options->clients && !s_hs.stopping; i++)
            if (slots [i].step == H_IDLE)
                s_next (&slots [i]);
        int ready = epoll_wait (s_hs.epoll, events, 256, 10);
        for (int i = 0; i < ready; i++)
            s_on_event (events [i].data.ptr, events [i].events);
    }
    double elapsed_s = (double) (stop - start) / 1e6;
    double client_cpu = (load_cpu_s () - cpu_start) / ((double) (load_now_us () - start) / 1e6) * 100;
    for (int i = 0; i < options->clients; i++)
        if (slots [i].step != H_IDLE) {
            epoll_ctl (s_hs.epoll, EPOLL_CTL_DEL, slots [i].fd, NULL);
            loadtls_free (&slots [i].ssl);
            close (slots [i].fd);
        }
    free (slots);
    double handshake_rate = (double) s_hs.handshakes / elapsed_s;
    double cycle_rate = (double) s_hs.cycles / elapsed_s;
    const char *what = options->tls? "TLS handshakes": "TCP connects";
    printf ("%s handshakes: %d clients, %.1f s: %llu %s (%.0f a second), %llu GET /healthz"
            " answered 200 (%.0f a second)\n", options->label, options->clients, elapsed_s,
            (unsigned long long) s_hs.handshakes, what, handshake_rate,
            (unsigned long long) s_hs.cycles, cycle_rate);
    printf ("  handshake ms p50 %.2f p99 %.2f; cycle ms p50 %.2f p99 %.2f; failures %llu"
            " (answers not 200: %llu); sessions resumed %llu; this generator's CPU %.0f%% of a core\n",
            (double) stats_quantile (&s_hs.handshake_latency, 0.5) / 1000,
            (double) stats_quantile (&s_hs.handshake_latency, 0.99) / 1000,
            (double) stats_quantile (&s_hs.cycle_latency, 0.5) / 1000,
            (double) stats_quantile (&s_hs.cycle_latency, 0.99) / 1000,
            (unsigned long long) s_hs.failures, (unsigned long long) s_hs.statuses,
            (unsigned long long) s_hs.resumed, client_cpu);
    if (options->json_path) {
        FILE *json = fopen (options->json_path, "w");
        if (json) {
            fprintf (json, "{\"label\":\"%s\",\"scenario\":\"handshakes\",\"tls\":%s,"
                     "\"clients\":%d,\"seconds\":%.3f,\"handshakes\":%llu,"
                     "\"handshakes_per_s\":%.1f,\"cycles\":%llu,\"cycles_per_s\":%.1f,"
                     "\"handshake_p50_ms\":%.3f,\"handshake_p99_ms\":%.3f,"
                     "\"cycle_p50_ms\":%.3f,\"cycle_p99_ms\":%.3f,\"failures\":%llu,"
                     "\"not_200\":%llu,\"resumed\":%llu,\"client_cpu_percent\":%.1f}\n",
                     options->label, options->tls? "true": "false", options->clients, elapsed_s,
                     (unsigned long long) s_hs.handshakes, handshake_rate,
                     (unsigned long long) s_hs.cycles, cycle_rate,
                     (double) stats_quantile (&s_hs.handshake_latency, 0.5) / 1000,
                     (double) stats_quantile (&s_hs.handshake_latency, 0.99) / 1000,
                     (double) stats_quantile (&s_hs.cycle_latency, 0.5) / 1000,
                     (double) stats_quantile (&s_hs.cycle_latency, 0.99) / 1000,
                     (unsigned long long) s_hs.failures, (unsigned long long) s_hs.statuses,
                     (unsigned long long) s_hs.resumed, client_cpu);
            fclose (json);
        }
    }
    return s_hs.handshakes? 0: 1;
}
