/*  =========================================================================
    route.c - which roomd shard owns a room: rendezvous hashing
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "route.h"

//  FNV-1a over the bytes, then murmur3's 64-bit finalizer. Written here
//  because none of our libraries exports a general hash, and FNV alone
//  spreads short, similar keys (room ids, "shard-1".."shard-9") poorly in
//  the high bits; the finalizer mixes every input bit into every output bit.
uint64_t
route_hash (const void *key, size_t len, uint64_t seed)
{
    const uint8_t *byte = key;
    uint64_t hash = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        hash ^= byte [i];
        hash *= 0x100000001b3ULL;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ULL;
    hash ^= hash >> 33;
    return hash;
}

int
route_pick (const char *room_id, const char *const *shard_ids, size_t count)
{
    assert (room_id);
    int best = -1;
    uint64_t best_score = 0;
    size_t room_len = strlen (room_id);
    for (size_t i = 0; i < count; i++) {
        uint64_t score = route_hash (room_id, room_len,
                                     route_hash (shard_ids [i], strlen (shard_ids [i]), 0));
        if (best < 0 || score > best_score
        || (score == best_score && strcmp (shard_ids [i], shard_ids [best]) < 0)) {
            best = (int) i;
            best_score = score;
        }
    }
    return best;
}

//  ---------------------------------------------------------------------------
//  Self-test

#define TEST_ROOMS  10000

static void
s_room_id (int i, char *out)
{
    //  UUID-shaped, as real room ids are.
    uint64_t a = route_hash (&i, sizeof i, 1), b = route_hash (&i, sizeof i, 2);
    snprintf (out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned) (a >> 32),
              (unsigned) (a & 0xffff), (unsigned) ((a >> 16) & 0xfff),
              (unsigned) (b >> 48), (unsigned long long) (b & 0xffffffffffffULL));
}

void
route_test (bool verbose)
{
    static char rooms [TEST_ROOMS][37];
    for (int i = 0; i < TEST_ROOMS; i++)
        s_room_id (i, rooms [i]);
    const char *shards [] = { "shard-a", "shard-b", "shard-c", "shard-d",
                              "shard-e", "shard-f", "shard-g", "shard-h", "shard-i" };
    assert (route_pick (rooms [0], shards, 0) == -1);
    assert (route_pick (rooms [0], shards, 1) == 0);

    static int owner [TEST_ROOMS], grown [TEST_ROOMS];
    const size_t sizes [] = { 2, 3, 4, 8 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes [0]; s++) {
        size_t count = sizes [s];
        //  Even spread: every shard within 10% of its fair share.
        int load [9] = { 0 };
        for (int i = 0; i < TEST_ROOMS; i++) {
            owner [i] = route_pick (rooms [i], shards, count);
            load [owner [i]]++;
        }
        double fair = (double) TEST_ROOMS / (double) count;
        for (size_t k = 0; k < count; k++) {
            if (verbose)
                printf ("%zu shards: %s owns %d\n", count, shards [k], load [k]);
            assert (load [k] > fair * 0.9 && load [k] < fair * 1.1);
        }
        //  Adding a shard moves about 1/(N+1) of the rooms, all to the new one.
        int moved = 0;
        for (int i = 0; i < TEST_ROOMS; i++) {
            grown [i] = route_pick (rooms [i], shards, count + 1);
            if (grown [i] != owner [i]) {
                assert (grown [i] == (int) count);
                moved++;
            }
        }
        double expected = (double) TEST_ROOMS / (double) (count + 1);
        if (verbose)
            printf ("adding shard %zu moved %d rooms (expected about %.0f)\n",
                    count + 1, moved, expected);
        assert (moved > expected * 0.5 && moved < expected * 1.5);
        //  Removing it again moves exactly those rooms back, and no others.
        for (int i = 0; i < TEST_ROOMS; i++)
            assert (route_pick (rooms [i], shards, count) == owner [i]);
    }
    //  The answer does not depend on the order of the shard list.
    const char *reversed [] = { "shard-d", "shard-c", "shard-b", "shard-a" };
    for (int i = 0; i < TEST_ROOMS; i++) {
        int forward = route_pick (rooms [i], shards, 4);
        int backward = route_pick (rooms [i], reversed, 4);
        assert (strcmp (shards [forward], reversed [backward]) == 0);
    }
    //  Removing a shard from the middle moves only that shard's rooms.
    const char *without_b [] = { "shard-a", "shard-c", "shard-d" };
    for (int i = 0; i < TEST_ROOMS; i++) {
        int before = route_pick (rooms [i], shards, 4);
        int after = route_pick (rooms [i], without_b, 3);
        if (strcmp (shards [before], "shard-b") != 0)
            assert (strcmp (shards [before], without_b [after]) == 0);
    }
}
