/*  =========================================================================
    lmdb_peek.h - what a test reads of a stopped stored's LMDB environment,
    with LMDB itself, read-only
    =========================================================================
*/

#ifndef NEARCHAT_LMDB_PEEK_H_INCLUDED
#define NEARCHAT_LMDB_PEEK_H_INCLUDED

#include <lmdb.h>

//  Entries of database name in the environment in dir, or -1.
long lmdb_peek_entries (const char *dir, const char *name);

//  In one write transaction on database name of the environment in dir,
//  call work (with arg); commit if it returns 0, else abort. Returns the
//  LMDB error (work's, or opening's, or the commit's), 0 when committed.
typedef int lmdb_peek_work_fn (MDB_txn *txn, MDB_dbi dbi, void *arg);
int lmdb_peek_write (const char *dir, const char *name, lmdb_peek_work_fn *work, void *arg);

#endif
