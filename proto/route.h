/*  =========================================================================
    route.h - which roomd shard owns a room

    Rendezvous (highest random weight) hashing: each (room id, shard id) pair
    gets a 64-bit score and the shard with the highest score owns the room.
    Every gateway computes the same owner from the same shard set with no
    coordination, and adding an Nth shard moves only the rooms whose new
    top score is the new shard's: about 1/N of them. Removing a shard moves
    only the rooms it owned.
    =========================================================================
*/

#ifndef NEARCHAT_ROUTE_H_INCLUDED
#define NEARCHAT_ROUTE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  A 64-bit hash of len bytes of key, mixed with seed. Not cryptographic;
//  well spread in every bit, which rendezvous scoring needs.
uint64_t
    route_hash (const void *key, size_t len, uint64_t seed);

//  The index in shard_ids[0..count-1] of the shard that owns room_id, or -1
//  when count is 0. Ties (equal scores) go to the smaller shard id string,
//  so the answer never depends on the order of shard_ids.
int
    route_pick (const char *room_id, const char *const *shard_ids, size_t count);

//  Self-test of this module.
void
    route_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
