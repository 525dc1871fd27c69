/*  =========================================================================
    test_bus - the bus admits only the keys of KEYS_DIR (proto/bus.h)

    The whole system with its keys. Raw DEALERs ask stored and the
    gateway's shard backend for their metrics: with the tool key they are
    answered (so the others' silence means something); without CURVE, or
    with a key not in KEYS_DIR, they never are. A shard-hello from a peer
    without a key or with a tool's takes no shard slot, one with the shard
    key does; a room-close without a user is the reaper's alone; an event
    reaches a WebSocket from a shard's key only. A
    10 MB frame from a peer with a key is dropped as its header comes in:
    the daemon still answers and its peak memory does not grow by it.
    =========================================================================
*/

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "harness_system.h"
#include "api.h"
#include "wsclient.h"
#include "bus.h"
#include "clock.h"
#include "monitor.h"
#include "ids.h"

static harness_system_t s_sys;

//  A DEALER to endpoint: with cert (NULL: no CURVE at all) and the public
//  key of the listener's role.
static zsock_t *
s_dealer_watched (const char *endpoint, zcert_t *cert, const char *server_role,
                  monitor_t **monitor)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_linger (dealer, 0);
    if (cert) {
        char path [PATH_MAX];
        snprintf (path, sizeof path, "%s/%s.key", getenv ("KEYS_DIR"), server_role);
        zcert_t *server = zcert_load (path);
        assert (server);
        zcert_apply (cert, dealer);
        zsock_set_curve_serverkey (dealer, zcert_public_txt (server));
        zcert_destroy (&server);
    }
    if (monitor)
        *monitor = monitor_watch (dealer, "big", ZMQ_EVENT_DISCONNECTED);
    assert (zsock_connect (dealer, "%s", endpoint) == 0);
    return dealer;
}

static zsock_t *
s_dealer (const char *endpoint, zcert_t *cert, const char *server_role)
{
    return s_dealer_watched (endpoint, cert, server_role, NULL);
}

static void
s_send (zsock_t *dealer, proto_msg_t *msg)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    assert (proto_encode (msg, &buffer) == 0);
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    zframe_send (&frame, dealer, ZFRAME_DONTWAIT);
    msgpack_sbuffer_destroy (&buffer);
}

//  Does a metrics request on dealer get any answer within timeout_ms?
static bool
s_answers (zsock_t *dealer, int timeout_ms)
{
    proto_msg_t request = { .type = PROTO_METRICS, .request_id = 1 };
    s_send (dealer, &request);
    zpoller_t *poller = zpoller_new (dealer, NULL);
    bool answered = zpoller_wait (poller, timeout_ms) != NULL;
    zpoller_destroy (&poller);
    return answered;
}

static zcert_t *
s_own_cert (const char *role)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/%s.key_secret", getenv ("KEYS_DIR"), role);
    zcert_t *cert = zcert_load (path);
    assert (cert);
    return cert;
}

static void
s_test_allow_list (void)
{
    printf ("a peer without a key, or with a key not in KEYS_DIR, is never answered\n");
    zcert_t *tool = s_own_cert (BUS_TOOL);
    zcert_t *stranger = zcert_new ();
    const char *endpoints [] = { s_sys.stored.endpoint, s_sys.backends [0] };
    const char *roles [] = { BUS_STORED, BUS_GATEWAY };
    for (int i = 0; i < 2; i++) {
        zsock_t *dealer = s_dealer (endpoints [i], tool, roles [i]);
        CHECK (s_answers (dealer, 5000));
        zsock_destroy (&dealer);
        dealer = s_dealer (endpoints [i], NULL, roles [i]);
        CHECK (!s_answers (dealer, 1000));
        zsock_destroy (&dealer);
        dealer = s_dealer (endpoints [i], stranger, roles [i]);
        CHECK (!s_answers (dealer, 1000));
        zsock_destroy (&dealer);
    }
    zcert_destroy (&stranger);
    zcert_destroy (&tool);
}

