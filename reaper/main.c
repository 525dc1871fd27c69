/*  =========================================================================
    reaper - closes the rooms nobody has used for a while, and clears what
    a dead gateway left behind

    Every REAPER_INTERVAL_S it asks stored for the active rooms whose last
    activity is older than ROOM_IDLE_TIMEOUT_S and closes each through a
    gateway, which routes the close to the shard that owns the room: the
    shard closes it in stored (only if it is still idle: the condition is
    checked again there, atomically, so a room that woke up in between stays
    open) and its members hear room-closed.

    Gateways beat into stored every second, each run of a gateway (a
    process) under an incarnation of its own (proto.h, gateway-beat). A
    run silent for longer than GATEWAY_TIMEOUT_S died with its sockets, and
    a run that a restart of its GATEWAY_ID replaced is dead at once; stored
    lists both (gateways-silent), declaring the silent ones dead so that
    their beats are refused from then on. Each socket of a dead run that
    was in a room leaves it (through a live gateway and the room's shard,
    so the others hear user-left), its record is deleted, and when none is
    left the run is forgotten. Only that run's records are listed (by
    gateway id and incarnation), so the new run's are never touched. A run
    that was only stalled learns it from the refusal of its next beat and
    closes its sockets (1012), so that their clients come back.

    After each pass, and every REPORT_MS besides (in a long pass too), it
    sends its metrics to every gateway: a gateway that has heard none for
    REAPER_TIMEOUT_S says the reaper is down (/healthz, nearchat_up).

    The reaper holds no state; any number may run, and one that dies loses
    nothing. Calls are one at a time: a sweep is small and rare work.
    =========================================================================
*/

#include <string.h>
#include "client.h"
#include "clock.h"
#include "config.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"

#define CALL_TIMEOUT_MS 5000
#define REPORT_MS       1000            //  the longest between two reports, idle or busy

static struct {
    const char *stored_endpoint;
    const char *gateway_endpoints;
    int64_t idle_timeout_s;
    int64_t interval_s;
    int64_t batch;
    int64_t gateway_timeout_s;
} s_config;
static log_level_t s_log_level;

static config_option_t s_options [] = {
    { "STORED_ENDPOINT", CONFIG_STRING, "tcp://127.0.0.1:5555", 0, 256,
      "ZeroMQ endpoint of stored", &s_config.stored_endpoint },
    { "GATEWAY_ENDPOINTS", CONFIG_STRING, "tcp://127.0.0.1:5556", 0, 4000,
      "gateways' backend endpoints (comma-separated); closes go through the first that answers",
      &s_config.gateway_endpoints },
    { "ROOM_IDLE_TIMEOUT_S", CONFIG_INT, "1800", 1, 365LL * 86400,
      "a room idle for longer than this is closed", &s_config.idle_timeout_s },
    { "REAPER_INTERVAL_S", CONFIG_INT, "60", 1, 86400,
      "how often idle rooms are looked for", &s_config.interval_s },
    { "REAPER_BATCH", CONFIG_INT, "100", 1, PROTO_LIST_MAX,
      "idle rooms (or a dead gateway's connections) read from stored at a time",
      &s_config.batch },
    { "GATEWAY_TIMEOUT_S", CONFIG_INT, "10", 2, 86400,
      "a gateway silent this long is dead: its connections are cleared",
      &s_config.gateway_timeout_s },
    MONITOR_OPTION,
    TAP_OPTION,
    BUS_OPTION,
    { "LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0,
      "debug, info, warn or error", &s_log_level },
    { .name = NULL }
};

#define GATEWAYS_MAX 16

static proto_client_t *s_stored;
static proto_client_t *s_gateways [GATEWAYS_MAX];
static size_t s_gateway_count;

static uint64_t s_sweeps, s_closed, s_gateways_forgotten;
static metrics_histogram_t s_pass_seconds;
static int64_t s_last_pass_ms;          //  when the last pass began (wall clock)
static int64_t s_reported_ms;           //  monotonic time of the last report

static void s_report_due (void);

