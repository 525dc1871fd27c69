/*  =========================================================================
    test_connection_limit - MAX_CONNECTIONS is exact, against the real
    system (stored, gateway, 1 shard)

    Issue 10: MAX_CONNECTIONS=50 accepted 53 sockets, the count being read
    before the handshake and raised after it. MAX_CONNECTIONS + 5
    handshakes at once: exactly MAX_CONNECTIONS are answered 101 and the
    others 503 with a JSON error; once they close, their places are free
    again.
    =========================================================================
*/

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define MAX_CONNECTIONS     40
#define OVER                5

static harness_system_t s_system;
static int s_port;


//  One handshake of the crowd, all started at once.
typedef struct {
    pthread_barrier_t *barrier;
    int index;
    int status;
    char body [512];
    ws_raw_t *raw;
} attempt_t;

static void *
s_attempt (void *arg)
{
    attempt_t *attempt = arg;
    char path [64];
    snprintf (path, sizeof path, "/ws?userId=crowd-%d", attempt->index);
    pthread_barrier_wait (attempt->barrier);
    attempt->raw = ws_raw_try (s_port, path, &attempt->status, attempt->body,
                               sizeof attempt->body);
    return NULL;
}

static void
s_test_limit (void)
{
    printf ("MAX_CONNECTIONS=%d: %d handshakes at once, exactly %d are taken\n",
            MAX_CONNECTIONS, MAX_CONNECTIONS + OVER, MAX_CONNECTIONS);
    enum { COUNT = MAX_CONNECTIONS + OVER };
    static attempt_t attempts [COUNT];
    pthread_t threads [COUNT];
    pthread_barrier_t barrier;
    pthread_barrier_init (&barrier, NULL, COUNT);
    for (int i = 0; i < COUNT; i++) {
        attempts [i] = (attempt_t) { .barrier = &barrier, .index = i };
        REQUIRE (pthread_create (&threads [i], NULL, s_attempt, &attempts [i]) == 0);
    }
    int accepted = 0, refused = 0, other = 0;
    for (int i = 0; i < COUNT; i++) {
        pthread_join (threads [i], NULL);
        if (attempts [i].status == 101 && attempts [i].raw)
            accepted++;
        else
        if (attempts [i].status == 503) {
            refused++;
            json_t *body = json_loads (attempts [i].body, 0, NULL);
            const char *error = j_str (body, "error");
            CHECK (error && strstr (error, "most sockets"));
            json_decref (body);
        }
        else {
            other++;
            fprintf (stderr, "  handshake %d: %d %s\n", i, attempts [i].status,
                     attempts [i].body);
        }
    }
    pthread_barrier_destroy (&barrier);
    printf ("  %d accepted, %d refused with 503, %d otherwise\n", accepted, refused, other);
    CHECK (accepted == MAX_CONNECTIONS);
    CHECK (refused == OVER);
    CHECK (other == 0);
    //  A client may read its 101 before the gateway has counted the
    //  socket (its ready handler runs after the answer is written).
    json_t *health = NULL;
    double counted = -1;
    for (int64_t until = clock_mono_ms () + 5000; clock_mono_ms () < until; usleep (20 * 1000)) {
        api_health (s_port, &health);
        counted = j_num (health, "connections");
        json_decref (health);
        if (counted == MAX_CONNECTIONS)
            break;
    }
    CHECK (counted == MAX_CONNECTIONS);

    //  Closed, they give their places back.
    for (int i = 0; i < COUNT; i++)
        if (attempts [i].raw)
            ws_raw_close (&attempts [i].raw);
    int64_t deadline = clock_mono_ms () + 10000;
    double open = -1;
    while (clock_mono_ms () < deadline) {
        api_health (s_port, &health);
        open = j_num (health, "connections");
        json_decref (health);
        if (open == 0)
            break;
        usleep (100 * 1000);
    }
    CHECK (open == 0);
    ws_client_t *late = api_connect (s_port, "late", "Late");
    CHECK (late != NULL);
    ws_close (&late);
}

int
main (void)
{
    harness_init ("connection_limit");
    const char *env [] = { "MAX_CONNECTIONS=40", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    s_port = s_system.http_port;

    s_test_limit ();

    return harness_finish ();
}
