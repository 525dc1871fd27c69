/*  =========================================================================
    stats.h - a latency histogram with bounded relative error

    Values (microseconds) fall into log-linear buckets: 64 powers of two,
    each cut in STATS_SUB parts, so a percentile read back is within
    1/STATS_SUB of the truth whatever the range (as HdrHistogram does,
    in a few lines). Recording is an index computation and an add.
    =========================================================================
*/

#ifndef NEARCHAT_STATS_H_INCLUDED
#define NEARCHAT_STATS_H_INCLUDED

#include <stdint.h>

#define STATS_SUB_BITS  5
#define STATS_SUB       (1 << STATS_SUB_BITS)
#define STATS_BUCKETS   (64 * STATS_SUB)

typedef struct {
    uint64_t counts [STATS_BUCKETS];
    uint64_t count;
    uint64_t max;
    double sum;
} stats_t;

void     stats_reset (stats_t *self);
void     stats_record (stats_t *self, uint64_t value);
//  Add other's values to self.
void     stats_merge (stats_t *self, const stats_t *other);
//  The value at quantile q (0..1): the upper edge of its bucket, never
//  more than the largest value recorded; 0 when empty.
uint64_t stats_quantile (const stats_t *self, double q);
double   stats_mean (const stats_t *self);

#endif
