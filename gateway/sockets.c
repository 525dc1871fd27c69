/*  =========================================================================
    sockets.c - the gateway's WebSocket connections and their fan-out

    Every open WebSocket is a conn_t (conn.h) in a table by id, and in at
    most one room of the room index (room id -> its conns). An event is
    rendered to JSON once and its text (a refcounted frame_t) is queued to
    each conn in the room; output.c takes it from there.

    A socket that asks to join a room is put in the room at once, marked
    joining: the events of the room are held for it until its join is
    answered, and then queued after its user-joined and message-history
    (less the messages the history already holds). roomd sends the events
    of other joins, leaves and typing as they commit, and the answer to a
    join only after its history is read, so without this a socket would
    miss what happened in between although it was a member already.

    A conn whose queue reaches SOCKET_QUEUE_MAX is a slow reader: its queue
    is dropped, nothing more is queued for it, and it is closed
    (output.c). Queueing never blocks, so a slow reader never makes the
    fan-out or anybody else wait, and memory per socket is bounded by
    SOCKET_QUEUE_MAX frames (shared with the other sockets of the room).

    Invariants (and conn.h's):
      - s_index_lock guards the conn table, the room index and every
        conn's room_id. Writers to them: the backend thread (everything
        but a new conn) and civetweb's threads (sockets_add, in the ready
        handler). Nothing waits for I/O while holding it.
    =========================================================================
*/

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <czmq.h>
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

typedef struct {
    conn_t **conns;
    size_t count, max;
} room_t;

static pthread_rwlock_t s_index_lock = PTHREAD_RWLOCK_INITIALIZER;
//  Sockets open and handshakes admitted but not yet open: MAX_CONNECTIONS
//  bounds this, so that handshakes on several civetweb threads at once
//  cannot all pass a check of the sockets open so far.
static atomic_llong s_admitted;
static zhashx_t *s_conns;                   //  conn id -> conn_t
static zhashx_t *s_rooms;                   //  room id -> room_t
//  Reads of missed messages that wait for their sockets' queues to drain
//  (the backend thread's: see "Delivery order").
static zlistx_t *s_waiting;

//  ---------------------------------------------------------------------------
//  Frames and conns

frame_t *
frame_new (const char *text)
{
    size_t size = strlen (text);
    frame_t *frame = malloc (sizeof *frame + size + 1);
    assert (frame);
    atomic_init (&frame->refs, 1);
    frame->made_ns = clock_mono_ns ();
    frame->opcode = WSFRAME_TEXT;
    frame->size = size;
    memcpy (frame->data, text, size + 1);
    return frame;
}

frame_t *
frame_new_control (int opcode, const void *payload, size_t size)
{
    frame_t *frame = malloc (sizeof *frame + size + 1);
    assert (frame);
    atomic_init (&frame->refs, 1);
    frame->made_ns = clock_mono_ns ();
    frame->opcode = opcode;
    frame->size = size;
    if (size)
        memcpy (frame->data, payload, size);
    frame->data [size] = 0;
    return frame;
}

void
frame_unref (frame_t *frame)
{
    if (frame && atomic_fetch_sub (&frame->refs, 1) == 1)
        free (frame);
}

void
conn_unref (conn_t *conn)
{
    if (atomic_fetch_sub (&conn->refs, 1) == 1) {
        assert (conn->state == CONN_CLOSED);
        conn_queue_drop (conn);
        free (conn->queue);
        free (conn->out.data);
        free (conn);
    }
}

void
conn_queue_drop (conn_t *conn)
{
    while (conn->queue_count) {
        frame_unref (conn->queue [conn->queue_head]);
        conn->queue_head = (conn->queue_head + 1) % conn->queue_size;
        conn->queue_count--;
    }
}

void
conn_begin_close (conn_t *conn, int status, const char *reason)
{
    if (conn->state != CONN_OPEN)
        return;
    conn_queue_drop (conn);
    conn->state = CONN_CLOSING;
    conn->close_pending = true;
    conn->close_status = status;
    conn->close_reason = reason;
    output_wake (conn);
}

