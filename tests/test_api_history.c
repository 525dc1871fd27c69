/*  =========================================================================
    test_api_history - a room of 3,000 messages, a third of them as long as
    a message can be (2,048 characters, 8 KiB of emoji), recovered whole
    through the public API, against the real system (stored, gateway, a
    shard)

    GET /rooms/{id}/messages paged backwards with before=<the oldest seq
    got> until an empty array: every message once, seq rising throughout,
    each page within the byte bound (so some are shorter than limit), and
    X-More saying whether older ones remain. A sinceSeq join: its first
    message-history is the first page after the seq, with more: true, not
    a 503. limit outside 1..1000 or no number: 400 naming limit. And
    HISTORY_ON_JOIN=0: a plain join's message-history is empty.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"

#define MESSAGES    3000
#define SENDERS     3
#define WINDOW      40              //  sends in flight on each socket
#define BIG_CHARS   2048            //  MAX_MESSAGE_CHARS for this test
#define EMOJI       "\xf0\x9f\x98\x80"

static harness_system_t s_system;
static int s_port;
static const char *s_room;
static uint64_t s_seq_of [MESSAGES + 1];    //  message k (as sent) -> its seq
static int s_message_of [MESSAGES + 1];     //  seq -> k

static bool
s_is_big (int k)
{
    return k % 3 == 0 || (k > 1000 && k <= 1600);
}

//  Message k: "k0042 " then emoji up to BIG_CHARS characters (8,174
//  bytes), or "k0042 small".
static void
s_text (int k, char *text, size_t size)
{
    int length = snprintf (text, size, "k%04d ", k);
    if (!s_is_big (k)) {
        snprintf (text + length, size - (size_t) length, "small");
        return;
    }
    for (int chars = length; chars < BIG_CHARS && (size_t) length + 5 <= size; chars++) {
        memcpy (text + length, EMOJI, 4);
        length += 4;
    }
    text [length] = 0;
}

//  The k a message's text says it is, after checking the rest of the text; 0 if wrong.
static int
s_message_k (json_t *message)
{
    const char *text = j_str (message, "text");
    int k = 0;
    if (!text || sscanf (text, "k%4d ", &k) != 1 || k < 1 || k > MESSAGES)
        return 0;
    char expected [BIG_CHARS * 4 + 1];
    s_text (k, expected, sizeof expected);
    return strcmp (text, expected) == 0? k: 0;
}

static void
s_fill (void)
{
    printf ("%d messages over %d WebSockets, %d in flight on each\n", MESSAGES, SENDERS, WINDOW);
    ws_client_t *senders [SENDERS];
    for (int s = 0; s < SENDERS; s++) {
        char user [16];
        snprintf (user, sizeof user, "sender-%d", s);
        senders [s] = api_connect (s_port, user, user);
        REQUIRE (senders [s]);
        json_t *history = api_join (senders [s], s_room, user, -1);
        REQUIRE (history);
        json_decref (history);
    }
    static char text [BIG_CHARS * 4 + 1];
    int acked = 0;
    for (int first = 1; first <= MESSAGES; first += SENDERS * WINDOW) {
        int last = first + SENDERS * WINDOW - 1;
        if (last > MESSAGES)
            last = MESSAGES;
        for (int k = first; k <= last; k++) {
            char id [16];
            snprintf (id, sizeof id, "k%d", k);
            s_text (k, text, sizeof text);
            REQUIRE (ws_send (senders [k % SENDERS], "{s:s, s:s, s:s, s:s}", "action",
                              "send-message", "roomId", s_room, "message", text,
                              "messageId", id) == 0);
        }
        for (int k = first; k <= last; k++) {
            char id [16];
            snprintf (id, sizeof id, "k%d", k);
            json_t *ack = ws_expect_either (senders [k % SENDERS], "ack", "messageId", id,
                                            "error", NULL, NULL, API_WAIT_MS);
            REQUIRE (ack && j_is (ack, "type", "ack"));
            uint64_t seq = (uint64_t) j_num (ack, "seq");
            REQUIRE (seq >= 1 && seq <= MESSAGES && s_message_of [seq] == 0);
            s_seq_of [k] = seq;
            s_message_of [seq] = k;
            acked++;
            json_decref (ack);
        }
        //  Every sender hears every message: no need to keep them.
        for (int s = 0; s < SENDERS; s++)
            ws_drop (senders [s], "new-message");
    }
    CHECK (acked == MESSAGES);
    for (int s = 0; s < SENDERS; s++)
        ws_close (&senders [s]);
}

static void
s_test_http_paging (void)
{
    printf ("GET messages?limit=1000 paged backwards until []: every message once, in order\n");
    static bool seen [MESSAGES + 1];
    char path [256];
    uint64_t before = 0, newest_expected = MESSAGES;
    int pages = 0, short_pages = 0, got = 0;
    size_t largest = 0;
    bool ended = false;
    while (!ended && pages < MESSAGES + 1) {
        if (before)
            snprintf (path, sizeof path, "/rooms/%s/messages?before=%llu&limit=1000", s_room,
                      (unsigned long long) before);
        else
            snprintf (path, sizeof path, "/rooms/%s/messages?limit=1000", s_room);
        http_response_t response;
        int status = http_request (s_port, "GET", path, NULL, 0, &response);
        pages++;
        if (status != 200)
            fprintf (stderr, "  %s: %d %.200s\n", path, status, response.body);
        REQUIRE (status == 200);
        CHECK (strstr (response.content_type, "application/json") != NULL);
        CHECK (strcmp (response.allow_origin, "*") == 0);
        CHECK (strstr (response.expose_headers, "X-More") != NULL);
        json_t *page = json_loadb (response.body, response.size, 0, NULL);
        REQUIRE (json_is_array (page));
        size_t count = json_array_size (page);
        CHECK (response.size <= 2 * PROTO_REPLY_BYTES_MAX);     //  JSON of at most a page
        if (response.size > largest)
            largest = response.size;
        //  Oldest first within the page, and the page ends where the last began.
        for (size_t i = 0; i < count; i++) {
            json_t *message = json_array_get (page, i);
            uint64_t seq = (uint64_t) j_num (message, "seq");
            CHECK (seq == newest_expected - count + 1 + i);
            int k = s_message_k (message);
            CHECK (k && seq >= 1 && seq <= MESSAGES && s_message_of [seq] == k);
            if (seq >= 1 && seq <= MESSAGES) {
                CHECK (!seen [seq]);
                seen [seq] = true;
            }
        }
        got += (int) count;
        bool more = strcmp (response.more, "true") == 0;
        CHECK (more || strcmp (response.more, "false") == 0);
        if (count) {
            uint64_t oldest = (uint64_t) j_num (json_array_get (page, 0), "seq");
            CHECK (more == (oldest > 1));
            newest_expected = oldest - 1;
            before = oldest;
            short_pages += count < 1000 && more;
        }
        else {
            CHECK (!more);
            ended = true;
        }
        json_decref (page);
        http_response_free (&response);
    }
    CHECK (ended && got == MESSAGES && newest_expected == 0);
    for (int seq = 1; seq <= MESSAGES; seq++)
        CHECK (seen [seq]);
    CHECK (short_pages > 0);
    printf ("  %d pages, %d of them shorter than limit with more behind, the largest %zu bytes\n",
            pages, short_pages, largest);
}

static void
s_test_join_since (void)
{
    printf ("a sinceSeq join: the first page after the seq, more: true, no 503\n");
    ws_client_t *late = api_connect (s_port, "late", "Late");
    REQUIRE (late);
    json_t *history = api_join (late, s_room, "late", 1);
    REQUIRE (history);
    json_t *messages = j_get (history, "messages");
    size_t count = json_array_size (messages);
    printf ("  %zu messages, more %s\n", count,
            json_is_true (j_get (history, "more"))? "true": "false");
    CHECK (count > 0 && count < MESSAGES - 1);
    CHECK (json_is_true (j_get (history, "more")));
    for (size_t i = 0; i < count; i++) {
        json_t *message = json_array_get (messages, i);
        uint64_t seq = (uint64_t) j_num (message, "seq");
        CHECK (seq == 2 + i);
        CHECK (seq <= MESSAGES && s_message_k (message) == s_message_of [seq]);
    }
    CHECK (ws_pending (late, "error") == 0);
    json_decref (history);

    //  The gateway pages the rest for it: further message-history frames,
    //  in order, until one says more: false; nothing comes twice as a
    //  new-message.
    size_t pages = 1;
    uint64_t next = 2 + count;
    bool more = true;
    while (more && pages < 100) {
        history = ws_expect (late, "message-history", API_WAIT_MS);
        if (!CHECK (history != NULL))
            break;
        pages++;
        messages = j_get (history, "messages");
        for (size_t i = 0; i < json_array_size (messages); i++) {
            json_t *message = json_array_get (messages, i);
            uint64_t seq = (uint64_t) j_num (message, "seq");
            CHECK (seq == next);
            CHECK (seq <= MESSAGES && s_message_k (message) == s_message_of [seq]);
            next = seq + 1;
        }
        more = json_is_true (j_get (history, "more"));
        json_decref (history);
    }
    printf ("  the rest in %zu more pages, to seq %llu\n", pages - 1, (unsigned long long) next - 1);
    CHECK (next == MESSAGES + 1);
    CHECK (ws_pending (late, "new-message") == 0);
    ws_close (&late);

    printf ("a sinceSeq join near the end: the rest, more: false\n");
    ws_client_t *later = api_connect (s_port, "later", NULL);
    REQUIRE (later);
    history = api_join (later, s_room, "later", MESSAGES - 10);
    REQUIRE (history);
    messages = j_get (history, "messages");
    CHECK (json_array_size (messages) == 10);
    CHECK (j_num (json_array_get (messages, 0), "seq") == MESSAGES - 9);
    CHECK (json_is_false (j_get (history, "more")));
    json_decref (history);
    ws_close (&later);
}

static void
s_test_history_on_join_zero (void)
{
    printf ("HISTORY_ON_JOIN=0: a plain join is sent no history\n");
    ws_client_t *plain = api_connect (s_port, "plain", NULL);
    REQUIRE (plain);
    json_t *history = api_join (plain, s_room, "plain", -1);
    REQUIRE (history);
    CHECK (json_is_array (j_get (history, "messages"))
           && json_array_size (j_get (history, "messages")) == 0);
    CHECK (json_is_false (j_get (history, "more")));
    json_decref (history);
    ws_close (&plain);
}

static void
s_test_limits (void)
{
    printf ("limit over 1,000, under 1 or no number: 400 naming limit\n");
    const char *bad [] = { "limit=1001", "limit=0", "limit=-3", "limit=abc", "limit=2.5",
                           "limit=100000000000000000000", NULL };
    for (int i = 0; bad [i]; i++) {
        char path [256];
        snprintf (path, sizeof path, "/rooms/%s/messages?%s", s_room, bad [i]);
        json_t *answer = NULL;
        int status = http_call (s_port, "GET", path, NULL, &answer);
        if (status != 400)
            fprintf (stderr, "  %s: %d\n", bad [i], status);
        CHECK (status == 400);
        CHECK (j_str (answer, "error") && strstr (j_str (answer, "error"), "limit"));
        json_decref (answer);
    }
    char path [256];
    json_t *answer = NULL;
    snprintf (path, sizeof path, "/rooms/%s/messages?before=soon", s_room);
    CHECK (http_call (s_port, "GET", path, NULL, &answer) == 400);
    CHECK (j_str (answer, "error") && strstr (j_str (answer, "error"), "before"));
    json_decref (answer);
    //  The largest limit is fine, and a small page says whether there is more.
    http_response_t response;
    snprintf (path, sizeof path, "/rooms/%s/messages?limit=1", s_room);
    CHECK (http_request (s_port, "GET", path, NULL, 0, &response) == 200);
    CHECK (strcmp (response.more, "true") == 0);
    http_response_free (&response);
    snprintf (path, sizeof path, "/rooms/%s/messages?before=2&limit=1", s_room);
    CHECK (http_request (s_port, "GET", path, NULL, 0, &response) == 200);
    CHECK (strcmp (response.more, "false") == 0);
    http_response_free (&response);
}

int
main (void)
{
    harness_init ("api_history");
    //  Thousands of messages as fast as they are acknowledged: no rate limit.
    const char *env [] = { "MAX_MESSAGE_CHARS=2048", "HISTORY_ON_JOIN=0",
                           "SOCKET_QUEUE_MAX=100000", "MESSAGES_PER_S=0", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;
    s_room = api_create_room (s_port, "sender-0", 52.52, 13.40, NULL, 0);
    REQUIRE (s_room);

    s_fill ();
    s_test_limits ();
    s_test_http_paging ();
    s_test_join_since ();
    s_test_history_on_join_zero ();

    return harness_finish ();
}
