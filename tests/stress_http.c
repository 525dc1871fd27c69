/*  =========================================================================
    stress_http.c - the HTTP calls test_stress makes while its sockets play
    =========================================================================
*/

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "stress_http.h"
#include "stress_check.h"
#include "api.h"

static pthread_t s_threads [STRESS_HTTP_THREADS_MAX];
static int s_thread_count;
static int s_port, s_calls, s_users;           //  what stress_http_start was given
static atomic_bool s_stop;
static atomic_int s_made;

//  One thread's calls; argument is its seed (rand_r: harness_random is
//  the main thread's).
static void *
s_caller (void *argument)
{
    unsigned seed = (unsigned) (uintptr_t) argument;
    for (int call = 0; call < s_calls && !atomic_load (&s_stop); call++) {
        int room = rand_r (&seed) % STRESS_ROOMS;
        char path [256], user [16];
        snprintf (user, sizeof user, "u%d", rand_r (&seed) % s_users);
        json_t *out = NULL;
        int status = 0;
        switch (rand_r (&seed) % 6) {
            case 0:
                status = http_callf (s_port, "POST", "/rooms", &out, "{s:s, s:f, s:f}",
                                     "userId", user, "latitude", 48.85 + call * 1e-5,
                                     "longitude", 2.35);
                CHECK (status != 200 || j_str (out, "roomId"));
                break;
            case 1:
                status = api_join_http (s_port, stress_room_id (room), user);
                break;
            case 2:
                snprintf (path, sizeof path, "/rooms/%s/messages?limit=20",
                          stress_room_id (room));
                status = http_call (s_port, "GET", path, NULL, &out);
                CHECK (status != 200 || json_is_array (out));
                break;
            case 3:
                status = http_call (s_port, "GET", "/healthz", NULL, NULL);
                break;
            case 4: {                   //  Prometheus text, not JSON
                http_response_t response;
                status = http_request (s_port, "GET", "/metrics", NULL, 0, &response);
                http_response_free (&response);
                break;
            }
            default:                    //  the test's rooms are there
                status = http_call (s_port, "GET", "/rooms?latitude=48.85&longitude=2.35",
                                    NULL, &out);
                CHECK (status != 200 || json_array_size (out) > 0);
        }
        if (status != 200)
            fprintf (stderr, "  an HTTP call (%d) answered %d\n", call, status);
        CHECK (status == 200);
        json_decref (out);
        atomic_fetch_add (&s_made, 1);
        usleep (5 * 1000);
    }
    return NULL;
}

void
stress_http_start (int port, int threads, int calls, int users)
{
    assert (threads >= 1 && threads <= STRESS_HTTP_THREADS_MAX);
    assert (users > 0);
    s_port = port;
    s_calls = calls;
    s_users = users;
    atomic_store (&s_stop, false);
    atomic_store (&s_made, 0);
    for (s_thread_count = 0; s_thread_count < threads; s_thread_count++) {
        int rc = pthread_create (&s_threads [s_thread_count], NULL, s_caller,
                                 (void *) (uintptr_t) (s_thread_count + 1));
        assert (rc == 0);
    }
}

int
stress_http_stop (void)
{
    atomic_store (&s_stop, true);
    for (int i = 0; i < s_thread_count; i++)
        pthread_join (s_threads [i], NULL);
    s_thread_count = 0;
    return atomic_load (&s_made);
}
