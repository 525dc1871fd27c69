/*  =========================================================================
    test_up - `./nearchat up` is a supervisor: it brings back any daemon
    that dies, and stops every one it started when asked

    The real script runs the real binaries of this build (NEARCHAT_BIN_DIR,
    so nothing is rebuilt) on free loopback ports with a temporary DATA_DIR
    and two shards. Each daemon in turn (stored, the gateway, a shard, the
    reaper), found by pid as a child of the supervisor, is killed -9: a new
    process of that binary must take its place by itself, the supervisor's
    log must say which died and how, /healthz must say ok again with both
    shards, and a new room must take a message over WebSocket and give it
    back over HTTP. Then SIGINT: the supervisor must exit, no process it
    started may be left, and the ports must be free, which a second run on
    the same ports shows by coming up. That one is stopped with SIGTERM
    while a shard is stopped (SIGSTOP): the supervisor must SIGKILL it
    once its grace is over. A third run has TLS on: the edge (HAProxy,
    nearchat-edge) then serves https and the plain port in front of a
    gateway on EDGE_GATEWAY (its banner gives https and wss first); killed
    -9, the edge comes back like any daemon, and SIGTERM stops it by pid
    with the others. Last, a fourth run, with TLS, whose supervisor is
    itself killed -9: its daemons must still go (their parent-death
    signal), leaving no orphan.
    Waits are bounded; the times printed are figures, not checks.
    =========================================================================
*/

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "api.h"
#include "clock.h"
#include "route.h"

#define MAX_SEEN 64

static int s_http_port, s_stored_port, s_backend_port;
static int s_https_port;                //  with TLS (a certificate made here), else 0
static int s_gateway_port;              //  with TLS, the gateway's behind the edge
static char s_cert [PATH_MAX], s_key [PATH_MAX];
static pid_t s_supervisor;              //  0 when none runs
static char s_log [PATH_MAX];           //  the supervisor's stderr, daemons' logs too
static pid_t s_seen [MAX_SEEN];         //  every daemon pid this run saw
static int s_seen_count;

//  ---------------------------------------------------------------------------
//  The supervisor and its children

//  Start `nearchat up` with this test's ports, data and binaries. SIGINT and
//  SIGTERM are set back to their defaults first: a shell cannot trap a
//  signal that was ignored when it started.
static void
s_up_start (void)
{
    snprintf (s_log, sizeof s_log, "%s/up.log", harness_dir ());
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) {
        //  If this test dies, the supervisor is told to stop everything.
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        if (getppid () != parent)
            _exit (1);
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        char value [PATH_MAX + 64];
        snprintf (value, sizeof value, "%d", s_http_port);
        setenv ("HTTP_PORT", value, 1);
        setenv ("HTTP_BIND", "127.0.0.1", 1);
        snprintf (value, sizeof value, "tcp://127.0.0.1:%d", s_stored_port);
        setenv ("STORED_ENDPOINT", value, 1);
        snprintf (value, sizeof value, "tcp://127.0.0.1:%d", s_backend_port);
        setenv ("GATEWAY_BACKEND_ENDPOINT", value, 1);
        setenv ("GATEWAY_ENDPOINTS", value, 1);
        snprintf (value, sizeof value, "%s/data", harness_dir ());
        setenv ("DATA_DIR", value, 1);
        setenv ("NEARCHAT_BIN_DIR", NEARCHAT_BIN_DIR, 1);
        setenv ("ROOMD_SHARDS", "2", 1);
        //  A request to a daemon just killed fails fast, for the retries.
        setenv ("REQUEST_TIMEOUT_MS", "1000", 1);
        setenv ("LOG_LEVEL", "warn", 1);
        if (s_https_port) {
            snprintf (value, sizeof value, "%d", s_https_port);
            setenv ("HTTPS_PORT", value, 1);
            setenv ("TLS_CERT", s_cert, 1);
            setenv ("TLS_KEY", s_key, 1);
            snprintf (value, sizeof value, "127.0.0.1:%d", s_gateway_port);
            setenv ("EDGE_GATEWAY", value, 1);
        }
        int log_fd = open (s_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2 (log_fd, STDERR_FILENO);
        dup2 (log_fd, STDOUT_FILENO);
        execl ("/bin/bash", "bash", NEARCHAT_SOURCE_DIR "/nearchat", "up", (char *) NULL);
        perror ("bash");
        _exit (127);
    }
    REQUIRE (pid > 0);
    s_supervisor = pid;
    s_seen_count = 0;
}

