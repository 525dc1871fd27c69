/*  =========================================================================
    tap.c - a copy of every message a daemon sends and receives
    =========================================================================
*/

#include <string.h>
#include <czmq.h>
#include "tap.h"
#include "bus.h"
#include "log.h"

#define TAP_HWM 10000

const char *tap_endpoint = "";
static zsock_t *s_tap;
static char s_name [256];
static void *s_handle;

int
tap_open (const char *name)
{
    snprintf (s_name, sizeof s_name, "%s", name);
    if (!tap_endpoint || !*tap_endpoint || s_tap)
        return 0;
    s_tap = zsock_new (ZMQ_PUB);
    if (!s_tap)
        return -1;
    zsock_set_linger (s_tap, 0);
    zsock_set_sndhwm (s_tap, TAP_HWM);
    //  A tap carries the chat: it is on the bus, CURVE, as every link.
    if (bus_server (s_tap)) {
        zsock_destroy (&s_tap);
        return -1;
    }
    if (zsock_bind (s_tap, "%s", tap_endpoint) < 0) {
        log_error ("cannot bind the tap to %s: %s", tap_endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&s_tap);
        return -1;
    }
    s_handle = zsock_resolve (s_tap);
    //  The endpoint as bound: a wildcard port is resolved here.
    log_info ("tap: publishing every message on %s", zsock_endpoint (s_tap));
    return 0;
}

void
tap_close (void)
{
    zsock_destroy (&s_tap);
    s_handle = NULL;
}

void
tap_message (tap_direction_t direction, const char *peer, const void *data, size_t size)
{
    if (!s_handle)
        return;
    const char *way = direction == TAP_IN? "in": "out";
    if (zmq_send (s_handle, s_name, strlen (s_name), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;                 //  (a PUB drops what nobody reads; this is no error)
    zmq_send (s_handle, way, strlen (way), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (s_handle, peer? peer: "", peer? strlen (peer): 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (s_handle, data, size, ZMQ_DONTWAIT);
}
