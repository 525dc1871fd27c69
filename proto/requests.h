/*  =========================================================================
    requests.h - requests in flight: an id -> pending entry map with deadlines

    Whoever sends requests and matches the replies by request id (the
    gateway's backend, a roomd's calls to stored, proto_client) keeps what
    it sent in a requests_t: the entry a reply's id names is taken out and
    answered; entries past their deadline are taken out oldest first and
    failed; when a link drops, the entries sent on it are walked and
    failed. The table holds the caller's pointers and never frees them.
    Not thread-safe: one owner thread.
    =========================================================================
*/

#ifndef NEARCHAT_REQUESTS_H_INCLUDED
#define NEARCHAT_REQUESTS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct requests requests_t;

//  A new, empty table.
requests_t *
    requests_new (void);

//  Free the table (not the entries it still holds: take them first) and
//  set *self_p to NULL.
void
    requests_destroy (requests_t **self_p);

//  Add entry (not NULL) under id (not 0, not in the table already), due
//  at deadline_ms (monotonic). Entries that all wait the same time go in
//  at the tail at once; an earlier deadline is placed in order.
void
    requests_insert (requests_t *self, uint64_t id, void *entry, int64_t deadline_ms);

//  The entry under id, or NULL; it stays in the table.
void *
    requests_lookup (requests_t *self, uint64_t id);

//  Take the entry under id out of the table. Returns it, or NULL if there
//  is none (a late reply: its entry expired or was failed).
void *
    requests_take (requests_t *self, uint64_t id);

//  Take out the entry with the earliest deadline if that is at or before
//  now_ms. Returns it (its id in *id_p when id_p is not NULL), or NULL
//  when nothing is overdue. Call until NULL to expire all that are due.
void *
    requests_take_overdue (requests_t *self, int64_t now_ms, uint64_t *id_p);

//  Milliseconds from now_ms to the earliest deadline (0 when it has
//  passed), or -1 when the table is empty: a poller's timeout.
int64_t
    requests_wait (requests_t *self, int64_t now_ms);

//  How many entries the table holds.
size_t
    requests_size (requests_t *self);

//  Walk the entries in deadline order (to fail those sent on a link that
//  dropped): requests_first, then requests_next until NULL. Any entry may
//  be taken out meanwhile, the one returned last too: the walk goes on
//  from where it was. An entry added at the tail meanwhile is reached.
//  One walk at a time, and each to its end (NULL): requests_first asserts
//  that no other walk is under way.
void *
    requests_first (requests_t *self);
void *
    requests_next (requests_t *self);

//  Self-test of this module.
void
    requests_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
