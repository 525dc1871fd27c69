/*  =========================================================================
    roomd - a room shard

    One process a shard, one thread a process: it links to every gateway,
    registers there with a heartbeat, serves the requests the gateways route
    to it for the rooms it owns, and fans their events back out. See
    roomd.h for its state, handle_rooms.c for what each request does.
    =========================================================================
*/

#include <signal.h>
#include <unistd.h>
#include "roomd.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "bus.h"

//  Messages read from one socket before the others get a turn.
#define DRAIN_MAX   256

static roomd_config_t s_config;
static log_level_t s_log_level;

static config_option_t s_options [] = {
    { "SHARD_ID", CONFIG_STRING, "auto", 0, PROTO_ID_MAX,
      "this shard's id, unique among live shards; auto: hostname-pid", &s_config.shard_id },
    { "GATEWAY_ENDPOINTS", CONFIG_STRING, "tcp://127.0.0.1:5556", 0, 4000,
      "the gateways' backend endpoints, comma-separated", &s_config.gateway_endpoints },
    { "STORED_ENDPOINT", CONFIG_STRING, "tcp://127.0.0.1:5555", 0, 256,
      "ZeroMQ endpoint of stored", &s_config.stored_endpoint },
    { "HEARTBEAT_MS", CONFIG_INT, "1000", 50, 60000,
      "how often the shard says hello to each gateway", &s_config.heartbeat_ms },
    { "REQUEST_TIMEOUT_MS", CONFIG_INT, "5000", 100, 600000,
      "how long a call to stored may take", &s_config.request_timeout_ms },
    { "TYPING_THROTTLE_MS", CONFIG_INT, "1000", 0, 60000,
      "at most one typing event per user and room this often", &s_config.typing_throttle_ms },
    { "HISTORY_ON_JOIN", CONFIG_INT, "50", 0, PROTO_LIST_MAX,
      "newest messages a joining socket is sent, 0: none (a join with sinceSeq is sent "
      "what followed it instead)", &s_config.history_on_join },
    { "ROOM_EVICT_S", CONFIG_INT, "300", 1, 86400,
      "a room with no sockets, unused this long, leaves memory", &s_config.room_idle_evict_s },
    MONITOR_OPTION,
    TAP_OPTION,
    BUS_OPTION,
    { "LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0,
      "debug, info, warn or error", &s_log_level },
    { .name = NULL }
};

//  How long until the next hello. A link not welcomed yet is a gateway
//  that has not heard us: with ZMQ_IMMEDIATE a hello sent before its
//  connection was up is dropped, and waiting a whole heartbeat for the next
//  one kept a restarted shard out of the routing for a second (about 1.1 s
//  of 503s after a kill -9 under ./nearchat up).
#define HELLO_SOON_MS   50
#define STALL_HEARTBEATS 3      //  a turn this many heartbeats late: the shard was stalled
#define STORE_WAIT_MS   1000    //  at most, for the link to stored before the first hello

static int64_t
s_hello_interval (roomd_t *self)
{
    for (size_t i = 0; i < self->link_count; i++)
        if (!self->links [i].welcomed_ms && !self->links [i].refused)
            return HELLO_SOON_MS < self->config->heartbeat_ms? HELLO_SOON_MS
                                                              : self->config->heartbeat_ms;
    return self->config->heartbeat_ms;
}

