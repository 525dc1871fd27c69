/*  =========================================================================
    test_api_http - the public HTTP routes of DESIGN.md, as the original
    clients call them, against the real system (stored, gateway, 2 shards)

    Create (both routes, numbers and numeric strings, defaults, the cap),
    search (distance, nearest first, radius, type, full and closed rooms
    left out, the alias), GET a room (online, closed ones with their
    status), join (twice, full, unknown, closed), close (not the creator,
    the creator, unknown, the alias), health, metrics and CORS preflight.
    Every answer is checked for JSON, its Content-Type and CORS header by
    http_call itself.
    =========================================================================
*/

#define _GNU_SOURCE             //  strcasestr
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"
#include "geo.h"

static harness_system_t s_system;
static int s_port;

static void
s_test_health (void)
{
    printf ("health, metrics, CORS preflight\n");
    json_t *health = NULL;
    CHECK (http_call (s_port, "GET", "/healthz", NULL, &health) == 200);
    CHECK (j_str (health, "status") != NULL);
    CHECK (j_str (health, "gatewayId") && *j_str (health, "gatewayId"));
    CHECK (j_is (health, "stored", "up"));
    //  The default trusts what clients say, and says so (test_auth: jwt).
    CHECK (j_is (health, "auth", "none"));
    CHECK (harness_log_lines (&s_system.gateways [0], NULL, "AUTH=none", NULL, 0) == 1);
    json_t *shards = j_get (health, "shards");
    CHECK (json_array_size (shards) == 2);
    CHECK (j_holds_once (shards, "shard-1") && j_holds_once (shards, "shard-2"));
    json_decref (health);

    //  Prometheus text: comments and "name value" lines.
    http_response_t metrics;
    CHECK (http_request (s_port, "GET", "/metrics", NULL, 0, &metrics) == 200);
    bool sample = false;
    for (const char *line = metrics.body; line && *line; ) {
        const char *end = strchr (line, '\n');
        if (*line != '#' && *line != '\n') {
            char name [128];
            double value;
            if (sscanf (line, "%127[a-zA-Z0-9_:{}=\",.-] %lf", name, &value) == 2)
                sample = true;
        }
        line = end? end + 1: NULL;
    }
    if (!sample)
        fprintf (stderr, "  /metrics has no \"name value\" line: %.300s\n", metrics.body);
    CHECK (sample);
    CHECK (!strcmp (metrics.allow_origin, "*"));
    http_response_free (&metrics);

    //  What a browser sends before a POST of JSON from another origin.
    http_response_t preflight;
    int status = http_request_with (s_port, "OPTIONS", "/rooms",
        "Origin: http://example.com\r\nAccess-Control-Request-Method: POST\r\n"
        "Access-Control-Request-Headers: content-type\r\n", NULL, 0, &preflight);
    CHECK (status == 200 || status == 204);
    CHECK (!strcmp (preflight.allow_origin, "*"));
    CHECK (strstr (preflight.allow_methods, "POST") != NULL);
    CHECK (strcasestr (preflight.allow_headers, "content-type") || strstr (preflight.allow_headers, "*"));
    if (status != 200 && status != 204)
        fprintf (stderr, "  OPTIONS /rooms: %d %s\n", status, preflight.body);
    http_response_free (&preflight);
    status = http_request_with (s_port, "OPTIONS", "/create-room",
        "Origin: http://example.com\r\nAccess-Control-Request-Method: POST\r\n", NULL, 0, &preflight);
    CHECK (status == 200 || status == 204);
    CHECK (!strcmp (preflight.allow_origin, "*"));
    http_response_free (&preflight);
}

