/*  =========================================================================
    api.h - the steps most tests of the public API take: create a room,
    connect a user, join, say something; and short reads of JSON answers

    Each step CHECKs what the contract says of it, so a test that only
    needs the step done reads as one line, and a broken step is reported
    where it happened.
    =========================================================================
*/

#ifndef NEARCHAT_API_H_INCLUDED
#define NEARCHAT_API_H_INCLUDED

#include <pthread.h>
#include <sys/types.h>
#include "harness.h"
#include "wsclient.h"

//  How long a test waits for a frame or an answer that must come, and how
//  long it watches for one that must not.
#define API_WAIT_MS     5000
#define API_QUIET_MS    500

//  ---------------------------------------------------------------------------
//  JSON reads. A path is field names joined by dots: "roomInfo.location.latitude".

//  The value at path (borrowed), or NULL.
json_t *
    j_get (json_t *json, const char *path);

//  The string at path, or NULL if absent or no string.
const char *
    j_str (json_t *json, const char *path);

//  The number (integer or real) at path, or NaN if absent or no number.
double
    j_num (json_t *json, const char *path);

//  True if the string at path equals expected (printing what it was if not).
bool
    j_is (json_t *json, const char *path, const char *expected);

//  True if array holds the string value, exactly once.
bool
    j_holds_once (json_t *array, const char *value);

//  True if array holds no string equal to value.
bool
    j_lacks (json_t *array, const char *value);

//  True if text is "YYYY-MM-DDTHH:MM:SS.mmmZ" (ISO 8601 UTC with ms).
bool
    j_is_iso8601_ms (const char *text);

//  CHECK that info is a roomInfo: every field of the contract there, of its
//  JSON type (id, location.latitude/longitude, roadName when given, radius,
//  creator, participants, lastActivity, status, roomType, maxParticipants).
//  where names the answer in the log. Returns true if all were right.
bool
    api_check_room_info (json_t *info, const char *where);

//  ---------------------------------------------------------------------------
//  Steps

//  POST /rooms: a room of user's at (latitude, longitude); room_type NULL
//  and max_participants 0 for the defaults. Returns the room id (static
//  storage, a ring of 64), or NULL if the gateway did not answer 200.
const char *
    api_create_room (int port, const char *user, double latitude, double longitude,
                     const char *room_type, int max_participants);

//  GET /healthz of the gateway on port: its status (200, 503, or -1 with
//  no answer), the body parsed into *health (NULL if none; the caller
//  frees it). A 503's body is health, not {"error"}: no CHECK on it.
int
    api_health (int port, json_t **health);

//  Wait (10 s at most) until /healthz counts open sockets. False (with
//  the count seen printed) if it never did.
bool
    api_wait_connections (int port, int open);

//  POST /rooms/join by HTTP; returns the status.
int
    api_join_http (int port, const char *room_id, const char *user);

//  Connect user over WebSocket on /ws, with userName name in the query when
//  name is not NULL. NULL (and a failed CHECK) if refused.
ws_client_t *
    api_connect (int port, const char *user, const char *name);

//  join-room on client as user, then the frames that must follow: user-joined
//  for user, then message-history. Returns the message-history frame (the
//  caller frees it), or NULL if either did not come. since_seq < 0 for none.
json_t *
    api_join (ws_client_t *client, const char *room_id, const char *user, long long since_seq);

//  send-message with messageId message_id and wait for its ack. Returns the
//  seq the ack carries, or -1 if an error or nothing came.
long long
    api_say (ws_client_t *client, const char *room_id, const char *message_id, const char *text);

//  As api_say, but an error or a missing ack is retried with the same
//  messageId (idempotent), at most attempts times: a client carrying on
//  through a shard's restart. Returns the seq, or -1.
long long
    api_say_retrying (ws_client_t *client, const char *room_id, const char *message_id,
                      const char *text, int attempts);

//  Wait for the new-message with text on client; returns its seq, or -1.
long long
    api_heard (ws_client_t *client, const char *text);

//  Every new-message seq a client got, in arrival order.
#define API_HEARD_MAX   400
typedef struct {
    long long seqs [API_HEARD_MAX];
    size_t count;
} api_heard_t;

//  Read client's new-messages into heard until it has heard up to seq
//  last (and nothing more comes for a moment), or nothing came for quiet_ms.
void
    api_listen (ws_client_t *client, api_heard_t *heard, long long last, int quiet_ms);

//  CHECK that heard is exactly 1, 2, ... last: nothing missing, repeated
//  or out of order (who names the client when it is not).
bool
    api_heard_exactly (const api_heard_t *heard, long long last, const char *who);

//  Send SIGCONT to pid after delay_ms, from a thread of its own (the
//  caller meanwhile waits on something that needs pid running); join it.
void
    api_resume_later (pid_t pid, int delay_ms, pthread_t *thread);

//  A point metres north and east of (latitude, longitude).
void
    api_offset (double latitude, double longitude, double north_m, double east_m,
                double *out_latitude, double *out_longitude);

#endif