//  A room request through the first gateway that answers (each routes it
//  to the room's shard). Returns the reply, or NULL if none answered or
//  every one said 503 (no shard, or stored down: try again next sweep).
static proto_msg_t *
s_through_gateway (proto_msg_t *request)
{
    char trace [IDS_TRACE_SIZE];
    snprintf (request->trace_id, sizeof request->trace_id, "%s", ids_trace (trace));
    for (size_t i = 0; i < s_gateway_count; i++) {
        request->request_id = 0;
        proto_msg_t *reply = proto_client_call (s_gateways [i], request, CALL_TIMEOUT_MS);
        if (reply && !(reply->type == PROTO_ERROR && reply->error.status == 503))
            return reply;
        proto_msg_destroy (&reply);
    }
    return NULL;
}

//  Close one room. Returns true if the room is closed now (by us or before us).
static bool
s_close (const proto_room_t *room, int64_t idle_before_ms)
{
    proto_msg_t request = { .type = PROTO_ROOM_CLOSE, .room_close = {
        .room_id = room->id, .idle_before_ms = idle_before_ms } };
    proto_msg_t *reply = s_through_gateway (&request);
    if (!reply) {
        log_write (LOG_LEVEL_WARN, request.trace_id, "no gateway could close room %s", room->id);
        return false;
    }
    bool closed = reply->type == PROTO_ROOM_REPLY;
    uint16_t status = reply->type == PROTO_ERROR? reply->error.status: 0;
    if (closed)
        log_write (LOG_LEVEL_INFO, request.trace_id, "closed room %s, idle since %lld",
                   room->id, (long long) room->last_activity_ms);
    else
    if (status == 409 || status == 404)
        log_write (LOG_LEVEL_DEBUG, request.trace_id, "room %s was not closed: %s",
                   room->id, reply->error.reason);
    else
        log_write (LOG_LEVEL_WARN, request.trace_id, "closing room %s failed: %s",
                   room->id, status? reply->error.reason: "odd reply");
    proto_msg_destroy (&reply);
    return closed || status == 404;
}

//  One sweep: every room idle since the cutoff, a batch at a time. A room
//  that could not be closed (every gateway away) is left for the next
//  sweep; the batch loop stops when a batch closes nothing, so it ends.
static void
s_sweep (void)
{
    int64_t cutoff = clock_now_ms () - s_config.idle_timeout_s * 1000;
    for (;;) {
        proto_msg_t request = { .type = PROTO_ROOMS_IDLE, .rooms_idle = {
            .before_ms = cutoff, .limit = (uint32_t) s_config.batch } };
        proto_msg_t *reply = proto_client_call (s_stored, &request, CALL_TIMEOUT_MS);
        if (!reply || reply->type != PROTO_ROOM_LIST) {
            //  error.reason is only there in an error: any other reply
            //  is a peer out of step with us (its union holds other data).
            log_warn ("stored did not list idle rooms: %s",
                      !reply? "no answer"
                      : reply->type == PROTO_ERROR? reply->error.reason: "odd reply");
            proto_msg_destroy (&reply);
            return;
        }
        uint32_t count = reply->room_list.count, closed = 0;
        for (uint32_t i = 0; i < count && !zsys_interrupted; i++) {
            closed += s_close (&reply->room_list.rooms [i], cutoff);
            s_report_due ();
        }
        proto_msg_destroy (&reply);
        s_closed += closed;
        if (count < (uint32_t) s_config.batch || closed == 0 || zsys_interrupted)
            return;
    }
}

//  One connection of a dead run: out of its room, then deleted. Returns
//  true if it is gone; false if it stays for the next pass (its room's
//  shard or stored did not answer).
static bool
s_clear_connection (const proto_connection_t *connection)
{
    if (connection->room_id) {
        proto_msg_t leave = { .type = PROTO_ROOM_LEAVE, .room_leave = {
            .room_id = connection->room_id, .user_id = connection->user_id,
            .conn_id = connection->conn_id, .user_name = connection->user_name,
            .closed = true } };         //  its shard deletes the record as it goes
        proto_msg_t *left = s_through_gateway (&leave);
        if (!left)
            return false;               //  the room's shard is away: next pass
        proto_msg_destroy (&left);
    }
    proto_msg_t del = { .type = PROTO_CONN_DEL, .conn_del.conn_id = connection->conn_id };
    proto_msg_t *deleted = proto_client_call (s_stored, &del, CALL_TIMEOUT_MS);
    bool gone = deleted != NULL;
    proto_msg_destroy (&deleted);
    return gone;
}

