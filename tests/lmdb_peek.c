/*  =========================================================================
    lmdb_peek.c - what a test reads of a stopped stored's LMDB environment
    =========================================================================
*/

#include <stddef.h>
#include "lmdb_peek.h"

long
lmdb_peek_entries (const char *dir, const char *name)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat stat;
    long count = -1;
    if (mdb_env_create (&env))
        return -1;
    mdb_env_set_maxdbs (env, 32);
    if (mdb_env_open (env, dir, MDB_RDONLY, 0640) == 0
    &&  mdb_txn_begin (env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open (txn, name, 0, &dbi) == 0 && mdb_stat (txn, dbi, &stat) == 0)
            count = (long) stat.ms_entries;
        mdb_txn_abort (txn);
    }
    mdb_env_close (env);
    return count;
}

int
lmdb_peek_write (const char *dir, const char *name, lmdb_peek_work_fn *work, void *arg)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = mdb_env_create (&env);
    if (rc)
        return rc;
    mdb_env_set_maxdbs (env, 32);
    rc = mdb_env_open (env, dir, 0, 0640);
    if (rc == 0)
        rc = mdb_txn_begin (env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open (txn, name, 0, &dbi);
        if (rc == 0)
            rc = work (txn, dbi, arg);
        if (rc == 0)
            rc = mdb_txn_commit (txn);
        else
            mdb_txn_abort (txn);
    }
    mdb_env_close (env);
    return rc;
}