static void
s_test_create (void)
{
    printf ("create: both routes, numbers and numeric strings, defaults, the cap\n");
    int64_t before = clock_now_ms ();
    json_t *answer = NULL;
    CHECK (http_callf (s_port, "POST", "/rooms", &answer, "{s:s, s:f, s:f, s:s}",
                       "userId", "alice", "latitude", 48.8566, "longitude", 2.3522,
                       "roadName", "A6") == 200);
    const char *id = j_str (answer, "roomId");
    CHECK (id && *id);
    json_t *info = j_get (answer, "roomInfo");
    api_check_room_info (info, "POST /rooms");
    CHECK (id && j_is (info, "id", id));
    CHECK (j_num (info, "location.latitude") == 48.8566);
    CHECK (j_num (info, "location.longitude") == 2.3522);
    CHECK (j_is (info, "roadName", "A6"));
    CHECK (j_num (info, "radius") == 500);
    CHECK (j_is (info, "creator", "alice"));
    CHECK (j_is (info, "status", "active"));
    CHECK (j_is (info, "roomType", "public"));
    CHECK (j_num (info, "maxParticipants") == 20);
    //  A sanity range, not a timing: the clock the room was stamped with.
    CHECK (j_num (info, "lastActivity") >= before - 60000
           && j_num (info, "lastActivity") <= clock_now_ms () + 60000);
    json_decref (answer);

    //  The original clients' route, with numeric strings.
    CHECK (http_callf (s_port, "POST", "/create-room", &answer, "{s:s, s:s, s:s, s:s, s:i}",
                       "userId", "bob", "latitude", "48.857", "longitude", "-2.353",
                       "roomType", "private", "maxParticipants", 5) == 200);
    id = j_str (answer, "roomId");
    CHECK (id && *id);
    info = j_get (answer, "roomInfo");
    api_check_room_info (info, "POST /create-room");
    CHECK (j_num (info, "location.latitude") == 48.857);
    CHECK (j_num (info, "location.longitude") == -2.353);
    CHECK (j_is (info, "roomType", "private"));
    CHECK (j_num (info, "maxParticipants") == 5);
    CHECK (j_is (info, "creator", "bob"));
    json_decref (answer);

    //  Integers are numbers too; the edges of the ranges are in range.
    CHECK (http_callf (s_port, "POST", "/rooms", &answer, "{s:s, s:i, s:i}",
                       "userId", "carol", "latitude", 90, "longitude", -180) == 200);
    CHECK (j_num (answer, "roomInfo.location.latitude") == 90);
    json_decref (answer);
    CHECK (http_callf (s_port, "POST", "/rooms", &answer, "{s:s, s:i, s:i}",
                       "userId", "carol", "latitude", -90, "longitude", 180) == 200);
    json_decref (answer);

    //  maxParticipants is capped at MAX_PARTICIPANTS (20 here).
    CHECK (http_callf (s_port, "POST", "/rooms", &answer, "{s:s, s:f, s:f, s:i}",
                       "userId", "dave", "latitude", 10.0, "longitude", 10.0,
                       "maxParticipants", 50) == 200);
    CHECK (j_num (answer, "roomInfo.maxParticipants") == 20);
    json_decref (answer);
}

//  Search at (latitude, longitude) with the query's tail (e.g. "&roomType=public"):
//  the array answered, or NULL.
static json_t *
s_search (const char *route, double latitude, double longitude, const char *tail)
{
    char path [256];
    snprintf (path, sizeof path, "%s?latitude=%.7f&longitude=%.7f%s", route, latitude,
              longitude, tail? tail: "");
    json_t *answer = NULL;
    int status = http_call (s_port, "GET", path, NULL, &answer);
    CHECK (status == 200);
    CHECK (json_is_array (answer));
    if (!json_is_array (answer)) {
        json_decref (answer);
        return NULL;
    }
    return answer;
}

//  The index of room id in a search answer, or -1.
static int
s_found (json_t *rooms, const char *id)
{
    size_t index;
    json_t *room;
    json_array_foreach (rooms, index, room)
        if (id && j_str (room, "id") && !strcmp (j_str (room, "id"), id))
            return (int) index;
    return -1;
}

