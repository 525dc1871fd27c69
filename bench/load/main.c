/*  =========================================================================
    nearchat-load - a load generator for nearchat (and the reference peer)

        nearchat-load fanout      [--rooms 100 --members 10 --rate 5 --seconds 10 --size 100]
        nearchat-load connections [--sockets 1000 --members 10 --hold 5 --pids P1,P2,...]
        nearchat-load churn       [--sockets 1000 --rooms 100 --seconds 10]
        nearchat-load http        [--clients 32 --rooms-total 100000 --seconds 10]
        nearchat-load handshakes  [--clients 32 --seconds 10]
        common: --port 8080 --json PATH --label NAME --sources 50
                --tls (wss:// and https://) --jwt-secret SECRET (AUTH=jwt)

    One process, one thread, one epoll loop over every socket. Rooms are
    made over HTTP (POST /rooms), then every member connects over
    WebSocket (source addresses spread over 127.0.0.2.. so that ephemeral
    ports do not run out), joins its room and waits for message-history.

    fanout: each member sends --rate messages a second whose text begins
    with its send time (monotonic microseconds, one clock: sender and
    receivers are this process), its member index and a sequence number;
    every receiver records the latency of each new-message and checks, per
    sender, that the sequence numbers arrive once and in order (gaps are
    losses, repeats duplicates). connections: holds the sockets idle and
    reads the resident memory and CPU of the given server processes.
    churn: every socket connects, joins, says one thing, waits for its
    ack, leaves and closes, and the next user takes its place.
    handshakes (handshakes.c): connect, GET /healthz, close, over and over.

    --tls: every socket is TLS (OpenSSL, stepped by the same loop), each a
    full handshake. --jwt-secret: every user carries an HS256 token whose
    sub is its id, as ?token= on the upgrade and Authorization: Bearer on
    HTTP, for a gateway with AUTH=jwt and that JWT_SECRET.

    Loopback only; bounded in sockets, messages and time. It measures and
    prints; it never judges.
    =========================================================================
*/

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "loadtls.h"
#include "scenarios.h"
#include "stats.h"
#include "wsproto.h"

#define SOCKETS_MAX     50000
#define MEMBERS_MAX     100
#define IN_MAX          (256 * 1024)
#define CONNECTING_MAX  256             //  handshakes under way at once
#define ROOM_ID_MAX     64
#define TOKEN_MAX       512

typedef enum { C_IDLE, C_CONNECTING, C_HANDSHAKING, C_UPGRADING, C_JOINING, C_JOINED,
               C_DEAD } state_t;

typedef struct {
    int fd;
    SSL *ssl;                           //  --tls: the socket's session, else NULL
    bool read_wants_write;              //  TLS: a read waits for the socket to be writable
    state_t state;
    int room, member;
    char key [WSPROTO_KEY_SIZE];
    uint8_t *in;
    size_t in_size;
    uint8_t *out;
    size_t out_size, out_max, out_sent;
    uint64_t next_send_us;
    uint64_t sent;
    int index;                          //  in s_conns
    uint64_t generation;                //  churn: the how-manieth user of this slot
    uint64_t cycle_start_us;            //  churn: when this user's connect began
    int64_t last_seen [MEMBERS_MAX];    //  per sender of the room: its last sequence number
} conn_t;

static struct {
    const char *scenario, *label, *json_path, *pids, *cdf_path, *jwt_secret;
    int port, rooms, members, sockets, sources, clients, rooms_total;
    double rate, seconds, hold;
    int size;
    bool tls;
    //  --ports: the WebSockets go to these in turn (several gateways of
    //  one system); HTTP goes to the first. None: all to port.
    int ports [8], port_count;
} s_opt = { "fanout", "nearchat", NULL, NULL, NULL, NULL, 8080, 100, 10, 1000, 50, 32, 100000,
            5, 10, 5, 100, false, { 0 }, 0 };

//  The port socket index connects to.
static int
s_port_of (int index)
{
    return s_opt.port_count? s_opt.ports [index % s_opt.port_count]: s_opt.port;
}

static conn_t *s_conns;
static int s_conn_count;
static char (*s_room_ids) [ROOM_ID_MAX];
static int s_epoll;
static stats_t s_latency;
static uint64_t s_delivered, s_duplicated, s_gaps, s_acks, s_errors, s_sent, s_failed_conns;
static uint64_t s_last_delivery_us;
static bool s_churn;                    //  the churn scenario: every slot cycles
static uint64_t s_cycles, s_churn_stop_us;
static stats_t s_cycle_latency;
//  Slots whose next user connects once the current batch of events is
//  done: a new socket may reuse the old one's number, and an event of the
//  old one still in the batch must not reach the new.
static int *s_reopen;
static int s_reopen_count;
static int s_open (conn_t *conn, int index);
static int s_in_progress;               //  sockets connecting, upgrading or joining

static bool
s_is_in_progress (state_t state)
{
    return state == C_CONNECTING || state == C_HANDSHAKING || state == C_UPGRADING
        || state == C_JOINING;
}

//  Every change of state goes through here, which keeps s_in_progress.
static void
s_set_state (conn_t *conn, state_t state)
{
    s_in_progress += s_is_in_progress (state) - s_is_in_progress (conn->state);
    conn->state = state;
}

uint64_t
load_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000000 + (uint64_t) now.tv_nsec / 1000;
}

