/*  proto/log.c - being written; this placeholder lets CMake configure meanwhile. */
