/*  =========================================================================
    codec.c - the envelope and every message type, in msgpack

    This file is where the wire format is written, and it is written once:
    each body and record is a table of fields (name on the wire, kind, where
    it sits in its C struct, whether required, its limits). One walker
    decodes by the tables, one encodes by them, and both run the same checks
    (s_check_field), so an encoder can never write what a decoder refuses.

    msgpack-c does the parsing and packing. The one thing done by hand is a
    skim of the raw bytes before msgpack-c sees them (s_skim): msgpack-c
    allocates a container's declared element count before it checks that the
    bytes exist, so five hostile bytes could ask it for gigabytes.
    =========================================================================
*/

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "proto.h"
#include "clock.h"
#include "utf8.h"

#define CODEC_DEPTH_MAX     8           //  envelope, body, record, array, ...
#define CODEC_TIME_MAX      9007199254740991.0  //  2^53 - 1: ms timestamps
#define CODEC_DISTANCE_MAX  (M_PI * 6371008.8 + 1)

typedef enum {
    K_ID,           //  const char *: 1..PROTO_ID_MAX bytes, no control characters
    K_PROFILE,      //  const char *: 0..PROTO_PROFILE_MAX bytes, no control characters
    K_TEXT,         //  const char *: 1..PROTO_TEXT_MAX bytes, tab/newline allowed
    K_REASON,       //  const char *: 1..PROTO_REASON_MAX bytes, tab/newline allowed
    K_U16,          //  uint16_t in [min, max]
    K_U32,          //  uint32_t in [min, max]
    K_U64,          //  uint64_t
    K_TIME,         //  int64_t ms since the epoch, [0, 2^53)
    K_DOUBLE,       //  double in [min, max]; integers accepted
    K_BOOL,         //  bool
    K_ROOM_TYPE,    //  proto_room_type_t as "public" / "private"
    K_STATUS,       //  proto_room_status_t as "active" / "closed"
    K_ID_LIST,      //  const char ** and a uint32_t count: distinct ids
    K_RECORD,       //  a nested struct, by value
    K_RECORD_REF,   //  a pointer to a nested struct; NULL when absent
    K_RECORD_LIST   //  a pointer to nested structs and a uint32_t count
} kind_t;

typedef struct layout layout_t;

typedef struct {
    const char *key;            //  name on the wire
    kind_t kind;
    bool required;
    size_t offset;              //  of the value in its struct
    size_t count_offset;        //  of the uint32_t count, for lists
    double min, max;            //  numbers' range; a list's most entries
    const layout_t *layout;     //  of a record or its list entries
} field_t;

struct layout {
    const char *name;           //  for reasons: "room", "body"
    size_t size;                //  of the struct
    const field_t *fields;
    size_t count;
    //  A check across fields, or NULL. Returns NULL or a reason.
    const char *(*check) (const void *value);
};

//  ---------------------------------------------------------------------------
//  The tables: this is the wire format

#define FIELD(type, member, key, kind, required, min, max) \
    { key, kind, required, offsetof (type, member), 0, min, max, NULL }
#define RECORD(type, member, key, layout) \
    { key, K_RECORD, true, offsetof (type, member), 0, 0, 0, &layout }
#define RECORD_REF(type, member, key, layout) \
    { key, K_RECORD_REF, false, offsetof (type, member), 0, 0, 0, &layout }
#define LIST(type, member, count, key, kind, max, layout) \
    { key, kind, false, offsetof (type, member), offsetof (type, count), 0, max, layout }
#define LAYOUT(name, type, fields, check) \
    { name, sizeof (type), fields, sizeof fields / sizeof fields [0], check }
#define REQ true
#define OPT false