static void
s_test_search (void)
{
    printf ("search: distance, nearest first, radius, type, full and closed rooms left out\n");
    const double lat = -33.8688, lon = 151.2093;
    double la, lo;
    const char *a = api_create_room (s_port, "sa", lat, lon, NULL, 0);
    api_offset (lat, lon, 120, 0, &la, &lo);
    const char *b = api_create_room (s_port, "sb", la, lo, "public", 0);
    api_offset (lat, lon, 0, 300, &la, &lo);
    const char *c = api_create_room (s_port, "sc", la, lo, NULL, 0);
    api_offset (lat, lon, -50, 0, &la, &lo);
    const char *p = api_create_room (s_port, "sp", la, lo, "private", 0);
    api_offset (lat, lon, 80, 0, &la, &lo);
    const char *full = api_create_room (s_port, "sf", la, lo, NULL, 2);
    api_offset (lat, lon, 60, 0, &la, &lo);
    const char *closed = api_create_room (s_port, "sx", la, lo, NULL, 0);
    api_offset (lat, lon, 5000, 0, &la, &lo);
    const char *far = api_create_room (s_port, "sfar", la, lo, NULL, 0);
    REQUIRE (a && b && c && p && full && closed && far);

    //  Before filling and closing, both are offered.
    json_t *rooms = s_search ("/rooms", lat, lon, "&roomType=public");
    CHECK (s_found (rooms, full) >= 0 && s_found (rooms, closed) >= 0);
    json_decref (rooms);

    //  Fill one (joins until "Room is full"), close the other.
    int joined = 0, status = 0;
    json_t *answer = NULL;
    for (int i = 0; i < 5 && status != 400; i++) {
        char user [32];
        snprintf (user, sizeof user, "filler-%d", i);
        status = http_callf (s_port, "POST", "/rooms/join", &answer, "{s:s, s:s}",
                             "roomId", full, "userId", user);
        if (status == 200)
            joined++;
        else {
            CHECK (status == 400);
            CHECK (j_is (answer, "error", "Room is full"));
        }
        json_decref (answer);
    }
    CHECK (status == 400 && joined >= 1 && joined <= 2);
    CHECK (http_callf (s_port, "POST", "/rooms/close", NULL, "{s:s, s:s}",
                       "roomId", closed, "userId", "sx") == 200);

    //  Nearest first, each with its distance; full, closed, private and far left out.
    rooms = s_search ("/rooms", lat, lon, "&roomType=public");
    CHECK (s_found (rooms, a) == 0);
    CHECK (s_found (rooms, b) == 1);
    CHECK (s_found (rooms, c) == 2);
    CHECK (json_array_size (rooms) == 3);
    CHECK (s_found (rooms, full) < 0 && s_found (rooms, closed) < 0);
    CHECK (s_found (rooms, p) < 0 && s_found (rooms, far) < 0);
    double last = -1;
    size_t index;
    json_t *room;
    json_array_foreach (rooms, index, room) {
        api_check_room_info (room, "a search result");
        double distance = j_num (room, "distance");
        CHECK (!isnan (distance) && distance >= last);
        last = distance;
        CHECK (j_is (room, "status", "active"));
    }
    if (s_found (rooms, b) == 1) {
        double expected = geo_distance_m (lat, lon, j_num (json_array_get (rooms, 1), "location.latitude"),
                                          j_num (json_array_get (rooms, 1), "location.longitude"));
        CHECK (fabs (j_num (json_array_get (rooms, 1), "distance") - expected) < 2);
        CHECK (fabs (expected - 120) < 2);
        CHECK (j_num (json_array_get (rooms, 0), "distance") < 2);
    }
    json_decref (rooms);

    //  The original clients' route answers the same.
    rooms = s_search ("/search-rooms", lat, lon, "&roomType=public");
    CHECK (json_array_size (rooms) == 3 && s_found (rooms, a) == 0 && s_found (rooms, c) == 2);
    json_decref (rooms);

    //  The type asked for, only.
    rooms = s_search ("/rooms", lat, lon, "&roomType=private");
    CHECK (json_array_size (rooms) == 1 && s_found (rooms, p) == 0);
    CHECK (j_is (json_array_get (rooms, 0), "roomType", "private"));
    json_decref (rooms);

    //  Within each room's own radius (500 m): 450 m south of a, a is found; 550 m, not.
    api_offset (lat, lon, -450, 0, &la, &lo);
    rooms = s_search ("/rooms", la, lo, "&roomType=public");
    CHECK (s_found (rooms, a) >= 0);
    json_decref (rooms);
    api_offset (lat, lon, -550, 0, &la, &lo);
    rooms = s_search ("/rooms", la, lo, "&roomType=public");
    CHECK (s_found (rooms, a) < 0);
    json_decref (rooms);

    //  Numeric strings in the query are what every client sends anyway;
    //  the far room is found from where it is.
    api_offset (lat, lon, 5000, 0, &la, &lo);
    rooms = s_search ("/search-rooms", la, lo, "&roomType=public");
    CHECK (json_array_size (rooms) == 1 && s_found (rooms, far) == 0);
    json_decref (rooms);

    //  Nowhere near anything: an empty array.
    rooms = s_search ("/rooms", 0.5, -150.5, "&roomType=public");
    CHECK (rooms && json_array_size (rooms) == 0);
    json_decref (rooms);
}