double
load_cpu_s (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return (double) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
         + (double) (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

//  ---------------------------------------------------------------------------
//  HTTP: make a room (blocking; done before the sockets open)

//  "Authorization: Bearer ...\r\n" for user_id under --jwt-secret, else "".
static void
s_bearer (const char *user_id, char *out, size_t size)
{
    *out = 0;
    char token [TOKEN_MAX];
    if (s_opt.jwt_secret && loadtls_token (s_opt.jwt_secret, user_id, token, sizeof token) > 0)
        snprintf (out, size, "Authorization: Bearer %s\r\n", token);
}

static int
s_create_room (int index, char *room_id)
{
    //  Owners of a run of their own: the gateway caps the rooms a user makes
    //  a minute, and runs follow each other against one system.
    static unsigned run_tag;
    while (!run_tag)
        run_tag = (unsigned) rand ();
    char body [160], request [1024], owner [48], bearer [TOKEN_MAX + 32];
    snprintf (owner, sizeof owner, "load-owner-%x-%d", run_tag, index);
    s_bearer (owner, bearer, sizeof bearer);
    snprintf (body, sizeof body, "{\"userId\":\"%s\",\"latitude\":%.5f,\"longitude\":%.5f}",
              owner, 10 + (index % 100) * 0.01, 10 + (index / 100) * 0.01);
    snprintf (request, sizeof request,
        "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", bearer,
        strlen (body), body);
    char answer [4096];
    if (loadtls_exchange (s_opt.port, s_opt.tls, request, answer, sizeof answer) < 0)
        return -1;
    const char *at = strstr (answer, "\"roomId\":\"");
    if (strncmp (answer, "HTTP/1.1 200", 12) != 0 || !at) {
        fprintf (stderr, "nearchat-load: POST /rooms: %.200s\n", answer);
        return -1;
    }
    at += 10;
    size_t id_length = strcspn (at, "\"");
    if (id_length == 0 || id_length >= ROOM_ID_MAX)
        return -1;
    memcpy (room_id, at, id_length);
    room_id [id_length] = 0;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Sockets

static void
s_watch (conn_t *conn, bool want_write)
{
    want_write = want_write || conn->read_wants_write;
    struct epoll_event event = { .events = EPOLLIN | (want_write? EPOLLOUT: 0),
                                 .data.ptr = conn };
    epoll_ctl (s_epoll, EPOLL_CTL_MOD, conn->fd, &event);
}

static void
s_kill (conn_t *conn)
{
    if (conn->state == C_DEAD)
        return;
    if (conn->state != C_JOINED)
        s_failed_conns++;
    s_set_state (conn, C_DEAD);
    epoll_ctl (s_epoll, EPOLL_CTL_DEL, conn->fd, NULL);
    loadtls_free (&conn->ssl);
    close (conn->fd);
    conn->fd = -1;
    conn->read_wants_write = false;
    conn->in_size = conn->out_size = conn->out_sent = 0;
    if (s_churn && load_now_us () < s_churn_stop_us)      //  a failed cycle: the next user
        s_reopen [s_reopen_count++] = conn->index;
}

//  Write what is queued; watch for writability while some is left.
static void
s_flush (conn_t *conn)
{
    while (conn->out_sent < conn->out_size) {
        uint32_t want;
        ssize_t wrote = loadtls_send (conn->fd, conn->ssl, conn->out + conn->out_sent,
                                      conn->out_size - conn->out_sent, &want);
        if (wrote < 0) {
            if (errno == EAGAIN) {
                //  (A TLS write that waits to read goes on at the next read.)
                s_watch (conn, want == EPOLLOUT);
                return;
            }
            s_kill (conn);
            return;
        }
        conn->out_sent += (size_t) wrote;
    }
    conn->out_size = conn->out_sent = 0;
    s_watch (conn, false);
}

static void
s_queue (conn_t *conn, const void *data, size_t size)
{
    if (conn->out_size + size > conn->out_max) {
        conn->out_max = (conn->out_size + size) * 2;
        conn->out = realloc (conn->out, conn->out_max);
    }
    memcpy (conn->out + conn->out_size, data, size);
    conn->out_size += size;
}

static void
s_send_text (conn_t *conn, const char *text)
{
    uint8_t frame [8192], mask [4];
    uint32_t random_bits = (uint32_t) rand ();
    memcpy (mask, &random_bits, 4);
    int length = wsproto_frame (frame, sizeof frame, WSPROTO_TEXT, text, strlen (text), mask);
    if (length > 0) {
        s_queue (conn, frame, (size_t) length);
        s_flush (conn);
    }
}

static int
s_open (conn_t *conn, int index)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    //  A source address of its own, the port chosen at connect: 4-tuples,
    //  not ports, are what must be unique.
    setsockopt (fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in from = { .sin_family = AF_INET };
    from.sin_addr.s_addr = htonl (0x7F000002u + (uint32_t) (index % s_opt.sources));
    if (bind (fd, (struct sockaddr *) &from, sizeof from)) {
        close (fd);
        return -1;
    }
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) s_port_of (index)) };
    inet_pton (AF_INET, "127.0.0.1", &to.sin_addr);
    if (connect (fd, (struct sockaddr *) &to, sizeof to) && errno != EINPROGRESS) {
        close (fd);
        return -1;
    }
    conn->fd = fd;
    s_set_state (conn, C_CONNECTING);
    conn->cycle_start_us = load_now_us ();
    struct epoll_event event = { .events = EPOLLIN | EPOLLOUT, .data.ptr = conn };
    epoll_ctl (s_epoll, EPOLL_CTL_ADD, fd, &event);
    return 0;
}

