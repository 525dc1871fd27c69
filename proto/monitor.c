/*  =========================================================================
    monitor.c - log a ZeroMQ socket's events (ZMQ_MONITOR=1)

    czmq's zmonitor forwards events to its caller, who must then poll for
    them; a daemon's loop has better things to do, so this actor logs them
    itself. libzmq sends each event as two frames on an inproc PAIR: six
    bytes (the event, u16, and its value, u32, in native order) and the
    endpoint.
    =========================================================================
*/

#include <assert.h>
#include <stdatomic.h>
#include <string.h>
#include "monitor.h"
#include "log.h"

int64_t monitor_wanted;

struct monitor {
    zactor_t *actor;
    zsock_t *socket;
};

typedef struct {
    char endpoint [64];                 //  the inproc pipe of libzmq's events
    char name [200];
    bool log;                           //  ZMQ_MONITOR=1: log every event
    unsigned notify;                    //  events passed to the owner
} args_t;

const char *
monitor_event_name (unsigned event)
{
    switch (event) {
        case ZMQ_EVENT_CONNECTED:           return "connected";
        case ZMQ_EVENT_CONNECT_DELAYED:     return "connect delayed";
        case ZMQ_EVENT_CONNECT_RETRIED:     return "connect retried";
        case ZMQ_EVENT_LISTENING:           return "listening";
        case ZMQ_EVENT_BIND_FAILED:         return "bind failed";
        case ZMQ_EVENT_ACCEPTED:            return "accepted";
        case ZMQ_EVENT_ACCEPT_FAILED:       return "accept failed";
        case ZMQ_EVENT_CLOSED:              return "closed";
        case ZMQ_EVENT_CLOSE_FAILED:        return "close failed";
        case ZMQ_EVENT_DISCONNECTED:        return "disconnected";
        case ZMQ_EVENT_MONITOR_STOPPED:     return "monitor stopped";
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "handshake failed";
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "handshake succeeded";
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:  return "handshake failed (protocol)";
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:      return "handshake failed (authentication)";
        default:                            return "UNKNOWN";
    }
}

static bool
s_is_failure (unsigned event)
{
    return event == ZMQ_EVENT_BIND_FAILED || event == ZMQ_EVENT_ACCEPT_FAILED
        || event == ZMQ_EVENT_CLOSE_FAILED || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
}

//  The actor: log every event until told to stop.
static void
s_actor (zsock_t *pipe, void *arg)
{
    args_t *args = arg;
    zsock_t *events = zsock_new_pair (args->endpoint);    //  '>' is implied for PAIR: connect
    zsock_signal (pipe, events? 0: 1);
    if (!events) {
        free (args);
        return;
    }
    zpoller_t *poller = zpoller_new (pipe, events, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe || !which)
            break;                      //  $TERM, or interrupted
        zmsg_t *msg = zmsg_recv (events);
        if (!msg)
            break;
        zframe_t *head = zmsg_first (msg), *where = zmsg_next (msg);
        if (head && zframe_size (head) == 6) {
            uint16_t event;
            uint32_t value;
            memcpy (&event, zframe_data (head), 2);
            memcpy (&value, zframe_data (head) + 2, 4);
            if (args->log) {
                char *endpoint = where? zframe_strdup (where): NULL;
                log_write (s_is_failure (event)? LOG_LEVEL_WARN: LOG_LEVEL_INFO, NULL,
                           "zmq %s: %s %s (%u)", args->name, monitor_event_name (event),
                           endpoint? endpoint: "", value);
                free (endpoint);
            }
            if (event & args->notify) {
                uint32_t bit = event;
                zsock_send (pipe, "4", bit);
            }
        }
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&events);
    free (args);
}

monitor_t *
monitor_new (zsock_t *socket, const char *name)
{
    return monitor_watch (socket, name, 0);
}

