/*  =========================================================================
    stats.c - a latency histogram with bounded relative error
    =========================================================================
*/

#include <string.h>
#include "stats.h"

//  Values below STATS_SUB have a bucket each; above, the top STATS_SUB_BITS
//  bits after the leading one pick the bucket within its power of two.
static size_t
s_index (uint64_t value)
{
    if (value < STATS_SUB)
        return (size_t) value;
    int top = 63 - __builtin_clzll (value);             //  value >= 2^top
    int shift = top - STATS_SUB_BITS;
    size_t sub = (size_t) ((value >> shift) & (STATS_SUB - 1));
    return (size_t) (top - STATS_SUB_BITS + 1) * STATS_SUB + sub;
}

//  The largest value that falls in bucket index.
static uint64_t
s_upper (size_t index)
{
    if (index < STATS_SUB)
        return index;
    int top = (int) (index / STATS_SUB) + STATS_SUB_BITS - 1;
    uint64_t sub = index % STATS_SUB;
    int shift = top - STATS_SUB_BITS;
    uint64_t low = ((uint64_t) 1 << top) | (sub << shift);
    return low + ((uint64_t) 1 << shift) - 1;
}

void
stats_reset (stats_t *self)
{
    memset (self, 0, sizeof *self);
}

void
stats_record (stats_t *self, uint64_t value)
{
    self->counts [s_index (value)]++;
    self->count++;
    self->sum += (double) value;
    if (value > self->max)
        self->max = value;
}

void
stats_merge (stats_t *self, const stats_t *other)
{
    for (size_t i = 0; i < STATS_BUCKETS; i++)
        self->counts [i] += other->counts [i];
    self->count += other->count;
    self->sum += other->sum;
    if (other->max > self->max)
        self->max = other->max;
}

uint64_t
stats_quantile (const stats_t *self, double q)
{
    if (!self->count)
        return 0;
    uint64_t rank = (uint64_t) (q * (double) self->count);
    if (rank >= self->count)
        rank = self->count - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        seen += self->counts [i];
        if (seen > rank) {
            uint64_t upper = s_upper (i);
            return upper < self->max? upper: self->max;
        }
    }
    return self->max;
}

double
stats_mean (const stats_t *self)
{
    return self->count? self->sum / (double) self->count: 0;
}
