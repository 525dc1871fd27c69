/*  =========================================================================
    handle_send.c - a chat message: numbered here, fanned out at once,
    acknowledged once durable

    The shard owns its room's order, so it numbers each message itself
    (seq, id; createdAt is the gateway's), fans it out to the gateways as
    soon as it is numbered, and sends the append to stored carrying that
    seq. The sender's ack waits for stored's answer, which comes after the
    commit: an acknowledged message is durable, as DESIGN.md asks; what is
    fanned out is not yet (README, "How one message travels", says what a
    reader sees and in which fault it could vanish).

    A room's window holds its sends in seq order from their numbering until
    stored confirmed them and no join still needs them (s_trim). Invariants:
      - a seq is never used for two messages. A shard fans out seq s before
        it is durable only while s <= confirmed_seq + SEND_WINDOW, where
        confirmed_seq is the highest seq stored holds as far as this shard
        knows (stored's last at the load, then each confirmed append); a
        shard that loads a room numbers from stored's last + 1 +
        SEND_WINDOW, above anything a dead owner can have fanned out. Its
        first message is therefore durable before it is fanned out, and the
        window opens behind it. A room no shard had claimed before (epoch 1
        at our claim) numbers from last + 1: nobody fanned anything out;
        nor does a room this process let go (idle, a gateway's fresh
        welcome) and claims again with nobody's claim between: it numbers
        on from the newest it fanned out itself;
      - stored refuses a seq not above the room's last (421), so a stale
        owner's append never lands under another's number; the refusal is
        handled as a move (handle_moved): the room is loaded again and the
        send served once more, with a new seq. The owner's own retry that
        later appends overtook (stored restarted between them) is stored
        in its hole, with the seq it was fanned out at;
      - fan-out follows seq order; a message past the window waits, with
        every later one, until the window moves (its own commit at least);
      - a messageId the window holds (in flight or durable) is not
        numbered again: the resend waits for the first and is acked with
        its seq. One appended since the room was loaded (the last
        ROOM_IDS_MAX) is durable already: its resend is numbered but fanned
        out only if stored stores it (a swept one), so nobody sees it
        twice. Any other resend (the first went through another shard, or
        long ago) is fanned out at its new seq, and stored's duplicate
        answer leaves that seq a hole: the sender's ack carries the first
        one's seq, members may see the message twice (same id);
      - an append that stored does not answer (a timeout, stored
        restarting) is sent again, the same seq, id and epoch, every
        SEND_RETRY_MS for SEND_GIVE_UP_MS; stored answers a retry of what
        it stored as a duplicate of the same seq (proto.h, msg-append).
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "roomd.h"
#include "clock.h"
#include "ids.h"
#include "log.h"

#define SEND_RETRY_MS       100         //  between sends of an unanswered append
#define SEND_GIVE_UP_MS     60000       //  then the message is given up (503)

static uint64_t s_generation;           //  of the last room made ready

static void s_append (roomd_t *self, op_t *op);
static void s_pump (roomd_t *self, room_t *room);

//  The room whose window holds op, or NULL (op is an orphan: its room left
//  memory, or was loaded again, while op was in flight).
static room_t *
s_room_of (roomd_t *self, op_t *op)
{
    room_t *room = op->generation? rooms_find (self, op->room_id): NULL;
    return room && room->state == ROOM_READY && room->generation == op->generation? room: NULL;
}

//  Take op out of its room's window, if it is in one.
static void
s_window_drop (roomd_t *self, op_t *op)
{
    room_t *room = s_room_of (self, op);
    op->generation = 0;
    if (room && room->window) {
        void *handle = zlistx_find (room->window, op);
        if (handle)
            zlistx_delete (room->window, handle);
    }
}

//  A seq that nobody saw and stored does not hold is given again, if
//  nothing was numbered after it (else it stays a hole): a send refused at
//  once, or a resend stored answers under another seq.
static void
s_unnumber (roomd_t *self, op_t *op)
{
    room_t *room = s_room_of (self, op);
    if (room && !op->fanned && room->next_seq == op->message.seq + 1)
        room->next_seq--;
}

//  Remember that client_id was appended since the room was loaded.
static void
s_remember_id (room_t *room, const char *client_id)
{
    if (!room->ids) {
        room->ids = zhashx_new ();
        assert (room->ids);
        room->id_ring = calloc (ROOM_IDS_MAX, sizeof *room->id_ring);
        assert (room->id_ring);
    }
    if (zhashx_lookup (room->ids, client_id))
        return;
    char **slot = &room->id_ring [room->id_next];
    if (*slot) {
        zhashx_delete (room->ids, *slot);
        free (*slot);
    }
    *slot = strdup (client_id);
    assert (*slot);
    zhashx_insert (room->ids, client_id, (void *) 1);
    room->id_next = (room->id_next + 1) % ROOM_IDS_MAX;
}

//  The sender's ack, and the acks of the resends that waited for it.
static void
s_ack (roomd_t *self, op_t *op)
{
    proto_msg_t ack = { .type = PROTO_APPEND_REPLY, .append_reply = {
        .seq = op->ack_seq, .id = op->ack_id, .created_at_ms = op->ack_at_ms,
        .duplicate = op->ack_duplicate } };
    op_reply (self, op, &ack);
    op->acked = true;
    while (op->waiters) {
        op_t *waiter = op->waiters;
        op->waiters = waiter->waiter_next;
        waiter->waiter_next = NULL;
        ack.append_reply.duplicate = true;
        op_finish (self, &waiter, &ack);
    }
}

//  Fail op (its message is not stored) and the resends that waited for it.
static void
s_fail (roomd_t *self, op_t **op_p, uint16_t status, const char *reason)
{
    op_t *op = *op_p;
    if (op->fanned)
        log_write (LOG_LEVEL_WARN, op->request->trace_id, "message %llu of room %s was fanned "
                   "out and is not stored (%u %s)", (unsigned long long) op->message.seq,
                   op->room_id, status, reason);
    s_window_drop (self, op);
    while (op->waiters) {
        op_t *waiter = op->waiters;
        op->waiters = waiter->waiter_next;
        waiter->waiter_next = NULL;
        op_fail (self, &waiter, status, "%s", reason);
    }
    op_fail (self, op_p, status, "%s", reason);
}

static void
s_fan (roomd_t *self, op_t *op)
{
    proto_msg_t event = { .type = PROTO_EVENT_MESSAGE, .event_message.message = op->message };
    event.event_message.message.expires_at_ms = 0;
    memcpy (event.trace_id, op->request->trace_id, sizeof event.trace_id);
    fanout_to_gateways (self, &event);
    op->fanned = true;
    metrics_histogram_observe (&self->send_seconds,
                               (double) (clock_mono_ns () - op->received_ns) / 1e9);
}

//  Free the window's front while it is acknowledged and no join needs it.
static void
s_trim (room_t *room)
{
    uint64_t pinned = UINT64_MAX;
    for (size_t i = 0; i < room->pin_count; i++)
        if (room->pins [i] < pinned)
            pinned = room->pins [i];
    op_t *op;
    while ((op = zlistx_first (room->window)) && op->acked && op->message.seq < pinned) {
        zlistx_delete (room->window, zlistx_cursor (room->window));
        op->generation = 0;
        op_finish (NULL, &op, NULL);
    }
}

//  Fan out what may go now, in seq order, then ack what is durable.
static void
s_pump (roomd_t *self, room_t *room)
{
    bool blocked = false;
    for (op_t *op = zlistx_first (room->window); op; op = zlistx_next (room->window)) {
        if (!op->fanned && !op->hole && !blocked) {
            bool may = op->durable
                    || (!op->careful && !op->unsent
                        && op->message.seq <= room->confirmed_seq + SEND_WINDOW);
            if (may) {
                s_fan (self, op);
                room->fanned_seq = op->message.seq;
            }
            else
                blocked = true;         //  later ones wait behind it
        }
        if ((op->fanned || op->hole) && op->durable && !op->acked)
            s_ack (self, op);
    }
    s_trim (room);
}

//  stored answered an append (or did not: reply NULL).
static void
s_appended (roomd_t *self, op_t *op, proto_msg_t *reply)
{
    bool at_once = self->sending == op; //  the send itself failed: stored is not there
    self->sending = NULL;
    if (!reply) {
        if (at_once && !op->fanned && !op->attempts) {
            s_unnumber (self, op);
            s_fail (self, &op, 503, "stored is unreachable");
            return;
        }
        if (self->stopping || clock_mono_ms () >= op->give_up_ms) {
            s_fail (self, &op, 503, "stored did not store the message in time");
            return;
        }
        //  Sent again later, as it is (see the file's header).
        op->retry_at_ms = clock_mono_ms () + SEND_RETRY_MS;
        if (!self->retries)
            self->retries = zlistx_new ();
        zlistx_add_end (self->retries, op);
        return;
    }
    if (reply->type == PROTO_ERROR && reply->error.status == 421) {
        //  The room was claimed by another shard, or numbered past us: this
        //  seq is given up, and the message served once more from a fresh
        //  load (with the same id and createdAt, under a new seq).
        bool orphan = !s_room_of (self, op);
        bool held = rooms_find (self, op->room_id) != NULL;
        s_window_drop (self, op);
        //  An orphan whose room left this shard is not worth claiming it
        //  back; one whose room is loaded again (a move seen by another
        //  send of it) follows into the new load.
        if (op->retried || (orphan && !held)) {
            s_fail (self, &op, 503, "room is moving between shards; try again");
            return;
        }
        //  Its waiting resends follow it to the new load, in order.
        op_t *waiters = op->waiters;
        op->waiters = NULL;
        op->fanned = op->careful = false;
        op->message.seq = 0;
        if (orphan) {
            op->retried = true;
            handle_serve (self, op);
        }
        else
            handle_moved (self, &op, reply->error.reason);
        while (waiters) {
            op_t *waiter = waiters;
            waiters = waiter->waiter_next;
            waiter->waiter_next = NULL;
            handle_serve (self, waiter);
        }
        return;
    }
    if (reply->type != PROTO_APPEND_REPLY) {
        if (op->fanned)
            log_write (LOG_LEVEL_WARN, op->request->trace_id, "message %llu of room %s was "
                       "fanned out and is not stored", (unsigned long long) op->message.seq,
                       op->room_id);
        s_window_drop (self, op);
        while (op->waiters) {
            op_t *waiter = op->waiters;
            op->waiters = waiter->waiter_next;
            waiter->waiter_next = NULL;
            handle_store_failed (self, &waiter, reply);
        }
        handle_store_failed (self, &op, reply);
        return;
    }
    const proto_append_reply_t *appended = &reply->append_reply;
    op->durable = true;
    op->ack_seq = appended->seq;
    op->ack_at_ms = appended->created_at_ms;
    op->ack_duplicate = appended->duplicate;
    snprintf (op->ack_id, sizeof op->ack_id, "%s", appended->id);
    self->messages += appended->seq == op->message.seq;
    room_t *room = s_room_of (self, op);
    if (!room) {
        //  An orphan: no order to keep here any more. What stored holds
        //  at this seq is given (late, it is dropped where it was had).
        if (!op->fanned && appended->seq == op->message.seq)
            s_fan (self, op);
        s_ack (self, op);
        op_finish (self, &op, NULL);
        return;
    }
    //  Only a seq stored holds moves the window: a hole does not.
    if (appended->seq != op->message.seq) {
        s_unnumber (self, op);
        op->hole = true;
    }
    else {
        if (appended->seq > room->confirmed_seq)
            room->confirmed_seq = appended->seq;
        if (appended->seq > room->record.last_seq)
            room->record.last_seq = appended->seq;
    }
    if (appended->created_at_ms > room->record.last_activity_ms)
        room->record.last_activity_ms = appended->created_at_ms;
    if (op->message.client_id)
        s_remember_id (room, op->message.client_id);
    s_pump (self, room);
}

//  op's append went to stored (store_flush): it, and what waited behind
//  it, may go out.
static void
s_sent (roomd_t *self, op_t *op)
{
    room_t *room = op->generation? s_room_of (self, op): NULL;
    if (room && room->state == ROOM_READY && room->window)
        s_pump (self, room);
}

static void
s_append (roomd_t *self, op_t *op)
{
    proto_msg_t call = { .type = PROTO_MSG_APPEND, .msg_append = {
        .message = op->message, .if_epoch = op->epoch } };
    //  op may be gone when store_call returns (a send that fails at once).
    self->sending = op;
    op->sent = s_sent;
    store_call (self, op, &call, s_appended);
    self->sending = NULL;
}

//  ---------------------------------------------------------------------------
//  Public

void
send_start (roomd_t *self, room_t *room, op_t *op)
{
    const proto_message_t *sent = &op->request->room_send.message;
    const char *client_id = sent->client_id;
    if (client_id) {
        //  A resend of a message the window holds: no second copy.
        for (op_t *first = zlistx_first (room->window); first; first = zlistx_next (room->window)) {
            if (!first->message.client_id || strcmp (first->message.client_id, client_id) != 0)
                continue;
            if (strcmp (first->message.user_id, sent->user_id) != 0) {
                op_fail (self, &op, 409, "messageId %s is another user's in room %s",
                         client_id, room->id);
                return;
            }
            if (first->acked) {
                proto_msg_t ack = { .type = PROTO_APPEND_REPLY, .append_reply = {
                    .seq = first->ack_seq, .id = first->ack_id,
                    .created_at_ms = first->ack_at_ms, .duplicate = true } };
                op_finish (self, &op, &ack);
            }
            else {
                op->waiter_next = first->waiters;
                first->waiters = op;
            }
            return;
        }
    }
    if (!op->message.id) {
        //  Numbered and named once; a send served again keeps its name.
        op->message = *sent;
        ids_uuid (op->message_id);
        op->message.id = op->message_id;
        op->message.expires_at_ms = 0;
        op->give_up_ms = clock_mono_ms () + SEND_GIVE_UP_MS;
    }
    op->message.seq = room->next_seq++;
    op->epoch = room->record.epoch;
    op->generation = room->generation;
    op->fanned = op->durable = op->acked = op->hole = false;
    op->attempts = 0;
    //  Known to be stored already, or the room closing or closed (a resend
    //  of a message stored before the close is owed its ack): given once
    //  stored has answered, so that nobody sees what stored will not keep.
    op->careful = room->closing || room->record.status != PROTO_STATUS_ACTIVE
               || (client_id && room->ids && zhashx_lookup (room->ids, client_id));
    zlistx_add_end (room->window, op);
    char room_id [PROTO_ID_MAX + 1];
    snprintf (room_id, sizeof room_id, "%s", room->id);
    s_append (self, op);
    //  Fanned out once its append is on its way, when the turn's calls go
    //  to stored (store_flush, s_sent): a stored that is not there fails
    //  it then, and nobody has seen it. What waited for room to move in the
    //  window may go now.
    room = rooms_find (self, room_id);
    if (room && room->state == ROOM_READY && room->window)
        s_pump (self, room);
}

//  Rooms this process held and let go: the epoch it held each at, and the
//  newest seq it fanned out there (a reload that finds nobody claimed the
//  room since knows all that was fanned out: its own). Forgotten when full.
typedef struct {
    uint64_t epoch, fanned_seq;
} left_t;
static zhashx_t *s_left;
#define LEFT_MAX    100000

static void
s_left_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

void
send_room_ready (room_t *room)
{
    room->generation = ++s_generation;
    room->confirmed_seq = room->record.last_seq;
    //  Never claimed before ours: nobody fanned anything out.
    uint64_t above = room->record.epoch > 1? room->record.last_seq + SEND_WINDOW: 0;
    left_t *left = s_left? zhashx_lookup (s_left, room->id): NULL;
    if (left && left->epoch + 1 == room->record.epoch)
        above = left->fanned_seq;       //  ours the last claim: what we fanned out
    if (left)
        zhashx_delete (s_left, room->id);
    room->next_seq = (above > room->record.last_seq? above: room->record.last_seq) + 1;
    room->fanned_seq = room->next_seq - 1;
    if (!room->window)
        room->window = zlistx_new ();
    assert (room->window);
}

void
send_room_gone (roomd_t *self, room_t *room)
{
    //  What is in flight carries on as orphans (s_appended); what is
    //  durable is acknowledged (self NULL: at exit, nobody to tell) and
    //  freed.
    if (self && room->generation) {
        if (!s_left || zhashx_size (s_left) >= LEFT_MAX) {
            zhashx_destroy (&s_left);
            s_left = zhashx_new ();
            assert (s_left);
            zhashx_set_destructor (s_left, s_left_destroy);
        }
        left_t *left = malloc (sizeof *left);
        assert (left);
        *left = (left_t) { room->record.epoch, room->fanned_seq };
        zhashx_update (s_left, room->id, left);
    }
    op_t *op;
    while (room->window && (op = zlistx_first (room->window))) {
        zlistx_delete (room->window, zlistx_cursor (room->window));
        op->generation = 0;
        if (op->durable && !op->acked && self) {
            if (!op->fanned && !op->hole)
                s_fan (self, op);
            s_ack (self, op);
        }
        if (op->durable || op->acked)
            op_finish (self, &op, NULL);
    }
    zlistx_destroy (&room->window);
    zhashx_destroy (&room->ids);
    if (room->id_ring)
        for (size_t i = 0; i < ROOM_IDS_MAX; i++)
            free (room->id_ring [i]);
    free (room->id_ring);
    room->id_ring = NULL;
    free (room->pins);
    room->pins = NULL;
    room->pin_count = room->pin_max = 0;
}

uint64_t
send_fanned_seq (roomd_t *self, const char *room_id)
{
    room_t *room = rooms_find (self, room_id);
    return room && room->state == ROOM_READY? room->fanned_seq: 0;
}

void
send_pin (room_t *room, op_t *join)
{
    op_t *front = room->window? zlistx_first (room->window): NULL;
    join->pin_seq = front? front->message.seq: room->next_seq;
    join->pin_generation = room->generation;
    if (room->pin_count == room->pin_max) {
        room->pin_max = room->pin_max? room->pin_max * 2: 4;
        room->pins = realloc (room->pins, room->pin_max * sizeof *room->pins);
        assert (room->pins);
    }
    room->pins [room->pin_count++] = join->pin_seq;
}

uint32_t
send_merge (roomd_t *self, op_t *join, const proto_message_t *history, uint32_t count,
            uint64_t after_seq, uint32_t keep, bool *more, proto_message_t **merged)
{
    *merged = NULL;
    room_t *room = rooms_find (self, join->room_id);
    bool ours = room && room->state == ROOM_READY && join->pin_generation
             && room->generation == join->pin_generation;
    if (ours)
        for (size_t i = 0; i < room->pin_count; i++)
            if (room->pins [i] == join->pin_seq) {
                room->pins [i] = room->pins [--room->pin_count];
                break;
            }
    join->pin_generation = 0;
    if (!ours || !room->window || zlistx_size (room->window) == 0)
        return count;
    //  What was fanned out from the pin on: the messages that were not
    //  durable when the history was read (and some that were: each seq once).
    size_t extra = 0;
    for (op_t *op = zlistx_first (room->window); op; op = zlistx_next (room->window))
        extra += op->fanned && op->message.seq >= join->pin_seq;
    if (extra == 0) {
        s_trim (room);
        return count;
    }
    log_debug ("a join to room %s is given the history with %zu messages from the window",
               room->id, extra);
    proto_message_t *out = calloc (count + extra, sizeof *out);
    assert (out);
    //  A page stored cut short (more) ends where it ends: the gateway
    //  reads on from there, and what it holds meanwhile follows.
    uint64_t last = !*more? UINT64_MAX: count? history [count - 1].seq: 0;
    uint32_t taken = 0, h = 0;
    op_t *op = zlistx_first (room->window);
    while (h < count || op) {
        if (op && !(op->fanned && op->message.seq >= join->pin_seq
                    && op->message.seq > after_seq && op->message.seq <= last)) {
            op = zlistx_next (room->window);
            continue;
        }
        if (op && (h == count || op->message.seq < history [h].seq)) {
            out [taken++] = op->message;
            op = zlistx_next (room->window);
        }
        else {
            if (op && op->message.seq == history [h].seq)
                op = zlistx_next (room->window);
            out [taken++] = history [h++];
        }
    }
    //  A plain join is given the newest `keep`, a sinceSeq join the oldest
    //  from its seq; either as far as a reply goes (by count and about
    //  PROTO_REPLY_BYTES_MAX of text beside what stored gave).
    if (keep) {
        uint32_t start = taken > keep? taken - keep: 0;
        size_t bytes = 0;
        for (uint32_t i = start; i < taken; i++)
            bytes += strlen (out [i].text);
        while (taken - start > 1 && (taken - start > PROTO_LIST_MAX || bytes > PROTO_REPLY_BYTES_MAX))
            bytes -= strlen (out [start++].text);
        memmove (out, out + start, (taken - start) * sizeof *out);
        taken -= start;
    }
    else {
        size_t bytes = 0;
        for (uint32_t i = 0; i < taken; i++) {
            bytes += strlen (out [i].text);
            if (i > 0 && (i == PROTO_LIST_MAX || bytes > PROTO_REPLY_BYTES_MAX)) {
                taken = i;
                *more = true;
                break;
            }
        }
    }
    *merged = out;
    //  The messages point into the window's sends: they stay until the
    //  reply is encoded (the caller frees merged, then calls send_trim).
    return taken;
}

void
send_trim (roomd_t *self, const char *room_id)
{
    room_t *room = rooms_find (self, room_id);
    if (room && room->state == ROOM_READY && room->window)
        s_trim (room);
}

void
send_close_begins (room_t *room, bool begins)
{
    room->closing = begins;
}

void
send_retry_due (roomd_t *self)
{
    if (!self->retries || zlistx_size (self->retries) == 0)
        return;
    int64_t now = clock_mono_ms ();
    zlistx_t *waiting = self->retries, *due = zlistx_new ();
    self->retries = zlistx_new ();
    for (op_t *op = zlistx_first (waiting); op; op = zlistx_next (waiting))
        zlistx_add_end (op->retry_at_ms <= now || self->stopping? due: self->retries, op);
    zlistx_destroy (&waiting);
    //  A send that fails at once comes back into self->retries, not due.
    for (op_t *op = zlistx_first (due); op; op = zlistx_next (due)) {
        op->retry_at_ms = 0;
        op->attempts++;
        s_append (self, op);
    }
    zlistx_destroy (&due);
}

void
send_stop (roomd_t *self)
{
    self->stopping = true;
    send_retry_due (self);              //  each fails at once: stopping
    zlistx_destroy (&self->retries);
    zhashx_destroy (&s_left);
}

int64_t
send_next_retry (roomd_t *self)
{
    int64_t next = -1;
    if (self->retries)
        for (op_t *op = zlistx_first (self->retries); op; op = zlistx_next (self->retries))
            if (next < 0 || op->retry_at_ms < next)
                next = op->retry_at_ms;
    return next < 0? -1: (next > clock_mono_ms ()? next - clock_mono_ms (): 0);
}