//  The supervisor's children running binary (by /proc/PID/stat's comm and
//  parent): how many, their pids in pids (at most max). Every one is
//  remembered in s_seen.
static int
s_children (const char *binary, pid_t *pids, int max)
{
    DIR *proc = opendir ("/proc");
    if (!proc)
        return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (proc))) {
        char path [300], stat [512];
        if (entry->d_name [0] < '1' || entry->d_name [0] > '9')
            continue;
        snprintf (path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        size_t size = fread (stat, 1, sizeof stat - 1, file);
        fclose (file);
        stat [size] = 0;
        //  "pid (comm) state ppid ...": comm may hold spaces and parens.
        char *open = strchr (stat, '('), *close = strrchr (stat, ')');
        if (!open || !close || close < open)
            continue;
        *close = 0;
        int parent = 0;
        char state = 0;
        if (sscanf (close + 1, " %c %d", &state, &parent) != 2 || parent != s_supervisor
        ||  strcmp (open + 1, binary) != 0 || state == 'Z')
            continue;
        pid_t pid = (pid_t) atoi (stat);
        if (count < max)
            pids [count] = pid;
        count++;
        bool known = false;
        for (int i = 0; i < s_seen_count; i++)
            known |= s_seen [i] == pid;
        if (!known && s_seen_count < MAX_SEEN)
            s_seen [s_seen_count++] = pid;
    }
    closedir (proc);
    return count;
}

//  Wait (timeout_ms at most) until the supervisor has exactly want children
//  running binary, none of them gone (a pid just killed). Returns true then.
static bool
s_children_become (const char *binary, int want, pid_t gone, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (clock_mono_ms () < deadline) {
        pid_t pids [8];
        int count = s_children (binary, pids, 8);
        bool fresh = count == want;
        for (int i = 0; i < count && i < 8; i++)
            fresh &= pids [i] != gone;
        if (fresh)
            return true;
        usleep (20 * 1000);
    }
    fprintf (stderr, "  %s: never %d of it under the supervisor%s\n", binary, want,
             gone? " without the one killed": "");
    return false;
}

//  /healthz says ok with both shards (timeout_ms at most).
static bool
s_healthy (int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    char last [512] = "no answer";
    while (clock_mono_ms () < deadline) {
        http_response_t response;
        int status = http_request (s_http_port, "GET", "/healthz", NULL, 0, &response);
        json_t *health = status > 0? json_loads (response.body, 0, NULL): NULL;
        bool ok = status == 200 && j_str (health, "status") && !strcmp (j_str (health, "status"), "ok")
               && json_array_size (j_get (health, "shards")) == 2;
        if (status > 0)
            snprintf (last, sizeof last, "%d %s", status, response.body);
        json_decref (health);
        http_response_free (&response);
        if (ok)
            return true;
        usleep (20 * 1000);
    }
    fprintf (stderr, "  /healthz never said ok with 2 shards; last: %s\n", last);
    return false;
}

static void
s_print_log (void)
{
    char command [PATH_MAX + 32];
    snprintf (command, sizeof command, "tail -n 40 '%s' >&2", s_log);
    fprintf (stderr, "---- the last lines of %s\n", s_log);
    if (system (command) != 0)
        fprintf (stderr, "(cannot show it)\n");
}

//  Send sig to the supervisor and reap it (timeout_ms at most). Returns
//  true if it exited, by itself, in time.
static bool
s_up_signal (int sig, int timeout_ms)
{
    kill (s_supervisor, sig);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (clock_mono_ms () < deadline) {
        int status;
        if (waitpid (s_supervisor, &status, WNOHANG) == s_supervisor) {
            s_supervisor = 0;
            return sig == SIGKILL || WIFEXITED (status);
        }
        usleep (20 * 1000);
    }
    fprintf (stderr, "  the supervisor did not exit within %d ms of signal %d\n", timeout_ms, sig);
    kill (s_supervisor, SIGKILL);
    waitpid (s_supervisor, NULL, 0);
    s_supervisor = 0;
    return false;
}

