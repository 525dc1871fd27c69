/*  =========================================================================
    nearchat-ping - does a daemon answer over ZeroMQ? (container healthchecks)

        nearchat-ping [--timeout MS] [--gateway] ENDPOINT

    Asks the daemon at ENDPOINT (stored, or with --gateway a gateway's
    shard backend) for its metrics and exits 0 if any proto reply comes
    within the timeout (default 2000 ms), 1 if none does, 2 on bad
    arguments or no key. It speaks with the tool key of KEYS_DIR (the
    environment's, else ./data/keys).
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "client.h"
#include "config.h"
#include "bus.h"

int
main (int argc, char *argv [])
{
    long timeout_ms = 2000;
    const char *endpoint = NULL;
    const char *server = BUS_STORED;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv [i], "--help")) {
            printf ("usage: nearchat-ping [--timeout MS] [--gateway] ENDPOINT\n");
            return 0;
        }
        if (!strcmp (argv [i], "--version")) {
            printf ("nearchat-ping %s\n", NEARCHAT_VERSION);
            return 0;
        }
        if (!strcmp (argv [i], "--timeout") && i + 1 < argc) {
            char *end;
            timeout_ms = strtol (argv [++i], &end, 10);
            if (*end || timeout_ms < 1 || timeout_ms > 600000) {
                fprintf (stderr, "nearchat-ping: bad value for --timeout: '%s'\n", argv [i]);
                return 2;
            }
        }
        else
        if (!strcmp (argv [i], "--gateway"))
            server = BUS_GATEWAY;
        else
        if (argv [i][0] != '-' && !endpoint)
            endpoint = argv [i];
        else {
            fprintf (stderr, "usage: nearchat-ping [--timeout MS] [--gateway] ENDPOINT\n");
            return 2;
        }
    }
    if (!endpoint) {
        fprintf (stderr, "usage: nearchat-ping [--timeout MS] [--gateway] ENDPOINT\n");
        return 2;
    }
    zsys_set_logstream (NULL);
    zsys_init ();
    const char *keys_dir = getenv ("KEYS_DIR");
    if (bus_setup (keys_dir && *keys_dir? keys_dir: BUS_KEYS_DIR_DEFAULT, BUS_TOOL))
        return 2;
    proto_client_t *client = proto_client_new_to (endpoint, server);
    if (!client) {
        fprintf (stderr, "nearchat-ping: not a ZeroMQ endpoint: %s\n", endpoint);
        return 2;
    }
    proto_msg_t request = { .type = PROTO_METRICS };
    proto_msg_t *reply = proto_client_call (client, &request, (int) timeout_ms);
    int status = reply? 0: 1;
    if (!reply)
        fprintf (stderr, "nearchat-ping: %s did not answer within %ld ms\n", endpoint, timeout_ms);
    proto_msg_destroy (&reply);
    proto_client_destroy (&client);
    return status;
}
