/*  =========================================================================
    scenarios.h - what main.c hands the scenarios that live in files of
    their own (http.c)
    =========================================================================
*/

#ifndef NEARCHAT_SCENARIOS_H_INCLUDED
#define NEARCHAT_SCENARIOS_H_INCLUDED

#include <stdint.h>

typedef struct {
    int port;
    int clients;                //  connections, each with one request in flight
    int rooms_total;            //  rooms to make before searching
    double seconds;             //  each of search and join (create: 3 x at most)
    const char *label;
    const char *json_path;      //  NULL for none
} load_options_t;

int scenario_http (const load_options_t *options);

//  Monotonic microseconds, the one clock of every scenario (main.c).
uint64_t load_now_us (void);

#endif
