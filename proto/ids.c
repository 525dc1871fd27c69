/*  =========================================================================
    ids.c - identifiers: UUIDs through libuuid, trace ids
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>
#include "ids.h"

char *
ids_uuid (char *out)
{
    assert (out);
    uuid_t uuid;
    uuid_generate_random (uuid);
    uuid_unparse_lower (uuid, out);
    return out;
}

char *
ids_trace (char *out)
{
    assert (out);
    //  libuuid's random UUID is 122 bits from the system's random source;
    //  its raw 16 bytes serve as a trace id.
    uuid_t bytes;
    uuid_generate_random (bytes);
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
