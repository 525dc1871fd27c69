/*  =========================================================================
    stress_check.c - test_stress's records and its checks at the end
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "stress_check.h"
#include "api.h"
#include "clock.h"

#define ID_SIZE         48
#define SEGMENTS_MAX    20000
#define PAGE            100         //  messages a page of GET /rooms/{id}/messages
#define PAGES_MAX       1000

typedef struct {
    int64_t seq;
    char id [ID_SIZE];
} entry_t;

//  A growing list of entries.
typedef struct {
    entry_t *entries;
    size_t count, max;
} list_t;

typedef struct {
    int room;
    int actor;
    int64_t since_seq;
    int64_t base;                   //  every acked seq after it must be heard
    bool history;                   //  its message-history came
    bool live;                      //  still in the room
    list_t heard;
} segment_t;

static char s_room_ids [STRESS_ROOMS][64];
static list_t s_acked [STRESS_ROOMS];
static list_t s_stored [STRESS_ROOMS];     //  each room's history as read back, by seq
static int64_t s_stored_last [STRESS_ROOMS];
static segment_t s_segments [SEGMENTS_MAX];
static int s_segment_count;

static void
s_list_add (list_t *list, int64_t seq, const char *id)
{
    if (list->count == list->max) {
        list->max = list->max? list->max * 2: 64;
        list->entries = realloc (list->entries, list->max * sizeof (entry_t));
        assert (list->entries);
    }
    entry_t *entry = &list->entries [list->count++];
    entry->seq = seq;
    snprintf (entry->id, sizeof entry->id, "%s", id? id: "");
}

void
stress_room_set (int room, const char *room_id)
{
    assert (room >= 0 && room < STRESS_ROOMS);
    snprintf (s_room_ids [room], sizeof s_room_ids [0], "%s", room_id);
}

const char *
stress_room_id (int room)
{
    assert (room >= 0 && room < STRESS_ROOMS);
    return s_room_ids [room];
}

int
stress_room_index (const char *room_id)
{
    for (int room = 0; room < STRESS_ROOMS; room++)
        if (!strcmp (s_room_ids [room], room_id))
            return room;
    return -1;
}

void
stress_acked (int room, int64_t seq, const char *id)
{
    s_list_add (&s_acked [room], seq, id);
}

size_t
stress_acked_count (void)
{
    size_t count = 0;
    for (int room = 0; room < STRESS_ROOMS; room++)
        count += s_acked [room].count;
    return count;
}

int
stress_segment_new (int room, int actor, int64_t since_seq)
{
    assert (s_segment_count < SEGMENTS_MAX);
    segment_t *segment = &s_segments [s_segment_count];
    *segment = (segment_t) { .room = room, .actor = actor, .since_seq = since_seq,
                             .live = true };
    return s_segment_count++;
}

void
stress_segment_history (int index)
{
    segment_t *segment = &s_segments [index];
    segment->history = true;
    segment->base = segment->since_seq;
    for (size_t i = 0; !segment->since_seq && i < segment->heard.count; i++)
        if (segment->heard.entries [i].seq > segment->base)
            segment->base = segment->heard.entries [i].seq;
}

void
stress_segment_add (int index, int64_t seq, const char *id)
{
    s_list_add (&s_segments [index].heard, seq, id);
}

void
stress_segment_end (int index)
{
    if (index >= 0)
        s_segments [index].live = false;
}

int
stress_segment_room (int index)
{
    return index >= 0? s_segments [index].room: -1;
}

static int64_t
s_last_acked (int room)
{
    int64_t last = 0;
    for (size_t i = 0; i < s_acked [room].count; i++)
        if (s_acked [room].entries [i].seq > last)
            last = s_acked [room].entries [i].seq;
    return last;
}

static int64_t
s_last_heard (const segment_t *segment)
{
    int64_t last = 0;
    for (size_t i = 0; i < segment->heard.count; i++)
        if (segment->heard.entries [i].seq > last)
            last = segment->heard.entries [i].seq;
    return last;
}

bool
stress_caught_up (void)
{
    for (int i = 0; i < s_segment_count; i++) {
        const segment_t *segment = &s_segments [i];
        if (segment->live && segment->history
        &&  s_last_heard (segment) < s_last_acked (segment->room))
            return false;
    }
    return true;
}

//  ---------------------------------------------------------------------------

//  Read room's history over HTTP, newest page first, into s_stored [room]
//  indexed by seq (an empty id where no message is); CHECK each page.
static void
s_read_history (int port, int room)
{
    list_t read = { 0 };
    int64_t before = 0;
    for (int page = 0; page < PAGES_MAX; page++) {
        char path [256];
        int length = snprintf (path, sizeof path, "/rooms/%s/messages?limit=%d",
                               s_room_ids [room], PAGE);
        if (before)
            snprintf (path + length, sizeof path - (size_t) length, "&before=%lld",
                      (long long) before);
        json_t *messages = NULL;
        int status = http_call (port, "GET", path, NULL, &messages);
        CHECK (status == 200 && json_is_array (messages));
        size_t count = json_array_size (messages);
        int64_t previous = 0;
        for (size_t i = 0; i < count; i++) {
            json_t *message = json_array_get (messages, i);
            int64_t seq = (int64_t) j_num (message, "seq");
            //  Oldest first in a page, and every page older than the last.
            if (seq <= previous || (before && seq >= before) || seq <= 0) {
                fprintf (stderr, "  room %d's history: seq %lld after %lld (before=%lld)\n",
                         room, (long long) seq, (long long) previous, (long long) before);
                CHECK (false);
            }
            previous = seq;
            s_list_add (&read, seq, j_str (message, "id"));
        }
        int64_t oldest = count? (int64_t) j_num (json_array_get (messages, 0), "seq"): 0;
        json_decref (messages);
        if (count == 0 || oldest <= 1 || (before && oldest >= before))
            break;
        before = oldest;
    }
    int64_t last = 0;
    for (size_t i = 0; i < read.count; i++)
        if (read.entries [i].seq > last)
            last = read.entries [i].seq;
    s_stored_last [room] = last;
    list_t *stored = &s_stored [room];
    stored->count = stored->max = (size_t) last + 1;
    stored->entries = calloc (stored->max, sizeof (entry_t));
    assert (stored->entries);
    for (size_t i = 0; i < read.count; i++) {
        entry_t *entry = &stored->entries [read.entries [i].seq];
        if (entry->seq) {
            fprintf (stderr, "  room %d's history holds seq %lld twice\n", room,
                     (long long) entry->seq);
            CHECK (false);
        }
        *entry = read.entries [i];
    }
    free (read.entries);
}

static int
s_by_id (const void *a, const void *b)
{
    return strcmp (((const entry_t *) a)->id, ((const entry_t *) b)->id);
}

void
stress_check_rooms (int port)
{
    size_t messages = 0, acked = 0, lost = 0, misplaced = 0, repeated = 0;
    for (int room = 0; room < STRESS_ROOMS; room++) {
        s_read_history (port, room);
        //  No messageId twice: sorted by id, no two neighbours alike.
        list_t ids = { 0 };
        for (int64_t seq = 1; seq <= s_stored_last [room]; seq++)
            if (s_stored [room].entries [seq].seq)
                s_list_add (&ids, seq, s_stored [room].entries [seq].id);
        messages += ids.count;
        qsort (ids.entries, ids.count, sizeof (entry_t), s_by_id);
        for (size_t i = 1; i < ids.count; i++)
            if (!strcmp (ids.entries [i].id, ids.entries [i - 1].id)) {
                fprintf (stderr, "  room %d: messageId %s at seqs %lld and %lld\n", room,
                         ids.entries [i].id, (long long) ids.entries [i - 1].seq,
                         (long long) ids.entries [i].seq);
                repeated++;
            }
        //  Each ack's message at its seq.
        for (size_t i = 0; i < s_acked [room].count; i++) {
            const entry_t *ack = &s_acked [room].entries [i];
            const entry_t *held = ack->seq <= s_stored_last [room]
                                ? &s_stored [room].entries [ack->seq]: NULL;
            if (!held || !held->seq) {
                fprintf (stderr, "  room %d: acked %s (seq %lld) is not in its history\n",
                         room, ack->id, (long long) ack->seq);
                lost++;
            }
            else
            if (strcmp (held->id, ack->id)) {
                fprintf (stderr, "  room %d: acked %s at seq %lld, which holds %s\n", room,
                         ack->id, (long long) ack->seq, held->id);
                misplaced++;
            }
        }
        acked += s_acked [room].count;
        //  Every room had traffic, or the checks above held for nothing.
        CHECK (s_acked [room].count > 0);
        free (ids.entries);
    }
    printf ("history: %zu messages stored, %zu acked; %zu acked missing, %zu misplaced, "
            "%zu messageIds twice\n", messages, acked, lost, misplaced, repeated);
    CHECK (lost == 0 && misplaced == 0 && repeated == 0);
}

//  CHECK one segment; returns false (having said why) if it fails.
static bool
s_check_segment (const segment_t *segment, int index, char *marks)
{
    int room = segment->room;
    int64_t previous = 0;
    for (size_t i = 0; i < segment->heard.count; i++) {
        const entry_t *heard = &segment->heard.entries [i];
        if (heard->seq <= previous) {
            fprintf (stderr, "  socket %d, segment %d in room %d: seq %lld after %lld\n",
                     segment->actor, index, room, (long long) heard->seq, (long long) previous);
            return false;
        }
        previous = heard->seq;
        const entry_t *held = heard->seq <= s_stored_last [room]
                            ? &s_stored [room].entries [heard->seq]: NULL;
        if (!held || !held->seq || strcmp (held->id, heard->id)) {
            fprintf (stderr, "  socket %d heard %s at seq %lld in room %d; the history holds "
                     "%s there\n", segment->actor, heard->id, (long long) heard->seq, room,
                     held && held->seq? held->id: "nothing");
            return false;
        }
    }
    if (!segment->live || !segment->history)
        return true;
    memset (marks, 0, (size_t) s_stored_last [room] + 1);
    for (size_t i = 0; i < segment->heard.count; i++)
        marks [segment->heard.entries [i].seq] = 1;
    size_t missed = 0;
    int64_t first = 0;
    for (size_t i = 0; i < s_acked [room].count; i++) {
        const entry_t *ack = &s_acked [room].entries [i];
        if (ack->seq > segment->base && ack->seq <= s_stored_last [room] && !marks [ack->seq]) {
            if (!missed++)
                first = ack->seq;
        }
    }
    if (missed)
        fprintf (stderr, "  socket %d stayed in room %d from seq %lld (sinceSeq %lld) and "
                 "missed %zu acked messages, seq %lld the first\n", segment->actor, room,
                 (long long) segment->base, (long long) segment->since_seq, missed,
                 (long long) first);
    return missed == 0;
}

void
stress_check_segments (void)
{
    int64_t longest = 0;
    for (int room = 0; room < STRESS_ROOMS; room++)
        if (s_stored_last [room] > longest)
            longest = s_stored_last [room];
    char *marks = malloc ((size_t) longest + 1);
    assert (marks);
    size_t failed = 0, live = 0, heard = 0, since = 0, live_since = 0;
    for (int i = 0; i < s_segment_count; i++) {
        const segment_t *segment = &s_segments [i];
        failed += !s_check_segment (segment, i, marks);
        live += segment->live && segment->history;
        since += segment->since_seq > 0;
        live_since += segment->live && segment->history && segment->since_seq > 0;
        heard += segment->heard.count;
    }
    printf ("sockets' views: %d segments (%zu with sinceSeq), %zu in their room to the end "
            "(%zu with sinceSeq), %zu messages heard, %zu failed\n", s_segment_count, since,
            live, live_since, heard, failed);
    CHECK (failed == 0);
    CHECK (live > 0 && live_since > 0);     //  or the checks held for nothing
    free (marks);
}

//  ---------------------------------------------------------------------------

bool
stress_wait_no_connections (const char *endpoint, const char *gateway_id, int timeout_ms)
{
    proto_client_t *client = proto_client_new (endpoint);
    uint32_t left = UINT32_MAX;
    for (int64_t until = clock_mono_ms () + timeout_ms; ; usleep (50 * 1000)) {
        proto_msg_t request = { .type = PROTO_CONN_LIST,
                                .conn_list = { .gateway_id = gateway_id } };
        proto_msg_t *reply = harness_call (client, &request);
        left = reply && reply->type == PROTO_CONN_LIST_REPLY
             ? reply->conn_list_reply.count: UINT32_MAX;
        for (uint32_t i = 0; i < left && i < 5 && clock_mono_ms () >= until; i++) {
            const proto_connection_t *record = &reply->conn_list_reply.connections [i];
            fprintf (stderr, "  stored still lists %s of %s in room %s\n", record->conn_id,
                     record->user_id, record->room_id? record->room_id: "-");
        }
        proto_msg_destroy (&reply);
        if (left == 0 || clock_mono_ms () >= until)
            break;
    }
    proto_client_destroy (&client);
    if (left)
        fprintf (stderr, "  stored lists %u connections of %s\n", left, gateway_id);
    return left == 0;
}

//  The sanitizers' reports begin so.
static const char *s_reports [] = { "AddressSanitizer", "LeakSanitizer", "runtime error:",
                                    "UndefinedBehaviorSanitizer", NULL };

static void
s_check_daemon (harness_daemon_t *daemon)
{
    if (!daemon->pid)
        return;
    int status;
    bool alive = waitpid (daemon->pid, &status, WNOHANG) == 0;
    if (!alive) {
        fprintf (stderr, "  %s ended before the test stopped it\n", daemon->binary);
        harness_print_log (daemon);
        daemon->pid = 0;
    }
    CHECK (alive);
    int exit_status = alive? harness_stop (daemon): -1;
    if (alive && exit_status != 0) {
        fprintf (stderr, "  %s exited %d on SIGTERM\n", daemon->binary, exit_status);
        harness_print_log (daemon);
    }
    CHECK (exit_status == 0);
    for (int i = 0; s_reports [i]; i++)
        if (harness_logged (daemon->log_path, s_reports [i])) {
            fprintf (stderr, "  %s's log (%s) holds a report: %s\n", daemon->binary,
                     daemon->log_path, s_reports [i]);
            CHECK (false);
        }
}

void
stress_check_daemons (harness_system_t *sys)
{
    //  The gateway first, so that the shards' and stored's ends are ordinary.
    for (int i = 0; i < sys->gateway_count; i++)
        s_check_daemon (&sys->gateways [i]);
    s_check_daemon (&sys->reaper);
    for (int i = 0; i < sys->shard_count; i++)
        s_check_daemon (&sys->shards [i]);
    s_check_daemon (&sys->stored);
}
