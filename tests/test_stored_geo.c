/*  =========================================================================
    test_stored_geo - stored's geo search against a brute-force haversine
    filter over thousands of random rooms: in a city, around both poles and
    astride the 180th meridian, of both types, some closed, some full
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "clock.h"
#include "geo.h"
#include "ids.h"

#define ROOMS   3000
#define QUERIES 400

typedef struct {
    char id [IDS_UUID_SIZE];
    double latitude, longitude;
    uint32_t radius_m;
    proto_room_type_t room_type;
    bool closed, full;
} room_t;

typedef struct {
    double distance_m;
    const char *id;
} hit_t;

static room_t s_rooms [ROOMS];

//  A point in one of four places where rooms are dense.
static void
s_place (int cluster, double *latitude, double *longitude)
{
    double a = harness_random (), b = harness_random ();
    switch (cluster % 4) {
        case 0: *latitude = 48.80 + a * 0.1; *longitude = 2.30 + b * 0.1; break;      //  Paris
        case 1: *latitude = 89.99 + a * 0.01; *longitude = b * 360 - 180; break;        //  north pole
        case 2: *latitude = -89.99 - a * 0.01; *longitude = b * 360 - 180; break;       //  south pole
        default:                                                                         //  180th meridian
            *latitude = -16.5 + a * 0.05;
            *longitude = b < 0.5? 179.97 + b * 0.06: -180 + (b - 0.5) * 0.06;
    }
    if (*longitude > 180)
        *longitude = 180;
}

static int
s_hit_compare (const void *a, const void *b)
{
    const hit_t *left = a, *right = b;
    if (left->distance_m != right->distance_m)
        return left->distance_m < right->distance_m? -1: 1;
    return strcmp (left->id, right->id);
}

int
main (void)
{
    harness_init ("stored-geo");
    harness_daemon_t stored;
    harness_stored_init (&stored);
    REQUIRE (harness_start (&stored) == 0);
    proto_client_t *client = proto_client_new (stored.endpoint);

    printf ("loading %d rooms\n", ROOMS);
    const char *occupant [] = { "someone" };
    int64_t now = clock_now_ms ();
    for (int i = 0; i < ROOMS; i++) {
        room_t *room = &s_rooms [i];
        ids_uuid (room->id);
        s_place (i, &room->latitude, &room->longitude);
        room->radius_m = 50 + (uint32_t) (harness_random () * 1950);
        room->room_type = harness_random () < 0.7? PROTO_ROOM_PUBLIC: PROTO_ROOM_PRIVATE;
        room->closed = harness_random () < 0.1;
        room->full = harness_random () < 0.1;
        proto_msg_t request = { .type = PROTO_ROOM_PUT, .room_put.room = {
            .id = room->id, .latitude = room->latitude, .longitude = room->longitude,
            .radius_m = room->radius_m, .creator = "someone",
            .participants = occupant, .participant_count = 1,
            .max_participants = room->full? 1: 20, .created_at_ms = now,
            .last_activity_ms = now, .room_type = room->room_type,
            .status = room->closed? PROTO_STATUS_CLOSED: PROTO_STATUS_ACTIVE } };
        REQUIRE (proto_client_send (client, &request) == 0);
    }
    int stored_rooms = 0;
    for (int i = 0; i < ROOMS; i++) {
        proto_msg_t *reply = proto_client_recv (client, 10000);
        stored_rooms += reply && reply->type == PROTO_ROOM_REPLY;
        proto_msg_destroy (&reply);
    }
    REQUIRE (stored_rooms == ROOMS);

    printf ("%d searches against the brute force\n", QUERIES);
    static hit_t expected [ROOMS];
    int total_hits = 0, mismatches = 0;
    for (int q = 0; q < QUERIES; q++) {
        double latitude, longitude;
        s_place (q, &latitude, &longitude);
        if (q == 1)
            latitude = 90;                  //  the poles themselves
        if (q == 2)
            latitude = -90;
        if (q == 3)
            longitude = 180;
        proto_room_type_t type = q % 3 == 0? PROTO_ROOM_TYPE_ANY
                               : q % 3 == 1? PROTO_ROOM_PUBLIC: PROTO_ROOM_PRIVATE;
        size_t count = 0;
        for (int i = 0; i < ROOMS; i++) {
            const room_t *room = &s_rooms [i];
            if (room->closed || room->full || (type && room->room_type != type))
                continue;
            double distance = geo_distance_m (latitude, longitude, room->latitude,
                                              room->longitude);
            if (distance <= room->radius_m)
                expected [count++] = (hit_t) { distance, room->id };
        }
        qsort (expected, count, sizeof *expected, s_hit_compare);

        proto_msg_t request = { .type = PROTO_GEO_SEARCH, .geo_search = {
            .latitude = latitude, .longitude = longitude, .room_type = type,
            .limit = PROTO_LIST_MAX } };
        proto_msg_t *reply = harness_call (client, &request);
        REQUIRE (reply && reply->type == PROTO_GEO_REPLY);
        bool same = reply->geo_reply.count == count;
        for (size_t i = 0; same && i < count; i++) {
            const proto_geo_hit_t *hit = &reply->geo_reply.hits [i];
            same = strcmp (hit->room.id, expected [i].id) == 0
                && hit->distance_m > expected [i].distance_m - 0.001
                && hit->distance_m < expected [i].distance_m + 0.001;
        }
        if (!same && mismatches++ < 5)
            fprintf (stderr, "  search at (%.6f, %.6f) type %d: %u hits, brute force %zu\n",
                     latitude, longitude, type, reply->geo_reply.count, count);
        CHECK (same);
        total_hits += (int) count;
        proto_msg_destroy (&reply);
    }
    printf ("  %d hits in all, %.1f a search\n", total_hits, (double) total_hits / QUERIES);
    CHECK (total_hits > QUERIES);           //  the test must find something to compare

    //  The limit keeps the nearest.
    proto_msg_t request = { .type = PROTO_GEO_SEARCH, .geo_search = {
        .latitude = 48.85, .longitude = 2.35, .limit = 2 } };
    proto_msg_t *reply = harness_call (client, &request);
    CHECK (reply && reply->type == PROTO_GEO_REPLY && reply->geo_reply.count <= 2);
    if (reply && reply->geo_reply.count == 2)
        CHECK (reply->geo_reply.hits [0].distance_m <= reply->geo_reply.hits [1].distance_m);
    proto_msg_destroy (&reply);

    proto_client_destroy (&client);
    CHECK (harness_stop (&stored) == 0);
    return harness_finish ();
}
