/*  =========================================================================
    bench_stored - what stored can carry, measured

    Phase "append": C client threads (default 8, over 100 rooms, the
    fanout scenario's) each keep up to N appends in flight, as
    roomd shards will, for a few seconds; every append is a distinct durable
    write (its own client id), answered only after its commit. Like a
    shard, each client speaks with the shard key and sends the appends it
    makes at once as one frame, and stored answers a commit's in one
    (--one-a-frame: the tool key, an append a frame and an answer each). Prints acks
    per second, the acknowledgement latency (p50, p99, max) and the mean
    writes per commit that group commit achieved.

    Phase "geo": loads R active rooms spread over a 1 x 1 degree area (a
    city and its roads; 500 m radius), then S client threads each keep 8
    searches in flight at random points of that area. Prints searches per
    second, latency and hits per search.

    By default it starts its own stored (next to this binary) on a free
    loopback port with a temporary DATA_DIR, and stops it after. Bounded in
    time and count; loopback only. Figures, never a pass or a fail.
    =========================================================================
*/

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "client.h"
#include "clock.h"
#include "ids.h"
#include "bus.h"

#define SEARCH_WINDOW   8
#define RING            8192        //  send times by request id; > any window

typedef struct {
    const char *endpoint;
    int clients, inflight, seconds, rooms, geo_rooms, search_clients, text_bytes;
    const char *json_path;
    bool one_a_frame;                   //  as a tool does, not as a shard
} options_t;

typedef struct {
    const options_t *options;
    int index;
    char (*room_ids) [IDS_UUID_SIZE];
    int room_count;
    bool search;                    //  geo phase rather than append phase
    //  Results
    int64_t *latencies_ns;
    size_t samples, capacity;
    uint64_t done, errors, hits;
} worker_t;

static options_t s_options = { NULL, 8, 64, 5, 100, 100000, 4, 200, NULL, false };

