/*  =========================================================================
    stored - the storage daemon

    The only process that opens nearchat's LMDB environment. It serves
    requests from roomd, the gateway and the reaper on a ZeroMQ ROUTER (see
    proto.h for the messages, stored.h for the databases, batch.c for the
    loop) and sweeps expired messages. An answered write is durable.
    =========================================================================
*/

#include "stored.h"
#include "config.h"
#include "log.h"
#include "monitor.h"
#include "tap.h"
#include "bus.h"

static stored_config_t s_config;
static log_level_t s_log_level;

static config_option_t s_options [] = {
    { "STORED_ENDPOINT", CONFIG_STRING, "tcp://127.0.0.1:5555", 0, 256,
      "ZeroMQ endpoint stored binds its ROUTER to", &s_config.endpoint },
    { "DATA_DIR", CONFIG_STRING, "./data", 0, 4096,
      "directory of the LMDB environment (created if missing)", &s_config.data_dir },
    { "CHAT_ROOMS_TABLE", CONFIG_STRING, "ChatRooms", 0, 64,
      "name of the rooms database", &s_config.rooms_table },
    { "CONNECTIONS_TABLE", CONFIG_STRING, "Connections", 0, 64,
      "name of the connections database", &s_config.connections_table },
    { "MESSAGES_TABLE", CONFIG_STRING, "Messages", 0, 64,
      "name of the messages database", &s_config.messages_table },
    { "MESSAGE_TTL_S", CONFIG_INT, "2592000", 1, 100LL * 365 * 86400,
      "seconds a message is kept (default 30 days)", &s_config.message_ttl_s },
    { "TTL_SWEEP_INTERVAL_MS", CONFIG_INT, "1000", 10, 3600000,
      "how often expired messages are swept", &s_config.sweep_interval_ms },
    { "TTL_SWEEP_BATCH", CONFIG_INT, "1000", 1, 100000,
      "most messages one sweep step deletes (bounds its pause)", &s_config.sweep_batch },
    { "LMDB_MAP_SIZE_MB", CONFIG_INT, "64", 1, 1 << 24,
      "initial LMDB map size in MiB; a full map doubles", &s_config.map_size_mb },
    { "STORED_BATCH_MAX", CONFIG_INT, "1024", 1, 65536,
      "most writes committed in one transaction", &s_config.batch_max },
    { "STORED_CLIENT_ID_FLUSH_MS", CONFIG_INT, "1000", 0, 3600000,
      "how long a room's newest messageId index entries are kept in memory before they are "
      "written together (their messages are durable at once; 0 writes each with its message)",
      &s_config.client_id_flush_ms },
    MONITOR_OPTION,
    TAP_OPTION,
    BUS_OPTION,
    { "LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0,
      "debug, info, warn or error", &s_log_level },
    { .name = NULL }
};

int
main (int argc, char *argv [])
{
    config_load ("stored", "stored: nearchat's storage daemon, the only process that opens LMDB.",
                 s_options, argc, argv);
    log_init ("stored", s_log_level);
    //  czmq would print its own lines on stderr; ours are JSON.
    zsys_set_logstream (NULL);
    zsys_init ();
    //  A single-threaded daemon needs one I/O thread and no more.
    zsys_set_io_threads (1);

    if (bus_start (BUS_STORED))
        return 1;
    db_t db;
    if (db_open (&db, &s_config))
        return 1;
    if (tap_open ("stored")) {
        db_close (&db);
        return 1;
    }
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    zsock_set_linger (router, 0);
    zsock_set_rcvhwm (router, 100000);
    zsock_set_sndhwm (router, 100000);
    if (bus_server (router)) {
        zsock_destroy (&router);
        db_close (&db);
        return 1;
    }
    monitor_t *monitor = monitor_new (router, "router");
    if (zsock_bind (router, "%s", s_config.endpoint) < 0) {
        log_error ("cannot bind %s: %s", s_config.endpoint, zmq_strerror (zmq_errno ()));
        monitor_destroy (&monitor);
        zsock_destroy (&router);
        db_close (&db);
        return 1;
    }
    log_info ("serving %s with LMDB in %s", s_config.endpoint, s_config.data_dir);

    batch_t *batch = batch_new (&db, &s_config, router);
    if (!batch) {
        monitor_destroy (&monitor);
        zsock_destroy (&router);
        db_close (&db);
        return 1;
    }
    batch_run (batch);
    batch_destroy (&batch);

    monitor_destroy (&monitor);
    zsock_destroy (&router);
    db_close (&db);
    tap_close ();
    bus_close ();
    log_info ("stopped");
    return 0;
}