static void
s_test_get_room (void)
{
    printf ("GET /rooms/{id}: roomInfo and online, closed rooms with their status\n");
    const char *id = api_create_room (s_port, "gina", 45.0, 5.0, NULL, 0);
    REQUIRE (id);
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", id);
    json_t *room = NULL;
    CHECK (http_call (s_port, "GET", path, NULL, &room) == 200);
    api_check_room_info (room, "GET /rooms/{id}");
    CHECK (j_is (room, "id", id));
    CHECK (j_is (room, "creator", "gina"));
    CHECK (json_is_array (j_get (room, "online")) && json_array_size (j_get (room, "online")) == 0);
    json_decref (room);

    //  Someone connected and in the room is online.
    ws_client_t *gina = api_connect (s_port, "gina", "Gina");
    json_t *history = api_join (gina, id, "gina", -1);
    json_decref (history);
    CHECK (http_call (s_port, "GET", path, NULL, &room) == 200);
    CHECK (j_holds_once (j_get (room, "online"), "gina"));
    CHECK (j_holds_once (j_get (room, "participants"), "gina"));
    json_decref (room);

    CHECK (http_callf (s_port, "POST", "/rooms/close", NULL, "{s:s, s:s}",
                       "roomId", id, "userId", "gina") == 200);
    CHECK (http_call (s_port, "GET", path, NULL, &room) == 200);
    api_check_room_info (room, "GET /rooms/{id} of a closed room");
    CHECK (j_is (room, "status", "closed"));
    json_decref (room);
    ws_close (&gina);

    CHECK (http_call (s_port, "GET", "/rooms/no-such-room", NULL, NULL) == 404);
    CHECK (http_call (s_port, "GET", "/rooms/00000000-0000-4000-8000-000000000000", NULL, NULL) == 404);
}

