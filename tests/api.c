/*  =========================================================================
    api.c - common steps of the public API's tests, and JSON reads
    =========================================================================
*/

#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "clock.h"

//  ---------------------------------------------------------------------------
//  JSON reads

json_t *
j_get (json_t *json, const char *path)
{
    char name [128];
    while (json && path && *path) {
        const char *dot = strchr (path, '.');
        size_t length = dot? (size_t) (dot - path): strlen (path);
        if (length >= sizeof name)
            return NULL;
        memcpy (name, path, length);
        name [length] = 0;
        json = json_object_get (json, name);
        path = dot? dot + 1: NULL;
    }
    return json;
}

const char *
j_str (json_t *json, const char *path)
{
    return json_string_value (j_get (json, path));
}

double
j_num (json_t *json, const char *path)
{
    json_t *value = j_get (json, path);
    return json_is_number (value)? json_number_value (value): NAN;
}

bool
j_is (json_t *json, const char *path, const char *expected)
{
    const char *value = j_str (json, path);
    bool same = value && expected && strcmp (value, expected) == 0;
    if (!same) {
        char *text = json? json_dumps (json, JSON_COMPACT): NULL;
        fprintf (stderr, "  %s is %s%s%s, not \"%s\", in %.300s\n", path,
                 value? "\"": "", value? value: "absent", value? "\"": "",
                 expected? expected: "(null)", text? text: "nothing");
        free (text);
    }
    return same;
}

bool
j_holds_once (json_t *array, const char *value)
{
    size_t index, count = 0;
    json_t *item;
    json_array_foreach (array, index, item)
        if (json_is_string (item) && !strcmp (json_string_value (item), value))
            count++;
    return count == 1;
}

bool
j_lacks (json_t *array, const char *value)
{
    size_t index;
    json_t *item;
    json_array_foreach (array, index, item)
        if (json_is_string (item) && !strcmp (json_string_value (item), value))
            return false;
    return true;
}

bool
j_is_iso8601_ms (const char *text)
{
    int64_t ms;
    return text && strlen (text) == 24 && text [19] == '.' && text [23] == 'Z'
        && clock_iso8601_parse (text, &ms) == 0;
}

bool
api_check_room_info (json_t *info, const char *where)
{
    const char *wrong = NULL;
    if (!json_is_object (info))
        wrong = "roomInfo (no object)";
    else
    if (!json_is_string (j_get (info, "id")) || !*j_str (info, "id"))
        wrong = "id";
    else
    if (!json_is_number (j_get (info, "location.latitude")))
        wrong = "location.latitude";
    else
    if (!json_is_number (j_get (info, "location.longitude")))
        wrong = "location.longitude";
    else
    if (j_get (info, "roadName") && !json_is_string (j_get (info, "roadName"))
    &&  !json_is_null (j_get (info, "roadName")))
        wrong = "roadName";
    else
    if (!json_is_number (j_get (info, "radius")) || j_num (info, "radius") <= 0)
        wrong = "radius";
    else
    if (!json_is_string (j_get (info, "creator")))
        wrong = "creator";
    else
    if (!json_is_array (j_get (info, "participants")))
        wrong = "participants";
    else
    if (!json_is_integer (j_get (info, "lastActivity"))
    ||  json_integer_value (j_get (info, "lastActivity")) < 1000000000000LL)
        wrong = "lastActivity (ms since the epoch)";
    else
    if (!j_str (info, "status")
    ||  (strcmp (j_str (info, "status"), "active") && strcmp (j_str (info, "status"), "closed")))
        wrong = "status";
    else
    if (!j_str (info, "roomType")
    ||  (strcmp (j_str (info, "roomType"), "public") && strcmp (j_str (info, "roomType"), "private")))
        wrong = "roomType";
    else
    if (!json_is_integer (j_get (info, "maxParticipants")))
        wrong = "maxParticipants";
    if (wrong) {
        char *text = info? json_dumps (info, JSON_COMPACT): NULL;
        fprintf (stderr, "  %s: roomInfo field %s is missing or wrong in %.400s\n",
                 where, wrong, text? text: "nothing");
        free (text);
    }
    CHECK (wrong == NULL);
    return wrong == NULL;
}

