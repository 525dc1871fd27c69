/*  =========================================================================
    tlsclient.h - TLS by hand (OpenSSL) for the tests of the edge

    What civetweb's client (wsclient.h: ws_open_tls, https_request) cannot
    do: offer only an old protocol version or a chosen cipher, connect from
    a chosen loopback address (127.0.0.2, ... : another client as the
    edge's per-address caps see it), send a request a byte at a time, and
    hold a wss:// socket that reads nothing unless asked. The server's
    certificate is never checked: the tests make their own.
    =========================================================================
*/

#ifndef NEARCHAT_TLSCLIENT_H_INCLUDED
#define NEARCHAT_TLSCLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include "wsclient.h"

//  A blocking TCP connection to 127.0.0.1:port from the loopback address
//  source ("127.0.0.2"; NULL: the system's choice), with a receive buffer
//  of rcvbuf bytes (0: the system's). Returns the socket, or -1.
int
    tcp_connect_from (const char *source, int port, int rcvbuf);

//  One handshake with 127.0.0.1:port offering only protocol version
//  (TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION) and, up to TLS 1.2,
//  only the ciphers of the OpenSSL cipher list ciphers (NULL: OpenSSL's
//  defaults). OpenSSL's security level is 0, so that whatever is asked is
//  really offered. Returns 1 if the server completed it, 0 if it refused
//  (the reason is printed), -1 if there was no connection.
int
    tls_handshake_with (int port, int version, const char *ciphers);

typedef struct tls_raw tls_raw_t;

//  A TLS connection (TLS 1.2 or later, OpenSSL's defaults) from source to
//  127.0.0.1:port as tcp_connect_from, its handshake done within 5 s.
//  NULL if it could not be made.
tls_raw_t *
    tls_raw_open (const char *source, int port, int rcvbuf);

//  Write size bytes. Returns 0, or -1 if the connection failed.
int
    tls_raw_write (tls_raw_t *self, const void *bytes, size_t size);

//  Read what has come, waiting at most timeout_ms (0: not at all). Returns
//  the bytes read (> 0), 0 at the end of the stream (a close, a reset, an
//  alert), or -1 when nothing came in time.
int
    tls_raw_read (tls_raw_t *self, void *buffer, size_t size, int timeout_ms);

//  Close without a word (no close_notify), free, set *self_p to NULL.
void
    tls_raw_close (tls_raw_t **self_p);

//  Send the WebSocket upgrade for path_and_query over self and read the
//  answer's head (5 s at most). Returns its status (101 when accepted), or
//  -1. Nothing past the head is read.
int
    wss_raw_upgrade (tls_raw_t *self, int port, const char *path_and_query);

//  Send text as one masked text frame. Returns 0 or -1.
int
    wss_raw_send (tls_raw_t *self, const char *text);

//  As ws_raw_drain, over TLS: read and take apart what the server sent for
//  at most timeout_ms, until a close frame or the end of the stream.
//  Returns true if either came.
bool
    wss_raw_drain (tls_raw_t *self, int timeout_ms, ws_raw_drained_t *drained);

#endif