static double
s_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double) ((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

//  One worker: keep the window full for the phase's duration.
static void *
s_worker (void *arg)
{
    worker_t *self = arg;
    const options_t *options = self->options;
    proto_client_t *client = proto_client_new (options->endpoint);
    int window = self->search? SEARCH_WINDOW: options->inflight;
    static __thread int64_t sent_at [RING];
    char *text = malloc ((size_t) options->text_bytes + 1);
    memset (text, 'm', (size_t) options->text_bytes);
    text [options->text_bytes] = 0;
    uint64_t state = 0x9e3779b97f4a7c15ULL * (uint64_t) (self->index + 1), next_id = 1;
    char client_id [32];
    int outstanding = 0;
    int64_t end = clock_mono_ms () + options->seconds * 1000;
    while (clock_mono_ms () < end || outstanding > 0) {
        while (outstanding < window && clock_mono_ms () < end) {
            proto_msg_t request = { .request_id = next_id };
            if (self->search) {
                request.type = PROTO_GEO_SEARCH;
                request.geo_search.latitude = 48.3 + s_random (&state);
                request.geo_search.longitude = 1.8 + s_random (&state);
                request.geo_search.limit = 50;
            }
            else {
                snprintf (client_id, sizeof client_id, "w%d-%llu", self->index,
                          (unsigned long long) next_id);
                request.type = PROTO_MSG_APPEND;
                request.msg_append.message = (proto_message_t) {
                    .room_id = self->room_ids [(size_t) (s_random (&state) * self->room_count)],
                    .client_id = client_id, .user_id = "bench", .user_name = "Bench",
                    .text = text, .created_at_ms = clock_now_ms () };
            }
            sent_at [next_id % RING] = clock_mono_ns ();
            int rc = options->one_a_frame || self->search? proto_client_send (client, &request)
                                                         : proto_client_queue (client, &request);
            if (rc) {
                self->errors++;
                break;
            }
            next_id++;
            outstanding++;
        }
        if (proto_client_flush (client))
            self->errors++;
        proto_msg_t *reply = proto_client_recv (client, 5000);
        if (!reply) {
            self->errors += (uint64_t) outstanding;     //  timed out: count and give up
            break;
        }
        outstanding--;
        int64_t latency = clock_mono_ns () - sent_at [reply->request_id % RING];
        if (reply->type == PROTO_APPEND_REPLY || reply->type == PROTO_GEO_REPLY) {
            self->done++;
            if (reply->type == PROTO_GEO_REPLY)
                self->hits += reply->geo_reply.count;
            if (self->samples < self->capacity)
                self->latencies_ns [self->samples++] = latency;
        }
        else
            self->errors++;
        proto_msg_destroy (&reply);
    }
    free (text);
    proto_client_destroy (&client);
    return NULL;
}

static int
s_compare_i64 (const void *a, const void *b)
{
    int64_t left = *(const int64_t *) a, right = *(const int64_t *) b;
    return (left > right) - (left < right);
}

typedef struct {
    double per_second, p50_ms, p99_ms, max_ms, hits_per_op;
    uint64_t done, errors;
} figures_t;

//  Run `count` workers for the phase and gather their figures.
static figures_t
s_run_phase (int count, bool search, char (*room_ids) [IDS_UUID_SIZE], int room_count)
{
    worker_t *workers = calloc ((size_t) count, sizeof *workers);
    pthread_t *threads = calloc ((size_t) count, sizeof *threads);
    size_t capacity = 4000000 / (size_t) count;
    int64_t start = clock_mono_ns ();
    for (int i = 0; i < count; i++) {
        workers [i] = (worker_t) { &s_options, i, room_ids, room_count, search,
                                   malloc (capacity * sizeof (int64_t)), 0, capacity, 0, 0, 0 };
        pthread_create (&threads [i], NULL, s_worker, &workers [i]);
    }
    figures_t figures = { 0 };
    size_t samples = 0;
    uint64_t hits = 0;
    for (int i = 0; i < count; i++) {
        pthread_join (threads [i], NULL);
        figures.done += workers [i].done;
        figures.errors += workers [i].errors;
        samples += workers [i].samples;
        hits += workers [i].hits;
    }
    double elapsed_s = (double) (clock_mono_ns () - start) / 1e9;
    int64_t *all = malloc ((samples + 1) * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        memcpy (all + at, workers [i].latencies_ns, workers [i].samples * sizeof *all);
        at += workers [i].samples;
        free (workers [i].latencies_ns);
    }
    qsort (all, samples, sizeof *all, s_compare_i64);
    figures.per_second = (double) figures.done / elapsed_s;
    if (samples) {
        figures.p50_ms = (double) all [samples / 2] / 1e6;
        figures.p99_ms = (double) all [(size_t) ((double) samples * 0.99)] / 1e6;
        figures.max_ms = (double) all [samples - 1] / 1e6;
    }
    figures.hits_per_op = figures.done? (double) hits / (double) figures.done: 0;
    free (all);
    free (workers);
    free (threads);
    return figures;
}

//  ---------------------------------------------------------------------------
//  Loading and stats

static proto_stats_reply_t
s_stats (proto_client_t *client)
{
    proto_stats_reply_t stats = { 0 };
    proto_msg_t request = { .type = PROTO_STORE_STATS };
    proto_msg_t *reply = proto_client_call (client, &request, 5000);
    if (reply && reply->type == PROTO_STATS_REPLY)
        stats = reply->stats_reply;
    proto_msg_destroy (&reply);
    return stats;
}

//  Put count rooms, pipelined; returns rooms per second.
static double
s_load_rooms (proto_client_t *client, char (*ids) [IDS_UUID_SIZE], int count, bool spread)
{
    uint64_t state = 12345;
    const char *people [] = { "p1", "p2", "p3" };
    int64_t now = clock_now_ms (), start = clock_mono_ns ();
    int sent = 0, received = 0;
    while (received < count) {
        while (sent < count && sent - received < 512) {
            ids_uuid (ids [sent]);
            proto_msg_t request = { .type = PROTO_ROOM_PUT, .room_put.room = {
                .id = ids [sent], .radius_m = 500, .creator = "p1",
                .latitude = spread? 48.3 + s_random (&state): 48.85,
                .longitude = spread? 1.8 + s_random (&state): 2.35,
                .participants = people, .participant_count = 1 + sent % 3,
                .created_at_ms = now, .last_activity_ms = now, .status = PROTO_STATUS_ACTIVE,
                .room_type = sent % 4? PROTO_ROOM_PUBLIC: PROTO_ROOM_PRIVATE,
                .max_participants = 20 } };
            if (proto_client_send (client, &request))
                break;
            sent++;
        }
        proto_msg_t *reply = proto_client_recv (client, 10000);
        if (!reply) {
            fprintf (stderr, "bench_stored: stored stopped answering while loading rooms\n");
            exit (1);
        }
        proto_msg_destroy (&reply);
        received++;
    }
    return count / ((double) (clock_mono_ns () - start) / 1e9);
}

//  ---------------------------------------------------------------------------
//  CPU: what a phase cost stored and these clients, which share the cores

//  CPU seconds pid has used (user and system, all threads), or -1.
static double
s_cpu_of (pid_t pid)
{
    char path [64], line [1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t got = fread (line, 1, sizeof line - 1, file);
    fclose (file);
    line [got] = 0;
    //  After the command name (which may hold spaces and parentheses):
    //  state, then utime and stime are the 12th and 13th fields.
    char *at = strrchr (line, ')');
    unsigned long long user, system;
    if (!at || sscanf (at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                       &user, &system) != 2)
        return -1;
    return (double) (user + system) / (double) sysconf (_SC_CLK_TCK);
}

//  ---------------------------------------------------------------------------
//  Our own stored

static pid_t s_stored_pid;
static char s_data_dir [256];

static void
s_start_stored (char *endpoint, size_t size)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t length = sizeof address;
    if (bind (fd, (struct sockaddr *) &address, sizeof address)
    ||  getsockname (fd, (struct sockaddr *) &address, &length)) {
        perror ("bench_stored: free port");
        exit (1);
    }
    close (fd);
    snprintf (endpoint, size, "tcp://127.0.0.1:%d", ntohs (address.sin_port));
    snprintf (s_data_dir, sizeof s_data_dir, "/tmp/nearchat-bench-XXXXXX");
    if (!mkdtemp (s_data_dir)) {
        perror ("bench_stored: mkdtemp");
        exit (1);
    }
    char self [PATH_MAX] = { 0 }, binary [PATH_MAX + 8];
    if (readlink ("/proc/self/exe", self, sizeof self - 1) < 0) {
        perror ("bench_stored: /proc/self/exe");
        exit (1);
    }
    snprintf (binary, sizeof binary, "%s/stored", dirname (self));
    //  Its own keys, in its data directory.
    char keys_dir [300];
    snprintf (keys_dir, sizeof keys_dir, "%s/keys", s_data_dir);
    if (bus_keys_make (keys_dir, false))
        exit (1);
    setenv ("KEYS_DIR", keys_dir, 1);
    s_stored_pid = fork ();
    if (s_stored_pid == 0) {
        char env_endpoint [128], env_data [300];
        snprintf (env_endpoint, sizeof env_endpoint, "STORED_ENDPOINT=%s", endpoint);
        snprintf (env_data, sizeof env_data, "DATA_DIR=%s", s_data_dir);
        putenv (env_endpoint);
        putenv (env_data);
        putenv ("LOG_LEVEL=warn");
        execl (binary, binary, (char *) NULL);
        perror (binary);
        _exit (127);
    }
}

static void
s_stop_stored (void)
{
    if (s_stored_pid <= 0)
        return;
    kill (s_stored_pid, SIGTERM);
    waitpid (s_stored_pid, NULL, 0);
    char command [300];
    snprintf (command, sizeof command, "rm -rf '%s'", s_data_dir);
    if (system (command) != 0)
        fprintf (stderr, "bench_stored: could not remove %s\n", s_data_dir);
}

static void
s_machine (char *cpu, size_t size)
{
    snprintf (cpu, size, "unknown CPU");
    FILE *file = fopen ("/proc/cpuinfo", "r");
    char line [256];
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "model name", 10) == 0) {
            char *colon = strchr (line, ':');
            snprintf (cpu, size, "%.100s", colon? colon + 2: line);
            cpu [strcspn (cpu, "\n")] = 0;
            break;
        }
    if (file)
        fclose (file);
}