size_t
sockets_close_all (int status, const char *reason)
{
    size_t count = 0;
    pthread_rwlock_wrlock (&s_index_lock);     //  zhashx's cursor is the table's own
    for (conn_t *conn = zhashx_first (s_conns); conn; conn = zhashx_next (s_conns)) {
        count += conn->state == CONN_OPEN;
        conn_begin_close (conn, status, reason);
    }
    pthread_rwlock_unlock (&s_index_lock);
    return count;
}

//  Queue frame for conn, or find conn a slow reader. Never blocks on I/O.
void
sockets_queue (conn_t *conn, frame_t *frame)
{
    if (conn->state != CONN_OPEN)
        return;
    if (conn->queue_count >= (size_t) gateway_config.socket_queue_max) {
        atomic_fetch_add (&gateway_metrics.frames_dropped, conn->queue_count + 1);
        conn_begin_close (conn, WSFRAME_POLICY, "too slow, messages were dropped");
        atomic_fetch_add (&gateway_metrics.slow_reader_drops, 1);
        log_warn ("socket %s of user %s is a slow reader: %lld frames waited; closing it",
                  conn->id, conn->user_id, (long long) gateway_config.socket_queue_max);
        return;
    }
    if (conn->queue_count == conn->queue_size) {
        //  Grow the ring (and unwrap it) up to the bound.
        size_t size = conn->queue_size? conn->queue_size * 2: 16;
        if (size > (size_t) gateway_config.socket_queue_max)
            size = (size_t) gateway_config.socket_queue_max;
        frame_t **queue = malloc (size * sizeof *queue);
        assert (queue);
        for (size_t i = 0; i < conn->queue_count; i++)
            queue [i] = conn->queue [(conn->queue_head + i) % conn->queue_size];
        free (conn->queue);
        conn->queue = queue;
        conn->queue_head = 0;
        conn->queue_size = size;
    }
    atomic_fetch_add (&frame->refs, 1);
    conn->queue [(conn->queue_head + conn->queue_count) % conn->queue_size] = frame;
    conn->queue_count++;
    output_wake (conn);
}

//  ---------------------------------------------------------------------------
//  The room index (s_index_lock held for writing)

static void
s_room_destroy (void **item)
{
    room_t *room = *item;
    free (room->conns);
    free (room);
    *item = NULL;
}

static void
s_room_add (conn_t *conn, const char *room_id)
{
    room_t *room = zhashx_lookup (s_rooms, room_id);
    if (!room) {
        room = calloc (1, sizeof *room);
        assert (room);
        zhashx_insert (s_rooms, room_id, room);
    }
    if (room->count == room->max) {
        room->max = room->max? room->max * 2: 8;
        room->conns = realloc (room->conns, room->max * sizeof *room->conns);
        assert (room->conns);
    }
    room->conns [room->count++] = conn;
    snprintf (conn->room_id, sizeof conn->room_id, "%s", room_id);
}

static void
s_held_drop (conn_t *conn)
{
    for (size_t i = 0; i < conn->held_count; i++)
        frame_unref (conn->held [i].frame);
    free (conn->held);
    conn->held = NULL;
    conn->held_count = conn->held_max = 0;
}

static void
s_room_remove (conn_t *conn)
{
    conn->joining = false;
    s_held_drop (conn);
    //  A read of missed messages still under way is for the room left.
    conn->seq = conn->seen = 0;
    conn->recovering = conn->paging = false;
    conn->recovery++;
    if (!conn->room_id [0])
        return;
    room_t *room = zhashx_lookup (s_rooms, conn->room_id);
    if (room) {
        for (size_t i = 0; i < room->count; i++)
            if (room->conns [i] == conn) {
                room->conns [i] = room->conns [--room->count];
                break;
            }
        if (room->count == 0)
            zhashx_delete (s_rooms, conn->room_id);
    }
    conn->room_id [0] = 0;
}

//  ---------------------------------------------------------------------------
//  The table

