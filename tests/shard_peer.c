/*  =========================================================================
    shard_peer - the test as a gateway to one real shard: a ROUTER the
    shard links to (it holds the gateway's key), a client of the real
    stored, and the requests and expectations the shard tests share
    (test_roomd, test_roomd_durable)
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "shard_peer.h"
#include "bus.h"
#include "clock.h"

harness_daemon_t peer_stored, peer_roomd;
zsock_t *peer_router;                   //  the test, as a gateway
zframe_t *peer_shard;                   //  the shard's routing identity
proto_client_t *peer_store;             //  the test, as the gateway's stored client
char peer_gateway_endpoint [64];
static uint64_t peer_next_id = 1;

//  Messages of the last frame not yet taken: a shard sends what one turn
//  made for a gateway in one frame (roomd's links_flush).
static zlist_t *peer_queued;

//  Read one frame from the shard into peer_queued, answering its hellos as
//  a gateway would. False after timeout_ms.
static bool
s_read_frame (int64_t deadline)
{
    zpoller_t *poller = zpoller_new (peer_router, NULL);
    void *ready = zpoller_wait (poller, (int) (deadline - clock_mono_ms ()));
    zpoller_destroy (&poller);
    if (!ready)
        return false;
    zmsg_t *zmsg = zmsg_recv (peer_router);
    zframe_t *identity = zmsg_pop (zmsg), *payload = zmsg_pop (zmsg);
    const uint8_t *data = payload? zframe_data (payload): NULL;
    size_t size = payload? zframe_size (payload): 0;
    CHECK (size > 0);
    while (size) {
        size_t first = proto_next (data, size);
        char why [PROTO_WHY_MAX] = "";
        proto_msg_t *msg = proto_decode (data, first, why, sizeof why);
        CHECK (msg != NULL);
        data += first;
        size -= first;
        if (msg && msg->type == PROTO_SHARD_HELLO) {
            zframe_destroy (&peer_shard);
            peer_shard = zframe_dup (identity);
            const char *shards [] = { msg->shard_hello.shard_id };
            proto_msg_t welcome = { .type = PROTO_SHARD_WELCOME, .shard_welcome = {
                .gateway_id = "gw-test", .shards = shards, .shard_count = 1 } };
            msgpack_sbuffer buffer;
            msgpack_sbuffer_init (&buffer);
            proto_encode (&welcome, &buffer);
            zframe_send (&identity, peer_router, ZFRAME_MORE | ZFRAME_REUSE);
            zframe_t *frame = zframe_new (buffer.data, buffer.size);
            zframe_send (&frame, peer_router, 0);
            msgpack_sbuffer_destroy (&buffer);
            proto_msg_destroy (&msg);
        }
        else
        if (msg)
            zlist_append (peer_queued, msg);
    }
    zframe_destroy (&identity);
    zframe_destroy (&payload);
    zmsg_destroy (&zmsg);
    return true;
}

//  Next message from the shard that is not a hello (hellos are answered as
//  a gateway would). NULL after timeout_ms.
proto_msg_t *
peer_next (int timeout_ms)
{
    if (!peer_queued)
        peer_queued = zlist_new ();
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (zlist_size (peer_queued) == 0 && clock_mono_ms () < deadline)
        if (!s_read_frame (deadline))
            break;
    return zlist_pop (peer_queued);
}

//  Send a request to the shard; returns its request id.
uint64_t
peer_send (proto_msg_t *request)
{
    return peer_send_frame (request, 1, NULL, 0);
}

uint64_t
peer_send_frame (proto_msg_t *requests, size_t count, const void *tail, size_t tail_size)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    for (size_t i = 0; i < count; i++) {
        requests [i].request_id = peer_next_id++;
        snprintf (requests [i].trace_id, sizeof requests [i].trace_id, "trace-%llu",
                  (unsigned long long) requests [i].request_id);
        REQUIRE (proto_encode (&requests [i], &buffer) == 0);
    }
    if (tail_size)
        msgpack_sbuffer_write (&buffer, tail, tail_size);
    REQUIRE (peer_shard);
    zframe_t *identity = zframe_dup (peer_shard);
    zframe_send (&identity, peer_router, ZFRAME_MORE);
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    zframe_send (&frame, peer_router, 0);
    msgpack_sbuffer_destroy (&buffer);
    return count? requests [0].request_id: 0;
}

//  The next message must be of type (and answer request_id when not 0).
proto_msg_t *
peer_expect (int type, uint64_t request_id)
{
    proto_msg_t *msg = peer_next (5000);
    bool ok = msg && msg->type == type && (!request_id || msg->request_id == request_id);
    if (!ok)
        fprintf (stderr, "  expected %s, got %s%s%s\n", proto_type_name (type),
                 msg? proto_type_name (msg->type): "nothing",
                 msg && msg->type == PROTO_ERROR? ": ": "",
                 msg && msg->type == PROTO_ERROR? msg->error.reason: "");
    CHECK (ok);
    if (!ok)
        proto_msg_destroy (&msg);
    return msg;
}

bool
peer_expect_error (uint64_t request_id, uint16_t status)
{
    proto_msg_t *msg = peer_expect (PROTO_ERROR, request_id);
    bool ok = msg && msg->error.status == status;
    if (msg && !ok)
        fprintf (stderr, "  expected error %u, got %u %s\n", status, msg->error.status,
                 msg->error.reason);
    proto_msg_destroy (&msg);
    return CHECK (ok);
}

void
peer_start_roomd (void)
{
    harness_daemon_init (&peer_roomd, "roomd");
    static char gateways [96], stored [96];
    snprintf (gateways, sizeof gateways, "GATEWAY_ENDPOINTS=%s", peer_gateway_endpoint);
    snprintf (stored, sizeof stored, "STORED_ENDPOINT=%s", peer_stored.endpoint);
    peer_roomd.env [0] = "SHARD_ID=shard-t";
    peer_roomd.env [1] = gateways;
    peer_roomd.env [2] = stored;
    peer_roomd.env [3] = "HEARTBEAT_MS=100";
    peer_roomd.env [4] = "TYPING_THROTTLE_MS=60000";
    REQUIRE (harness_spawn (&peer_roomd) == 0);
    zframe_destroy (&peer_shard);
    //  Ready when it says hello.
    int64_t deadline = clock_mono_ms () + 10000;
    while (!peer_shard && clock_mono_ms () < deadline) {
        proto_msg_t *msg = peer_next (200);
        proto_msg_destroy (&msg);
    }
    REQUIRE (peer_shard);
}

//  A room in stored, as the gateway's POST /rooms makes it.
const char *
peer_create_room (const char *creator)
{
    proto_room_t room = harness_room (48.85, 2.35);
    room.creator = creator;
    room.participants = &creator;
    room.participant_count = 1;
    proto_msg_t put = { .type = PROTO_ROOM_PUT, .room_put = { .room = room, .if_absent = true } };
    proto_msg_t *reply = harness_call (peer_store, &put);
    REQUIRE (reply && reply->type == PROTO_ROOM_REPLY);
    proto_msg_destroy (&reply);
    return room.id;
}

proto_msg_t
peer_join (const char *room_id, const char *user, const char *conn, uint64_t since_seq)
{
    proto_msg_t join = { .type = PROTO_ROOM_JOIN, .room_join = {
        .room_id = room_id, .user_id = user, .conn_id = conn, .gateway_id = conn? "gw-test": NULL,
        .user_name = user, .since_seq = since_seq } };
    return join;
}

proto_msg_t
peer_message (const char *room_id, const char *user, const char *client_id, const char *text)
{
    proto_msg_t send = { .type = PROTO_ROOM_SEND, .room_send.message = {
        .room_id = room_id, .user_id = user, .client_id = client_id, .user_name = user,
        .text = text, .created_at_ms = clock_now_ms () } };
    return send;
}

//  Start stored, bind the gateway's ROUTER, start the shard.
void
peer_open (void)
{
    harness_stored_init (&peer_stored);
    REQUIRE (harness_start (&peer_stored) == 0);
    peer_store = proto_client_new (peer_stored.endpoint);

    snprintf (peer_gateway_endpoint, sizeof peer_gateway_endpoint, "tcp://127.0.0.1:%d",
              harness_free_port ());
    //  The fake gateway holds the gateway's key, as a shard expects.
    REQUIRE (bus_setup (getenv ("KEYS_DIR"), BUS_GATEWAY) == 0);
    peer_router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (peer_router, 0);
    REQUIRE (bus_server (peer_router) == 0);
    REQUIRE (zsock_bind (peer_router, "%s", peer_gateway_endpoint) >= 0);
    peer_start_roomd ();
}

void
peer_close (void)
{
    zframe_destroy (&peer_shard);
    zsock_destroy (&peer_router);
    proto_client_destroy (&peer_store);
}
