/*  =========================================================================
    loadtls.h - what the load generator needs of TLS and of tokens: a
    client SSL per socket stepped by its own epoll loop, a blocking HTTP
    exchange over TCP or TLS, and HS256 tokens for AUTH=jwt

    Every socket is non-blocking; these calls never wait (but for
    loadtls_exchange, which is for set-up). "want" tells the caller what
    the socket must become to make progress: EPOLLIN or EPOLLOUT.
    =========================================================================
*/

#ifndef NEARCHAT_LOADTLS_H_INCLUDED
#define NEARCHAT_LOADTLS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/ssl.h>

//  The one client context, made once: certificates are not checked (the
//  bench's own are self-signed), and no session is ever cached or resumed
//  (no session cache, no tickets), so that every connection costs the
//  server a full handshake. Returns 0, or -1 if OpenSSL cannot make it.
int loadtls_init (void);

//  A client SSL on fd (connected, or connecting), in connect state; NULL
//  if loadtls_init was not called or OpenSSL fails.
SSL *loadtls_new (int fd);

//  One step of the handshake: 1 once done, 0 while it waits for *want,
//  -1 if it failed.
int loadtls_handshake (SSL *ssl, uint32_t *want);

//  send and recv over ssl, or over the bare fd when ssl is NULL: bytes
//  moved; 0 from recv when the peer closed; -1 with errno EAGAIN (and
//  *want) when it would block, -1 with another errno on a failure.
ssize_t loadtls_send (int fd, SSL *ssl, const void *data, size_t size, uint32_t *want);
ssize_t loadtls_recv (int fd, SSL *ssl, void *data, size_t size, uint32_t *want);

//  A close_notify if it can go at once, then free ssl (NULL is fine).
void loadtls_free (SSL **ssl_p);

//  Blocking: connect to 127.0.0.1:port (over TLS if tls), send request,
//  read the answer until the peer closes (the request says Connection:
//  close) or size - 1 bytes. Returns the answer's length (NUL-terminated
//  in answer), or -1. For set-up, not for measuring.
long loadtls_exchange (int port, bool tls, const char *request, char *answer, size_t size);

//  An HS256 token whose sub is user_id, valid for a day, into out.
//  Returns its length, or -1 if libjwt fails or it does not fit.
int loadtls_token (const char *secret, const char *user_id, char *out, size_t size);

#endif