static const field_t s_room_fields [] = {
    FIELD (proto_room_t, id, "id", K_ID, REQ, 0, 0),
    FIELD (proto_room_t, latitude, "latitude", K_DOUBLE, REQ, -90, 90),
    FIELD (proto_room_t, longitude, "longitude", K_DOUBLE, REQ, -180, 180),
    FIELD (proto_room_t, road_name, "roadName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_room_t, radius_m, "radius", K_U32, REQ, 1, PROTO_RADIUS_MAX_M),
    FIELD (proto_room_t, creator, "creator", K_ID, REQ, 0, 0),
    LIST (proto_room_t, participants, participant_count, "participants", K_ID_LIST,
          PROTO_PARTICIPANTS_MAX, NULL),
    FIELD (proto_room_t, created_at_ms, "createdAt", K_TIME, REQ, 0, 0),
    FIELD (proto_room_t, last_activity_ms, "lastActivity", K_TIME, REQ, 0, 0),
    FIELD (proto_room_t, status, "status", K_STATUS, REQ, 0, 0),
    FIELD (proto_room_t, room_type, "roomType", K_ROOM_TYPE, REQ, 0, 0),
    FIELD (proto_room_t, max_participants, "maxParticipants", K_U32, REQ, 1,
           PROTO_PARTICIPANTS_MAX),
    FIELD (proto_room_t, last_seq, "lastSeq", K_U64, OPT, 0, 0),
    FIELD (proto_room_t, epoch, "epoch", K_U64, OPT, 0, 0),
};
static const layout_t s_room = LAYOUT ("room", proto_room_t, s_room_fields, NULL);

static const field_t s_message_fields [] = {
    FIELD (proto_message_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_message_t, id, "id", K_ID, OPT, 0, 0),
    FIELD (proto_message_t, client_id, "clientId", K_ID, OPT, 0, 0),
    FIELD (proto_message_t, seq, "seq", K_U64, OPT, 0, 0),
    FIELD (proto_message_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_message_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_message_t, user_icon, "userIcon", K_PROFILE, OPT, 0, 0),
    FIELD (proto_message_t, user_color, "userColor", K_PROFILE, OPT, 0, 0),
    FIELD (proto_message_t, text, "text", K_TEXT, REQ, 0, 0),
    FIELD (proto_message_t, created_at_ms, "createdAt", K_TIME, REQ, 0, 0),
    FIELD (proto_message_t, expires_at_ms, "expiresAt", K_TIME, OPT, 0, 0),
};
static const layout_t s_message = LAYOUT ("message", proto_message_t, s_message_fields, NULL);

static const field_t s_connection_fields [] = {
    FIELD (proto_connection_t, conn_id, "connId", K_ID, REQ, 0, 0),
    FIELD (proto_connection_t, gateway_id, "gatewayId", K_ID, REQ, 0, 0),
    FIELD (proto_connection_t, incarnation, "incarnation", K_ID, OPT, 0, 0),
    FIELD (proto_connection_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_connection_t, room_id, "roomId", K_ID, OPT, 0, 0),
    FIELD (proto_connection_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_connection_t, user_icon, "userIcon", K_PROFILE, OPT, 0, 0),
    FIELD (proto_connection_t, user_color, "userColor", K_PROFILE, OPT, 0, 0),
    FIELD (proto_connection_t, connected_at_ms, "connectedAt", K_TIME, REQ, 0, 0),
};
static const layout_t s_connection = LAYOUT ("connection", proto_connection_t,
                                             s_connection_fields, NULL);

static const field_t s_geo_hit_fields [] = {
    RECORD (proto_geo_hit_t, room, "room", s_room),
    FIELD (proto_geo_hit_t, distance_m, "distance", K_DOUBLE, REQ, 0, CODEC_DISTANCE_MAX),
};
static const layout_t s_geo_hit = LAYOUT ("hit", proto_geo_hit_t, s_geo_hit_fields, NULL);

//  Bodies. Offsets are within the body struct, which sits at the start of
//  proto_msg_t's union.
static const field_t s_error_fields [] = {
    FIELD (proto_error_t, status, "status", K_U16, REQ, 100, 599),
    FIELD (proto_error_t, reason, "reason", K_REASON, REQ, 0, 0),
};
static const field_t s_stats_reply_fields [] = {
    FIELD (proto_stats_reply_t, map_size, "mapSize", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, map_used, "mapUsed", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, rooms, "rooms", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, active_rooms, "activeRooms", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, messages, "messages", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, connections, "connections", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, commits, "commits", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, writes, "writes", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, swept, "swept", K_U64, OPT, 0, 0),
    FIELD (proto_stats_reply_t, map_grows, "mapGrows", K_U64, OPT, 0, 0),
};
static const field_t s_room_put_fields [] = {
    RECORD (proto_room_put_t, room, "room", s_room),
    FIELD (proto_room_put_t, if_absent, "ifAbsent", K_BOOL, OPT, 0, 0),
};
static const field_t s_room_get_fields [] = {
    FIELD (proto_room_get_t, room_id, "roomId", K_ID, REQ, 0, 0),
};
static const field_t s_room_update_fields [] = {
    FIELD (proto_room_update_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_room_update_t, if_status, "ifStatus", K_STATUS, OPT, 0, 0),
    FIELD (proto_room_update_t, if_creator, "ifCreator", K_ID, OPT, 0, 0),
    FIELD (proto_room_update_t, if_idle_before_ms, "ifIdleBefore", K_TIME, OPT, 0, 0),
    FIELD (proto_room_update_t, add_participant, "addParticipant", K_ID, OPT, 0, 0),
    FIELD (proto_room_update_t, remove_participant, "removeParticipant", K_ID, OPT, 0, 0),
    FIELD (proto_room_update_t, set_status, "setStatus", K_STATUS, OPT, 0, 0),
    FIELD (proto_room_update_t, touch_ms, "touch", K_TIME, OPT, 0, 0),
    FIELD (proto_room_update_t, if_epoch, "ifEpoch", K_U64, OPT, 0, 0),
    FIELD (proto_room_update_t, claim, "claim", K_BOOL, OPT, 0, 0),
    RECORD_REF (proto_room_update_t, connection, "connection", s_connection),
    FIELD (proto_room_update_t, leave_conn_id, "leaveConnId", K_ID, OPT, 0, 0),
    FIELD (proto_room_update_t, closed, "closed", K_BOOL, OPT, 0, 0),
};
static const field_t s_room_reply_fields [] = {
    RECORD (proto_room_reply_t, room, "room", s_room),
    FIELD (proto_room_reply_t, changed, "changed", K_BOOL, OPT, 0, 0),
};
static const field_t s_rooms_idle_fields [] = {
    FIELD (proto_rooms_idle_t, before_ms, "before", K_TIME, REQ, 0, 0),
    FIELD (proto_rooms_idle_t, limit, "limit", K_U32, OPT, 0, PROTO_LIST_MAX),
};
static const field_t s_room_list_fields [] = {
    LIST (proto_room_list_t, rooms, count, "rooms", K_RECORD_LIST, PROTO_LIST_MAX, &s_room),
};
static const field_t s_geo_search_fields [] = {
    FIELD (proto_geo_search_t, latitude, "latitude", K_DOUBLE, REQ, -90, 90),
    FIELD (proto_geo_search_t, longitude, "longitude", K_DOUBLE, REQ, -180, 180),
    FIELD (proto_geo_search_t, room_type, "roomType", K_ROOM_TYPE, OPT, 0, 0),
    FIELD (proto_geo_search_t, limit, "limit", K_U32, OPT, 0, PROTO_LIST_MAX),
};
static const field_t s_geo_reply_fields [] = {
    LIST (proto_geo_reply_t, hits, count, "hits", K_RECORD_LIST, PROTO_LIST_MAX, &s_geo_hit),
};
//  A shard numbers and names the messages it appends (proto.h): a seq
//  without the id that goes with it could not tell a retry of the same
//  message from another one at that seq.
static const char *
s_msg_append_check (const void *value)
{
    const proto_msg_append_t *append = value;
    return append->message.seq && !append->message.id? "a numbered message needs its id": NULL;
}

static const field_t s_msg_append_fields [] = {
    RECORD (proto_msg_append_t, message, "message", s_message),
    FIELD (proto_msg_append_t, if_epoch, "ifEpoch", K_U64, OPT, 0, 0),
};
static const field_t s_carried_message_fields [] = {
    RECORD (proto_carried_message_t, message, "message", s_message),
};
static const field_t s_append_reply_fields [] = {
    FIELD (proto_append_reply_t, seq, "seq", K_U64, REQ, 0, 0),
    FIELD (proto_append_reply_t, id, "id", K_ID, REQ, 0, 0),
    FIELD (proto_append_reply_t, created_at_ms, "createdAt", K_TIME, REQ, 0, 0),
    FIELD (proto_append_reply_t, duplicate, "duplicate", K_BOOL, OPT, 0, 0),
};
static const field_t s_history_fields [] = {
    FIELD (proto_history_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_history_t, from_seq, "fromSeq", K_U64, OPT, 0, 0),
    FIELD (proto_history_t, before_seq, "beforeSeq", K_U64, OPT, 0, 0),
    FIELD (proto_history_t, limit, "limit", K_U32, OPT, 0, PROTO_LIST_MAX),
};
static const field_t s_history_reply_fields [] = {
    LIST (proto_history_reply_t, messages, count, "messages", K_RECORD_LIST, PROTO_LIST_MAX,
          &s_message),
    FIELD (proto_history_reply_t, more, "more", K_BOOL, OPT, 0, 0),
};
static const field_t s_ttl_sweep_fields [] = {
    FIELD (proto_ttl_sweep_t, now_ms, "now", K_TIME, OPT, 0, 0),
    FIELD (proto_ttl_sweep_t, max, "max", K_U32, OPT, 0, 1000000),
};
static const field_t s_sweep_reply_fields [] = {
    FIELD (proto_sweep_reply_t, deleted, "deleted", K_U32, OPT, 0, 1000000),
    FIELD (proto_sweep_reply_t, more, "more", K_BOOL, OPT, 0, 0),
};
static const field_t s_conn_put_fields [] = {
    RECORD (proto_conn_put_t, connection, "connection", s_connection),
};
static const field_t s_conn_del_fields [] = {
    FIELD (proto_conn_del_t, conn_id, "connId", K_ID, REQ, 0, 0),
};
static const field_t s_conn_list_fields [] = {
    FIELD (proto_conn_list_t, gateway_id, "gatewayId", K_ID, OPT, 0, 0),
    FIELD (proto_conn_list_t, incarnation, "incarnation", K_ID, OPT, 0, 0),
    FIELD (proto_conn_list_t, user_id, "userId", K_ID, OPT, 0, 0),
    FIELD (proto_conn_list_t, room_id, "roomId", K_ID, OPT, 0, 0),
    FIELD (proto_conn_list_t, limit, "limit", K_U32, OPT, 0, PROTO_LIST_MAX),
};
static const field_t s_conn_list_reply_fields [] = {
    LIST (proto_conn_list_reply_t, connections, count, "connections", K_RECORD_LIST,
          PROTO_LIST_MAX, &s_connection),
};

static const field_t s_gateway_beat_fields [] = {
    FIELD (proto_gateway_beat_t, gateway_id, "gatewayId", K_ID, REQ, 0, 0),
    FIELD (proto_gateway_beat_t, incarnation, "incarnation", K_ID, REQ, 0, 0),
    FIELD (proto_gateway_beat_t, at_ms, "at", K_TIME, REQ, 0, 0),
    FIELD (proto_gateway_beat_t, first, "first", K_BOOL, OPT, 0, 0),
    FIELD (proto_gateway_beat_t, gone, "gone", K_BOOL, OPT, 0, 0),
};
static const field_t s_gateways_silent_fields [] = {
    FIELD (proto_gateways_silent_t, before_ms, "before", K_TIME, REQ, 0, 0),
    FIELD (proto_gateways_silent_t, limit, "limit", K_U32, OPT, 0, PROTO_LIST_MAX),
};
static const field_t s_metrics_fields [] = {
    FIELD (proto_metrics_t, shard_id, "shardId", K_ID, OPT, 0, 0),
};
static const field_t s_bucket_fields [] = {
    FIELD (proto_bucket_t, le, "le", K_DOUBLE, REQ, -DBL_MAX, DBL_MAX),
    FIELD (proto_bucket_t, count, "count", K_U64, OPT, 0, 0),
};
static const layout_t s_bucket = LAYOUT ("bucket", proto_bucket_t, s_bucket_fields, NULL);
static const char *s_metric_check (const void *value);
static const field_t s_metric_fields [] = {
    FIELD (proto_metric_t, name, "name", K_ID, REQ, 0, 0),
    FIELD (proto_metric_t, help, "help", K_REASON, REQ, 0, 0),
    FIELD (proto_metric_t, kind, "kind", K_U16, REQ, PROTO_METRIC_COUNTER, PROTO_METRIC_HISTOGRAM),
    FIELD (proto_metric_t, value, "value", K_DOUBLE, OPT, -DBL_MAX, DBL_MAX),
    FIELD (proto_metric_t, count, "count", K_U64, OPT, 0, 0),
    LIST (proto_metric_t, buckets, bucket_count, "buckets", K_RECORD_LIST, PROTO_BUCKETS_MAX,
          &s_bucket),
};
static const layout_t s_metric = LAYOUT ("metric", proto_metric_t, s_metric_fields,
                                         s_metric_check);
static const field_t s_metrics_reply_fields [] = {
    FIELD (proto_metrics_reply_t, daemon, "daemon", K_ID, REQ, 0, 0),
    FIELD (proto_metrics_reply_t, instance, "instance", K_ID, REQ, 0, 0),
    LIST (proto_metrics_reply_t, metrics, count, "metrics", K_RECORD_LIST, PROTO_METRICS_MAX,
          &s_metric),
};
static const field_t s_gateway_run_fields [] = {
    FIELD (proto_gateway_run_t, gateway_id, "gatewayId", K_ID, REQ, 0, 0),
    FIELD (proto_gateway_run_t, incarnation, "incarnation", K_ID, REQ, 0, 0),
};
static const layout_t s_gateway_run = LAYOUT ("run", proto_gateway_run_t, s_gateway_run_fields,
                                              NULL);
static const field_t s_gateway_list_fields [] = {
    LIST (proto_gateway_list_t, gateways, count, "gateways", K_RECORD_LIST, PROTO_LIST_MAX,
          &s_gateway_run),
};
static const field_t s_shard_hello_fields [] = {
    FIELD (proto_shard_hello_t, shard_id, "shardId", K_ID, REQ, 0, 0),
    FIELD (proto_shard_hello_t, heartbeat_ms, "heartbeatMs", K_U32, REQ, 1, 60000),
    FIELD (proto_shard_hello_t, rooms, "rooms", K_U32, OPT, 0, 4294967295.0),
};
static const field_t s_shard_welcome_fields [] = {
    FIELD (proto_shard_welcome_t, gateway_id, "gatewayId", K_ID, REQ, 0, 0),
    LIST (proto_shard_welcome_t, shards, shard_count, "shards", K_ID_LIST, PROTO_LIST_MAX, NULL),
    FIELD (proto_shard_welcome_t, fresh, "fresh", K_BOOL, OPT, 0, 0),
};
static const field_t s_room_join_fields [] = {
    FIELD (proto_room_join_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_room_join_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_room_join_t, conn_id, "connId", K_ID, OPT, 0, 0),
    FIELD (proto_room_join_t, gateway_id, "gatewayId", K_ID, OPT, 0, 0),
    FIELD (proto_room_join_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_room_join_t, user_icon, "userIcon", K_PROFILE, OPT, 0, 0),
    FIELD (proto_room_join_t, user_color, "userColor", K_PROFILE, OPT, 0, 0),
    FIELD (proto_room_join_t, since_seq, "sinceSeq", K_U64, OPT, 0, 0),
    FIELD (proto_room_join_t, incarnation, "incarnation", K_ID, OPT, 0, 0),
};
static const field_t s_join_reply_fields [] = {
    RECORD (proto_join_reply_t, room, "room", s_room),
    LIST (proto_join_reply_t, messages, count, "messages", K_RECORD_LIST, PROTO_LIST_MAX,
          &s_message),
    FIELD (proto_join_reply_t, more, "more", K_BOOL, OPT, 0, 0),
};
static const field_t s_room_leave_fields [] = {
    FIELD (proto_room_leave_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_room_leave_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_room_leave_t, conn_id, "connId", K_ID, OPT, 0, 0),
    FIELD (proto_room_leave_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_room_leave_t, closed, "closed", K_BOOL, OPT, 0, 0),
};
static const field_t s_typing_fields [] = {
    FIELD (proto_typing_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_typing_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_typing_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
};
static const field_t s_info_reply_fields [] = {
    RECORD (proto_info_reply_t, room, "room", s_room),
    LIST (proto_info_reply_t, online, online_count, "online", K_ID_LIST, PROTO_LIST_MAX, NULL),
};
static const field_t s_room_close_fields [] = {
    FIELD (proto_room_close_t, room_id, "roomId", K_ID, REQ, 0, 0),
    FIELD (proto_room_close_t, user_id, "userId", K_ID, OPT, 0, 0),
    FIELD (proto_room_close_t, idle_before_ms, "idleBefore", K_TIME, OPT, 0, 0),
};
static const field_t s_event_joined_fields [] = {
    RECORD (proto_event_joined_t, room, "room", s_room),
    FIELD (proto_event_joined_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_event_joined_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
    FIELD (proto_event_joined_t, user_icon, "userIcon", K_PROFILE, OPT, 0, 0),
    FIELD (proto_event_joined_t, user_color, "userColor", K_PROFILE, OPT, 0, 0),
    FIELD (proto_event_joined_t, except_conn, "exceptConn", K_ID, OPT, 0, 0),
};
static const field_t s_event_left_fields [] = {
    RECORD (proto_event_left_t, room, "room", s_room),
    FIELD (proto_event_left_t, user_id, "userId", K_ID, REQ, 0, 0),
    FIELD (proto_event_left_t, user_name, "userName", K_PROFILE, OPT, 0, 0),
};

static const char *
s_room_join_check (const void *value)
{
    const proto_room_join_t *join = value;
    if (join->conn_id && !join->gateway_id)
        return "a socket's join needs its gatewayId";
    return join->incarnation && !join->conn_id? "incarnation goes only with connId": NULL;
}

static const char *
s_room_leave_check (const void *value)
{
    const proto_room_leave_t *leave = value;
    return leave->closed && !leave->conn_id? "closed goes only with connId": NULL;
}

//  The connection record a room update writes is one in that room: roomd
//  writes a socket's record in its join's transaction (proto.h).
static const char *
s_room_update_check (const void *value)
{
    const proto_room_update_t *update = value;
    if (update->connection && (!update->connection->room_id
                               || strcmp (update->connection->room_id, update->room_id) != 0))
        return "the connection written must be in the room updated";
    if (update->closed && !update->leave_conn_id)
        return "closed goes only with leaveConnId";
    if (update->connection && update->leave_conn_id
    &&  strcmp (update->connection->conn_id, update->leave_conn_id) == 0)
        return "one connection cannot both join and leave";
    return NULL;
}

//  A metric must be one Prometheus can take as it is: a name of its
//  alphabet, and buckets only on a histogram, in order, cumulative.
static const char *
s_metric_check (const void *value)
{
    const proto_metric_t *metric = value;
    for (const char *c = metric->name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == ':'
        ||   (c > metric->name && *c >= '0' && *c <= '9')))
            return "a metric name is [a-zA-Z_:][a-zA-Z0-9_:]*";
    if (metric->kind != PROTO_METRIC_HISTOGRAM)
        return metric->bucket_count || metric->count? "only a histogram has buckets and a count"
                                                    : NULL;
    for (uint32_t i = 0; i < metric->bucket_count; i++) {
        const proto_bucket_t *bucket = &metric->buckets [i];
        if (bucket->count > metric->count)
            return "a bucket counts more than the histogram";
        if (i && (bucket->le <= bucket [-1].le || bucket->count < bucket [-1].count))
            return "buckets must rise in le and not fall in count";
    }
    return NULL;
}

static const char *
s_conn_list_check (const void *value)
{
    const proto_conn_list_t *list = value;
    int keys = !!list->gateway_id + !!list->user_id + !!list->room_id;
    if (keys != 1)
        return "exactly one of gatewayId, userId, roomId is required";
    return list->incarnation && !list->gateway_id? "incarnation goes only with gatewayId": NULL;
}

//  Every type: its name and its body.
static const struct {
    const char *name;
    layout_t body;
    int reply;                  //  the type that answers it, if a request
} s_types [PROTO_TYPE_LIMIT] = {
    [PROTO_ERROR]           = { "error", LAYOUT ("body", proto_error_t, s_error_fields, NULL), 0 },
    [PROTO_OK]              = { "ok", { "body", 0, NULL, 0, NULL }, 0 },
    [PROTO_STORE_STATS]     = { "store-stats", { "body", 0, NULL, 0, NULL }, PROTO_STATS_REPLY },
    [PROTO_STATS_REPLY]     = { "stats-reply", LAYOUT ("body", proto_stats_reply_t,
                                                       s_stats_reply_fields, NULL), 0 },
    [PROTO_METRICS]         = { "metrics", LAYOUT ("body", proto_metrics_t,
                                                   s_metrics_fields, NULL), PROTO_METRICS_REPLY },
    [PROTO_METRICS_REPLY]   = { "metrics-reply", LAYOUT ("body", proto_metrics_reply_t,
                                                         s_metrics_reply_fields, NULL), 0 },
    [PROTO_ROOM_PUT]        = { "room-put", LAYOUT ("body", proto_room_put_t,
                                                    s_room_put_fields, NULL), PROTO_ROOM_REPLY },
    [PROTO_ROOM_GET]        = { "room-get", LAYOUT ("body", proto_room_get_t,
                                                    s_room_get_fields, NULL), PROTO_ROOM_REPLY },
    [PROTO_ROOM_UPDATE]     = { "room-update", LAYOUT ("body", proto_room_update_t,
                                                       s_room_update_fields, s_room_update_check),
                                PROTO_ROOM_REPLY },
    [PROTO_ROOM_REPLY]      = { "room-reply", LAYOUT ("body", proto_room_reply_t,
                                                      s_room_reply_fields, NULL), 0 },
    [PROTO_ROOMS_IDLE]      = { "rooms-idle", LAYOUT ("body", proto_rooms_idle_t,
                                                      s_rooms_idle_fields, NULL), PROTO_ROOM_LIST },
    [PROTO_ROOM_LIST]       = { "room-list", LAYOUT ("body", proto_room_list_t,
                                                     s_room_list_fields, NULL), 0 },
    [PROTO_GEO_SEARCH]      = { "geo-search", LAYOUT ("body", proto_geo_search_t,
                                                      s_geo_search_fields, NULL), PROTO_GEO_REPLY },
    [PROTO_GEO_REPLY]       = { "geo-reply", LAYOUT ("body", proto_geo_reply_t,
                                                     s_geo_reply_fields, NULL), 0 },
    [PROTO_MSG_APPEND]      = { "msg-append", LAYOUT ("body", proto_msg_append_t,
                                                      s_msg_append_fields, s_msg_append_check), PROTO_APPEND_REPLY },
    [PROTO_APPEND_REPLY]    = { "append-reply", LAYOUT ("body", proto_append_reply_t,
                                                        s_append_reply_fields, NULL), 0 },
    [PROTO_HISTORY]         = { "history", LAYOUT ("body", proto_history_t,
                                                   s_history_fields, NULL), PROTO_HISTORY_REPLY },
    [PROTO_HISTORY_REPLY]   = { "history-reply", LAYOUT ("body", proto_history_reply_t,
                                                         s_history_reply_fields, NULL), 0 },
    [PROTO_TTL_SWEEP]       = { "ttl-sweep", LAYOUT ("body", proto_ttl_sweep_t,
                                                     s_ttl_sweep_fields, NULL), PROTO_SWEEP_REPLY },
    [PROTO_SWEEP_REPLY]     = { "sweep-reply", LAYOUT ("body", proto_sweep_reply_t,
                                                       s_sweep_reply_fields, NULL), 0 },
    [PROTO_CONN_PUT]        = { "conn-put", LAYOUT ("body", proto_conn_put_t,
                                                    s_conn_put_fields, NULL), PROTO_OK },
    [PROTO_CONN_DEL]        = { "conn-del", LAYOUT ("body", proto_conn_del_t,
                                                    s_conn_del_fields, NULL), PROTO_OK },
    [PROTO_CONN_LIST]       = { "conn-list", LAYOUT ("body", proto_conn_list_t, s_conn_list_fields,
                                                     s_conn_list_check), PROTO_CONN_LIST_REPLY },
    [PROTO_CONN_LIST_REPLY] = { "conn-list-reply", LAYOUT ("body", proto_conn_list_reply_t,
                                                           s_conn_list_reply_fields, NULL), 0 },
    [PROTO_GATEWAY_BEAT]    = { "gateway-beat", LAYOUT ("body", proto_gateway_beat_t,
                                                        s_gateway_beat_fields, NULL), PROTO_OK },
    [PROTO_GATEWAYS_SILENT] = { "gateways-silent", LAYOUT ("body", proto_gateways_silent_t,
                                                           s_gateways_silent_fields, NULL),
                                PROTO_GATEWAY_LIST },
    [PROTO_GATEWAY_LIST]    = { "gateway-list", LAYOUT ("body", proto_gateway_list_t,
                                                        s_gateway_list_fields, NULL), 0 },
    [PROTO_SHARD_HELLO]     = { "shard-hello", LAYOUT ("body", proto_shard_hello_t,
                                                       s_shard_hello_fields, NULL), PROTO_SHARD_WELCOME },
    [PROTO_SHARD_WELCOME]   = { "shard-welcome", LAYOUT ("body", proto_shard_welcome_t,
                                                         s_shard_welcome_fields, NULL), 0 },
    [PROTO_ROOM_JOIN]       = { "room-join", LAYOUT ("body", proto_room_join_t, s_room_join_fields,
                                                     s_room_join_check), PROTO_JOIN_REPLY },
    [PROTO_JOIN_REPLY]      = { "join-reply", LAYOUT ("body", proto_join_reply_t,
                                                      s_join_reply_fields, NULL), 0 },
    [PROTO_ROOM_LEAVE]      = { "room-leave", LAYOUT ("body", proto_room_leave_t,
                                                      s_room_leave_fields, s_room_leave_check),
                                PROTO_ROOM_REPLY },
    [PROTO_ROOM_SEND]       = { "room-send", LAYOUT ("body", proto_carried_message_t,
                                                     s_carried_message_fields, NULL), PROTO_APPEND_REPLY },
    [PROTO_ROOM_TYPING]     = { "room-typing", LAYOUT ("body", proto_typing_t,
                                                       s_typing_fields, NULL), PROTO_OK },
    [PROTO_ROOM_INFO]       = { "room-info", LAYOUT ("body", proto_room_ref_t,
                                                     s_room_get_fields, NULL), PROTO_INFO_REPLY },
    [PROTO_INFO_REPLY]      = { "info-reply", LAYOUT ("body", proto_info_reply_t,
                                                      s_info_reply_fields, NULL), 0 },
    [PROTO_ROOM_CLOSE]      = { "room-close", LAYOUT ("body", proto_room_close_t,
                                                      s_room_close_fields, NULL), PROTO_ROOM_REPLY },
    [PROTO_EVENT_JOINED]    = { "event-joined", LAYOUT ("body", proto_event_joined_t,
                                                        s_event_joined_fields, NULL), 0 },
    [PROTO_EVENT_LEFT]      = { "event-left", LAYOUT ("body", proto_event_left_t,
                                                      s_event_left_fields, NULL), 0 },
    [PROTO_EVENT_MESSAGE]   = { "event-message", LAYOUT ("body", proto_carried_message_t,
                                                         s_carried_message_fields, NULL), 0 },
    [PROTO_EVENT_TYPING]    = { "event-typing", LAYOUT ("body", proto_typing_t,
                                                        s_typing_fields, NULL), 0 },
    [PROTO_EVENT_CLOSED]    = { "event-closed", LAYOUT ("body", proto_room_ref_t,
                                                        s_room_get_fields, NULL), 0 },
};

static const char *s_room_type_names [] = { NULL, "public", "private" };
static const char *s_status_names [] = { NULL, "active", "closed" };

//  ---------------------------------------------------------------------------
//  Reasons

//  Write "path.key: what" into why. Always returns -1, for `return s_fail`.
static int
s_fail (char *why, size_t why_size, const char *path, const char *key, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

static int
s_fail (char *why, size_t why_size, const char *path, const char *key, const char *fmt, ...)
{
    if (why && why_size) {
        int length = snprintf (why, why_size, "%s%s%s: ", path, key? ".": "", key? key: "");
        if (length >= 0 && (size_t) length < why_size) {
            va_list args;
            va_start (args, fmt);
            vsnprintf (why + length, why_size - (size_t) length, fmt, args);
            va_end (args);
        }
    }
    return -1;
}

//  ---------------------------------------------------------------------------
//  The checks both directions share

static int
s_check_string (const field_t *field, const char *text, size_t length, const char *path,
                char *why, size_t why_size)
{
    size_t least = 1, most = PROTO_ID_MAX;
    bool whitespace = false;
    switch (field->kind) {
        case K_PROFILE: least = 0; most = PROTO_PROFILE_MAX; break;
        case K_TEXT:    most = PROTO_TEXT_MAX; whitespace = true; break;
        case K_REASON:  most = PROTO_REASON_MAX; whitespace = true; break;
        default: break;
    }
    if (length < least || length > most)
        return s_fail (why, why_size, path, field->key,
                       "%zu bytes, must be %zu to %zu", length, least, most);
    if (!utf8_valid (text, length))
        return s_fail (why, why_size, path, field->key, "not valid UTF-8");
    if (utf8_has_control (text, length, whitespace))
        return s_fail (why, why_size, path, field->key, "holds a control character");
    return 0;
}

static int s_check_layout (const layout_t *layout, const void *value, const char *path,
                           char *why, size_t why_size);

//  Check one field's C value: the contract in both directions.
static int
s_check_field (const field_t *field, const void *base, const char *path,
               char *why, size_t why_size)
{
    const char *at = (const char *) base + field->offset;
    switch (field->kind) {
        case K_ID: case K_PROFILE: case K_TEXT: case K_REASON: {
            const char *text = *(const char *const *) at;
            if (!text)
                return field->required? s_fail (why, why_size, path, field->key, "is required"): 0;
            return s_check_string (field, text, strlen (text), path, why, why_size);
        }
        case K_U16: case K_U32: {
            double value = field->kind == K_U16? *(const uint16_t *) at: *(const uint32_t *) at;
            bool absent = value == 0 && !field->required;
            if (!absent && (value < field->min || value > field->max))
                return s_fail (why, why_size, path, field->key, "%.0f is outside [%.0f, %.0f]",
                               value, field->min, field->max);
            return 0;
        }
        case K_TIME: {
            int64_t value = *(const int64_t *) at;
            if (value < 0 || (double) value > CODEC_TIME_MAX)
                return s_fail (why, why_size, path, field->key, "%lld is no time in ms",
                               (long long) value);
            return 0;
        }
        case K_DOUBLE: {
            double value = *(const double *) at;
            if (!isfinite (value) || value < field->min || value > field->max)
                return s_fail (why, why_size, path, field->key, "%g is outside [%g, %g]",
                               value, field->min, field->max);
            return 0;
        }
        case K_ROOM_TYPE: case K_STATUS: {
            int value = *(const int *) at;
            if (value == 0 && !field->required)
                return 0;
            if (value < 1 || value > 2)
                return s_fail (why, why_size, path, field->key, value? "%d is no such value"
                                                                     : "is required", value);
            return 0;
        }
        case K_ID_LIST: {
            const char *const *ids = *(const char *const *const *) at;
            uint32_t count = *(const uint32_t *) ((const char *) base + field->count_offset);
            if (count > field->max)
                return s_fail (why, why_size, path, field->key, "%u entries, at most %.0f",
                               count, field->max);
            if (count && !ids)
                return s_fail (why, why_size, path, field->key, "is missing its entries");
            for (uint32_t i = 0; i < count; i++) {
                field_t entry = { field->key, K_ID, true, 0, 0, 0, 0, NULL };
                if (s_check_field (&entry, &ids [i], path, why, why_size))
                    return -1;
                for (uint32_t k = 0; k < i; k++)
                    if (strcmp (ids [k], ids [i]) == 0)
                        return s_fail (why, why_size, path, field->key, "'%s' is listed twice",
                                       ids [i]);
            }
            return 0;
        }
        case K_RECORD: case K_RECORD_REF: {
            const void *record = field->kind == K_RECORD? at: *(const void *const *) at;
            if (!record)
                return field->required? s_fail (why, why_size, path, field->key, "is required"): 0;
            char inner [64];
            snprintf (inner, sizeof inner, "%s.%s", path, field->key);
            return s_check_layout (field->layout, record, inner, why, why_size);
        }
        case K_RECORD_LIST: {
            const char *entries = *(const char *const *) at;
            uint32_t count = *(const uint32_t *) ((const char *) base + field->count_offset);
            if (count > field->max)
                return s_fail (why, why_size, path, field->key, "%u entries, at most %.0f",
                               count, field->max);
            if (count && !entries)
                return s_fail (why, why_size, path, field->key, "is missing its entries");
            char inner [64];
            snprintf (inner, sizeof inner, "%s.%s[]", path, field->key);
            for (uint32_t i = 0; i < count; i++)
                if (s_check_layout (field->layout, entries + i * field->layout->size, inner,
                                    why, why_size))
                    return -1;
            return 0;
        }
        default:
            return 0;       //  K_U64, K_BOOL: every value is valid
    }
}

static int
s_check_layout (const layout_t *layout, const void *value, const char *path,
                char *why, size_t why_size)
{
    for (size_t i = 0; i < layout->count; i++)
        if (s_check_field (&layout->fields [i], value, path, why, why_size))
            return -1;
    const char *problem = layout->check? layout->check (value): NULL;
    return problem? s_fail (why, why_size, path, NULL, "%s", problem): 0;
}

//  True when an optional field holds its "absent" value and is left out.
static bool
s_is_absent (const field_t *field, const void *base)
{
    const char *at = (const char *) base + field->offset;
    if (field->required)
        return false;
    switch (field->kind) {
        case K_ID: case K_PROFILE: case K_TEXT: case K_REASON:
            return *(const char *const *) at == NULL;
        case K_U16:       return *(const uint16_t *) at == 0;
        case K_U32:       return *(const uint32_t *) at == 0;
        case K_U64:       return *(const uint64_t *) at == 0;
        case K_TIME:      return *(const int64_t *) at == 0;
        case K_DOUBLE:    return *(const double *) at == 0;
        case K_BOOL:      return !*(const bool *) at;
        case K_ROOM_TYPE: case K_STATUS: return *(const int *) at == 0;
        case K_ID_LIST: case K_RECORD_LIST:
            return *(const uint32_t *) ((const char *) base + field->count_offset) == 0;
        case K_RECORD_REF: return *(const void *const *) at == NULL;
        default:          return false;
    }
}

//  ---------------------------------------------------------------------------
//  Encoding

static void s_pack_layout (msgpack_packer *pk, const layout_t *layout, const void *value);

static void
s_pack_string (msgpack_packer *pk, const char *text)
{
    size_t length = strlen (text);
    msgpack_pack_str (pk, length);
    msgpack_pack_str_body (pk, text, length);
}

static void
s_pack_field (msgpack_packer *pk, const field_t *field, const void *base)
{
    const char *at = (const char *) base + field->offset;
    switch (field->kind) {
        case K_ID: case K_PROFILE: case K_TEXT: case K_REASON:
            s_pack_string (pk, *(const char *const *) at);
            break;
        case K_U16:     msgpack_pack_uint16 (pk, *(const uint16_t *) at); break;
        case K_U32:     msgpack_pack_uint32 (pk, *(const uint32_t *) at); break;
        case K_U64:     msgpack_pack_uint64 (pk, *(const uint64_t *) at); break;
        case K_TIME:    msgpack_pack_int64 (pk, *(const int64_t *) at); break;
        case K_DOUBLE:  msgpack_pack_double (pk, *(const double *) at); break;
        case K_BOOL:
            if (*(const bool *) at)
                msgpack_pack_true (pk);
            else
                msgpack_pack_false (pk);
            break;
        case K_ROOM_TYPE:
            s_pack_string (pk, s_room_type_names [*(const int *) at]);
            break;
        case K_STATUS:
            s_pack_string (pk, s_status_names [*(const int *) at]);
            break;
        case K_ID_LIST: {
            const char *const *ids = *(const char *const *const *) at;
            uint32_t count = *(const uint32_t *) ((const char *) base + field->count_offset);
            msgpack_pack_array (pk, count);
            for (uint32_t i = 0; i < count; i++)
                s_pack_string (pk, ids [i]);
            break;
        }
        case K_RECORD:
            s_pack_layout (pk, field->layout, at);
            break;
        case K_RECORD_REF:
            s_pack_layout (pk, field->layout, *(const void *const *) at);
            break;
        case K_RECORD_LIST: {
            const char *entries = *(const char *const *) at;
            uint32_t count = *(const uint32_t *) ((const char *) base + field->count_offset);
            msgpack_pack_array (pk, count);
            for (uint32_t i = 0; i < count; i++)
                s_pack_layout (pk, field->layout, entries + i * field->layout->size);
            break;
        }
    }
}

static void
s_pack_layout (msgpack_packer *pk, const layout_t *layout, const void *value)
{
    size_t present = 0;
    for (size_t i = 0; i < layout->count; i++)
        present += !s_is_absent (&layout->fields [i], value);
    msgpack_pack_map (pk, present);
    for (size_t i = 0; i < layout->count; i++) {
        const field_t *field = &layout->fields [i];
        if (s_is_absent (field, value))
            continue;
        s_pack_string (pk, field->key);
        s_pack_field (pk, field, value);
    }
}

static const void *
s_body_of (const proto_msg_t *msg)
{
    //  Every member of the union starts where the union does.
    return &msg->error;
}

int
proto_encode (const proto_msg_t *msg, msgpack_sbuffer *buf)
{
    assert (msg && buf);
    if (msg->type == 0 || msg->type >= PROTO_TYPE_LIMIT || !s_types [msg->type].name)
        return -1;
    const layout_t *body = &s_types [msg->type].body;
    if (s_check_layout (body, s_body_of (msg), "body", NULL, 0))
        return -1;
    size_t trace_length = strnlen (msg->trace_id, sizeof msg->trace_id);
    if (trace_length > PROTO_TRACE_MAX || !utf8_valid (msg->trace_id, trace_length)
    ||  utf8_has_control (msg->trace_id, trace_length, false))
        return -1;
    size_t start = buf->size;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 6);
    msgpack_pack_uint8 (&pk, PROTO_VERSION);
    msgpack_pack_uint16 (&pk, msg->type);
    msgpack_pack_uint64 (&pk, msg->request_id);
    msgpack_pack_str (&pk, trace_length);
    msgpack_pack_str_body (&pk, msg->trace_id, trace_length);
    msgpack_pack_int64 (&pk, msg->sent_at_ms? msg->sent_at_ms: clock_now_ms ());
    s_pack_layout (&pk, body, s_body_of (msg));
    //  Every list within its count can still make a message no decoder
    //  takes; better the sender knows now than its peer times out.
    if (buf->size - start > PROTO_FRAME_MAX) {
        buf->size = start;
        return -1;
    }
    return 0;
}

static int
s_record_pack (msgpack_sbuffer *buf, const layout_t *layout, const void *value)
{
    assert (buf && value);
    if (s_check_layout (layout, value, layout->name, NULL, 0))
        return -1;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, msgpack_sbuffer_write);
    s_pack_layout (&pk, layout, value);
    return 0;
}

int
proto_room_pack (msgpack_sbuffer *buf, const proto_room_t *room)
{
    return s_record_pack (buf, &s_room, room);
}

int
proto_message_pack (msgpack_sbuffer *buf, const proto_message_t *message)
{
    return s_record_pack (buf, &s_message, message);
}

int
proto_connection_pack (msgpack_sbuffer *buf, const proto_connection_t *connection)
{
    return s_record_pack (buf, &s_connection, connection);
}

//  ---------------------------------------------------------------------------
//  Decoding

//  Walk the raw msgpack bytes of one object without building anything, and
//  refuse containers that declare more entries than there are bytes left
//  (every entry takes at least one). Returns the size of the well-formed
//  object data begins with, or 0.
static size_t
s_skim_first (const uint8_t *data, size_t size)
{
    const uint8_t *at = data, *end = data + size;
    uint64_t pending = 1;               //  objects still to read
    while (pending) {
        if (at >= end)
            return 0;
        uint8_t byte = *at++;
        pending--;
        uint64_t skip = 0, entries = 0;
        size_t length_size = 0;         //  bytes of a length that follows
        uint64_t multiplier = 0;        //  1: length is bytes, 2/3: entries
        if (byte <= 0x7f || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3)
            ;
        else
        if (byte >= 0x80 && byte <= 0x8f)
            entries = 2ULL * (byte & 0x0f);
        else
        if (byte >= 0x90 && byte <= 0x9f)
            entries = byte & 0x0f;
        else
        if (byte >= 0xa0 && byte <= 0xbf)
            skip = byte & 0x1f;
        else
        switch (byte) {
            case 0xc4: case 0xd9: length_size = 1; multiplier = 1; break;
            case 0xc5: case 0xda: length_size = 2; multiplier = 1; break;
            case 0xc6: case 0xdb: length_size = 4; multiplier = 1; break;
            case 0xc7: length_size = 1; multiplier = 1; skip = 1; break;
            case 0xc8: length_size = 2; multiplier = 1; skip = 1; break;
            case 0xc9: length_size = 4; multiplier = 1; skip = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: length_size = 2; multiplier = 2; break;
            case 0xdd: length_size = 4; multiplier = 2; break;
            case 0xde: length_size = 2; multiplier = 3; break;
            case 0xdf: length_size = 4; multiplier = 3; break;
            default:   return 0;       //  0xc1 is never used
        }
        if (length_size) {
            if ((size_t) (end - at) < length_size)
                return 0;
            uint64_t length = 0;
            for (size_t i = 0; i < length_size; i++)
                length = length << 8 | *at++;
            if (multiplier == 1)
                skip += length;
            else
                entries = multiplier == 2? length: 2 * length;
        }
        if (skip > (uint64_t) (end - at))
            return 0;
        at += skip;
        pending += entries;
        if (pending > (uint64_t) (end - at))
            return 0;
    }
    return (size_t) (at - data);
}

//  Returns 0 if data holds exactly one well-formed object.
static int
s_skim (const uint8_t *data, size_t size)
{
    return size && s_skim_first (data, size) == size? 0: -1;
}

size_t
proto_next (const void *data, size_t size)
{
    //  Only what begins as an envelope (an array of 6) is a message: other
    //  bytes are one bad rest, refused once, not read as a run of small
    //  msgpack values that would each be answered.
    const uint8_t *bytes = data;
    size_t first = size && bytes [0] == 0x96? s_skim_first (bytes, size): 0;
    return first? first: size;
}

void
proto_each (const void *frame, size_t size, proto_each_fn *fn, void *arg)
{
    //  An empty frame is one message too, a bad one: its reader says so.
    const uint8_t *data = frame;
    do {
        size_t first = proto_next (data, size);
        fn (data, first, arg);
        data += first;
        size -= first;
    } while (size);
}

static const char *
s_type_name (msgpack_object_type type)
{
    switch (type) {
        case MSGPACK_OBJECT_NIL:              return "nil";
        case MSGPACK_OBJECT_BOOLEAN:          return "a boolean";
        case MSGPACK_OBJECT_POSITIVE_INTEGER: return "an integer";
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "a negative integer";
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:          return "a float";
        case MSGPACK_OBJECT_STR:              return "a string";
        case MSGPACK_OBJECT_ARRAY:            return "an array";
        case MSGPACK_OBJECT_MAP:              return "a map";
        case MSGPACK_OBJECT_BIN:              return "binary";
        default:                              return "an extension";
    }
}

static int s_unpack_layout (const layout_t *layout, const msgpack_object *object, void *value,
                            msgpack_zone *zone, const char *path, char *why, size_t why_size);

//  A checked copy of a msgpack string into the zone, NUL-terminated.
static int
s_unpack_string (const field_t *field, const msgpack_object *object, const char **out,
                 msgpack_zone *zone, const char *path, char *why, size_t why_size)
{
    if (object->type != MSGPACK_OBJECT_STR)
        return s_fail (why, why_size, path, field->key, "must be a string, not %s",
                       s_type_name (object->type));
    size_t length = object->via.str.size;
    if (s_check_string (field, object->via.str.ptr, length, path, why, why_size))
        return -1;
    char *copy = msgpack_zone_malloc (zone, length + 1);
    if (!copy)
        return s_fail (why, why_size, path, field->key, "out of memory");
    if (length)                         //  an empty str may have no pointer at all
        memcpy (copy, object->via.str.ptr, length);
    copy [length] = 0;
    *out = copy;
    return 0;
}

static int
s_unpack_field (const field_t *field, const msgpack_object *object, void *base,
                msgpack_zone *zone, const char *path, char *why, size_t why_size)
{
    char *at = (char *) base + field->offset;
    msgpack_object_type type = object->type;
    switch (field->kind) {
        case K_ID: case K_PROFILE: case K_TEXT: case K_REASON:
            return s_unpack_string (field, object, (const char **) at, zone, path, why, why_size);
        case K_U16: case K_U32: case K_U64: case K_TIME: {
            if (type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return s_fail (why, why_size, path, field->key,
                               "must be a whole number from 0, not %s", s_type_name (type));
            uint64_t value = object->via.u64;
            double most = field->kind == K_U64? 18446744073709551615.0
                        : field->kind == K_TIME? CODEC_TIME_MAX: field->max;
            if ((double) value > most)
                return s_fail (why, why_size, path, field->key, "%llu is too large",
                               (unsigned long long) value);
            if (field->kind == K_U16)
                *(uint16_t *) at = (uint16_t) value;
            else
            if (field->kind == K_U32)
                *(uint32_t *) at = (uint32_t) value;
            else
            if (field->kind == K_U64)
                *(uint64_t *) at = value;
            else
                *(int64_t *) at = (int64_t) value;
            return 0;
        }
        case K_DOUBLE:
            if (type == MSGPACK_OBJECT_FLOAT32 || type == MSGPACK_OBJECT_FLOAT64)
                *(double *) at = object->via.f64;
            else
            if (type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                *(double *) at = (double) object->via.u64;
            else
            if (type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                *(double *) at = (double) object->via.i64;
            else
                return s_fail (why, why_size, path, field->key, "must be a number, not %s",
                               s_type_name (type));
            return 0;
        case K_BOOL:
            if (type != MSGPACK_OBJECT_BOOLEAN)
                return s_fail (why, why_size, path, field->key, "must be a boolean, not %s",
                               s_type_name (type));
            *(bool *) at = object->via.boolean;
            return 0;
        case K_ROOM_TYPE: case K_STATUS: {
            const char **names = field->kind == K_ROOM_TYPE? s_room_type_names: s_status_names;
            if (type != MSGPACK_OBJECT_STR)
                return s_fail (why, why_size, path, field->key, "must be a string, not %s",
                               s_type_name (type));
            for (int value = 1; value <= 2; value++)
                if (object->via.str.size == strlen (names [value])
                &&  memcmp (object->via.str.ptr, names [value], object->via.str.size) == 0) {
                    *(int *) at = value;
                    return 0;
                }
            return s_fail (why, why_size, path, field->key, "must be '%s' or '%s'",
                           names [1], names [2]);
        }
        case K_ID_LIST: case K_RECORD_LIST: {
            if (type != MSGPACK_OBJECT_ARRAY)
                return s_fail (why, why_size, path, field->key, "must be an array, not %s",
                               s_type_name (type));
            uint32_t count = object->via.array.size;
            if (count > field->max)
                return s_fail (why, why_size, path, field->key, "%u entries, at most %.0f",
                               count, field->max);
            size_t entry_size = field->kind == K_ID_LIST? sizeof (char *): field->layout->size;
            char *entries = msgpack_zone_malloc (zone, count * entry_size + 1);
            if (!entries)
                return s_fail (why, why_size, path, field->key, "out of memory");
            field_t entry = { field->key, K_ID, true, 0, 0, 0, 0, NULL };
            char inner [64];
            snprintf (inner, sizeof inner, "%s.%s[]", path, field->key);
            for (uint32_t i = 0; i < count; i++) {
                int rc = field->kind == K_ID_LIST
                    ? s_unpack_string (&entry, &object->via.array.ptr [i],
                                       (const char **) (entries + i * entry_size),
                                       zone, path, why, why_size)
                    : s_unpack_layout (field->layout, &object->via.array.ptr [i],
                                       entries + i * entry_size, zone, inner, why, why_size);
                if (rc)
                    return -1;
            }
            *(void **) at = entries;
            *(uint32_t *) ((char *) base + field->count_offset) = count;
            return 0;
        }
        case K_RECORD: {
            char inner [64];
            snprintf (inner, sizeof inner, "%s.%s", path, field->key);
            return s_unpack_layout (field->layout, object, at, zone, inner, why, why_size);
        }
        case K_RECORD_REF: {
            void *record = msgpack_zone_malloc (zone, field->layout->size);
            if (!record)
                return s_fail (why, why_size, path, field->key, "out of memory");
            char inner [64];
            snprintf (inner, sizeof inner, "%s.%s", path, field->key);
            if (s_unpack_layout (field->layout, object, record, zone, inner, why, why_size))
                return -1;
            *(void **) at = record;
            return 0;
        }
    }
    return -1;
}

static int
s_unpack_layout (const layout_t *layout, const msgpack_object *object, void *value,
                 msgpack_zone *zone, const char *path, char *why, size_t why_size)
{
    if (object->type != MSGPACK_OBJECT_MAP)
        return s_fail (why, why_size, path, NULL, "must be a map, not %s",
                       s_type_name (object->type));
    memset (value, 0, layout->size);
    uint32_t seen = 0;                  //  a bit per field; no layout has 32
    for (uint32_t i = 0; i < object->via.map.size; i++) {
        const msgpack_object_kv *pair = &object->via.map.ptr [i];
        if (pair->key.type != MSGPACK_OBJECT_STR)
            return s_fail (why, why_size, path, NULL, "a key is %s, not a string",
                           s_type_name (pair->key.type));
        size_t f = 0;
        for (; f < layout->count; f++)
            if (pair->key.via.str.size == strlen (layout->fields [f].key)
            &&  memcmp (pair->key.via.str.ptr, layout->fields [f].key,
                        pair->key.via.str.size) == 0)
                break;
        if (f == layout->count) {
            char key [40];
            size_t length = pair->key.via.str.size < 32? pair->key.via.str.size: 32;
            bool printable = utf8_valid (pair->key.via.str.ptr, length)
                          && !utf8_has_control (pair->key.via.str.ptr, length, false);
            snprintf (key, sizeof key, "%.*s", (int) length,
                      printable? pair->key.via.str.ptr: "?");
            return s_fail (why, why_size, path, NULL, "unknown field '%s'", key);
        }
        if (seen & (1u << f))
            return s_fail (why, why_size, path, layout->fields [f].key, "appears twice");
        seen |= 1u << f;
        if (s_unpack_field (&layout->fields [f], &pair->val, value, zone, path, why, why_size))
            return -1;
    }
    for (size_t f = 0; f < layout->count; f++)
        if (layout->fields [f].required && !(seen & (1u << f)))
            return s_fail (why, why_size, path, layout->fields [f].key, "is required");
    //  The same checks the encoder runs: ranges, enums, lists, cross-field.
    return s_check_layout (layout, value, path, why, why_size);
}

//  Parse data into an object tree in a fresh zone, after the skim.
static int
s_parse (const void *data, size_t size, msgpack_unpacked *unpacked, char *why, size_t why_size)
{
    if (size > PROTO_FRAME_MAX)
        return s_fail (why, why_size, "message", NULL, "%zu bytes, more than %d", size,
                       PROTO_FRAME_MAX);
    if (!data || s_skim (data, size))
        return s_fail (why, why_size, "message", NULL, "not one well-formed msgpack object");
    msgpack_unpacked_init (unpacked);
    size_t offset = 0;
    if (msgpack_unpack_next (unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  offset != size) {
        msgpack_unpacked_destroy (unpacked);
        return s_fail (why, why_size, "message", NULL, "msgpack does not parse");
    }
    return 0;
}

int
proto_peek (const void *data, size_t size, uint16_t *type, uint64_t *request_id)
{
    assert (type && request_id);
    msgpack_unpacked unpacked;
    if (s_parse (data, size, &unpacked, NULL, 0))
        return -1;
    const msgpack_object *envelope = &unpacked.data;
    int rc = -1;
    if (envelope->type == MSGPACK_OBJECT_ARRAY && envelope->via.array.size >= 3
    &&  envelope->via.array.ptr [1].type == MSGPACK_OBJECT_POSITIVE_INTEGER
    &&  envelope->via.array.ptr [1].via.u64 < PROTO_TYPE_LIMIT
    &&  envelope->via.array.ptr [2].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *type = (uint16_t) envelope->via.array.ptr [1].via.u64;
        *request_id = envelope->via.array.ptr [2].via.u64;
        rc = 0;
    }
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

proto_msg_t *
proto_decode (const void *data, size_t size, char *why, size_t why_size)
{
    msgpack_unpacked unpacked;
    if (s_parse (data, size, &unpacked, why, why_size))
        return NULL;
    const msgpack_object *envelope = &unpacked.data;
    const msgpack_object *part = envelope->via.array.ptr;
    proto_msg_t *msg = NULL;
    if (envelope->type != MSGPACK_OBJECT_ARRAY || envelope->via.array.size != 6)
        s_fail (why, why_size, "envelope", NULL, "must be an array of 6");
    else
    if (part [0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || part [0].via.u64 != PROTO_VERSION)
        s_fail (why, why_size, "envelope", "version", "must be %d", PROTO_VERSION);
    else
    if (part [1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || part [1].via.u64 == 0
    ||  part [1].via.u64 >= PROTO_TYPE_LIMIT || !s_types [part [1].via.u64].name)
        s_fail (why, why_size, "envelope", "type", "is no known message type");
    else
    if (part [2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        s_fail (why, why_size, "envelope", "requestId", "must be a whole number from 0");
    else
    if (part [3].type != MSGPACK_OBJECT_STR || part [3].via.str.size > PROTO_TRACE_MAX
    ||  !utf8_valid (part [3].via.str.ptr, part [3].via.str.size)
    ||  utf8_has_control (part [3].via.str.ptr, part [3].via.str.size, false))
        s_fail (why, why_size, "envelope", "traceId", "must be a string of at most %d bytes",
                PROTO_TRACE_MAX);
    else
    if (part [4].type != MSGPACK_OBJECT_POSITIVE_INTEGER || part [4].via.u64 > CODEC_TIME_MAX)
        s_fail (why, why_size, "envelope", "sentAt", "must be a time in ms");
    else {
        msg = msgpack_zone_malloc (unpacked.zone, sizeof *msg);
        assert (msg);
        memset (msg, 0, sizeof *msg);
        msg->type = (uint16_t) part [1].via.u64;
        msg->request_id = part [2].via.u64;
        if (part [3].via.str.size)      //  an empty str may have no pointer at all
            memcpy (msg->trace_id, part [3].via.str.ptr, part [3].via.str.size);
        msg->sent_at_ms = (int64_t) part [4].via.u64;
        if (s_unpack_layout (&s_types [msg->type].body, &part [5], (void *) s_body_of (msg),
                             unpacked.zone, "body", why, why_size))
            msg = NULL;
    }
    if (!msg) {
        msgpack_unpacked_destroy (&unpacked);
        return NULL;
    }
    //  The message and all it points to live in the zone; it goes with it.
    msg->_zone = msgpack_unpacked_release_zone (&unpacked);
    return msg;
}

void
proto_msg_destroy (proto_msg_t **msg_p)
{
    assert (msg_p);
    if (*msg_p) {
        msgpack_zone_free ((*msg_p)->_zone);
        *msg_p = NULL;
    }
}

static int
s_record_unpack (const layout_t *layout, const void *data, size_t size, msgpack_zone *zone,
                 void *out, char *why, size_t why_size)
{
    assert (zone && out);
    msgpack_unpacked unpacked;
    if (s_parse (data, size, &unpacked, why, why_size))
        return -1;
    int rc = s_unpack_layout (layout, &unpacked.data, out, zone, layout->name, why, why_size);
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

int
proto_room_unpack (const void *data, size_t size, msgpack_zone *zone, proto_room_t *out,
                   char *why, size_t why_size)
{
    return s_record_unpack (&s_room, data, size, zone, out, why, why_size);
}

int
proto_message_unpack (const void *data, size_t size, msgpack_zone *zone, proto_message_t *out,
                      char *why, size_t why_size)
{
    return s_record_unpack (&s_message, data, size, zone, out, why, why_size);
}

int
proto_connection_unpack (const void *data, size_t size, msgpack_zone *zone,
                         proto_connection_t *out, char *why, size_t why_size)
{
    return s_record_unpack (&s_connection, data, size, zone, out, why, why_size);
}

//  ---------------------------------------------------------------------------
//  Names

const char *
proto_type_name (int type)
{
    return type > 0 && type < PROTO_TYPE_LIMIT? s_types [type].name: NULL;
}

int
proto_reply_type (int type)
{
    return type > 0 && type < PROTO_TYPE_LIMIT? s_types [type].reply: 0;
}

const char *
proto_room_of (const proto_msg_t *msg)
{
    assert (msg);
    switch (msg->type) {
        case PROTO_ROOM_JOIN:       return msg->room_join.room_id;
        case PROTO_ROOM_LEAVE:      return msg->room_leave.room_id;
        case PROTO_ROOM_SEND:       return msg->room_send.message.room_id;
        case PROTO_ROOM_TYPING:     return msg->room_typing.room_id;
        case PROTO_ROOM_INFO:       return msg->room_info.room_id;
        case PROTO_ROOM_CLOSE:      return msg->room_close.room_id;
        case PROTO_EVENT_JOINED:    return msg->event_joined.room.id;
        case PROTO_EVENT_LEFT:      return msg->event_left.room.id;
        case PROTO_EVENT_MESSAGE:   return msg->event_message.message.room_id;
        case PROTO_EVENT_TYPING:    return msg->event_typing.room_id;
        case PROTO_EVENT_CLOSED:    return msg->event_closed.room_id;
        default:                    return NULL;
    }
}

const char **
proto_incarnation_of (proto_msg_t *msg, const char *gateway_id)
{
    assert (msg && gateway_id);
    if (msg->type == PROTO_CONN_PUT && msg->conn_put.connection.gateway_id
    &&  strcmp (msg->conn_put.connection.gateway_id, gateway_id) == 0)
        return &msg->conn_put.connection.incarnation;
    if (msg->type == PROTO_ROOM_JOIN && msg->room_join.conn_id && msg->room_join.gateway_id
    &&  strcmp (msg->room_join.gateway_id, gateway_id) == 0)
        return &msg->room_join.incarnation;
    return NULL;
}

const char *
proto_room_type_name (proto_room_type_t room_type)
{
    return room_type >= 1 && room_type <= 2? s_room_type_names [room_type]: NULL;
}

const char *
proto_room_status_name (proto_room_status_t status)
{
    return status >= 1 && status <= 2? s_status_names [status]: NULL;
}

//  ---------------------------------------------------------------------------
//  Self-test: the exhaustive suite is tests/test_codec.c; this checks the
//  module's core in a few lines.

void
proto_test (bool verbose)
{
    (void) verbose;
    const char *participants [] = { "alice", "bob" };
    proto_msg_t msg = {
        .type = PROTO_ROOM_PUT, .request_id = 42, .trace_id = "abc123", .sent_at_ms = 1000,
        .room_put = {
            .room = { .id = "room-1", .latitude = 48.85, .longitude = 2.35, .road_name = "A6",
                      .radius_m = 500, .creator = "alice", .participants = participants,
                      .participant_count = 2, .created_at_ms = 1, .last_activity_ms = 2,
                      .status = PROTO_STATUS_ACTIVE, .room_type = PROTO_ROOM_PUBLIC,
                      .max_participants = 20 },
            .if_absent = true
        }
    };
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    assert (proto_encode (&msg, &buf) == 0);
    char why [PROTO_WHY_MAX];
    proto_msg_t *copy = proto_decode (buf.data, buf.size, why, sizeof why);
    assert (copy);
    assert (copy->type == PROTO_ROOM_PUT && copy->request_id == 42);
    assert (strcmp (copy->trace_id, "abc123") == 0 && copy->sent_at_ms == 1000);
    assert (strcmp (copy->room_put.room.id, "room-1") == 0);
    assert (copy->room_put.room.latitude == 48.85 && copy->room_put.room.radius_m == 500);
    assert (copy->room_put.room.participant_count == 2);
    assert (strcmp (copy->room_put.room.participants [1], "bob") == 0);
    assert (copy->room_put.room.status == PROTO_STATUS_ACTIVE && copy->room_put.if_absent);
    assert (copy->room_put.room.last_seq == 0);
    proto_msg_destroy (&copy);
    assert (copy == NULL);

    uint16_t type;
    uint64_t request_id;
    assert (proto_peek (buf.data, buf.size, &type, &request_id) == 0);
    assert (type == PROTO_ROOM_PUT && request_id == 42);

    //  Every truncation is refused, with a reason.
    for (size_t size = 0; size < buf.size; size++) {
        why [0] = 0;
        assert (proto_decode (buf.data, size, why, sizeof why) == NULL);
        assert (why [0]);
    }
    //  An encoder refuses what the decoder would.
    msg.room_put.room.latitude = 91;
    msgpack_sbuffer_clear (&buf);
    assert (proto_encode (&msg, &buf) == -1 && buf.size == 0);
    msg.room_put.room.latitude = 0;
    msg.room_put.room.id = NULL;
    assert (proto_encode (&msg, &buf) == -1);
    msgpack_sbuffer_destroy (&buf);

    assert (strcmp (proto_type_name (PROTO_GEO_SEARCH), "geo-search") == 0);
    assert (proto_reply_type (PROTO_MSG_APPEND) == PROTO_APPEND_REPLY);
    assert (proto_reply_type (PROTO_ERROR) == 0);
    //  A room request and a room event name their room; stored's calls,
    //  which name rooms too, are routed by type.
    proto_msg_t typing = { .type = PROTO_ROOM_TYPING, .room_typing.room_id = "room-1" };
    assert (strcmp (proto_room_of (&typing), "room-1") == 0);
    proto_msg_t sent = { .type = PROTO_EVENT_MESSAGE,
                         .event_message.message.room_id = "room-2" };
    assert (strcmp (proto_room_of (&sent), "room-2") == 0);
    assert (proto_room_of (&msg) == NULL);          //  the room-put above
    //  A socket's join and a conn-put of this gateway's name its run.
    proto_msg_t join = { .type = PROTO_ROOM_JOIN, .room_join = {
        .room_id = "room-1", .user_id = "alice", .conn_id = "c-1", .gateway_id = "gw-1" } };
    assert (proto_incarnation_of (&join, "gw-1") == &join.room_join.incarnation);
    assert (proto_incarnation_of (&join, "gw-2") == NULL);
    join.room_join.conn_id = NULL;
    assert (proto_incarnation_of (&join, "gw-1") == NULL);
    assert (proto_incarnation_of (&typing, "gw-1") == NULL);
    //  Five bytes that declare a huge array are refused before allocation.
    assert (proto_decode ("\xdd\xff\xff\xff\xff", 5, why, sizeof why) == NULL);

    //  A frame of several messages: proto_next gives each one's size; what
    //  is no whole object is the rest, for its decoder to refuse.
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    proto_msg_t first = { .type = PROTO_ROOM_TYPING, .request_id = 1, .room_typing = {
        .room_id = "room-1", .user_id = "alice" } };
    assert (proto_encode (&first, &frame) == 0);
    size_t first_size = frame.size;
    assert (proto_encode (&join, &frame) == 0);
    size_t join_size = frame.size - first_size;
    assert (proto_next (frame.data, frame.size) == first_size);
    assert (proto_next (frame.data + first_size, join_size) == join_size);
    proto_msg_t *second = proto_decode (frame.data + first_size, join_size, why, sizeof why);
    assert (second && second->type == PROTO_ROOM_JOIN);
    proto_msg_destroy (&second);
    assert (proto_decode (frame.data, frame.size, why, sizeof why) == NULL);
    for (size_t cut = first_size + 1; cut < frame.size; cut++)
        assert (proto_next (frame.data + first_size, cut - first_size) == cut - first_size);
    assert (proto_next ("\xc1junk", 5) == 5);
    assert (proto_next ("garbage", 7) == 7);               //  seven fixints: one bad rest
    assert (proto_next ("\x93\x01", 2) == 2);         //  an array of 3 with one entry
    assert (proto_next (NULL, 0) == 0);
    msgpack_sbuffer_destroy (&frame);
}

//  ---------------------------------------------------------------------------
//  JSON for people

#define JSON_KEY_MAX    64          //  bytes of a key that is no string, as text

//  Any msgpack value as JSON: maps keyed by strings (other keys are
//  written as their JSON text, cut to JSON_KEY_MAX), bin and ext as
//  "<N bytes>".
static json_t *
s_json_of (const msgpack_object *object)
{
    switch (object->type) {
        case MSGPACK_OBJECT_NIL:              return json_null ();
        case MSGPACK_OBJECT_BOOLEAN:          return json_boolean (object->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer ((json_int_t) object->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer ((json_int_t) object->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return isfinite (object->via.f64)? json_real (object->via.f64): json_string ("NaN/Inf");
        case MSGPACK_OBJECT_STR: {
            json_t *text = json_stringn (object->via.str.ptr, object->via.str.size);
            return text? text: json_string ("<not UTF-8>");
        }
        case MSGPACK_OBJECT_ARRAY: {
            json_t *array = json_array ();
            for (uint32_t i = 0; i < object->via.array.size; i++)
                json_array_append_new (array, s_json_of (&object->via.array.ptr [i]));
            return array;
        }
        case MSGPACK_OBJECT_MAP: {
            json_t *map = json_object ();
            for (uint32_t i = 0; i < object->via.map.size; i++) {
                const msgpack_object_kv *kv = &object->via.map.ptr [i];
                json_t *value = s_json_of (&kv->val);
                if (kv->key.type == MSGPACK_OBJECT_STR
                &&  utf8_valid (kv->key.via.str.ptr, kv->key.via.str.size))
                    json_object_setn_new (map, kv->key.via.str.ptr, kv->key.via.str.size, value);
                else {
                    //  Cut to JSON_KEY_MAX: a key's text is escaped again
                    //  in every map around it, so keys that are maps keyed
                    //  by maps doubled at each level (30 levels asked for
                    //  2 GiB: fuzz_decode). ASCII, so a cut splits no UTF-8.
                    json_t *key = s_json_of (&kv->key);
                    char *text = json_dumps (key, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
                    if (text && strlen (text) > JSON_KEY_MAX)
                        strcpy (text + JSON_KEY_MAX - 3, "...");
                    json_object_set_new_nocheck (map, text? text: "?", value);
                    free (text);
                    json_decref (key);
                }
            }
            return map;
        }
        default: {
            char text [32];
            snprintf (text, sizeof text, "<%u bytes>", object->via.bin.size);
            return json_string (text);
        }
    }
}

json_t *
proto_json (const void *data, size_t size)
{
    //  The same skim first as for decoding: a declared size is believed
    //  only once the bytes are there, so nothing huge is allocated.
    msgpack_unpacked unpacked;
    if (s_parse (data, size, &unpacked, NULL, 0))
        return NULL;
    const msgpack_object *envelope = &unpacked.data;
    json_t *json = json_object ();
    if (envelope->type == MSGPACK_OBJECT_ARRAY && envelope->via.array.size == 6) {
        const msgpack_object *part = envelope->via.array.ptr;
        const char *name = part [1].type == MSGPACK_OBJECT_POSITIVE_INTEGER
                        && part [1].via.u64 < PROTO_TYPE_LIMIT
                         ? s_types [part [1].via.u64].name: NULL;
        json_object_set_new (json, "type", name? json_string (name): s_json_of (&part [1]));
        json_object_set_new (json, "requestId", s_json_of (&part [2]));
        json_object_set_new (json, "trace", s_json_of (&part [3]));
        if (part [4].type == MSGPACK_OBJECT_POSITIVE_INTEGER && part [4].via.u64 <= CODEC_TIME_MAX) {
            char when [32];
            clock_iso8601 ((int64_t) part [4].via.u64, when);
            json_object_set_new (json, "sentAt", json_string (when));
        }
        json_object_set_new (json, "body", s_json_of (&part [5]));
    }
    else
        json_object_set_new (json, "raw", s_json_of (envelope));
    msgpack_unpacked_destroy (&unpacked);
    char why [PROTO_WHY_MAX];
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    if (!msg)
        json_object_set_new (json, "error", json_string (why));
    proto_msg_destroy (&msg);
    return json;
}
