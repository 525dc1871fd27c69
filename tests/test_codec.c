/*  =========================================================================
    test_codec - the wire format: every type round-trips, and everything
    off-contract is refused with a reason, never a crash
    =========================================================================
*/

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "samples.h"

static msgpack_sbuffer s_buf;

//  Encode msg into a fresh copy; size in *size. NULL if it does not encode.
static char *
s_encode (const proto_msg_t *msg, size_t *size)
{
    msgpack_sbuffer_clear (&s_buf);
    if (proto_encode (msg, &s_buf))
        return NULL;
    char *copy = malloc (s_buf.size);
    memcpy (copy, s_buf.data, s_buf.size);
    *size = s_buf.size;
    return copy;
}

static bool
s_refused (const void *data, size_t size)
{
    char why [PROTO_WHY_MAX] = "";
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    bool refused = msg == NULL && why [0] != 0;
    proto_msg_destroy (&msg);
    return refused;
}

static void
s_test_round_trips (void)
{
    printf ("every type, full and minimal, decodes to what was encoded\n");
    int types = 0;
    for (int type = 0; type < PROTO_TYPE_LIMIT; type++)
        for (int full = 0; full <= 1; full++) {
            proto_msg_t msg;
            if (!samples_message (type, full, &msg))
                continue;
            types += full;
            size_t size = 0;
            char *bytes = s_encode (&msg, &size);
            REQUIRE (bytes);
            char why [PROTO_WHY_MAX];
            proto_msg_t *copy = proto_decode (bytes, size, why, sizeof why);
            if (!copy)
                fprintf (stderr, "  %s: %s\n", proto_type_name (type), why);
            REQUIRE (copy);
            CHECK (copy->type == type && copy->request_id == msg.request_id
                   && copy->sent_at_ms == msg.sent_at_ms
                   && strcmp (copy->trace_id, msg.trace_id) == 0);
            //  Encoding the copy gives the same bytes: every field came back.
            size_t again_size = 0;
            char *again = s_encode (copy, &again_size);
            CHECK (again && again_size == size && memcmp (again, bytes, size) == 0);
            //  The reply type table is consistent.
            int reply = proto_reply_type (type);
            CHECK (reply == 0 || proto_type_name (reply) != NULL);
            free (again);
            free (bytes);
            proto_msg_destroy (&copy);
        }
    CHECK (types == 42);        //  every type the contract has, each with a sample

    //  A few fields by hand, where the bytes alone could hide a mix-up.
    proto_msg_t msg;
    samples_message (PROTO_HISTORY_REPLY, true, &msg);
    size_t size = 0;
    char *bytes = s_encode (&msg, &size);
    proto_msg_t *copy = proto_decode (bytes, size, NULL, 0);
    REQUIRE (copy && copy->history_reply.count == 3 && copy->history_reply.more);
    CHECK (strcmp (copy->history_reply.messages [0].user_icon, "\xf0\x9f\x98\x80") == 0);
    CHECK (copy->history_reply.messages [1].id == NULL);        //  minimal entry
    CHECK (copy->history_reply.messages [2].seq == 3);
    CHECK (strcmp (copy->history_reply.messages [2].text, "hello\nthere \xf0\x9f\x9a\x97") == 0);
    proto_msg_destroy (&copy);
    free (bytes);
    samples_message (PROTO_JOIN_REPLY, true, &msg);
    bytes = s_encode (&msg, &size);
    copy = proto_decode (bytes, size, NULL, 0);
    REQUIRE (copy && copy->join_reply.count == 3 && copy->join_reply.more);
    proto_msg_destroy (&copy);
    free (bytes);
    samples_message (PROTO_JOIN_REPLY, false, &msg);
    bytes = s_encode (&msg, &size);
    copy = proto_decode (bytes, size, NULL, 0);
    REQUIRE (copy && copy->join_reply.count == 0 && !copy->join_reply.more);
    proto_msg_destroy (&copy);
    free (bytes);
    samples_message (PROTO_GEO_REPLY, true, &msg);
    bytes = s_encode (&msg, &size);
    copy = proto_decode (bytes, size, NULL, 0);
    REQUIRE (copy && copy->geo_reply.count == 2);
    CHECK (copy->geo_reply.hits [1].distance_m == 12.5);
    CHECK (copy->geo_reply.hits [0].room.participant_count == 3);
    CHECK (strcmp (copy->geo_reply.hits [0].room.participants [2], "ca\xc3\xa9tan") == 0);
    CHECK (copy->geo_reply.hits [0].room.room_type == PROTO_ROOM_PRIVATE);
    CHECK (copy->geo_reply.hits [0].room.latitude == 48.8566);
    proto_msg_destroy (&copy);
    free (bytes);

    printf ("records round-trip\n");
    msgpack_zone *zone = msgpack_zone_new (4096);
    char why [PROTO_WHY_MAX];
    for (int full = 0; full <= 1; full++) {
        proto_room_t room = samples_room (full), room_copy;
        msgpack_sbuffer_clear (&s_buf);
        REQUIRE (proto_room_pack (&s_buf, &room) == 0);
        CHECK (proto_room_unpack (s_buf.data, s_buf.size, zone, &room_copy, why, sizeof why) == 0);
        CHECK (room_copy.participant_count == room.participant_count
               && room_copy.last_seq == room.last_seq && strcmp (room_copy.id, room.id) == 0);
        proto_message_t message = samples_record_message (full), message_copy;
        msgpack_sbuffer_clear (&s_buf);
        REQUIRE (proto_message_pack (&s_buf, &message) == 0);
        CHECK (proto_message_unpack (s_buf.data, s_buf.size, zone, &message_copy, why,
                                     sizeof why) == 0);
        CHECK (message_copy.seq == message.seq && strcmp (message_copy.text, message.text) == 0);
        proto_connection_t connection = samples_connection (full), connection_copy;
        msgpack_sbuffer_clear (&s_buf);
        REQUIRE (proto_connection_pack (&s_buf, &connection) == 0);
        CHECK (proto_connection_unpack (s_buf.data, s_buf.size, zone, &connection_copy, why,
                                        sizeof why) == 0);
        CHECK ((connection_copy.room_id == NULL) == (connection.room_id == NULL));
        //  A record is not a message, nor the other way round.
        CHECK (proto_connection_unpack (s_buf.data, s_buf.size, zone, (proto_connection_t *) &room_copy,
                                        why, sizeof why) == 0);
        CHECK (proto_room_unpack (s_buf.data, s_buf.size, zone, &room_copy, why, sizeof why) == -1);
    }
    msgpack_zone_free (zone);
}

