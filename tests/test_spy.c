/*  =========================================================================
    test_spy - nearchat-spy on the taps of every daemon (stored, gateway,
    1 shard, each with TAP_ENDPOINT=tcp://127.0.0.1:*, its port logged)

    While a user joins a room and says something, the spy, filtered to
    that room, prints the join and the send as each daemon saw them: the
    gateway sending room-join and room-send, the shard receiving them and
    sending msg-append, stored receiving it, the event-message out of the
    shard and into the gateway. Traffic of another room is left out;
    --type keeps one type; --count stops it; bad arguments exit 2.
    =========================================================================
*/

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"

static harness_system_t s_system;
static char s_taps [3][128];

//  The endpoint daemon's tap was bound to, from its log.
static bool
s_tap_of (const harness_daemon_t *daemon, char *endpoint)
{
    const char *prefix = "tap: publishing every message on ";
    char msg [128];
    if (!harness_log_lines (daemon, NULL, prefix, msg, sizeof msg))
        return false;
    memmove (endpoint, msg + strlen (prefix), strlen (msg + strlen (prefix)) + 1);
    return true;
}

//  Start the spy with args (NULL-terminated, after the program), its
//  output into path. Returns its pid.
static pid_t
s_spy_start (const char *path, const char *const *args)
{
    pid_t pid = fork ();
    if (pid == 0) {
        int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2 (fd, STDOUT_FILENO);
        const char *argv [24] = { "nearchat-spy" };
        int argc = 1;
        for (int i = 0; args [i] && argc < 23; i++)
            argv [argc++] = args [i];
        argv [argc] = NULL;
        execv (NEARCHAT_BIN_DIR "/nearchat-spy", (char *const *) argv);
        _exit (127);
    }
    return pid;
}

static int
s_spy_wait (pid_t pid)
{
    int status = -1;
    int64_t deadline = clock_mono_ms () + 15000;
    while (waitpid (pid, &status, WNOHANG) == 0) {
        if (clock_mono_ms () > deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &status, 0);
            return -1;
        }
        usleep (50 * 1000);
    }
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

//  Lines of the spy's output matching daemon (a prefix), dir and type;
//  CHECKs that every line is JSON with the fields a line must have, and
//  (room not NULL) that it is about room.
static int
s_count (const char *path, const char *daemon, const char *dir, const char *type,
         const char *text, int *lines)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    char line [16384];
    int count = 0;
    *lines = 0;
    while (fgets (line, sizeof line, file)) {
        (*lines)++;
        json_t *object = json_loads (line, 0, NULL);
        CHECK (object && j_str (object, "ts") && j_str (object, "daemon") && j_str (object, "dir")
               && j_str (object, "peer") && j_str (object, "type") && j_get (object, "body")
               && !j_get (object, "error"));
        bool match = object
                  && !strncmp (j_str (object, "daemon"), daemon, strlen (daemon))
                  && !strcmp (j_str (object, "dir"), dir)
                  && !strcmp (j_str (object, "type"), type)
                  && (!text || strstr (line, text));
        count += match;
        json_decref (object);
    }
    fclose (file);
    return count;
}

//  Whether the spy's output has a line from each of gateway, roomd and
//  stored, whatever its type.
static bool
s_heard_all (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    char line [16384];
    bool gateway = false, roomd = false, stored = false;
    while (fgets (line, sizeof line, file)) {
        json_t *object = json_loads (line, 0, NULL);
        const char *daemon = j_str (object, "daemon");
        gateway |= daemon && !strncmp (daemon, "gateway", 7);
        roomd |= daemon && !strncmp (daemon, "roomd", 5);
        stored |= daemon && !strncmp (daemon, "stored", 6);
        json_decref (object);
    }
    fclose (file);
    return gateway && roomd && stored;
}

//  Wait (10 s at most) until the spy hears all three taps: a PUB drops
//  what it publishes before a subscription reaches it, so the test asks
//  about room over HTTP (room-info goes out of the gateway into roomd,
//  history into stored), again every 100 ms, until a line of each daemon
//  is in its output. Those types are not the ones the test counts.
static bool
s_spy_hears (int port, const char *room, const char *path)
{
    char info [128], history [160];
    snprintf (info, sizeof info, "/rooms/%s", room);
    snprintf (history, sizeof history, "/rooms/%s/messages", room);
    int64_t deadline = clock_mono_ms () + 10000;
    while (clock_mono_ms () < deadline) {
        json_t *answer = NULL;
        http_call (port, "GET", info, NULL, &answer);
        json_decref (answer);
        answer = NULL;
        http_call (port, "GET", history, NULL, &answer);
        json_decref (answer);
        if (s_heard_all (path))
            return true;
        usleep (100 * 1000);
    }
    return false;
}

