/*  =========================================================================
    samples.c - one message of every type, full or minimal, for the codec
    tests and the fuzz seeds
    =========================================================================
*/

#include <string.h>
#include "samples.h"

static const char *s_people [] = { "alice", "bob", "ca\xc3\xa9tan" };

static proto_room_t
s_room (bool full)
{
    proto_room_t room = {
        .id = "7f0c6e1e-5b1f-4c1e-9f3a-2d8e4b6a1c00", .latitude = 48.8566,
        .longitude = -2.3522, .radius_m = 500, .creator = "alice",
        .created_at_ms = 1700000000000, .last_activity_ms = 1700000001234,
        .status = PROTO_STATUS_ACTIVE, .room_type = PROTO_ROOM_PUBLIC, .max_participants = 20 };
    if (full) {
        room.road_name = "Route nationale 7";
        room.participants = s_people;
        room.participant_count = 3;
        room.last_seq = 42;
        room.epoch = 3;
        room.status = PROTO_STATUS_CLOSED;
        room.room_type = PROTO_ROOM_PRIVATE;
    }
    return room;
}

static proto_message_t
s_message (bool full, int i)
{
    static const char *ids [] = { "m-0", "m-1", "m-2" };
    proto_message_t message = {
        .room_id = "room-1", .user_id = "alice", .text = "hello\nthere \xf0\x9f\x9a\x97",
        .created_at_ms = 1700000000000 + i };
    if (full) {
        message.id = ids [i % 3];
        message.client_id = "client-msg-1";
        message.seq = (uint64_t) i + 1;
        message.user_name = "Alice";
        message.user_icon = "\xf0\x9f\x98\x80";
        message.user_color = "#ff8800";
        message.expires_at_ms = 1702592000000;
    }
    return message;
}

static proto_connection_t
s_connection (bool full)
{
    proto_connection_t connection = { .conn_id = "c-1", .gateway_id = "gw-1",
                                      .user_id = "alice", .connected_at_ms = 1 };
    if (full) {
        connection.room_id = "room-1";
        connection.incarnation = "run-1";
        connection.user_name = "Alice";
        connection.user_icon = "icon";
        connection.user_color = "blue";
    }
    return connection;
}