//  ---------------------------------------------------------------------------
//  Hand-built bodies: one field at a time made wrong

typedef void (value_fn) (msgpack_packer *pk);

//  An envelope of type carrying a body of `count` (key, value) pairs.
static void
s_build (int type, int count, const char *const *keys, value_fn *const *values)
{
    msgpack_sbuffer_clear (&s_buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &s_buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 6);
    msgpack_pack_uint8 (&pk, PROTO_VERSION);
    msgpack_pack_uint16 (&pk, (uint16_t) type);
    msgpack_pack_uint64 (&pk, 9);
    msgpack_pack_str (&pk, 0);
    msgpack_pack_str_body (&pk, "", 0);
    msgpack_pack_int64 (&pk, 1);
    msgpack_pack_map (&pk, (size_t) count);
    for (int i = 0; i < count; i++) {
        msgpack_pack_str (&pk, strlen (keys [i]));
        msgpack_pack_str_body (&pk, keys [i], strlen (keys [i]));
        values [i] (&pk);
    }
}

static void v_lat (msgpack_packer *pk)      { msgpack_pack_double (pk, 45.0); }
static void v_lat_int (msgpack_packer *pk)  { msgpack_pack_int32 (pk, -45); }
static void v_lat_far (msgpack_packer *pk)  { msgpack_pack_double (pk, 90.000001); }
static void v_nan (msgpack_packer *pk)      { msgpack_pack_double (pk, NAN); }
static void v_inf (msgpack_packer *pk)      { msgpack_pack_double (pk, INFINITY); }
static void v_str_lat (msgpack_packer *pk)  { msgpack_pack_str (pk, 2); msgpack_pack_str_body (pk, "45", 2); }
static void v_lon (msgpack_packer *pk)      { msgpack_pack_double (pk, 7.0); }
static void v_nil (msgpack_packer *pk)      { msgpack_pack_nil (pk); }
static void v_true (msgpack_packer *pk)     { msgpack_pack_true (pk); }
static void v_neg (msgpack_packer *pk)      { msgpack_pack_int32 (pk, -1); }
static void v_limit_big (msgpack_packer *pk){ msgpack_pack_uint32 (pk, PROTO_LIST_MAX + 1); }
static void v_public (msgpack_packer *pk)   { msgpack_pack_str (pk, 6); msgpack_pack_str_body (pk, "public", 6); }
static void v_weird (msgpack_packer *pk)    { msgpack_pack_str (pk, 6); msgpack_pack_str_body (pk, "secret", 6); }
static void v_bin (msgpack_packer *pk)      { msgpack_pack_bin (pk, 2); msgpack_pack_bin_body (pk, "id", 2); }
static void v_id (msgpack_packer *pk)       { msgpack_pack_str (pk, 4); msgpack_pack_str_body (pk, "r-01", 4); }
static void v_bad_utf8 (msgpack_packer *pk) { msgpack_pack_str (pk, 3); msgpack_pack_str_body (pk, "a\xc3(", 3); }
static void v_nul (msgpack_packer *pk)      { msgpack_pack_str (pk, 3); msgpack_pack_str_body (pk, "a\0b", 3); }
static void v_ctrl (msgpack_packer *pk)     { msgpack_pack_str (pk, 3); msgpack_pack_str_body (pk, "a\nb", 3); }
static void v_empty (msgpack_packer *pk)    { msgpack_pack_str (pk, 0); msgpack_pack_str_body (pk, "", 0); }

