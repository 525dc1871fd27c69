/*  stored/handle_connections.c - being written; this placeholder lets CMake configure meanwhile. */