monitor_t *
monitor_watch (zsock_t *socket, const char *name, unsigned notify)
{
    assert (socket && name);
    if (!monitor_wanted && !notify)
        return NULL;
    static atomic_uint s_sequence;
    args_t *args = calloc (1, sizeof *args);
    assert (args);
    snprintf (args->endpoint, sizeof args->endpoint, "inproc://monitor-%d-%u", (int) getpid (),
              atomic_fetch_add (&s_sequence, 1));
    snprintf (args->name, sizeof args->name, "%s", name);
    args->log = monitor_wanted != 0;
    args->notify = notify;
    if (zmq_socket_monitor (zsock_resolve (socket), args->endpoint,
                            args->log? ZMQ_EVENT_ALL: (int) notify) != 0) {
        log_warn ("zmq %s: cannot be monitored: %s", name, zmq_strerror (zmq_errno ()));
        free (args);
        return NULL;
    }
    monitor_t *self = calloc (1, sizeof *self);
    assert (self);
    self->socket = socket;
    self->actor = zactor_new (s_actor, args);   //  the actor frees args
    if (!self->actor) {
        zmq_socket_monitor (zsock_resolve (socket), NULL, 0);
        free (self);
        return NULL;
    }
    return self;
}

zsock_t *
monitor_socket (monitor_t *self)
{
    return self? zactor_sock (self->actor): NULL;
}

unsigned
monitor_event (monitor_t *self)
{
    if (!self)
        return 0;
    zsock_t *pipe = zactor_sock (self->actor);
    zmq_pollitem_t item = { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, 0) <= 0)
        return 0;
    uint32_t event = 0;
    if (zsock_recv (pipe, "4", &event) != 0)
        return 0;
    return event;
}

void
monitor_destroy (monitor_t **self_p)
{
    assert (self_p);
    monitor_t *self = *self_p;
    if (!self)
        return;
    zmq_socket_monitor (zsock_resolve (self->socket), NULL, 0);     //  stop the events
    zactor_destroy (&self->actor);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------
//  Self-test: a monitored DEALER connects to a ROUTER; the monitor lives,
//  logs, and goes without a leak or a hang.

void
monitor_test (bool verbose)
{
    (void) verbose;
    assert (strcmp (monitor_event_name (ZMQ_EVENT_CONNECTED), "connected") == 0);
    assert (strcmp (monitor_event_name (1u << 30), "UNKNOWN") == 0);
    int64_t wanted = monitor_wanted;
    monitor_wanted = 1;
    zsock_t *router = zsock_new_router ("tcp://127.0.0.1:*");
    assert (router);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    monitor_t *monitor = monitor_new (dealer, "self-test");
    assert (monitor);
    assert (zsock_connect (dealer, "%s", zsock_endpoint (router)) == 0);
    zstr_send (dealer, "hello");
    char *hello = zstr_recv (router);          //  the identity frame
    free (hello);
    hello = zstr_recv (router);
    assert (hello && strcmp (hello, "hello") == 0);
    free (hello);
    monitor_destroy (&monitor);
    assert (monitor == NULL);
    monitor_destroy (&monitor);                 //  twice is harmless
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    monitor_wanted = 0;
    //  Watched without logging: the owner hears of the connection.
    router = zsock_new_router ("tcp://127.0.0.1:*");
    dealer = zsock_new (ZMQ_DEALER);
    assert (router && dealer);
    monitor = monitor_watch (dealer, "watched", ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    assert (monitor && monitor_socket (monitor));
    assert (zsock_connect (dealer, "%s", zsock_endpoint (router)) == 0);
    zpoller_t *poller = zpoller_new (monitor_socket (monitor), NULL);
    assert (zpoller_wait (poller, 5000) == monitor_socket (monitor));
    zpoller_destroy (&poller);
    assert (monitor_event (monitor) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    assert (monitor_event (monitor) == 0);
    monitor_destroy (&monitor);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    zsock_t *unwatched = zsock_new (ZMQ_DEALER);
    assert (monitor_new (unwatched, "off") == NULL);     //  off: nothing to do
    zsock_destroy (&unwatched);
    monitor_wanted = wanted;
}
