/*  =========================================================================
    config.h - a daemon's settings from its environment and command line

    Each daemon lists its settings once, in a table of config_option_t; from
    that table come --help, the defaults, the parsing and the checks. A
    setting is read from the environment variable NAME or from the flag
    --name (lower case, '_' as '-'), the flag winning. A value that does not
    parse or is out of range stops the process with a message that names the
    setting, and exit status 2.
    =========================================================================
*/

#ifndef NEARCHAT_CONFIG_H_INCLUDED
#define NEARCHAT_CONFIG_H_INCLUDED

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NEARCHAT_VERSION "0.1.0"

typedef enum {
    CONFIG_INT,         //  target is int64_t *, checked against [min, max]
    CONFIG_STRING,      //  target is const char **, at most max bytes; empty only if the default is
    CONFIG_LOG_LEVEL    //  target is log_level_t *
} config_kind_t;

typedef struct {
    const char *name;           //  environment variable, e.g. "DATA_DIR"
    config_kind_t kind;
    const char *default_value;  //  as text
    int64_t min, max;           //  range of an INT, max length of a STRING
    const char *help;           //  one line
    void *target;
} config_option_t;

//  Read every option of the NULL-name-terminated table from argv and the
//  environment. Handles --help (prints usage, exits 0), --version (exits
//  0) and --check (prints every setting as NAME=value once all are read
//  and checked, exits 0). On a bad value or an unknown flag, prints why and exits 2.
void
    config_load (const char *program, const char *summary,
                 config_option_t *options, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
