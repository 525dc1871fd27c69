/*  stored/handle_rooms.c - being written; this placeholder lets CMake configure meanwhile. */