static void
v_id_max (msgpack_packer *pk)
{
    char id [PROTO_ID_MAX];
    memset (id, 'i', sizeof id);
    msgpack_pack_str (pk, sizeof id);
    msgpack_pack_str_body (pk, id, sizeof id);
}

static void
v_id_over (msgpack_packer *pk)
{
    char id [PROTO_ID_MAX + 1];
    memset (id, 'i', sizeof id);
    msgpack_pack_str (pk, sizeof id);
    msgpack_pack_str_body (pk, id, sizeof id);
}

static void
s_test_refusals (void)
{
    printf ("each field made wrong is refused with a reason\n");
    //  geo-search {latitude, longitude, roomType?, limit?}
    const char *lat_lon [] = { "latitude", "longitude" };
    value_fn *good [] = { v_lat, v_lon };
    s_build (PROTO_GEO_SEARCH, 2, lat_lon, good);
    CHECK (!s_refused (s_buf.data, s_buf.size));
    value_fn *as_int [] = { v_lat_int, v_lon };
    s_build (PROTO_GEO_SEARCH, 2, lat_lon, as_int);
    CHECK (!s_refused (s_buf.data, s_buf.size));         //  an integer latitude is a number
    value_fn *bad [][2] = { { v_lat_far, v_lon }, { v_nan, v_lon }, { v_inf, v_lon },
                            { v_str_lat, v_lon }, { v_nil, v_lon }, { v_true, v_lon },
                            { v_lat, v_bin } };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        s_build (PROTO_GEO_SEARCH, 2, lat_lon, bad [i]);
        CHECK (s_refused (s_buf.data, s_buf.size));
    }
    const char *missing [] = { "latitude" };
    s_build (PROTO_GEO_SEARCH, 1, missing, good);
    CHECK (s_refused (s_buf.data, s_buf.size));
    const char *twice [] = { "latitude", "latitude", "longitude" };
    value_fn *three [] = { v_lat, v_lat, v_lon };
    s_build (PROTO_GEO_SEARCH, 3, twice, three);
    CHECK (s_refused (s_buf.data, s_buf.size));
    const char *unknown [] = { "latitude", "longitude", "altitude" };
    s_build (PROTO_GEO_SEARCH, 3, unknown, three);
    CHECK (s_refused (s_buf.data, s_buf.size));
    const char *typed [] = { "latitude", "longitude", "roomType" };
    value_fn *public [] = { v_lat, v_lon, v_public }, *weird [] = { v_lat, v_lon, v_weird };
    s_build (PROTO_GEO_SEARCH, 3, typed, public);
    CHECK (!s_refused (s_buf.data, s_buf.size));
    s_build (PROTO_GEO_SEARCH, 3, typed, weird);
    CHECK (s_refused (s_buf.data, s_buf.size));
    const char *limited [] = { "latitude", "longitude", "limit" };
    value_fn *too_many [] = { v_lat, v_lon, v_limit_big }, *negative [] = { v_lat, v_lon, v_neg };
    s_build (PROTO_GEO_SEARCH, 3, limited, too_many);
    CHECK (s_refused (s_buf.data, s_buf.size));
    s_build (PROTO_GEO_SEARCH, 3, limited, negative);
    CHECK (s_refused (s_buf.data, s_buf.size));

    //  Strings: room-get {roomId}
    const char *room_id [] = { "roomId" };
    value_fn *ok_ids [] = { v_id, v_id_max };
    for (int i = 0; i < 2; i++) {
        s_build (PROTO_ROOM_GET, 1, room_id, &ok_ids [i]);
        CHECK (!s_refused (s_buf.data, s_buf.size));
    }
    value_fn *bad_ids [] = { v_id_over, v_bad_utf8, v_nul, v_ctrl, v_empty, v_bin, v_nil };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids [0]; i++) {
        s_build (PROTO_ROOM_GET, 1, room_id, &bad_ids [i]);
        CHECK (s_refused (s_buf.data, s_buf.size));
    }

    //  Whole envelopes.
    proto_msg_t msg;
    samples_message (PROTO_ROOM_PUT, true, &msg);
    size_t size = 0;
    char *bytes = s_encode (&msg, &size);
    for (size_t cut = 0; cut < size; cut++)
        CHECK (s_refused (bytes, cut));
    char *longer = malloc (size + 1);
    memcpy (longer, bytes, size);
    longer [size] = 0;
    CHECK (s_refused (longer, size + 1));                    //  trailing byte
    bytes [1] = 2;                                           //  version 2
    CHECK (s_refused (bytes, size));
    bytes [1] = PROTO_VERSION;
    bytes [2] = 3;                                           //  type 3: no such type
    CHECK (s_refused (bytes, size));
    free (longer);
    free (bytes);
    CHECK (s_refused ("\x96\x01\x02\x03\xa0\x01\x80", 7) == false);  //  [1, ok, 3, "", 1, {}]
    CHECK (s_refused ("\x95\x01\x02\x03\xa0\x01", 6));               //  five parts
    CHECK (s_refused ("\xdd\xff\xff\xff\xff", 5));                    //  a giant array
    CHECK (s_refused ("\xdf\x7f\xff\xff\xff", 5));                    //  a giant map
    CHECK (s_refused ("\xc1", 1));                                    //  never used
    char *huge = calloc (PROTO_FRAME_MAX + 1, 1);
    CHECK (s_refused (huge, PROTO_FRAME_MAX + 1));
    free (huge);
    uint16_t type;
    uint64_t request_id;
    s_build (PROTO_GEO_SEARCH, 2, lat_lon, bad [0]);
    CHECK (proto_peek (s_buf.data, s_buf.size, &type, &request_id) == 0
           && type == PROTO_GEO_SEARCH && request_id == 9);
    CHECK (proto_peek ("junk", 4, &type, &request_id) == -1);
}

