/*  =========================================================================
    nearchat-spy - print every message nearchat's daemons send and receive

        nearchat-spy [--type TYPE[,TYPE...]] [--room ROOM_ID]
                     [--seconds N] [--count N] TAP_ENDPOINT...

    Each daemon started with TAP_ENDPOINT publishes a copy of every message
    that crosses its ZeroMQ sockets (proto/tap.h). The spy subscribes to
    the taps given and prints one JSON object a line:
        {"ts", "daemon", "dir" ("in"/"out"), "peer", "type", "requestId",
         "trace", "sentAt", "body", and "error" if proto would refuse it}
    --type keeps the named types (room-send, msg-append, ...); --room the
    messages about one room; --seconds and --count stop it. Made to be
    piped into jq or grep; it never sends anything to a daemon.

    A tap is CURVE as every link of the bus is (proto/bus.h): the spy
    speaks with the tool key of KEYS_DIR (the environment's, else
    ./data/keys). Not told which daemon a tap is, it subscribes once with
    each daemon role's server key: the handshake of the right one alone
    succeeds (the others are retried, backing off to every 2 s).
    =========================================================================
*/

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include <jansson.h>
#include "clock.h"
#include "config.h"
#include "proto.h"
#include "bus.h"

#define TAPS_MAX    64
#define TYPES_MAX   32

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: nearchat-spy [--type TYPE[,TYPE...]] [--room ROOM_ID] [--seconds N] [--count N]\n"
        "                    TAP_ENDPOINT...\n\n"
        "Prints every message the daemons publishing on the TAP_ENDPOINTs send and receive,\n"
        "one JSON object a line. Start a daemon with TAP_ENDPOINT=tcp://127.0.0.1:5560 (or\n"
        "tcp://127.0.0.1:* and read the port from its log) to tap it.\n\n"
        "  --type TYPES   only these message types, comma-separated (room-send,msg-append)\n"
        "  --room ID      only messages that name this room (a reply that does not, such as\n"
        "                 append-reply, is left out: follow it by its trace)\n"
        "  --seconds N    stop after N seconds\n"
        "  --count N      stop after N lines\n");
}

//  True if value is about room: a "roomId" equal to it, or a "room" with
//  that "id", anywhere inside.
static bool
s_about_room (json_t *value, const char *room)
{
    if (json_is_object (value)) {
        const char *key;
        json_t *member;
        json_object_foreach (value, key, member) {
            if (!strcmp (key, "roomId") && json_is_string (member)
            &&  !strcmp (json_string_value (member), room))
                return true;
            if (!strcmp (key, "room") && json_is_object (member)
            &&  json_is_string (json_object_get (member, "id"))
            &&  !strcmp (json_string_value (json_object_get (member, "id")), room))
                return true;
            if (s_about_room (member, room))
                return true;
        }
    }
    else
    if (json_is_array (value)) {
        size_t index;
        json_t *member;
        json_array_foreach (value, index, member)
            if (s_about_room (member, room))
                return true;
    }
    return false;
}

static bool
s_number (const char *text, long *out)
{
    char *end;
    *out = strtol (text, &end, 10);
    return *text && !*end && *out > 0;
}

static void
s_bad (const char *why, const char *what)
{
    fprintf (stderr, "nearchat-spy: %s: %s\n", why, what);
    s_usage (stderr);
    exit (2);
}

