/*  =========================================================================
    test_stored_history - replies bounded by bytes as well as by count,
    against the real stored over ZeroMQ

    A count alone does not bound a reply: 600 messages of 8 KiB (emoji) are
    4.9 MB, more than a frame (PROTO_FRAME_MAX), and a reply the asker
    refuses fails again every time it is asked. Each reply that carries
    messages or rooms stops at PROTO_REPLY_BYTES_MAX, holds one entry at
    least, and a history page says `more` when it stopped early. Here: a
    room of 3,000 messages (a third, then a run of 600, at PROTO_TEXT_MAX
    bytes) read whole by paging either way, and 700 rooms of 99 long
    participant ids each found by geo search and listed as idle.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "clock.h"
#include "ids.h"

#define MESSAGES        3000
#define BIG_RUN_FROM    1001            //  seqs 1001..1600 are all big: the 600
#define BIG_RUN_TO      1600
#define SMALL_FROM      1601            //  and every one from here is small
#define WINDOW          500             //  appends in flight at once
#define ROOMS           700
#define PARTICIPANTS    99

static proto_client_t *s_client;
static char s_big_text [PROTO_TEXT_MAX + 1];
static size_t s_size [MESSAGES + 1];        //  each message's size as stored (packed)

static bool
s_is_big (uint64_t seq)
{
    return seq < SMALL_FROM && (seq % 3 == 0 || (seq >= BIG_RUN_FROM && seq <= BIG_RUN_TO));
}

static size_t
s_packed_size (const proto_message_t *message)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    size_t size = proto_message_pack (&buffer, message) == 0? buffer.size: 0;
    msgpack_sbuffer_destroy (&buffer);
    return size;
}

static size_t
s_room_size (const proto_room_t *room)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    size_t size = proto_room_pack (&buffer, room) == 0? buffer.size: 0;
    msgpack_sbuffer_destroy (&buffer);
    return size;
}

static proto_msg_t *
s_history (const char *room_id, uint64_t from, uint64_t before, uint32_t limit)
{
    proto_msg_t request = { .type = PROTO_HISTORY, .history = {
        .room_id = room_id, .from_seq = from, .before_seq = before, .limit = limit } };
    return harness_call (s_client, &request);
}

//  One page: a history reply, one message at least unless it is the end,
//  within the byte bound, seqs consecutive. Returns the page's bytes, or 0
//  (after a failed CHECK) when it is none of that.
static size_t
s_check_page (const proto_msg_t *page)
{
    if (!CHECK (page && page->type == PROTO_HISTORY_REPLY)) {
        if (page && page->type == PROTO_ERROR)
            fprintf (stderr, "  error %u %s\n", page->error.status, page->error.reason);
        return 0;
    }
    const proto_history_reply_t *history = &page->history_reply;
    size_t bytes = 0;
    for (uint32_t i = 0; i < history->count; i++) {
        const proto_message_t *message = &history->messages [i];
        bytes += s_packed_size (message);
        if (i)
            CHECK (message->seq == history->messages [i - 1].seq + 1);
        //  What was stored comes back: a big message whole, a small one by its text.
        if (message->seq >= 1 && message->seq <= MESSAGES) {
            char small [32];
            snprintf (small, sizeof small, "message %llu", (unsigned long long) message->seq);
            CHECK (strcmp (message->text, s_is_big (message->seq)? s_big_text: small) == 0);
        }
    }
    CHECK (bytes <= PROTO_REPLY_BYTES_MAX);
    CHECK (history->count > 0 || !history->more);
    return bytes;
}

static void
s_fill_room (const char *room_id)
{
    int big = 0;
    for (uint64_t seq = 1; seq <= MESSAGES; seq++)
        big += s_is_big (seq);
    printf ("3,000 messages, %d of them of %d bytes, appended in windows of %d\n",
            big, PROTO_TEXT_MAX, WINDOW);
    //  One client, in order: stored numbers them as sent, so seq k is message k.
    char client_ids [WINDOW][24], texts [WINDOW][32];
    for (uint64_t first = 1; first <= MESSAGES; first += WINDOW) {
        for (int i = 0; i < WINDOW; i++) {
            uint64_t seq = first + (uint64_t) i;
            snprintf (client_ids [i], sizeof client_ids [i], "k-%llu", (unsigned long long) seq);
            snprintf (texts [i], sizeof texts [i], "message %llu", (unsigned long long) seq);
            proto_msg_t request = { .type = PROTO_MSG_APPEND, .msg_append.message = {
                .room_id = room_id, .client_id = client_ids [i], .user_id = "alice",
                .user_name = "Alice", .text = s_is_big (seq)? s_big_text: texts [i],
                .created_at_ms = clock_now_ms () } };
            REQUIRE (proto_client_send (s_client, &request) == 0);
        }
        for (int i = 0; i < WINDOW; i++) {
            proto_msg_t *reply = proto_client_recv (s_client, 10000);
            REQUIRE (reply && reply->type == PROTO_APPEND_REPLY);
            REQUIRE (reply->append_reply.seq == first + (uint64_t) i);
            proto_msg_destroy (&reply);
        }
    }
}

static void
s_test_history (void)
{
    proto_room_t room = harness_room (45, 5);
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
    proto_msg_t *reply = harness_call (s_client, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    s_fill_room (room.id);

    printf ("the issue's case: 600 big messages after seq 1000 in one page of at most %d bytes\n",
            PROTO_REPLY_BYTES_MAX);
    proto_msg_t *page = s_history (room.id, BIG_RUN_FROM, 0, PROTO_LIST_MAX);
    size_t bytes = s_check_page (page);
    if (page && page->type == PROTO_HISTORY_REPLY) {
        const proto_history_reply_t *history = &page->history_reply;
        printf ("  %u messages, %zu bytes, more %d\n", history->count, bytes, history->more);
        CHECK (history->count > 0 && history->messages [0].seq == BIG_RUN_FROM);
        CHECK (history->count < BIG_RUN_TO - BIG_RUN_FROM + 1 && history->more);
        //  Cut where the next would not fit, not before.
        CHECK (bytes + s_size [BIG_RUN_FROM + history->count] > PROTO_REPLY_BYTES_MAX);
    }
    proto_msg_destroy (&page);

    printf ("forward from seq 1, pages of up to 1,000: every message once, in order\n");
    uint64_t expected = 1, from = 1;
    int pages = 0, short_pages = 0;
    for (bool more = true; more && pages < MESSAGES; pages++) {
        page = s_history (room.id, from, 0, PROTO_LIST_MAX);
        REQUIRE (s_check_page (page) || (page && page->history_reply.count == 0));
        const proto_history_reply_t *history = &page->history_reply;
        REQUIRE (history->count > 0 || !history->more);
        if (history->count) {
            CHECK (history->messages [0].seq == expected);
            expected = history->messages [history->count - 1].seq + 1;
            from = expected;
        }
        short_pages += history->count < PROTO_LIST_MAX && history->more;
        more = history->more;
        proto_msg_destroy (&page);
    }
    CHECK (expected == MESSAGES + 1);
    CHECK (short_pages > 0);
    printf ("  %d pages, %d of them cut by bytes\n", pages, short_pages);

    printf ("backward from the newest, pages of up to 1,000: every message once\n");
    uint64_t before = 0, next_newest = MESSAGES;
    pages = 0;
    bool count_cut = false;
    for (bool more = true; more && pages < MESSAGES; pages++) {
        page = s_history (room.id, 0, before, PROTO_LIST_MAX);
        REQUIRE (s_check_page (page) || (page && page->history_reply.count == 0));
        const proto_history_reply_t *history = &page->history_reply;
        REQUIRE (history->count > 0 || !history->more);
        if (history->count) {
            CHECK (history->messages [history->count - 1].seq == next_newest);
            next_newest = history->messages [0].seq - 1;
            before = history->messages [0].seq;
        }
        //  The newest 1,400 are small: the first page is cut by count.
        if (pages == 0)
            count_cut = history->count == PROTO_LIST_MAX && history->more;
        more = history->more;
        proto_msg_destroy (&page);
    }
    CHECK (next_newest == 0);
    CHECK (count_cut);
    printf ("  %d pages\n", pages);

    printf ("a page that ends exactly at the newest message has no more\n");
    page = s_history (room.id, MESSAGES - 999, 0, 1000);
    CHECK (s_check_page (page) && page->history_reply.count == 1000 && !page->history_reply.more);
    proto_msg_destroy (&page);
    page = s_history (room.id, MESSAGES + 1, 0, 1000);
    CHECK (page && page->type == PROTO_HISTORY_REPLY && page->history_reply.count == 0
           && !page->history_reply.more);
    proto_msg_destroy (&page);
    page = s_history (room.id, 0, 2, 1000);
    CHECK (s_check_page (page) && page->history_reply.count == 1 && !page->history_reply.more);
    proto_msg_destroy (&page);
}

//  700 rooms of 99 participants with ids of PROTO_ID_MAX bytes: about
//  6.6 KiB each, 4.7 MB in all, more than a frame if one reply held them.
static void
s_test_rooms (void)
{
    printf ("%d rooms of %d long participant ids: geo search and idle rooms stay in bounds\n",
            ROOMS, PARTICIPANTS);
    static char room_ids [ROOMS][IDS_UUID_SIZE], user_ids [PARTICIPANTS][PROTO_ID_MAX + 1];
    static const char *participants [PARTICIPANTS];
    for (int i = 0; i < PARTICIPANTS; i++) {
        memset (user_ids [i], 'u', PROTO_ID_MAX);
        snprintf (user_ids [i], 8, "u%03d-", i);
        user_ids [i][strlen (user_ids [i])] = 'u';
        user_ids [i][PROTO_ID_MAX] = 0;
        participants [i] = user_ids [i];
    }
    int64_t now = clock_now_ms ();
    size_t one_room = 0;
    for (int i = 0; i < ROOMS; i++) {
        proto_room_t room = {
            .id = ids_uuid (room_ids [i]), .latitude = -33.9, .longitude = 18.4 + i * 1e-6,
            .radius_m = 500, .creator = "creator", .participants = participants,
            .participant_count = PARTICIPANTS, .created_at_ms = now - 100000,
            .last_activity_ms = now - 100000 + i, .status = PROTO_STATUS_ACTIVE,
            .room_type = PROTO_ROOM_PUBLIC, .max_participants = PARTICIPANTS + 1 };
        one_room = s_room_size (&room);
        proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put.room = room };
        REQUIRE (proto_client_send (s_client, &put) == 0);
    }
    for (int i = 0; i < ROOMS; i++) {
        proto_msg_t *reply = proto_client_recv (s_client, 10000);
        REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
        proto_msg_destroy (&reply);
    }
    CHECK (one_room * ROOMS > PROTO_FRAME_MAX);
    printf ("  a room is %zu bytes\n", one_room);

    proto_msg_t search = { .type = PROTO_GEO_SEARCH, .geo_search = {
        .latitude = -33.9, .longitude = 18.4, .limit = PROTO_LIST_MAX } };
    proto_msg_t *reply = harness_call (s_client, &search);
    REQUIRE (reply && reply->type == PROTO_GEO_REPLY);
    size_t bytes = 0;
    for (uint32_t i = 0; i < reply->geo_reply.count; i++) {
        bytes += s_room_size (&reply->geo_reply.hits [i].room);
        if (i)
            CHECK (reply->geo_reply.hits [i].distance_m >= reply->geo_reply.hits [i - 1].distance_m);
    }
    printf ("  geo search: %u rooms, %zu bytes\n", reply->geo_reply.count, bytes);
    CHECK (bytes <= PROTO_REPLY_BYTES_MAX);
    CHECK (reply->geo_reply.count < ROOMS);
    CHECK (bytes + one_room > PROTO_REPLY_BYTES_MAX);          //  as many as fit
    //  The nearest: the first rooms put, each a little further east.
    CHECK (reply->geo_reply.count > 0
           && strcmp (reply->geo_reply.hits [0].room.id, room_ids [0]) == 0);
    proto_msg_destroy (&reply);

    proto_msg_t idle = { .type = PROTO_ROOMS_IDLE, .rooms_idle = {
        .before_ms = now, .limit = PROTO_LIST_MAX } };
    reply = harness_call (s_client, &idle);
    REQUIRE (reply && reply->type == PROTO_ROOM_LIST);
    bytes = 0;
    for (uint32_t i = 0; i < reply->room_list.count; i++)
        bytes += s_room_size (&reply->room_list.rooms [i]);
    printf ("  idle rooms: %u rooms, %zu bytes\n", reply->room_list.count, bytes);
    CHECK (bytes <= PROTO_REPLY_BYTES_MAX);
    CHECK (reply->room_list.count > 0 && reply->room_list.count < ROOMS);
    CHECK (bytes + one_room > PROTO_REPLY_BYTES_MAX);
    //  The oldest first: the first rooms put.
    CHECK (reply->room_list.count > 0
           && strcmp (reply->room_list.rooms [0].id, room_ids [0]) == 0);
    proto_msg_destroy (&reply);
}

int
main (void)
{
    harness_init ("stored_history");
    //  PROTO_TEXT_MAX bytes of 4-byte emoji: as long as a message can be.
    for (size_t i = 0; i + 4 <= PROTO_TEXT_MAX; i += 4)
        memcpy (s_big_text + i, "\xf0\x9f\x98\x80", 4);
    for (uint64_t seq = 1; seq <= MESSAGES; seq++) {
        char small [32];
        snprintf (small, sizeof small, "message %llu", (unsigned long long) seq);
        //  As stored: with the ids and expiry stored gives it.
        proto_message_t message = { .room_id = "00000000-0000-0000-0000-000000000000",
            .id = "00000000-0000-0000-0000-000000000000", .client_id = "k-0000",
            .seq = seq, .user_id = "alice", .user_name = "Alice",
            .text = s_is_big (seq)? s_big_text: small, .created_at_ms = clock_now_ms (),
            .expires_at_ms = clock_now_ms () };
        s_size [seq] = s_packed_size (&message);
    }
    harness_daemon_t stored;
    harness_stored_init (&stored);
    REQUIRE (harness_start (&stored) == 0);
    s_client = proto_client_new (stored.endpoint);
    s_test_history ();
    s_test_rooms ();
    proto_client_destroy (&s_client);
    CHECK (harness_stop (&stored) == 0);
    return harness_finish ();
}
