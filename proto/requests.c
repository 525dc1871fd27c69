/*  =========================================================================
    requests.c - requests in flight: an id -> pending entry map with deadlines

    A hash by id for the replies and a list in deadline order for expiry:
    every user gives its requests one timeout, so a new entry goes at the
    tail and expiry only ever looks at the head. The walk's cursor is the
    table's, so that taking entries out while walking (failing what a lost
    link carried, which may answer callers who send again) never leaves it
    on freed memory.
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <czmq.h>
#include "requests.h"

typedef struct node node_t;
struct node {
    uint64_t id;                        //  the hash's key (points here)
    void *entry;                        //  the caller's
    int64_t deadline_ms;                //  monotonic
    node_t *prev, *next;                //  in deadline order
};

struct requests {
    zhashx_t *by_id;                    //  &node->id -> node
    node_t *head, *tail;                //  earliest deadline first
    //  The walk: the node returned last; or, once that was taken out
    //  (cursor_gone), the node before where the walk goes on (NULL: the
    //  head).
    node_t *cursor;
    bool cursor_gone;
    bool walking;                       //  a walk is under way (not yet at NULL)
};

static size_t
s_id_hash (const void *key)
{
    return (size_t) (*(const uint64_t *) key * 0x9e3779b97f4a7c15ULL);
}

static int
s_id_compare (const void *a, const void *b)
{
    uint64_t left = *(const uint64_t *) a, right = *(const uint64_t *) b;
    return left < right? -1: left > right;
}

//  ---------------------------------------------------------------------------
//  Make a new, empty table

requests_t *
requests_new (void)
{
    requests_t *self = calloc (1, sizeof *self);
    assert (self);
    self->by_id = zhashx_new ();
    assert (self->by_id);
    zhashx_set_key_hasher (self->by_id, s_id_hash);
    zhashx_set_key_comparator (self->by_id, s_id_compare);
    zhashx_set_key_duplicator (self->by_id, NULL);
    zhashx_set_key_destructor (self->by_id, NULL);
    return self;
}

//  ---------------------------------------------------------------------------
//  Free the table and its nodes; the entries are the caller's

void
requests_destroy (requests_t **self_p)
{
    assert (self_p);
    requests_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->by_id);
        while (self->head) {
            node_t *next = self->head->next;
            free (self->head);
            self->head = next;
        }
        free (self);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------------
//  Add an entry under its id and deadline

void
requests_insert (requests_t *self, uint64_t id, void *entry, int64_t deadline_ms)
{
    assert (self && id && entry);
    node_t *node = calloc (1, sizeof *node);
    assert (node);
    node->id = id;
    node->entry = entry;
    node->deadline_ms = deadline_ms;
    int rc = zhashx_insert (self->by_id, &node->id, node);
    assert (rc == 0);                   //  an id is in the table once
    //  After every node due at or before it: equal deadlines stay in the
    //  order they came.
    node_t *after = self->tail;
    while (after && after->deadline_ms > deadline_ms)
        after = after->prev;
    node->prev = after;
    node->next = after? after->next: self->head;
    if (node->next)
        node->next->prev = node;
    else
        self->tail = node;
    if (after)
        after->next = node;
    else
        self->head = node;
}

//  Unlink node and free it, keeping the walk's place. Returns its entry.
static void *
s_remove (requests_t *self, node_t *node)
{
    if (node == self->cursor) {
        self->cursor = node->prev;
        self->cursor_gone = true;
    }
    zhashx_delete (self->by_id, &node->id);
    if (node->prev)
        node->prev->next = node->next;
    else
        self->head = node->next;
    if (node->next)
        node->next->prev = node->prev;
    else
        self->tail = node->prev;
    void *entry = node->entry;
    free (node);
    return entry;
}

//  ---------------------------------------------------------------------------
//  The entry under id, left in the table; NULL if none

void *
requests_lookup (requests_t *self, uint64_t id)
{
    assert (self);
    node_t *node = zhashx_lookup (self->by_id, &id);
    return node? node->entry: NULL;
}

//  ---------------------------------------------------------------------------
//  Take the entry under id out; NULL if none

void *
requests_take (requests_t *self, uint64_t id)
{
    assert (self);
    node_t *node = zhashx_lookup (self->by_id, &id);
    return node? s_remove (self, node): NULL;
}

//  ---------------------------------------------------------------------------
//  Take out the earliest entry if it is due by now_ms; NULL if none is

void *
requests_take_overdue (requests_t *self, int64_t now_ms, uint64_t *id_p)
{
    assert (self);
    if (!self->head || self->head->deadline_ms > now_ms)
        return NULL;
    if (id_p)
        *id_p = self->head->id;
    return s_remove (self, self->head);
}

//  ---------------------------------------------------------------------------
//  Milliseconds until the earliest deadline (0 if past), -1 if empty

int64_t
requests_wait (requests_t *self, int64_t now_ms)
{
    assert (self);
    if (!self->head)
        return -1;
    int64_t wait = self->head->deadline_ms - now_ms;
    return wait < 0? 0: wait;
}

//  ---------------------------------------------------------------------------
//  How many entries are in flight

size_t
requests_size (requests_t *self)
{
    assert (self);
    return zhashx_size (self->by_id);
}

//  ---------------------------------------------------------------------------
//  Walk the entries in deadline order; NULL at the end

void *
requests_first (requests_t *self)
{
    assert (self);
    //  A walk inside a walk would move the outer one's cursor.
    assert (!self->walking);
    self->cursor = self->head;
    self->cursor_gone = false;
    self->walking = self->cursor != NULL;
    return self->cursor? self->cursor->entry: NULL;
}

void *
requests_next (requests_t *self)
{
    assert (self);
    if (self->cursor_gone)
        self->cursor = self->cursor? self->cursor->next: self->head;
    else
    if (self->cursor)
        self->cursor = self->cursor->next;
    self->cursor_gone = false;
    self->walking = self->cursor != NULL;
    return self->cursor? self->cursor->entry: NULL;
}

//  ---------------------------------------------------------------------------
//  Self-test

void
requests_test (bool verbose)
{
    requests_t *table = requests_new ();
    int entries [8];

    //  Take by id; a second take (a late reply) finds nothing.
    assert (requests_size (table) == 0);
    assert (requests_wait (table, 0) == -1);
    assert (requests_take_overdue (table, 1000, NULL) == NULL);
    requests_insert (table, 7, &entries [0], 100);
    requests_insert (table, 3, &entries [1], 100);
    assert (requests_size (table) == 2);
    assert (requests_lookup (table, 3) == &entries [1]);
    assert (requests_lookup (table, 4) == NULL);
    assert (requests_take (table, 3) == &entries [1]);
    assert (requests_take (table, 3) == NULL);
    assert (requests_size (table) == 1);
    assert (requests_take (table, 7) == &entries [0]);
    assert (requests_size (table) == 0);

    //  Expiry in deadline order, equal deadlines in the order they came,
    //  an earlier deadline placed before later ones.
    requests_insert (table, 1, &entries [1], 200);
    requests_insert (table, 2, &entries [2], 300);
    requests_insert (table, 3, &entries [3], 300);
    requests_insert (table, 4, &entries [4], 150);
    assert (requests_wait (table, 100) == 50);
    assert (requests_wait (table, 900) == 0);
    assert (requests_take_overdue (table, 149, NULL) == NULL);
    uint64_t id = 0;
    assert (requests_take_overdue (table, 300, &id) == &entries [4] && id == 4);
    assert (requests_take_overdue (table, 300, &id) == &entries [1] && id == 1);
    assert (requests_take_overdue (table, 300, &id) == &entries [2] && id == 2);
    assert (requests_take_overdue (table, 300, &id) == &entries [3] && id == 3);
    assert (requests_take_overdue (table, 300, NULL) == NULL);
    assert (requests_size (table) == 0);

    //  A walk that takes out what it is on, and what comes next, and adds
    //  at the tail, reaches every entry that is left once.
    for (uint64_t i = 1; i <= 5; i++)
        requests_insert (table, i, &entries [i], (int64_t) i);
    int seen = 0;
    for (int *entry = requests_first (table); entry; entry = requests_next (table)) {
        seen++;
        if (entry == &entries [1])
            assert (requests_take (table, 1) == entry);         //  the one it is on
        if (entry == &entries [2])
            assert (requests_take (table, 3) == &entries [3]);  //  the next one
        if (entry == &entries [5]) {
            assert (requests_take (table, 5) == entry);         //  the tail
            requests_insert (table, 6, &entries [6], 6);        //  then added after it
        }
    }
    assert (seen == 5);                 //  1, 2, 4, 5, 6
    assert (requests_size (table) == 3);
    //  Taking out every entry while walking leaves an empty table.
    for (void *entry = requests_first (table); entry; entry = requests_next (table))
        assert (requests_take (table, entry == &entries [2]? 2: entry == &entries [4]? 4: 6));
    assert (requests_size (table) == 0 && requests_first (table) == NULL);

    //  Many entries: every one is found by its id.
    static int many [10000];
    for (uint64_t i = 1; i <= 10000; i++)
        requests_insert (table, i << 20, &many [i - 1], 1000);
    for (uint64_t i = 10000; i >= 1; i--)
        assert (requests_take (table, i << 20) == &many [i - 1]);
    assert (requests_size (table) == 0);

    //  Destroying a table with entries frees its nodes, not the entries.
    requests_insert (table, 9, &entries [0], 1);
    requests_destroy (&table);
    assert (table == NULL);
    if (verbose)
        printf ("requests: OK\n");
}
