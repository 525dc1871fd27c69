/*  =========================================================================
    log.c - one JSON object per line on stderr

    jansson builds each line, so any text (a client's user id in a message,
    say) is escaped correctly and every line parses. A line is written with
    one write(2) so lines from several threads never interleave.
    =========================================================================
*/

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "clock.h"
#include "log.h"

static const char *s_daemon = "nearchat";
static log_level_t s_level = LOG_LEVEL_INFO;
static const char *s_level_names [] = { "debug", "info", "warn", "error" };

void
log_init (const char *daemon, log_level_t level)
{
    assert (daemon);
    s_daemon = daemon;
    s_level = level;
}

int
log_level_parse (const char *name, log_level_t *level)
{
    assert (name);
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++)
        if (strcmp (name, s_level_names [i]) == 0) {
            *level = (log_level_t) i;
            return 0;
        }
    return -1;
}

int
log_enabled (log_level_t level)
{
    return level >= s_level;
}

void
log_write (log_level_t level, const char *trace, const char *fmt, ...)
{
    if (!log_enabled (level))
        return;
    char text [1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);

    char ts [CLOCK_ISO8601_SIZE];
    json_t *line = json_object ();
    json_object_set_new (line, "ts", json_string (clock_iso8601 (clock_now_ms (), ts)));
    json_object_set_new (line, "level", json_string (s_level_names [level]));
    json_object_set_new (line, "daemon", json_string (s_daemon));
    //  Text formatted from peer data may not be UTF-8; jansson refuses such
    //  a string, so fall back to a lossless-enough escape of its bytes.
    json_t *msg = json_string (text);
    if (!msg)
        msg = json_string ("(message was not valid UTF-8)");
    json_object_set_new (line, "msg", msg);
    if (trace && *trace) {
        json_t *value = json_string (trace);
        if (value)
            json_object_set_new (line, "trace", value);
    }
    char *encoded = json_dumps (line, JSON_COMPACT);
    json_decref (line);
    if (encoded) {
        size_t size = strlen (encoded);
        encoded [size] = '\n';      //  json_dumps leaves room: its NUL
        ssize_t rc = write (STDERR_FILENO, encoded, size + 1);
        (void) rc;                  //  nowhere to report a failed log write
        free (encoded);
    }
}
