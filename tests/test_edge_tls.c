/*  =========================================================================
    test_edge_tls - HTTPS and WSS through the edge (HAProxy, nearchat-edge)
    in front of the real system (stored, a gateway that holds no TLS, one
    shard), with a certificate made for the test

    curl, checking the certificate against the one made here, gets /healthz
    over https; HTTP routes answer over https as over plain HTTP, JSON with
    CORS; /healthz advertises wss:// over https and ws:// over plain HTTP,
    whatever X-Forwarded-Proto a client sends (the edge writes it); the TLS
    port speaks no plain HTTP; a user on wss:// and one on ws:// chat in one
    room. The edge refuses TLS 1.1 and every cipher without forward secrecy
    (RSA key exchange) or with CBC and SHA-1, and takes TLS 1.2 with ECDHE
    and TLS 1.3. A certificate without its key, a key that is not the
    certificate's, or no certificate file: nearchat-edge exits 2 naming
    the setting. The edge logs a line per request without its query string
    (where a token travels). Last, a wss:// reader that never reads among ones that
    do, while thousands of messages go to their room: each reader that
    reads gets every message, in order, and the one that does not is closed
    (the gateway closes a slow reader with 1008; through the edge it reads
    what was on its way, then that close or the end of the stream).
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include "api.h"
#include "clock.h"
#include "harness_system.h"
#include "tlsclient.h"

#define MESSAGES        3000
#define TEXT_CHARS      4000
#define IN_FLIGHT       32          //  sends not yet acknowledged, at most
#define FAST_READERS    2

static harness_system_t s_system;
static int s_port, s_tls_port;      //  the edge's

//  A response over https is what the contract says of every answer.
static bool
s_is_json_with_cors (const http_response_t *response)
{
    return !strncmp (response->content_type, "application/json", 16)
        && !strcmp (response->allow_origin, "*");
}

static void
s_test_https (void)
{
    printf ("https through the edge: curl checks our certificate and gets /healthz\n");
    char command [2 * PATH_MAX];
    snprintf (command, sizeof command,
              "curl -sS -m 10 --cacert '%s' -o /dev/null -w '%%{http_code}' "
              "https://127.0.0.1:%d/healthz", s_system.edge_cert, s_tls_port);
    FILE *curl = popen (command, "r");
    REQUIRE (curl);
    char code [16] = "";
    CHECK (fgets (code, sizeof code, curl) != NULL);
    CHECK (pclose (curl) == 0);
    if (!CHECK (strcmp (code, "200") == 0))
        fprintf (stderr, "  curl said %s\n", code);

    printf ("routes over https: create a room, read it and its messages\n");
    http_response_t response;
    const char *create = "{\"userId\":\"hugo\",\"latitude\":12.5,\"longitude\":7.25}";
    CHECK (https_request (s_tls_port, "POST", "/rooms", create, strlen (create), &response) == 200);
    CHECK (s_is_json_with_cors (&response));
    json_t *room = json_loads (response.body, 0, NULL);
    const char *id = j_str (room, "roomId")? j_str (room, "roomId"): j_str (room, "id");
    if (!CHECK (id))
        fprintf (stderr, "  POST /rooms over https said %s\n", response.body);
    http_response_free (&response);
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", id? id: "none");
    CHECK (https_request (s_tls_port, "GET", path, NULL, 0, &response) == 200);
    CHECK (s_is_json_with_cors (&response));
    http_response_free (&response);
    snprintf (path, sizeof path, "/rooms/%s/messages", id? id: "none");
    CHECK (https_request (s_tls_port, "GET", path, NULL, 0, &response) == 200);
    CHECK (s_is_json_with_cors (&response));
    http_response_free (&response);
    json_decref (room);
    //  An error is the gateway's JSON, through the edge as it is.
    CHECK (https_request (s_tls_port, "GET", "/no-such-route", NULL, 0, &response) == 404);
    CHECK (s_is_json_with_cors (&response));
    http_response_free (&response);

    printf ("https and http side by side, each advertising its own WebSocket scheme, "
            "whatever the client says; the TLS port speaks no plain HTTP\n");
    char url [128];
    CHECK (https_request (s_tls_port, "GET", "/healthz", NULL, 0, &response) == 200);
    json_t *health = json_loads (response.body, 0, NULL);
    CHECK (j_is (health, "status", "ok"));
    snprintf (url, sizeof url, "wss://127.0.0.1:%d/ws", s_tls_port);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    snprintf (url, sizeof url, "ws://127.0.0.1:%d/ws", s_port);
    CHECK (http_request (s_port, "GET", "/healthz", NULL, 0, &response) == 200);
    health = json_loads (response.body, 0, NULL);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    //  A client's own X-Forwarded-Proto is not believed: the edge writes it.
    CHECK (http_request_with (s_port, "GET", "/healthz", "X-Forwarded-Proto: https\r\n",
                              NULL, 0, &response) == 200);
    health = json_loads (response.body, 0, NULL);
    CHECK (j_is (health, "websocketEndpoint", url));
    json_decref (health);
    http_response_free (&response);
    CHECK (http_request (s_tls_port, "GET", "/healthz", NULL, 0, &response) != 200);
    http_response_free (&response);
}

static void
s_test_log (void)
{
    printf ("the edge logs each request, never its query string (tokens travel as ?token=)\n");
    http_response_t response;
    CHECK (https_request (s_tls_port, "GET", "/healthz?token=sEcReT-tOkEn", NULL, 0, &response) == 200);
    http_response_free (&response);
    CHECK (http_request (s_port, "GET", "/rooms/nowhere?token=sEcReT-tOkEn", NULL, 0, &response) > 0);
    http_response_free (&response);
    //  HAProxy writes a request's line once it has ended: a bounded wait.
    int64_t deadline = clock_mono_ms () + 5000;
    while (!harness_logged (s_system.edge.log_path, "GET /rooms/nowhere ") && clock_mono_ms () < deadline)
        usleep (50 * 1000);
    CHECK (harness_logged (s_system.edge.log_path, "\"msg\":\"GET /healthz 200\""));
    CHECK (harness_logged (s_system.edge.log_path, "GET /rooms/nowhere "));
    CHECK (!harness_logged (s_system.edge.log_path, "sEcReT-tOkEn"));
}

static void
s_test_wss (void)
{
    printf ("wss and ws users chat in one room through the edge\n");
    const char *room = api_create_room (s_port, "tess", 30, 30, NULL, 0);
    REQUIRE (room);
    ws_client_t *tess = ws_open_tls (s_tls_port, "/ws?userId=tess");
    ws_client_t *ward = api_connect (s_port, "ward", NULL);
    REQUIRE (tess && ward);
    json_decref (api_join (tess, room, "tess", -1));
    json_decref (api_join (ward, room, "ward", -1));
    CHECK (api_say (tess, room, "s-1", "over tls") > 0);
    CHECK (api_heard (ward, "over tls") > 0);
    CHECK (api_say (ward, room, "s-2", "in the clear") > 0);
    CHECK (api_heard (tess, "in the clear") > 0);
    ws_close (&tess);
    ws_close (&ward);
}

static void
s_test_ciphers (void)
{
    printf ("TLS 1.1 is refused\n");
    CHECK (tls_handshake_with (s_tls_port, TLS1_1_VERSION, NULL) == 0);
    printf ("TLS 1.2 with RSA key exchange (no forward secrecy) is refused\n");
    CHECK (tls_handshake_with (s_tls_port, TLS1_2_VERSION, "AES128-GCM-SHA256:AES256-GCM-SHA384") == 0);
    CHECK (tls_handshake_with (s_tls_port, TLS1_2_VERSION, "AES128-SHA:AES256-SHA256") == 0);
    printf ("TLS 1.2 with ECDHE but CBC and SHA-1 is refused\n");
    CHECK (tls_handshake_with (s_tls_port, TLS1_2_VERSION, "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA") == 0);
    printf ("TLS 1.2 with ECDHE and AES-GCM, and TLS 1.3, are taken\n");
    CHECK (tls_handshake_with (s_tls_port, TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256") == 1);
    CHECK (tls_handshake_with (s_tls_port, TLS1_3_VERSION, NULL) == 1);
}

static void
s_test_bad_settings (void)
{
    printf ("a certificate without its key, with a wrong one, or none: nearchat-edge exits 2\n");
    char other_key [PATH_MAX], command [2 * PATH_MAX];
    snprintf (other_key, sizeof other_key, "%s/other-key.pem", harness_dir ());
    snprintf (command, sizeof command,
              "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '%s' 2>/dev/null",
              other_key);
    REQUIRE (system (command) == 0);
    char cert [PATH_MAX + 16], key [PATH_MAX + 16], other [PATH_MAX + 16], tmp [PATH_MAX + 16];
    snprintf (cert, sizeof cert, "TLS_CERT=%s", s_system.edge_cert);
    snprintf (key, sizeof key, "TLS_KEY=%s", s_system.edge_key);
    snprintf (other, sizeof other, "TLS_KEY=%s", other_key);
    snprintf (tmp, sizeof tmp, "TMPDIR=%s", harness_dir ());
    const char *check [] = { "--check", NULL };
    char output [2048];
    const char *alone [] = { cert, tmp, NULL };
    CHECK (harness_run ("nearchat-edge", alone, check, output, sizeof output) == 2);
    CHECK (strstr (output, "bad value for TLS_KEY") != NULL);
    const char *wrong [] = { cert, other, tmp, NULL };
    CHECK (harness_run ("nearchat-edge", wrong, check, output, sizeof output) == 2);
    if (!CHECK (strstr (output, "bad value for TLS_KEY") != NULL))
        fprintf (stderr, "  nearchat-edge said: %s\n", output);
    const char *missing [] = { "TLS_CERT=/nonexistent/cert.pem", key, tmp, NULL };
    CHECK (harness_run ("nearchat-edge", missing, check, output, sizeof output) == 2);
    CHECK (strstr (output, "bad value for TLS_CERT") != NULL);
    //  And the good pair passes.
    const char *good [] = { cert, key, tmp, NULL };
    CHECK (harness_run ("nearchat-edge", good, check, output, sizeof output) == 0);
}

//  ---------------------------------------------------------------------------
//  A slow wss reader among fast ones

//  Take what a fast reader has heard; false if a seq came out of order.
static bool
s_take_heard (ws_client_t *reader, int *heard, long long *last_seq)
{
    bool ordered = true;
    while (ws_pending (reader, "new-message")) {
        json_t *message = ws_expect (reader, "new-message", 0);
        long long seq = (long long) j_num (message, "seq");
        ordered &= seq > *last_seq;
        *last_seq = seq;
        (*heard)++;
        json_decref (message);
    }
    return ordered;
}

static void
s_test_slow_reader (void)
{
    printf ("a wss reader that never reads among %d that do; %d messages of %d characters\n",
            FAST_READERS, MESSAGES, TEXT_CHARS);
    const char *room = api_create_room (s_port, "sender", 5.0, 5.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *sender = api_connect (s_port, "sender", "Sender");
    REQUIRE (sender);
    json_decref (api_join (sender, room, "sender", -1));
    ws_client_t *fast [FAST_READERS];
    for (int i = 0; i < FAST_READERS; i++) {
        char path [64], user [32];
        snprintf (user, sizeof user, "fast-%d", i);
        snprintf (path, sizeof path, "/ws?userId=%s", user);
        fast [i] = ws_open_tls (s_tls_port, path);
        REQUIRE (fast [i]);
        json_decref (api_join (fast [i], room, user, -1));
    }
    tls_raw_t *slow = tls_raw_open (NULL, s_tls_port, 4096);
    REQUIRE (slow);
    REQUIRE (wss_raw_upgrade (slow, s_tls_port, "/ws?userId=slow") == 101);
    char join [256];
    snprintf (join, sizeof join, "{\"action\":\"join-room\",\"roomId\":\"%s\"}", room);
    CHECK (wss_raw_send (slow, join) == 0);
    json_t *joined = ws_expect_where (sender, "user-joined", "userId", "slow", API_WAIT_MS);
    REQUIRE (joined);
    json_decref (joined);

    //  A bounded window of unacknowledged sends; an error puts a message
    //  back to be sent again (its messageId makes that harmless). Progress
    //  must not stop for 10 s while some are due.
    enum { UNSENT, SENT, ACKED };
    static int state [MESSAGES];
    char *text = malloc (TEXT_CHARS + 1);
    REQUIRE (text);
    int next = 0, in_flight = 0, done = 0, errors = 0;
    int heard [FAST_READERS] = { 0 };
    long long last_seq [FAST_READERS] = { 0 };
    bool ordered = true, stalled = false;
    int64_t started = clock_mono_ms (), progress = started;
    while (!stalled) {
        int least = done;
        for (int i = 0; i < FAST_READERS; i++)
            least = heard [i] < least? heard [i]: least;
        if (done == MESSAGES && least == MESSAGES)
            break;
        for (; in_flight < IN_FLIGHT && next < MESSAGES; next++)
            if (state [next] == UNSENT) {
                char id [32];
                snprintf (id, sizeof id, "m-%d", next);
                memset (text, 'a' + next % 26, TEXT_CHARS);
                text [TEXT_CHARS] = 0;
                ws_send (sender, "{s:s, s:s, s:s, s:s, s:s}", "action", "send-message",
                         "roomId", room, "message", text, "messageId", id, "requestId", id);
                state [next] = SENT;
                in_flight++;
            }
        for (int i = 0; i < FAST_READERS; i++) {
            int before = heard [i];
            ordered &= s_take_heard (fast [i], &heard [i], &last_seq [i]);
            if (heard [i] > before)
                progress = clock_mono_ms ();
        }
        while (ws_pending (sender, "ack") + ws_pending (sender, "error")) {
            json_t *frame = ws_expect_either (sender, "ack", NULL, NULL, "error", NULL, NULL, 0);
            const char *type = j_str (frame, "type");
            bool ack = type && !strcmp (type, "ack");
            const char *id = j_str (frame, ack? "messageId": "requestId");
            int number = id && !strncmp (id, "m-", 2)? atoi (id + 2): -1;
            if (number >= 0 && number < MESSAGES && state [number] == SENT) {
                in_flight--;
                progress = clock_mono_ms ();
                if (ack) {
                    state [number] = ACKED;
                    done++;
                }
                else {
                    if (errors++ < 5)
                        fprintf (stderr, "  m-%d: error %.0f %s (sent again)\n", number,
                                 j_num (frame, "status"), j_str (frame, "error"));
                    state [number] = UNSENT;
                    next = number < next? number: next;
                }
            }
            json_decref (frame);
        }
        ws_drop (sender, "new-message");
        if (clock_mono_ms () - progress > 10000) {
            fprintf (stderr, "  nothing moved for 10 s: %d acknowledged, %d in flight\n",
                     done, in_flight);
            stalled = true;
        }
        usleep (1000);
    }
    free (text);
    printf ("  %d acknowledged in %lld ms (%d errors on the way)", done,
            (long long) (clock_mono_ms () - started), errors);
    for (int i = 0; i < FAST_READERS; i++)
        printf ("; fast-%d heard %d", i, heard [i]);
    printf ("\n");
    CHECK (!stalled);
    CHECK (done == MESSAGES);
    for (int i = 0; i < FAST_READERS; i++) {
        CHECK (heard [i] == MESSAGES);
        CHECK (ws_quiet (fast [i], "new-message", API_QUIET_MS));
    }
    CHECK (ordered);

    //  The slow one reads at last: what was on its way, then the end.
    ws_raw_drained_t drained;
    bool closed = wss_raw_drain (slow, 20000, &drained);
    printf ("  slow: %zu frames (%zu bytes) were waiting; %s%d %s%s%s\n", drained.frames,
            drained.bytes, drained.close_code? "then a close frame: ": "", drained.close_code,
            drained.close_reason, drained.ended? " (stream ended)": "", closed? "": " still open");
    CHECK (closed);
    CHECK (drained.close_code == 1008 || (drained.close_code == 0 && drained.ended));
    CHECK (drained.texts < (size_t) MESSAGES);
    tls_raw_close (&slow);

    //  The readers that read are still served.
    CHECK (api_say (fast [0], room, "after", "still here") > 0);
    CHECK (api_heard (fast [FAST_READERS - 1], "still here") > 0);
    for (int i = 0; i < FAST_READERS; i++)
        ws_close (&fast [i]);
    ws_close (&sender);
}

int
main (void)
{
    harness_init ("edge_tls");
    //  One sender sends thousands of messages at once: no per-user rate here.
    const char *env [] = { "MAX_MESSAGE_CHARS=4000", "SOCKET_QUEUE_MAX=256", "MESSAGES_PER_S=0", NULL };
    REQUIRE (harness_system_start_edge (&s_system, 1, true, env, NULL) == 0);
    s_port = s_system.edge_port;
    s_tls_port = s_system.edge_tls_port;
    s_test_https ();
    s_test_log ();
    s_test_wss ();
    s_test_ciphers ();
    s_test_bad_settings ();
    s_test_slow_reader ();
    return harness_finish ();
}
