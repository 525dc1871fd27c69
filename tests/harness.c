/*  =========================================================================
    harness.c - starting, watching and stopping nearchat's daemons in tests
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>
#include "harness.h"
#include "clock.h"
#include "ids.h"
#include "bus.h"

#define MAX_DAEMONS 16

static char s_dir [1024];     //  short enough that paths under it always fit
static const char *s_test = "test";
static int s_passed, s_failed;
static harness_daemon_t *s_daemons [MAX_DAEMONS];  //  every daemon ever started

bool
harness_check (bool ok, const char *file, int line, const char *expression)
{
    if (ok)
        s_passed++;
    else {
        s_failed++;
        fprintf (stderr, "FAIL %s:%d: %s\n", file, line, expression);
    }
    return ok;
}

void
harness_abort (void)
{
    fprintf (stderr, "%s: stopping after a failed requirement\n", s_test);
    exit (harness_finish ());
}

void
harness_init (const char *test_name)
{
    s_test = test_name;
    const char *tmp = getenv ("TMPDIR");
    snprintf (s_dir, sizeof s_dir, "%s/nearchat-%s-XXXXXX", tmp && *tmp? tmp: "/tmp", test_name);
    if (!mkdtemp (s_dir)) {
        perror ("mkdtemp");
        exit (1);
    }
    signal (SIGPIPE, SIG_IGN);
    zsys_set_logstream (NULL);
    printf ("%s: working in %s\n", test_name, s_dir);
    //  The bus's keys, for every daemon the test starts (they inherit
    //  KEYS_DIR) and for the test's own clients, which speak as a tool.
    char keys_dir [PATH_MAX];
    snprintf (keys_dir, sizeof keys_dir, "%s/keys", s_dir);
    if (bus_keys_make (keys_dir, false) || bus_setup (keys_dir, BUS_TOOL)) {
        fprintf (stderr, "%s: cannot make the bus's keys in %s\n", test_name, keys_dir);
        exit (1);
    }
    setenv ("KEYS_DIR", keys_dir, 1);
}

const char *
harness_dir (void)
{
    return s_dir;
}

static void
s_print_log (const harness_daemon_t *daemon)
{
    FILE *log = fopen (daemon->log_path, "r");
    if (!log)
        return;
    fprintf (stderr, "---- last lines of %s's log (%s)\n", daemon->binary, daemon->log_path);
    char line [1024];
    int count = 0;
    while (fgets (line, sizeof line, log))
        count++;
    rewind (log);
    for (int i = 0; fgets (line, sizeof line, log); i++)
        if (i >= count - 30)
            fputs (line, stderr);
    fclose (log);
}

proto_client_t *
harness_client_as (const char *endpoint, const char *server_role, const char *role)
{
    const char *keys_dir = getenv ("KEYS_DIR");
    if (bus_setup (keys_dir, role))
        return NULL;
    proto_client_t *client = proto_client_new_to (endpoint, server_role);
    bus_setup (keys_dir, BUS_TOOL);     //  the key is the socket's now
    return client;
}

int
harness_finish (void)
{
    bus_close ();       //  its ZAP handler, before czmq's own shutdown
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s_daemons [i] && s_daemons [i]->pid) {
            if (s_failed)
                s_print_log (s_daemons [i]);
            harness_stop (s_daemons [i]);
        }
    if (s_failed == 0 && s_dir [0]) {
        char command [PATH_MAX + 16];
        snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
        if (system (command) != 0)
            fprintf (stderr, "could not remove %s\n", s_dir);
    }
    else
    if (s_dir [0])
        fprintf (stderr, "%s: left %s for a look\n", s_test, s_dir);
    printf ("%d passed, %d failed\n", s_passed, s_failed);
    return s_failed? 1: 0;
}

int
harness_free_port (void)
{
    //  The kernel may hand the same free port to two binds in a row once
    //  the first socket is closed: a test asking for two ports (an edge's
    //  plain and TLS ports) would get one twice. So the ports given out
    //  lately are never given again.
    static int given [64];
    static size_t given_count;
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = { .sin_family = AF_INET,
                                       .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
        socklen_t size = sizeof address;
        if (fd < 0 || bind (fd, (struct sockaddr *) &address, sizeof address)
        ||  getsockname (fd, (struct sockaddr *) &address, &size)) {
            perror ("free port");
            exit (1);
        }
        close (fd);
        int port = ntohs (address.sin_port);
        bool repeat = false;
        for (size_t i = 0; i < given_count && i < 64; i++)
            repeat |= given [i] == port;
        if (repeat)
            continue;
        given [given_count++ % 64] = port;
        return port;
    }
    fprintf (stderr, "free port: the kernel kept giving ports already given\n");
    exit (1);
}

int
harness_logged_lines (const char *path, const char *text)
{
    FILE *log = fopen (path, "r");
    if (!log)
        return 0;
    char line [4096];
    int count = 0;
    while (fgets (line, sizeof line, log))
        count += strstr (line, text) != NULL;
    fclose (log);
    return count;
}

bool
harness_logged (const char *path, const char *text)
{
    return harness_logged_lines (path, text) > 0;
}

void
harness_stored_init (harness_daemon_t *daemon)
{
    static int count;
    memset (daemon, 0, sizeof *daemon);
    daemon->binary = "stored";
    snprintf (daemon->endpoint, sizeof daemon->endpoint, "tcp://127.0.0.1:%d",
              harness_free_port ());
    snprintf (daemon->data_dir, sizeof daemon->data_dir, "%s/data-%d", s_dir, count);
    snprintf (daemon->log_path, sizeof daemon->log_path, "%s/stored-%d.log", s_dir, count++);
}

static void
s_remember (harness_daemon_t *daemon)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s_daemons [i] == daemon)
            return;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (!s_daemons [i]) {
            s_daemons [i] = daemon;
            return;
        }
}

//  fork and exec binary with the test's environment plus env.
static pid_t
s_spawn (const char *binary, const char *const *env, const char *const *args, int log_fd)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", NEARCHAT_BIN_DIR, binary);
    pid_t pid = fork ();
    if (pid == 0) {
        for (int i = 0; env && env [i]; i++)
            putenv ((char *) env [i]);
        if (log_fd >= 0) {
            dup2 (log_fd, STDERR_FILENO);
            dup2 (log_fd, STDOUT_FILENO);
        }
        char *argv [16] = { path };
        for (int i = 0; args && args [i] && i < 14; i++)
            argv [i + 1] = (char *) args [i];
        execv (path, argv);
        perror (path);
        _exit (127);
    }
    return pid;
}

int
harness_start (harness_daemon_t *daemon)
{
    char endpoint [96], data_dir [PATH_MAX + 16];
    snprintf (endpoint, sizeof endpoint, "STORED_ENDPOINT=%s", daemon->endpoint);
    snprintf (data_dir, sizeof data_dir, "DATA_DIR=%s", daemon->data_dir);
    const char *env [20] = { endpoint, data_dir, "LOG_LEVEL=debug" };
    int count = 3;
    for (int i = 0; daemon->env [i] && count < 19; i++)
        env [count++] = daemon->env [i];
    int log_fd = open (daemon->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    daemon->pid = s_spawn (daemon->binary, env, NULL, log_fd);
    close (log_fd);
    s_remember (daemon);

    //  Ready when it answers; give up after 10 s or if it died.
    proto_client_t *client = proto_client_new (daemon->endpoint);
    int64_t deadline = clock_mono_ms () + 10000;
    int rc = -1;
    while (rc && clock_mono_ms () < deadline) {
        proto_msg_t request = { .type = PROTO_STORE_STATS };
        proto_msg_t *reply = proto_client_call (client, &request, 200);
        if (reply && reply->type == PROTO_STATS_REPLY)
            rc = 0;
        proto_msg_destroy (&reply);
        int status;
        if (rc && waitpid (daemon->pid, &status, WNOHANG) == daemon->pid) {
            daemon->pid = 0;
            break;
        }
    }
    proto_client_destroy (&client);
    if (rc) {
        fprintf (stderr, "%s did not become ready\n", daemon->binary);
        s_print_log (daemon);
    }
    return rc;
}

void
harness_daemon_init (harness_daemon_t *daemon, const char *binary)
{
    static int count;
    memset (daemon, 0, sizeof *daemon);
    daemon->binary = binary;
    snprintf (daemon->log_path, sizeof daemon->log_path, "%s/%s-%d.log", s_dir, binary, count++);
}

int
harness_spawn (harness_daemon_t *daemon)
{
    const char *env [20] = { "LOG_LEVEL=debug" };
    int count = 1;
    for (int i = 0; daemon->env [i] && count < 19; i++)
        env [count++] = daemon->env [i];
    int log_fd = open (daemon->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    daemon->pid = s_spawn (daemon->binary, env, NULL, log_fd);
    close (log_fd);
    if (daemon->pid < 0) {
        daemon->pid = 0;
        return -1;
    }
    s_remember (daemon);
    return 0;
}

int
harness_stop (harness_daemon_t *daemon)
{
    if (!daemon->pid)
        return -1;
    kill (daemon->pid, SIGTERM);
    int status = 0;
    for (int waited = 0; waited < 500; waited++) {
        if (waitpid (daemon->pid, &status, WNOHANG) == daemon->pid) {
            daemon->pid = 0;
            return WIFEXITED (status)? WEXITSTATUS (status): 128 + WTERMSIG (status);
        }
        usleep (10000);
    }
    fprintf (stderr, "%s did not stop in 5 s; killing it\n", daemon->binary);
    harness_kill (daemon);
    return -1;
}

void
harness_kill (harness_daemon_t *daemon)
{
    if (!daemon->pid)
        return;
    kill (daemon->pid, SIGKILL);
    waitpid (daemon->pid, NULL, 0);
    daemon->pid = 0;
}

int
harness_log_lines (const harness_daemon_t *daemon, const char *trace, const char *prefix,
                   char *first, size_t size)
{
    FILE *file = fopen (daemon->log_path, "r");
    if (!file)
        return 0;
    char line [4096];
    int count = 0;
    while (fgets (line, sizeof line, file)) {
        json_t *object = json_loads (line, 0, NULL);
        const char *msg = json_string_value (json_object_get (object, "msg"));
        const char *its_trace = json_string_value (json_object_get (object, "trace"));
        if (msg && !strncmp (msg, prefix, strlen (prefix))
        &&  (!trace || (its_trace && !strcmp (its_trace, trace)))) {
            if (count++ == 0 && first)
                snprintf (first, size, "%s", msg);
        }
        json_decref (object);
    }
    fclose (file);
    return count;
}

void
harness_print_log (const harness_daemon_t *daemon)
{
    s_print_log (daemon);
}

int
harness_run (const char *binary, const char *const *env, const char *const *args,
             char *output, size_t size)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/run-output", s_dir);
    int fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    pid_t pid = s_spawn (binary, env, args, fd);
    int status = -1;
    for (int waited = 0; waited < 500; waited++) {
        if (waitpid (pid, &status, WNOHANG) == pid)
            break;
        usleep (10000);
    }
    if (!WIFEXITED (status)) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
    }
    ssize_t got = pread (fd, output, size - 1, 0);
    output [got > 0? got: 0] = 0;
    close (fd);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

proto_msg_t *
harness_call (proto_client_t *client, proto_msg_t *request)
{
    proto_msg_t *reply = proto_client_call (client, request, 5000);
    if (!reply)
        fprintf (stderr, "no reply to %s\n", proto_type_name (request->type));
    return reply;
}

proto_room_t
harness_room (double latitude, double longitude)
{
    static char ids [64][IDS_UUID_SIZE];
    static int next;
    char *id = ids [next++ % 64];
    ids_uuid (id);
    int64_t now = clock_now_ms ();
    proto_room_t room = {
        .id = id, .latitude = latitude, .longitude = longitude, .radius_m = 500,
        .creator = "creator", .created_at_ms = now, .last_activity_ms = now,
        .status = PROTO_STATUS_ACTIVE, .room_type = PROTO_ROOM_PUBLIC, .max_participants = 20
    };
    return room;
}

double
harness_random (void)
{
    static uint64_t state = 0x2545f4914f6cdd1dULL;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double) ((state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