int
sockets_start (void)
{
    s_conns = zhashx_new ();
    s_rooms = zhashx_new ();
    assert (s_conns && s_rooms);
    zhashx_set_destructor (s_rooms, s_room_destroy);
    return 0;
}

void
sockets_stop (void)
{
    output_destroy ();
    //  The event loop has closed every socket (loop_close_all): the table
    //  is empty unless a close never finished, and then its conns stay.
    if (s_conns && zhashx_size (s_conns))
        log_warn ("%zu sockets were still open at the end", zhashx_size (s_conns));
    zhashx_destroy (&s_rooms);
    zhashx_destroy (&s_conns);
    if (s_waiting)
        for (void *read = zlistx_first (s_waiting); read; read = zlistx_next (s_waiting))
            free (read);
    zlistx_destroy (&s_waiting);
}

bool
sockets_admit (void)
{
    long long admitted = atomic_load (&s_admitted);
    while (admitted < gateway_config.max_connections)
        if (atomic_compare_exchange_weak (&s_admitted, &admitted, admitted + 1))
            return true;
    return false;
}

void
sockets_unadmit (void)
{
    atomic_fetch_sub (&s_admitted, 1);
}

size_t
sockets_open (void)
{
    long long open = atomic_load (&gateway_metrics.connections_open);
    return open > 0? (size_t) open: 0;
}

conn_t *
sockets_add (int fd, const char *user_id, const profile_t *profile)
{
    assert (fd >= 0 && user_id && profile);
    conn_t *conn = calloc (1, sizeof *conn);
    assert (conn);
    ids_uuid (conn->id);
    snprintf (conn->user_id, sizeof conn->user_id, "%s", user_id);
    conn->profile = *profile;
    conn->fd = fd;
    log_debug ("socket %s of user %s is descriptor %d", conn->id, user_id, conn->fd);
    atomic_init (&conn->refs, 1);
    conn->state = CONN_OPEN;
    pthread_rwlock_wrlock (&s_index_lock);
    zhashx_insert (s_conns, conn->id, conn);
    pthread_rwlock_unlock (&s_index_lock);
    atomic_fetch_add (&gateway_metrics.connections_open, 1);
    atomic_fetch_add (&gateway_metrics.connects, 1);
    return conn;
}

void
sockets_close (conn_t **conn_p, char *room_id)
{
    assert (conn_p && *conn_p && room_id);
    conn_t *conn = *conn_p;
    pthread_rwlock_wrlock (&s_index_lock);
    zhashx_delete (s_conns, conn->id);
    snprintf (room_id, PROTO_ID_MAX + 1, "%s", conn->room_id);
    s_room_remove (conn);
    pthread_rwlock_unlock (&s_index_lock);

    conn->state = CONN_CLOSED;
    conn->close_pending = false;
    conn_queue_drop (conn);
    //  From here on nothing writes to conn->fd (conn.h); the loop closes
    //  it after this, so its number is free to find.
    fds_forget (conn->fd);
    atomic_fetch_sub (&gateway_metrics.connections_open, 1);
    sockets_unadmit ();
    atomic_fetch_add (&gateway_metrics.disconnects, 1);
    conn_unref (conn);
    *conn_p = NULL;
}

const char *
conn_id (const conn_t *conn)
{
    return conn->id;
}

const char *
conn_user_id (const conn_t *conn)
{
    return conn->user_id;
}

profile_t *
conn_profile (conn_t *conn)
{
    return &conn->profile;
}

const char *
conn_address (const conn_t *conn)
{
    return conn->address;
}

void
conn_set_address (conn_t *conn, const char *address)
{
    snprintf (conn->address, sizeof conn->address, "%s", address);
}

void
sockets_room_of (conn_t *conn, char *room_id)
{
    pthread_rwlock_rdlock (&s_index_lock);
    snprintf (room_id, PROTO_ID_MAX + 1, "%s", conn->joining? "": conn->room_id);
    pthread_rwlock_unlock (&s_index_lock);
}

void
sockets_join_begin (conn_t *conn, const char *room_id)
{
    pthread_rwlock_wrlock (&s_index_lock);
    s_room_remove (conn);
    s_room_add (conn, room_id);
    conn->joining = true;
    pthread_rwlock_unlock (&s_index_lock);
}

