/*  =========================================================================
    metrics.c - a daemon's counters, gauges and histograms
    =========================================================================
*/

#include <assert.h>
#include <string.h>
#include "metrics.h"

const double metrics_seconds_bounds [] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
};
const size_t metrics_seconds_bound_count =
    sizeof metrics_seconds_bounds / sizeof metrics_seconds_bounds [0];
const double metrics_size_bounds [] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096
};
const size_t metrics_size_bound_count =
    sizeof metrics_size_bounds / sizeof metrics_size_bounds [0];

void
metrics_histogram_init (metrics_histogram_t *self, const double *bounds, size_t bound_count)
{
    assert (self && bounds && bound_count <= PROTO_BUCKETS_MAX);
    memset (self, 0, sizeof *self);
    self->bounds = bounds;
    self->bound_count = bound_count;
}

void
metrics_histogram_observe (metrics_histogram_t *self, double value)
{
    //  A linear scan: fifteen bounds at most, and most values fall early.
    for (size_t i = 0; i < self->bound_count; i++)
        if (value <= self->bounds [i]) {
            self->counts [i]++;
            break;
        }
    self->count++;
    self->sum += value;
}

void
metrics_set_init (metrics_set_t *self, const char *daemon, const char *instance)
{
    assert (self && daemon && instance);
    self->histogram_count = 0;
    self->reply = (proto_metrics_reply_t) { daemon, instance, self->metrics, 0 };
}

static proto_metric_t *
s_add (metrics_set_t *self, const char *name, const char *help, proto_metric_kind_t kind)
{
    assert (self->reply.count < PROTO_METRICS_MAX);
    proto_metric_t *metric = &self->metrics [self->reply.count++];
    *metric = (proto_metric_t) { .name = name, .help = help, .kind = (uint16_t) kind };
    return metric;
}

void
metrics_counter (metrics_set_t *self, const char *name, const char *help, double value)
{
    s_add (self, name, help, PROTO_METRIC_COUNTER)->value = value;
}

void
metrics_gauge (metrics_set_t *self, const char *name, const char *help, double value)
{
    s_add (self, name, help, PROTO_METRIC_GAUGE)->value = value;
}

void
metrics_histogram (metrics_set_t *self, const char *name, const char *help,
                   const metrics_histogram_t *histogram)
{
    assert (self->histogram_count < METRICS_HISTOGRAMS_MAX);
    proto_bucket_t *buckets = self->buckets [self->histogram_count++];
    proto_metric_t *metric = s_add (self, name, help, PROTO_METRIC_HISTOGRAM);
    uint64_t below = 0;
    for (size_t i = 0; i < histogram->bound_count; i++) {
        below += histogram->counts [i];
        buckets [i] = (proto_bucket_t) { histogram->bounds [i], below };
    }
    metric->value = histogram->sum;
    metric->count = histogram->count;
    metric->buckets = buckets;
    metric->bucket_count = (uint32_t) histogram->bound_count;
}

//  ---------------------------------------------------------------------------
//  Self-test

void
metrics_test (bool verbose)
{
    (void) verbose;
    metrics_histogram_t latency;
    metrics_histogram_init (&latency, metrics_seconds_bounds, metrics_seconds_bound_count);
    metrics_histogram_observe (&latency, 0.00005);   //  first bucket
    metrics_histogram_observe (&latency, 0.001);     //  on a bound: that bucket
    metrics_histogram_observe (&latency, 0.0011);
    metrics_histogram_observe (&latency, 60);        //  past every bound: +Inf only
    assert (latency.count == 4 && latency.counts [0] == 1 && latency.counts [3] == 1
            && latency.counts [4] == 1);

    metrics_set_t set;
    metrics_set_init (&set, "roomd", "shard-1");
    metrics_counter (&set, "nearchat_test_total", "A counter.", 3);
    metrics_gauge (&set, "nearchat_test_open", "A gauge.", -1);
    metrics_histogram (&set, "nearchat_test_seconds", "A histogram.", &latency);
    assert (set.reply.count == 3);
    const proto_metric_t *histogram = &set.reply.metrics [2];
    assert (histogram->count == 4 && histogram->bucket_count == metrics_seconds_bound_count);
    assert (histogram->buckets [0].count == 1 && histogram->buckets [3].count == 2
            && histogram->buckets [4].count == 3
            && histogram->buckets [histogram->bucket_count - 1].count == 3);

    //  What the set builds, proto takes: it encodes and decodes.
    proto_msg_t msg = { .type = PROTO_METRICS_REPLY, .metrics_reply = set.reply };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    assert (proto_encode (&msg, &buffer) == 0);
    proto_msg_t *copy = proto_decode (buffer.data, buffer.size, NULL, 0);
    assert (copy && copy->metrics_reply.count == 3
            && copy->metrics_reply.metrics [2].buckets [4].count == 3);
    proto_msg_destroy (&copy);
    msgpack_sbuffer_destroy (&buffer);
}
