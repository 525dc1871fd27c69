/*  =========================================================================
    metrics.c - /metrics: every daemon's metrics as Prometheus text

    The gateway's own counters are read here; stored and each live shard
    are asked (PROTO_METRICS through the backend, one call each, in turn);
    the reaper's last report is what it sent after its last pass. Each
    answer is a list of metric families (proto_metric_t), checked by proto
    to be what Prometheus takes; here they are merged, so that a family
    every shard has is written once with a shard="..." label a sample.
    A daemon that does not answer is left out, and nearchat_up says so.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway.h"
#include "metrics.h"

#define ASK_TIMEOUT_MS      1000
#define SOURCES_MAX         66          //  the gateway, stored, the reaper, shards

typedef struct {
    const proto_metrics_reply_t *reply;
    const char *label;                  //  "shard" for a shard's samples, else NULL
} source_t;

static void
s_own (metrics_set_t *set)
{
    gateway_metrics_t *m = &gateway_metrics;
    metrics_set_init (set, "gateway", gateway_config.gateway_id);
    metrics_gauge (set, "nearchat_gateway_connections_open", "WebSockets open now.",
                   (double) atomic_load (&m->connections_open));
    metrics_counter (set, "nearchat_gateway_connects_total", "WebSockets opened.",
                     (double) atomic_load (&m->connects));
    metrics_counter (set, "nearchat_gateway_disconnects_total", "WebSockets closed.",
                     (double) atomic_load (&m->disconnects));
    metrics_counter (set, "nearchat_gateway_messages_received_total", "Frames read from clients.",
                     (double) atomic_load (&m->messages_received));
    metrics_counter (set, "nearchat_gateway_messages_delivered_total", "Frames written to clients.",
                     (double) atomic_load (&m->messages_delivered));
    metrics_counter (set, "nearchat_gateway_socket_writes_total",
                     "Writes to client sockets (frames coalesce: fewer writes than frames).",
                     (double) atomic_load (&m->socket_writes));
    metrics_counter (set, "nearchat_gateway_slow_reader_drops_total",
                     "Sockets closed for reading too slowly.",
                     (double) atomic_load (&m->slow_reader_drops));
    metrics_counter (set, "nearchat_gateway_events_total", "Events received from room shards.",
                     (double) atomic_load (&m->events));
    metrics_counter (set, "nearchat_gateway_http_requests_total", "HTTP requests served.",
                     (double) atomic_load (&m->http_requests));
    metrics_gauge (set, "nearchat_gateway_shards_live", "Room shards this gateway routes to.",
                   (double) atomic_load (&m->shards_live));
    metrics_gauge (set, "nearchat_gateway_loop_busy_ratio",
                   "Share of the event loop's time spent working, not waiting (smoothed).",
                   (double) atomic_load (&m->loop_busy_permille) / 1000);
    metrics_gauge (set, "nearchat_gateway_write_hold_seconds",
                   "How long a socket's frames are held to gather them into one send now "
                   "(0 while the loop is under 85% busy).",
                   (double) atomic_load (&m->hold_us) / 1e6);
    metrics_counter (set, "nearchat_gateway_frames_dropped_total",
                     "Frames queued for slow readers and dropped with them.",
                     (double) atomic_load (&m->frames_dropped));
    metrics_counter (set, "nearchat_gateway_gaps_total",
                     "Sockets found to have missed messages of their room, read again from stored.",
                     (double) atomic_load (&m->gaps));
    //  A snapshot of the event loop's atomics: the count is read first, so
    //  buckets may run ahead of it by an observation, never behind.
    static __thread metrics_histogram_t delivery;
    metrics_histogram_init (&delivery, metrics_seconds_bounds, metrics_seconds_bound_count);
    delivery.count = atomic_load (&m->delivery_count);
    uint64_t below = 0;
    for (size_t i = 0; i < metrics_seconds_bound_count; i++) {
        delivery.counts [i] = atomic_load (&m->delivery_buckets [i]);
        below += delivery.counts [i];
    }
    if (below > delivery.count)
        delivery.count = below;
    delivery.sum = (double) atomic_load (&m->delivery_sum_ns) / 1e9;
    metrics_histogram (set, "nearchat_gateway_delivery_seconds",
                       "From a frame made (an event or a reply received) to its write to the socket.",
                       &delivery);
}

//  Ask stored (shard_id NULL) or one shard for its metrics.
static proto_msg_t *
s_ask (const char *trace, const char *shard_id)
{
    proto_msg_t request = { .type = PROTO_METRICS, .metrics.shard_id = shard_id };
    snprintf (request.trace_id, sizeof request.trace_id, "%s", trace? trace: "");
    int status;
    char reason [PROTO_REASON_MAX];
    return backend_call (&request, PROTO_METRICS_REPLY, ASK_TIMEOUT_MS, &status, reason,
                         sizeof reason);
}

//  A label value as the text format wants it: \, " and newline escaped.
static void
s_label_value (FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\' || *c == '"')
            fputc ('\\', out);
        if (*c == '\n')
            fputs ("\\n", out);
        else
            fputc (*c, out);
    }
}

//  One sample line: name, labels (the source's, then le), value.
static void
s_sample (FILE *out, const char *name, const char *suffix, const source_t *source,
          const char *le, double value)
{
    fprintf (out, "%s%s", name, suffix);
    if (source->label || le) {
        fputc ('{', out);
        if (source->label) {
            fprintf (out, "%s=\"", source->label);
            s_label_value (out, source->reply->instance);
            fputc ('"', out);
        }
        if (le)
            fprintf (out, "%sle=\"%s\"", source->label? ",": "", le);
        fputc ('}', out);
    }
    fprintf (out, " %.17g\n", value);
}

static void
s_samples (FILE *out, const proto_metric_t *metric, const source_t *source)
{
    if (metric->kind != PROTO_METRIC_HISTOGRAM) {
        s_sample (out, metric->name, "", source, NULL, metric->value);
        return;
    }
    for (uint32_t i = 0; i < metric->bucket_count; i++) {
        char le [32];
        snprintf (le, sizeof le, "%.17g", metric->buckets [i].le);
        s_sample (out, metric->name, "_bucket", source, le, (double) metric->buckets [i].count);
    }
    s_sample (out, metric->name, "_bucket", source, "+Inf", (double) metric->count);
    s_sample (out, metric->name, "_sum", source, NULL, metric->value);
    s_sample (out, metric->name, "_count", source, NULL, (double) metric->count);
}

static const char *
s_kind_name (uint16_t kind)
{
    return kind == PROTO_METRIC_COUNTER? "counter": kind == PROTO_METRIC_GAUGE? "gauge"
                                                                               : "histogram";
}

//  Every family once, in the order first seen: its header, then its
//  samples from every source that has it (with the same kind).
static void
s_write (FILE *out, const source_t *sources, size_t source_count)
{
    for (size_t s = 0; s < source_count; s++)
        for (uint32_t m = 0; m < sources [s].reply->count; m++) {
            const proto_metric_t *metric = &sources [s].reply->metrics [m];
            bool seen = false;
            for (size_t before = 0; before <= s && !seen; before++)
                for (uint32_t k = 0; k < (before < s? sources [before].reply->count: m); k++)
                    if (strcmp (sources [before].reply->metrics [k].name, metric->name) == 0) {
                        seen = true;
                        break;
                    }
            if (seen)
                continue;
            fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", metric->name, metric->help,
                     metric->name, s_kind_name (metric->kind));
            s_samples (out, metric, &sources [s]);
            for (size_t later = s + 1; later < source_count; later++)
                for (uint32_t k = 0; k < sources [later].reply->count; k++) {
                    const proto_metric_t *same = &sources [later].reply->metrics [k];
                    if (strcmp (same->name, metric->name) == 0 && same->kind == metric->kind)
                        s_samples (out, same, &sources [later]);
                }
        }
}

//  The whole text: who is up, then every family.
static void
s_write_all (FILE *out, const source_t *sources, size_t source_count,
             char shards [][PROTO_ID_MAX + 1], size_t shard_count, bool stored_up,
             bool reaper_seen)
{
    fprintf (out, "# HELP nearchat_up Whether a daemon answered this scrape (the reaper: has reported within REAPER_TIMEOUT_S).\n"
                  "# TYPE nearchat_up gauge\n"
                  "nearchat_up{daemon=\"gateway\"} 1\n"
                  "nearchat_up{daemon=\"stored\"} %d\n"
                  "nearchat_up{daemon=\"reaper\"} %d\n",
             stored_up, reaper_seen);
    for (size_t i = 0; i < shard_count; i++) {
        bool answered = false;
        for (size_t s = 0; s < source_count; s++)
            if (sources [s].label && strcmp (sources [s].reply->instance, shards [i]) == 0)
                answered = true;
        fputs ("nearchat_up{daemon=\"roomd\",shard=\"", out);
        s_label_value (out, shards [i]);
        fprintf (out, "\"} %d\n", answered);
    }
    s_write (out, sources, source_count);
}

char *
metrics_render (const char *trace, size_t *size)
{
    static __thread metrics_set_t own;
    s_own (&own);
    proto_msg_t *replies [SOURCES_MAX] = { NULL };
    size_t reply_count = 0;
    source_t sources [SOURCES_MAX];
    size_t source_count = 0;
    sources [source_count++] = (source_t) { &own.reply, NULL };

    bool stored_up = false, reaper_seen = false;
    proto_msg_t *reply = s_ask (trace, NULL);
    if (reply) {
        stored_up = true;
        replies [reply_count++] = reply;
        sources [source_count++] = (source_t) { &reply->metrics_reply, NULL };
    }
    static __thread char shards [SOURCES_MAX - 3][PROTO_ID_MAX + 1];
    size_t shard_count = shards_live (shards, SOURCES_MAX - 3);
    for (size_t i = 0; i < shard_count; i++)
        if ((reply = s_ask (trace, shards [i]))) {
            replies [reply_count++] = reply;
            sources [source_count++] = (source_t) { &reply->metrics_reply, "shard" };
        }
    //  The last report stays shown, but the reaper is up only while
    //  its reports keep coming (REAPER_TIMEOUT_S).
    reaper_seen = links_reaper_up ();
    if ((reply = links_reaper_report ())) {
        replies [reply_count++] = reply;
        sources [source_count++] = (source_t) { &reply->metrics_reply, NULL };
    }

    //  Every reply is destroyed on the one way out below, written or not
    //  (a stream that could not be opened returned at once and leaked
    //  stored's, every shard's and the reaper's reply).
    char *text = NULL;
    FILE *out = open_memstream (&text, size);
    if (out) {
        s_write_all (out, sources, source_count, shards, shard_count, stored_up, reaper_seen);
        fclose (out);
    }
    for (size_t i = 0; i < reply_count; i++)
        proto_msg_destroy (&replies [i]);
    return text;
}
