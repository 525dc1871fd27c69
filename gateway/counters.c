/*  =========================================================================
    counters.c - the gateway's counters (gateway.h, gateway_metrics):
    atomics that any thread bumps, and metrics.c reads for /metrics
    =========================================================================
*/

#include "gateway.h"
#include "metrics.h"

gateway_metrics_t gateway_metrics;

void
gateway_metrics_delivered (int64_t ns)
{
    gateway_metrics_t *m = &gateway_metrics;
    double seconds = (double) ns / 1e9;
    for (size_t i = 0; i < metrics_seconds_bound_count; i++)
        if (seconds <= metrics_seconds_bounds [i]) {
            atomic_fetch_add_explicit (&m->delivery_buckets [i], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit (&m->delivery_sum_ns, (unsigned long long) (ns > 0? ns: 0),
                               memory_order_relaxed);
    atomic_fetch_add_explicit (&m->delivery_count, 1, memory_order_relaxed);
}
