/*  make_seeds - writes the seed corpora of the fuzz targets: every message
    type full and minimal (decode), every record (records), plus a few
    broken ones. Run by hand when the wire format changes:
        build/bin/make_seeds tests/fuzz/corpus */

#include <stdio.h>
#include <string.h>
#include "proto.h"
#include "samples.h"

static void
s_write (const char *dir, const char *name, const void *data, size_t size)
{
    char path [512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen (path, "wb");
    if (!file || fwrite (data, 1, size, file) != size) {
        perror (path);
        return;
    }
    fclose (file);
}

int
main (int argc, char *argv [])
{
    if (argc != 2) {
        fprintf (stderr, "usage: make_seeds CORPUS_DIR (with decode/ and records/ in it)\n");
        return 2;
    }
    char decode [400], records [400], name [64];
    snprintf (decode, sizeof decode, "%s/decode", argv [1]);
    snprintf (records, sizeof records, "%s/records", argv [1]);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    for (int type = 0; type < PROTO_TYPE_LIMIT; type++)
        for (int full = 0; full <= 1; full++) {
            proto_msg_t msg;
            if (!samples_message (type, full, &msg))
                continue;
            msgpack_sbuffer_clear (&buf);
            if (proto_encode (&msg, &buf))
                return 1;
            snprintf (name, sizeof name, "%s-%s", proto_type_name (type), full? "full": "minimal");
            s_write (decode, name, buf.data, buf.size);
            if (full) {             //  and cut in half
                snprintf (name, sizeof name, "%s-cut", proto_type_name (type));
                s_write (decode, name, buf.data, buf.size / 2);
            }
        }
    s_write (decode, "giant-array", "\xdd\xff\xff\xff\xff", 5);
    s_write (decode, "garbage", "garbage", 7);
    for (int full = 0; full <= 1; full++) {
        proto_room_t room = samples_room (full);
        proto_message_t message = samples_record_message (full);
        proto_connection_t connection = samples_connection (full);
        const char *kinds [] = { "room", "message", "connection" };
        for (int kind = 0; kind < 3; kind++) {
            msgpack_sbuffer_clear (&buf);
            char tag = (char) kind;
            msgpack_sbuffer_write (&buf, &tag, 1);
            int rc = kind == 0? proto_room_pack (&buf, &room)
                   : kind == 1? proto_message_pack (&buf, &message)
                   :            proto_connection_pack (&buf, &connection);
            if (rc)
                return 1;
            snprintf (name, sizeof name, "%s-%s", kinds [kind], full? "full": "minimal");
            s_write (records, name, buf.data, buf.size);
        }
    }
    msgpack_sbuffer_destroy (&buf);
    return 0;
}
