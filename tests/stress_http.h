/*  =========================================================================
    stress_http.h - the HTTP calls test_stress makes while its sockets play

    A few threads, each making calls in turn to the gateway: POST /rooms,
    POST /rooms/join to one of the test's rooms, GET its messages,
    /healthz, /metrics and a search where the test's rooms are. Every
    answer must be 200 (CHECKed, with http_call's checks of the JSON).
    =========================================================================
*/

#ifndef NEARCHAT_STRESS_HTTP_H_INCLUDED
#define NEARCHAT_STRESS_HTTP_H_INCLUDED

#define STRESS_HTTP_THREADS_MAX     4

//  Start threads threads (1..STRESS_HTTP_THREADS_MAX) calling the gateway
//  on port, calls calls at most each, as users u0..u<users - 1>, over the
//  rooms of stress_check.h (set before).
void
    stress_http_start (int port, int threads, int calls, int users);

//  Stop the threads after their current call and join them. Returns the
//  calls they made.
int
    stress_http_stop (void);

#endif
