/*  =========================================================================
    recovery.c - what a socket missed, read from stored and given in order

    Delivery order. A socket is given each message seq of its room at most
    once and never one older than the newest it has (conn->seq), so a
    resend fanned out again, or events that reach this gateway twice or
    late (a shard that was paused, two shards for one room while the shard
    set changes), are dropped. A seq past the next one means the socket
    missed messages (a shard died between stored's commit and its fan-out,
    this gateway or its link stalled and events were dropped, a shard
    that loaded the room numbers past what its last owner may have fanned
    out): the socket is given nothing newer until the missed ones are read
    from stored and sent, oldest first; what comes meanwhile is held, and
    given after them but for what the reads brought (a message is fanned
    out before it is durable, so a read may not see it yet). A join whose
    history stopped early (more) pages the rest the same way, as further
    message-history frames. These fields of a conn are the loop's thread's
    alone.

    Reads are sent after the walk that found them (recovery_send): an
    answer may come at once (a send that fails is answered on the spot),
    and must not meet a walk of a room half done.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

//  Reads of missed messages that wait for their sockets' queues to drain.
static zlistx_t *s_waiting;

//  One read of what a socket missed.
struct recovery {
    char conn_id [IDS_UUID_SIZE];
    char room_id [PROTO_ID_MAX + 1];
    uint32_t generation;
    uint64_t from_seq;
    uint32_t limit;                 //  messages to read
    int64_t waiting_ms;             //  monotonic: since when it waits for the queue
};




//  Whether conn's queue can take the next read now, and the most messages
//  it may ask for. A gap's messages are a frame each: a read asks for no
//  more than half the room left in the queue, and waits while less than
//  half is left, so that a socket that reads all along is never found a
//  slow reader by its own recovery (pages of 1,000 went into a queue of
//  SOCKET_QUEUE_MAX at once, the next page's answer coming before the
//  writes). A join's pages are a frame of up to a MiB each: the next is
//  read once the last has left for the socket, so a rejoin after a long
//  absence holds one page in memory, not its whole gap.
static bool
s_queue_takes (conn_t *conn, uint32_t *limit)
{
    size_t max = (size_t) gateway_config.socket_queue_max;
    bool go;
    if (conn->paging)
        go = conn->queue_count == 0 && conn->out.size == 0;
    else {
        size_t room = conn->queue_count < max? max - conn->queue_count: 0;
        go = room >= max / 2 && room >= 2;
        if (go && room / 2 < *limit)
            *limit = (uint32_t) (room / 2);
    }
    return go;
}

//  Begin a read of what conn missed after conn->seq (the fields are the
//  loop thread's).
void
recovery_begin (conn_t *conn, recoveries_t *starts)
{
    conn->recovering = true;
    conn->recovery++;
    recovery_t *read = calloc (1, sizeof *read);
    assert (read);
    snprintf (read->conn_id, sizeof read->conn_id, "%s", conn->id);
    snprintf (read->room_id, sizeof read->room_id, "%s", conn->room_id);
    read->generation = conn->recovery;
    read->from_seq = conn->seq + 1;
    read->limit = PROTO_LIST_MAX;
    if (!s_queue_takes (conn, &read->limit)) {
        //  Started by sockets_recoveries_resume once the writes drain it.
        if (!s_waiting)
            s_waiting = zlistx_new ();
        assert (s_waiting);
        read->waiting_ms = clock_mono_ms ();
        zlistx_add_end (s_waiting, read);
        return;
    }
    if (starts->count == starts->max) {
        starts->max = starts->max? starts->max * 2: 4;
        starts->reads = realloc (starts->reads, starts->max * sizeof *starts->reads);
        assert (starts->reads);
    }
    starts->reads [starts->count++] = read;
}

//  A message event of seq for conn: give it, drop it, or find a gap.
void
recovery_offer (conn_t *conn, frame_t *frame, uint64_t seq, recoveries_t *starts)
{
    if (conn->recovering) {
        //  Read with the missed ones if stored holds it by then, else
        //  given from here once the read ends: a shard fans a message out
        //  before it is durable (roomd/handle_send.c).
        if (seq > conn->seen)
            conn->seen = seq;
        rooms_hold (conn, frame, seq);
    }
    else
    if (seq == conn->seq + 1) {
        sockets_queue (conn, frame);
        conn->seq = seq;
    }
    else
    if (seq > conn->seq) {
        log_info ("socket %s missed messages %llu..%llu of room %s; reading them from stored",
                  conn->id, (unsigned long long) conn->seq + 1, (unsigned long long) seq - 1,
                  conn->room_id);
        atomic_fetch_add (&gateway_metrics.gaps, 1);
        conn->paging = false;
        conn->seen = seq;
        recovery_begin (conn, starts);
        rooms_hold (conn, frame, seq);  //  it may not be durable yet either
    }
}

//  The message-history frame of messages (after after_seq only).
frame_t *
recovery_history_frame (const char *room_id, const proto_message_t *messages, uint32_t count,
                 uint64_t after_seq, bool more)
{
    json_t *history = json_object ();
    json_object_set_new (history, "type", json_string ("message-history"));
    json_object_set_new (history, "roomId", json_string (room_id));
    json_t *array = json_array ();
    for (uint32_t i = 0; i < count; i++)
        if (messages [i].seq > after_seq)
            json_array_append_new (array, render_message (&messages [i]));
    json_object_set_new (history, "messages", array);
    json_object_set_new (history, "more", json_boolean (more));
    char *text = render_text (history);
    json_decref (history);
    frame_t *frame = text? frame_new (text): NULL;
    free (text);
    return frame;
}

//  Stored answered a read of what a socket missed.
static void
s_recovered (void *arg, proto_msg_t *reply, int status, const char *reason)
{
    recovery_t *read = arg;
    recoveries_t starts = { 0 };
    conn_t *conn = sockets_find (read->conn_id);
    if (conn && conn->recovering && conn->recovery == read->generation
    &&  strcmp (conn->room_id, read->room_id) == 0) {
        if (!reply) {
            log_warn ("socket %s: what it missed in room %s could not be read (%d %s); "
                      "closing it", conn->id, conn->room_id, status, reason);
            conn_begin_close (conn, WSFRAME_INTERNAL,
                              "missed messages could not be read; join again with sinceSeq");
        }
        else {
            const proto_history_reply_t *page = &reply->history_reply;
            uint64_t before = conn->seq;
            uint64_t last = page->count? page->messages [page->count - 1].seq: 0;
            bool more = last > before && (page->more || last < conn->seen);
            if (conn->paging) {
                frame_t *frame = recovery_history_frame (read->room_id, page->messages, page->count,
                                                  before, more);
                if (frame)
                    sockets_queue (conn, frame);
                frame_unref (frame);
            }
            else
                for (uint32_t i = 0; i < page->count; i++) {
                    if (page->messages [i].seq <= before)
                        continue;
                    json_t *json = render_message (&page->messages [i]);
                    char *text = render_text (json);
                    json_decref (json);
                    frame_t *frame = text? frame_new (text): NULL;
                    free (text);
                    if (frame)
                        sockets_queue (conn, frame);
                    frame_unref (frame);
                }
            if (last > conn->seq)
                conn->seq = last;
            //  A read that brings nothing new ends it: what stored does not
            //  hold (swept by its TTL) cannot be given.
            if (more)
                recovery_begin (conn, &starts);
            else {
                //  What came meanwhile and the reads did not bring, in
                //  order; a seq neither brought (lost with a dead shard, or
                //  a hole) is not waited for.
                for (size_t i = 0; i < conn->held_count; i++) {
                    if (conn->held [i].seq > conn->seq) {
                        sockets_queue (conn, conn->held [i].frame);
                        conn->seq = conn->held [i].seq;
                    }
                    frame_unref (conn->held [i].frame);
                }
                free (conn->held);
                conn->held = NULL;
                conn->held_count = conn->held_max = 0;
                if (conn->seen > conn->seq)
                    conn->seq = conn->seen;
                conn->recovering = conn->paging = false;
            }
        }
    }
    free (read);
    recovery_send (&starts);
}

void
recovery_resume (void)
{
    if (!s_waiting || !zlistx_size (s_waiting))
        return;
    recoveries_t starts = { 0 };
    int64_t now = clock_mono_ms ();
    zlistx_t *waiting = s_waiting;
    s_waiting = zlistx_new ();
    assert (s_waiting);
    for (recovery_t *read = zlistx_first (waiting); read; read = zlistx_next (waiting)) {
        conn_t *conn = sockets_find (read->conn_id);
        bool moot = !conn || !conn->recovering || conn->recovery != read->generation
                 || strcmp (conn->room_id, read->room_id) != 0;
        bool go = false, stuck = false;
        if (!moot) {
            go = s_queue_takes (conn, &read->limit);
            //  A socket that reads nothing is a slow reader as any other.
            stuck = !go && now - read->waiting_ms > OUTPUT_CLOSE_DRAIN_MS;
            if (stuck && conn->state == CONN_OPEN) {
                atomic_fetch_add (&gateway_metrics.slow_reader_drops, 1);
                conn_begin_close (conn, WSFRAME_POLICY, "too slow, messages were dropped");
            }
        }
        if (go) {
            if (starts.count == starts.max) {
                starts.max = starts.max? starts.max * 2: 4;
                starts.reads = realloc (starts.reads, starts.max * sizeof *starts.reads);
                assert (starts.reads);
            }
            starts.reads [starts.count++] = read;
        }
        else
        if (moot || stuck)
            free (read);
        else
            zlistx_add_end (s_waiting, read);
    }
    zlistx_destroy (&waiting);
    recovery_send (&starts);
}

void
recovery_send (recoveries_t *starts)
{
    for (size_t i = 0; i < starts->count; i++) {
        recovery_t *read = starts->reads [i];
        proto_msg_t request = { .type = PROTO_HISTORY, .history = {
            .room_id = read->room_id, .from_seq = read->from_seq, .limit = read->limit } };
        pending_send (&request, PROTO_HISTORY_REPLY, s_recovered, read);
    }
    free (starts->reads);
    starts->reads = NULL;
    starts->count = starts->max = 0;
}

//  Stored's newest message of a room that this gateway audits.
static void
s_audited (void *arg, proto_msg_t *reply, int status, const char *reason)
{
    char *room_id = arg;
    (void) status;
    (void) reason;
    recoveries_t starts = { 0 };
    size_t count;
    conn_t **members = rooms_members (room_id, &count);
    const proto_history_reply_t *page = reply? &reply->history_reply: NULL;
    uint64_t newest = page && page->count? page->messages [page->count - 1].seq: 0;
    for (size_t i = 0; i < count; i++) {
        conn_t *conn = members [i];
        if (conn->joining || newest <= conn->seq)
            continue;
        if (conn->recovering) {
            if (newest > conn->seen)
                conn->seen = newest;
        }
        else {
            log_info ("socket %s is behind room %s (seq %llu of %llu); reading what it missed",
                      conn->id, room_id, (unsigned long long) conn->seq,
                      (unsigned long long) newest);
            atomic_fetch_add (&gateway_metrics.gaps, 1);
            conn->paging = false;
            conn->seen = newest;
            recovery_begin (conn, &starts);
        }
    }
    free (room_id);
    recovery_send (&starts);
}

void
recovery_audit (void)
{
    //  The ids are copied: an answer that comes at once may drop a room.
    zlistx_t *ids = rooms_list ();
    if (zlistx_size (ids))
        log_info ("auditing %zu rooms for messages their sockets missed", zlistx_size (ids));
    for (char *room_id = zlistx_first (ids); room_id; room_id = zlistx_next (ids)) {
        proto_msg_t request = { .type = PROTO_HISTORY, .history = {
            .room_id = room_id, .limit = 1 } };
        pending_send (&request, PROTO_HISTORY_REPLY, s_audited, strdup (room_id));
    }
    zlistx_destroy (&ids);
}

void
recovery_stop (void)
{
    if (s_waiting)
        for (void *read = zlistx_first (s_waiting); read; read = zlistx_next (s_waiting))
            free (read);
    zlistx_destroy (&s_waiting);
}
