/*  =========================================================================
    ids.c - identifiers: UUIDs (laid out and written by libuuid), trace ids
    =========================================================================
*/

#include <assert.h>
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uuid/uuid.h>
#include "ids.h"

//  Where random bytes come from: getrandom(2), or a test's source.
typedef ssize_t (random_fn) (void *buffer, size_t size, unsigned int flags);
static random_fn *s_source = getrandom;

//  Random bytes come from a per-thread pool refilled by getrandom(2) 4 KiB
//  at a time. libuuid's uuid_generate_random makes five system calls for
//  each id (it re-seeds its fallback generator every time); stored makes an
//  id for every message, so the pool is worth its few lines. libuuid still
//  writes the text form.
//
//  Invariant: every byte handed out is fresh from the kernel and handed out
//  once. A refill fills the whole pool, through signals (EINTR) and short
//  reads; the pool is marked full only then. getrandom fails for real only
//  when the system has no getrandom (ENOSYS: kernels before 3.17) or is
//  broken (EFAULT): then no id can be made that is known to be unique, and
//  an id that repeats is worse than a daemon that stops (a room or message
//  id would overwrite another's record), so we abort, loudly. Returning an
//  error instead would make every caller (stored for each message, roomd,
//  the gateway) handle a case that never happens on a working system.
static void
s_refill (unsigned char *pool, size_t size)
{
    size_t filled = 0;
    while (filled < size) {
        ssize_t got = s_source (pool + filled, size - filled, 0);
        if (got > 0)
            filled += (size_t) got;
        else
        if (got < 0 && errno == EINTR)
            continue;
        else {
            fprintf (stderr, "nearchat: getrandom failed (%s): no fresh randomness for ids\n",
                     got < 0? strerror (errno): "no bytes");
            abort ();
        }
    }
}

static __thread unsigned char s_pool [4096];
static __thread size_t s_left;          //  bytes of s_pool not handed out yet, at its end

static void
s_random_bytes (unsigned char *out, size_t size)
{
    while (size) {
        if (s_left == 0) {
            s_refill (s_pool, sizeof s_pool);
            s_left = sizeof s_pool;
        }
        size_t take = size < s_left? size: s_left;
        memcpy (out, s_pool + sizeof s_pool - s_left, take);
        s_left -= take;
        out += take;
        size -= take;
    }
}

char *
ids_uuid (char *out)
{
    assert (out);
    uuid_t uuid;
    s_random_bytes (uuid, sizeof uuid);
    uuid [6] = (uuid [6] & 0x0f) | 0x40;       //  version 4: random
    uuid [8] = (uuid [8] & 0x3f) | 0x80;       //  RFC 4122 variant
    uuid_unparse_lower (uuid, out);
    return out;
}

char *
ids_trace (char *out)
{
    assert (out);
    unsigned char bytes [16];
    s_random_bytes (bytes, sizeof bytes);
    //  (Not snprintf: one is made for every frame a client sends.)
    static const char hex [] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out [2 * i] = hex [bytes [i] >> 4];
        out [2 * i + 1] = hex [bytes [i] & 15];
    }
    out [32] = 0;
    return out;
}

//  A test's source: a known stream of bytes, handed out in short reads
//  (at most 1000 bytes), after a signal interrupts the first call.
static size_t s_stream_at;
static int s_stream_calls;

static unsigned char
s_stream_byte (size_t at)
{
    return (unsigned char) (at * 131 + at / 256 + 7);
}

static ssize_t
s_stream (void *buffer, size_t size, unsigned int flags)
{
    (void) flags;
    if (s_stream_calls++ == 0) {
        errno = EINTR;
        return -1;
    }
    size_t give = size < 1000? size: 1000;
    for (size_t i = 0; i < give; i++)
        ((unsigned char *) buffer) [i] = s_stream_byte (s_stream_at++);
    return (ssize_t) give;
}

static ssize_t
s_broken (void *buffer, size_t size, unsigned int flags)
{
    (void) buffer, (void) size, (void) flags;
    errno = ENOSYS;
    return -1;
}

static int
s_compare (const void *a, const void *b)
{
    return strcmp (a, b);
}

void
ids_test (bool verbose)
{
    (void) verbose;
    enum { COUNT = 10000 };
    char (*ids) [IDS_UUID_SIZE] = malloc (COUNT * IDS_UUID_SIZE);
    assert (ids);
    for (int i = 0; i < COUNT; i++) {
        ids_uuid (ids [i]);
        assert (strlen (ids [i]) == 36);
        for (int k = 0; k < 36; k++) {
            char c = ids [i][k];
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert (c == '-');
            else
                assert ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        }
        assert (ids [i][14] == '4');        //  version 4: random
        assert (strchr ("89ab", ids [i][19]));   //  RFC 4122 variant
    }
    qsort (ids, COUNT, IDS_UUID_SIZE, s_compare);
    for (int i = 1; i < COUNT; i++)
        assert (strcmp (ids [i - 1], ids [i]) != 0);
    free (ids);

    char trace [IDS_TRACE_SIZE], other [IDS_TRACE_SIZE];
    ids_trace (trace);
    ids_trace (other);
    assert (strlen (trace) == 32 && strspn (trace, "0123456789abcdef") == 32);
    assert (strcmp (trace, other) != 0);

    //  Interrupted and short reads: every byte handed out is the source's,
    //  in order, none twice, across refills (the old fallback handed out
    //  16 stale bytes from the pool's end after a short read).
    s_source = s_stream;
    s_left = 0;
    for (size_t id = 0; id < 3 * sizeof s_pool / 16; id++) {
        ids_trace (trace);
        for (size_t i = 0; i < 16; i++) {
            char hex [3];
            snprintf (hex, sizeof hex, "%02x", s_stream_byte (id * 16 + i));
            assert (memcmp (trace + 2 * i, hex, 2) == 0);
        }
    }
    assert (s_stream_calls > 3);

    //  No randomness at all: the process stops rather than make an id.
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        s_source = s_broken;
        s_left = 0;
        char uuid [IDS_UUID_SIZE];
        ids_uuid (uuid);
        _exit (0);
    }
    int status;
    assert (waitpid (child, &status, 0) == child);
    assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGABRT);
    s_source = getrandom;
    s_left = 0;
}
