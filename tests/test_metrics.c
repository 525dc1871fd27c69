/*  =========================================================================
    test_metrics - GET /metrics against the real system (stored, gateway,
    2 shards, the reaper every second)

    The text is read by Prometheus's own parser (python3-prometheus-client)
    and checked line by line against the text format here as well: a
    family's HELP and TYPE once, before its samples; sample names that
    belong to their family (_bucket, _sum, _count for histograms); label
    sets well formed; values numbers; histogram buckets cumulative and
    ending at +Inf equal to _count. Every metric the operators' list names
    is there, from every daemon, and the counters move when two users
    chat: deliveries, stored's writes and commit histograms, the shards'
    messages and send latencies, the reaper's passes.
    =========================================================================
*/

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;
static int s_port;

#define FAMILIES_MAX 128

typedef struct {
    char name [128];
    char type [16];
    bool has_samples;
} family_t;

//  The parsed scrape: families, and every sample as "name{labels}" -> value.
typedef struct {
    family_t families [FAMILIES_MAX];
    int family_count;
    char *text;
    bool valid;
} scrape_t;

static bool
s_name_ok (const char *name, size_t size)
{
    if (!size)
        return false;
    for (size_t i = 0; i < size; i++)
        if (!(isalpha ((unsigned char) name [i]) || name [i] == '_' || name [i] == ':'
        ||   (i && isdigit ((unsigned char) name [i]))))
            return false;
    return true;
}

static family_t *
s_family (scrape_t *scrape, const char *name)
{
    for (int i = 0; i < scrape->family_count; i++)
        if (strcmp (scrape->families [i].name, name) == 0)
            return &scrape->families [i];
    return NULL;
}

//  The family a sample name belongs to (a histogram's suffixes stripped).
static family_t *
s_family_of_sample (scrape_t *scrape, const char *sample, size_t size)
{
    char name [128];
    snprintf (name, sizeof name, "%.*s", (int) size, sample);
    family_t *family = s_family (scrape, name);
    if (family)
        return family;
    const char *suffixes [] = { "_bucket", "_sum", "_count" };
    for (int i = 0; i < 3; i++) {
        size_t length = strlen (suffixes [i]);
        if (size > length && !strcmp (name + size - length, suffixes [i])) {
            name [size - length] = 0;
            family = s_family (scrape, name);
            if (family && !strcmp (family->type, "histogram"))
                return family;
        }
    }
    return NULL;
}

//  Labels: {name="value",...} with \\, \" and \n escapes. Returns the
//  position after '}', or NULL if malformed.
static const char *
s_labels (const char *at)
{
    if (*at++ != '{')
        return NULL;
    while (*at != '}') {
        const char *start = at;
        while (isalnum ((unsigned char) *at) || *at == '_')
            at++;
        if (at == start || *at++ != '=' || *at++ != '"')
            return NULL;
        while (*at != '"') {
            if (!*at || *at == '\n')
                return NULL;
            if (*at == '\\' && !strchr ("\\\"n", *++at))
                return NULL;
            at++;
        }
        at++;
        if (*at == ',')
            at++;
        else
        if (*at != '}')
            return NULL;
    }
    return at + 1;
}

