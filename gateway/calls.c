/*  =========================================================================
    calls.c - an HTTP thread's call to the backend, made by the event loop

    civetweb's threads serve HTTP; every ZeroMQ socket is the event loop's
    (loop.c). So a handler that needs stored or a shard hands its request
    to the loop, which sends it as its own (pending.c), and waits on a
    reply slot of its own for the answer. The loop fills the slot and
    wakes the caller; a caller that stopped waiting (its timeout, or the
    gateway stopping) leaves the slot to the loop, which drops the late
    answer. No socket, lock or buffer is shared otherwise.

    The request crosses the threads encoded (the caller's strings are its
    own, on its stack), and so does the answer (the loop's reply is freed
    when its then returns).
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "gateway.h"
#include "clock.h"
#include "log.h"

#define WAKE_MS     100             //  longest wait between looks at the stop flag

typedef struct {
    loop_mail_t mail;               //  first: the loop hands this back to s_run
    int refs;                       //  the caller's and the loop's (under s_lock)
    msgpack_sbuffer request;        //  encoded, by the caller
    int expected;
    msgpack_sbuffer reply;          //  encoded, by the loop (answered and status 0)
    uint16_t status;                //  the loop's own failure (503, 404, ...), or 0
    char reason [PROTO_REASON_MAX];
    bool answered;
    pthread_cond_t answer;
} call_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool s_cancelled;

static void
s_unref (call_t *call)
{
    pthread_mutex_lock (&s_lock);
    bool last = --call->refs == 0;
    pthread_mutex_unlock (&s_lock);
    if (last) {
        msgpack_sbuffer_destroy (&call->request);
        msgpack_sbuffer_destroy (&call->reply);
        pthread_cond_destroy (&call->answer);
        free (call);
    }
}

//  The loop's then: fill the slot and wake its caller.
static void
s_answered (void *arg, proto_msg_t *reply, int status, const char *reason)
{
    call_t *call = arg;
    pthread_mutex_lock (&s_lock);
    if (call->refs == 2) {          //  its caller still waits: the answer is worth making
        if (reply && proto_encode (reply, &call->reply) == 0)
            call->status = 0;
        else {
            call->status = reply? 500: (uint16_t) status;
            snprintf (call->reason, sizeof call->reason, "%s",
                      reply? "the backend's answer does not encode": reason);
        }
        call->answered = true;
        pthread_cond_signal (&call->answer);
    }
    pthread_mutex_unlock (&s_lock);
    s_unref (call);
}

//  On the loop's thread: send the call's request as the loop's own.
static void
s_run (loop_mail_t *mail)
{
    call_t *call = (call_t *) mail;
    char why [PROTO_WHY_MAX];
    proto_msg_t *request = proto_decode (call->request.data, call->request.size, why, sizeof why);
    if (!request) {
        //  Made and encoded by our own handler: this would be a bug.
        log_error ("a call's request does not decode: %s", why);
        s_answered (call, NULL, 500, "the request could not be passed on");
        return;
    }
    pending_send (request, call->expected, s_answered, call);
    proto_msg_destroy (&request);
}

//  Make the call: its answer, decoded; or NULL with the loop's own status
//  and reason (503, 404, ...), or with *status 0 and errno ETIMEDOUT,
//  ECANCELED or EINVAL when no answer came.
static proto_msg_t *
s_call (proto_msg_t *request, int expected, int timeout_ms, int *status, char *reason,
        size_t reason_size)
{
    assert (!loop_on_thread ());    //  it would wait for itself
    *status = 0;
    if (atomic_load (&s_cancelled)) {
        errno = ECANCELED;
        return NULL;
    }
    call_t *call = calloc (1, sizeof *call);
    assert (call);
    call->mail.run = s_run;
    call->refs = 2;
    call->expected = expected;
    msgpack_sbuffer_init (&call->request);
    msgpack_sbuffer_init (&call->reply);
    pthread_cond_init (&call->answer, NULL);
    request->request_id = 0;
    if (proto_encode (request, &call->request)) {
        log_write (LOG_LEVEL_ERROR, request->trace_id, "a %s does not encode",
                   proto_type_name (request->type));
        call->refs = 1;
        s_unref (call);
        errno = EINVAL;
        return NULL;
    }
    loop_mail (&call->mail);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    pthread_mutex_lock (&s_lock);
    while (!call->answered && !atomic_load (&s_cancelled)) {
        //  Short slices, so that a stopping gateway does not wait out a call.
        int64_t now = clock_mono_ms (), wait = deadline - now;
        if (wait <= 0)
            break;
        if (wait > WAKE_MS)
            wait = WAKE_MS;
        struct timespec until = clock_after (CLOCK_REALTIME, wait);
        pthread_cond_timedwait (&call->answer, &s_lock, &until);
    }
    bool answered = call->answered;
    pthread_mutex_unlock (&s_lock);
    proto_msg_t *reply = NULL;
    if (!answered)
        errno = atomic_load (&s_cancelled)? ECANCELED: ETIMEDOUT;
    else
    if (call->status) {
        *status = call->status;
        snprintf (reason, reason_size, "%s", call->reason);
    }
    else {
        char why [PROTO_WHY_MAX];
        reply = proto_decode (call->reply.data, call->reply.size, why, sizeof why);
        if (!reply) {
            *status = 500;
            snprintf (reason, reason_size, "the backend's answer does not decode: %s", why);
        }
    }
    s_unref (call);
    return reply;
}

proto_msg_t *
backend_call (proto_msg_t *request, int expected, int timeout_ms,
              int *status, char *reason, size_t reason_size)
{
    proto_msg_t *reply = s_call (request, expected, timeout_ms, status, reason, reason_size);
    if (!reply && !*status) {
        *status = 503;
        snprintf (reason, reason_size, "%s",
                  errno == ECANCELED? "the gateway is stopping"
                : errno == EINVAL? "the gateway could not make its request"
                : "the gateway's backend did not answer in time");
    }
    return reply;
}

void
calls_interrupt (void)
{
    atomic_store (&s_cancelled, true);
}