static void
s_test_encoder_refusals (void)
{
    printf ("the encoder refuses what the decoder would\n");
    proto_msg_t msg;
    samples_message (PROTO_ROOM_PUT, true, &msg);
    msgpack_sbuffer_clear (&s_buf);
    msg.room_put.room.latitude = NAN;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_PUT, true, &msg);
    msg.room_put.room.max_participants = 0;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_PUT, true, &msg);
    const char *twice [] = { "alice", "alice" };
    msg.room_put.room.participants = twice;
    msg.room_put.room.participant_count = 2;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_PUT, true, &msg);
    msg.room_put.room.creator = "new\nline";
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_PUT, true, &msg);
    msg.room_put.room.status = 0;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_MSG_APPEND, false, &msg);
    msg.msg_append.message.text = "";
    CHECK (proto_encode (&msg, &s_buf) == -1);
    //  A shard's numbered append names its message; unnumbered, stored does both.
    samples_message (PROTO_MSG_APPEND, false, &msg);
    msg.msg_append.message.seq = 5;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    msg.msg_append.message.id = "m-5";
    CHECK (proto_encode (&msg, &s_buf) == 0);
    samples_message (PROTO_MSG_APPEND, false, &msg);
    CHECK (proto_encode (&msg, &s_buf) == 0);
    msgpack_sbuffer_clear (&s_buf);
    samples_message (PROTO_CONN_LIST, false, &msg);
    msg.conn_list.gateway_id = "gw-1";                       //  two keys
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_CONN_LIST, false, &msg);
    msg.conn_list.incarnation = "run-1";                     //  a run, but of no gateway
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_HISTORY_REPLY, true, &msg);
    msg.history_reply.count = PROTO_LIST_MAX + 1;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    //  A room update writes a record of its own room only, and a leave's
    //  closed goes with the socket that left.
    proto_connection_t elsewhere = samples_connection (true);
    elsewhere.room_id = "room-2";
    samples_message (PROTO_ROOM_UPDATE, true, &msg);
    msg.room_update.connection = &elsewhere;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    elsewhere.room_id = NULL;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    elsewhere = samples_connection (true);
    elsewhere.conn_id = NULL;                               //  a record without its id
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_UPDATE, true, &msg);
    msg.room_update.leave_conn_id = msg.room_update.connection->conn_id;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_UPDATE, true, &msg);
    msg.room_update.leave_conn_id = NULL;                   //  closed, but what?
    CHECK (proto_encode (&msg, &s_buf) == -1);
    msg.room_update.closed = false;
    CHECK (proto_encode (&msg, &s_buf) == 0);
    samples_message (PROTO_ROOM_LEAVE, false, &msg);
    msg.room_leave.closed = true;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    samples_message (PROTO_ROOM_JOIN, false, &msg);
    msg.room_join.incarnation = "run-1";                    //  a run, but no socket
    CHECK (proto_encode (&msg, &s_buf) == -1);

    //  Lists within their counts that make more than a frame: 600 messages
    //  of PROTO_TEXT_MAX bytes. Refused, and nothing is left in the buffer.
    static char text [PROTO_TEXT_MAX + 1];
    memset (text, 'x', PROTO_TEXT_MAX);
    static proto_message_t big [600];
    for (int i = 0; i < 600; i++)
        big [i] = (proto_message_t) { .room_id = "room-1", .id = "m", .seq = (uint64_t) i + 1,
                                      .user_id = "alice", .text = text, .created_at_ms = 1 };
    samples_message (PROTO_HISTORY_REPLY, true, &msg);
    msg.history_reply.messages = big;
    msg.history_reply.count = 600;
    msgpack_sbuffer_clear (&s_buf);
    msgpack_sbuffer_write (&s_buf, "kept", 4);
    CHECK (proto_encode (&msg, &s_buf) == -1);
    CHECK (s_buf.size == 4 && memcmp (s_buf.data, "kept", 4) == 0);
    msg.history_reply.count = 400;                          //  3.3 MB: within a frame
    CHECK (proto_encode (&msg, &s_buf) == 0 && s_buf.size > 4 + 400 * PROTO_TEXT_MAX);
    msgpack_sbuffer_clear (&s_buf);

    //  Metrics must be what Prometheus can take as they are.
    samples_message (PROTO_METRICS_REPLY, true, &msg);
    proto_metric_t metrics [3];
    proto_bucket_t buckets [3];
    memcpy (metrics, msg.metrics_reply.metrics, sizeof metrics);
    memcpy (buckets, metrics [2].buckets, sizeof buckets);
    metrics [2].buckets = buckets;
    msg.metrics_reply.metrics = metrics;
    CHECK (proto_encode (&msg, &s_buf) == 0);
    metrics [0].name = "9lives";
    CHECK (proto_encode (&msg, &s_buf) == -1);
    metrics [0].name = "has-dash";
    CHECK (proto_encode (&msg, &s_buf) == -1);
    metrics [0].name = "ok:name_9";
    CHECK (proto_encode (&msg, &s_buf) == 0);
    metrics [0].count = 1;                                  //  a counter with a count
    CHECK (proto_encode (&msg, &s_buf) == -1);
    metrics [0].count = 0;
    metrics [0].kind = 4;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    metrics [0].kind = PROTO_METRIC_COUNTER;
    buckets [1].le = buckets [0].le;                        //  le not rising
    CHECK (proto_encode (&msg, &s_buf) == -1);
    buckets [1].le = 0.01;
    buckets [1].count = 2;                                  //  count falling
    CHECK (proto_encode (&msg, &s_buf) == -1);
    buckets [1].count = 7;
    buckets [2].count = 10;                                 //  more than the count
    CHECK (proto_encode (&msg, &s_buf) == -1);
    buckets [2].count = 7;
    buckets [2].le = INFINITY;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    buckets [2].le = 1.5;
    CHECK (proto_encode (&msg, &s_buf) == 0);
    msgpack_sbuffer_clear (&s_buf);
    msg.type = 0;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    msg.type = 3;
    CHECK (proto_encode (&msg, &s_buf) == -1);
    CHECK (s_buf.size == 0);                                 //  and wrote nothing
}

