/*  proto/utf8.c - being written; this placeholder lets CMake configure meanwhile. */