static void
s_run (roomd_t *self)
{
    //  Every link and its monitor, then stored and its monitor.
    zmq_pollitem_t items [2 * LINKS_MAX + 2];
    size_t count = 0;
    for (size_t i = 0; i < self->link_count; i++) {
        items [count++] = (zmq_pollitem_t) { zsock_resolve (self->links [i].socket), 0,
                                             ZMQ_POLLIN, 0 };
        if (self->links [i].monitor)
            items [count++] = (zmq_pollitem_t) {
                zsock_resolve (monitor_socket (self->links [i].monitor)), 0, ZMQ_POLLIN, 0 };
    }
    items [count++] = (zmq_pollitem_t) { zsock_resolve (self->store), 0, ZMQ_POLLIN, 0 };
    if (self->store_monitor)
        items [count++] = (zmq_pollitem_t) {
            zsock_resolve (monitor_socket (self->store_monitor)), 0, ZMQ_POLLIN, 0 };

    //  A shard that said hello before it could reach stored would be sent
    //  rooms it cannot load: at a restart, its first requests were told 503.
    if (!store_wait_up (self, STORE_WAIT_MS))
        log_warn ("stored is not reachable yet; serving rooms all the same");
    links_hello (self);
    int64_t next_hello = clock_mono_ms () + s_hello_interval (self);
    int64_t turned_ms = clock_mono_ms ();
    while (!zsys_interrupted) {
        int64_t wait = next_hello - clock_mono_ms ();
        int64_t deadline = store_next_deadline (self);
        if (deadline >= 0 && deadline < wait)
            wait = deadline;
        int64_t retry = send_next_retry (self);
        if (retry >= 0 && retry < wait)
            wait = retry;
        store_flush (self);             //  the turn's calls to stored, a frame
        links_flush (self);             //  what the turn made, a frame a gateway
        if (zmq_poll (items, (int) count, wait < 0? 0: (long) wait) < 0)
            continue;                   //  EINTR: zsys_interrupted decides
        //  A turn (the last one's work, then this poll) that ends far later
        //  than its wait means this process was stopped or starved, long
        //  enough for the gateways to drop it and fail what it was sent,
        //  which is read now (links.c).
        int64_t now_ms = clock_mono_ms ();
        int64_t late_ms = now_ms - turned_ms - (wait < 0? 0: wait);
        turned_ms = now_ms;
        if (late_ms > STALL_HEARTBEATS * self->config->heartbeat_ms) {
            log_warn ("this shard was stalled for %lld ms", (long long) late_ms);
            self->stalled_until_ms = clock_now_ms ();
        }
        //  Replies from stored first: they finish work already begun.
        for (int i = 0; i < DRAIN_MAX && store_receive (self); i++)
            ;
        store_lost (self);
        for (size_t link = 0; link < self->link_count; link++)
            links_up (self, &self->links [link]);
        for (size_t link = 0; link < self->link_count; link++)
            for (int i = 0; i < DRAIN_MAX && link_receive (self, &self->links [link]); i++)
                ;
        store_expire (self);
        send_retry_due (self);
        if (clock_mono_ms () >= next_hello) {
            links_hello (self);
            next_hello = clock_mono_ms () + s_hello_interval (self);
        }
    }
}

int
main (int argc, char *argv [])
{
    config_load ("roomd", "roomd: a nearchat room shard, owning the live state of its rooms.",
                 s_options, argc, argv);
    char shard_id [PROTO_ID_MAX + 1];
    if (strcmp (s_config.shard_id, "auto") == 0) {
        //  In a container the hostname is the container's and the pid is
        //  the same small number at every start (under compose's init, the
        //  one after it), so a restarted shard keeps its id (and its rooms);
        //  on a shared host the pid tells shards apart.
        char host [PROTO_ID_MAX - 8] = "roomd";
        gethostname (host, sizeof host);
        host [sizeof host - 1] = 0;
        snprintf (shard_id, sizeof shard_id, "%s-%d", host, (int) getpid ());
        s_config.shard_id = shard_id;
    }
    log_init ("roomd", s_log_level);
    zsys_set_logstream (NULL);
    zsys_init ();
    zsys_set_io_threads (1);
    if (bus_start (BUS_SHARD))
        return 1;

    roomd_t self = { .config = &s_config };
    msgpack_sbuffer_init (&self.buffer);
    self.rooms = rooms_new (send_room_gone);
    metrics_histogram_init (&self.send_seconds, metrics_seconds_bounds,
                            metrics_seconds_bound_count);
    char tap_name [PROTO_ID_MAX + 16];
    snprintf (tap_name, sizeof tap_name, "roomd %s", s_config.shard_id);
    if (tap_open (tap_name) || store_open (&self) || links_open (&self)) {
        links_close (&self);
        store_close (&self);
        zhashx_destroy (&self.rooms);
        msgpack_sbuffer_destroy (&self.buffer);
        tap_close ();
        return 1;
    }
    log_info ("shard %s serving, stored at %s", s_config.shard_id, s_config.stored_endpoint);
    s_run (&self);

    self.stopping = true;
    store_abandon (&self);
    send_stop (&self);
    links_close (&self);
    store_close (&self);
    zhashx_destroy (&self.rooms);
    msgpack_sbuffer_destroy (&self.buffer);
    tap_close ();
    bus_close ();
    log_info ("stopped");
    return 0;
}
