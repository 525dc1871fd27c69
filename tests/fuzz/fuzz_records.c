/*  fuzz_records - libFuzzer target for the record decoders stored uses on
    what it reads from LMDB. The first byte picks the record (room, message,
    connection); the rest is the record. Whatever decodes packs again and
    unpacks to the same bytes. */

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "proto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    msgpack_zone *zone = msgpack_zone_new (4096);
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init (&first);
    msgpack_sbuffer_init (&second);
    char why [PROTO_WHY_MAX];
    int kind = data [0] % 3, rc;
    union {
        proto_room_t room;
        proto_message_t message;
        proto_connection_t connection;
    } record, again;
    #define ROUND_TRIP(unpack, pack, member) \
        if (unpack (data + 1, size - 1, zone, &record.member, why, sizeof why) == 0) { \
            rc = pack (&first, &record.member); \
            assert (rc == 0); \
            rc = unpack (first.data, first.size, zone, &again.member, why, sizeof why); \
            assert (rc == 0); \
            rc = pack (&second, &again.member); \
            assert (rc == 0 && first.size == second.size \
                    && memcmp (first.data, second.data, first.size) == 0); \
        }
    if (kind == 0) {
        ROUND_TRIP (proto_room_unpack, proto_room_pack, room)
    }
    else
    if (kind == 1) {
        ROUND_TRIP (proto_message_unpack, proto_message_pack, message)
    }
    else {
        ROUND_TRIP (proto_connection_unpack, proto_connection_pack, connection)
    }
    #undef ROUND_TRIP
    (void) rc;
    msgpack_sbuffer_destroy (&first);
    msgpack_sbuffer_destroy (&second);
    msgpack_zone_free (zone);
    return 0;
}
