/*  =========================================================================
    wsclient.c - WebSocket and HTTP clients for the tests of the public API

    civetweb does the HTTP and the WebSocket framing of ws_client_t and of
    http_request. What is done by hand is only what civetweb's client cannot
    do: tell the status of a refused upgrade (it reports "Malformed
    message"), and hold a socket it never reads from.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>
#include <civetweb.h>
#include "harness.h"
#include "wsclient.h"
#include "clock.h"
#include "load/wsproto.h"

//  One frame received and not yet taken.
typedef struct s_frame {
    json_t *json;                   //  the parsed frame
    uint64_t arrival;               //  1 for the first frame of the connection
    struct s_frame *next;
} s_frame_t;

struct ws_client {
    struct mg_connection *conn;     //  civetweb's client connection
    char name [256];                //  path and query, for diagnostics
    pthread_mutex_t mutex;          //  guards every field below
    pthread_cond_t cond;            //  signalled on every frame and on close
    s_frame_t *head, *tail;         //  frames not yet taken, oldest first
    uint64_t arrivals;              //  frames received so far
    uint64_t last_taken;            //  arrival of the frame returned last
    char *partial;                  //  a fragmented message being put together
    size_t partial_size;
    int partial_opcode;             //  its first frame's opcode; 0 when none
    bool closed;                    //  the server closed, or the link broke
    int bad_frames;                 //  binary frames, or text that is no JSON object
    char bad_sample [128];          //  the start of the first bad frame
};

struct ws_raw {
    int fd;                         //  a plain TCP socket past the handshake
    bool answer_pings;              //  ws_raw_drain answers each ping with a pong
};

//  civetweb wants mg_init_library once before its client functions.
static pthread_once_t s_library_once = PTHREAD_ONCE_INIT;

static void
s_library_init (void)
{
    mg_init_library (MG_FEATURES_TLS);      //  for ws_open_tls and https_request
}

//  ---------------------------------------------------------------------------
//  The client thread's side: frames in, queued.

static void
s_enqueue (ws_client_t *self, const char *data, size_t size, int opcode)
{
    json_error_t error;
    json_t *json = opcode == MG_WEBSOCKET_OPCODE_TEXT
                 ? json_loadb (data, size, JSON_DECODE_ANY, &error): NULL;
    pthread_mutex_lock (&self->mutex);
    if (!json_is_object (json)) {
        if (self->bad_frames++ == 0)
            snprintf (self->bad_sample, sizeof self->bad_sample, "%s frame: %.*s",
                      opcode == MG_WEBSOCKET_OPCODE_TEXT? "text": "binary",
                      (int) (size < 80? size: 80), data);
        json_decref (json);
    }
    else {
        s_frame_t *frame = calloc (1, sizeof *frame);
        assert (frame);
        frame->json = json;
        frame->arrival = ++self->arrivals;
        if (self->tail)
            self->tail->next = frame;
        else
            self->head = frame;
        self->tail = frame;
    }
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

static int
s_on_data (struct mg_connection *conn, int flags, char *data, size_t size, void *arg)
{
    ws_client_t *self = (ws_client_t *) arg;
    int opcode = flags & 0x0f;
    bool fin = (flags & 0x80) != 0;

    if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
        pthread_mutex_lock (&self->mutex);
        self->closed = true;
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->mutex);
        return 0;
    }
    //  civetweb hands a client the server's pings: answer as a browser
    //  does, or the gateway closes an idle socket (WS_PING_S).
    if (opcode == MG_WEBSOCKET_OPCODE_PING)
        mg_websocket_client_write (conn, MG_WEBSOCKET_OPCODE_PONG, data, size);
    if (opcode == MG_WEBSOCKET_OPCODE_PING || opcode == MG_WEBSOCKET_OPCODE_PONG)
        return 1;
    if (opcode == MG_WEBSOCKET_OPCODE_CONTINUATION || !fin) {
        //  A fragment: gather until the last one (only this thread touches these).
        if (opcode != MG_WEBSOCKET_OPCODE_CONTINUATION) {
            free (self->partial);
            self->partial = NULL;
            self->partial_size = 0;
            self->partial_opcode = opcode;
        }
        char *grown = realloc (self->partial, self->partial_size + size + 1);
        assert (grown);
        memcpy (grown + self->partial_size, data, size);
        self->partial = grown;
        self->partial_size += size;
        if (fin) {
            s_enqueue (self, self->partial, self->partial_size, self->partial_opcode);
            free (self->partial);
            self->partial = NULL;
            self->partial_size = 0;
            self->partial_opcode = 0;
        }
        return 1;
    }
    s_enqueue (self, data, size, opcode);
    return 1;
}

static void
s_on_close (const struct mg_connection *conn, void *arg)
{
    (void) conn;
    ws_client_t *self = (ws_client_t *) arg;
    pthread_mutex_lock (&self->mutex);
    self->closed = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

//  ---------------------------------------------------------------------------
//  The test's side

static ws_client_t *s_open (int port, const char *path_and_query, bool tls);

ws_client_t *
ws_open (int port, const char *path_and_query)
{
    return s_open (port, path_and_query, false);
}

ws_client_t *
ws_open_tls (int port, const char *path_and_query)
{
    return s_open (port, path_and_query, true);
}

static ws_client_t *
s_open (int port, const char *path_and_query, bool tls)
{
    assert (path_and_query);
    pthread_once (&s_library_once, s_library_init);
    ws_client_t *self = calloc (1, sizeof *self);
    assert (self);
    snprintf (self->name, sizeof self->name, "%s", path_and_query);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    char error [256] = "";
    self->conn = mg_connect_websocket_client ("127.0.0.1", port, tls, error, sizeof error,
                                              path_and_query, NULL, s_on_data, s_on_close, self);
    if (!self->conn) {
        fprintf (stderr, "  ws %s: could not connect: %s\n", path_and_query, error);
        pthread_mutex_destroy (&self->mutex);
        pthread_cond_destroy (&self->cond);
        free (self);
        return NULL;
    }
    return self;
}

static void
s_free_frames (ws_client_t *self)
{
    while (self->head) {
        s_frame_t *frame = self->head;
        self->head = frame->next;
        json_decref (frame->json);
        free (frame);
    }
    self->tail = NULL;
}

//  Wait on the condition until deadline (monotonic ms). False on timeout.
static bool
s_wait (ws_client_t *self, int64_t deadline)
{
    int64_t left = deadline - clock_mono_ms ();
    if (left <= 0)
        return false;
    struct timespec until = clock_after (CLOCK_REALTIME, left);
    pthread_cond_timedwait (&self->cond, &self->mutex, &until);
    return true;
}

void
ws_close (ws_client_t **self_p)
{
    assert (self_p);
    ws_client_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->mutex);
    bool closed = self->closed;
    pthread_mutex_unlock (&self->mutex);
    if (!closed) {
        //  A clean close: the server answers with its own close frame and
        //  ends the connection, which lets civetweb's thread end at once.
        mg_websocket_client_write (self->conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE,
                                   "\x03\xe8", 2);
        int64_t deadline = clock_mono_ms () + 2000;
        pthread_mutex_lock (&self->mutex);
        while (!self->closed && s_wait (self, deadline))
            ;
        pthread_mutex_unlock (&self->mutex);
    }
    mg_close_connection (self->conn);
    if (self->bad_frames)
        fprintf (stderr, "  ws %s: %d frames were no JSON object text, the first: %s\n",
                 self->name, self->bad_frames, self->bad_sample);
    CHECK (self->bad_frames == 0);
    s_free_frames (self);
    free (self->partial);
    pthread_mutex_destroy (&self->mutex);
    pthread_cond_destroy (&self->cond);
    free (self);
    *self_p = NULL;
}

int
ws_send_raw (ws_client_t *self, const char *data, size_t size)
{
    assert (self);
    int rc = mg_websocket_client_write (self->conn, MG_WEBSOCKET_OPCODE_TEXT, data, size);
    if (rc <= 0)
        fprintf (stderr, "  ws %s: write failed\n", self->name);
    return rc > 0? 0: -1;
}

int
ws_send_json (ws_client_t *self, json_t *value)
{
    assert (self);
    if (!value)
        return -1;
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (value);
    if (!text)
        return -1;
    int rc = ws_send_raw (self, text, strlen (text));
    free (text);
    return rc;
}

int
ws_send (ws_client_t *self, const char *format, ...)
{
    assert (self);
    assert (format);
    va_list args;
    va_start (args, format);
    json_error_t error;
    json_t *value = json_vpack_ex (&error, 0, format, args);
    va_end (args);
    if (!value) {
        fprintf (stderr, "  ws_send: bad format '%s': %s\n", format, error.text);
        return -1;
    }
    return ws_send_json (self, value);
}

static bool
s_matches (json_t *json, const char *type, const char *key, const char *value)
{
    if (type) {
        const char *got = json_string_value (json_object_get (json, "type"));
        if (!got || strcmp (got, type))
            return false;
    }
    if (key) {
        const char *got = json_string_value (json_object_get (json, key));
        if (!got || !value || strcmp (got, value))
            return false;
    }
    return true;
}

//  What a frame is looked for by: its type (NULL: any), and a string field
//  key equal to value (key NULL: no such condition).
typedef struct {
    const char *type, *key, *value;
} s_pattern_t;

static bool
s_matches_any (json_t *json, const s_pattern_t *patterns, int count)
{
    for (int i = 0; i < count; i++)
        if (s_matches (json, patterns [i].type, patterns [i].key, patterns [i].value))
            return true;
    return false;
}

//  Take the oldest queued frame that matches one of the patterns, or NULL.
//  Under the mutex.
static json_t *
s_take (ws_client_t *self, const s_pattern_t *patterns, int count)
{
    s_frame_t *previous = NULL;
    for (s_frame_t *frame = self->head; frame; previous = frame, frame = frame->next)
        if (s_matches_any (frame->json, patterns, count)) {
            if (previous)
                previous->next = frame->next;
            else
                self->head = frame->next;
            if (self->tail == frame)
                self->tail = previous;
            json_t *json = frame->json;
            self->last_taken = frame->arrival;
            free (frame);
            return json;
        }
    return NULL;
}

static json_t *
s_expect (ws_client_t *self, const s_pattern_t *patterns, int count, int timeout_ms)
{
    assert (self);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    pthread_mutex_lock (&self->mutex);
    json_t *json = NULL;
    while (!(json = s_take (self, patterns, count)) && !self->closed && s_wait (self, deadline))
        ;
    if (!json) {
        fprintf (stderr, "  ws %s: nothing within %d ms%s of", self->name, timeout_ms,
                 self->closed? " (closed)": "");
        for (int i = 0; i < count; i++)
            fprintf (stderr, "%s %s%s%s%s%s", i? " or": "",
                     patterns [i].type? patterns [i].type: "any frame",
                     patterns [i].key? " with ": "", patterns [i].key? patterns [i].key: "",
                     patterns [i].key? "=": "", patterns [i].key? patterns [i].value: "");
        fprintf (stderr, "; queued:");
        for (s_frame_t *frame = self->head; frame; frame = frame->next) {
            const char *got = json_string_value (json_object_get (frame->json, "type"));
            fprintf (stderr, " %s", got? got: "?");
            if (got && !strcmp (got, "error"))
                fprintf (stderr, "(%lld %s)", json_integer_value (json_object_get (frame->json, "status")),
                         json_string_value (json_object_get (frame->json, "error")));
        }
        fprintf (stderr, "\n");
    }
    pthread_mutex_unlock (&self->mutex);
    return json;
}

json_t *
ws_next (ws_client_t *self, int timeout_ms)
{
    s_pattern_t any = { NULL, NULL, NULL };
    return s_expect (self, &any, 1, timeout_ms);
}

json_t *
ws_expect (ws_client_t *self, const char *type, int timeout_ms)
{
    assert (type);
    s_pattern_t pattern = { type, NULL, NULL };
    return s_expect (self, &pattern, 1, timeout_ms);
}

json_t *
ws_expect_where (ws_client_t *self, const char *type, const char *key, const char *value,
                 int timeout_ms)
{
    assert (type && key && value);
    s_pattern_t pattern = { type, key, value };
    return s_expect (self, &pattern, 1, timeout_ms);
}

json_t *
ws_expect_either (ws_client_t *self, const char *type, const char *key, const char *value,
                  const char *other_type, const char *other_key, const char *other_value,
                  int timeout_ms)
{
    assert (type && other_type);
    s_pattern_t patterns [2] = { { type, key, value }, { other_type, other_key, other_value } };
    return s_expect (self, patterns, 2, timeout_ms);
}

bool
ws_quiet_where (ws_client_t *self, const char *type, const char *key, const char *value, int ms)
{
    assert (self);
    int64_t deadline = clock_mono_ms () + ms;
    pthread_mutex_lock (&self->mutex);
    bool quiet = true;
    do {
        for (s_frame_t *frame = self->head; frame && quiet; frame = frame->next)
            if (s_matches (frame->json, type, key, value))
                quiet = false;
    } while (quiet && s_wait (self, deadline));
    pthread_mutex_unlock (&self->mutex);
    if (!quiet)
        fprintf (stderr, "  ws %s: a %s frame%s%s%s%s came, none was expected\n", self->name,
                 type? type: "", key? " with ": "", key? key: "", key? "=": "",
                 key && value? value: "");
    return quiet;
}

bool
ws_quiet (ws_client_t *self, const char *type, int ms)
{
    return ws_quiet_where (self, type, NULL, NULL, ms);
}

size_t
ws_pending (ws_client_t *self, const char *type)
{
    assert (self);
    size_t count = 0;
    pthread_mutex_lock (&self->mutex);
    for (s_frame_t *frame = self->head; frame; frame = frame->next)
        if (s_matches (frame->json, type, NULL, NULL))
            count++;
    pthread_mutex_unlock (&self->mutex);
    return count;
}

void
ws_discard (ws_client_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    s_free_frames (self);
    pthread_mutex_unlock (&self->mutex);
}

size_t
ws_drop (ws_client_t *self, const char *type)
{
    assert (self && type);
    s_pattern_t pattern = { type, NULL, NULL };
    size_t count = 0;
    pthread_mutex_lock (&self->mutex);
    uint64_t last_taken = self->last_taken;
    json_t *json;
    while ((json = s_take (self, &pattern, 1))) {
        json_decref (json);
        count++;
    }
    self->last_taken = last_taken;
    pthread_mutex_unlock (&self->mutex);
    return count;
}

uint64_t
ws_arrival (ws_client_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    uint64_t arrival = self->last_taken;
    pthread_mutex_unlock (&self->mutex);
    return arrival;
}

bool
ws_is_closed (ws_client_t *self, int timeout_ms)
{
    assert (self);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    pthread_mutex_lock (&self->mutex);
    while (!self->closed && s_wait (self, deadline))
        ;
    bool closed = self->closed;
    pthread_mutex_unlock (&self->mutex);
    return closed;
}

const char *
ws_name (ws_client_t *self)
{
    assert (self);
    return self->name;
}

//  ---------------------------------------------------------------------------
//  WebSocket by hand

static int
s_tcp_connect (int port, int rcvbuf)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    //  Before connect, so that the window the peer sees is small from the start.
    if (rcvbuf > 0)
        setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    if (connect (fd, (struct sockaddr *) &address, sizeof address)) {
        close (fd);
        return -1;
    }
    return fd;
}

static int
s_write_all (int fd, const void *data, size_t size)
{
    const char *next = (const char *) data;
    while (size) {
        ssize_t sent = send (fd, next, size, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0)
            return -1;
        next += sent;
        size -= (size_t) sent;
    }
    return 0;
}

//  Read one byte within the deadline: 1, 0 at end of stream, -1 on error
//  or timeout.
static int
s_read_byte (int fd, char *byte, int64_t deadline)
{
    int64_t left = deadline - clock_mono_ms ();
    struct pollfd item = { .fd = fd, .events = POLLIN };
    if (left <= 0 || poll (&item, 1, (int) left) != 1)
        return -1;
    ssize_t got = recv (fd, byte, 1, 0);
    return got == 1? 1: got == 0? 0: -1;
}

//  Send the upgrade request and read the answer's head, byte by byte so
//  that nothing past it is consumed. Returns the status, or -1; the head
//  goes to head_out (at most head_size bytes) when it is not NULL.
static int
s_upgrade_head (int fd, int port, const char *path_and_query, const char *headers,
                char *head_out, size_t head_size);

static int
s_upgrade (int fd, int port, const char *path_and_query)
{
    return s_upgrade_head (fd, port, path_and_query, NULL, NULL, 0);
}

static int
s_upgrade_head (int fd, int port, const char *path_and_query, const char *headers,
                char *head_out, size_t head_size)
{
    char request [4096];
    int size = snprintf (request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n%s\r\n", path_and_query, port, headers? headers: "");
    if (size <= 0 || (size_t) size >= sizeof request || s_write_all (fd, request, (size_t) size))
        return -1;
    char head [8192];
    size_t used = 0;
    int64_t deadline = clock_mono_ms () + 5000;
    while (used < sizeof head - 1) {
        if (s_read_byte (fd, head + used, deadline) != 1)
            break;
        used++;
        if (used >= 4 && memcmp (head + used - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head [used] = 0;
    if (head_out)
        snprintf (head_out, head_size, "%s", head);
    int status = -1;
    if (sscanf (head, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

ws_raw_t *
ws_raw_try (int port, const char *path_and_query, int *status, char *body, size_t body_size)
{
    return ws_raw_try_with (port, path_and_query, NULL, status, body, body_size);
}

ws_raw_t *
ws_raw_try_with (int port, const char *path_and_query, const char *headers, int *status,
                 char *body, size_t body_size)
{
    assert (status && body && body_size);
    body [0] = 0;
    int fd = s_tcp_connect (port, 0);
    if (fd < 0) {
        *status = -1;
        return NULL;
    }
    char head [8192];
    *status = s_upgrade_head (fd, port, path_and_query, headers, head, sizeof head);
    if (*status == 101) {
        ws_raw_t *self = calloc (1, sizeof *self);
        assert (self);
        self->fd = fd;
        return self;
    }
    //  A refusal: its body, as long as Content-Length says (or to the end).
    long length = -1;
    for (char *line = head; line && *line; line = strstr (line, "\r\n")) {
        line += line [0] == '\r'? 2: 0;
        if (strncasecmp (line, "Content-Length:", 15) == 0)
            length = atol (line + 15);
    }
    size_t used = 0;
    int64_t deadline = clock_mono_ms () + 5000;
    while (used + 1 < body_size && (length < 0 || (long) used < length))
        if (s_read_byte (fd, body + used, deadline) == 1)
            used++;
        else
            break;
    body [used] = 0;
    close (fd);
    return NULL;
}

int
ws_handshake_status (int port, const char *path_and_query)
{
    int fd = s_tcp_connect (port, 0);
    if (fd < 0)
        return -1;
    int status = s_upgrade (fd, port, path_and_query);
    close (fd);
    return status;
}

ws_raw_t *
ws_raw_open (int port, const char *path_and_query, int rcvbuf)
{
    int fd = s_tcp_connect (port, rcvbuf);
    if (fd < 0)
        return NULL;
    int status = s_upgrade (fd, port, path_and_query);
    if (status != 101) {
        fprintf (stderr, "  raw ws %s: upgrade answered %d\n", path_and_query, status);
        close (fd);
        return NULL;
    }
    ws_raw_t *self = calloc (1, sizeof *self);
    assert (self);
    self->fd = fd;
    return self;
}

size_t
ws_raw_build (unsigned char *out, size_t size_max, int opcode, bool fin, bool masked,
              const void *payload, size_t size)
{
    const unsigned char mask [4] = { 0x12, 0x34, 0x56, 0x78 };
    assert (size_max >= size + 14);
    //  A whole masked frame is wslay's (wsproto_frame); a fragment, which
    //  wsproto_frame does not make, and what a test sends to be refused
    //  (unmasked, a control frame over 125 bytes) are made by hand below.
    if (fin && masked && ((opcode & 0x08) == 0 || size <= 125)) {
        int length = wsproto_frame (out, size_max, opcode, payload, size, mask);
        assert (length > 0);
        return (size_t) length;
    }
    size_t head_size = 0;
    out [head_size++] = (unsigned char) ((fin? 0x80: 0) | (opcode & 0x0f));
    unsigned char mask_bit = masked? 0x80: 0;
    if (size < 126)
        out [head_size++] = mask_bit | (unsigned char) size;
    else
    if (size < 65536) {
        out [head_size++] = mask_bit | 126;
        out [head_size++] = (unsigned char) (size >> 8);
        out [head_size++] = (unsigned char) size;
    }
    else {
        out [head_size++] = mask_bit | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out [head_size++] = (unsigned char) ((uint64_t) size >> shift);
    }
    if (masked) {
        memcpy (out + head_size, mask, 4);
        head_size += 4;
    }
    const unsigned char *bytes = payload;
    for (size_t i = 0; i < size; i++)
        out [head_size + i] = masked? bytes [i] ^ mask [i % 4]: bytes [i];
    return head_size + size;
}

int
ws_raw_write (ws_raw_t *self, const void *bytes, size_t size)
{
    assert (self);
    return s_write_all (self->fd, bytes, size)? -1: 0;
}

int
ws_raw_frame (ws_raw_t *self, int opcode, bool fin, bool masked, const void *payload,
              size_t size)
{
    assert (self);
    unsigned char *frame = malloc (size + 14);
    assert (frame);
    size_t length = ws_raw_build (frame, size + 14, opcode, fin, masked, payload, size);
    int rc = ws_raw_write (self, frame, length);
    free (frame);
    return rc;
}

int
ws_raw_send (ws_raw_t *self, const char *text)
{
    assert (self && text);
    return ws_raw_frame (self, MG_WEBSOCKET_OPCODE_TEXT, true, true, text, strlen (text));
}

void
ws_raw_answer_pings (ws_raw_t *self, bool answer)
{
    assert (self);
    self->answer_pings = answer;
}

//  Take whole server frames (unmasked) off the front of buffer; note a
//  close frame in drained. Returns the bytes taken. The frames are read
//  by wslay, through the load generator's wsproto_parse (one framing
//  implementation in the project); a frame it calls malformed ends the
//  parse, and the test that waits for more sees nothing more.
static size_t
s_parse_frames (ws_raw_t *self, const unsigned char *buffer, size_t size,
                ws_raw_drained_t *drained)
{
    size_t taken = 0;
    while (size - taken >= 2 && !drained->close_code) {
        wsproto_frame_t frame;
        long used = wsproto_parse (buffer + taken, size - taken, &frame);
        if (used <= 0)
            break;
        const char *payload = (const char *) frame.payload;
        size_t length = frame.length;
        drained->frames++;
        if (frame.opcode == MG_WEBSOCKET_OPCODE_PING) {
            drained->pings++;
            if (self && self->answer_pings)
                ws_raw_frame (self, MG_WEBSOCKET_OPCODE_PONG, true, true, payload, length);
        }
        if (frame.opcode == MG_WEBSOCKET_OPCODE_PONG) {
            drained->pongs++;
            snprintf (drained->pong, sizeof drained->pong, "%.*s", (int) length, payload);
        }
        if (frame.opcode == MG_WEBSOCKET_OPCODE_TEXT) {
            drained->texts++;
            snprintf (drained->text, sizeof drained->text, "%.*s", (int) length, payload);
        }
        if (frame.opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
            drained->close_code = length >= 2? ((uint8_t) payload [0] << 8) | (uint8_t) payload [1]
                                             : 1005;
            if (length > 2)
                snprintf (drained->close_reason, sizeof drained->close_reason, "%.*s",
                          (int) (length - 2), payload + 2);
        }
        taken += (size_t) used;
    }
    return taken;
}

size_t
ws_raw_parse (const unsigned char *buffer, size_t size, ws_raw_drained_t *drained)
{
    assert (buffer && drained);
    return s_parse_frames (NULL, buffer, size, drained);
}

bool
ws_raw_drain (ws_raw_t *self, int timeout_ms, ws_raw_drained_t *drained)
{
    assert (self);
    ws_raw_drained_t local;
    if (!drained)
        drained = &local;
    memset (drained, 0, sizeof *drained);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    size_t capacity = 1 << 20, used = 0;
    unsigned char *buffer = malloc (capacity);
    assert (buffer);
    while (!drained->close_code && !drained->ended) {
        int64_t left = deadline - clock_mono_ms ();
        struct pollfd item = { .fd = self->fd, .events = POLLIN };
        if (left <= 0 || poll (&item, 1, (int) left) != 1)
            break;
        if (used == capacity) {
            capacity *= 2;
            buffer = realloc (buffer, capacity);
            assert (buffer);
        }
        ssize_t got = recv (self->fd, buffer + used, capacity - used, 0);
        if (got > 0) {
            drained->bytes += (size_t) got;
            used += (size_t) got;
            size_t taken = s_parse_frames (self, buffer, used, drained);
            memmove (buffer, buffer + taken, used - taken);
            used -= taken;
        }
        else
        if (got == 0 || errno != EINTR)
            drained->ended = true;
    }
    free (buffer);
    return drained->close_code || drained->ended;
}

void
ws_raw_close (ws_raw_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        close ((*self_p)->fd);
        free (*self_p);
        *self_p = NULL;
    }
}

void
ws_raw_reset (ws_raw_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        struct linger reset = { .l_onoff = 1, .l_linger = 0 };
        setsockopt ((*self_p)->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    ws_raw_close (self_p);
}

//  ---------------------------------------------------------------------------
//  HTTP

int
http_request (int port, const char *method, const char *path, const void *body, size_t size,
              http_response_t *response)
{
    return http_request_with (port, method, path, NULL, body, size, response);
}

static int s_http (int port, bool tls, const char *method, const char *path,
                   const char *headers, const void *body, size_t size,
                   http_response_t *response);

int
http_request_with (int port, const char *method, const char *path, const char *headers,
                   const void *body, size_t size, http_response_t *response)
{
    return s_http (port, false, method, path, headers, body, size, response);
}

int
https_request (int port, const char *method, const char *path, const void *body, size_t size,
               http_response_t *response)
{
    return s_http (port, true, method, path, NULL, body, size, response);
}

static int
s_http (int port, bool tls, const char *method, const char *path, const char *headers,
        const void *body, size_t size, http_response_t *response)
{
    assert (method && path && response);
    pthread_once (&s_library_once, s_library_init);
    memset (response, 0, sizeof *response);
    response->status = -1;
    response->body = strdup ("");
    char error [256] = "";
    struct mg_connection *conn = mg_connect_client ("127.0.0.1", port, tls, error, sizeof error);
    if (!conn)
        return -1;
    mg_printf (conn, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n",
               method, path, port);
    if (headers)
        mg_printf (conn, "%s", headers);
    if (body)
        mg_printf (conn, "Content-Type: application/json\r\nContent-Length: %zu\r\n", size);
    mg_printf (conn, "\r\n");
    if (body && size)
        mg_write (conn, body, size);
    if (mg_get_response (conn, error, sizeof error, 5000) < 0) {
        mg_close_connection (conn);
        return -1;
    }
    const struct mg_response_info *info = mg_get_response_info (conn);
    response->status = info->status_code;
    for (int i = 0; i < info->num_headers; i++) {
        const char *name = info->http_headers [i].name, *value = info->http_headers [i].value;
        if (!strcasecmp (name, "Content-Type"))
            snprintf (response->content_type, sizeof response->content_type, "%s", value);
        else
        if (!strcasecmp (name, "Access-Control-Allow-Origin"))
            snprintf (response->allow_origin, sizeof response->allow_origin, "%s", value);
        else
        if (!strcasecmp (name, "Access-Control-Allow-Methods"))
            snprintf (response->allow_methods, sizeof response->allow_methods, "%s", value);
        else
        if (!strcasecmp (name, "Access-Control-Allow-Headers"))
            snprintf (response->allow_headers, sizeof response->allow_headers, "%s", value);
        else
        if (!strcasecmp (name, "Access-Control-Expose-Headers"))
            snprintf (response->expose_headers, sizeof response->expose_headers, "%s", value);
        else
        if (!strcasecmp (name, "X-More"))
            snprintf (response->more, sizeof response->more, "%s", value);
    }
    size_t capacity = 4096;
    char *text = malloc (capacity);
    assert (text);
    size_t used = 0;
    while (true) {
        if (capacity - used < 4096) {
            capacity *= 2;
            text = realloc (text, capacity);
            assert (text);
        }
        int got = mg_read (conn, text + used, capacity - used - 1);
        if (got <= 0)
            break;
        used += (size_t) got;
    }
    text [used] = 0;
    free (response->body);
    response->body = text;
    response->size = used;
    mg_close_connection (conn);
    return response->status;
}

void
http_response_free (http_response_t *response)
{
    assert (response);
    free (response->body);
    response->body = NULL;
}

int
http_call (int port, const char *method, const char *path, const char *body_or_null,
           json_t **out)
{
    if (out)
        *out = NULL;
    http_response_t response;
    int status = http_request (port, method, path, body_or_null,
                               body_or_null? strlen (body_or_null): 0, &response);
    if (status < 0) {
        fprintf (stderr, "  %s %s: no answer\n", method, path);
        CHECK (status >= 0);
        http_response_free (&response);
        return -1;
    }
    if (strncasecmp (response.content_type, "application/json", 16) != 0)
        fprintf (stderr, "  %s %s -> %d: Content-Type is '%s', not application/json\n",
                 method, path, status, response.content_type);
    CHECK (strncasecmp (response.content_type, "application/json", 16) == 0);
    if (strcmp (response.allow_origin, "*") != 0)
        fprintf (stderr, "  %s %s -> %d: Access-Control-Allow-Origin is '%s', not *\n",
                 method, path, status, response.allow_origin);
    CHECK (strcmp (response.allow_origin, "*") == 0);
    json_error_t error;
    json_t *json = json_loadb (response.body, response.size, JSON_DECODE_ANY, &error);
    if (!json)
        fprintf (stderr, "  %s %s -> %d: the body is no JSON (%s): %.200s\n",
                 method, path, status, error.text, response.body);
    CHECK (json != NULL);
    if (status >= 400) {
        const char *text = json_string_value (json_object_get (json, "error"));
        if (!text || !*text)
            fprintf (stderr, "  %s %s -> %d: no {\"error\": \"...\"} in %.200s\n",
                     method, path, status, response.body);
        CHECK (text && *text);
    }
    http_response_free (&response);
    if (out)
        *out = json;
    else
        json_decref (json);
    return status;
}

int
http_callf (int port, const char *method, const char *path, json_t **out,
            const char *format, ...)
{
    assert (format);
    va_list args;
    va_start (args, format);
    json_error_t error;
    json_t *value = json_vpack_ex (&error, 0, format, args);
    va_end (args);
    if (!value) {
        fprintf (stderr, "  http_callf: bad format '%s': %s\n", format, error.text);
        CHECK (value != NULL);
        return -1;
    }
    char *body = json_dumps (value, JSON_COMPACT);
    json_decref (value);
    int status = http_call (port, method, path, body, out);
    free (body);
    return status;
}

char *
http_escape (const char *text, char *out, size_t size)
{
    assert (text && out && size);
    static const char hex [] = "0123456789ABCDEF";
    size_t used = 0;
    for (const unsigned char *next = (const unsigned char *) text; *next && used + 4 < size; next++)
        if ((*next >= 'a' && *next <= 'z') || (*next >= 'A' && *next <= 'Z')
        ||  (*next >= '0' && *next <= '9') || strchr ("-_.~", *next))
            out [used++] = (char) *next;
        else {
            out [used++] = '%';
            out [used++] = hex [*next >> 4];
            out [used++] = hex [*next & 15];
        }
    out [used] = 0;
    return out;
}
