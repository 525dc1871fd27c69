/*  =========================================================================
    tlsclient.c - TLS by hand (OpenSSL) for the tests of the edge

    Each connection is a non-blocking socket once connected, so every wait
    (the handshake, a read, a write) is a poll with a deadline: a test that
    holds hundreds of them never hangs on one.
    =========================================================================
*/

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "tlsclient.h"
#include "clock.h"

struct tls_raw {
    int fd;                         //  the TCP socket, non-blocking
    SSL *ssl;                       //  the TLS session over it
};

//  One context for every tls_raw_t: TLS 1.2 or later, no checks.
static SSL_CTX *s_context;
static pthread_once_t s_context_once = PTHREAD_ONCE_INIT;

static void
s_context_init (void)
{
    s_context = SSL_CTX_new (TLS_client_method ());
    assert (s_context);
    SSL_CTX_set_min_proto_version (s_context, TLS1_2_VERSION);
    SSL_CTX_set_verify (s_context, SSL_VERIFY_NONE, NULL);
}

int
tcp_connect_from (const char *source, int port, int rcvbuf)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source) {
        //  Any of 127/8 is this machine's: the edge sees another client.
        struct sockaddr_in from = { .sin_family = AF_INET };
        if (inet_pton (AF_INET, source, &from.sin_addr) != 1
        ||  bind (fd, (struct sockaddr *) &from, sizeof from)) {
            fprintf (stderr, "  cannot bind %s: %s\n", source, strerror (errno));
            close (fd);
            return -1;
        }
    }
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    if (connect (fd, (struct sockaddr *) &to, sizeof to)) {
        close (fd);
        return -1;
    }
    return fd;
}

//  Wait until the socket is ready for what OpenSSL asked (error is
//  SSL_get_error's), before the deadline. Returns true if it is.
static bool
s_wait (int fd, int error, int64_t deadline)
{
    int64_t left = deadline - clock_mono_ms ();
    if (left <= 0)
        return false;
    struct pollfd item = { .fd = fd, .events = error == SSL_ERROR_WANT_WRITE? POLLOUT: POLLIN };
    return poll (&item, 1, (int) left) == 1;
}

//  The handshake on a connected socket, within timeout_ms. Returns 1 when
//  done, 0 when the server refused it, -1 on timeout.
static int
s_handshake (SSL *ssl, int fd, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (true) {
        int rc = SSL_connect (ssl);
        if (rc == 1)
            return 1;
        int error = SSL_get_error (ssl, rc);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)
            return 0;
        if (!s_wait (fd, error, deadline))
            return -1;
    }
}

int
tls_handshake_with (int port, int version, const char *ciphers)
{
    SSL_CTX *context = SSL_CTX_new (TLS_client_method ());
    assert (context);
    //  Level 0: OpenSSL 3 would not offer TLS 1.1 (or a SHA-1 suite) at
    //  its default level, and the test would prove nothing of the server.
    SSL_CTX_set_security_level (context, 0);
    SSL_CTX_set_min_proto_version (context, version);
    SSL_CTX_set_max_proto_version (context, version);
    SSL_CTX_set_verify (context, SSL_VERIFY_NONE, NULL);
    if (ciphers && !SSL_CTX_set_cipher_list (context, ciphers)) {
        fprintf (stderr, "  OpenSSL knows no cipher of %s\n", ciphers);
        SSL_CTX_free (context);
        return -1;
    }
    int fd = tcp_connect_from (NULL, port, 0);
    if (fd < 0) {
        SSL_CTX_free (context);
        return -1;
    }
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    SSL *ssl = SSL_new (context);
    SSL_set_fd (ssl, fd);
    ERR_clear_error ();
    int done = s_handshake (ssl, fd, 5000);
    if (done == 0) {
        char reason [256];
        ERR_error_string_n (ERR_peek_last_error (), reason, sizeof reason);
        printf ("  refused: %s\n", reason);
    }
    else
    if (done == 1)
        printf ("  accepted: %s, %s\n", SSL_get_version (ssl), SSL_get_cipher_name (ssl));
    ERR_clear_error ();
    SSL_free (ssl);
    close (fd);
    SSL_CTX_free (context);
    return done < 0? -1: done;
}