//  ---------------------------------------------------------------------------
//  Frames in

static void
s_on_new_message (conn_t *conn, const char *text, size_t size, uint64_t now_us)
{
    //  "SENT_US SENDER N ..." as s_send_due wrote it. Read by hand: sscanf
    //  was 12% of this generator's time at 300,000 deliveries/s, and the
    //  generator shares the cores with what it measures.
    const char *at = text, *end = text + size;
    uint64_t fields [3];
    for (int i = 0; i < 3; i++) {
        while (at < end && *at == ' ')
            at++;
        if (at == end || *at < '0' || *at > '9') {
            s_errors++;
            return;
        }
        uint64_t value = 0;
        while (at < end && *at >= '0' && *at <= '9' && value < UINT64_MAX / 10 - 9)
            value = value * 10 + (uint64_t) (*at++ - '0');
        fields [i] = value;
    }
    uint64_t sent_us = fields [0], n = fields [2];
    if (fields [1] >= (uint64_t) s_opt.members) {
        s_errors++;
        return;
    }
    int sender = (int) fields [1];
    s_delivered++;
    s_last_delivery_us = now_us;
    stats_record (&s_latency, now_us > sent_us? now_us - sent_us: 0);
    int64_t *last = &conn->last_seen [sender];
    if ((int64_t) n <= *last)
        s_duplicated++;
    else {
        s_gaps += (uint64_t) ((int64_t) n - *last - 1);
        *last = (int64_t) n;
    }
}

//  churn: a joined user says one thing...
static void
s_churn_say (conn_t *conn)
{
    char text [256];
    snprintf (text, sizeof text, "{\"action\":\"send-message\",\"roomId\":\"%s\","
              "\"messageId\":\"c%d-%llu\",\"message\":\"0 0 0 churn\"}",
              s_room_ids [conn->room], conn->index, (unsigned long long) conn->generation);
    s_sent++;
    s_send_text (conn, text);
}

//  ...and once it is acknowledged, leaves, closes, and the slot's next user
//  connects (until the run ends).
static void
s_churn_next (conn_t *conn, uint64_t now_us)
{
    char text [256];
    snprintf (text, sizeof text, "{\"action\":\"leave-room\",\"roomId\":\"%s\"}",
              s_room_ids [conn->room]);
    s_send_text (conn, text);
    uint8_t close_frame [16], mask [4] = { 9, 8, 7, 6 };
    const uint8_t normal [2] = { 0x03, 0xE8 };          //  1000, normal closure
    int length = wsproto_frame (close_frame, sizeof close_frame, WSPROTO_CLOSE, normal, 2, mask);
    s_queue (conn, close_frame, (size_t) length);
    s_flush (conn);
    s_cycles++;
    stats_record (&s_cycle_latency, now_us - conn->cycle_start_us);
    if (conn->fd >= 0) {
        epoll_ctl (s_epoll, EPOLL_CTL_DEL, conn->fd, NULL);
        loadtls_free (&conn->ssl);
        close (conn->fd);
        conn->fd = -1;
    }
    s_set_state (conn, C_DEAD);
    conn->in_size = conn->out_size = conn->out_sent = 0;
    if (now_us < s_churn_stop_us)
        s_reopen [s_reopen_count++] = conn->index;
}

static void
s_on_frame (conn_t *conn, const wsproto_frame_t *frame, uint64_t now_us)
{
    if (frame->opcode == WSPROTO_PING) {
        uint8_t pong [140], mask [4] = { 1, 2, 3, 4 };
        int length = wsproto_frame (pong, sizeof pong, WSPROTO_PONG, frame->payload,
                                    frame->length, mask);
        s_queue (conn, pong, (size_t) length);
        s_flush (conn);
        return;
    }
    if (frame->opcode == WSPROTO_CLOSE) {
        s_kill (conn);
        return;
    }
    if (frame->opcode != WSPROTO_TEXT)
        return;
    const char *json = (const char *) frame->payload;
    size_t size = frame->length;
    //  A look at the type, not a parse: at 300,000 frames a second the
    //  measuring must cost less than what is measured.
    const char *type = memmem (json, size < 64? size: 64, "\"type\":\"", 8);
    if (!type)
        return;
    type += 8;
    if (!strncmp (type, "new-message\"", 12)) {
        const char *text = memmem (json, size, "\"text\":\"", 8);
        if (text)
            s_on_new_message (conn, text + 8, size - (size_t) (text + 8 - json), now_us);
    }
    else
    if (!strncmp (type, "ack\"", 4)) {
        s_acks++;
        if (s_churn)
            s_churn_next (conn, now_us);
    }
    else
    if (!strncmp (type, "message-history\"", 16) && conn->state == C_JOINING) {
        s_set_state (conn, C_JOINED);
        if (s_churn)
            s_churn_say (conn);
    }
    else
    if (!strncmp (type, "error\"", 6)) {
        if (s_errors++ < 5)         //  the first few say what went wrong
            fprintf (stderr, "nearchat-load: %.*s\n", (int) (size < 300? size: 300), json);
    }
}

static void
s_join (conn_t *conn)
{
    char text [256];
    snprintf (text, sizeof text, "{\"action\":\"join-room\",\"roomId\":\"%s\"}",
              s_room_ids [conn->room]);
    s_set_state (conn, C_JOINING);
    s_send_text (conn, text);
}

