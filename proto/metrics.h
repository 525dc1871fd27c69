/*  =========================================================================
    metrics.h - a daemon's counters, gauges and histograms, as proto carries them

    Each daemon keeps its own numbers; when asked (PROTO_METRICS) it lists
    them into a metrics_set_t, whose reply body the gateway turns into
    Prometheus text. Histograms have fixed bounds, so observing is a few
    comparisons and adds, and every daemon buckets alike.

    Not thread-safe: each histogram belongs to one thread.
    =========================================================================
*/

#ifndef NEARCHAT_METRICS_H_INCLUDED
#define NEARCHAT_METRICS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto.h"

#define METRICS_HISTOGRAMS_MAX  8       //  histograms in one set

//  Bounds (upper, inclusive) for latencies in seconds, and for sizes.
extern const double metrics_seconds_bounds [];
extern const size_t metrics_seconds_bound_count;
extern const double metrics_size_bounds [];
extern const size_t metrics_size_bound_count;

typedef struct {
    const double *bounds;
    size_t bound_count;                 //  at most PROTO_BUCKETS_MAX
    uint64_t counts [PROTO_BUCKETS_MAX]; //  per bucket, not cumulative
    uint64_t count;
    double sum;
} metrics_histogram_t;

void metrics_histogram_init (metrics_histogram_t *self, const double *bounds, size_t bound_count);
void metrics_histogram_observe (metrics_histogram_t *self, double value);

//  The metrics of one reply; names and help must outlive the reply's encoding.
typedef struct {
    proto_metric_t metrics [PROTO_METRICS_MAX];
    proto_bucket_t buckets [METRICS_HISTOGRAMS_MAX][PROTO_BUCKETS_MAX];
    size_t histogram_count;
    proto_metrics_reply_t reply;
} metrics_set_t;

void metrics_set_init (metrics_set_t *self, const char *daemon, const char *instance);
void metrics_counter (metrics_set_t *self, const char *name, const char *help, double value);
void metrics_gauge (metrics_set_t *self, const char *name, const char *help, double value);
void metrics_histogram (metrics_set_t *self, const char *name, const char *help,
                        const metrics_histogram_t *histogram);

void metrics_test (bool verbose);

#endif
