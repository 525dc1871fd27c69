/*  =========================================================================
    ids.h - identifiers: UUIDs for rooms, messages and connections, trace ids
    =========================================================================
*/

#ifndef NEARCHAT_IDS_H_INCLUDED
#define NEARCHAT_IDS_H_INCLUDED

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IDS_UUID_SIZE   37      //  36 characters and NUL
#define IDS_TRACE_SIZE  33      //  32 hex digits and NUL

//  A random (version 4) UUID in lower case, from libuuid. Returns out.
char *
    ids_uuid (char *out);

//  A new trace id: 32 lower-case hex digits (128 random bits). Returns out.
char *
    ids_trace (char *out);

//  Self-test of this module.
void
    ids_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