//  Random damage to valid messages: never a crash, and whatever decodes
//  encodes again to bytes that decode to the same.
static void
s_test_mutations (void)
{
    enum { ROUNDS = 200000 };
    printf ("%d damaged messages: no crash, and what decodes re-encodes\n", ROUNDS);
    char *samples [128];
    size_t sizes [128];
    int count = 0;
    for (int type = 0; type < PROTO_TYPE_LIMIT && count < 127; type++)
        for (int full = 0; full <= 1; full++) {
            proto_msg_t msg;
            if (samples_message (type, full, &msg))
                samples [count] = s_encode (&msg, &sizes [count]), count++;
        }
    int decoded = 0, unstable = 0;
    uint8_t *mutant = malloc (8192);
    for (int round = 0; round < ROUNDS; round++) {
        int pick = (int) (harness_random () * count);
        size_t size = sizes [pick] < 8000? sizes [pick]: 8000;
        memcpy (mutant, samples [pick], size);
        int damage = 1 + (int) (harness_random () * 4);
        for (int d = 0; d < damage; d++) {
            size_t at = (size_t) (harness_random () * size);
            double how = harness_random ();
            if (how < 0.6)
                mutant [at] = (uint8_t) (harness_random () * 256);
            else
            if (how < 0.8 && size > 1)
                memmove (mutant + at, mutant + at + 1, size - at - 1), size--;
            else
            if (size < 8000)
                memmove (mutant + at + 1, mutant + at, size - at), size++;
        }
        proto_msg_t *msg = proto_decode (mutant, size, NULL, 0);
        if (msg) {
            decoded++;
            size_t again_size = 0;
            char *again = s_encode (msg, &again_size);
            proto_msg_t *twice = again? proto_decode (again, again_size, NULL, 0): NULL;
            if (!again || !twice || twice->type != msg->type)
                unstable++;
            proto_msg_destroy (&twice);
            free (again);
            proto_msg_destroy (&msg);
        }
    }
    printf ("  %d of them still decoded\n", decoded);
    CHECK (unstable == 0);
    CHECK (decoded > 0);
    free (mutant);
    for (int i = 0; i < count; i++)
        free (samples [i]);
}

int
main (void)
{
    harness_init ("codec");
    msgpack_sbuffer_init (&s_buf);
    s_test_round_trips ();
    s_test_refusals ();
    s_test_encoder_refusals ();
    s_test_mutations ();
    msgpack_sbuffer_destroy (&s_buf);
    return harness_finish ();
}
