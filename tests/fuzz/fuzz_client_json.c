/*  fuzz_client_json - libFuzzer target for the gateway's path from a
    client's JSON to a proto message (gateway/json.c): the depth check, then
    jansson, then the field checks as the create-room handler uses them,
    then proto_encode of what they let through.

    Each input runs on a thread of its own with a 64 KiB stack, smaller
    than civetweb's workers' (~100 KiB), so that a parse that recursed
    with the input's depth would crash here as it crashed the gateway.
    Whatever passes the depth check must parse to a value no deeper than
    INPUT_DEPTH_MAX, and whatever passes the field checks must encode. */

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"

#define STACK_SIZE  (64 * 1024)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct {
    const char *data;
    size_t size;
} input_t;

//  The depth of a parsed value (recursive, but over what passed the check,
//  so at most INPUT_DEPTH_MAX calls deep).
static int
s_depth (const json_t *value)
{
    int deepest = 0;
    if (json_is_array (value)) {
        for (size_t i = 0; i < json_array_size (value); i++) {
            int depth = s_depth (json_array_get (value, i));
            deepest = depth > deepest? depth: deepest;
        }
        return deepest + 1;
    }
    if (json_is_object (value)) {
        const char *key;
        json_t *member;
        json_object_foreach ((json_t *) value, key, member) {
            int depth = s_depth (member);
            deepest = depth > deepest? depth: deepest;
        }
        return deepest + 1;
    }
    return 0;
}

//  What http.c's create-room does with a body, up to the message it sends.
static void
s_create_room (const json_t *body)
{
    char user_id [PROTO_ID_MAX + 1], road_name [PROTO_PROFILE_MAX + 1], why [160];
    double latitude, longitude;
    int64_t max_participants = 100;
    int rc;
    if (input_id (body, "userId", true, user_id, why, sizeof why) < 0
    ||  input_number (body, "latitude", true, -90, 90, &latitude, why, sizeof why) < 0
    ||  input_number (body, "longitude", true, -180, 180, &longitude, why, sizeof why) < 0
    ||  (rc = input_profile (body, "roadName", road_name, why, sizeof why)) < 0
    ||  input_integer (body, "maxParticipants", false, 1, 1000000000, &max_participants,
                       why, sizeof why) < 0) {
        assert (*why);
        return;
    }
    const char *participants [] = { user_id };
    proto_msg_t request = { .type = PROTO_ROOM_PUT, .room_put = { .if_absent = true, .room = {
        .id = "00000000-0000-4000-8000-000000000000", .latitude = latitude,
        .longitude = longitude, .road_name = rc == 0? road_name: NULL, .radius_m = 100,
        .creator = user_id, .participants = participants, .participant_count = 1,
        .created_at_ms = 1, .last_activity_ms = 1, .status = PROTO_STATUS_ACTIVE,
        .room_type = PROTO_ROOM_PUBLIC, .max_participants = (uint32_t) max_participants } } };
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    //  What the checks pass always encodes: their limits are proto's.
    assert (proto_encode (&request, &buf) == 0);
    msgpack_sbuffer_destroy (&buf);
}

//  The profile and id fields a join or a message carries.
static void
s_fields (const json_t *body)
{
    const char *ids [] = { "roomId", "messageId", "userId" };
    const char *profiles [] = { "userName", "userIcon", "userColor" };
    char out [PROTO_PROFILE_MAX + 1], why [160];
    for (size_t i = 0; i < sizeof ids / sizeof ids [0]; i++)
        if (input_id (body, ids [i], false, out, why, sizeof why) == 0)
            assert (strlen (out) >= 1 && strlen (out) <= PROTO_ID_MAX);
    for (size_t i = 0; i < sizeof profiles / sizeof profiles [0]; i++)
        if (input_profile (body, profiles [i], out, why, sizeof why) == 0)
            assert (strlen (out) <= PROTO_PROFILE_MAX);
}

static void *
s_run (void *args)
{
    const input_t *input = args;
    if (!input_depth_ok (input->data, input->size, INPUT_DEPTH_MAX))
        return NULL;
    json_error_t error;
    json_t *body = json_loadb (input->data, input->size, 0, &error);
    if (!body)
        return NULL;
    assert (s_depth (body) <= INPUT_DEPTH_MAX);
    if (json_is_object (body)) {
        s_create_room (body);
        s_fields (body);
    }
    json_decref (body);
    return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    input_t input = { (const char *) data, size };
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    int rc = pthread_attr_setstacksize (&attr, STACK_SIZE);
    assert (rc == 0);
    pthread_t thread;
    rc = pthread_create (&thread, &attr, s_run, &input);
    assert (rc == 0);
    pthread_join (thread, NULL);
    pthread_attr_destroy (&attr);
    return 0;
}