static void
s_test_join (void)
{
    printf ("join by HTTP: success, twice, the alias, unknown, closed, full\n");
    const char *id = api_create_room (s_port, "hank", 45.1, 5.1, NULL, 0);
    REQUIRE (id);
    json_t *answer = NULL;
    CHECK (http_callf (s_port, "POST", "/rooms/join", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "ivy") == 200);
    CHECK (json_is_true (j_get (answer, "success")));
    api_check_room_info (j_get (answer, "roomInfo"), "POST /rooms/join");
    CHECK (j_is (answer, "roomInfo.id", id));
    CHECK (j_holds_once (j_get (answer, "roomInfo.participants"), "ivy"));
    CHECK (j_is (answer, "creatorId", "hank"));
    json_decref (answer);

    //  Twice is harmless: still one ivy.
    CHECK (http_callf (s_port, "POST", "/rooms/join", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "ivy") == 200);
    CHECK (json_is_true (j_get (answer, "success")));
    CHECK (j_holds_once (j_get (answer, "roomInfo.participants"), "ivy"));
    json_decref (answer);

    CHECK (http_callf (s_port, "POST", "/join-room", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "jack") == 200);
    CHECK (json_is_true (j_get (answer, "success")));
    CHECK (j_holds_once (j_get (answer, "roomInfo.participants"), "jack"));
    CHECK (j_holds_once (j_get (answer, "roomInfo.participants"), "ivy"));
    json_decref (answer);

    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", id);
    CHECK (http_call (s_port, "GET", path, NULL, &answer) == 200);
    CHECK (j_holds_once (j_get (answer, "participants"), "ivy"));
    CHECK (j_holds_once (j_get (answer, "participants"), "jack"));
    json_decref (answer);

    CHECK (api_join_http (s_port, "no-such-room", "ivy") == 404);
    CHECK (http_callf (s_port, "POST", "/join-room", NULL, "{s:s, s:s}",
                       "roomId", "no-such-room", "userId", "ivy") == 404);

    CHECK (http_callf (s_port, "POST", "/rooms/close", NULL, "{s:s, s:s}",
                       "roomId", id, "userId", "hank") == 200);
    CHECK (api_join_http (s_port, id, "kate") == 404);

    //  A room of one seat: whoever takes it, the next gets "Room is full".
    const char *small = api_create_room (s_port, "lena", 45.2, 5.2, NULL, 1);
    REQUIRE (small);
    int status = api_join_http (s_port, small, "lena");
    CHECK (status == 200);
    CHECK (http_callf (s_port, "POST", "/rooms/join", &answer, "{s:s, s:s}",
                       "roomId", small, "userId", "mike") == 400);
    CHECK (j_is (answer, "error", "Room is full"));
    json_decref (answer);
    //  ... and the one inside may join again.
    CHECK (api_join_http (s_port, small, "lena") == 200);
}

static void
s_test_close (void)
{
    printf ("close by HTTP: not the creator, the creator, unknown, the alias\n");
    const char *id = api_create_room (s_port, "nina", 45.3, 5.3, NULL, 0);
    REQUIRE (id);
    json_t *answer = NULL;
    CHECK (http_callf (s_port, "POST", "/rooms/close", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "oscar") == 403);
    json_decref (answer);
    char path [256];
    snprintf (path, sizeof path, "/rooms/%s", id);
    CHECK (http_call (s_port, "GET", path, NULL, &answer) == 200);
    CHECK (j_is (answer, "status", "active"));
    json_decref (answer);

    CHECK (http_callf (s_port, "POST", "/rooms/close", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "nina") == 200);
    CHECK (json_is_true (j_get (answer, "success")));
    json_decref (answer);
    CHECK (http_call (s_port, "GET", path, NULL, &answer) == 200);
    CHECK (j_is (answer, "status", "closed"));
    json_decref (answer);

    CHECK (http_callf (s_port, "POST", "/rooms/close", NULL, "{s:s, s:s}",
                       "roomId", "no-such-room", "userId", "nina") == 404);

    id = api_create_room (s_port, "paul", 45.4, 5.4, NULL, 0);
    REQUIRE (id);
    CHECK (http_callf (s_port, "POST", "/close-room", NULL, "{s:s, s:s}",
                       "roomId", id, "userId", "quinn") == 403);
    CHECK (http_callf (s_port, "POST", "/close-room", &answer, "{s:s, s:s}",
                       "roomId", id, "userId", "paul") == 200);
    CHECK (json_is_true (j_get (answer, "success")));
    json_decref (answer);
}

int
main (void)
{
    harness_init ("api_http");
    REQUIRE (harness_system_start (&s_system, 2, false, NULL) == 0);
    s_port = s_system.http_port;

    s_test_health ();
    s_test_create ();
    s_test_search ();
    s_test_get_room ();
    s_test_join ();
    s_test_close ();

    return harness_finish ();
}
