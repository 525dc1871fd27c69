/*  proto_selftest - runs the self-test of one proto module, named on the
    command line, or of all of them; ctest runs one entry per module. */

#include <stdio.h>
#include <string.h>
#include "proto.h"
#include "geo.h"
#include "route.h"
#include "clock.h"
#include "ids.h"
#include "utf8.h"
#include "metrics.h"
#include "monitor.h"
#include "requests.h"

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} selftest_t;

static const selftest_t s_selftests [] = {
    { "utf8",  utf8_test },
    { "metrics", metrics_test },
    { "monitor", monitor_test },
    { "clock", clock_test },
    { "ids",   ids_test },
    { "geo",   geo_test },
    { "route", route_test },
    { "requests", requests_test },
    { "proto", proto_test },
};

int
main (int argc, char *argv [])
{
    const char *only = argc > 1? argv [1]: NULL;
    int ran = 0;
    for (size_t i = 0; i < sizeof s_selftests / sizeof s_selftests [0]; i++) {
        if (only && strcmp (only, s_selftests [i].name) != 0)
            continue;
        printf (" * %s: ", s_selftests [i].name);
        fflush (stdout);
        s_selftests [i].test (false);
        printf ("OK\n");
        ran++;
    }
    if (ran == 0) {
        fprintf (stderr, "proto_selftest: no module named '%s'\n", only);
        return 1;
    }
    return 0;
}