static bool
s_lists_shard (const char *shard_id)
{
    json_t *health = NULL;
    api_health (s_sys.http_port, &health);
    bool listed = false;
    json_t *shards = json_object_get (health, "shards");
    for (size_t i = 0; i < json_array_size (shards); i++)
        listed |= !strcmp (json_string_value (json_array_get (shards, i)), shard_id);
    json_decref (health);
    return listed;
}

static void
s_test_no_shard_slot (void)
{
    printf ("a shard-hello without a key takes no slot; with the shard key it does\n");
    zsock_t *keyless = s_dealer (s_sys.backends [0], NULL, BUS_GATEWAY);
    zcert_t *shard = s_own_cert (BUS_SHARD);
    zsock_t *keyed = s_dealer (s_sys.backends [0], shard, BUS_GATEWAY);
    zcert_t *tool = s_own_cert (BUS_TOOL);
    zsock_t *tooled = s_dealer (s_sys.backends [0], tool, BUS_GATEWAY);
    //  The keyed one shows up within its heartbeats; by then the keyless
    //  one has said hello as often.
    bool seen = false;
    for (int i = 0; i < 40 && !seen; i++) {
        proto_msg_t hello = { .type = PROTO_SHARD_HELLO, .shard_hello = {
            .shard_id = "shard-stranger", .heartbeat_ms = 250 } };
        s_send (keyless, &hello);
        hello.shard_hello.shard_id = "shard-tool";
        s_send (tooled, &hello);
        hello.shard_hello.shard_id = "shard-keyed";
        s_send (keyed, &hello);
        zclock_sleep (250);
        seen = s_lists_shard ("shard-keyed");
    }
    CHECK (seen);
    CHECK (!s_lists_shard ("shard-stranger"));
    CHECK (!s_lists_shard ("shard-tool"));      //  a key, but not a shard's
    zsock_destroy (&tooled);
    zcert_destroy (&tool);
    zsock_destroy (&keyed);
    zsock_destroy (&keyless);
    zcert_destroy (&shard);
    //  The keyed one falls silent: once the gateway drops it (its shard
    //  timeout), rooms are routed to the real shard alone again.
    REQUIRE (harness_system_wait (&s_sys, 1, 10000) == 0);
}

static void
s_test_roles (void)
{
    printf ("a close without a user is the reaper's: another key's is refused 403\n");
    proto_client_t *tool = proto_client_new_to (s_sys.backends [0], BUS_GATEWAY);
    proto_client_t *reaper = harness_client_as (s_sys.backends [0], BUS_GATEWAY, BUS_REAPER);
    REQUIRE (tool && reaper);
    char room_id [IDS_UUID_SIZE];
    ids_uuid (room_id);
    proto_msg_t close = { .type = PROTO_ROOM_CLOSE, .room_close = {
        .room_id = room_id, .idle_before_ms = clock_now_ms () } };
    proto_msg_t *reply = harness_call (tool, &close);
    CHECK (reply && reply->type == PROTO_ERROR && reply->error.status == 403);
    proto_msg_destroy (&reply);
    reply = harness_call (reaper, &close);      //  carried out: an unknown room
    CHECK (reply && !(reply->type == PROTO_ERROR && reply->error.status == 403));
    proto_msg_destroy (&reply);
    proto_client_destroy (&reaper);
    proto_client_destroy (&tool);
}

//  A socket of user's, joined to a room user created (its id in room_id,
//  IDS_UUID_SIZE bytes); NULL when either fails.
static ws_client_t *
s_member_of_new_room (const char *user, char *room_id)
{
    const char *room = api_create_room (s_sys.http_port, user, 10, 10, NULL, 0);
    if (!room)
        return NULL;
    snprintf (room_id, IDS_UUID_SIZE, "%s", room);
    ws_client_t *socket = api_connect (s_sys.http_port, user, NULL);
    if (socket)
        json_decref (api_join (socket, room_id, user, -1));
    return socket;
}

