/*  =========================================================================
    clock.c - wall-clock and monotonic time, ISO 8601 timestamps
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "clock.h"

int64_t
clock_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t
clock_mono_ms (void)
{
    return clock_mono_ns () / 1000000;
}

int64_t
clock_mono_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
}

struct timespec
clock_after (clockid_t clock, int64_t ms)
{
    struct timespec at;
    clock_gettime (clock, &at);
    at.tv_sec += ms / 1000;
    at.tv_nsec += (ms % 1000) * 1000000;
    if (at.tv_nsec >= 1000000000) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000;
    }
    return at;
}

char *
clock_iso8601 (int64_t ms, char *out)
{
    assert (out);
    //  Floor division, so that -1 ms is 23:59:59.999 of the day before.
    int64_t seconds = ms / 1000, millis = ms % 1000;
    if (millis < 0) {
        millis += 1000;
        seconds--;
    }
    //  Clamp to years 0000..9999, the range the format can write.
    const int64_t first = -62167219200LL, last = 253402300799LL;
    if (seconds < first)
        seconds = first, millis = 0;
    if (seconds > last)
        seconds = last, millis = 999;
    time_t when = (time_t) seconds;
    struct tm tm;
    gmtime_r (&when, &tm);
    //  Formatted into a roomy buffer first: the compiler cannot know that
    //  gmtime_r's fields are in range, and the clamp above makes them so.
    char text [64];
    snprintf (text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
              tm.tm_hour, tm.tm_min, tm.tm_sec, (int) millis);
    memcpy (out, text, CLOCK_ISO8601_SIZE - 1);
    out [CLOCK_ISO8601_SIZE - 1] = 0;
    return out;
}

//  Read exactly count decimal digits.
static int
s_digits (const char **s, int count, int *value)
{
    *value = 0;
    for (int i = 0; i < count; i++, (*s)++) {
        if (**s < '0' || **s > '9')
            return -1;
        *value = *value * 10 + (**s - '0');
    }
    return 0;
}

static int
s_expect (const char **s, char c)
{
    if (**s != c)
        return -1;
    (*s)++;
    return 0;
}

int
clock_iso8601_parse (const char *s, int64_t *ms)
{
    assert (s && ms);
    int year, month, day, hour, minute, second, millis = 0;
    if (s_digits (&s, 4, &year) || s_expect (&s, '-') || s_digits (&s, 2, &month)
    ||  s_expect (&s, '-') || s_digits (&s, 2, &day) || s_expect (&s, 'T')
    ||  s_digits (&s, 2, &hour) || s_expect (&s, ':') || s_digits (&s, 2, &minute)
    ||  s_expect (&s, ':') || s_digits (&s, 2, &second))
        return -1;
    if (*s == '.') {
        s++;
        int scale = 100, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 3) {
            millis += (*s++ - '0') * scale;
            scale /= 10;
            digits++;
        }
        if (digits == 0)
            return -1;
    }
    if (s_expect (&s, 'Z') || *s)
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59
    ||  second > 60)
        return -1;
    struct tm tm = {
        .tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day,
        .tm_hour = hour, .tm_min = minute, .tm_sec = second
    };
    time_t seconds = timegm (&tm);
    //  timegm normalises 31 February into March: refuse what it had to move.
    if (tm.tm_mday != day || tm.tm_mon != month - 1)
        return -1;
    *ms = (int64_t) seconds * 1000 + millis;
    return 0;
}

void
clock_test (bool verbose)
{
    (void) verbose;
    char text [CLOCK_ISO8601_SIZE];
    assert (strcmp (clock_iso8601 (0, text), "1970-01-01T00:00:00.000Z") == 0);
    assert (strcmp (clock_iso8601 (1700000000123LL, text), "2023-11-14T22:13:20.123Z") == 0);
    assert (strcmp (clock_iso8601 (-1, text), "1969-12-31T23:59:59.999Z") == 0);
    assert (strcmp (clock_iso8601 (951782400000LL, text), "2000-02-29T00:00:00.000Z") == 0);
    assert (strlen (clock_iso8601 (clock_now_ms (), text)) == CLOCK_ISO8601_SIZE - 1);

    int64_t ms;
    assert (clock_iso8601_parse ("2023-11-14T22:13:20.123Z", &ms) == 0 && ms == 1700000000123LL);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20Z", &ms) == 0 && ms == 1700000000000LL);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20.1Z", &ms) == 0 && ms == 1700000000100LL);
    assert (clock_iso8601_parse ("2000-02-29T00:00:00.000Z", &ms) == 0 && ms == 951782400000LL);
    assert (clock_iso8601_parse ("2001-02-29T00:00:00.000Z", &ms) == -1);
    assert (clock_iso8601_parse ("2023-11-14 22:13:20Z", &ms) == -1);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20.1234Z", &ms) == -1);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20.Z", &ms) == -1);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20", &ms) == -1);
    assert (clock_iso8601_parse ("2023-13-14T22:13:20Z", &ms) == -1);
    assert (clock_iso8601_parse ("2023-11-14T22:13:20Zx", &ms) == -1);
    assert (clock_iso8601_parse ("", &ms) == -1);

    //  Round trips over a spread of instants, both signs.
    for (int64_t value = -86400000LL * 400; value < 253402300799000LL;
         value += 7919LL * 86400 * 1000 + 12345) {
        assert (clock_iso8601_parse (clock_iso8601 (value, text), &ms) == 0);
        assert (ms == value);
    }
    struct timespec now, later = clock_after (CLOCK_MONOTONIC, 1999);
    clock_gettime (CLOCK_MONOTONIC, &now);
    assert (later.tv_nsec >= 0 && later.tv_nsec < 1000000000);
    int64_t ahead_ms = (later.tv_sec - now.tv_sec) * 1000 + (later.tv_nsec - now.tv_nsec) / 1000000;
    assert (ahead_ms >= 1990 && ahead_ms <= 1999);
    int64_t before = clock_mono_ns ();
    assert (clock_mono_ns () >= before);
    assert (clock_now_ms () > 1700000000000LL);
}
