/*  =========================================================================
    clock.h - wall-clock and monotonic time, ISO 8601 timestamps

    Wall-clock milliseconds since the epoch are what nearchat stores and
    sends (lastActivity, createdAt); monotonic milliseconds are what its
    timers and timeouts use, so a clock step never fires or stalls them.
    =========================================================================
*/

#ifndef NEARCHAT_CLOCK_H_INCLUDED
#define NEARCHAT_CLOCK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLOCK_ISO8601_SIZE  25      //  "2026-11-24T13:13:00.123Z" and its NUL

//  Wall clock, ms since 1970-01-01T00:00:00Z.
int64_t
    clock_now_ms (void);

//  Monotonic clock, ms since an arbitrary start.
int64_t
    clock_mono_ms (void);

//  Monotonic clock, ns since an arbitrary start (for latency figures).
int64_t
    clock_mono_ns (void);

//  The instant ms from now on clock (CLOCK_REALTIME, or CLOCK_MONOTONIC
//  for a condition made with that clock), as pthread_cond_timedwait takes
//  its deadline.
struct timespec
    clock_after (clockid_t clock, int64_t ms);

//  Format ms since the epoch as ISO 8601 UTC with milliseconds,
//  "YYYY-MM-DDTHH:MM:SS.mmmZ", into out (CLOCK_ISO8601_SIZE bytes).
//  Returns out. Years outside 0000..9999 are clamped to the range.
char *
    clock_iso8601 (int64_t ms, char *out);

//  Parse "YYYY-MM-DDTHH:MM:SS[.fff]Z" (fraction 0 to 3 digits) into ms since
//  the epoch. Returns 0, or -1 if s is not exactly such a timestamp.
int
    clock_iso8601_parse (const char *s, int64_t *ms);

//  Self-test of this module.
void
    clock_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