//  pid runs (a zombie does not: an orphan's may wait for a slow reaper).
static bool
s_running (pid_t pid)
{
    char path [64], stat [512];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    size_t size = fread (stat, 1, sizeof stat - 1, file);
    fclose (file);
    stat [size] = 0;
    char *close = strrchr (stat, ')');
    return close && close [1] == ' ' && close [2] != 'Z' && close [2] != 'X';
}

//  No pid this run saw runs any more (timeout_ms at most, for daemons
//  still stopping). Any left is killed, so the next step starts clean.
static bool
s_none_left (int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    int left = 0;
    do {
        left = 0;
        for (int i = 0; i < s_seen_count; i++)
            left += s_running (s_seen [i]);
        if (left)
            usleep (20 * 1000);
    } while (left && clock_mono_ms () < deadline);
    for (int i = 0; left && i < s_seen_count; i++)
        if (s_running (s_seen [i])) {
            fprintf (stderr, "  pid %d is still running\n", (int) s_seen [i]);
            kill (s_seen [i], SIGKILL);
        }
    return left == 0;
}

//  Nothing listens on port: it can be bound at once.
static bool
s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    bool free = bind (fd, (struct sockaddr *) &address, sizeof address) == 0;
    if (!free)
        fprintf (stderr, "  port %d is still taken: %s\n", port, strerror (errno));
    close (fd);
    return free;
}

static void
s_stop_at_exit (void)
{
    if (s_supervisor) {
        kill (s_supervisor, SIGTERM);
        waitpid (s_supervisor, NULL, 0);
    }
}