static void
s_test_forged_events (void)
{
    printf ("an event reaches sockets from a shard's key only\n");
    char room_id [IDS_UUID_SIZE];
    ws_client_t *ana = s_member_of_new_room ("ana", room_id);
    REQUIRE (ana);

    zcert_t *tool = s_own_cert (BUS_TOOL), *shard = s_own_cert (BUS_SHARD);
    zsock_t *forgers [] = { s_dealer (s_sys.backends [0], NULL, BUS_GATEWAY),
                            s_dealer (s_sys.backends [0], tool, BUS_GATEWAY) };
    zsock_t *real = s_dealer (s_sys.backends [0], shard, BUS_GATEWAY);
    char id [IDS_UUID_SIZE];
    ids_uuid (id);
    proto_msg_t event = { .type = PROTO_EVENT_MESSAGE, .event_message.message = {
        .room_id = room_id, .id = id, .seq = 1, .user_id = "mallory", .text = "forged",
        .created_at_ms = clock_now_ms () } };
    //  The tool's link is up once it is answered: its event is surely sent.
    CHECK (s_answers (forgers [1], 5000));
    s_send (forgers [0], &event);
    s_send (forgers [1], &event);
    event.event_message.message.text = "from a shard";
    CHECK (s_answers (real, 5000));
    s_send (real, &event);
    //  The shard's arrives; nothing forged does, before or within 1 s after.
    bool real_seen = false, forged_seen = false;
    int64_t deadline = clock_mono_ms () + 5000;
    while (clock_mono_ms () < deadline) {
        json_t *frame = ws_expect (ana, "new-message", 200);
        if (frame && j_is (frame, "text", "forged"))
            forged_seen = true;
        if (frame && j_is (frame, "text", "from a shard") && !real_seen) {
            real_seen = true;
            deadline = clock_mono_ms () + 1000;
        }
        json_decref (frame);
    }
    CHECK (real_seen);
    CHECK (!forged_seen);
    zsock_destroy (&real);
    zsock_destroy (&forgers [0]);
    zsock_destroy (&forgers [1]);
    zcert_destroy (&shard);
    zcert_destroy (&tool);
    ws_close (&ana);
}

//  A shard sends what one turn made for a gateway as one frame, messages
//  back to back (roomd's links_flush): the gateway gives each event of it,
//  in order; bytes after them that are no whole message are refused alone.
static void
s_test_event_frames (void)
{
    printf ("a frame of several events from a shard: each delivered, in order\n");
    char room_id [IDS_UUID_SIZE];
    ws_client_t *ben = s_member_of_new_room ("ben", room_id);
    REQUIRE (ben);

    zcert_t *shard = s_own_cert (BUS_SHARD);
    zsock_t *dealer = s_dealer (s_sys.backends [0], shard, BUS_GATEWAY);
    CHECK (s_answers (dealer, 5000));
    const char *texts [] = { "one", "two", "three" };
    char ids [3][IDS_UUID_SIZE];
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    for (int i = 0; i < 3; i++) {
        ids_uuid (ids [i]);
        proto_msg_t event = { .type = PROTO_EVENT_MESSAGE, .event_message.message = {
            .room_id = room_id, .id = ids [i], .seq = (uint64_t) i + 1, .user_id = "ben",
            .text = texts [i], .created_at_ms = clock_now_ms () } };
        assert (proto_encode (&event, &buffer) == 0);
        if (i == 1)
            msgpack_sbuffer_write (&buffer, "\x93\x01\xc1", 3);  //  no message: the rest
    }
    //  A frame of "one", "two", and then bytes that end it: "three" is in
    //  the rest that does not decode, so it never comes.
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    zframe_send (&frame, dealer, 0);
    for (int i = 0; i < 2; i++) {
        json_t *message = ws_expect (ben, "new-message", 5000);
        CHECK (message && j_is (message, "text", texts [i]) && j_num (message, "seq") == i + 1);
        json_decref (message);
    }
    CHECK (ws_quiet (ben, "new-message", 500));
    CHECK (harness_logged (s_sys.gateways [0].log_path, "no proto message ("));
    msgpack_sbuffer_destroy (&buffer);
    zsock_destroy (&dealer);
    zcert_destroy (&shard);
    ws_close (&ben);
}