static void
s_usage (void)
{
    printf ("usage: bench_stored [--endpoint tcp://HOST:PORT] [--clients 8] [--inflight 64]\n"
            "                    [--rooms 100] (rooms the appends go to)\n"
            "                    [--seconds 5] [--rooms-geo 100000] [--search-clients 4]\n"
            "                    [--text-bytes 200] [--quick] [--json PATH]\n"
            "                    [--one-a-frame] (appends as a tool sends them, not a shard)\n");
}

int
main (int argc, char *argv [])
{
    for (int i = 1; i < argc; i++) {
        const char *flag = argv [i], *value = i + 1 < argc? argv [i + 1]: NULL;
        int *number = strcmp (flag, "--clients") == 0? &s_options.clients
                    : strcmp (flag, "--inflight") == 0? &s_options.inflight
                    : strcmp (flag, "--seconds") == 0? &s_options.seconds
                    : strcmp (flag, "--rooms") == 0? &s_options.rooms
                    : strcmp (flag, "--rooms-geo") == 0? &s_options.geo_rooms
                    : strcmp (flag, "--search-clients") == 0? &s_options.search_clients
                    : strcmp (flag, "--text-bytes") == 0? &s_options.text_bytes: NULL;
        if (number && value && atoi (value) > 0) {
            *number = atoi (value);
            i++;
        }
        else
        if (strcmp (flag, "--endpoint") == 0 && value)
            s_options.endpoint = argv [++i];
        else
        if (strcmp (flag, "--json") == 0 && value)
            s_options.json_path = argv [++i];
        else
        if (strcmp (flag, "--one-a-frame") == 0)
            s_options.one_a_frame = true;
        else
        if (strcmp (flag, "--quick") == 0) {
            s_options.seconds = 2;
            s_options.geo_rooms = 10000;
        }
        else {
            s_usage ();
            return strcmp (flag, "--help") == 0? 0: 2;
        }
    }
    if (s_options.inflight > RING / 2 || s_options.text_bytes > 4000) {
        fprintf (stderr, "bench_stored: --inflight at most %d, --text-bytes at most 4000\n",
                 RING / 2);
        return 2;
    }
    zsys_set_logstream (NULL);
    char endpoint [64];
    if (!s_options.endpoint) {
        s_start_stored (endpoint, sizeof endpoint);
        s_options.endpoint = endpoint;
    }
    //  A shard's key (a tool's with --one-a-frame): KEYS_DIR's (the stored
    //  of --endpoint) or our stored's.
    const char *keys_dir = getenv ("KEYS_DIR");
    if (bus_setup (keys_dir && *keys_dir? keys_dir: BUS_KEYS_DIR_DEFAULT,
                   s_options.one_a_frame? BUS_TOOL: BUS_SHARD))
        return 2;
    proto_client_t *client = proto_client_new (s_options.endpoint);
    int64_t deadline = clock_mono_ms () + 10000;
    while (s_stats (client).map_size == 0 && clock_mono_ms () < deadline)
        usleep (50000);
    if (s_stats (client).map_size == 0) {
        fprintf (stderr, "bench_stored: no stored answers at %s\n", s_options.endpoint);
        s_stop_stored ();
        return 1;
    }

    char cpu [128];
    s_machine (cpu, sizeof cpu);
    printf ("bench_stored: %s, %ld cores; stored at %s\n\n", cpu, sysconf (_SC_NPROCESSORS_ONLN),
            s_options.endpoint);

    //  Phase 1: durable appends.
    char (*append_rooms) [IDS_UUID_SIZE] = calloc ((size_t) s_options.rooms, IDS_UUID_SIZE);
    s_load_rooms (client, append_rooms, s_options.rooms, false);
    proto_stats_reply_t before = s_stats (client);
    double stored_cpu = s_stored_pid > 0? s_cpu_of (s_stored_pid): -1;
    double own_cpu = s_cpu_of (getpid ());
    int64_t phase_start = clock_mono_ns ();
    figures_t append = s_run_phase (s_options.clients, false, append_rooms, s_options.rooms);
    double phase_s = (double) (clock_mono_ns () - phase_start) / 1e9;
    if (stored_cpu >= 0)
        stored_cpu = (s_cpu_of (s_stored_pid) - stored_cpu) / phase_s;
    own_cpu = (s_cpu_of (getpid ()) - own_cpu) / phase_s;
    proto_stats_reply_t after = s_stats (client);
    double batch = after.commits > before.commits
                 ? (double) (after.writes - before.writes) / (double) (after.commits - before.commits)
                 : 0;

    //  Phase 2: geo search.
    char (*geo_rooms) [IDS_UUID_SIZE] = calloc ((size_t) s_options.geo_rooms, IDS_UUID_SIZE);
    double load_rate = s_load_rooms (client, geo_rooms, s_options.geo_rooms, true);
    figures_t geo = s_run_phase (s_options.search_clients, true, NULL, 0);
    proto_stats_reply_t final = s_stats (client);

    printf ("%-44s %14s %12s %10s %10s %8s\n", "figure", "per second", "p50 ms", "p99 ms",
            "max ms", "errors");
    printf ("%-44s %14.0f %12.3f %10.3f %10.3f %8llu   (target >= 100000/s)\n",
            "durable appends, acknowledged", append.per_second, append.p50_ms, append.p99_ms,
            append.max_ms, (unsigned long long) append.errors);
    printf ("%-44s %14.0f %12s %10s %10s %8s\n", "rooms loaded (pipelined puts)", load_rate,
            "", "", "", "");
    printf ("%-44s %14.0f %12.3f %10.3f %10.3f %8llu   (target >= 20000/s, p99 < 5 ms)\n",
            "geo searches", geo.per_second, geo.p50_ms, geo.p99_ms, geo.max_ms,
            (unsigned long long) geo.errors);
    printf ("\nappends: %d clients x %d in flight to %d rooms, %d-byte texts, %d s; "
            "%.1f writes a commit\n", s_options.clients, s_options.inflight, s_options.rooms,
            s_options.text_bytes, s_options.seconds, batch);
    //  Both on the same cores: what one append costs each says what limits the figure.
    if (stored_cpu >= 0 && append.per_second > 0)
        printf ("appends' CPU: stored %.0f%% of a core (%.1f us an append), these clients "
                "%.0f%% (%.1f us)\n", stored_cpu * 100, stored_cpu * 1e6 / append.per_second,
                own_cpu * 100, own_cpu * 1e6 / append.per_second);
    printf ("geo: %d active rooms over 1 x 1 degree (radius 500 m), %d clients x %d in flight, "
            "%.1f hits a search\n", s_options.geo_rooms, s_options.search_clients, SEARCH_WINDOW,
            geo.hits_per_op);
    printf ("LMDB map: %.0f MiB used of %.0f MiB\n", (double) final.map_used / 1048576,
            (double) final.map_size / 1048576);

    if (s_options.json_path) {
        FILE *json = fopen (s_options.json_path, "w");
        if (json) {
            fprintf (json, "{\"cpu\":\"%s\",\"cores\":%ld,\n"
                     " \"append\":{\"perSecond\":%.0f,\"p50Ms\":%.3f,\"p99Ms\":%.3f,"
                     "\"maxMs\":%.3f,\"errors\":%llu,\"writesPerCommit\":%.1f,"
                     "\"storedCores\":%.2f,\"clientCores\":%.2f},\n"
                     " \"geo\":{\"rooms\":%d,\"perSecond\":%.0f,\"p50Ms\":%.3f,\"p99Ms\":%.3f,"
                     "\"maxMs\":%.3f,\"errors\":%llu,\"hitsPerSearch\":%.1f}}\n",
                     cpu, sysconf (_SC_NPROCESSORS_ONLN), append.per_second, append.p50_ms,
                     append.p99_ms, append.max_ms, (unsigned long long) append.errors, batch,
                     stored_cpu, own_cpu,
                     s_options.geo_rooms, geo.per_second, geo.p50_ms, geo.p99_ms, geo.max_ms,
                     (unsigned long long) geo.errors, geo.hits_per_op);
            fclose (json);
        }
    }
    free (append_rooms);
    free (geo_rooms);
    proto_client_destroy (&client);
    s_stop_stored ();
    return append.errors || geo.errors? 1: 0;
}