static void
s_on_readable (conn_t *conn, uint64_t now_us)
{
    for (;;) {
        if (conn->in_size == IN_MAX) {
            s_kill (conn);                  //  a frame larger than we take
            return;
        }
        uint32_t want;
        ssize_t got = loadtls_recv (conn->fd, conn->ssl, conn->in + conn->in_size,
                                    IN_MAX - conn->in_size, &want);
        if (got == 0 || (got < 0 && errno != EAGAIN)) {
            s_kill (conn);
            return;
        }
        if (got < 0) {
            bool wants_write = want == EPOLLOUT;
            if (wants_write != conn->read_wants_write) {
                conn->read_wants_write = wants_write;
                s_watch (conn, conn->out_sent < conn->out_size);
            }
            break;
        }
        conn->in_size += (size_t) got;
    }
    size_t at = 0;
    if (conn->state == C_UPGRADING) {
        int length = wsproto_response ((const char *) conn->in, conn->in_size, conn->key);
        if (length < 0) {
            s_kill (conn);
            return;
        }
        if (length == 0)
            return;
        at = (size_t) length;
        s_join (conn);
    }
    while (conn->state != C_DEAD) {
        wsproto_frame_t frame;
        long used = wsproto_parse (conn->in + at, conn->in_size - at, &frame);
        if (used < 0) {
            s_kill (conn);
            return;
        }
        if (used == 0)
            break;
        s_on_frame (conn, &frame, now_us);
        at += (size_t) used;
    }
    if (conn->state != C_DEAD) {
        memmove (conn->in, conn->in + at, conn->in_size - at);
        conn->in_size -= at;
    }
}

//  The socket is ready for the protocol: send the upgrade.
static void
s_upgrade (conn_t *conn)
{
    uint8_t random [16];
    if (getrandom (random, sizeof random, 0) != sizeof random)
        memset (random, 7, sizeof random);
    wsproto_key (random, conn->key);
    char user [64], path [96 + TOKEN_MAX], request [1024 + TOKEN_MAX];
    if (s_churn)
        snprintf (user, sizeof user, "churn-%d-%llu", conn->index,
                  (unsigned long long) conn->generation);
    else
        snprintf (user, sizeof user, "load-%d-%d", conn->room, conn->member);
    int at = snprintf (path, sizeof path, "/ws?userId=%s", user);
    if (s_opt.jwt_secret) {
        //  A token's characters (base64url and dots) need no escaping.
        memcpy (path + at, "&token=", 8);
        if (loadtls_token (s_opt.jwt_secret, user, path + at + 7, sizeof path - (size_t) at - 7) < 0) {
            s_kill (conn);
            return;
        }
    }
    int length = wsproto_request (request, sizeof request, "127.0.0.1", s_port_of (conn->index), path,
                                  conn->key);
    s_set_state (conn, C_UPGRADING);
    s_queue (conn, request, (size_t) length);
    s_flush (conn);
}

static void
s_handshake (conn_t *conn)
{
    uint32_t want = 0;
    int rc = loadtls_handshake (conn->ssl, &want);
    if (rc < 0)
        s_kill (conn);
    else
    if (rc == 0)
        s_watch (conn, want == EPOLLOUT);
    else
        s_upgrade (conn);
}

static void
s_on_event (conn_t *conn, uint32_t events, uint64_t now_us)
{
    if (conn->state == C_DEAD)
        return;
    if (conn->state == C_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int error = 0;
        socklen_t size = sizeof error;
        getsockopt (conn->fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error) {
            s_kill (conn);
            return;
        }
        if (!s_opt.tls) {
            s_upgrade (conn);
            return;
        }
        conn->ssl = loadtls_new (conn->fd);
        if (!conn->ssl) {
            s_kill (conn);
            return;
        }
        s_set_state (conn, C_HANDSHAKING);
        s_handshake (conn);
        return;
    }
    if (conn->state == C_HANDSHAKING) {
        s_handshake (conn);
        return;
    }
    if ((events & EPOLLIN) || (conn->read_wants_write && (events & EPOLLOUT)))
        s_on_readable (conn, now_us);
    //  Whatever was ready, a queued write may now go on (over TLS, a write
    //  may have waited for a read).
    if (conn->state != C_DEAD && conn->out_sent < conn->out_size)
        s_flush (conn);
}

//  Run the loop until done () says so or deadline (monotonic µs) passes.
static void
s_loop (uint64_t deadline_us, bool (*done) (void), void (*tick) (uint64_t now_us))
{
    struct epoll_event events [512];
    while (!done () && load_now_us () < deadline_us) {
        int count = epoll_wait (s_epoll, events, 512, tick? 1: 10);
        uint64_t now_us = load_now_us ();
        for (int i = 0; i < count; i++)
            s_on_event (events [i].data.ptr, events [i].events, now_us);
        for (int i = 0; i < s_reopen_count; i++) {
            conn_t *conn = &s_conns [s_reopen [i]];
            conn->generation++;
            if (s_open (conn, conn->index))
                s_failed_conns++;
        }
        s_reopen_count = 0;
        if (tick)
            tick (now_us);
    }
}

//  ---------------------------------------------------------------------------
//  Setting up: rooms, sockets, joins

static int s_next_to_open;