static long
s_peak_kib (pid_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    long kib = -1;
    while (file && fgets (line, sizeof line, file))
        if (sscanf (line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (file)
        fclose (file);
    return kib;
}

static void
s_test_message_size (void)
{
    printf ("a 10 MB frame is dropped unread: the daemon answers and its peak memory holds\n");
    zcert_t *tool = s_own_cert (BUS_TOOL);
    const char *endpoints [] = { s_sys.stored.endpoint, s_sys.backends [0] };
    const char *roles [] = { BUS_STORED, BUS_GATEWAY };
    pid_t pids [] = { s_sys.stored.pid, s_sys.gateways [0].pid };
    size_t size = 10 * 1024 * 1024;
    char *big = malloc (size);
    assert (big);
    memset (big, 'x', size);
    for (int i = 0; i < 2; i++) {
        monitor_t *monitor = NULL;
        zsock_t *dealer = s_dealer_watched (endpoints [i], tool, roles [i], &monitor);
        CHECK (s_answers (dealer, 5000));       //  the link is up: the frame goes at once
        zframe_t *frame = zframe_recv (dealer);
        zframe_destroy (&frame);
        long before = s_peak_kib (pids [i]);
        frame = zframe_new (big, size);
        zframe_send (&frame, dealer, 0);
        //  The daemon drops the link that sent it (a daemon that read it
        //  whole would keep it): wait for that, 10 s at most.
        zpoller_t *poller = zpoller_new (monitor_socket (monitor), NULL);
        bool dropped = false;
        int64_t deadline = clock_mono_ms () + 10000;
        while (!dropped && clock_mono_ms () < deadline)
            if (zpoller_wait (poller, 200))
                dropped = monitor_event (monitor) == ZMQ_EVENT_DISCONNECTED;
        zpoller_destroy (&poller);
        CHECK (dropped);
        zsock_t *after = s_dealer (endpoints [i], tool, roles [i]);
        CHECK (s_answers (after, 5000));        //  and is up
        long peak = s_peak_kib (pids [i]);
        printf ("  %s: peak %ld KiB before, %ld after\n", roles [i], before, peak);
        CHECK (before > 0 && peak - before < 4096);
        zsock_destroy (&after);
        monitor_destroy (&monitor);
        zsock_destroy (&dealer);
    }
    free (big);
    zcert_destroy (&tool);
}

//  The public key of role in dir, as text, or "" without one.
static void
s_public (const char *dir, const char *role, char *key)
{
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/%s.key", dir, role);
    zcert_t *cert = zcert_load (path);
    snprintf (key, 41, "%s", cert? zcert_public_txt (cert): "");
    zcert_destroy (&cert);
}

static void
s_test_key_maker (void)
{
    printf ("nearchat-keys makes every role's pair, keeps them, and remakes them with --force\n");
    char dir [PATH_MAX], command [PATH_MAX * 2], first [41], again [41], forced [41];
    snprintf (dir, sizeof dir, "%s/made-keys", harness_dir ());
    snprintf (command, sizeof command, "KEYS_DIR='%s' %s/nearchat-keys >/dev/null", dir,
              NEARCHAT_BIN_DIR);
    CHECK (system (command) == 0);
    const char *roles [] = { BUS_STORED, BUS_GATEWAY, BUS_SHARD, BUS_REAPER, BUS_TOOL };
    for (int i = 0; i < 5; i++) {
        char path [PATH_MAX + 32];
        snprintf (path, sizeof path, "%s/%s.key_secret", dir, roles [i]);
        struct stat info;
        CHECK (stat (path, &info) == 0 && (info.st_mode & 0777) == 0600);
        s_public (dir, roles [i], first);
        CHECK (strlen (first) == 40);
    }
    s_public (dir, BUS_SHARD, first);
    CHECK (system (command) == 0);
    s_public (dir, BUS_SHARD, again);
    CHECK (streq (first, again));
    snprintf (command, sizeof command, "KEYS_DIR='%s' %s/nearchat-keys --force >/dev/null", dir,
              NEARCHAT_BIN_DIR);
    CHECK (system (command) == 0);
    s_public (dir, BUS_SHARD, forced);
    CHECK (strlen (forced) == 40 && !streq (first, forced));
}

static proto_msg_t *
s_beat_as (proto_client_t *client, const char *gateway_id)
{
    char incarnation [IDS_UUID_SIZE];
    ids_uuid (incarnation);
    proto_msg_t beat = { .type = PROTO_GATEWAY_BEAT, .gateway_beat = {
        .gateway_id = gateway_id, .incarnation = incarnation, .at_ms = clock_now_ms (),
        .first = true } };
    return harness_call (client, &beat);
}

static bool
s_refused (proto_msg_t **reply)
{
    bool refused = *reply && (*reply)->type == PROTO_ERROR && (*reply)->error.status == 403;
    proto_msg_destroy (reply);
    return refused;
}

static bool
s_served (proto_msg_t **reply)
{
    bool served = *reply && (*reply)->type != PROTO_ERROR;
    proto_msg_destroy (reply);
    return served;
}

//  A gateway with a key of its own (nearchat-keys --gateway ID): no other
//  key may beat for it (a first beat would declare its run dead, and the
//  reaper would clear its users) nor write its connection records.
static void
s_test_gateway_keys (void)
{
    printf ("a gateway with a key of its own: only that key beats or writes records for it\n");
    REQUIRE (bus_keys_make_gateway (getenv ("KEYS_DIR"), "gw-victim", false) == 0);
    proto_client_t *shared = harness_client_as (s_sys.stored.endpoint, BUS_STORED, BUS_GATEWAY);
    proto_client_t *own = harness_client_as (s_sys.stored.endpoint, BUS_STORED,
                                             BUS_GATEWAY "-gw-victim");
    REQUIRE (shared && own);
    proto_msg_t *reply = s_beat_as (shared, "gw-victim");
    CHECK (s_refused (&reply));
    reply = s_beat_as (own, "gw-victim");
    CHECK (s_served (&reply));
    reply = s_beat_as (own, "gw-other");
    CHECK (s_refused (&reply));
    reply = s_beat_as (shared, "gw-other");        //  no key of its own: the shared key's
    CHECK (s_served (&reply));

    char conn_id [IDS_UUID_SIZE];
    ids_uuid (conn_id);
    proto_msg_t put = { .type = PROTO_CONN_PUT, .conn_put = { .connection = {
        .conn_id = conn_id, .gateway_id = "gw-victim", .user_id = "mallory" } } };
    reply = harness_call (shared, &put);
    CHECK (s_refused (&reply));
    reply = harness_call (own, &put);
    CHECK (s_served (&reply));
    proto_client_destroy (&own);
    proto_client_destroy (&shared);

    //  And a gateway run as gw-victim presents that key: its beats and its
    //  sockets' records are taken, so a chat works through it.
    harness_system_stop (&s_sys);
    const char *env [] = { "GATEWAY_ID=gw-victim", NULL };
    REQUIRE (harness_system_start (&s_sys, 1, false, env) == 0);
    const char *room = api_create_room (s_sys.http_port, "alice", 10.0, 10.0, NULL, 0);
    REQUIRE (room);
    ws_client_t *alice = api_connect (s_sys.http_port, "alice", "Alice");
    ws_client_t *bob = api_connect (s_sys.http_port, "bob", "Bob");
    REQUIRE (alice && bob);
    json_t *history = api_join (alice, room, "alice", -1);
    CHECK (history);
    json_decref (history);
    history = api_join (bob, room, "bob", -1);
    CHECK (history);
    json_decref (history);
    CHECK (api_say (bob, room, "bob-1", "from bob") > 0);
    CHECK (api_heard (alice, "from bob") > 0);
    ws_close (&bob);
    ws_close (&alice);
    CHECK (harness_logged (s_sys.gateways [0].log_path, "by its own key"));
}

int
main (void)
{
    harness_init ("bus");
    REQUIRE (harness_system_start (&s_sys, 1, false, NULL) == 0);
    s_test_allow_list ();
    s_test_no_shard_slot ();
    s_test_roles ();
    s_test_forged_events ();
    s_test_event_frames ();
    s_test_message_size ();
    s_test_key_maker ();
    s_test_gateway_keys ();
    return harness_finish ();
}
