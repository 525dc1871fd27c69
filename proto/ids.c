/*  =========================================================================
    ids.c - identifiers: UUIDs (laid out and written by libuuid), trace ids
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>
#include "ids.h"

//  Random bytes come from a per-thread pool refilled by getrandom(2) 4 KiB
//  at a time. libuuid's uuid_generate_random makes five system calls for
//  each id (it re-seeds its fallback generator every time); stored makes an
//  id for every message, so the pool is worth its few lines. libuuid still
//  writes the text form.
static void
s_random_bytes (unsigned char *out, size_t size)
{
    static __thread unsigned char pool [4096];
    static __thread size_t left;
    while (size) {
        if (left == 0) {
            ssize_t got = getrandom (pool, sizeof pool, 0);
            if (got != (ssize_t) sizeof pool) {
                //  getrandom cannot fail for 4 KiB once the kernel's pool is
                //  ready; if it ever does, take libuuid's way.
                uuid_generate_random (pool);
                got = 16;
            }
            left = (size_t) got;
        }
        size_t take = size < left? size: left;
        memcpy (out, pool + sizeof pool - left, take);
        left -= take;
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
    for (int i = 0; i < 16; i++)
        snprintf (out + 2 * i, 3, "%02x", bytes [i]);
    return out;
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
}