//  Every connection of a dead run, in this pass, REAPER_BATCH at a time
//  (a reply holds PROTO_LIST_MAX at most, and each batch is listed anew so
//  that nothing is held across calls). Returns true when none is left.
//
//  conn-list lists a run's connections in conn id order from the first,
//  and each cleared one is deleted, so the next listing begins where the
//  last ended, but for the ones kept (their room's shard is away): those
//  were all listed before the rest and sort first, so a listing of kept +
//  REAPER_BATCH skips its first kept entries. (Should another reaper
//  delete some meanwhile, or a stalled run write one, a few are skipped or
//  tried twice: they wait for the next pass, no more.) Kept ones wait for
//  the next pass; past PROTO_LIST_MAX of them, so does the rest. Between
//  connections the reaper still reports (s_report_due) and a signal still
//  stops it, so a run of 10,000 sockets starves neither.
static bool
s_clear_run (const proto_gateway_run_t *run)
{
    uint32_t kept = 0, cleared = 0, batches = 0;
    bool empty = false;
    while (!zsys_interrupted && kept + (uint32_t) s_config.batch <= PROTO_LIST_MAX) {
        proto_msg_t list = { .type = PROTO_CONN_LIST, .conn_list = {
            .gateway_id = run->gateway_id, .incarnation = run->incarnation,
            .limit = kept + (uint32_t) s_config.batch } };
        proto_msg_t *reply = proto_client_call (s_stored, &list, CALL_TIMEOUT_MS);
        if (!reply || reply->type != PROTO_CONN_LIST_REPLY) {
            proto_msg_destroy (&reply);
            break;                      //  stored away: the next pass goes on
        }
        uint32_t count = reply->conn_list_reply.count;
        for (uint32_t i = kept; i < count && !zsys_interrupted; i++) {
            s_report_due ();
            if (s_clear_connection (&reply->conn_list_reply.connections [i]))
                cleared++;
            else
                kept++;
        }
        proto_msg_destroy (&reply);
        batches++;
        if (count <= kept) {            //  nothing new listed: that was all
            empty = count == 0;
            break;
        }
    }
    if (cleared)
        log_info ("cleared %u connections of gateway %s (run %s), which is dead, in %u "
                  "batches%s", cleared, run->gateway_id, run->incarnation, batches,
                  kept? "; the rest wait for their rooms' shards": "");
    return empty;
}

static void
s_clear_gateways (void)
{
    proto_msg_t request = { .type = PROTO_GATEWAYS_SILENT, .gateways_silent = {
        .before_ms = clock_now_ms () - s_config.gateway_timeout_s * 1000 } };
    proto_msg_t *reply = proto_client_call (s_stored, &request, CALL_TIMEOUT_MS);
    if (!reply || reply->type != PROTO_GATEWAY_LIST) {
        proto_msg_destroy (&reply);
        return;
    }
    for (uint32_t i = 0; i < reply->gateway_list.count && !zsys_interrupted; i++) {
        const proto_gateway_run_t *run = &reply->gateway_list.gateways [i];
        if (s_clear_run (run)) {
            //  Nothing left of it: forget it (its beats, should it be only
            //  stalled, are refused all the same: it is unknown).
            proto_msg_t forget = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
                .gateway_id = run->gateway_id, .incarnation = run->incarnation,
                .at_ms = clock_now_ms (), .gone = true } };
            proto_msg_t *done = proto_client_call (s_stored, &forget, CALL_TIMEOUT_MS);
            proto_msg_destroy (&done);
            log_info ("forgot gateway %s (run %s)", run->gateway_id, run->incarnation);
            s_gateways_forgotten++;
        }
    }
    proto_msg_destroy (&reply);
}

