/*  =========================================================================
    nearchat-keys - make the CURVE keys of the bus (`./nearchat keys`)

        nearchat-keys [--force] [--keys-dir DIR]

    Makes one czmq certificate per role (stored, gateway, shard, reaper,
    tool) in KEYS_DIR: <role>.key, the public cert every listener admits
    (its metadata names the role), and <role>.key_secret, mode 0600. A role
    whose files exist already keeps them unless --force: rotation is
    --force, then a restart of every daemon. See proto/bus.h. Exits 0, 1 if
    a file cannot be written, 2 on bad arguments.
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
    bool force = false;
    int kept = 1;
    for (int i = 1; i < argc; i++)
        if (!strcmp (argv [i], "--force"))
            force = true;
        else
            argv [kept++] = argv [i];
    argv [kept] = NULL;
    config_load ("nearchat-keys", "nearchat-keys [--force]: make the CURVE keys of nearchat's bus.",
                 s_options, kept, argv);
    log_init ("nearchat-keys", s_log_level);
    zsys_set_logstream (NULL);
    if (bus_keys_make (bus_keys_dir, force))
        return 1;
    printf ("the bus's keys are in %s\n", bus_keys_dir);
    return 0;
}
