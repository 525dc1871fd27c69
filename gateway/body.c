/*  =========================================================================
    body.c - an HTTP request's body: read within its deadline, and taken
    as a JSON object

    civetweb 1.15 bounds each read of a body (request_timeout_ms), not the
    whole: mg_read waits until it has all it was asked for, and goes on
    for as long as every single read brings a byte in time, so a client
    trickling a body a byte a second held a worker thread for as long as
    it liked, and 33 of them took every thread (issue 11). So a body must
    all come within HTTP_BODY_TIMEOUT_MS of the route asking for it.

    The reader (a civetweb thread, in its route) finds its connection's
    socket (fds.c) and puts a watch on this module's list; at the deadline
    the watch thread shuts the socket for reading (shutdown SHUT_RD), which
    wakes the blocked read at once with the end of the stream, and mg_read
    returns what it had. The answer (408) can still be written: only the
    reading side is shut. The connection is marked to close after it, so
    civetweb neither waits for the rest of the body nor reads a next
    request from it.

    Invariants:
      - a watch lives on its reader's stack, on the list from body_read's
        start to its end, under s_body.lock; the watch thread touches a
        watch's socket only under that lock, while it is on the list, so
        a shutdown never lands on a socket civetweb has closed (it cannot,
        while its thread is in our route) or reused.
    =========================================================================
*/

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include "gateway.h"
#include "clock.h"
#include "log.h"

typedef struct watch watch_t;
struct watch {
    int fd;                             //  the connection's socket
    int64_t deadline_ms;                //  monotonic
    bool fired;                         //  its socket was shut for reading
    watch_t *next;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;                //  a watch came, or stop (on CLOCK_MONOTONIC)
    watch_t *watches;                   //  (lock)
    bool stopping;                      //  (lock)
    bool started;
    pthread_t thread;
} s_body = { .lock = PTHREAD_MUTEX_INITIALIZER };

//  ---------------------------------------------------------------------------
//  The watch thread

static void *
s_watch (void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_body.lock);
    while (!s_body.stopping) {
        int64_t now = clock_mono_ms (), next = 0;
        for (watch_t *watch = s_body.watches; watch; watch = watch->next) {
            if (watch->fired)
                continue;
            if (watch->deadline_ms <= now) {
                shutdown (watch->fd, SHUT_RD);
                watch->fired = true;
            }
            else
            if (!next || watch->deadline_ms < next)
                next = watch->deadline_ms;
        }
        if (!next)
            pthread_cond_wait (&s_body.wake, &s_body.lock);
        else {
            struct timespec until = clock_after (CLOCK_MONOTONIC, next - now);
            pthread_cond_timedwait (&s_body.wake, &s_body.lock, &until);
        }
    }
    pthread_mutex_unlock (&s_body.lock);
    return NULL;
}

int
body_start (void)
{
    pthread_condattr_t attributes;
    pthread_condattr_init (&attributes);
    pthread_condattr_setclock (&attributes, CLOCK_MONOTONIC);
    pthread_cond_init (&s_body.wake, &attributes);
    pthread_condattr_destroy (&attributes);
    s_body.stopping = false;
    if (pthread_create (&s_body.thread, NULL, s_watch, NULL)) {
        log_error ("cannot start the body deadline's thread");
        return -1;
    }
    s_body.started = true;
    return 0;
}

void
body_stop (void)
{
    if (!s_body.started)
        return;
    pthread_mutex_lock (&s_body.lock);
    s_body.stopping = true;
    pthread_cond_signal (&s_body.wake);
    pthread_mutex_unlock (&s_body.lock);
    pthread_join (s_body.thread, NULL);
    pthread_cond_destroy (&s_body.wake);
    s_body.started = false;
}

//  ---------------------------------------------------------------------------
//  The reader's side (a civetweb thread)

//  civetweb keeps a connection open unless the request's own Connection
//  header says close, and has no call to close it from a handler: the
//  request's first header becomes that (as guard.c does; the headers are
//  read already), so the answer says close and nothing more is read.
static void
s_close_after (struct mg_connection *mg)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    if (info && info->num_headers > 0) {
        struct mg_header *first = (struct mg_header *) &info->http_headers [0];
        first->name = "Connection";
        first->value = "close";
    }
}

long
body_read (struct mg_connection *mg, char *buffer, size_t max)
{
    int64_t deadline = clock_mono_ms () + gateway_config.http_body_timeout_ms;
    watch_t watch = { .fd = fds_find (mg), .deadline_ms = deadline };
    if (watch.fd >= 0) {
        pthread_mutex_lock (&s_body.lock);
        watch.next = s_body.watches;
        s_body.watches = &watch;
        pthread_cond_signal (&s_body.wake);
        pthread_mutex_unlock (&s_body.lock);
    }
    else
        //  Only the time between reads is then looked at: a client that
        //  trickles its body is answered at its first byte past the deadline.
        log_warn ("the socket of a request from %s was not found; its body is read "
                  "without a watch", mg_get_request_info (mg)->remote_addr);

    size_t size = 0;
    int got;
    bool late = false;
    while (size <= max && !late
       &&  (got = mg_read (mg, buffer + size, max + 1 - size)) > 0) {
        size += (size_t) got;
        late = clock_mono_ms () >= deadline;
    }
    if (watch.fd >= 0) {
        pthread_mutex_lock (&s_body.lock);
        for (watch_t **link = &s_body.watches; *link; link = &(*link)->next)
            if (*link == &watch) {
                *link = watch.next;
                break;
            }
        late = late || watch.fired;
        pthread_mutex_unlock (&s_body.lock);
        fds_forget (watch.fd);
    }
    //  Whether the body is all here: civetweb counts what it gave out.
    const struct mg_request_info *info = mg_get_request_info (mg);
    bool whole = size > max || (info->content_length >= 0
                                && (long long) size >= info->content_length);
    if (late && !whole) {
        s_close_after (mg);
        return -1;
    }
    return (long) size;
}

json_t *
body_json (struct mg_connection *mg, int *status, char *why, size_t why_size)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    *status = 413;
    snprintf (why, why_size, "the body may be at most %d bytes", BODY_MAX);
    if (info->content_length > BODY_MAX)
        return NULL;
    char *buffer = malloc (BODY_MAX + 1);
    if (!buffer) {
        *status = 500;
        snprintf (why, why_size, "out of memory");
        return NULL;
    }
    //  Within HTTP_BODY_TIMEOUT_MS, however slowly it comes.
    long got = body_read (mg, buffer, BODY_MAX);
    size_t size = got > 0? (size_t) got: 0;
    json_t *body = NULL;
    json_error_t error;
    *status = 400;
    if (got < 0) {
        *status = 408;
        snprintf (why, why_size, "the body must all come within %lld ms",
                  (long long) gateway_config.http_body_timeout_ms);
    }
    else
    if (size > BODY_MAX)
        *status = 413;                  //  (why says so already)
    else
    if (size == 0)
        snprintf (why, why_size, "a JSON object is required as the body");
    else
    if (!input_depth_ok (buffer, size, INPUT_DEPTH_MAX))
        snprintf (why, why_size, "the body may nest at most %d levels deep", INPUT_DEPTH_MAX);
    else
    if (!(body = json_loadb (buffer, size, 0, &error)))
        snprintf (why, why_size, "the body is not JSON: %s", error.text);
    else
    if (!json_is_object (body)) {
        snprintf (why, why_size, "the body must be a JSON object");
        json_decref (body);
        body = NULL;
    }
    free (buffer);
    return body;
}