//  ---------------------------------------------------------------------------
//  Steps

const char *
api_create_room (int port, const char *user, double latitude, double longitude,
                 const char *room_type, int max_participants)
{
    static char ids [64][128];
    static int next;
    json_t *body = json_pack ("{s:s, s:f, s:f, s:s}", "userId", user, "latitude", latitude,
                              "longitude", longitude, "roadName", "Test road");
    if (room_type)
        json_object_set_new (body, "roomType", json_string (room_type));
    if (max_participants)
        json_object_set_new (body, "maxParticipants", json_integer (max_participants));
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    json_t *answer = NULL;
    int status = http_call (port, "POST", "/rooms", text, &answer);
    free (text);
    const char *id = j_str (answer, "roomId");
    if (status != 200 || !id)
        fprintf (stderr, "  POST /rooms for %s: %d, no room\n", user, status);
    CHECK (status == 200 && id);
    char *kept = NULL;
    if (status == 200 && id) {
        kept = ids [next++ % 64];
        snprintf (kept, sizeof ids [0], "%s", id);
    }
    json_decref (answer);
    return kept;
}

int
api_join_http (int port, const char *room_id, const char *user)
{
    return http_callf (port, "POST", "/rooms/join", NULL, "{s:s, s:s}",
                       "roomId", room_id, "userId", user);
}

ws_client_t *
api_connect (int port, const char *user, const char *name)
{
    char path [512], user_q [128], name_q [256];
    if (name)
        snprintf (path, sizeof path, "/ws?userId=%s&userName=%s",
                  http_escape (user, user_q, sizeof user_q), http_escape (name, name_q, sizeof name_q));
    else
        snprintf (path, sizeof path, "/ws?userId=%s", http_escape (user, user_q, sizeof user_q));
    ws_client_t *client = ws_open (port, path);
    CHECK (client != NULL);
    return client;
}

json_t *
api_join (ws_client_t *client, const char *room_id, const char *user, long long since_seq)
{
    if (!client)
        return NULL;
    if (since_seq >= 0)
        ws_send (client, "{s:s, s:s, s:I}", "action", "join-room", "roomId", room_id,
                 "sinceSeq", (json_int_t) since_seq);
    else
        ws_send (client, "{s:s, s:s}", "action", "join-room", "roomId", room_id);
    json_t *joined = ws_expect_where (client, "user-joined", "userId", user, API_WAIT_MS);
    CHECK (joined != NULL);
    json_decref (joined);
    json_t *history = ws_expect (client, "message-history", API_WAIT_MS);
    CHECK (history != NULL);
    return history;
}

//  Send once and wait for the ack of message_id, or an error: the seq, -1
//  on error, -2 when nothing came.
static long long
s_say_once (ws_client_t *client, const char *room_id, const char *message_id, const char *text)
{
    ws_send (client, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room_id,
             "message", text, "messageId", message_id, "requestId", message_id);
    //  The ack, or an error that names this request.
    json_t *frame = ws_expect_either (client, "ack", "messageId", message_id,
                                      "error", "requestId", message_id, API_WAIT_MS);
    if (!frame)
        return -2;
    long long value = -1;
    if (j_str (frame, "type") && !strcmp (j_str (frame, "type"), "ack")) {
        json_t *seq = json_object_get (frame, "seq");
        value = json_is_integer (seq)? json_integer_value (seq): -1;
    }
    else
        fprintf (stderr, "  send-message %s: error %lld %s\n", message_id,
                 (long long) j_num (frame, "status"), j_str (frame, "error"));
    json_decref (frame);
    return value;
}

long long
api_say (ws_client_t *client, const char *room_id, const char *message_id, const char *text)
{
    if (!client)
        return -1;
    long long seq = s_say_once (client, room_id, message_id, text);
    if (seq == -2)
        fprintf (stderr, "  ws %s: no ack for %s\n", ws_name (client), message_id);
    CHECK (seq > 0);
    return seq > 0? seq: -1;
}

