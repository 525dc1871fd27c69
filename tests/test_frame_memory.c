/*  =========================================================================
    test_frame_memory - what unfinished frames may cost: the memory of all
    processes (stored, gateway, 1 shard) stays bounded

    Issue 11: 990 sockets each holding most of a 1 MiB frame took the
    gateway from 16 MB to 1.05 GB, and 857 MB stayed after they closed. A
    frame is at most 64 KiB now (DESIGN.md), refused by its header, and a
    socket's input buffer holds one such frame at most, freed (and the heap
    trimmed) once handled. Here 200 sockets each announce a 1 MiB frame and
    send 900 KiB of it, never finishing: each is closed 1009, and the
    resident memory of all processes together grows by under 64 MiB, while
    they hold on and after they closed. Then 200 sockets each hold 63 KiB
    of a 64 KiB frame, the most a socket may hold: they stay open, and the
    memory is bounded as well, and comes back once they closed.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

#define SOCKETS         200
#define GROWTH_MAX_KIB  (64 * 1024)     //  all processes together, at any time
#define BACK_MAX_KIB    (16 * 1024)     //  once the holders closed

//  Under AddressSanitizer every allocation has redzones and freed memory
//  waits in a quarantine of 256 MB: the figures are printed, not judged
//  (the refusals and the sockets that stay open still are).
#ifdef NEARCHAT_SANITIZE
#   define MEMORY_CHECK(condition)  ((void) (condition))
#else
#   define MEMORY_CHECK(condition)  CHECK (condition)
#endif

static harness_system_t s_system;
static int s_port;

//  The resident memory of every process of the system, in KiB.
static long
s_rss_kib (void)
{
    long gateway = harness_rss_kib (&s_system.gateways [0]);
    long stored = harness_rss_kib (&s_system.stored);
    long shard = harness_rss_kib (&s_system.shards [0]);
    return gateway < 0 || stored < 0 || shard < 0? -1: gateway + stored + shard;
}

//  The most of s_rss_kib over ms (a read each 100 ms).
static long
s_rss_peak_kib (int ms)
{
    long peak = -1;
    for (int64_t until = clock_mono_ms () + ms; clock_mono_ms () < until; usleep (100 * 1000)) {
        long rss = s_rss_kib ();
        if (rss > peak)
            peak = rss;
    }
    return peak;
}

//  Wait (10 s at most) until the memory is back within limit_kib of base;
//  returns the growth last read.
static long
s_settle (long base, long limit_kib)
{
    long growth = -1;
    for (int64_t until = clock_mono_ms () + 10000; clock_mono_ms () < until; usleep (200 * 1000)) {
        growth = s_rss_kib () - base;
        if (growth < limit_kib)
            break;
    }
    return growth;
}

//  A frame's header (masked) announcing length bytes; returns its size.
static size_t
s_header (unsigned char *out, uint64_t length)
{
    out [0] = 0x81;
    out [1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
        out [2 + i] = (unsigned char) (length >> (56 - 8 * i));
    memcpy (out + 10, "\x11\x22\x33\x44", 4);
    return 14;
}

static ws_raw_t *s_raws [SOCKETS];

static void
s_open_all (const char *prefix)
{
    for (int i = 0; i < SOCKETS; i++) {
        char path [64];
        snprintf (path, sizeof path, "/ws?userId=%s-%d", prefix, i);
        s_raws [i] = ws_raw_open (s_port, path, 0);
        REQUIRE (s_raws [i]);
    }
    REQUIRE (api_wait_connections (s_port, SOCKETS));
}

static void
s_close_all (void)
{
    for (int i = 0; i < SOCKETS; i++)
        ws_raw_close (&s_raws [i]);
    CHECK (api_wait_connections (s_port, 0));
}

static void
s_test_big_frames (long base)
{
    printf ("%d sockets each announce a 1 MiB frame and send 900 KiB of it\n", SOCKETS);
    s_open_all ("big");
    size_t size = 900 * 1024;
    unsigned char *payload = malloc (size);
    REQUIRE (payload);
    memset (payload, 'x', size);
    for (int i = 0; i < SOCKETS; i++) {
        unsigned char header [14];
        //  Either may fail once the gateway has refused the frame.
        if (ws_raw_write (s_raws [i], header, s_header (header, 1024 * 1024)) == 0)
            ws_raw_write (s_raws [i], payload, size);
    }
    free (payload);
    long held = s_rss_peak_kib (1000) - base;
    int refused = 0;
    for (int i = 0; i < SOCKETS; i++) {
        ws_raw_drained_t got;
        ws_raw_drain (s_raws [i], 5000, &got);
        refused += got.close_code == 1009;
    }
    printf ("  %d closed 1009; memory of all processes +%ld KiB while they held on\n",
            refused, held);
    CHECK (refused == SOCKETS);
    MEMORY_CHECK (held >= 0 && held < GROWTH_MAX_KIB);
    s_close_all ();
    long after = s_settle (base, GROWTH_MAX_KIB);
    printf ("  +%ld KiB once they closed\n", after);
    MEMORY_CHECK (after < GROWTH_MAX_KIB);
}

static void
s_test_held_frames (long base)
{
    printf ("%d sockets each hold 63 KiB of a 64 KiB frame\n", SOCKETS);
    s_open_all ("held");
    size_t size = 63 * 1024;
    unsigned char *payload = malloc (size);
    REQUIRE (payload);
    memset (payload, 'y', size);
    for (int i = 0; i < SOCKETS; i++) {
        unsigned char header [14];
        CHECK (ws_raw_write (s_raws [i], header, s_header (header, 64 * 1024)) == 0);
        CHECK (ws_raw_write (s_raws [i], payload, size) == 0);
    }
    free (payload);
    long held = s_rss_peak_kib (1500) - base;
    //  Still open, every one: a frame of 64 KiB may be sent.
    int open = 0;
    for (int i = 0; i < SOCKETS; i++)
        open += !ws_raw_drain (s_raws [i], 10, NULL);
    printf ("  %d still open; memory of all processes +%ld KiB while they hold on\n",
            open, held);
    CHECK (open == SOCKETS);
    MEMORY_CHECK (held >= 0 && held < GROWTH_MAX_KIB);
    s_close_all ();
    long after = s_settle (base, BACK_MAX_KIB);
    printf ("  +%ld KiB once they closed\n", after);
    MEMORY_CHECK (after < BACK_MAX_KIB);
}

int
main (void)
{
    harness_init ("frame_memory");
    REQUIRE (harness_system_start (&s_system, 1, false, NULL) == 0);
    s_port = s_system.http_port;
    //  A first socket and its close, so that what every socket needs is
    //  made before the base is read.
    ws_client_t *first = api_connect (s_port, "first", NULL);
    ws_close (&first);
    REQUIRE (api_wait_connections (s_port, 0));
    long base = s_rss_kib ();
    REQUIRE (base > 0);
    printf ("memory of all processes at the start: %ld KiB\n", base);
    s_test_big_frames (base);
    s_test_held_frames (base);
    return harness_finish ();
}