int
main (int argc, char *argv [])
{
    const char *taps [TAPS_MAX], *types [TYPES_MAX], *room = NULL;
    size_t tap_count = 0, type_count = 0;
    long seconds = 0, count = 0;
    char *type_list = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        bool has_value = i + 1 < argc;
        if (!strcmp (arg, "--help") || !strcmp (arg, "-h")) {
            s_usage (stdout);
            return 0;
        }
        else
        if (!strcmp (arg, "--version")) {
            printf ("nearchat-spy %s\n", NEARCHAT_VERSION);
            return 0;
        }
        else
        if (!strcmp (arg, "--type") && has_value)
            type_list = argv [++i];
        else
        if (!strcmp (arg, "--room") && has_value)
            room = argv [++i];
        else
        if (!strcmp (arg, "--seconds") && has_value) {
            if (!s_number (argv [++i], &seconds))
                s_bad ("--seconds wants a positive number", argv [i]);
        }
        else
        if (!strcmp (arg, "--count") && has_value) {
            if (!s_number (argv [++i], &count))
                s_bad ("--count wants a positive number", argv [i]);
        }
        else
        if (arg [0] == '-')
            s_bad ("unknown option, or no value after it", arg);
        else
        if (tap_count < TAPS_MAX)
            taps [tap_count++] = arg;
    }
    if (!tap_count)
        s_bad ("no tap endpoint given", "(none)");
    for (char *save = NULL, *name = type_list? strtok_r (type_list, ",", &save): NULL; name;
         name = strtok_r (NULL, ",", &save)) {
        bool known = false;
        for (int type = 1; type < PROTO_TYPE_LIMIT && !known; type++)
            known = proto_type_name (type) && !strcmp (proto_type_name (type), name);
        if (!known)
            s_bad ("no such message type", name);
        if (type_count < TYPES_MAX)
            types [type_count++] = name;
    }

    zsys_set_logstream (NULL);
    zsys_init ();
    const char *keys_dir = getenv ("KEYS_DIR");
    if (bus_setup (keys_dir && *keys_dir? keys_dir: BUS_KEYS_DIR_DEFAULT, BUS_TOOL))
        return 2;
    const char *roles [] = { BUS_STORED, BUS_GATEWAY, BUS_SHARD, BUS_REAPER };
    zsock_t *subs [4];
    zpoller_t *poller = zpoller_new (NULL);
    for (int r = 0; r < 4; r++) {
        subs [r] = zsock_new (ZMQ_SUB);
        assert (subs [r]);
        zsock_set_subscribe (subs [r], "");
        zsock_set_rcvhwm (subs [r], 100000);
        zsock_set_reconnect_ivl_max (subs [r], 2000);
        if (bus_client (subs [r], roles [r]))
            return 2;
        for (size_t i = 0; i < tap_count; i++)
            if (zsock_connect (subs [r], "%s", taps [i]))
                s_bad ("not a ZeroMQ endpoint", taps [i]);
        zpoller_add (poller, subs [r]);
    }
    setvbuf (stdout, NULL, _IOLBF, 0);

    int64_t deadline = seconds? clock_mono_ms () + seconds * 1000: 0;
    long printed = 0;
    while (!zsys_interrupted && (!count || printed < count)) {
        int64_t wait = deadline? deadline - clock_mono_ms (): 1000;
        if (deadline && wait <= 0)
            break;
        zsock_t *sub = zpoller_wait (poller, (int) (wait > 1000? 1000: wait));
        if (!sub)
            continue;
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg)
            break;
        char *daemon = zmsg_popstr (msg), *dir = zmsg_popstr (msg), *peer = zmsg_popstr (msg);
        zframe_t *frame = zmsg_pop (msg);
        json_t *line = frame? proto_json (zframe_data (frame), zframe_size (frame)): NULL;
        if (!line && frame) {
            line = json_object ();
            json_object_set_new (line, "error", json_string ("not msgpack"));
        }
        bool keep = line != NULL;
        if (keep && type_count) {
            const char *type = json_string_value (json_object_get (line, "type"));
            keep = false;
            for (size_t i = 0; i < type_count && type && !keep; i++)
                keep = !strcmp (types [i], type);
        }
        if (keep && room)
            keep = s_about_room (json_object_get (line, "body"), room);
        if (keep) {
            char now [32];
            clock_iso8601 (clock_now_ms (), now);
            json_t *head = json_pack ("{s:s, s:s, s:s, s:s}", "ts", now,
                                      "daemon", daemon? daemon: "", "dir", dir? dir: "",
                                      "peer", peer? peer: "");
            json_object_update (head, line);
            char *text = json_dumps (head, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (text)
                printf ("%s\n", text);
            free (text);
            json_decref (head);
            printed++;
        }
        json_decref (line);
        zframe_destroy (&frame);
        free (daemon);
        free (dir);
        free (peer);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    for (int r = 0; r < 4; r++)
        zsock_destroy (&subs [r]);
    return 0;
}