tls_raw_t *
tls_raw_open (const char *source, int port, int rcvbuf)
{
    pthread_once (&s_context_once, s_context_init);
    int fd = tcp_connect_from (source, port, rcvbuf);
    if (fd < 0)
        return NULL;
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    tls_raw_t *self = calloc (1, sizeof *self);
    assert (self);
    self->fd = fd;
    self->ssl = SSL_new (s_context);
    assert (self->ssl);
    SSL_set_fd (self->ssl, fd);
    if (s_handshake (self->ssl, fd, 5000) != 1) {
        ERR_clear_error ();
        tls_raw_close (&self);
        return NULL;
    }
    return self;
}

int
tls_raw_write (tls_raw_t *self, const void *bytes, size_t size)
{
    assert (self);
    int64_t deadline = clock_mono_ms () + 5000;
    const char *next = bytes;
    while (size) {
        int rc = SSL_write (self->ssl, next, (int) size);
        if (rc > 0) {
            next += rc;
            size -= (size_t) rc;
            continue;
        }
        int error = SSL_get_error (self->ssl, rc);
        if ((error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)
        ||  !s_wait (self->fd, error, deadline)) {
            ERR_clear_error ();
            return -1;
        }
    }
    return 0;
}

int
tls_raw_read (tls_raw_t *self, void *buffer, size_t size, int timeout_ms)
{
    assert (self && buffer && size);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (true) {
        int rc = SSL_read (self->ssl, buffer, (int) size);
        if (rc > 0)
            return rc;
        int error = SSL_get_error (self->ssl, rc);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error ();
            return 0;                   //  closed, reset, or an alert
        }
        if (timeout_ms == 0 || !s_wait (self->fd, error, deadline))
            return -1;
    }
}

void
tls_raw_close (tls_raw_t **self_p)
{
    assert (self_p);
    tls_raw_t *self = *self_p;
    if (self) {
        SSL_free (self->ssl);
        close (self->fd);
        free (self);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------------
//  WebSocket over it

int
wss_raw_upgrade (tls_raw_t *self, int port, const char *path_and_query)
{
    assert (self && path_and_query);
    char request [2048];
    int size = snprintf (request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n", path_and_query, port);
    if (size <= 0 || (size_t) size >= sizeof request
    ||  tls_raw_write (self, request, (size_t) size))
        return -1;
    //  A byte at a time, so that no frame after the head is taken.
    char head [8192];
    size_t used = 0;
    int64_t deadline = clock_mono_ms () + 5000;
    while (used < sizeof head - 1) {
        int64_t left = deadline - clock_mono_ms ();
        if (left <= 0 || tls_raw_read (self, head + used, 1, (int) left) != 1)
            break;
        used++;
        if (used >= 4 && memcmp (head + used - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head [used] = 0;
    int status = -1;
    if (sscanf (head, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

int
wss_raw_send (tls_raw_t *self, const char *text)
{
    assert (self && text);
    size_t length = strlen (text);
    unsigned char *frame = malloc (length + 16);
    assert (frame);
    size_t size = ws_raw_build (frame, length + 16, 1, true, true, text, length);
    int rc = size? tls_raw_write (self, frame, size): -1;
    free (frame);
    return rc;
}

bool
wss_raw_drain (tls_raw_t *self, int timeout_ms, ws_raw_drained_t *drained)
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
        if (left <= 0)
            break;
        if (used == capacity) {
            capacity *= 2;
            buffer = realloc (buffer, capacity);
            assert (buffer);
        }
        int got = tls_raw_read (self, buffer + used, capacity - used, (int) left);
        if (got > 0) {
            drained->bytes += (size_t) got;
            used += (size_t) got;
            size_t taken = ws_raw_parse (buffer, used, drained);
            memmove (buffer, buffer + taken, used - taken);
            used -= taken;
        }
        else
        if (got == 0)
            drained->ended = true;
        else
            break;                      //  the time is up
    }
    free (buffer);
    return drained->close_code || drained->ended;
}
