/*  =========================================================================
    utf8.h - UTF-8 validation and character counting

    Written here, not taken from a library, because none of ours exposes it:
    jansson checks UTF-8 only inside its own parser, msgpack-c not at all.
    Every string that crosses a process boundary is checked with it, so that
    nothing invalid can reach a JSON encoder or the database.
    =========================================================================
*/

#ifndef NEARCHAT_UTF8_H_INCLUDED
#define NEARCHAT_UTF8_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

//  True if s[0..len-1] is well-formed UTF-8 (RFC 3629: no overlong forms,
//  no surrogates, nothing above U+10FFFF) and holds no NUL byte.
bool
    utf8_valid (const char *s, size_t len);

//  True if s[0..len-1] holds a C0 control character or DEL. With
//  allow_whitespace, tab, newline and carriage return are not counted.
bool
    utf8_has_control (const char *s, size_t len, bool allow_whitespace);

//  The number of code points in s[0..len-1], which must be valid UTF-8.
size_t
    utf8_chars (const char *s, size_t len);

//  Self-test of this module.
void
    utf8_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
