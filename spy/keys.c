/*  =========================================================================
    nearchat-keys - make the CURVE keys of the bus (`./nearchat keys`)

        nearchat-keys [--force] [--gateway ID]... [--keys-dir DIR]

    Makes one czmq certificate per role (stored, gateway, shard, reaper,
    tool) in KEYS_DIR: <role>.key, the public cert every listener admits
    (its metadata names the role), and <role>.key_secret, mode 0600. A role
    whose files exist already keeps them unless --force: rotation is
    --force, then a restart of every daemon. --gateway ID also makes
    gateway-ID.key, a key of that gateway's own (a gateway run with
    GATEWAY_ID=ID presents it to stored): stored then takes heartbeats and
    connection records of gateway ID from that key alone, so that no other
    gateway can declare ID's run over. See proto/bus.h. Exits 0, 1 if a
    file cannot be written, 2 on bad arguments.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus.h"
#include "config.h"
#include "log.h"

static log_level_t s_log_level;

static config_option_t s_options [] = {
    BUS_OPTION,
    { "LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0,
      "debug, info, warn or error", &s_log_level },
    { .name = NULL }
};

int
main (int argc, char *argv [])
{
    //  --force is a flag of this command, not a setting: taken out first.
    //  So are --gateway and its ID.
    bool force = false;
    const char *gateways [argc];
    int kept = 1, gateway_count = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp (argv [i], "--force"))
            force = true;
        else
        if (!strcmp (argv [i], "--gateway")) {
            if (i + 1 == argc) {
                fprintf (stderr, "nearchat-keys: --gateway needs the gateway's id\n");
                return 2;
            }
            gateways [gateway_count++] = argv [++i];
            if (!bus_gateway_id_ok (argv [i])) {
                fprintf (stderr, "nearchat-keys: '%s' cannot be a gateway id with a key of "
                         "its own (letters, digits, '.', '_', '-')\n", argv [i]);
                return 2;
            }
        }
        else
            argv [kept++] = argv [i];
    argv [kept] = NULL;
    config_load ("nearchat-keys", "nearchat-keys [--force] [--gateway ID]...: make the CURVE keys of nearchat's bus.",
                 s_options, kept, argv);
    log_init ("nearchat-keys", s_log_level);
    zsys_set_logstream (NULL);
    if (bus_keys_make (bus_keys_dir, force))
        return 1;
    for (int i = 0; i < gateway_count; i++)
        if (bus_keys_make_gateway (bus_keys_dir, gateways [i], force))
            return 1;
    printf ("the bus's keys are in %s\n", bus_keys_dir);
    return 0;
}
