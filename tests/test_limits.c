/*  =========================================================================
    test_limits - DESIGN.md's limits, each reached against the real system
    (stored, gateway, 1 shard) and answered as the README says

    Issue 11, "No limits": one client took all 1,000 sockets, one socket
    stored 887 messages a second, 100,000 rooms were made in 22 s, idle
    sockets were never pinged. With small settings here: messages and
    typing events past MESSAGES_PER_S/MESSAGES_BURST get an error frame 429
    and nothing of them is stored; rooms past ROOMS_PER_MINUTE a 429 JSON;
    upgrades past SOCKETS_PER_USER and SOCKETS_PER_ADDRESS a 429 JSON (the
    address from X-Forwarded-For with TRUST_PROXY_HEADERS=1, its last
    address; the peer's without); a frame over 64 KiB is closed 1009 and
    one of 64 KiB served; sockets whose join waits on a stopped shard are
    not read meanwhile (the gateway does not grow by what they send), and
    go on in order once it is answered; a socket that does not answer
    pings is closed 1001, one that does stays. No assertion depends on timing: a rate is
    reached by sending many more than the burst, each refused one at once.
    =========================================================================
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define BURST           3       //  MESSAGES_BURST
#define SENT            40      //  messages sent at once: many more than the burst
#define ROOMS           3       //  ROOMS_PER_MINUTE
#define PER_USER        3       //  SOCKETS_PER_USER
#define PER_ADDRESS     5       //  SOCKETS_PER_ADDRESS (with TRUST_PROXY_HEADERS=1)
#define PER_PEER        3       //  SOCKETS_PER_ADDRESS of the second system (no trust)
#define PING_S          2       //  WS_PING_S of the second system
#define BUSY_SOCKETS    10      //  sockets whose join waits on a stopped shard
#define BUSY_BYTES      (4 * 1024 * 1024)   //  each sends this much meanwhile
#define BUSY_GROWTH_KIB (8 * 1024)  //  the gateway's memory meanwhile, at most

static harness_system_t s_system;
static int s_port;

//  An upgrade of user with extra headers (or none): its status, the raw
//  socket when it was 101, the refusal's error in error (cut to fit).
static ws_raw_t *
s_upgrade (const char *user, const char *headers, int *status, char *error, size_t size)
{
    char path [128], body [512];
    snprintf (path, sizeof path, "/ws?userId=%s", user);
    ws_raw_t *raw = ws_raw_try_with (s_port, path, headers, status, body, sizeof body);
    error [0] = 0;
    if (!raw) {
        json_t *json = json_loads (body, 0, NULL);
        snprintf (error, size, "%s", j_str (json, "error")? j_str (json, "error"): "");
        json_decref (json);
    }
    return raw;
}

//  Whether frame's string at key is value (quietly: j_is prints a miss).
static bool
s_is (json_t *frame, const char *key, const char *value)
{
    const char *text = j_str (frame, key);
    return text && strcmp (text, value) == 0;
}

//  ---------------------------------------------------------------------------

static void
s_test_settings_listed (void)
{
    printf ("gateway --help lists every limit with its default\n");
    char command [512], out [32768];
    snprintf (command, sizeof command, "%s/gateway --help", NEARCHAT_BIN_DIR);
    FILE *pipe = popen (command, "r");
    REQUIRE (pipe);
    size_t used = fread (out, 1, sizeof out - 1, pipe);
    out [used] = 0;
    pclose (pipe);
    const char *names [] = { "MESSAGES_PER_S", "MESSAGES_BURST", "ROOMS_PER_MINUTE",
                             "SOCKETS_PER_USER", "SOCKETS_PER_ADDRESS", "WS_PING_S",
                             "TRUST_PROXY_HEADERS" };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        if (!CHECK (strstr (out, names [i])))
            fprintf (stderr, "  %s is not in --help\n", names [i]);
}

static void
s_test_messages (void)
{
    printf ("MESSAGES_PER_S=1, MESSAGES_BURST=%d: %d messages at once; the refused get 429 "
            "and are not stored\n", BURST, SENT);
    const char *room = api_create_room (s_port, "limits-host", 10.0, 10.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *chatty = api_connect (s_port, "chatty", "Chatty");
    REQUIRE (chatty);
    json_decref (api_join (chatty, room, "chatty", -1));
    for (int i = 0; i < SENT; i++) {
        char id [32];
        snprintf (id, sizeof id, "flood-%d", i);
        CHECK (ws_send (chatty, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message",
                        "roomId", room, "message", id, "messageId", id, "requestId", id) == 0);
    }
    bool acked [SENT] = { false };
    int acks = 0, refused = 0, other = 0;
    for (int i = 0; i < SENT; i++) {
        char id [32];
        snprintf (id, sizeof id, "flood-%d", i);
        json_t *frame = ws_expect_either (chatty, "ack", "messageId", id, "error", "requestId", id,
                                          API_WAIT_MS);
        if (frame && s_is (frame, "type", "ack")) {
            acked [i] = true;
            acks++;
        }
        else
        if (frame && j_num (frame, "status") == 429) {
            refused++;
            //  The refused action's ids, as for any error.
            CHECK (j_is (frame, "action", "send-message"));
            CHECK (j_is (frame, "roomId", room));
            CHECK (j_is (frame, "messageId", id));
        }
        else {
            other++;
            fprintf (stderr, "  %s: %s\n", id, frame? j_str (frame, "error"): "no answer");
        }
        json_decref (frame);
    }
    printf ("  %d acked, %d refused with 429, %d otherwise\n", acks, refused, other);
    CHECK (acks >= BURST);
    CHECK (refused > 0);
    CHECK (other == 0);
    //  Stored holds exactly the acked ones.
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s/messages?limit=1000", room);
    json_t *history = NULL;
    CHECK (http_call (s_port, "GET", path, NULL, &history) == 200);
    CHECK (json_is_array (history) && json_array_size (history) == (size_t) acks);
    for (size_t i = 0; i < json_array_size (history); i++) {
        const char *id = j_str (json_array_get (history, i), "messageId");
        int index = id && strncmp (id, "flood-", 6) == 0? atoi (id + 6): -1;
        CHECK (index >= 0 && index < SENT && acked [index]);
    }
    json_decref (history);
    //  The bucket refills: a later message goes through.
    long long seq = -1;
    for (int64_t until = clock_mono_ms () + 10000; seq < 0 && clock_mono_ms () < until; ) {
        ws_send (chatty, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message", "roomId", room,
                 "message", "later", "messageId", "later", "requestId", "later");
        json_t *frame = ws_expect_either (chatty, "ack", "messageId", "later", "error",
                                          "requestId", "later", API_WAIT_MS);
        if (frame && s_is (frame, "type", "ack"))
            seq = (long long) j_num (frame, "seq");
        else
            usleep (300 * 1000);
        json_decref (frame);
    }
    CHECK (seq > 0);
    ws_close (&chatty);
    CHECK (api_wait_connections (s_port, 0));   //  its place of 127.0.0.1's is given back
}

static void
s_test_typing (void)
{
    printf ("user-typing: %d at once, the refused get 429\n", SENT);
    const char *room = api_create_room (s_port, "limits-host", 10.0, 10.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *typist = api_connect (s_port, "typist", "Typist");
    REQUIRE (typist);
    json_decref (api_join (typist, room, "typist", -1));
    ws_discard (typist);
    for (int i = 0; i < SENT; i++) {
        char id [32];
        snprintf (id, sizeof id, "typing-%d", i);
        CHECK (ws_send (typist, "{s:s, s:s, s:s}", "action", "user-typing", "roomId", room,
                        "requestId", id) == 0);
    }
    //  A typing event has no answer: only the refused ones do, all before
    //  the pong (a socket's actions are answered in order).
    ws_send (typist, "{s:s, s:s}", "action", "ping", "requestId", "after");
    json_t *pong = ws_expect (typist, "pong", API_WAIT_MS);
    CHECK (pong != NULL);
    json_decref (pong);
    int refused = 0, other = 0;
    json_t *frame;
    while (ws_pending (typist, "error") && (frame = ws_expect (typist, "error", 0))) {
        if (j_num (frame, "status") == 429 && j_is (frame, "action", "user-typing")
        &&  j_is (frame, "roomId", room))
            refused++;
        else
            other++;
        json_decref (frame);
    }
    printf ("  %d refused with 429, %d other errors\n", refused, other);
    CHECK (refused > 0 && refused <= SENT - BURST);
    CHECK (other == 0);
    ws_close (&typist);
    CHECK (api_wait_connections (s_port, 0));
}

static void
s_test_rooms (void)
{
    printf ("ROOMS_PER_MINUTE=%d: the next room is 429 (JSON, CORS); another user's is made\n",
            ROOMS);
    for (int i = 0; i < ROOMS; i++)
        CHECK (api_create_room (s_port, "builder", 20.0, 20.0, NULL, 0) != NULL);
    json_t *answer = NULL;
    //  http_call checks the JSON error and Access-Control-Allow-Origin.
    int status = http_callf (s_port, "POST", "/rooms", &answer, "{s:s, s:f, s:f}",
                             "userId", "builder", "latitude", 20.0, "longitude", 20.0);
    CHECK (status == 429);
    CHECK (j_str (answer, "error") && strstr (j_str (answer, "error"), "rooms a minute"));
    json_decref (answer);
    //  The alias is the same route.
    status = http_callf (s_port, "POST", "/create-room", NULL, "{s:s, s:f, s:f}",
                         "userId", "builder", "latitude", 20.0, "longitude", 20.0);
    CHECK (status == 429);
    CHECK (api_create_room (s_port, "other-builder", 20.0, 20.0, NULL, 0) != NULL);
}

static void
s_test_sockets_per_user (void)
{
    printf ("SOCKETS_PER_USER=%d: the next upgrade of the user is 429; others' are not\n",
            PER_USER);
    ws_raw_t *raws [PER_USER] = { NULL };
    int status;
    char error [256];
    for (int i = 0; i < PER_USER; i++) {
        raws [i] = s_upgrade ("capped", NULL, &status, error, sizeof error);
        CHECK (status == 101 && raws [i]);
    }
    ws_raw_t *over = s_upgrade ("capped", NULL, &status, error, sizeof error);
    CHECK (status == 429 && !over);
    CHECK (strstr (error, "user capped holds its most sockets"));
    ws_raw_t *other = s_upgrade ("uncapped", NULL, &status, error, sizeof error);
    CHECK (status == 101 && other);
    ws_raw_close (&other);
    //  A place given back is taken again.
    ws_raw_close (&raws [0]);
    CHECK (api_wait_connections (s_port, PER_USER - 1));
    raws [0] = s_upgrade ("capped", NULL, &status, error, sizeof error);
    CHECK (status == 101 && raws [0]);
    for (int i = 0; i < PER_USER; i++)
        ws_raw_close (&raws [i]);
    CHECK (api_wait_connections (s_port, 0));
}

static void
s_test_sockets_per_address (void)
{
    printf ("TRUST_PROXY_HEADERS=1, SOCKETS_PER_ADDRESS=%d: X-Forwarded-For's last address "
            "is counted\n", PER_ADDRESS);
    ws_raw_t *raws [PER_ADDRESS] = { NULL };
    int status;
    char error [256], user [32];
    const char *one = "X-Forwarded-For: 203.0.113.7\r\n";
    for (int i = 0; i < PER_ADDRESS; i++) {
        snprintf (user, sizeof user, "neighbour-%d", i);
        raws [i] = s_upgrade (user, one, &status, error, sizeof error);
        CHECK (status == 101 && raws [i]);
    }
    //  A client's own address in front does not make it another.
    ws_raw_t *over = s_upgrade ("neighbour-x", "X-Forwarded-For: 10.1.2.3, 203.0.113.7\r\n",
                                &status, error, sizeof error);
    CHECK (status == 429 && !over);
    CHECK (strstr (error, "address 203.0.113.7 holds its most sockets"));
    //  Another address, and the peer's own (no header), still have room.
    ws_raw_t *elsewhere = s_upgrade ("neighbour-y", "X-Forwarded-For: 203.0.113.8\r\n",
                                     &status, error, sizeof error);
    CHECK (status == 101 && elsewhere);
    ws_raw_t *direct = s_upgrade ("neighbour-z", NULL, &status, error, sizeof error);
    CHECK (status == 101 && direct);
    ws_raw_close (&elsewhere);
    ws_raw_close (&direct);
    for (int i = 0; i < PER_ADDRESS; i++)
        ws_raw_close (&raws [i]);
    CHECK (api_wait_connections (s_port, 0));
}

static void
s_test_frame_sizes (void)
{
    printf ("a frame of 64 KiB is served; one byte more is closed 1009\n");
    int status;
    char error [256];
    ws_raw_t *raw = s_upgrade ("framer", NULL, &status, error, sizeof error);
    REQUIRE (raw);
    size_t size = 64 * 1024;
    char *text = malloc (size + 2);
    REQUIRE (text);
    int head = snprintf (text, 64, "{\"action\":\"ping\",\"pad\":\"");
    memset (text + head, 'p', size - (size_t) head - 2);
    memcpy (text + size - 2, "\"}", 3);
    CHECK (ws_raw_send (raw, text) == 0);
    ws_raw_drained_t got;
    ws_raw_drain (raw, 1000, &got);
    CHECK (got.texts == 1 && strstr (got.text, "\"pong\""));
    CHECK (got.close_code == 0);
    //  Its header alone is refused: the payload need not come.
    unsigned char frame [16];
    frame [0] = 0x81;
    frame [1] = 0x80 | 127;
    uint64_t length = size + 1;
    for (int i = 0; i < 8; i++)
        frame [2 + i] = (unsigned char) (length >> (56 - 8 * i));
    memcpy (frame + 10, "\x01\x02\x03\x04", 4);
    CHECK (ws_raw_write (raw, frame, 14) == 0);
    ws_raw_drain (raw, API_WAIT_MS, &got);
    CHECK (got.close_code == 1009);
    free (text);
    ws_raw_close (&raw);
}

//  One busy socket's client: it sends its frames (a write that blocks
//  while the gateway does not read), then a ping, and reads what came.
typedef struct {
    ws_raw_t *raw;
    const unsigned char *frames;
    size_t size;
    int sent;                           //  0 once every byte was written
    ws_raw_drained_t got;
} busy_t;

static void *
s_busy_client (void *arg)
{
    busy_t *busy = arg;
    busy->sent = ws_raw_write (busy->raw, busy->frames, busy->size);
    ws_raw_send (busy->raw, "{\"action\":\"ping\"}");
    //  Until the pong (the last answer) or a close, 30 s at most: a slow
    //  build (sanitizers) takes seconds over the 4 MiB of frames.
    busy->got = (ws_raw_drained_t) { 0 };
    for (int64_t until = clock_mono_ms () + 30000; clock_mono_ms () < until; ) {
        ws_raw_drained_t got;
        ws_raw_drain (busy->raw, 250, &got);
        busy->got.texts += got.texts;
        if (got.texts)
            memcpy (busy->got.text, got.text, sizeof got.text);
        busy->got.close_code = got.close_code;
        if (got.close_code || got.ended || strstr (busy->got.text, "\"pong\""))
            break;
    }
    return NULL;
}

static void
s_test_busy_not_read (void)
{
    printf ("%d sockets whose join waits (the shard is stopped) send %d MiB each meanwhile: "
            "not read until it is answered\n", BUSY_SOCKETS, BUSY_BYTES >> 20);
    const char *room = api_create_room (s_port, "busy-host", 30.0, 30.0, NULL, 0);
    REQUIRE (room);
    //  Frames that ask nothing back (register-user), so that no queue fills.
    const char *text = "{\"action\":\"register-user\"}";
    size_t one = ws_raw_build ((unsigned char [64]) { 0 }, 64, 0x1, true, true, text, strlen (text));
    unsigned char *frames = malloc (BUSY_BYTES);
    REQUIRE (frames);
    size_t size = 0;
    while (size + one <= BUSY_BYTES)
        size += ws_raw_build (frames + size, one + 14, 0x1, true, true, text, strlen (text));
    static busy_t busy [BUSY_SOCKETS];
    pthread_t threads [BUSY_SOCKETS];
    for (int i = 0; i < BUSY_SOCKETS; i++) {
        char user [32], headers [64], error [256];
        int status;
        snprintf (user, sizeof user, "busy-%d", i);
        snprintf (headers, sizeof headers, "X-Forwarded-For: 192.0.2.%d\r\n", i + 1);
        busy [i] = (busy_t) { .raw = s_upgrade (user, headers, &status, error, sizeof error),
                              .frames = frames, .size = size, .sent = -1 };
        REQUIRE (busy [i].raw);
    }
    long base = harness_rss_kib (&s_system.gateways [0]);
    pid_t shard = s_system.shards [0].pid;
    REQUIRE (shard > 0 && kill (shard, SIGSTOP) == 0);
    char join [256];
    snprintf (join, sizeof join, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
    for (int i = 0; i < BUSY_SOCKETS; i++) {
        CHECK (ws_raw_send (busy [i].raw, join) == 0);
        REQUIRE (pthread_create (&threads [i], NULL, s_busy_client, &busy [i]) == 0);
    }
    long peak = -1;
    for (int64_t until = clock_mono_ms () + 2000; clock_mono_ms () < until; usleep (100 * 1000)) {
        long rss = harness_rss_kib (&s_system.gateways [0]);
        if (rss > peak)
            peak = rss;
    }
    kill (shard, SIGCONT);
    for (int i = 0; i < BUSY_SOCKETS; i++)
        pthread_join (threads [i], NULL);
    printf ("  the gateway grew by %ld KiB while they waited\n", peak - base);
    CHECK (base > 0 && peak - base < BUSY_GROWTH_KIB);
    //  Then every frame was handled, in order: the join (answered, or 503
    //  from a shard that knows it was stopped), the rest, the ping.
    int answered = 0;
    for (int i = 0; i < BUSY_SOCKETS; i++) {
        bool ok = busy [i].sent == 0 && busy [i].got.close_code == 0
               && busy [i].got.texts >= 2 && strstr (busy [i].got.text, "\"pong\"");
        if (!ok)
            fprintf (stderr, "  busy-%d: written %s, %zu texts, close %d, last: %.200s\n", i,
                     busy [i].sent? "not all": "all", busy [i].got.texts,
                     busy [i].got.close_code, busy [i].got.text);
        answered += ok;
        ws_raw_close (&busy [i].raw);
    }
    CHECK (answered == BUSY_SOCKETS);
    free (frames);
    CHECK (api_wait_connections (s_port, 0));
}

//  ---------------------------------------------------------------------------
//  The second system: the peer's address, and pings

static void
s_test_untrusted_header (void)
{
    printf ("TRUST_PROXY_HEADERS=0, SOCKETS_PER_ADDRESS=%d: X-Forwarded-For is ignored\n",
            PER_PEER);
    ws_raw_t *raws [PER_PEER] = { NULL };
    int status;
    char error [256], user [32], headers [64];
    for (int i = 0; i < PER_PEER; i++) {
        snprintf (user, sizeof user, "spoofer-%d", i);
        snprintf (headers, sizeof headers, "X-Forwarded-For: 198.51.100.%d\r\n", i + 1);
        raws [i] = s_upgrade (user, headers, &status, error, sizeof error);
        CHECK (status == 101 && raws [i]);
    }
    ws_raw_t *over = s_upgrade ("spoofer-x", "X-Forwarded-For: 198.51.100.99\r\n",
                                &status, error, sizeof error);
    CHECK (status == 429 && !over);
    CHECK (strstr (error, "address 127.0.0.1 holds its most sockets"));
    for (int i = 0; i < PER_PEER; i++)
        ws_raw_close (&raws [i]);
    CHECK (api_wait_connections (s_port, 0));
}

static void
s_test_pings (void)
{
    printf ("WS_PING_S=%d: a socket that answers no ping is closed 1001; one that does stays\n",
            PING_S);
    int status;
    char error [256];
    ws_raw_t *silent = s_upgrade ("silent", NULL, &status, error, sizeof error);
    ws_raw_t *live = s_upgrade ("live", NULL, &status, error, sizeof error);
    ws_client_t *client = api_connect (s_port, "civetweb-client", NULL);
    REQUIRE (silent && live && client);
    ws_raw_answer_pings (live, true);
    //  The live one reads (and answers) while the silent one is found out.
    ws_raw_drained_t heard;
    CHECK (!ws_raw_drain (live, 3 * PING_S * 1000, &heard));
    CHECK (heard.pings >= 1);
    ws_raw_drained_t got;
    ws_raw_drain (silent, 6 * PING_S * 1000, &got);
    CHECK (got.pings >= 1);
    CHECK (got.close_code == 1001);
    CHECK (strcmp (got.close_reason, "no answer to ping") == 0);
    //  Still served, both: the raw one that answered, and civetweb's client.
    CHECK (ws_raw_send (live, "{\"action\":\"ping\"}") == 0);
    ws_raw_drain (live, 1000, &heard);
    CHECK (heard.texts >= 1 && strstr (heard.text, "\"pong\"") && heard.close_code == 0);
    CHECK (ws_send (client, "{s:s}", "action", "ping") == 0);
    json_t *pong = ws_expect (client, "pong", API_WAIT_MS);
    CHECK (pong != NULL);
    json_decref (pong);
    CHECK (!ws_is_closed (client, 0));
    ws_close (&client);
    ws_raw_close (&silent);
    ws_raw_close (&live);
}

int
main (void)
{
    harness_init ("limits");
    s_test_settings_listed ();
    const char *env [] = {
        "MESSAGES_PER_S=1", "MESSAGES_BURST=3", "ROOMS_PER_MINUTE=3", "SOCKETS_PER_USER=3",
        "SOCKETS_PER_ADDRESS=5", "TRUST_PROXY_HEADERS=1",
        //  A stopped shard is waited for, not dropped (s_test_busy_not_read).
        "SHARD_TIMEOUT_MS=30000", "REQUEST_TIMEOUT_MS=30000", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;
    s_test_messages ();
    s_test_typing ();
    s_test_rooms ();
    s_test_sockets_per_user ();
    s_test_sockets_per_address ();
    s_test_frame_sizes ();
    s_test_busy_not_read ();
    harness_system_stop (&s_system);

    const char *second [] = { "SOCKETS_PER_ADDRESS=3", "WS_PING_S=2", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, second) == 0);
    s_port = s_system.http_port;
    s_test_untrusted_header ();
    s_test_pings ();
    return harness_finish ();
}