//  The environment of pid holds setting ("NAME=value", exactly).
static bool
s_environ_has (pid_t pid, const char *setting)
{
    char path [64], environment [16384];
    snprintf (path, sizeof path, "/proc/%d/environ", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    size_t length = fread (environment, 1, sizeof environment - 1, file);
    fclose (file);
    environment [length] = 0;
    bool found = false;
    for (size_t at = 0; at < length && !found; at += strlen (environment + at) + 1)
        found = !strcmp (environment + at, setting);
    return found;
}

//  ---------------------------------------------------------------------------
//  Service: a new room takes a message over WebSocket and gives it back over
//  HTTP. A daemon just restarted may miss the first tries (a shard's hello
//  not yet heard, a request to the one killed): each step is retried, a
//  bounded number of times, as a client would.

//  join-room until user-joined for user comes (attempts at most).
static bool
s_join_retrying (ws_client_t *client, const char *room, const char *user, int attempts)
{
    for (int attempt = 0; attempt < attempts; attempt++) {
        ws_send (client, "{s:s, s:s, s:s}", "action", "join-room", "roomId", room,
                 "requestId", "join");
        json_t *frame = ws_expect_either (client, "user-joined", "userId", user,
                                          "error", "requestId", "join", API_WAIT_MS);
        bool joined = frame && j_str (frame, "type") && !strcmp (j_str (frame, "type"), "user-joined");
        if (frame && !joined)
            fprintf (stderr, "  join-room: error %lld %s; again\n",
                     (long long) j_num (frame, "status"), j_str (frame, "error"));
        json_decref (frame);
        if (joined) {
            json_decref (ws_expect (client, "message-history", API_WAIT_MS));
            return true;
        }
        usleep (200 * 1000);
    }
    return false;
}

//  A new room, owned by shard (NULL: by either): the two shards are
//  shard-1 and shard-2, and rooms go by rendezvous hash (route.h).
static const char *
s_room_of (const char *user, const char *shard)
{
    const char *shards [] = { "shard-1", "shard-2" };
    for (int attempt = 0; attempt < 32; attempt++) {
        const char *room = api_create_room (s_http_port, user, 20.0, 20.0, NULL, 0);
        if (!room || !shard || !strcmp (shards [route_pick (room, shards, 2)], shard))
            return room;
    }
    fprintf (stderr, "  32 rooms and none on %s\n", shard);
    return NULL;
}

static bool
s_service (const char *step, const char *shard)
{
    char user [64], text [128], path [256];
    snprintf (user, sizeof user, "u-%s", step);
    snprintf (text, sizeof text, "after %s", step);
    const char *room = s_room_of (user, shard);
    if (!room)
        return false;
    ws_client_t *client = api_connect (s_http_port, user, user);
    bool ok = client && s_join_retrying (client, room, user, 10)
           && api_say_retrying (client, room, "m-1", text, 10) == 1;
    ws_close (&client);
    json_t *messages = NULL;
    snprintf (path, sizeof path, "/rooms/%s/messages", room);
    ok = http_call (s_http_port, "GET", path, NULL, &messages) == 200 && ok;
    ok = ok && json_array_size (messages) == 1 && j_is (json_array_get (messages, 0), "text", text);
    json_decref (messages);
    return ok;
}

//  The SHARD_ID a shard runs with (its environment), in id (size bytes).
static void
s_shard_id (pid_t pid, char *id, size_t size)
{
    char path [64], environment [16384];
    snprintf (path, sizeof path, "/proc/%d/environ", (int) pid);
    snprintf (id, size, "?");
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    size_t length = fread (environment, 1, sizeof environment - 1, file);
    fclose (file);
    environment [length] = 0;
    for (size_t at = 0; at < length; at += strlen (environment + at) + 1)
        if (!strncmp (environment + at, "SHARD_ID=", 9))
            snprintf (id, size, "%s", environment + at + 9);
}

//  ---------------------------------------------------------------------------

//  kill -9 the first child running binary (want of them run); it must come
//  back by itself, logged, with the system serving again.
static void
s_test_kill (const char *binary, const char *name, int want)
{
    printf ("kill -9 %s: it comes back by itself\n", name);
    pid_t pids [8];
    REQUIRE (s_children (binary, pids, 8) == want);
    pid_t victim = pids [0];
    //  A shard must come back as itself, and a room it owns is served.
    char shard [64] = "", again [64] = "";
    if (!strcmp (binary, "roomd"))
        s_shard_id (victim, shard, sizeof shard);
    int64_t killed = clock_mono_ms ();
    kill (victim, SIGKILL);
    CHECK (s_children_become (binary, want, victim, 15000));
    int64_t back = clock_mono_ms ();
    CHECK (s_healthy (15000));
    int64_t healthy = clock_mono_ms ();
    if (*shard) {
        int count = s_children (binary, pids, 8);
        for (int i = 0; i < count && i < 8 && strcmp (again, shard); i++)
            s_shard_id (pids [i], again, sizeof again);
        if (!CHECK (!strcmp (again, shard)))
            fprintf (stderr, "  %s was killed; no shard runs with its id now\n", shard);
    }
    CHECK (s_service (name, *shard? shard: NULL));
    int64_t served = clock_mono_ms ();
    printf ("  a new %s after %lld ms, /healthz ok after %lld ms, a message through after %lld ms\n",
            binary, (long long) (back - killed), (long long) (healthy - killed),
            (long long) (served - killed));
    //  "shard-1 (pid N) was killed by SIGKILL after ..."; "restarting it in".
    char line [128];
    snprintf (line, sizeof line, " (pid %d) was killed by SIGKILL", (int) victim);
    if (!CHECK (harness_logged (s_log, line)) || !CHECK (harness_logged (s_log, "restarting it in")))
        s_print_log ();
}

static void
s_test_come_up (const char *how)
{
    printf ("%s: up with every daemon, /healthz ok\n", how);
    s_up_start ();
    pid_t pids [8];
    CHECK (s_healthy (20000));
    CHECK (s_children ("stored", pids, 8) == 1);
    CHECK (s_children ("gateway", pids, 8) == 1);
    CHECK (s_children ("roomd", pids, 8) == 2);
    CHECK (s_children ("reaper", pids, 8) == 1);
    //  The banner gives what a client should use: with TLS, https and wss.
    char plain [200], banner [400];
    snprintf (plain, sizeof plain, "http://127.0.0.1:%d (WebSocket ws://127.0.0.1:%d/ws)",
              s_http_port, s_http_port);
    if (s_https_port)
        snprintf (banner, sizeof banner, "== nearchat serves https://127.0.0.1:%d (WebSocket "
                  "wss://127.0.0.1:%d/ws), and plain %s\n", s_https_port, s_https_port, plain);
    else
        snprintf (banner, sizeof banner, "== nearchat serves %s\n", plain);
    if (!CHECK (harness_logged (s_log, banner))) {
        fprintf (stderr, "  no banner line %s", banner);
        s_print_log ();
    }
    if (s_https_port) {
        //  TLS is the edge's: HAProxy on both ports, the gateway behind it
        //  on EDGE_GATEWAY, with no TLS and believing X-Forwarded-For.
        CHECK (s_children ("haproxy", pids, 8) == 1);
        if (!CHECK (harness_logged (s_log, "through the edge (HAProxy)")))
            s_print_log ();
        http_response_t response;
        CHECK (https_request (s_https_port, "GET", "/healthz", NULL, 0, &response) == 200);
        json_t *health = json_loads (response.body, 0, NULL);
        char url [128];
        snprintf (url, sizeof url, "wss://127.0.0.1:%d/ws", s_https_port);
        CHECK (j_is (health, "websocketEndpoint", url));
        json_decref (health);
        http_response_free (&response);
        CHECK (http_request (s_gateway_port, "GET", "/healthz", NULL, 0, &response) == 200);
        http_response_free (&response);
        if (CHECK (s_children ("gateway", pids, 8) == 1)) {
            CHECK (s_environ_has (pids [0], "TRUST_PROXY_HEADERS=1"));
        }
    }
}

static void
s_test_stop (int sig, const char *name)
{
    printf ("%s to the supervisor: it exits, nothing it started is left, the ports are free\n", name);
    int64_t asked = clock_mono_ms ();
    CHECK (s_up_signal (sig, 15000));
    printf ("  exited after %lld ms\n", (long long) (clock_mono_ms () - asked));
    CHECK (s_none_left (sig == SIGKILL? 10000: 1000));
    CHECK (s_port_free (s_http_port));
    CHECK (s_port_free (s_stored_port));
    CHECK (s_port_free (s_backend_port));
    if (s_https_port) {
        CHECK (s_port_free (s_https_port));
        CHECK (s_port_free (s_gateway_port));
    }
}

int
main (void)
{
    harness_init ("up");
    atexit (s_stop_at_exit);
    s_http_port = harness_free_port ();
    s_stored_port = harness_free_port ();
    s_backend_port = harness_free_port ();

    s_test_come_up ("./nearchat up");
    CHECK (s_service ("start", NULL));
    s_test_kill ("stored", "stored", 1);
    s_test_kill ("gateway", "gateway", 1);
    s_test_kill ("roomd", "shard", 2);
    s_test_kill ("reaper", "reaper", 1);
    s_test_stop (SIGINT, "SIGINT");

    //  Run again at once, on the same ports and data; stop it with a shard
    //  that cannot answer SIGTERM (stopped): the grace ends, SIGKILL.
    s_test_come_up ("again on the same ports");
    CHECK (s_service ("rerun", NULL));
    pid_t shards [8];
    REQUIRE (s_children ("roomd", shards, 8) == 2);
    kill (shards [0], SIGSTOP);
    s_test_stop (SIGTERM, "SIGTERM, a shard stopped (SIGSTOP)");
    if (!CHECK (harness_logged (s_log, "so killed: ")))
        s_print_log ();

    //  With TLS, so with the edge in front: killed -9 it comes back, and
    //  SIGTERM stops it by pid, cleanly (HAProxy's exit by that SIGTERM
    //  is no failure worth a line).
    snprintf (s_cert, sizeof s_cert, "%s/cert.pem", harness_dir ());
    snprintf (s_key, sizeof s_key, "%s/key.pem", harness_dir ());
    char command [3 * PATH_MAX];
    snprintf (command, sizeof command,
              "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
              "-keyout '%s' -out '%s' 2>/dev/null", s_key, s_cert);
    REQUIRE (system (command) == 0);
    s_https_port = harness_free_port ();
    s_gateway_port = harness_free_port ();
    s_test_come_up ("with TLS");
    CHECK (s_service ("tls", NULL));
    s_test_kill ("haproxy", "edge", 1);
    s_test_stop (SIGTERM, "SIGTERM, with the edge");
    if (!CHECK (!harness_logged (s_log, "edge was killed by SIGTERM")))
        s_print_log ();

    //  Then a supervisor killed -9, which cannot stop anything: its
    //  daemons, the edge too, go by their parent-death signal.
    s_test_come_up ("once more, with TLS");
    s_test_stop (SIGKILL, "SIGKILL");
    return harness_finish ();
}