//  Tell every gateway what we did (the reaper answers no one, so it reports
//  after each pass; a gateway shows the last report in /metrics).
static void
s_report (void)
{
    s_reported_ms = clock_mono_ms ();
    metrics_set_t set;
    metrics_set_init (&set, "reaper", "reaper");
    metrics_counter (&set, "nearchat_reaper_sweeps_total", "Passes over idle rooms and dead gateways.",
                     (double) s_sweeps);
    metrics_counter (&set, "nearchat_reaper_rooms_closed_total", "Idle rooms closed.",
                     (double) s_closed);
    metrics_counter (&set, "nearchat_reaper_gateways_forgotten_total",
                     "Dead gateways whose connections were cleared.",
                     (double) s_gateways_forgotten);
    metrics_gauge (&set, "nearchat_reaper_last_sweep_timestamp_seconds",
                   "When the last pass began (Unix time).", (double) s_last_pass_ms / 1000);
    metrics_histogram (&set, "nearchat_reaper_sweep_seconds", "How long one pass took.",
                       &s_pass_seconds);
    proto_msg_t report = { .type = PROTO_METRICS_REPLY, .metrics_reply = set.reply };
    for (size_t i = 0; i < s_gateway_count; i++)
        if (proto_client_send (s_gateways [i], &report))
            log_debug ("a metrics report could not be sent to a gateway");
}

//  A report, if the last one is REPORT_MS old: gateways take a reaper they
//  have not heard from for REAPER_TIMEOUT_S as down, busy or not.
static void
s_report_due (void)
{
    if (clock_mono_ms () - s_reported_ms >= REPORT_MS)
        s_report ();
}

int
main (int argc, char *argv [])
{
    config_load ("reaper", "reaper: closes nearchat's idle rooms.", s_options, argc, argv);
    log_init ("reaper", s_log_level);
    zsys_set_logstream (NULL);
    zsys_init ();
    zsys_set_io_threads (1);

    if (bus_start (BUS_REAPER) || tap_open ("reaper"))
        return 1;
    s_stored = proto_client_new (s_config.stored_endpoint);
    char endpoints [4096];
    snprintf (endpoints, sizeof endpoints, "%s", s_config.gateway_endpoints);
    char *save = NULL;
    for (char *endpoint = strtok_r (endpoints, ", ", &save); endpoint;
         endpoint = strtok_r (NULL, ", ", &save))
        if (s_gateway_count < GATEWAYS_MAX
        && (s_gateways [s_gateway_count] = proto_client_new_to (endpoint, BUS_GATEWAY)))
            s_gateway_count++;
    if (!s_stored || !s_gateway_count) {
        log_error ("bad endpoint in STORED_ENDPOINT or GATEWAY_ENDPOINTS");
        return 2;
    }
    log_info ("closing rooms idle for %llds, every %llds",
              (long long) s_config.idle_timeout_s, (long long) s_config.interval_s);

    metrics_histogram_init (&s_pass_seconds, metrics_seconds_bounds, metrics_seconds_bound_count);
    int64_t next_sweep = clock_mono_ms ();
    while (!zsys_interrupted) {
        if (clock_mono_ms () >= next_sweep) {
            int64_t started_ns = clock_mono_ns ();
            s_last_pass_ms = clock_now_ms ();
            s_sweep ();
            s_clear_gateways ();
            s_sweeps++;
            metrics_histogram_observe (&s_pass_seconds,
                                       (double) (clock_mono_ns () - started_ns) / 1e9);
            s_report ();
            next_sweep = clock_mono_ms () + s_config.interval_s * 1000;
        }
        s_report_due ();
        //  Short naps, so that a signal stops us at once.
        int64_t nap = next_sweep - clock_mono_ms ();
        zclock_sleep ((int) (nap < 0? 0: nap > 100? 100: nap));
    }
    for (size_t i = 0; i < s_gateway_count; i++)
        proto_client_destroy (&s_gateways [i]);
    proto_client_destroy (&s_stored);
    tap_close ();
    bus_close ();
    log_info ("stopped after %llu sweeps, %llu rooms closed",
              (unsigned long long) s_sweeps, (unsigned long long) s_closed);
    return 0;
}
