/*  =========================================================================
    lmdb_peek.h - what a test reads of a stopped stored's LMDB environment,
    with LMDB itself, read-only
    =========================================================================
*/

#ifndef NEARCHAT_LMDB_PEEK_H_INCLUDED
#define NEARCHAT_LMDB_PEEK_H_INCLUDED

//  Entries of database name in the environment in dir, or -1.
long lmdb_peek_entries (const char *dir, const char *name);

#endif