bool
samples_message (int type, bool full, proto_msg_t *msg)
{
    static proto_room_t rooms [2];
    static proto_geo_hit_t hits [2];
    static proto_message_t messages [3];
    static proto_connection_t connections [2];
    memset (msg, 0, sizeof *msg);
    msg->type = (uint16_t) type;
    msg->request_id = full? 0xfffffffffffffULL: 1;
    msg->sent_at_ms = 1700000000000;
    if (full)
        strcpy (msg->trace_id, "0123456789abcdef0123456789abcdef");
    for (int i = 0; i < 2; i++) {
        rooms [i] = s_room (i == 1);
        hits [i] = (proto_geo_hit_t) { s_room (i == 0), 12.5 * i };
        connections [i] = s_connection (i == 1);
    }
    for (int i = 0; i < 3; i++)
        messages [i] = s_message (i != 1, i);
    switch (type) {
        case PROTO_ERROR:
            msg->error = (proto_error_t) { 404, full? "no room\there": "x" };
            return true;
        case PROTO_OK: case PROTO_STORE_STATS:
            return true;
        case PROTO_STATS_REPLY:
            if (full)
                msg->stats_reply = (proto_stats_reply_t) { 1 << 26, 1 << 20, 10, 9, 100, 3, 5,
                                                           50, 2, 1 };
            return true;
        case PROTO_METRICS:
            msg->metrics.shard_id = full? "shard-1": NULL;
            return true;
        case PROTO_METRICS_REPLY: {
            static proto_bucket_t buckets [] = { { 0.001, 3 }, { 0.01, 7 }, { 1.5, 7 } };
            static proto_metric_t metrics [] = {
                { "nearchat_test_total", "A counter.", PROTO_METRIC_COUNTER, 42, 0, NULL, 0 },
                { "nearchat_test_gauge", "A gauge.", PROTO_METRIC_GAUGE, -2.5, 0, NULL, 0 },
                { "nearchat_test_seconds", "A histogram.", PROTO_METRIC_HISTOGRAM, 0.25, 9,
                  buckets, 3 },
            };
            msg->metrics_reply = (proto_metrics_reply_t) { "roomd", "shard-1",
                                                           full? metrics: NULL, full? 3: 0 };
            return true;
        }
        case PROTO_ROOM_PUT:
            msg->room_put = (proto_room_put_t) { s_room (full), full };
            return true;
        case PROTO_ROOM_GET:
            msg->room_get.room_id = "room-1";
            return true;
        case PROTO_ROOM_UPDATE: {
            static proto_connection_t joining;
            joining = s_connection (true);
            msg->room_update.room_id = "room-1";
            if (full)
                msg->room_update = (proto_room_update_t) {
                    "room-1", PROTO_STATUS_ACTIVE, "alice", 1700000000000, "bob", "carol",
                    PROTO_STATUS_CLOSED, 1700000009999, 7, true, &joining, "c-2", true };
            return true;
        }
        case PROTO_ROOM_REPLY:
            msg->room_reply = (proto_room_reply_t) { s_room (full), full };
            return true;
        case PROTO_ROOMS_IDLE:
            msg->rooms_idle = (proto_rooms_idle_t) { 1700000000000, full? 100: 0 };
            return true;
        case PROTO_ROOM_LIST:
            if (full)
                msg->room_list = (proto_room_list_t) { rooms, 2 };
            return true;
        case PROTO_GEO_SEARCH:
            msg->geo_search = (proto_geo_search_t) { -89.5, 179.99,
                                                     full? PROTO_ROOM_PRIVATE: 0, full? 10: 0 };
            return true;
        case PROTO_GEO_REPLY:
            if (full)
                msg->geo_reply = (proto_geo_reply_t) { hits, 2 };
            return true;
        case PROTO_MSG_APPEND:
            msg->msg_append.message = s_message (full, 0);
            msg->msg_append.if_epoch = full? 7: 0;
            return true;
        case PROTO_APPEND_REPLY:
            msg->append_reply = (proto_append_reply_t) { 7, "m-7", 1700000000000, full };
            return true;
        case PROTO_HISTORY:
            msg->history = (proto_history_t) { "room-1", full? 5: 0, full? 9: 0, full? 3: 0 };
            return true;
        case PROTO_HISTORY_REPLY:
            if (full)
                msg->history_reply = (proto_history_reply_t) { messages, 3, true };
            return true;
        case PROTO_TTL_SWEEP:
            if (full)
                msg->ttl_sweep = (proto_ttl_sweep_t) { 1700000000000, 500 };
            return true;
        case PROTO_SWEEP_REPLY:
            if (full)
                msg->sweep_reply = (proto_sweep_reply_t) { 500, true };
            return true;
        case PROTO_CONN_PUT:
            msg->conn_put.connection = s_connection (full);
            return true;
        case PROTO_CONN_DEL:
            msg->conn_del.conn_id = "c-1";
            return true;
        case PROTO_CONN_LIST:
            if (full)
                msg->conn_list = (proto_conn_list_t) { .gateway_id = "gw-1",
                                                        .incarnation = "run-1", .limit = 10 };
            else
                msg->conn_list.user_id = "alice";
            return true;
        case PROTO_CONN_LIST_REPLY:
            if (full)
                msg->conn_list_reply = (proto_conn_list_reply_t) { connections, 2 };
            return true;
        case PROTO_GATEWAY_BEAT:
            msg->gateway_beat = (proto_gateway_beat_t) { "gw-1", "run-1", 1700000000000,
                                                         full, full };
            return true;
        case PROTO_GATEWAYS_SILENT:
            msg->gateways_silent = (proto_gateways_silent_t) { 1700000000000, full? 10: 0 };
            return true;
        case PROTO_GATEWAY_LIST:
            if (full) {
                static proto_gateway_run_t gateways [] = { { "gw-1", "run-1" },
                                                           { "gw-1", "run-2" } };
                msg->gateway_list = (proto_gateway_list_t) { gateways, 2 };
            }
            return true;
        case PROTO_SHARD_HELLO:
            msg->shard_hello = (proto_shard_hello_t) { "shard-1", 1000, full? 12: 0 };
            return true;
        case PROTO_SHARD_WELCOME:
            msg->shard_welcome.gateway_id = "gw-1";
            if (full) {
                static const char *shards [] = { "shard-1", "shard-2" };
                msg->shard_welcome.shards = shards;
                msg->shard_welcome.shard_count = 2;
                msg->shard_welcome.fresh = true;
            }
            return true;
        case PROTO_ROOM_JOIN:
            msg->room_join = (proto_room_join_t) { .room_id = "room-1", .user_id = "bob" };
            if (full)
                msg->room_join = (proto_room_join_t) { "room-1", "bob", "c-1", "gw-1", "Bob",
                                                       "icon", "#00ff00", 41, "run-1" };
            return true;
        case PROTO_JOIN_REPLY:
            msg->join_reply.room = s_room (full);
            if (full) {
                msg->join_reply.messages = messages;
                msg->join_reply.count = 3;
                msg->join_reply.more = true;
            }
            return true;
        case PROTO_ROOM_LEAVE:
            msg->room_leave = (proto_room_leave_t) { "room-1", "bob", full? "c-1": NULL,
                                                     full? "Bob": NULL, full };
            return true;
        case PROTO_ROOM_SEND: case PROTO_EVENT_MESSAGE:
            msg->room_send.message = s_message (full, 0);
            return true;
        case PROTO_ROOM_TYPING: case PROTO_EVENT_TYPING:
            msg->room_typing = (proto_typing_t) { "room-1", "bob", full? "Bob": NULL };
            return true;
        case PROTO_ROOM_INFO: case PROTO_EVENT_CLOSED:
            msg->room_info.room_id = "room-1";
            return true;
        case PROTO_INFO_REPLY:
            msg->info_reply.room = s_room (full);
            if (full) {
                msg->info_reply.online = s_people;
                msg->info_reply.online_count = 3;
            }
            return true;
        case PROTO_ROOM_CLOSE:
            msg->room_close = (proto_room_close_t) { "room-1", full? "alice": NULL,
                                                     full? 1700000000000: 0 };
            return true;
        case PROTO_EVENT_JOINED:
            msg->event_joined = (proto_event_joined_t) { .room = s_room (full), .user_id = "bob" };
            if (full) {
                msg->event_joined.user_name = "Bob";
                msg->event_joined.user_icon = "";
                msg->event_joined.user_color = "red";
                msg->event_joined.except_conn = "c-1";
            }
            return true;
        case PROTO_EVENT_LEFT:
            msg->event_left = (proto_event_left_t) { s_room (full), "bob", full? "Bob": NULL };
            return true;
        default:
            return false;
    }
}

proto_room_t
samples_room (bool full)
{
    return s_room (full);
}

proto_message_t
samples_record_message (bool full)
{
    return s_message (full, 1);
}

proto_connection_t
samples_connection (bool full)
{
    return s_connection (full);
}