//  Parse and check the whole text; failures are CHECKed with the line.
static void
s_parse (scrape_t *scrape, const char *text)
{
    memset (scrape, 0, sizeof *scrape);
    scrape->text = strdup (text);
    scrape->valid = true;
    char *save = NULL;
    char *copy = strdup (text);
    for (char *line = strtok_r (copy, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        bool ok = true;
        if (!strncmp (line, "# HELP ", 7) || !strncmp (line, "# TYPE ", 7)) {
            char name [128], rest [512] = "";
            ok = sscanf (line + 7, "%127s %511[^\n]", name, rest) >= 1
              && s_name_ok (name, strlen (name));
            family_t *family = ok? s_family (scrape, name): NULL;
            if (ok && !family) {
                ok = scrape->family_count < FAMILIES_MAX;
                if (ok) {
                    family = &scrape->families [scrape->family_count++];
                    snprintf (family->name, sizeof family->name, "%s", name);
                }
            }
            if (ok && line [2] == 'T') {
                //  One TYPE a family, before any of its samples.
                ok = !family->type [0] && !family->has_samples
                  && (!strcmp (rest, "counter") || !strcmp (rest, "gauge")
                  ||  !strcmp (rest, "histogram"));
                snprintf (family->type, sizeof family->type, "%s", rest);
            }
        }
        else
        if (line [0] == '#')
            ok = true;
        else {
            size_t size = strcspn (line, "{ ");
            family_t *family = s_family_of_sample (scrape, line, size);
            const char *at = line + size;
            if (*at == '{')
                at = s_labels (at);
            char *end = NULL;
            ok = family && family->type [0] && at && *at == ' ';
            if (ok) {
                double value = strtod (at + 1, &end);
                ok = end && *end == 0 && !isnan (value);
                family->has_samples = true;
            }
        }
        if (!ok) {
            fprintf (stderr, "  not Prometheus text: %s\n", line);
            scrape->valid = false;
        }
    }
    free (copy);
}

//  The value of the sample "name{labels}" as written (labels "" for none), or NaN.
static double
s_value (scrape_t *scrape, const char *name, const char *labels)
{
    char key [256];
    snprintf (key, sizeof key, "\n%s%s ", name, labels);
    const char *at = strstr (scrape->text, key);
    return at? strtod (at + strlen (key), NULL): NAN;
}

//  The sum of every sample of name (any labels), or NaN if none.
static double
s_sum (scrape_t *scrape, const char *name)
{
    double sum = NAN;
    size_t length = strlen (name);
    for (const char *at = scrape->text; (at = strstr (at, name)); at += length) {
        if (at != scrape->text && at [-1] != '\n')
            continue;
        const char *after = at + length;
        if (*after == '{')
            after = s_labels (after);
        if (!after || *after != ' ')
            continue;
        sum = (isnan (sum)? 0: sum) + strtod (after + 1, NULL);
    }
    return sum;
}

//  Buckets of a histogram sample set are cumulative and end at +Inf == _count.
static bool
s_histogram_ok (scrape_t *scrape, const char *name, const char *label)
{
    char prefix [256];
    snprintf (prefix, sizeof prefix, "\n%s_bucket{%s%sle=\"", name, label, *label? ",": "");
    double last = -1, inf = NAN;
    for (const char *at = scrape->text; (at = strstr (at, prefix)); at++) {
        const char *close = strstr (at + strlen (prefix), "\"} ");
        if (!close)
            return false;
        double count = strtod (close + 3, NULL);
        if (count < last)
            return false;
        last = count;
        if (!strncmp (at + strlen (prefix), "+Inf", 4))
            inf = count;
    }
    char count_name [160];
    snprintf (count_name, sizeof count_name, "%s_count", name);
    char labels [160] = "";
    if (*label)
        snprintf (labels, sizeof labels, "{%s}", label);
    return !isnan (inf) && inf == s_value (scrape, count_name, labels);
}

static void
s_scrape (scrape_t *scrape)
{
    http_response_t response;
    CHECK (http_request (s_port, "GET", "/metrics", NULL, 0, &response) == 200);
    CHECK (!strncmp (response.content_type, "text/plain", 10));
    //  A newline before the first line too, so every sample is "\nname".
    char *text = malloc (response.size + 2);
    text [0] = '\n';
    memcpy (text + 1, response.body, response.size + 1);
    s_parse (scrape, text);
    free (text);
    http_response_free (&response);
    CHECK (scrape->valid);
}

//  The scrape through Prometheus's own parser (Debian's
//  python3-prometheus-client): it must take every family. Returns how many
//  families it read, or -1.
static int
s_prometheus_parses (const scrape_t *scrape)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/scrape.txt", harness_dir ());
    FILE *file = fopen (path, "w");
    if (!file)
        return -1;
    fputs (scrape->text + 1, file);         //  without the newline s_scrape put first
    fclose (file);
    char command [PATH_MAX + 256];
    snprintf (command, sizeof command,
              "/usr/bin/python3 -c 'import sys\n"
              "from prometheus_client.parser import text_string_to_metric_families as parse\n"
              "print(len(list(parse(open(sys.argv[1]).read()))))' '%s'", path);
    FILE *pipe = popen (command, "r");
    if (!pipe)
        return -1;
    int families = -1;
    if (fscanf (pipe, "%d", &families) != 1)
        families = -1;
    return pclose (pipe) == 0? families: -1;
}

static void
s_free (scrape_t *scrape)
{
    free (scrape->text);
    scrape->text = NULL;
}