void
sockets_join_abort (conn_t *conn, const char *room_id)
{
    pthread_rwlock_wrlock (&s_index_lock);
    if (conn->joining && strcmp (conn->room_id, room_id) == 0)
        s_room_remove (conn);
    pthread_rwlock_unlock (&s_index_lock);
}

void
sockets_leave_room (conn_t *conn, char *room_id)
{
    pthread_rwlock_wrlock (&s_index_lock);
    snprintf (room_id, PROTO_ID_MAX + 1, "%s", conn->room_id);
    s_room_remove (conn);
    pthread_rwlock_unlock (&s_index_lock);
}

void
sockets_user_left (const char *room_id, const char *user_id)
{
    pthread_rwlock_wrlock (&s_index_lock);
    room_t *room = zhashx_lookup (s_rooms, room_id);
    for (size_t i = room? room->count: 0; i-- > 0; )
        if (strcmp (room->conns [i]->user_id, user_id) == 0) {
            conn_t *conn = room->conns [i];
            bool last = room->count == 1;
            s_room_remove (conn);       //  may free the room when it empties
            if (last)
                break;
        }
    pthread_rwlock_unlock (&s_index_lock);
}

void
sockets_send (conn_t *conn, json_t *frame)
{
    assert (conn && frame);
    char *text = render_text (frame);
    json_decref (frame);
    if (!text) {
        log_error ("a frame for socket %s could not be written as JSON", conn->id);
        return;
    }
    frame_t *queued = frame_new (text);
    free (text);
    sockets_queue (conn, queued);
    frame_unref (queued);
}


//  ---------------------------------------------------------------------------
//  Fan-out (the backend thread). Delivery order. A socket is given each message seq of its room at most
//  once and never one older than the newest it has (conn->seq), so a
//  resend fanned out again, or events that reach this gateway twice or
//  late (a shard that was paused, two shards for one room while the shard
//  set changes), are dropped. A seq past the next one means the socket
//  missed messages (a shard died between stored's commit and its fan-out,
//  this gateway or its link stalled and events were dropped): the socket
//  is given nothing newer until the missed ones are read from stored and
//  sent, oldest first; what comes meanwhile is read with them. A join whose
//  history stopped early (more) pages the rest the same way, as further
//  message-history frames. Only the backend thread reads and writes these
//  fields once the socket is in the room (under the index lock held for
//  reading, as held: see conn.h).

typedef struct {
    char conn_id [IDS_UUID_SIZE];
    char room_id [PROTO_ID_MAX + 1];
    uint32_t generation;
    uint64_t from_seq;
    uint32_t limit;                 //  messages to read
    int64_t waiting_ms;             //  monotonic: since when it waits for the queue
} recovery_t;


//  Reads to start once the index lock is let go (backend_request may
//  answer at once, and its answer takes the lock).
typedef struct {
    recovery_t **reads;
    size_t count, max;
} recoveries_t;

static void s_recover_start (recoveries_t *starts);

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
//  backend thread's).
static void
s_recover (conn_t *conn, recoveries_t *starts)
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
static void
s_offer (conn_t *conn, frame_t *frame, uint64_t seq, recoveries_t *starts)
{
    if (conn->recovering) {
        if (seq > conn->seen)
            conn->seen = seq;           //  read with the missed ones
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
        s_recover (conn, starts);
    }
}

//  The message-history frame of messages (after after_seq only).
static frame_t *
s_history_frame (const char *room_id, const proto_message_t *messages, uint32_t count,
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
    pthread_rwlock_rdlock (&s_index_lock);
    conn_t *conn = zhashx_lookup (s_conns, read->conn_id);
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
                frame_t *frame = s_history_frame (read->room_id, page->messages, page->count,
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
                s_recover (conn, &starts);
            else {
                if (conn->seen > conn->seq)
                    conn->seq = conn->seen;
                conn->recovering = conn->paging = false;
            }
        }
    }
    pthread_rwlock_unlock (&s_index_lock);
    free (read);
    s_recover_start (&starts);
}

