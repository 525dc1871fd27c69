/*  =========================================================================
    loadtls.c - TLS (OpenSSL) and HS256 tokens (libjwt) for nearchat-load
    =========================================================================
*/

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <jwt.h>
#include <openssl/err.h>
#include "loadtls.h"

#define LOADTLS_TOKEN_LIFE_S    86400

static SSL_CTX *s_context;

int
loadtls_init (void)
{
    if (s_context)
        return 0;
    s_context = SSL_CTX_new (TLS_client_method ());
    if (!s_context)
        return -1;
    SSL_CTX_set_verify (s_context, SSL_VERIFY_NONE, NULL);
    //  Nothing kept, nothing offered back: a full handshake every time.
    SSL_CTX_set_session_cache_mode (s_context, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options (s_context, SSL_OP_NO_TICKET);
    //  A write may be cut short and retried from a buffer that has since
    //  grown (and moved): the queue only ever appends.
    SSL_CTX_set_mode (s_context, SSL_MODE_ENABLE_PARTIAL_WRITE
                               | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

SSL *
loadtls_new (int fd)
{
    SSL *ssl = s_context? SSL_new (s_context): NULL;
    if (!ssl)
        return NULL;
    if (SSL_set_fd (ssl, fd) != 1) {
        SSL_free (ssl);
        return NULL;
    }
    SSL_set_connect_state (ssl);
    return ssl;
}

//  What an SSL call that returned rc is waiting for: 1 with *want set, 0
//  for a clean close, -1 for a failure.
static int
s_wait_for (SSL *ssl, int rc, uint32_t *want)
{
    int error = SSL_get_error (ssl, rc);
    if (error == SSL_ERROR_WANT_READ)
        *want = EPOLLIN;
    else
    if (error == SSL_ERROR_WANT_WRITE)
        *want = EPOLLOUT;
    else {
        ERR_clear_error ();
        return error == SSL_ERROR_ZERO_RETURN? 0: -1;
    }
    return 1;
}

int
loadtls_handshake (SSL *ssl, uint32_t *want)
{
    int rc = SSL_do_handshake (ssl);
    if (rc == 1)
        return 1;
    return s_wait_for (ssl, rc, want) == 1? 0: -1;
}

ssize_t
loadtls_send (int fd, SSL *ssl, const void *data, size_t size, uint32_t *want)
{
    if (!ssl) {
        *want = EPOLLOUT;
        return send (fd, data, size, MSG_NOSIGNAL);
    }
    int rc = SSL_write (ssl, data, size > INT32_MAX? INT32_MAX: (int) size);
    if (rc > 0)
        return rc;
    errno = s_wait_for (ssl, rc, want) == 1? EAGAIN: EPIPE;
    return -1;
}

ssize_t
loadtls_recv (int fd, SSL *ssl, void *data, size_t size, uint32_t *want)
{
    if (!ssl) {
        *want = EPOLLIN;
        return recv (fd, data, size, 0);
    }
    int rc = SSL_read (ssl, data, size > INT32_MAX? INT32_MAX: (int) size);
    if (rc > 0)
        return rc;
    int waiting = s_wait_for (ssl, rc, want);
    if (waiting == 0)
        return 0;
    errno = waiting == 1? EAGAIN: ECONNRESET;
    return -1;
}

void
loadtls_free (SSL **ssl_p)
{
    if (!*ssl_p)
        return;
    if (SSL_is_init_finished (*ssl_p))
        SSL_shutdown (*ssl_p);          //  one try; a full send buffer skips it
    SSL_free (*ssl_p);
    ERR_clear_error ();
    *ssl_p = NULL;
}

long
loadtls_exchange (int port, bool tls, const char *request, char *answer, size_t size)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    inet_pton (AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd < 0 || connect (fd, (struct sockaddr *) &to, sizeof to)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    //  Blocking throughout: the fd is, so SSL's calls are too.
    SSL *ssl = tls? loadtls_new (fd): NULL;
    uint32_t want;
    long used = -1;
    if (tls && (!ssl || SSL_connect (ssl) != 1))
        goto done;
    size_t length = strlen (request);
    if (loadtls_send (fd, ssl, request, length, &want) != (ssize_t) length)
        goto done;
    used = 0;
    ssize_t got;
    while ((size_t) used < size - 1
       &&  (got = loadtls_recv (fd, ssl, answer + used, size - 1 - (size_t) used, &want)) > 0)
        used += got;
    answer [used] = 0;
done:
    loadtls_free (&ssl);
    close (fd);
    return used;
}

int
loadtls_token (const char *secret, const char *user_id, char *out, size_t size)
{
    jwt_t *jwt = NULL;
    if (jwt_new (&jwt))
        return -1;
    time_t now = time (NULL);
    char *token = NULL;
    if (jwt_add_grant (jwt, "sub", user_id) == 0
    &&  jwt_add_grant_int (jwt, "iat", (long) now) == 0
    &&  jwt_add_grant_int (jwt, "exp", (long) now + LOADTLS_TOKEN_LIFE_S) == 0
    &&  jwt_set_alg (jwt, JWT_ALG_HS256, (const unsigned char *) secret, (int) strlen (secret)) == 0)
        token = jwt_encode_str (jwt);
    jwt_free (jwt);
    int length = token? snprintf (out, size, "%s", token): -1;
    free (token);
    return length < 0 || (size_t) length >= size? -1: length;
}
