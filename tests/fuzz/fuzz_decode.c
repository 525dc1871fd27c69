/*  fuzz_decode - libFuzzer target for proto_decode, proto_peek and
    proto_next: any bytes are refused or decoded, never a crash; whatever
    decodes encodes again, and those bytes decode to the same message; a
    frame's messages are split within it, and one whole message is itself. */

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <stdlib.h>
#include "proto.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    uint16_t type;
    uint64_t request_id;
    proto_peek (data, size, &type, &request_id);
    //  A frame of messages splits into pieces within it, none empty.
    for (size_t at = 0, first; at < size; at += first) {
        first = proto_next (data + at, size - at);
        assert (first > 0 && first <= size - at);
    }
    //  What nearchat-spy prints: any bytes, no crash; JSON it can write.
    json_t *json = proto_json (data, size);
    if (json) {
        char *text = json_dumps (json, JSON_COMPACT);
        assert (text);
        free (text);
        json_decref (json);
    }
    char why [PROTO_WHY_MAX];
    proto_msg_t *msg = proto_decode (data, size, why, sizeof why);
    if (!msg)
        return 0;
    assert (proto_next (data, size) == size);       //  one message is one piece
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init (&first);
    msgpack_sbuffer_init (&second);
    //  The decoder accepted it, so the encoder must too.
    int rc = proto_encode (msg, &first);
    assert (rc == 0);
    proto_msg_t *again = proto_decode (first.data, first.size, why, sizeof why);
    assert (again && again->type == msg->type && again->request_id == msg->request_id);
    rc = proto_encode (again, &second);
    assert (rc == 0);
    //  Stable from the first re-encoding on: every field survived.
    assert (first.size == second.size && memcmp (first.data, second.data, first.size) == 0);
    proto_msg_destroy (&again);
    proto_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&first);
    msgpack_sbuffer_destroy (&second);
    return 0;
}
