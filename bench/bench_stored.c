/*  bench/bench_stored.c - being written; this placeholder lets CMake configure meanwhile. */
