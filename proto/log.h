/*  =========================================================================
    log.h - one JSON object per line on stderr

    Every daemon logs through here, so every line has the same shape:
        {"ts":"2026-11-24T13:13:00.123Z","level":"info","daemon":"stored",
         "msg":"...","trace":"...", ...context}
    LOG_LEVEL (debug, info, warn, error) picks what is written.
    =========================================================================
*/

#ifndef NEARCHAT_LOG_H_INCLUDED
#define NEARCHAT_LOG_H_INCLUDED

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO  = 1,
    LOG_LEVEL_WARN  = 2,
    LOG_LEVEL_ERROR = 3
} log_level_t;

//  Name the daemon that writes the lines and set the level. Call once at start.
void
    log_init (const char *daemon, log_level_t level);

//  Parse a level name; returns 0 and sets *level, or -1 if name is no level.
int
    log_level_parse (const char *name, log_level_t *level);

//  True if a line of this level would be written (to skip costly formatting).
int
    log_enabled (log_level_t level);

//  Write one line. trace may be NULL or "". fmt formats msg, printf-style.
void
    log_write (log_level_t level, const char *trace, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define log_debug(...)  log_write (LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)   log_write (LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_warn(...)   log_write (LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_error(...)  log_write (LOG_LEVEL_ERROR, NULL, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
