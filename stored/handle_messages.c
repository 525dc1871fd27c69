/*  stored/handle_messages.c - being written; this placeholder lets CMake configure meanwhile. */