void
sockets_recoveries_resume (void)
{
    if (!s_waiting || !zlistx_size (s_waiting))
        return;
    recoveries_t starts = { 0 };
    int64_t now = clock_mono_ms ();
    zlistx_t *waiting = s_waiting;
    s_waiting = zlistx_new ();
    assert (s_waiting);
    pthread_rwlock_rdlock (&s_index_lock);
    for (recovery_t *read = zlistx_first (waiting); read; read = zlistx_next (waiting)) {
        conn_t *conn = zhashx_lookup (s_conns, read->conn_id);
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
    pthread_rwlock_unlock (&s_index_lock);
    zlistx_destroy (&waiting);
    s_recover_start (&starts);
}

static void
s_recover_start (recoveries_t *starts)
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
    pthread_rwlock_rdlock (&s_index_lock);
    room_t *room = zhashx_lookup (s_rooms, room_id);
    const proto_history_reply_t *page = reply? &reply->history_reply: NULL;
    uint64_t newest = page && page->count? page->messages [page->count - 1].seq: 0;
    for (size_t i = 0; room && i < room->count; i++) {
        conn_t *conn = room->conns [i];
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
            s_recover (conn, &starts);
        }
    }
    pthread_rwlock_unlock (&s_index_lock);
    free (room_id);
    s_recover_start (&starts);
}

void
sockets_audit (void)
{
    //  The ids are copied under the lock: a worker's leave may drop a room.
    zlistx_t *ids = zlistx_new ();
    assert (ids);
    pthread_rwlock_rdlock (&s_index_lock);
    for (room_t *room = zhashx_first (s_rooms); room; room = zhashx_next (s_rooms))
        zlistx_add_end (ids, strdup ((const char *) zhashx_cursor (s_rooms)));
    pthread_rwlock_unlock (&s_index_lock);
    if (zlistx_size (ids))
        log_info ("auditing %zu rooms for messages their sockets missed", zlistx_size (ids));
    for (char *room_id = zlistx_first (ids); room_id; room_id = zlistx_next (ids)) {
        proto_msg_t request = { .type = PROTO_HISTORY, .history = {
            .room_id = room_id, .limit = 1 } };
        pending_send (&request, PROTO_HISTORY_REPLY, s_audited, room_id);
    }
    zlistx_destroy (&ids);
}

//  Hold frame for a joining conn. Only the backend thread calls this,
//  under the index lock held for reading (see conn.h).
static void
s_hold (conn_t *conn, frame_t *frame, uint64_t seq)
{
    if (conn->held_count >= (size_t) gateway_config.socket_queue_max)
        return;                 //  its queue would overflow as soon as it joined
    if (conn->held_count == conn->held_max) {
        conn->held_max = conn->held_max? conn->held_max * 2: 8;
        conn->held = realloc (conn->held, conn->held_max * sizeof *conn->held);
        assert (conn->held);
    }
    atomic_fetch_add (&frame->refs, 1);
    conn->held [conn->held_count].frame = frame;
    conn->held [conn->held_count++].seq = seq;
}

