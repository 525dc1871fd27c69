/*  replay - runs a libFuzzer target's entry point over every file of a corpus
    directory, so the suite checks each corpus without clang. A crash or a
    sanitizer report fails the test, as it would fail the fuzzer. */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
s_replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return -1;
    uint8_t *data = NULL;
    size_t size = 0, capacity = 0;
    for (;;) {
        if (size == capacity) {
            capacity = capacity? capacity * 2: 4096;
            uint8_t *grown = realloc (data, capacity);
            if (!grown) {
                free (data);
                fclose (file);
                return -1;
            }
            data = grown;
        }
        size_t got = fread (data + size, 1, capacity - size, file);
        if (got == 0)
            break;
        size += got;
    }
    fclose (file);
    LLVMFuzzerTestOneInput (data, size);
    free (data);
    return 0;
}

int
main (int argc, char *argv [])
{
    if (argc != 2) {
        fprintf (stderr, "usage: %s CORPUS_DIR\n", argv [0]);
        return 2;
    }
    DIR *dir = opendir (argv [1]);
    if (!dir) {
        perror (argv [1]);
        return 1;
    }
    int files = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name [0] == '.')
            continue;
        char path [4096];
        snprintf (path, sizeof path, "%s/%s", argv [1], entry->d_name);
        if (s_replay_file (path) == 0)
            files++;
    }
    closedir (dir);
    printf ("replayed %d inputs from %s\n", files, argv [1]);
    return files > 0? 0: 1;     //  an empty corpus is a broken test, not a pass
}