static void
s_open_more (uint64_t now_us)
{
    (void) now_us;
    int room_for = CONNECTING_MAX - s_in_progress;
    for (; room_for > 0 && s_next_to_open < s_conn_count; room_for--, s_next_to_open++)
        if (s_open (&s_conns [s_next_to_open], s_next_to_open))
            s_kill (&s_conns [s_next_to_open]);
}

static bool
s_all_opened (void)
{
    return s_next_to_open >= s_conn_count;
}

static bool
s_all_joined (void)
{
    if (s_next_to_open < s_conn_count)
        return false;
    for (int i = 0; i < s_conn_count; i++)
        if (s_conns [i].state != C_JOINED && s_conns [i].state != C_DEAD)
            return false;
    return true;
}

//  Make the rooms and join every member; returns the seconds it took, or -1.
static double
s_set_up (int rooms, int members)
{
    s_room_ids = calloc ((size_t) rooms, ROOM_ID_MAX);
    for (int r = 0; r < rooms; r++)
        if (s_create_room (r, s_room_ids [r])) {
            fprintf (stderr, "nearchat-load: POST /rooms failed on port %d\n", s_opt.port);
            return -1;
        }
    s_conn_count = rooms * members;
    s_conns = calloc ((size_t) s_conn_count, sizeof *s_conns);
    s_reopen = calloc ((size_t) s_conn_count, sizeof *s_reopen);
    for (int i = 0; i < s_conn_count; i++) {
        conn_t *conn = &s_conns [i];
        conn->fd = -1;
        conn->index = i;
        conn->room = i / members;
        conn->member = i % members;
        conn->in = malloc (IN_MAX);
        for (int m = 0; m < MEMBERS_MAX; m++)
            conn->last_seen [m] = -1;
    }
    uint64_t started = load_now_us ();
    //  (Churning slots never all rest joined: there, all opened is enough.)
    s_loop (started + 120 * 1000000ull, s_churn? s_all_opened: s_all_joined, s_open_more);
    return (double) (load_now_us () - started) / 1e6;
}

static int
s_joined (void)
{
    int joined = 0;
    for (int i = 0; i < s_conn_count; i++)
        joined += s_conns [i].state == C_JOINED;
    return joined;
}

//  ---------------------------------------------------------------------------
//  fanout

static uint64_t s_interval_us, s_stop_sending_us;
static char *s_padding;

static void
s_send_due (uint64_t now_us)
{
    if (now_us >= s_stop_sending_us)
        return;
    for (int i = 0; i < s_conn_count; i++) {
        conn_t *conn = &s_conns [i];
        if (conn->state != C_JOINED || conn->next_send_us > now_us)
            continue;
        char text [8192];
        snprintf (text, sizeof text,
                  "{\"action\":\"send-message\",\"roomId\":\"%s\",\"messageId\":\"l%d-%llu\","
                  "\"message\":\"%llu %d %llu %s\"}", s_room_ids [conn->room], i,
                  (unsigned long long) conn->sent, (unsigned long long) load_now_us (),
                  conn->member, (unsigned long long) conn->sent, s_padding);
        conn->sent++;
        s_sent++;
        conn->next_send_us += s_interval_us;
        if (conn->next_send_us < now_us)
            conn->next_send_us = now_us;    //  behind: do not burst to catch up
        s_send_text (conn, text);
    }
}

static uint64_t s_expected;

static bool
s_all_delivered (void)
{
    return s_stop_sending_us && load_now_us () > s_stop_sending_us
        && s_delivered + s_duplicated >= s_expected;
}

static bool
s_never (void)
{
    return false;
}

static void
s_report_json (const char *fields)
{
    if (!s_opt.json_path)
        return;
    FILE *file = fopen (s_opt.json_path, "w");
    if (!file)
        return;
    fprintf (file, "{\"label\":\"%s\",\"scenario\":\"%s\",%s}\n", s_opt.label, s_opt.scenario,
             fields);
    fclose (file);
}