long long
api_say_retrying (ws_client_t *client, const char *room_id, const char *message_id,
                  const char *text, int attempts)
{
    if (!client)
        return -1;
    long long seq = -1;
    for (int attempt = 0; attempt < attempts && seq <= 0; attempt++) {
        if (attempt)
            fprintf (stderr, "  ws %s: resending %s (attempt %d)\n", ws_name (client),
                     message_id, attempt + 1);
        seq = s_say_once (client, room_id, message_id, text);
        if (seq == -1)
            usleep (200 * 1000);     //  an error came at once: give the shard a moment
    }
    CHECK (seq > 0);
    return seq > 0? seq: -1;
}

long long
api_heard (ws_client_t *client, const char *text)
{
    if (!client)
        return -1;
    json_t *message = ws_expect_where (client, "new-message", "text", text, API_WAIT_MS);
    CHECK (message != NULL);
    json_t *seq = json_object_get (message, "seq");
    long long value = json_is_integer (seq)? json_integer_value (seq): -1;
    json_decref (message);
    return value;
}

void
api_offset (double latitude, double longitude, double north_m, double east_m,
            double *out_latitude, double *out_longitude)
{
    const double metres_per_degree = 6371008.8 * M_PI / 180.0;
    *out_latitude = latitude + north_m / metres_per_degree;
    *out_longitude = longitude + east_m / (metres_per_degree * cos (latitude * M_PI / 180.0));
}

void
api_listen (ws_client_t *client, api_heard_t *heard, long long last, int quiet_ms)
{
    while (heard->count < API_HEARD_MAX) {
        if (heard->count && heard->seqs [heard->count - 1] >= last
        &&  ws_quiet (client, "new-message", 300))
            break;                      //  and nothing more after the last: no repeats
        json_t *message = ws_expect (client, "new-message", quiet_ms);
        if (!message)
            break;
        heard->seqs [heard->count++] = (long long) j_num (message, "seq");
        json_decref (message);
    }
}

bool
api_heard_exactly (const api_heard_t *heard, long long last, const char *who)
{
    bool ok = heard->count == (size_t) last;
    for (size_t i = 0; ok && i < heard->count; i++)
        ok = heard->seqs [i] == (long long) i + 1;
    if (!ok) {
        fprintf (stderr, "  %s heard %zu messages, expected seq 1..%lld:", who, heard->count,
                 last);
        for (size_t i = 0; i < heard->count && i < 40; i++)
            fprintf (stderr, " %lld", heard->seqs [i]);
        fprintf (stderr, "%s\n", heard->count > 40? " ...": "");
    }
    return CHECK (ok);
}

typedef struct {
    pid_t pid;
    int delay_ms;
} s_resume_t;

static void *
s_resume_later (void *arg)
{
    s_resume_t *resume = arg;
    usleep ((useconds_t) resume->delay_ms * 1000);
    kill (resume->pid, SIGCONT);
    free (resume);
    return NULL;
}

void
api_resume_later (pid_t pid, int delay_ms, pthread_t *thread)
{
    s_resume_t *resume = malloc (sizeof *resume);
    assert (resume);
    *resume = (s_resume_t) { pid, delay_ms };
    pthread_create (thread, NULL, s_resume_later, resume);
}

int
api_health (int port, json_t **health)
{
    http_response_t response;
    int status = http_request (port, "GET", "/healthz", NULL, 0, &response);
    *health = status > 0? json_loads (response.body, 0, NULL): NULL;
    http_response_free (&response);
    return status;
}

bool
api_wait_connections (int port, int open)
{
    double counted = -1;
    for (int64_t until = clock_mono_ms () + 10000; clock_mono_ms () < until; usleep (20 * 1000)) {
        json_t *health = NULL;
        api_health (port, &health);
        counted = j_num (health, "connections");
        json_decref (health);
        if (counted == open)
            return true;
    }
    fprintf (stderr, "  /healthz counts %g sockets, not %d\n", counted, open);
    return false;
}
