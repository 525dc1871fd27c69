/*  =========================================================================
    limits.c - what one user or one client address may take of the gateway

    DESIGN.md's limits, each a setting (main.c) with a default a chat user
    never meets: messages and typing events per user (a token bucket of
    MESSAGES_PER_S, MESSAGES_BURST), rooms created per user (a bucket of
    ROOMS_PER_MINUTE, refilled over a minute), and sockets per user and
    per client address (SOCKETS_PER_USER, SOCKETS_PER_ADDRESS). Callers
    answer a refusal with 429 (ws.c, http.c). The client address is the
    peer's, or with TRUST_PROXY_HEADERS=1 the last of X-Forwarded-For,
    which the edge writes (it replaces whatever the client sent).

    The tables are keyed by what a client chooses (under AUTH=none any
    user id), so they must not be a way to exhaust memory: each holds at
    most LIMITS_KEYS_MAX entries, kept in the order of their last use. A
    bucket that has refilled is the same as none, so the idle ones are
    dropped from the old end as new ones come; when the table is full
    anyway, the least recently used goes (it starts full when next seen,
    which under AUTH=none a new user id gives anyway). A count goes when
    it reaches 0, and is never evicted: counted sockets hold places of
    MAX_CONNECTIONS, so a count table holds hardly more entries than that.

    Any thread (civetweb's for upgrades and HTTP, the event loop's for
    frames): one lock guards everything, held only for a lookup.
    =========================================================================
*/

#include <arpa/inet.h>
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include "gateway.h"
#include "clock.h"

#define LIMITS_KEYS_MAX     65536       //  entries in a table of buckets at most
#define HANDSHAKES_MAX      1024        //  counted past MAX_CONNECTIONS, at most (see s_count)
#define IDLE_DROPS          4           //  idle entries looked at for each new one

typedef struct entry entry_t;
struct entry {
    entry_t *newer, *older;             //  the table's order of use
    int64_t used_ms;                    //  monotonic: last refill (buckets) or change
    double tokens;                      //  a bucket's
    int64_t count;                      //  a count's
    char key [];
};

typedef struct {
    zhashx_t *entries;                  //  key -> entry_t (owned by the list)
    entry_t *newest, *oldest;
    bool counts;                        //  counts, not buckets
    size_t max;                         //  entries at most
    double per_ms;                      //  a bucket's refill: tokens a millisecond
    double burst;                       //  the most it holds
} table_t;

static struct {
    pthread_mutex_t lock;
    table_t events;                     //  user id -> messages and typing
    table_t rooms;                      //  user id -> rooms created
    table_t user_sockets;               //  user id -> sockets open or opening
    table_t address_sockets;            //  client address -> the same
} s_limits = { .lock = PTHREAD_MUTEX_INITIALIZER };

//  ---------------------------------------------------------------------------
//  Tables

static void
s_table_init (table_t *table, bool counts, double per_s, double burst)
{
    table->entries = zhashx_new ();
    assert (table->entries);
    //  The keys are the entries' own.
    zhashx_set_key_duplicator (table->entries, NULL);
    zhashx_set_key_destructor (table->entries, NULL);
    table->counts = counts;
    //  A socket is counted from its handshake until it closes, and only
    //  while it holds one of MAX_CONNECTIONS places (or is about to take
    //  one, on one of civetweb's few threads): a count table never fills.
    table->max = counts? (size_t) gateway_config.max_connections + HANDSHAKES_MAX
                       : LIMITS_KEYS_MAX;
    table->per_ms = per_s / 1000;
    table->burst = burst;
}

static void
s_unlink (table_t *table, entry_t *entry)
{
    if (entry->newer)
        entry->newer->older = entry->older;
    else
        table->newest = entry->older;
    if (entry->older)
        entry->older->newer = entry->newer;
    else
        table->oldest = entry->newer;
    entry->newer = entry->older = NULL;
}

static void
s_push_newest (table_t *table, entry_t *entry)
{
    entry->older = table->newest;
    entry->newer = NULL;
    if (table->newest)
        table->newest->newer = entry;
    else
        table->oldest = entry;
    table->newest = entry;
}

static void
s_drop (table_t *table, entry_t *entry)
{
    s_unlink (table, entry);
    zhashx_delete (table->entries, entry->key);
    free (entry);
}

static void
s_table_destroy (table_t *table)
{
    while (table->oldest)
        s_drop (table, table->oldest);
    zhashx_destroy (&table->entries);
}

//  A bucket idle long enough to have refilled is as good as none.
static bool
s_idle (const table_t *table, const entry_t *entry, int64_t now)
{
    return !table->counts
        && (double) (now - entry->used_ms) * table->per_ms + entry->tokens >= table->burst;
}

