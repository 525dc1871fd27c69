/*  =========================================================================
    gateway - nearchat's public HTTP and WebSocket API

    Where every socket lives, and which thread touches it:

      thread              sockets                         files
      ------------------  ------------------------------  ---------------------
      the event loop      every WebSocket, once adopted;  loop.c (the turn),
      (one)               the shard ROUTER; the stored    client.c, ws.c,
                          DEALER; the mail eventfd        rooms.c, recovery.c,
                                                          sockets.c, output.c,
                                                          links.c, pending.c,
                                                          shards.c
      civetweb's          the listener; each HTTP         http.c, health.c,
      (HTTP_THREADS)      request's socket, and a         body.c, guard.c,
                          WebSocket's until its           upgrade.c, fds.c,
                          handshake is answered and       calls.c (a call is
                          it is taken over (fds_take)     mailed to the loop)
      the body deadline   none: it shuts the reading      body.c
                          side of a late HTTP body's
                          socket (shutdown, no I/O)
      main                none: settings, start, wait     main.c, settings.c
                          for a signal, stop

    A WebSocket: civetweb answers its upgrade (upgrade.c), its descriptor
    is taken over and mailed to the loop (client_adopt), which reads it,
    runs its actions (ws.c) and sends them to stored or the room's shard
    (pending.c, links.c), and writes it (output.c). An HTTP request:
    civetweb's thread runs the route (http.c) and mails any backend call
    to the loop, waiting on a reply slot of its own (calls.c). No lock
    guards a socket: other threads reach the loop only by mail (loop.c).
    The counters (counters.c) are atomics; the shard set, the run and the
    reaper's report are read by HTTP threads through small locked copies.

    The gateway holds no TLS: TLS_CERT and TLS_KEY configure the edge in
    front of it (gateway/edge/). It runs until SIGINT or SIGTERM and then
    stops in the reverse order: calls in flight give up, civetweb stops,
    the loop closes every socket (each close is posted to stored and the
    shards) and answers what is in flight, and the ZeroMQ sockets send
    what is left.

    Exit status: 0 after a clean stop, 1 when a port or endpoint cannot be
    used, 2 for a bad setting (config.c).
    =========================================================================
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <czmq.h>
#include "gateway.h"
#include "config.h"
#include "ids.h"
#include "log.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"
#include "utf8.h"

//  civetweb's threads: HTTP requests and WebSocket handshakes, one at a
//  time each (every WebSocket is the event loop's once it is open).
#define HTTP_THREADS    32
#define SHARDS_WAIT_MS  1000        //  longest wait at start for the shards to be heard
#define SHARDS_STILL_MS 100         //  ... which ends once the set stood still this long

//  civetweb's own complaints become our log lines.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    log_warn ("civetweb: %s", message);
    return 1;
}

//  Stop what started, in the reverse order: the loop (which closes every
//  WebSocket, posting each one's leave and conn-del, and answers what is
//  in flight), then the ZeroMQ sockets, which send what is left.
static void
s_stop (void)
{
    loop_stop ();
    links_stop ();
    pending_stop ();
    body_stop ();
    recovery_stop ();
    rooms_stop ();
    sockets_stop ();
}

int
main (int argc, char *argv [])
{
    settings_load (argc, argv);
    auth_check_settings ();
    auth_log_start ();
    const char *bind = gateway_config.http_bind;

    //  Signals are taken by this thread alone, in sigwait below: block
    //  them before any thread starts, so every thread inherits the mask.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    zsys_set_logstream (NULL);
    //  civetweb's threads serve HTTP requests and WebSocket handshakes;
    //  no WebSocket stays on one (the event loop takes each over), so
    //  their number does not grow with MAX_CONNECTIONS. Every ZeroMQ
    //  socket is the loop's (links.c).
    int64_t civetweb_threads = HTTP_THREADS;
    zsys_set_max_sockets ((size_t) (civetweb_threads + 64));
    zsys_init ();
    zsys_set_io_threads (1);

    //  Each WebSocket holds its TCP socket: warn now rather than fail at
    //  the thousandth client.
    struct rlimit files;
    int64_t needed = gateway_config.max_connections + 2 * civetweb_threads + 256;
    if (getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
    &&  (int64_t) files.rlim_cur < needed)
        log_warn ("open files are limited to %llu; MAX_CONNECTIONS=%lld needs about %lld",
                  (unsigned long long) files.rlim_cur,
                  (long long) gateway_config.max_connections, (long long) needed);

    if (bus_start (BUS_GATEWAY) || bus_own_key (gateway_config.gateway_id))
        return 1;
    limits_start ();
    pending_start ();
    rooms_start ();
    if (sockets_start () || body_start () || links_start () || loop_start ()) {
        s_stop ();
        bus_close ();                   //  before czmq's own exit handler, which asserts else
        return 1;
    }
    //  Shards running already say hello the moment our backend is up: a
    //  moment for them before the first client, so that a restarted
    //  gateway's clients, rejoining at once, are not refused for want of a
    //  shard (53 joins answered 503 after a kill -9, bench faults), nor
    //  routed to the first shard heard before the others are. Until the set
    //  has stood still a while, or SHARDS_WAIT_MS: none running is no reason
    //  to wait longer, the API answers what it can.
    long long shards = 0;
    for (int waited_ms = 0, still_ms = 0;
         waited_ms < SHARDS_WAIT_MS && (!shards || still_ms < SHARDS_STILL_MS);
         waited_ms += 10, still_ms += 10) {
        zclock_sleep (10);
        long long live = atomic_load (&gateway_metrics.shards_live);
        if (live != shards)
            still_ms = 0;
        shards = live;
    }

    char ports [300], threads [32];
    snprintf (ports, sizeof ports, strchr (bind, ':')? "[%s]:%lld": "%s:%lld", bind,
              (long long) gateway_config.http_port);
    snprintf (threads, sizeof threads, "%lld", (long long) civetweb_threads);
    const char *options [] = {
        "listening_ports", ports,
        "num_threads", threads,
        //  Frames are small and a header and payload may go as two
        //  writes: without this, Nagle and delayed ACKs hold each ~40 ms.
        "tcp_nodelay", "1",
        "enable_keep_alive", "yes",
        //  The headers of a request must all come within this from its
        //  start (civetweb counts from the request's first read, so a
        //  client trickling them is dropped, 400 as JSON, guard.c); the
        //  next one on a kept-alive connection within keep_alive_timeout_ms.
        //  It is also how long one read or one write of civetweb's may
        //  wait; a whole body is bounded by HTTP_BODY_TIMEOUT_MS (body.c).
        "request_timeout_ms", "10000",
        //  How often a refused WebSocket's worker looks up from its read
        //  (ws_ready): no open WebSocket stays on civetweb.
        "websocket_timeout_ms", "10000",
        "connection_queue", "256",
        "listen_backlog", "1024",
        //  We answer CORS ourselves, on every response, preflights included.
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "enable_directory_listing", "no",
        //  The URI as sent, so that guard.c can refuse a %00 in it;
        //  http.c decodes paths itself (mg_get_var decodes queries).
        "decode_url", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    callbacks.begin_request = guard_begin_request;
    callbacks.http_error = guard_http_error;
    mg_init_library (0);                //  no TLS: the edge's (gateway/edge/)
    struct mg_context *context = mg_start (&callbacks, NULL, options);
    if (!context) {
        log_error ("cannot serve HTTP on %s", ports);
        s_stop ();
        mg_exit_library ();
        bus_close ();
        return 1;
    }
    mg_set_request_handler (context, "/", http_handle, NULL);
    mg_set_websocket_handler (context, "/", ws_connect, ws_ready, ws_data, ws_close, NULL);
    mg_set_websocket_handler (context, "/ws", ws_connect, ws_ready, ws_data, ws_close, NULL);
    const char *stage = gateway_config.websocket_path;
    bool staged = *stage && strcmp (stage, "/ws") != 0;
    if (staged)
        mg_set_websocket_handler (context, stage, ws_connect, ws_ready, ws_data, ws_close, NULL);
    log_info ("gateway %s serving http on %s (WebSocket on /, /ws%s%s), shards on %s, stored at %s",
              gateway_config.gateway_id, ports,
              staged? ", ": "", staged? stage: "", gateway_config.backend_endpoint,
              gateway_config.stored_endpoint);

    int signal_number = 0;
    sigwait (&signals, &signal_number);
    log_info ("stopping on %s", signal_number == SIGINT? "SIGINT": "SIGTERM");

    //  Calls give up so that civetweb's threads return, then the event
    //  loop closes every WebSocket (each socket's leave and conn-del still
    //  go out) as the backend stops.
    calls_interrupt ();
    mg_stop (context);
    log_debug ("civetweb stopped");
    s_stop ();
    mg_exit_library ();
    limits_stop ();
    bus_close ();
    zsys_shutdown ();
    log_info ("stopped");
    return 0;
}
