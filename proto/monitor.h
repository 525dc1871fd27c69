/*  =========================================================================
    monitor.h - a ZeroMQ socket's events: logged (ZMQ_MONITOR=1), and
    passed to the socket's owner when it asks for some

    For an operator who wants to see why a peer is not reached: every
    connect, retry, accept, disconnect and failed handshake of the
    socket becomes a log line, through zmq_socket_monitor. Each monitor is
    a czmq actor (a thread) that reads the socket's event pipe and logs.

    A daemon that must act on an event (a peer's link is up: say hello
    now; the link to stored went down: what was sent on it will never be
    answered) names those events in monitor_watch and polls the monitor's
    socket for them. libzmq gives a socket one monitor, so logging and
    watching share it.
    =========================================================================
*/

#ifndef NEARCHAT_MONITOR_H_INCLUDED
#define NEARCHAT_MONITOR_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>

typedef struct monitor monitor_t;

//  The ZMQ_MONITOR setting (0 or 1), shared by every daemon: each puts
//  MONITOR_OPTION in its settings table.
extern int64_t monitor_wanted;
#define MONITOR_OPTION \
    { "ZMQ_MONITOR", CONFIG_INT, "0", 0, 1, \
      "1: log every event of this daemon's ZeroMQ sockets (connected, disconnected, handshake failed, ...)", \
      &monitor_wanted }

//  Watch socket when ZMQ_MONITOR is 1 (call from the thread that owns it,
//  before it binds or connects); name says which socket in the log.
//  Returns NULL when monitoring is off, or cannot be set up (logged).
monitor_t *
    monitor_new (zsock_t *socket, const char *name);

//  As monitor_new, and events of notify (ZMQ_EVENT_* bits) are also passed
//  to the caller, whatever ZMQ_MONITOR says: poll monitor_socket and read
//  them with monitor_event. Returns NULL only when it cannot be set up.
monitor_t *
    monitor_watch (zsock_t *socket, const char *name, unsigned notify);

//  The socket to poll for notified events (NULL for a NULL monitor).
zsock_t *
    monitor_socket (monitor_t *self);

//  The next notified event (one ZMQ_EVENT_* bit) without waiting, or 0.
unsigned
    monitor_event (monitor_t *self);

//  Stop watching; call before the socket is destroyed.
void
    monitor_destroy (monitor_t **self_p);

//  The name of a ZMQ_EVENT_* (one bit), or "UNKNOWN".
const char *
    monitor_event_name (unsigned event);

void
    monitor_test (bool verbose);

#endif
