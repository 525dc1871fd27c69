/*  =========================================================================
    wsclient.h - the public API from a test's side: WebSocket and HTTP
    clients that speak JSON to the gateway

    ws_client_t is a real WebSocket client (civetweb's client API). Frames
    arrive on civetweb's client thread; each is parsed as JSON and queued,
    so a test reads them when it likes: ws_next takes the oldest, ws_expect
    takes the oldest of one "type" and leaves the others queued for later,
    which keeps a test from depending on how unrelated events interleave.
    Every wait has a timeout.

    ws_raw_t is a WebSocket done by hand over a plain socket, for what a
    well-behaved client cannot do: read the status of a refused handshake,
    and be a client that never reads (a small receive buffer, no reader).

    http_call makes one HTTP/1.1 request and checks what every response of
    the contract must carry (application/json, Access-Control-Allow-Origin
    *, and {"error": "..."} on an error status), counting a failed CHECK
    otherwise.
    =========================================================================
*/

#ifndef NEARCHAT_WSCLIENT_H_INCLUDED
#define NEARCHAT_WSCLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

//  ---------------------------------------------------------------------------
//  WebSocket client

typedef struct ws_client ws_client_t;

//  Connect to ws://127.0.0.1:port/path_and_query (e.g. "/ws?userId=alice").
//  Returns the client, or NULL if the connection or the handshake failed
//  (the reason is printed on stderr).
ws_client_t *
    ws_open (int port, const char *path_and_query);

//  As ws_open over TLS (wss://); the server's certificate is not checked.
ws_client_t *
    ws_open_tls (int port, const char *path_and_query);

//  Close the connection cleanly (a close frame, then wait briefly for the
//  server's), free the client and every frame still queued, and set
//  *self_p to NULL. CHECKs that every frame the server sent was JSON text.
void
    ws_close (ws_client_t **self_p);

//  Send one JSON text frame built by jansson's json_pack from format, e.g.
//  ws_send (c, "{s:s, s:s}", "action", "join-room", "roomId", id).
//  Returns 0, or -1 if the format is bad or the write failed.
int
    ws_send (ws_client_t *self, const char *format, ...);

//  Send one JSON value as a text frame (the reference is stolen).
int
    ws_send_json (ws_client_t *self, json_t *value);

//  Send size bytes as one text frame, whatever they hold.
int
    ws_send_raw (ws_client_t *self, const char *data, size_t size);

//  The oldest queued frame, waiting at most timeout_ms. The caller owns it
//  (json_decref). NULL on timeout.
json_t *
    ws_next (ws_client_t *self, int timeout_ms);

//  The oldest queued frame whose "type" is type, waiting at most
//  timeout_ms for one; frames of other types stay queued. NULL on timeout
//  (the types still queued are printed, to help the reader of the log).
json_t *
    ws_expect (ws_client_t *self, const char *type, int timeout_ms);

//  As ws_expect, and the frame's string field key must also equal value.
json_t *
    ws_expect_where (ws_client_t *self, const char *type, const char *key,
                     const char *value, int timeout_ms);

//  The oldest queued frame that matches either (type, key = value) or
//  (other_type, other_key = other_value); a NULL key is no condition. For
//  "the ack of this request, or an error that names it".
json_t *
    ws_expect_either (ws_client_t *self, const char *type, const char *key, const char *value,
                      const char *other_type, const char *other_key, const char *other_value,
                      int timeout_ms);

//  True when no frame of type (and, with key, whose key equals value) is
//  queued or arrives within ms. Frames are left queued.
bool
    ws_quiet (ws_client_t *self, const char *type, int ms);
bool
    ws_quiet_where (ws_client_t *self, const char *type, const char *key,
                    const char *value, int ms);

//  Frames of type queued now (no wait); NULL type counts every frame.
size_t
    ws_pending (ws_client_t *self, const char *type);

//  Drop every queued frame.
void
    ws_discard (ws_client_t *self);

//  Drop the queued frames of type; returns how many.
size_t
    ws_drop (ws_client_t *self, const char *type);

//  The arrival number (1, 2, ...) of the frame ws_next or ws_expect
//  returned last: tells which of two frames came first.
uint64_t
    ws_arrival (ws_client_t *self);

//  True if the server has closed the connection, waiting at most
//  timeout_ms for it.
bool
    ws_is_closed (ws_client_t *self, int timeout_ms);

//  The name the client prints in diagnostics (its path and query).
const char *
    ws_name (ws_client_t *self);

//  ---------------------------------------------------------------------------
//  WebSocket by hand

typedef struct ws_raw ws_raw_t;

//  Send an upgrade request for path_and_query and return the HTTP status
//  of the answer (101 when accepted), or -1 if none came within 5 s.
int
    ws_handshake_status (int port, const char *path_and_query);

//  A WebSocket over a plain socket whose receive buffer is set to rcvbuf
//  bytes (0: the system's) and which reads nothing after the handshake
//  unless asked. NULL unless the server answered 101.
ws_raw_t *
    ws_raw_open (int port, const char *path_and_query, int rcvbuf);

//  As ws_raw_open with the system's buffer, for a test of admission:
//  returns the client when the server answered 101, else NULL with the
//  answer's body (at most body_size - 1 bytes, NUL-terminated) in body.
//  The status (or -1) goes to *status either way.
ws_raw_t *
    ws_raw_try (int port, const char *path_and_query, int *status, char *body, size_t body_size);

