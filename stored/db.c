/*  stored/db.c - being written; this placeholder lets CMake configure meanwhile. */
