/*  =========================================================================
    config.c - a daemon's settings from its environment and command line

    The option table is the single place a setting is declared: its name,
    kind, default, range and help line. Everything else (--help, the flag
    spelling, the checks and the exit status 2 on a bad value) is derived
    here, so no daemon parses its own settings by hand.
    =========================================================================
*/

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "log.h"

//  The flag spelling of an option: DATA_DIR -> data-dir.
static void
s_flag_name (const char *name, char *flag, size_t size)
{
    size_t i = 0;
    for (; name [i] && i + 1 < size; i++)
        flag [i] = name [i] == '_'? '-': (char) tolower ((unsigned char) name [i]);
    flag [i] = 0;
}

static void
s_usage (const char *program, const char *summary, const config_option_t *options)
{
    printf ("usage: %s [--help] [--version] [--check] [--SETTING=VALUE ...]\n\n%s\n\n", program, summary);
    printf ("Each setting is read from its environment variable or its flag (the flag wins):\n\n");
    for (const config_option_t *option = options; option->name; option++) {
        char flag [64];
        s_flag_name (option->name, flag, sizeof flag);
        printf ("  --%-22s %-22s %s\n", flag, option->name, option->help);
        if (option->kind == CONFIG_INT)
            printf ("  %-48s default %s, from %" PRId64 " to %" PRId64 "\n", "",
                    option->default_value, option->min, option->max);
        else
        if (option->kind == CONFIG_LOG_LEVEL)
            printf ("  %-48s default %s, one of debug, info, warn, error\n", "",
                    option->default_value);
        else
            printf ("  %-48s default %s\n", "",
                    *option->default_value? option->default_value: "\"\" (off)");
    }
}

static void
s_bad_value (const char *program, const config_option_t *option, const char *value,
             const char *why)
{
    //  A secret (JWT_SECRET) is never echoed, not even a wrong one.
    if (strstr (option->name, "SECRET"))
        value = "(hidden)";
    fprintf (stderr, "%s: bad value for %s: '%s' (%s)\n", program, option->name, value, why);
    exit (2);
}

//  Parse and check one value, store it in the option's target.
static void
s_apply (const char *program, const config_option_t *option, const char *value)
{
    if (option->kind == CONFIG_INT) {
        char *end;
        errno = 0;
        long long number = strtoll (value, &end, 10);
        if (errno || end == value || *end || isspace ((unsigned char) *value))
            s_bad_value (program, option, value, "not a whole number");
        if (number < option->min || number > option->max) {
            char why [96];
            snprintf (why, sizeof why, "must be from %" PRId64 " to %" PRId64,
                      option->min, option->max);
            s_bad_value (program, option, value, why);
        }
        *(int64_t *) option->target = number;
    }
    else
    if (option->kind == CONFIG_STRING) {
        size_t length = strlen (value);
        //  Empty only where the default is: a setting that is off unless set.
        if (length == 0 && *option->default_value)
            s_bad_value (program, option, value, "must not be empty");
        if ((int64_t) length > option->max)
            s_bad_value (program, option, value, "too long");
        *(const char **) option->target = value;
    }
    else {
        assert (option->kind == CONFIG_LOG_LEVEL);
        if (log_level_parse (value, (log_level_t *) option->target))
            s_bad_value (program, option, value, "must be debug, info, warn or error");
    }
}

void
config_load (const char *program, const char *summary, config_option_t *options,
             int argc, char **argv)
{
    assert (program && summary && options);
    //  Defaults first, then the environment, then flags.
    for (config_option_t *option = options; option->name; option++) {
        assert (option->target && option->default_value);
        s_apply (program, option, option->default_value);
        const char *value = getenv (option->name);
        if (value)
            s_apply (program, option, value);
    }
    bool check = false;
    const char *level_text = NULL;      //  a LOG_LEVEL flag's, for --check
    for (int arg = 1; arg < argc; arg++) {
        const char *word = argv [arg];
        if (strcmp (word, "--check") == 0) {
            check = true;
            continue;
        }
        if (strcmp (word, "--help") == 0 || strcmp (word, "-h") == 0) {
            s_usage (program, summary, options);
            exit (0);
        }
        if (strcmp (word, "--version") == 0) {
            printf ("%s %s\n", program, NEARCHAT_VERSION);
            exit (0);
        }
        config_option_t *match = NULL;
        const char *value = NULL;
        if (strncmp (word, "--", 2) == 0) {
            for (config_option_t *option = options; option->name && !match; option++) {
                char flag [64];
                s_flag_name (option->name, flag, sizeof flag);
                size_t length = strlen (flag);
                if (strncmp (word + 2, flag, length) == 0) {
                    if (word [2 + length] == '=') {
                        match = option;
                        value = word + 2 + length + 1;
                    }
                    else
                    if (word [2 + length] == 0 && arg + 1 < argc) {
                        match = option;
                        value = argv [++arg];
                    }
                }
            }
        }
        if (!match) {
            fprintf (stderr, "%s: unknown argument '%s' (see --help)\n", program, word);
            exit (2);
        }
        s_apply (program, match, value);
        if (match->kind == CONFIG_LOG_LEVEL)
            level_text = value;
    }
    if (check) {
        //  Every value passed its checks: show what the daemon would run with.
        for (config_option_t *option = options; option->name; option++)
            if (option->kind == CONFIG_INT)
                printf ("%s=%" PRId64 "\n", option->name, *(int64_t *) option->target);
            else
            if (option->kind == CONFIG_STRING && strstr (option->name, "SECRET"))
                printf ("%s=%s\n", option->name, **(const char **) option->target? "(hidden)": "");
            else
            if (option->kind == CONFIG_STRING)
                printf ("%s=%s\n", option->name, *(const char **) option->target);
            else
                printf ("%s=%s\n", option->name, level_text? level_text
                        : getenv (option->name)? getenv (option->name): option->default_value);
        exit (0);
    }
}
