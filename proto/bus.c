/*  =========================================================================
    bus.c - CURVE keys, the allow-list and the message size of every link

    See bus.h. One key pair a process (its role's), one zauth actor a
    process (the ZAP handler of czmq's context, for its listeners). The
    ZAP domain is set on every server socket: libzmq asks the handler only
    for sockets with a domain, and a CURVE server without a handler would
    admit any key.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "bus.h"
#include "log.h"

#define BUS_ZAP_DOMAIN  "nearchat"

static const char *s_roles [] = { BUS_STORED, BUS_GATEWAY, BUS_SHARD, BUS_REAPER, BUS_TOOL };
#define ROLE_COUNT (sizeof s_roles / sizeof s_roles [0])

const char *bus_keys_dir = BUS_KEYS_DIR_DEFAULT;

static zcert_t *s_cert;                 //  this process's key pair
static zcert_t *s_client_cert;          //  a gateway's own, for its links (bus_own_key)
static char s_role [16];
static char s_keys_dir [4096];
static zactor_t *s_auth;                //  the ZAP handler, once a listener exists

bool
bus_gateway_id_ok (const char *name)
{
    size_t size = strlen (name);
    if (size == 0 || size > 100 || name [0] == '.')
        return false;
    return strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        == size;
}

//  Make keys_dir/<name>.key and .key_secret for role (and, for a gateway
//  of its own, the id it speaks for), unless they exist and not force.
static int
s_make (const char *keys_dir, const char *name, const char *role, const char *gateway_id,
        bool force)
{
    char public_path [4200], secret_path [4220];
    snprintf (public_path, sizeof public_path, "%s/%s.key", keys_dir, name);
    snprintf (secret_path, sizeof secret_path, "%s_secret", public_path);
    if (!force && zsys_file_exists (public_path) && zsys_file_exists (secret_path))
        return 0;
    zcert_t *cert = zcert_new ();
    assert (cert);
    zcert_set_meta (cert, "role", "%s", role);
    if (gateway_id)
        zcert_set_meta (cert, "gateway", "%s", gateway_id);
    //  The secret first: a public cert alone would admit a key no one holds.
    int rc = zcert_save_secret (cert, secret_path);
    if (rc == 0)
        rc = chmod (secret_path, 0600);
    if (rc == 0)
        rc = zcert_save_public (cert, public_path);
    zcert_destroy (&cert);
    if (rc) {
        fprintf (stderr, "nearchat-keys: cannot write %s: %s\n", public_path, strerror (errno));
        return -1;
    }
    return 0;
}

static int
s_make_dir (const char *keys_dir)
{
    if (zsys_dir_create ("%s", keys_dir)) {
        fprintf (stderr, "nearchat-keys: cannot make %s: %s\n", keys_dir, strerror (errno));
        return -1;
    }
    chmod (keys_dir, 0700);
    return 0;
}

int
bus_keys_make (const char *keys_dir, bool force)
{
    assert (keys_dir);
    if (s_make_dir (keys_dir))
        return -1;
    for (size_t i = 0; i < ROLE_COUNT; i++)
        if (s_make (keys_dir, s_roles [i], s_roles [i], NULL, force))
            return -1;
    return 0;
}

int
bus_keys_make_gateway (const char *keys_dir, const char *gateway_id, bool force)
{
    assert (keys_dir && gateway_id);
    if (!bus_gateway_id_ok (gateway_id)) {
        fprintf (stderr, "nearchat-keys: '%s' cannot be a gateway id with a key of its own "
                 "(letters, digits, '.', '_', '-')\n", gateway_id);
        return -1;
    }
    char name [128];
    snprintf (name, sizeof name, BUS_GATEWAY "-%s", gateway_id);
    return s_make_dir (keys_dir) || s_make (keys_dir, name, BUS_GATEWAY, gateway_id, force)? -1: 0;
}

int
bus_setup (const char *keys_dir, const char *role)
{
    assert (keys_dir && role);
    snprintf (s_keys_dir, sizeof s_keys_dir, "%s", keys_dir);
    snprintf (s_role, sizeof s_role, "%s", role);
    char path [4200];
    snprintf (path, sizeof path, "%s/%s.key_secret", keys_dir, role);
    zcert_destroy (&s_cert);
    s_cert = zcert_load (path);
    if (!s_cert) {
        log_error ("no %s key in KEYS_DIR (%s): run `./nearchat keys`", role, path);
        return -1;
    }
    return 0;
}

int
bus_start (const char *role)
{
    return bus_setup (bus_keys_dir, role);
}

int
bus_own_key (const char *gateway_id)
{
    assert (s_cert && gateway_id);
    zcert_destroy (&s_client_cert);
    if (!bus_gateway_id_ok (gateway_id))
        return 0;
    char path [4300];
    snprintf (path, sizeof path, "%s/" BUS_GATEWAY "-%s.key_secret", s_keys_dir, gateway_id);
    if (!zsys_file_exists (path))
        return 0;
    s_client_cert = zcert_load (path);
    if (!s_client_cert) {
        log_error ("cannot read the key of gateway %s (%s)", gateway_id, path);
        return -1;
    }
    const char *own = zcert_meta (s_client_cert, "gateway");
    if (!own || strcmp (own, gateway_id)) {
        log_error ("%s is not the key of gateway %s (its cert names %s)", path, gateway_id,
                   own? own: "no gateway");
        zcert_destroy (&s_client_cert);
        return -1;
    }
    log_info ("the bus knows this gateway by its own key (%s)", path);
    return 0;
}

const char *
bus_own_role (void)
{
    return s_cert? s_role: NULL;
}

static void
s_limit (zsock_t *socket)
{
    int64_t max = BUS_MSG_MAX;
    zmq_setsockopt (zsock_resolve (socket), ZMQ_MAXMSGSIZE, &max, sizeof max);
}

int
bus_server (zsock_t *socket)
{
    assert (socket);
    if (!s_cert) {
        log_error ("a listener without keys: bus_setup first");
        return -1;
    }
    if (!s_auth) {
        s_auth = zactor_new (zauth, NULL);
        if (!s_auth) {
            log_error ("cannot start the ZAP handler");
            return -1;
        }
        zstr_sendx (s_auth, "CURVE", s_keys_dir, NULL);
        zsock_wait (s_auth);
    }
    zcert_apply (s_cert, socket);
    zsock_set_curve_server (socket, 1);
    zsock_set_zap_domain (socket, BUS_ZAP_DOMAIN);
    s_limit (socket);
    return 0;
}

int
bus_client (zsock_t *socket, const char *server_role)
{
    assert (socket && server_role);
    if (!s_cert) {
        log_error ("a link without keys: bus_setup first");
        return -1;
    }
    char path [4200];
    snprintf (path, sizeof path, "%s/%s.key", s_keys_dir, server_role);
    zcert_t *server = zcert_load (path);
    if (!server) {
        log_error ("no %s public key in KEYS_DIR (%s): run `./nearchat keys`", server_role, path);
        return -1;
    }
    zcert_apply (s_client_cert? s_client_cert: s_cert, socket);
    zsock_set_curve_serverkey (socket, zcert_public_txt (server));
    zcert_destroy (&server);
    s_limit (socket);
    return 0;
}

const char *
bus_role (zmq_msg_t *msg)
{
    assert (msg);
    //  zauth hands libzmq the metadata of the cert it admitted: the "role"
    //  the operator's public cert names, attached to each message.
    return zmq_msg_gets (msg, "role");
}

bool
bus_is (const char *role, const char *name)
{
    return role && streq (role, name);
}

bool
bus_may_send (const char *role, const proto_msg_t *msg)
{
    assert (msg);
    if (!role)
        return false;
    switch (msg->type) {
        case PROTO_TTL_SWEEP:
        case PROTO_GATEWAYS_SILENT:
            return bus_is (role, BUS_REAPER);
        case PROTO_GATEWAY_BEAT:
            return bus_is (role, msg->gateway_beat.gone? BUS_REAPER: BUS_GATEWAY);
        case PROTO_SHARD_HELLO:
        case PROTO_EVENT_JOINED:
        case PROTO_EVENT_LEFT:
        case PROTO_EVENT_MESSAGE:
        case PROTO_EVENT_TYPING:
        case PROTO_EVENT_CLOSED:
            return bus_is (role, BUS_SHARD);
        case PROTO_ROOM_CLOSE:
            return msg->room_close.user_id || bus_is (role, BUS_REAPER);
        default:
            return true;
    }
}

bool
bus_speaks_for (zmq_msg_t *frame, const proto_msg_t *msg)
{
    assert (frame && msg);
    const char *gateway_id = NULL;
    if (msg->type == PROTO_GATEWAY_BEAT && !msg->gateway_beat.gone)
        gateway_id = msg->gateway_beat.gateway_id;
    else
    if (msg->type == PROTO_CONN_PUT)
        gateway_id = msg->conn_put.connection.gateway_id;
    if (!gateway_id || !bus_is (bus_role (frame), BUS_GATEWAY))
        return true;
    const char *own = zmq_msg_gets (frame, "gateway");
    if (own)
        return streq (own, gateway_id);
    //  The gateways' shared key: for any gateway but one with a key of its
    //  own, which the allow-list (KEYS_DIR) shows.
    if (!bus_gateway_id_ok (gateway_id))
        return true;
    char path [4300];
    snprintf (path, sizeof path, "%s/" BUS_GATEWAY "-%s.key", s_keys_dir, gateway_id);
    return !zsys_file_exists (path);
}

void
bus_close (void)
{
    zcert_destroy (&s_client_cert);
    zactor_destroy (&s_auth);
    zcert_destroy (&s_cert);
}
