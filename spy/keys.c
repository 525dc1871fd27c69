/*  =========================================================================
    nearchat-keys - make the CURVE keys of the bus (`./nearchat keys`)

        nearchat-keys [--force] [KEYS_DIR]

    Makes one czmq certificate per role (stored, gateway, shard, reaper,
    tool) in KEYS_DIR (the argument, else the KEYS_DIR setting, else
    ./data/keys): <role>.key, the public cert every listener admits, and
    <role>.key_secret, mode 0600. A role whose files exist already keeps
    them unless --force (rotation: run with --force, then restart every
    daemon). See proto/bus.h. Exits 0, 1 if a file cannot be written, 2 on
    bad arguments.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus.h"
#include "config.h"

int
main (int argc, char *argv [])
{
    bool force = false;
    const char *keys_dir = getenv ("KEYS_DIR");
    if (!keys_dir || !*keys_dir)
        keys_dir = BUS_KEYS_DIR_DEFAULT;
    bool named = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv [i], "--help")) {
            printf ("usage: nearchat-keys [--force] [KEYS_DIR]\n");
            return 0;
        }
        if (!strcmp (argv [i], "--version")) {
            printf ("nearchat-keys %s\n", NEARCHAT_VERSION);
            return 0;
        }
        if (!strcmp (argv [i], "--force"))
            force = true;
        else
        if (argv [i][0] != '-' && !named) {
            keys_dir = argv [i];
            named = true;
        }
        else {
            fprintf (stderr, "usage: nearchat-keys [--force] [KEYS_DIR]\n");
            return 2;
        }
    }
    zsys_set_logstream (NULL);
    if (bus_keys_make (keys_dir, force))
        return 1;
    printf ("the bus's keys are in %s\n", keys_dir);
    return 0;
}