//  Key's entry, made (a full bucket, a count of 0) if there is none;
//  NULL when a count table is full (nothing of it may be evicted).
static entry_t *
s_entry (table_t *table, const char *key, int64_t now)
{
    entry_t *entry = zhashx_lookup (table->entries, key);
    if (entry) {
        s_unlink (table, entry);
        s_push_newest (table, entry);
        return entry;
    }
    for (int i = 0; i < IDLE_DROPS && table->oldest && s_idle (table, table->oldest, now); i++)
        s_drop (table, table->oldest);
    if (zhashx_size (table->entries) >= table->max) {
        if (table->counts)
            return NULL;
        s_drop (table, table->oldest);
    }
    size_t size = strlen (key) + 1;
    entry = calloc (1, sizeof *entry + size);
    assert (entry);
    memcpy (entry->key, key, size);
    entry->used_ms = now;
    entry->tokens = table->burst;
    zhashx_insert (table->entries, entry->key, entry);
    s_push_newest (table, entry);
    return entry;
}

//  Take one token of key's bucket: true if there was one.
static bool
s_take (table_t *table, const char *key)
{
    int64_t now = clock_mono_ms ();
    pthread_mutex_lock (&s_limits.lock);
    entry_t *entry = s_entry (table, key, now);
    entry->tokens += (double) (now - entry->used_ms) * table->per_ms;
    if (entry->tokens > table->burst)
        entry->tokens = table->burst;
    entry->used_ms = now;
    bool taken = entry->tokens >= 1;
    if (taken)
        entry->tokens -= 1;
    pthread_mutex_unlock (&s_limits.lock);
    return taken;
}

//  Add delta to key's count (lock held). Returns the new count, or -1
//  when the table is full.
static int64_t
s_count (table_t *table, const char *key, int delta)
{
    entry_t *entry = s_entry (table, key, clock_mono_ms ());
    if (!entry)
        return -1;
    entry->count += delta;
    int64_t count = entry->count;
    if (count <= 0)
        s_drop (table, entry);
    return count;
}

//  ---------------------------------------------------------------------------
//  The limits

void
limits_start (void)
{
    s_table_init (&s_limits.events, false, (double) gateway_config.messages_per_s,
                  (double) gateway_config.messages_burst);
    s_table_init (&s_limits.rooms, false, (double) gateway_config.rooms_per_minute / 60,
                  (double) gateway_config.rooms_per_minute);
    s_table_init (&s_limits.user_sockets, true, 0, 0);
    s_table_init (&s_limits.address_sockets, true, 0, 0);
}

void
limits_stop (void)
{
    s_table_destroy (&s_limits.events);
    s_table_destroy (&s_limits.rooms);
    s_table_destroy (&s_limits.user_sockets);
    s_table_destroy (&s_limits.address_sockets);
}

bool
limits_event (const char *user_id)
{
    return gateway_config.messages_per_s == 0 || s_take (&s_limits.events, user_id);
}

bool
limits_room (const char *user_id)
{
    return gateway_config.rooms_per_minute == 0 || s_take (&s_limits.rooms, user_id);
}

int
limits_socket_take (const char *user_id, const char *address, char *why, size_t why_size)
{
    int64_t per_user = gateway_config.sockets_per_user;
    int64_t per_address = gateway_config.sockets_per_address;
    pthread_mutex_lock (&s_limits.lock);
    int64_t users = s_count (&s_limits.user_sockets, user_id, 1);
    int64_t addresses = s_count (&s_limits.address_sockets, address, 1);
    bool user_over = users < 0 || (per_user && users > per_user);
    bool address_over = addresses < 0 || (per_address && addresses > per_address);
    if (user_over || address_over) {
        if (users >= 0)
            s_count (&s_limits.user_sockets, user_id, -1);
        if (addresses >= 0)
            s_count (&s_limits.address_sockets, address, -1);
    }
    pthread_mutex_unlock (&s_limits.lock);
    if (users < 0 || addresses < 0)
        snprintf (why, why_size, "the gateway counts the sockets of too many clients");
    else
    if (user_over)
        snprintf (why, why_size, "user %s holds its most sockets (%lld)", user_id,
                  (long long) per_user);
    else
    if (address_over)
        snprintf (why, why_size, "address %s holds its most sockets (%lld)", address,
                  (long long) per_address);
    return user_over || address_over? 429: 0;
}

void
limits_socket_give (const char *user_id, const char *address)
{
    pthread_mutex_lock (&s_limits.lock);
    s_count (&s_limits.user_sockets, user_id, -1);
    s_count (&s_limits.address_sockets, address, -1);
    pthread_mutex_unlock (&s_limits.lock);
}

void
limits_address (const struct mg_connection *mg, char *address)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    snprintf (address, LIMITS_ADDRESS_MAX, "%s", info->remote_addr);
    const char *forwarded = gateway_config.trust_proxy_headers
                          ? mg_get_header (mg, "X-Forwarded-For"): NULL;
    if (!forwarded)
        return;
    //  The last address is the one the edge saw; any before it are the
    //  client's to write (the edge replaces them, another proxy may not).
    const char *last = strrchr (forwarded, ',');
    last = last? last + 1: forwarded;
    last += strspn (last, " \t");
    size_t length = strcspn (last, " \t");
    char text [LIMITS_ADDRESS_MAX];
    unsigned char binary [sizeof (struct in6_addr)];
    if (length == 0 || length >= sizeof text)
        return;
    memcpy (text, last, length);
    text [length] = 0;
    if (inet_pton (AF_INET, text, binary) == 1 || inet_pton (AF_INET6, text, binary) == 1)
        memcpy (address, text, length + 1);
}