static void
s_test_metrics (void)
{
    printf ("/metrics is Prometheus text with every daemon's metrics, and they move\n");
    //  The reaper reports after each pass: wait for its first.
    scrape_t before;
    int64_t deadline = clock_mono_ms () + 5000;
    for (;;) {
        s_scrape (&before);
        if (s_value (&before, "nearchat_up", "{daemon=\"reaper\"}") == 1
        ||  clock_mono_ms () > deadline)
            break;
        s_free (&before);
        usleep (200 * 1000);
    }
    const char *names [] = {
        "nearchat_gateway_connections_open", "nearchat_gateway_connects_total",
        "nearchat_gateway_disconnects_total", "nearchat_gateway_messages_received_total",
        "nearchat_gateway_messages_delivered_total", "nearchat_gateway_slow_reader_drops_total",
        "nearchat_gateway_socket_writes_total",
        "nearchat_gateway_shards_live", "nearchat_gateway_loop_busy_ratio",
        "nearchat_gateway_write_hold_seconds",
        "nearchat_stored_map_size_bytes", "nearchat_stored_map_used_bytes",
        "nearchat_stored_rooms_active", "nearchat_stored_commits_total",
        "nearchat_stored_commit_batch_writes", "nearchat_stored_commit_seconds",
        "nearchat_roomd_rooms", "nearchat_roomd_send_seconds", "nearchat_roomd_messages_total",
        "nearchat_gateway_delivery_seconds", "nearchat_gateway_frames_dropped_total",
        "nearchat_reaper_sweeps_total", "nearchat_reaper_rooms_closed_total",
        "nearchat_up",
    };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        if (!CHECK (s_family (&before, names [i]) && s_family (&before, names [i])->has_samples))
            fprintf (stderr, "  %s is missing\n", names [i]);
    CHECK (s_value (&before, "nearchat_up", "{daemon=\"stored\"}") == 1);
    CHECK (s_value (&before, "nearchat_up", "{daemon=\"reaper\"}") == 1);
    for (int i = 0; i < s_system.shard_count; i++) {
        char labels [64];
        snprintf (labels, sizeof labels, "{daemon=\"roomd\",shard=\"%s\"}", s_system.shard_ids [i]);
        CHECK (s_value (&before, "nearchat_up", labels) == 1);
        snprintf (labels, sizeof labels, "{shard=\"%s\"}", s_system.shard_ids [i]);
        CHECK (!isnan (s_value (&before, "nearchat_roomd_rooms", labels)));
    }
    CHECK (s_value (&before, "nearchat_gateway_shards_live", "") == s_system.shard_count);
    double busy = s_value (&before, "nearchat_gateway_loop_busy_ratio", "");
    CHECK (busy >= 0 && busy <= 1);
    CHECK (s_value (&before, "nearchat_gateway_write_hold_seconds", "") >= 0);
    CHECK (s_value (&before, "nearchat_stored_map_used_bytes", "")
           <= s_value (&before, "nearchat_stored_map_size_bytes", ""));
    CHECK (s_sum (&before, "nearchat_reaper_sweeps_total") >= 1);

    //  Traffic: a room, two users, five messages each way.
    const char *room = api_create_room (s_port, "mia", 10, 10, NULL, 0);
    REQUIRE (room);
    ws_client_t *mia = api_connect (s_port, "mia", NULL);
    ws_client_t *noa = api_connect (s_port, "noa", NULL);
    REQUIRE (mia && noa);
    json_decref (api_join (mia, room, "mia", -1));
    json_decref (api_join (noa, room, "noa", -1));
    for (int i = 0; i < 5; i++) {
        char id [32], text [32];
        snprintf (id, sizeof id, "m-%d", i);
        snprintf (text, sizeof text, "hello %d", i);
        CHECK (api_say (mia, room, id, text) > 0);
        CHECK (api_heard (noa, text) > 0);
    }
    //  Scrape again until the reaper has passed again and the shards and
    //  the loop have counted what they did after the acks (10 s at most);
    //  the checks below then say what the last scrape showed.
    scrape_t after;
    deadline = clock_mono_ms () + 10000;
    for (;;) {
        s_scrape (&after);
        bool settled = s_sum (&after, "nearchat_reaper_sweeps_total")
                       > s_sum (&before, "nearchat_reaper_sweeps_total")
                    && s_sum (&after, "nearchat_roomd_send_seconds_count") >= 5
                    && s_value (&after, "nearchat_gateway_delivery_seconds_count", "")
                       >= s_value (&before, "nearchat_gateway_delivery_seconds_count", "") + 15;
        if (settled || clock_mono_ms () > deadline)
            break;
        s_free (&after);
        usleep (100 * 1000);
    }
    CHECK (s_value (&after, "nearchat_gateway_connections_open", "") == 2);
    CHECK (s_value (&after, "nearchat_gateway_connects_total", "")
           == s_value (&before, "nearchat_gateway_connects_total", "") + 2);
    //  Each message reached both users, with acks and joins on top.
    CHECK (s_value (&after, "nearchat_gateway_messages_delivered_total", "")
           >= s_value (&before, "nearchat_gateway_messages_delivered_total", "") + 15);
    //  A write carries one frame or more.
    double writes = s_value (&after, "nearchat_gateway_socket_writes_total", "")
                  - s_value (&before, "nearchat_gateway_socket_writes_total", "");
    CHECK (writes >= 1 && writes <= s_value (&after, "nearchat_gateway_messages_delivered_total", "")
                                   - s_value (&before, "nearchat_gateway_messages_delivered_total", ""));
    CHECK (s_value (&after, "nearchat_stored_writes_total", "")
           >= s_value (&before, "nearchat_stored_writes_total", "") + 5);
    CHECK (s_value (&after, "nearchat_stored_commit_seconds_count", "")
           > s_value (&before, "nearchat_stored_commit_seconds_count", ""));
    CHECK (s_value (&after, "nearchat_stored_messages", "") == 5);
    CHECK (s_sum (&after, "nearchat_roomd_messages_total") == 5);
    CHECK (s_sum (&after, "nearchat_roomd_send_seconds_count") == 5);
    CHECK (s_sum (&after, "nearchat_roomd_sockets") == 2);
    CHECK (s_sum (&after, "nearchat_reaper_sweeps_total")
           > s_sum (&before, "nearchat_reaper_sweeps_total"));
    int families = s_prometheus_parses (&after);
    if (!CHECK (families == after.family_count))
        fprintf (stderr, "  Prometheus's parser read %d families of %d\n", families,
                 after.family_count);
    CHECK (s_histogram_ok (&after, "nearchat_stored_commit_seconds", ""));
    CHECK (s_histogram_ok (&after, "nearchat_stored_commit_batch_writes", ""));
    CHECK (s_histogram_ok (&after, "nearchat_reaper_sweep_seconds", ""));
    CHECK (s_histogram_ok (&after, "nearchat_gateway_delivery_seconds", ""));
    CHECK (s_value (&after, "nearchat_gateway_delivery_seconds_count", "")
           >= s_value (&before, "nearchat_gateway_delivery_seconds_count", "") + 15);
    for (int i = 0; i < s_system.shard_count; i++) {
        char label [64];
        snprintf (label, sizeof label, "shard=\"%s\"", s_system.shard_ids [i]);
        CHECK (s_histogram_ok (&after, "nearchat_roomd_send_seconds", label));
    }
    ws_close (&mia);
    ws_close (&noa);
    s_free (&before);
    s_free (&after);

    //  A shard gone: it is out of the scrape, which still answers.
    printf ("a stopped shard leaves the scrape, which still answers\n");
    harness_shard_stop (&s_system, 1, false);
    REQUIRE (harness_system_wait (&s_system, 1, 10000) == 0);
    scrape_t less;
    s_scrape (&less);
    char labels [64];
    snprintf (labels, sizeof labels, "{shard=\"%s\"}", s_system.shard_ids [1]);
    CHECK (isnan (s_value (&less, "nearchat_roomd_rooms", labels)));
    snprintf (labels, sizeof labels, "{shard=\"%s\"}", s_system.shard_ids [0]);
    CHECK (!isnan (s_value (&less, "nearchat_roomd_rooms", labels)));
    s_free (&less);
}

int
main (void)
{
    harness_init ("metrics");
    const char *env [] = { "REAPER_INTERVAL_S=1", NULL };
    REQUIRE (harness_system_start (&s_system, 2, true, env) == 0);
    s_port = s_system.http_port;
    s_test_metrics ();
    return harness_finish ();
}
