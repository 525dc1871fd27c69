/*  =========================================================================
    harness.h - what the tests need to run nearchat's real daemons

    A test starts the real binaries from the build (NEARCHAT_BIN_DIR) on free
    loopback ports with a temporary DATA_DIR, talks to them over their real
    sockets, and stops them by the process ids it holds. CHECK counts and
    reports; harness_finish prints "N passed, M failed" and gives the exit
    status, so ctest and CI read the result the same way.
    =========================================================================
*/

#ifndef NEARCHAT_HARNESS_H_INCLUDED
#define NEARCHAT_HARNESS_H_INCLUDED

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>
#include "proto.h"
#include "client.h"
#include "bus.h"

//  Record one check: on failure, print where and what, and carry on.
#define CHECK(condition) \
    harness_check ((condition), __FILE__, __LINE__, #condition)

//  Checks whose failure makes the rest of a test meaningless.
#define REQUIRE(condition) \
    do { if (!CHECK (condition)) { harness_abort (); } } while (0)

bool harness_check (bool ok, const char *file, int line, const char *expression);
void harness_abort (void) __attribute__ ((noreturn));

//  Start the test: a temporary directory for data and logs.
void harness_init (const char *test_name);
//  The temporary directory (removed by harness_finish).
const char *harness_dir (void);
//  Print "N passed, M failed", stop every daemon still running, remove the
//  temporary directory. Returns the exit status for main.
int harness_finish (void);

//  A free TCP port on 127.0.0.1 (bound, read, released).
int harness_free_port (void);

//  Whether the file at path (a daemon's log) has a line holding text; how
//  many lines do.
bool harness_logged (const char *path, const char *text);
int  harness_logged_lines (const char *path, const char *text);

//  A daemon the test started.
typedef struct {
    const char *binary;             //  "stored", ...
    pid_t pid;                      //  0 when not running
    char endpoint [64];             //  its ZeroMQ endpoint
    char data_dir [PATH_MAX];
    char log_path [PATH_MAX];       //  its stderr
    const char *env [16];           //  extra "NAME=value" settings, NULL-terminated
} harness_daemon_t;

//  Set up a stored on a free port with its own DATA_DIR under the test's
//  directory (not started). Extra settings may be added to env before start.
void harness_stored_init (harness_daemon_t *daemon);
//  Start it and wait until it answers store-stats (10 s at most). Returns
//  0, or -1 (its log is printed).
int harness_start (harness_daemon_t *daemon);
//  Set up any other daemon (not started): its log under the test's directory.
void harness_daemon_init (harness_daemon_t *daemon, const char *binary);
//  Start it with its env only and return at once (the caller knows how to
//  tell that it is ready). Returns 0, or -1 if it could not be started.
int harness_spawn (harness_daemon_t *daemon);
//  Stop it with SIGTERM (SIGKILL after 5 s) and reap it; returns its exit status.
int harness_stop (harness_daemon_t *daemon);
//  kill -9 and reap.
void harness_kill (harness_daemon_t *daemon);
//  Print the last lines of its log on stderr.
void harness_print_log (const harness_daemon_t *daemon);
//  The lines of its log whose msg begins with prefix and, unless trace is
//  NULL, whose trace is trace: how many, and the first one's msg copied to
//  first (when not NULL, at most size bytes).
int harness_log_lines (const harness_daemon_t *daemon, const char *trace, const char *prefix,
                       char *first, size_t size);
//  Run binary with env to completion (5 s at most); returns its exit status,
//  and its stderr in output (at most size bytes).
int harness_run (const char *binary, const char *const *env, const char *const *args,
                 char *output, size_t size);

//  A call that must get an answer: NULL only on timeout (5 s).
proto_msg_t *harness_call (proto_client_t *client, proto_msg_t *request);

//  A client to the listener of server_role (BUS_STORED, BUS_GATEWAY) at
//  endpoint with the key of role (BUS_REAPER, ...; bus.h) instead of the
//  tests' usual tool key, for the messages only that role may send.
proto_client_t *harness_client_as (const char *endpoint, const char *server_role,
                                   const char *role);

//  A room with a fresh id, active, public, at (latitude, longitude); the
//  strings live in static storage of a ring of 64, enough for one test step.
proto_room_t harness_room (double latitude, double longitude);
//  A deterministic random number in [0, 1).
double harness_random (void);

#endif
