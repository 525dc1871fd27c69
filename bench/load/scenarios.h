/*  =========================================================================
    scenarios.h - what main.c hands the scenarios that live in files of
    their own (http.c, handshakes.c)
    =========================================================================
*/

#ifndef NEARCHAT_SCENARIOS_H_INCLUDED
#define NEARCHAT_SCENARIOS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int port;
    int clients;                //  connections, each with one request in flight
    int rooms_total;            //  rooms to make before searching
    double seconds;             //  each of search and join (create: 3 x at most)
    const char *label;
    const char *json_path;      //  NULL for none
    int sources;                //  source addresses 127.0.0.2.. (handshakes)
    bool tls;                   //  over TLS (handshakes; http refuses it)
    const char *jwt_secret;     //  NULL, or the HS256 secret of every user's token
} load_options_t;

int scenario_http (const load_options_t *options);

//  handshakes: --clients connections at a time, each a new connection
//  (over TLS, a full handshake), GET /healthz, close, for --seconds.
int scenario_handshakes (const load_options_t *options);

//  Monotonic microseconds, the one clock of every scenario (main.c).
uint64_t load_now_us (void);

//  CPU seconds this process has used (user and system; main.c): the load
//  generator shares the machine with what it measures, and a figure is
//  worth less when the generator itself took a whole core.
double load_cpu_s (void);

#endif