static void
s_test_spy (void)
{
    printf ("the spy prints a join and a send as every daemon saw them\n");
    int port = s_system.http_port;
    const char *room = api_create_room (port, "sam", 40, 40, NULL, 0);
    const char *other = api_create_room (port, "oli", 41, 41, NULL, 0);
    REQUIRE (room && other);
    char room_id [64];
    snprintf (room_id, sizeof room_id, "%s", room);
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/spy.out", harness_dir ());
    const char *args [] = { "--room", room_id, "--seconds", "4",
                            s_taps [0], s_taps [1], s_taps [2], NULL };
    pid_t spy = s_spy_start (path, args);
    REQUIRE (s_spy_hears (port, room_id, path));

    ws_client_t *sam = api_connect (port, "sam", NULL);
    ws_client_t *oli = api_connect (port, "oli", NULL);
    REQUIRE (sam && oli);
    json_decref (api_join (sam, room_id, "sam", -1));
    json_decref (api_join (oli, other, "oli", -1));
    CHECK (api_say (sam, room_id, "spy-1", "spied upon") > 0);
    CHECK (api_say (oli, other, "spy-2", "elsewhere") > 0);
    ws_close (&sam);
    ws_close (&oli);
    CHECK (s_spy_wait (spy) == 0);

    int lines;
    CHECK (s_count (path, "gateway", "out", "room-join", NULL, &lines) == 1);
    CHECK (s_count (path, "roomd", "in", "room-join", NULL, &lines) == 1);
    CHECK (s_count (path, "roomd", "out", "join-reply", NULL, &lines) == 1);
    CHECK (s_count (path, "gateway", "out", "room-send", "spied upon", &lines) == 1);
    CHECK (s_count (path, "roomd", "in", "room-send", "spied upon", &lines) == 1);
    CHECK (s_count (path, "roomd", "out", "msg-append", "spied upon", &lines) == 1);
    CHECK (s_count (path, "stored", "in", "msg-append", "spied upon", &lines) == 1);
    CHECK (s_count (path, "stored", "out", "append-reply", NULL, &lines) == 0);  //  no room id in it
    CHECK (s_count (path, "roomd", "out", "event-message", "spied upon", &lines) == 1);
    CHECK (s_count (path, "gateway", "in", "event-message", "spied upon", &lines) == 1);
    CHECK (s_count (path, "gateway", "out", "room-send", "elsewhere", &lines) == 0);
    if (!CHECK (lines >= 9))
        fprintf (stderr, "  the spy printed %d lines\n", lines);

    printf ("--type keeps one type, --count stops it\n");
    const char *typed [] = { "--type", "msg-append", "--count", "1", "--seconds", "10",
                             s_taps [2], NULL };
    //  A tap is on the bus: a subscriber without a key hears nothing. It
    //  connects before the spy does, so it has had as long as the spy to
    //  hear what the spy hears.
    zsock_t *keyless = zsock_new (ZMQ_SUB);
    zsock_set_linger (keyless, 0);
    zsock_set_subscribe (keyless, "");
    REQUIRE (zsock_connect (keyless, "%s", s_taps [2]) == 0);
    spy = s_spy_start (path, typed);
    ws_client_t *again = api_connect (port, "sam", NULL);
    REQUIRE (again);
    json_decref (api_join (again, room_id, "sam", -1));
    //  Until the spy has its one line and exits (its subscription may miss
    //  the first sends: a PUB drops what it published before), 10 s at most;
    //  stored's tap carries other types beside (append-reply out).
    int status = -1, sent = 0;
    for (int64_t deadline = clock_mono_ms () + 10000; clock_mono_ms () < deadline; ) {
        char id [32];
        snprintf (id, sizeof id, "spy-3-%d", ++sent);
        CHECK (api_say (again, room_id, id, "once more") > 0);
        if (waitpid (spy, &status, WNOHANG) == spy)
            break;
        usleep (100 * 1000);
    }
    ws_close (&again);
    if (status == -1)
        status = s_spy_wait (spy) == 0? 0: -1;
    CHECK (status == 0);
    CHECK (s_count (path, "stored", "in", "msg-append", "once more", &lines) == 1);
    CHECK (lines == 1);
    zpoller_t *poller = zpoller_new (keyless, NULL);
    CHECK (zpoller_wait (poller, 200) == NULL);
    zpoller_destroy (&poller);
    zsock_destroy (&keyless);

    printf ("bad arguments exit 2\n");
    const char *unknown [] = { "--type", "no-such-type", s_taps [0], NULL };
    CHECK (s_spy_wait (s_spy_start (path, unknown)) == 2);
    const char *none [] = { "--room", room_id, NULL };
    CHECK (s_spy_wait (s_spy_start (path, none)) == 2);
}

int
main (void)
{
    harness_init ("spy");
    const char *env [] = { "TAP_ENDPOINT=tcp://127.0.0.1:*", NULL };
    REQUIRE (harness_system_start (&s_system, 1, false, env) == 0);
    REQUIRE (s_tap_of (&s_system.gateways [0], s_taps [0]));
    REQUIRE (s_tap_of (&s_system.shards [0], s_taps [1]));
    REQUIRE (s_tap_of (&s_system.stored, s_taps [2]));
    s_test_spy ();
    return harness_finish ();
}