void
sockets_deliver (const proto_msg_t *event)
{
    const char *room_id = proto_room_of (event);
    json_t *json = room_id? render_event (event): NULL;
    char *text = json? render_text (json): NULL;
    json_decref (json);
    if (!text) {
        log_write (LOG_LEVEL_WARN, event->trace_id, "an %s could not be rendered",
                   proto_type_name (event->type));
        return;
    }
    frame_t *frame = frame_new (text);
    free (text);
    const char *except_conn = event->type == PROTO_EVENT_JOINED? event->event_joined.except_conn: NULL;
    const char *except_user = event->type == PROTO_EVENT_TYPING? event->event_typing.user_id: NULL;
    bool closed = event->type == PROTO_EVENT_CLOSED;
    recoveries_t starts = { 0 };
    //  A close takes every socket out of the room, so it writes the index.
    if (closed)
        pthread_rwlock_wrlock (&s_index_lock);
    else
        pthread_rwlock_rdlock (&s_index_lock);
    room_t *room = zhashx_lookup (s_rooms, room_id);
    size_t count = room? room->count: 0;
    uint64_t seq = event->type == PROTO_EVENT_MESSAGE? event->event_message.message.seq: 0;
    for (size_t i = 0; i < count; i++) {
        conn_t *conn = room->conns [i];
        if ((except_conn && strcmp (conn->id, except_conn) == 0)
        ||  (except_user && strcmp (conn->user_id, except_user) == 0))
            continue;
        if (conn->joining && !closed)
            s_hold (conn, frame, seq);
        else
        if (seq)
            s_offer (conn, frame, seq, &starts);
        else
            sockets_queue (conn, frame);
    }
    if (closed && room) {
        for (size_t i = 0; i < count; i++) {
            conn_t *conn = room->conns [i];
            s_held_drop (conn);
            conn->joining = false;
            conn->room_id [0] = 0;
        }
        zhashx_delete (s_rooms, room_id);
    }
    pthread_rwlock_unlock (&s_index_lock);
    frame_unref (frame);
    s_recover_start (&starts);
    log_write (LOG_LEVEL_DEBUG, event->trace_id, "%s for room %s to %zu sockets",
               proto_type_name (event->type), room_id, count);
}

void
sockets_join_done (conn_t *conn, const char *room_id, uint64_t since_seq,
                   const json_t *request_id, const proto_join_reply_t *reply)
{
    const profile_t *profile = &conn->profile;
    json_t *joined = json_object ();
    json_object_set_new (joined, "type", json_string ("user-joined"));
    json_object_set_new (joined, "userId", json_string (conn->user_id));
    json_object_set_new (joined, "userName", json_string (profile->has_name? profile->user_name: ""));
    json_object_set_new (joined, "userIcon", json_string (profile->has_icon? profile->user_icon: ""));
    json_object_set_new (joined, "userColor", json_string (profile->has_color? profile->user_color: ""));
    json_object_set_new (joined, "creatorId", json_string (reply->room.creator));
    json_object_set_new (joined, "roomId", json_string (reply->room.id));
    json_object_set_new (joined, "roomInfo", render_room_info (&reply->room));
    bool more = reply->more;
    frame_t *history = s_history_frame (reply->room.id, reply->messages, reply->count, 0, more);
    //  The socket has every message up to its history's last, or, with no
    //  history, up to the room's newest when the join was committed; but a
    //  sinceSeq join whose history could not be read has only what it said.
    uint64_t history_seq = reply->count? reply->messages [reply->count - 1].seq
                         : more? since_seq: reply->room.last_seq;
    recoveries_t starts = { 0 };

    pthread_rwlock_wrlock (&s_index_lock);
    //  Not joining that room any more: it closed, left, or the room closed
    //  meanwhile (and the socket heard room-closed).
    if (conn->state != CONN_CLOSED && conn->joining && strcmp (conn->room_id, room_id) == 0) {
        conn->joining = false;
        if (request_id)
            json_object_set (joined, "requestId", (json_t *) request_id);
        char *joined_text = render_text (joined);
        if (joined_text && history) {
            frame_t *first = frame_new (joined_text);
            sockets_queue (conn, first);
            sockets_queue (conn, history);
            frame_unref (first);
        }
        free (joined_text);
        conn->seq = history_seq;
        if (more) {
            //  The rest of its history, page by page, before anything newer.
            conn->paging = true;
            conn->seen = history_seq;
            s_recover (conn, &starts);
        }
        //  Then what happened while it joined, in order, but for the
        //  messages its history holds already.
        for (size_t i = 0; i < conn->held_count; i++)
            if (conn->held [i].seq)
                s_offer (conn, conn->held [i].frame, conn->held [i].seq, &starts);
            else
                sockets_queue (conn, conn->held [i].frame);
        s_held_drop (conn);
    }
    pthread_rwlock_unlock (&s_index_lock);
    json_decref (joined);
    frame_unref (history);
    s_recover_start (&starts);
}