//  As ws_raw_try, with extra header lines in the upgrade ("Name: value\r\n"
//  each; NULL for none), e.g. an X-Forwarded-For.
ws_raw_t *
    ws_raw_try_with (int port, const char *path_and_query, const char *headers, int *status,
                     char *body, size_t body_size);

//  Whether ws_raw_drain answers each ping it reads with a pong (a live
//  client does); a raw client answers none by default.
void
    ws_raw_answer_pings (ws_raw_t *self, bool answer);

//  Send text as one masked text frame. Returns 0, or -1 if the write
//  failed (the peer closed).
int
    ws_raw_send (ws_raw_t *self, const char *text);

//  Send one frame as given: opcode, FIN, and masked with a fixed key or
//  not (a client must mask; this is for testing one that does not).
//  Returns 0, or -1 if the write failed.
int
    ws_raw_frame (ws_raw_t *self, int opcode, bool fin, bool masked, const void *payload,
                  size_t size);

//  Send bytes as they are (a frame in pieces, several frames at once).
int
    ws_raw_write (ws_raw_t *self, const void *bytes, size_t size);

//  Build into out (size_max bytes) one masked client frame; returns its size.
size_t
    ws_raw_build (unsigned char *out, size_t size_max, int opcode, bool fin, bool masked,
                  const void *payload, size_t size);

//  What ws_raw_drain read.
typedef struct {
    size_t bytes;                   //  bytes read
    size_t frames;                  //  whole frames read (the close frame included)
    int close_code;                 //  the server's close frame's status; 1005 if it had
                                    //  none; 0 if no close frame came
    char close_reason [128];        //  its reason, "" when none
    bool ended;                     //  the server ended the stream (or reset it)
    size_t pings;                   //  ping frames read
    size_t pongs;                   //  pong frames read
    char pong [128];                //  the last one's payload
    size_t texts;                   //  text frames read
    char text [1024];               //  the last one's payload (cut to fit)
} ws_raw_drained_t;

//  Read and take apart what the server sent, for at most timeout_ms, until
//  a close frame or the end of the stream. Returns true if either came;
//  what was read goes to *drained when it is not NULL.
bool
    ws_raw_drain (ws_raw_t *self, int timeout_ms, ws_raw_drained_t *drained);

//  Take the whole server frames at the front of buffer (size bytes) apart
//  into drained, as ws_raw_drain does (drained starts zeroed and is added
//  to); stops after a close frame. Returns the bytes taken: a frame not yet
//  whole is left for when more has come (tlsclient.c reads over TLS).
size_t
    ws_raw_parse (const unsigned char *buffer, size_t size, ws_raw_drained_t *drained);

//  Close the socket (no close frame: an abrupt disconnect), free the
//  client and set *self_p to NULL.
void
    ws_raw_close (ws_raw_t **self_p);

//  As ws_raw_close, but the connection is reset (RST, SO_LINGER 0): the
//  server hears of it at once, even while it is not reading the socket.
void
    ws_raw_reset (ws_raw_t **self_p);

//  ---------------------------------------------------------------------------
//  HTTP

typedef struct {
    int status;                     //  HTTP status; -1 when no answer came
    char content_type [128];        //  "" when absent
    char allow_origin [128];        //  Access-Control-Allow-Origin, "" when absent
    char allow_methods [128];       //  Access-Control-Allow-Methods, "" when absent
    char allow_headers [128];       //  Access-Control-Allow-Headers, "" when absent
    char expose_headers [128];      //  Access-Control-Expose-Headers, "" when absent
    char more [16];                 //  X-More (a history page), "" when absent
    char *body;                     //  NUL-terminated, "" when empty; free with http_response_free
    size_t size;                    //  bytes of body
} http_response_t;

//  Make one request (Connection: close) with a body of size bytes (none
//  when body is NULL) and read the whole answer. Returns the status, or -1
//  if the server could not be reached. No CHECKs: for polling and for
//  answers that are not JSON. The caller frees response with
//  http_response_free, whatever the status.
int
    http_request (int port, const char *method, const char *path, const void *body,
                  size_t size, http_response_t *response);

//  As http_request, with extra header lines ("Name: value\r\n" each).
int
    http_request_with (int port, const char *method, const char *path, const char *headers,
                       const void *body, size_t size, http_response_t *response);

//  As http_request over TLS (https://); the certificate is not checked.
int
    https_request (int port, const char *method, const char *path, const void *body,
                   size_t size, http_response_t *response);

void
    http_response_free (http_response_t *response);

//  Make one request with body (a string, or NULL for none) and return the
//  HTTP status (-1 if no answer). CHECKs that the answer is JSON with
//  Content-Type application/json and Access-Control-Allow-Origin *, and
//  that an error status carries {"error": "<non-empty string>"}. When out
//  is not NULL it receives the parsed body (NULL if it was no JSON), which
//  the caller frees with json_decref.
int
    http_call (int port, const char *method, const char *path, const char *body_or_null,
               json_t **out);

//  As http_call with a body built by json_pack from format.
int
    http_callf (int port, const char *method, const char *path, json_t **out,
                const char *format, ...);

//  Percent-encode text for a query string into out (size bytes). Returns out.
char *
    http_escape (const char *text, char *out, size_t size);

#endif