static int
s_fanout (void)
{
    double setup_s = s_set_up (s_opt.rooms, s_opt.members);
    if (setup_s < 0)
        return 1;
    int joined = s_joined ();
    printf ("%s fanout: %d rooms x %d members, %d of %d sockets joined in %.1f s\n", s_opt.label,
            s_opt.rooms, s_opt.members, joined, s_conn_count, setup_s);
    s_padding = malloc ((size_t) s_opt.size + 1);
    memset (s_padding, 'x', (size_t) s_opt.size);
    s_padding [s_opt.size] = 0;
    s_interval_us = (uint64_t) (1e6 / s_opt.rate);
    uint64_t start = load_now_us ();
    for (int i = 0; i < s_conn_count; i++)      //  spread the first sends over an interval
        s_conns [i].next_send_us = start + (uint64_t) rand () % s_interval_us;
    stats_reset (&s_latency);
    double cpu_start = load_cpu_s ();
    s_stop_sending_us = start + (uint64_t) (s_opt.seconds * 1e6);
    s_loop (s_stop_sending_us, s_never, s_send_due);
    //  Every member, the sender too, gets each message of its room.
    s_expected = s_sent * (uint64_t) s_opt.members;
    s_loop (load_now_us () + 5 * 1000000ull, s_all_delivered, NULL);
    uint64_t lost = s_expected > s_delivered - s_duplicated? s_expected - (s_delivered - s_duplicated): 0;
    //  Over the time the deliveries took: past saturation they go on after
    //  the sending stopped, and the rate is what the system carried.
    uint64_t delivering_us = s_last_delivery_us > start? s_last_delivery_us - start: 1;
    double rate = (double) s_delivered / ((double) delivering_us / 1e6);
    double client_cpu = (load_cpu_s () - cpu_start) / ((double) (load_now_us () - start) / 1e6) * 100;
    printf ("  sent %llu, acked %llu, delivered %llu of %llu (missing at the end %llu, gaps %llu, duplicated %llu,"
            " errors %llu, sockets failed %llu)\n",
            (unsigned long long) s_sent, (unsigned long long) s_acks,
            (unsigned long long) s_delivered, (unsigned long long) s_expected,
            (unsigned long long) lost, (unsigned long long) s_gaps,
            (unsigned long long) s_duplicated, (unsigned long long) s_errors,
            (unsigned long long) s_failed_conns);
    printf ("  deliveries/s %.0f; latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f;"
            " this generator's CPU %.0f%% of a core\n", rate,
            (double) stats_quantile (&s_latency, 0.5) / 1000,
            (double) stats_quantile (&s_latency, 0.9) / 1000,
            (double) stats_quantile (&s_latency, 0.99) / 1000, (double) s_latency.max / 1000,
            client_cpu);
    char fields [1024];
    snprintf (fields, sizeof fields,
              "\"rooms\":%d,\"members\":%d,\"rate\":%g,\"seconds\":%g,\"sent\":%llu,"
              "\"delivered\":%llu,\"expected\":%llu,\"missing\":%llu,\"gaps\":%llu,\"duplicated\":%llu,"
              "\"errors\":%llu,\"failed_sockets\":%llu,\"deliveries_per_s\":%.0f,"
              "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
              "\"tls\":%s,\"jwt\":%s,\"client_cpu_percent\":%.1f",
              s_opt.rooms, s_opt.members, s_opt.rate, s_opt.seconds,
              (unsigned long long) s_sent, (unsigned long long) s_delivered,
              (unsigned long long) s_expected, (unsigned long long) lost,
              (unsigned long long) s_gaps, (unsigned long long) s_duplicated,
              (unsigned long long) s_errors, (unsigned long long) s_failed_conns, rate,
              (double) stats_quantile (&s_latency, 0.5) / 1000,
              (double) stats_quantile (&s_latency, 0.9) / 1000,
              (double) stats_quantile (&s_latency, 0.99) / 1000, (double) s_latency.max / 1000,
              s_opt.tls? "true": "false", s_opt.jwt_secret? "true": "false", client_cpu);
    s_report_json (fields);
    if (s_opt.cdf_path) {
        //  The latency distribution, for a plot: "quantile milliseconds"
        //  lines, dense in the tail where the story is.
        FILE *file = fopen (s_opt.cdf_path, "w");
        for (double tail = 0.5; file && tail >= 0.00001; tail /= 1.25) {
            double q = 1 - tail;
            fprintf (file, "%.6f %.3f\n", q, (double) stats_quantile (&s_latency, q) / 1000);
        }
        if (file) {
            fprintf (file, "1.000000 %.3f\n", (double) s_latency.max / 1000);
            fclose (file);
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  connections

typedef struct {
    int pid;
    char name [32];
    long rss_kib;
    double cpu_s;
} process_t;

static bool
s_read_process (process_t *process)
{
    char path [64], line [512];
    snprintf (path, sizeof path, "/proc/%d/status", process->pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    while (fgets (line, sizeof line, file)) {
        if (!strncmp (line, "Name:", 5))
            sscanf (line + 5, "%31s", process->name);
        if (!strncmp (line, "VmRSS:", 6))
            process->rss_kib = atol (line + 6);
    }
    fclose (file);
    snprintf (path, sizeof path, "/proc/%d/stat", process->pid);
    file = fopen (path, "r");
    if (!file)
        return false;
    unsigned long utime = 0, stime = 0;
    //  Fields 14 and 15, after the command in parentheses.
    if (fgets (line, sizeof line, file)) {
        const char *after = strrchr (line, ')');
        if (after)
            sscanf (after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                    &utime, &stime);
    }
    fclose (file);
    process->cpu_s = (double) (utime + stime) / (double) sysconf (_SC_CLK_TCK);
    return true;
}

static int
s_read_pids (process_t *processes, int max)
{
    int count = 0;
    if (!s_opt.pids)
        return 0;
    char *copy = strdup (s_opt.pids), *save = NULL;
    for (char *pid = strtok_r (copy, ",", &save); pid && count < max; pid = strtok_r (NULL, ",", &save))
        processes [count++] = (process_t) { .pid = atoi (pid) };
    free (copy);
    return count;
}

static int
s_connections (void)
{
    process_t before [16], after [16];
    int count = s_read_pids (before, 16);
    for (int i = 0; i < count; i++)
        s_read_process (&before [i]);
    int rooms = (s_opt.sockets + s_opt.members - 1) / s_opt.members;
    double setup_s = s_set_up (rooms, s_opt.members);
    if (setup_s < 0)
        return 1;
    int joined = s_joined ();
    printf ("%s connections: %d of %d sockets joined to %d rooms in %.1f s (%.0f a second)\n",
            s_opt.label, joined, s_conn_count, rooms, setup_s, joined / setup_s);
    //  Idle: hold them, and see what the servers spend meanwhile.
    memcpy (after, before, sizeof before);
    for (int i = 0; i < count; i++)
        s_read_process (&after [i]);
    uint64_t idle_start = load_now_us ();
    s_loop (idle_start + (uint64_t) (s_opt.hold * 1e6), s_never, NULL);
    double idle_s = (double) (load_now_us () - idle_start) / 1e6;
    long rss_total = 0, rss_grown = 0;
    double cpu_total = 0;
    char each [16 * 160] = "";              //  the processes, as a JSON array's items
    size_t each_size = 0;
    for (int i = 0; i < count; i++) {
        process_t end = after [i];
        if (!s_read_process (&end))
            continue;
        double cpu = (end.cpu_s - after [i].cpu_s) / idle_s * 100;
        rss_total += end.rss_kib;
        rss_grown += end.rss_kib - before [i].rss_kib;
        cpu_total += cpu;
        printf ("  %-8s pid %-7d %7ld KiB resident (+%ld), idle CPU %.2f%% of a core\n",
                end.name, end.pid, end.rss_kib, end.rss_kib - before [i].rss_kib, cpu);
        each_size += (size_t) snprintf (each + each_size, sizeof each - each_size,
            "%s{\"name\":\"%s\",\"pid\":%d,\"rss_kib\":%ld,\"rss_grown_kib\":%ld,"
            "\"idle_cpu_percent\":%.2f}", each_size? ",": "", end.name, end.pid, end.rss_kib,
            end.rss_kib - before [i].rss_kib, cpu);
    }
    double per_socket = joined? (double) rss_grown / joined: 0;
    if (count)
        printf ("  all: %ld KiB, +%ld KiB for %d sockets = %.1f KiB a socket; idle CPU %.2f%%\n",
                rss_total, rss_grown, joined, per_socket, cpu_total);
    char fields [512 + sizeof each];
    snprintf (fields, sizeof fields,
              "\"sockets\":%d,\"joined\":%d,\"connect_per_s\":%.0f,\"rss_kib\":%ld,"
              "\"rss_grown_kib\":%ld,\"kib_per_socket\":%.1f,\"idle_cpu_percent\":%.2f,"
              "\"tls\":%s,\"jwt\":%s,\"processes\":[%s]",
              s_conn_count, joined, joined / setup_s, rss_total, rss_grown, per_socket, cpu_total,
              s_opt.tls? "true": "false", s_opt.jwt_secret? "true": "false", each);
    s_report_json (fields);
    return 0;
}

//  ---------------------------------------------------------------------------
//  churn

static int
s_churn_run (void)
{
    //  --sockets clients cycle over --rooms rooms; the rooms are made and
    //  the first round joins like the other scenarios, then every slot
    //  cycles until --seconds pass.
    s_churn = true;
    int members = (s_opt.sockets + s_opt.rooms - 1) / s_opt.rooms;
    if (members > MEMBERS_MAX)
        members = MEMBERS_MAX;
    stats_reset (&s_cycle_latency);
    uint64_t start = load_now_us ();
    s_churn_stop_us = start + (uint64_t) (s_opt.seconds * 1e6);
    double setup_s = s_set_up (s_opt.rooms, members);
    if (setup_s < 0)
        return 1;
    s_loop (s_churn_stop_us, s_never, NULL);
    //  Let the cycles under way finish.
    s_loop (load_now_us () + 2000000, s_never, NULL);
    double elapsed_s = (double) (load_now_us () - start) / 1e6;
    double rate = (double) s_cycles / elapsed_s;
    printf ("%s churn: %d clients over %d rooms, %.1f s: %llu cycles (connect, join, send, ack,"
            " leave, close), %.0f a second\n", s_opt.label, s_conn_count, s_opt.rooms, elapsed_s,
            (unsigned long long) s_cycles, rate);
    printf ("  cycle ms p50 %.2f p99 %.2f max %.2f; errors %llu, failed sockets %llu\n",
            (double) stats_quantile (&s_cycle_latency, 0.5) / 1000,
            (double) stats_quantile (&s_cycle_latency, 0.99) / 1000,
            (double) s_cycle_latency.max / 1000, (unsigned long long) s_errors,
            (unsigned long long) s_failed_conns);
    char fields [512];
    snprintf (fields, sizeof fields,
              "\"clients\":%d,\"rooms\":%d,\"cycles\":%llu,\"cycles_per_s\":%.1f,"
              "\"cycle_p50_ms\":%.3f,\"cycle_p99_ms\":%.3f,\"errors\":%llu,\"failed_sockets\":%llu",
              s_conn_count, s_opt.rooms, (unsigned long long) s_cycles, rate,
              (double) stats_quantile (&s_cycle_latency, 0.5) / 1000,
              (double) stats_quantile (&s_cycle_latency, 0.99) / 1000,
              (unsigned long long) s_errors, (unsigned long long) s_failed_conns);
    s_report_json (fields);
    return 0;
}

//  ---------------------------------------------------------------------------

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: nearchat-load fanout      [--rooms 100] [--members 10] [--rate 5] [--seconds 10] [--size 100]\n"
        "       nearchat-load connections [--sockets 1000] [--members 10] [--hold 5] [--pids P1,P2]\n"
        "       nearchat-load churn       [--sockets 1000] [--rooms 100] [--seconds 10]\n"
        "       nearchat-load http        [--clients 32] [--rooms-total 100000] [--seconds 10]\n"
        "       nearchat-load handshakes  [--clients 32] [--seconds 10]\n"
        "       common: [--port 8080] [--json PATH] [--label NAME] [--sources 50]\n"
        "               [--ports P1,P2..] (WebSockets spread over several gateways, HTTP to P1)\n"
        "               [--tls] (wss:// and https://, certificates not checked, no resumption)\n"
        "               [--jwt-secret SECRET] (an HS256 token for each user, sub = its id)\n"
        "       fanout also: [--cdf PATH] (quantile and latency lines, for a plot)\n");
}

int
main (int argc, char *argv [])
{
    if (argc < 2 || !strcmp (argv [1], "--help")) {
        s_usage (argc < 2? stderr: stdout);
        return argc < 2? 2: 0;
    }
    s_opt.scenario = argv [1];
    for (int i = 2; i < argc; i++) {
        const char *name = argv [i], *value = i + 1 < argc? argv [i + 1]: NULL;
        if (!strcmp (name, "--tls")) {
            s_opt.tls = true;
            continue;
        }
        if (!value || strncmp (name, "--", 2)) {
            fprintf (stderr, "nearchat-load: bad argument '%s'\n", name);
            s_usage (stderr);
            return 2;
        }
        i++;
        if (!strcmp (name, "--port"))          s_opt.port = atoi (value);
        else if (!strcmp (name, "--ports")) {
            char *list = strdup (value), *save = NULL;
            for (char *port = strtok_r (list, ",", &save); port; port = strtok_r (NULL, ",", &save))
                if (s_opt.port_count < 8)
                    s_opt.ports [s_opt.port_count++] = atoi (port);
            free (list);
            if (s_opt.port_count)
                s_opt.port = s_opt.ports [0];
            for (int k = 0; k < s_opt.port_count; k++)
                if (s_opt.ports [k] < 1 || s_opt.ports [k] > 65535)
                    s_opt.port = 0;         //  refused below
        }
        else if (!strcmp (name, "--rooms"))    s_opt.rooms = atoi (value);
        else if (!strcmp (name, "--members"))  s_opt.members = atoi (value);
        else if (!strcmp (name, "--sockets"))  s_opt.sockets = atoi (value);
        else if (!strcmp (name, "--sources"))  s_opt.sources = atoi (value);
        else if (!strcmp (name, "--rate"))     s_opt.rate = atof (value);
        else if (!strcmp (name, "--seconds"))  s_opt.seconds = atof (value);
        else if (!strcmp (name, "--hold"))     s_opt.hold = atof (value);
        else if (!strcmp (name, "--size"))     s_opt.size = atoi (value);
        else if (!strcmp (name, "--json"))     s_opt.json_path = value;
        else if (!strcmp (name, "--label"))    s_opt.label = value;
        else if (!strcmp (name, "--pids"))     s_opt.pids = value;
        else if (!strcmp (name, "--cdf"))      s_opt.cdf_path = value;
        else if (!strcmp (name, "--clients"))  s_opt.clients = atoi (value);
        else if (!strcmp (name, "--rooms-total")) s_opt.rooms_total = atoi (value);
        else if (!strcmp (name, "--jwt-secret"))  s_opt.jwt_secret = value;
        else {
            fprintf (stderr, "nearchat-load: unknown option '%s'\n", name);
            return 2;
        }
    }
    //  Bounded, whatever is asked.
    if (s_opt.port < 1 || s_opt.port > 65535 || s_opt.rooms < 1 || s_opt.members < 1
    ||  s_opt.members > MEMBERS_MAX || s_opt.rooms * s_opt.members > SOCKETS_MAX
    ||  s_opt.sockets < 1 || s_opt.sockets > SOCKETS_MAX || s_opt.rate <= 0 || s_opt.rate > 1000
    ||  s_opt.seconds <= 0 || s_opt.seconds > 600 || s_opt.hold <= 0 || s_opt.hold > 600
    ||  s_opt.size < 0 || s_opt.size > 4000 || s_opt.sources < 1 || s_opt.sources > 250
    ||  s_opt.clients < 1 || s_opt.clients > 1000 || s_opt.rooms_total < 1
    ||  s_opt.rooms_total > 1000000) {
        fprintf (stderr, "nearchat-load: a value is out of bounds (see --help; at most %d sockets,"
                 " %d members, 600 s)\n", SOCKETS_MAX, MEMBERS_MAX);
        return 2;
    }
    struct rlimit files;
    if (getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit (RLIMIT_NOFILE, &files);
    }
    if (s_opt.tls && loadtls_init ()) {
        fprintf (stderr, "nearchat-load: OpenSSL cannot make a client context\n");
        return 1;
    }
    s_epoll = epoll_create1 (0);
    srand ((unsigned) load_now_us ());
    if (!strcmp (s_opt.scenario, "fanout"))
        return s_fanout ();
    if (!strcmp (s_opt.scenario, "connections"))
        return s_connections ();
    if (!strcmp (s_opt.scenario, "churn"))
        return s_churn_run ();
    load_options_t options = { s_opt.port, s_opt.clients, s_opt.rooms_total, s_opt.seconds,
                               s_opt.label, s_opt.json_path, s_opt.sources, s_opt.tls,
                               s_opt.jwt_secret };
    if (!strcmp (s_opt.scenario, "http"))
        return scenario_http (&options);
    if (!strcmp (s_opt.scenario, "handshakes"))
        return scenario_handshakes (&options);
    fprintf (stderr, "nearchat-load: unknown scenario '%s'\n", s_opt.scenario);
    s_usage (stderr);
    return 2;
}
