/*  =========================================================================
    harness_system.h - the whole of nearchat started for a test: stored,
    one gateway or more, N roomd shards and, if asked, the reaper

    Each on free loopback ports, with a temporary DATA_DIR and its log under
    the test's directory, stopped by pid (harness_finish stops whatever is
    still running). The system is ready when the gateway's /healthz says
    stored is up and lists every shard.
    =========================================================================
*/

#ifndef NEARCHAT_HARNESS_SYSTEM_H_INCLUDED
#define NEARCHAT_HARNESS_SYSTEM_H_INCLUDED

#include "harness.h"

#define HARNESS_SHARDS_MAX      8
#define HARNESS_GATEWAYS_MAX    3
#define HARNESS_SETTINGS_MAX    64

typedef struct {
    harness_daemon_t stored;
    harness_daemon_t gateways [HARNESS_GATEWAYS_MAX];
    int gateway_count;
    int http_ports [HARNESS_GATEWAYS_MAX];          //  each gateway's HTTP and WebSocket port
    char backends [HARNESS_GATEWAYS_MAX][64];       //  each gateway's backend ROUTER endpoint
    int http_port;                                  //  the first gateway's port
    harness_daemon_t shards [HARNESS_SHARDS_MAX];
    int shard_count;
    char shard_ids [HARNESS_SHARDS_MAX][32];        //  "shard-1", ...: SHARD_ID of each
    harness_daemon_t reaper;                        //  pid 0 unless asked for
    char gateway_endpoints [HARNESS_GATEWAYS_MAX * 64];    //  every backend, comma-separated
    char settings [HARNESS_SETTINGS_MAX][192];      //  storage of the "NAME=value" strings
    int setting_count;
    harness_daemon_t edge;                          //  the edge (HAProxy); pid 0 unless started
    int edge_port;                                  //  the edge's plain HTTP and WebSocket port
    int edge_tls_port;                              //  its HTTPS and WSS port; 0 without TLS
    char edge_cert [160];                           //  the certificate made for it (TLS)
    char edge_key [160];                            //  and its key
} harness_system_t;

//  What a gateway behind the edge runs with, as `./nearchat up` and compose
//  run it: the client's address is the edge's X-Forwarded-For.
#define HARNESS_BEHIND_EDGE     "TRUST_PROXY_HEADERS=1"

//  Start stored, one gateway, shards roomd processes (1..HARNESS_SHARDS_MAX)
//  and, when reaper is true, the reaper, and wait (15 s at most) until the
//  gateway reports stored up and every shard live. extra_env (NULL or a
//  NULL-terminated list of at most 10 "NAME=value") goes to every daemon,
//  after the harness's own settings, so it may override them (shards say
//  hello every 250 ms, HEARTBEAT_MS, and the gateway drops one silent for
//  1500 ms, SHARD_TIMEOUT_MS). Returns 0, or -1 with the logs printed.
int
    harness_system_start (harness_system_t *sys, int shards, bool reaper,
                          const char *const *extra_env);

//  As harness_system_start with gateways gateways side by side
//  (1..HARNESS_GATEWAYS_MAX): every shard and the reaper link to all of
//  them, and each must report every shard live.
int
    harness_system_start_many (harness_system_t *sys, int gateways, int shards, bool reaper,
                               const char *const *extra_env);

//  Wait at most timeout_ms until every running gateway's /healthz reports
//  stored up and exactly shards live shards. Returns 0, or -1 (what
//  /healthz said last is printed).
int
    harness_system_wait (harness_system_t *sys, int shards, int timeout_ms);

//  Stop shard index (0-based) with SIGTERM, or with SIGKILL when kill9.
void
    harness_shard_stop (harness_system_t *sys, int index, bool kill9);

//  Start shard index again with the same SHARD_ID and settings, and wait
//  until /healthz lists every shard of the system. Returns 0 or -1.
int
    harness_shard_start (harness_system_t *sys, int index);

//  The index of the shard that owns room_id when all the system's shards
//  are live (proto's rendezvous routing over their ids).
int
    harness_shard_owner (harness_system_t *sys, const char *room_id);

//  Stop every daemon of sys that runs (SIGTERM, by pid), so that a test may
//  start another system after it.
void
    harness_system_stop (harness_system_t *sys);

//  Start the edge in front of the system's first gateway as `./nearchat
//  up` does with TLS_CERT and TLS_KEY: nearchat-edge from the build's bin
//  directory (HAProxy, Debian's package) on a free plain port
//  (sys->edge_port) and, when tls, on a free TLS port too
//  (sys->edge_tls_port) with a self-signed RSA certificate for 127.0.0.1
//  made here (sys->edge_cert, sys->edge_key). edge_env (NULL or a
//  NULL-terminated list of at most 8 "NAME=value") goes to the edge after
//  the harness's settings, so it may override them (EDGE_* limits). The
//  gateway should run with HARNESS_BEHIND_EDGE. Waits (10 s at most)
//  until /healthz answers 200 through each port. Returns 0, or -1 with the
//  edge's log printed.
int
    harness_edge_start (harness_system_t *sys, bool tls, const char *const *edge_env);

//  harness_system_start (no reaper) with HARNESS_BEHIND_EDGE added to
//  extra_env (at most 9 then), and harness_edge_start in front of it.
int
    harness_system_start_edge (harness_system_t *sys, int shards, bool tls,
                               const char *const *extra_env, const char *const *edge_env);

//  Resident memory of a daemon in KiB (VmRSS), or -1.
long
    harness_rss_kib (const harness_daemon_t *daemon);

#endif
