/*  =========================================================================
    rooms.c - the rooms a shard holds: records, members, typing throttles

    A room's record is kept as stored last sent it, deep-copied into a zone
    of its own by packing and unpacking it through proto (the codec already
    knows every pointer a room holds, so no hand-written copy can miss one).
    Members are the sockets in the room, each with its gateway and user; a
    user is online while one of their sockets is a member.
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "roomd.h"
#include "clock.h"
#include "log.h"
#include "route.h"

//  What else a room holds goes when it leaves (handle_send.c's window):
//  told through this, so that the table need not know its handlers.
static rooms_gone_fn *s_gone;

static void
s_room_destroy (void **item)
{
    room_t *room = *item;
    if (!room)
        return;
    assert (!room->queue_head);         //  nobody may drop waiting requests
    if (s_gone)
        s_gone (NULL, room);            //  at exit: rooms_remove did it before
    for (size_t i = 0; i < room->member_count; i++) {
        free (room->members [i].conn_id);
        free (room->members [i].gateway_id);
        free (room->members [i].user_id);
    }
    free (room->members);
    for (size_t i = 0; i < room->typing_count; i++)
        free (room->typing [i].user_id);
    free (room->typing);
    if (room->zone)
        msgpack_zone_free (room->zone);
    free (room);
    *item = NULL;
}

room_t *
rooms_find (roomd_t *self, const char *room_id)
{
    return zhashx_lookup (self->rooms, room_id);
}

room_t *
rooms_add (roomd_t *self, const char *room_id)
{
    assert (!rooms_find (self, room_id));
    room_t *room = calloc (1, sizeof *room);
    assert (room);
    snprintf (room->id, sizeof room->id, "%s", room_id);
    room->state = ROOM_LOADING;
    room->used_ms = clock_mono_ms ();
    zhashx_insert (self->rooms, room->id, room);
    return room;
}

void
rooms_remove (roomd_t *self, room_t **room_p)
{
    assert (room_p && *room_p);
    if (s_gone)
        s_gone (self, *room_p);
    //  The table's destructor frees the room.
    zhashx_delete (self->rooms, (*room_p)->id);
    *room_p = NULL;
}

size_t
rooms_count (roomd_t *self)
{
    return zhashx_size (self->rooms);
}

void
rooms_evict (roomd_t *self, const char *const *shards, size_t shard_count)
{
    int64_t idle_before = clock_mono_ms () - self->config->room_idle_evict_s * 1000;
    bool all = shards == NULL;
    //  A set without us is a gateway that has not heard our hello yet, not
    //  a verdict on our rooms: judge ownership only by a set we are in.
    bool listed = false;
    for (size_t i = 0; i < shard_count && !listed; i++)
        listed = strcmp (shards [i], self->config->shard_id) == 0;
    if (!listed)
        shard_count = 0;
    zlistx_t *evicted = zlistx_new ();
    for (room_t *room = zhashx_first (self->rooms); room; room = zhashx_next (self->rooms)) {
        if (room->state != ROOM_READY)
            continue;                   //  loading: its requests are on their way
        bool ours = true;
        if (shard_count) {
            int owner = route_pick (room->id, shards, shard_count);
            ours = owner >= 0 && strcmp (shards [owner], self->config->shard_id) == 0;
        }
        if (all || !ours || (room->member_count == 0 && room->used_ms < idle_before))
            zlistx_add_end (evicted, room);
    }
    for (room_t *room = zlistx_first (evicted); room; room = zlistx_next (evicted)) {
        log_debug ("room %s leaves memory", room->id);
        rooms_remove (self, &room);
    }
    zlistx_destroy (&evicted);
}

//  ---------------------------------------------------------------------------
//  One room

void
room_set_record (room_t *room, const proto_room_t *record)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    int rc = proto_room_pack (&buffer, record);
    assert (rc == 0);                   //  it decoded, so it encodes
    msgpack_zone *zone = msgpack_zone_new (1024);
    assert (zone);
    char why [PROTO_WHY_MAX];
    rc = proto_room_unpack (buffer.data, buffer.size, zone, &room->record, why, sizeof why);
    assert (rc == 0);
    msgpack_sbuffer_destroy (&buffer);
    if (room->zone)
        msgpack_zone_free (room->zone);
    room->zone = zone;
    room->state = ROOM_READY;
}

bool
room_is_participant (const room_t *room, const char *user_id)
{
    for (uint32_t i = 0; i < room->record.participant_count; i++)
        if (strcmp (room->record.participants [i], user_id) == 0)
            return true;
    return false;
}

bool
room_add_member (room_t *room, const char *conn_id, const char *gateway_id, const char *user_id)
{
    for (size_t i = 0; i < room->member_count; i++)
        if (strcmp (room->members [i].conn_id, conn_id) == 0)
            return false;
    if (room->member_count == room->member_max) {
        room->member_max = room->member_max? room->member_max * 2: 8;
        room->members = realloc (room->members, room->member_max * sizeof *room->members);
        assert (room->members);
    }
    member_t *member = &room->members [room->member_count++];
    member->conn_id = strdup (conn_id);
    member->gateway_id = strdup (gateway_id);
    member->user_id = strdup (user_id);
    assert (member->conn_id && member->gateway_id && member->user_id);
    return true;
}

static void
s_remove_member_at (room_t *room, size_t index)
{
    member_t *member = &room->members [index];
    free (member->conn_id);
    free (member->gateway_id);
    free (member->user_id);
    room->members [index] = room->members [--room->member_count];
}

bool
room_remove_member (room_t *room, const char *conn_id)
{
    for (size_t i = 0; i < room->member_count; i++)
        if (strcmp (room->members [i].conn_id, conn_id) == 0) {
            s_remove_member_at (room, i);
            return true;
        }
    return false;
}

void
room_remove_user (room_t *room, const char *user_id)
{
    for (size_t i = room->member_count; i-- > 0; )
        if (strcmp (room->members [i].user_id, user_id) == 0)
            s_remove_member_at (room, i);
}

bool
room_has_member (const room_t *room, const char *conn_id)
{
    for (size_t i = 0; i < room->member_count; i++)
        if (strcmp (room->members [i].conn_id, conn_id) == 0)
            return true;
    return false;
}

bool
room_user_online (const room_t *room, const char *user_id)
{
    for (size_t i = 0; i < room->member_count; i++)
        if (strcmp (room->members [i].user_id, user_id) == 0)
            return true;
    return false;
}

uint32_t
room_online (const room_t *room, const char **ids, uint32_t max)
{
    uint32_t count = 0;
    for (size_t i = 0; i < room->member_count && count < max; i++) {
        bool seen = false;
        for (uint32_t k = 0; k < count && !seen; k++)
            seen = strcmp (ids [k], room->members [i].user_id) == 0;
        if (!seen)
            ids [count++] = room->members [i].user_id;
    }
    return count;
}

bool
room_typing_allowed (room_t *room, const char *user_id, int64_t now_ms, int64_t throttle_ms)
{
    for (size_t i = 0; i < room->typing_count; i++)
        if (strcmp (room->typing [i].user_id, user_id) == 0) {
            if (now_ms - room->typing [i].at_ms < throttle_ms)
                return false;
            room->typing [i].at_ms = now_ms;
            return true;
        }
    //  One entry a user who typed here lately; forget them all when the
    //  list outgrows what a room's participants could fill.
    if (room->typing_count >= 2 * PROTO_PARTICIPANTS_MAX) {
        for (size_t i = 0; i < room->typing_count; i++)
            free (room->typing [i].user_id);
        room->typing_count = 0;
    }
    room->typing = realloc (room->typing, (room->typing_count + 1) * sizeof *room->typing);
    assert (room->typing);
    room->typing [room->typing_count].user_id = strdup (user_id);
    assert (room->typing [room->typing_count].user_id);
    room->typing [room->typing_count++].at_ms = now_ms;
    return true;
}

zhashx_t *
rooms_new (rooms_gone_fn *gone)
{
    s_gone = gone;
    zhashx_t *rooms = zhashx_new ();
    assert (rooms);
    zhashx_set_destructor (rooms, s_room_destroy);
    return rooms;
}
