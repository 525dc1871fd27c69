/*  =========================================================================
    calls.c - the workers' side of the backend: a DEALER per thread

    civetweb's worker threads call the backend from their request and
    WebSocket handlers. ZeroMQ sockets are not thread-safe, so each thread
    has a DEALER of its own to the backend's inproc ROUTER, made on first
    use and closed when the thread ends (civetweb's exit_thread callback).
    The threads are long-lived, so a socket is made once per thread, not
    once per call.

    A call sends the request with an id of this thread's and waits for
    the reply that carries it (the backend sends a worker's id in a frame
    before the reply); a reply to an earlier call that timed out is
    dropped. A post sends with request id 0 and waits for nothing.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "backend.h"
#include "clock.h"
#include "log.h"

//  A worker has at most one call in flight, and a few posts.
#define WORKER_HWM  1000

typedef struct {
    zsock_t *socket;
    void *handle;
    uint64_t next_id;
    msgpack_sbuffer buffer;
} worker_t;

static __thread worker_t *s_worker;

static worker_t *
s_worker_get (void)
{
    if (!s_worker) {
        worker_t *worker = calloc (1, sizeof *worker);
        assert (worker);
        worker->socket = backend_socket (ZMQ_DEALER, WORKER_HWM);
        if (!worker->socket || zsock_connect (worker->socket, BACKEND_INPROC)) {
            zsock_destroy (&worker->socket);
            free (worker);
            return NULL;        //  the caller answers 503; a later call tries again
        }
        worker->handle = zsock_resolve (worker->socket);
        msgpack_sbuffer_init (&worker->buffer);
        s_worker = worker;
    }
    return s_worker;
}

void
backend_thread_exit (void)
{
    if (s_worker) {
        zsock_destroy (&s_worker->socket);
        msgpack_sbuffer_destroy (&s_worker->buffer);
        free (s_worker);
        s_worker = NULL;
    }
}

static int
s_worker_send (worker_t *worker, const proto_msg_t *request)
{
    msgpack_sbuffer_clear (&worker->buffer);
    if (proto_encode (request, &worker->buffer)) {
        log_write (LOG_LEVEL_ERROR, request->trace_id, "a %s does not encode",
                   proto_type_name (request->type));
        errno = EINVAL;
        return -1;
    }
    if (zmq_send (worker->handle, worker->buffer.data, worker->buffer.size, ZMQ_DONTWAIT) < 0) {
        errno = EAGAIN;
        return -1;
    }
    return 0;
}

proto_msg_t *
backend_call (proto_msg_t *request, int timeout_ms)
{
    assert (request);
    worker_t *worker = s_worker_get ();
    if (!worker || backend_cancelled ()) {
        errno = ECANCELED;
        return NULL;
    }
    request->request_id = ++worker->next_id;
    if (s_worker_send (worker, request))
        return NULL;
    int64_t deadline = clock_mono_ms () + timeout_ms;
    for (;;) {
        //  Short slices, so that a stopping gateway does not wait out a call.
        int64_t wait = deadline - clock_mono_ms ();
        if (wait > BACKEND_WAKE_MS)
            wait = BACKEND_WAKE_MS;
        zmq_pollitem_t item = { worker->handle, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, (long) (wait < 0? 0: wait));
        if (backend_cancelled ()) {
            errno = ECANCELED;
            return NULL;
        }
        if (rc > 0) {
            parts_t parts;
            if (backend_recv (worker->handle, &parts)) {
                proto_msg_t *reply = NULL;
                uint64_t id = 0;
                if (parts.count == 2 && zmq_msg_size (&parts.part [0]) == sizeof id)
                    memcpy (&id, zmq_msg_data (&parts.part [0]), sizeof id);
                if (id == request->request_id) {
                    char why [PROTO_WHY_MAX];
                    reply = proto_decode (zmq_msg_data (&parts.part [1]),
                                          zmq_msg_size (&parts.part [1]), why, sizeof why);
                    if (reply)
                        reply->request_id = id;
                    else {
                        log_write (LOG_LEVEL_WARN, request->trace_id, "a garbled reply to %s: %s",
                                   proto_type_name (request->type), why);
                        errno = EPROTO;
                    }
                    backend_parts_close (&parts);
                    return reply;
                }
                backend_parts_close (&parts);     //  the late answer to an earlier call
            }
        }
        if (clock_mono_ms () >= deadline) {
            errno = ETIMEDOUT;
            return NULL;
        }
    }
}

int
backend_post (proto_msg_t *request)
{
    assert (request);
    request->request_id = 0;
    if (backend_on_thread ()) {
        backend_request (request, 0, NULL, NULL);
        return 0;
    }
    worker_t *worker = s_worker_get ();
    if (!worker)
        return -1;
    return s_worker_send (worker, request);
}

bool
backend_judge (const proto_msg_t *reply, int expected, int *status, char *reason,
               size_t reason_size)
{
    if (reply->type == expected)
        return true;
    if (reply->type == PROTO_ERROR) {
        *status = reply->error.status;
        snprintf (reason, reason_size, "%s", reply->error.reason);
    }
    else {
        *status = 500;
        snprintf (reason, reason_size, "the backend answered with a %s",
                  proto_type_name (reply->type));
    }
    return false;
}

proto_msg_t *
backend_expect (proto_msg_t *request, int expected, int timeout_ms,
                int *status, char *reason, size_t reason_size)
{
    assert (!backend_on_thread ());     //  it would wait for itself
    proto_msg_t *reply = backend_call (request, timeout_ms);
    if (!reply) {
        *status = errno == EPROTO? 500: 503;
        snprintf (reason, reason_size, "%s",
                  errno == EPROTO? "the gateway's backend answered with a garbled reply"
                : errno == ECANCELED? "the gateway is stopping"
                : errno == EAGAIN? "the gateway's backend is overloaded"
                : "the gateway's backend did not answer in time");
        return NULL;
    }
    if (backend_judge (reply, expected, status, reason, reason_size))
        return reply;
    proto_msg_destroy (&reply);
    return NULL;
}
