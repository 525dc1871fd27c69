/*  =========================================================================
    wsproto.c - the client side of RFC 6455, as pure functions over buffers
    =========================================================================
*/

#include <stdio.h>
#include <assert.h>
#include <pthread.h>
#include <string.h>
#include <wslay/wslay.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include "wsproto.h"

#define WSPROTO_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"     //  RFC 6455 1.3

void
wsproto_key (const uint8_t random [16], char key [WSPROTO_KEY_SIZE])
{
    EVP_EncodeBlock ((unsigned char *) key, random, 16);
}

int
wsproto_request (char *out, size_t size, const char *host, int port, const char *path,
                 const char *key)
{
    int length = snprintf (out, size,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, port, key);
    return length < 0 || (size_t) length >= size? -1: length;
}

//  The value of header name in the header block, copied to out.
static int
s_header (const char *head, size_t size, const char *name, char *out, size_t out_size)
{
    size_t name_length = strlen (name);
    for (const char *line = head; line && line < head + size; ) {
        const char *end = memchr (line, '\n', (size_t) (head + size - line));
        if (!end)
            break;
        if ((size_t) (end - line) > name_length && strncasecmp (line, name, name_length) == 0
        &&  line [name_length] == ':') {
            const char *value = line + name_length + 1;
            while (value < end && (*value == ' ' || *value == '\t'))
                value++;
            size_t length = (size_t) (end - value);
            while (length && (value [length - 1] == '\r' || value [length - 1] == ' '))
                length--;
            if (length >= out_size)
                return -1;
            memcpy (out, value, length);
            out [length] = 0;
            return 0;
        }
        line = end + 1;
    }
    return -1;
}

int
wsproto_response (const char *data, size_t size, const char *key)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < size && !end; i++)
        if (memcmp (data + i, "\r\n\r\n", 4) == 0)
            end = data + i + 4;
    if (!end)
        return size > 8192? -1: 0;
    size_t length = (size_t) (end - data);
    if (length < 12 || strncmp (data, "HTTP/1.1 101", 12) != 0)
        return -1;
    char accept [64], expected [64];
    if (s_header (data, length, "Sec-WebSocket-Accept", accept, sizeof accept))
        return -1;
    char joined [WSPROTO_KEY_SIZE + sizeof WSPROTO_GUID];
    snprintf (joined, sizeof joined, "%s%s", key, WSPROTO_GUID);
    unsigned char digest [SHA_DIGEST_LENGTH];
    SHA1 ((const unsigned char *) joined, strlen (joined), digest);
    EVP_EncodeBlock ((unsigned char *) expected, digest, SHA_DIGEST_LENGTH);
    return strcmp (accept, expected) == 0? (int) length: -1;
}

//  Frames are wslay's (its frame API): a frame is sent into out through
//  its send callback, and a server frame's header is read through its
//  recv callback from data. A send leaves wslay's context ready for the
//  next one, so each thread keeps one; a read does not (wslay would wait
//  for the rest of the payload), so a parse makes a context of its own,
//  and feeds it no more than a header and a byte of payload: the payload
//  is used where it lies, in data.
typedef struct {
    uint8_t *out;
    size_t size, at;
    const uint8_t *data;                //  a parse's input
    size_t data_size, data_at;
    uint8_t mask [4];
} io_t;

static ssize_t
s_send (const uint8_t *data, size_t len, int flags, void *user)
{
    (void) flags;
    io_t *io = *(io_t **) user;
    if (len > io->size - io->at)
        return -1;                      //  does not fit: the frame fails
    memcpy (io->out + io->at, data, len);
    io->at += len;
    return (ssize_t) len;
}

static ssize_t
s_recv (uint8_t *buf, size_t len, int flags, void *user)
{
    (void) flags;
    io_t *io = *(io_t **) user;
    size_t left = io->data_size - io->data_at;
    size_t header_and_a_byte = 10 + 1;
    if (io->data_at + len > header_and_a_byte)
        len = io->data_at < header_and_a_byte? header_and_a_byte - io->data_at: 0;
    if (len > left)
        len = left;
    if (len == 0)
        return -1;
    memcpy (buf, io->data + io->data_at, len);
    io->data_at += len;
    return (ssize_t) len;
}

static int
s_genmask (uint8_t *buf, size_t len, void *user)
{
    io_t *io = *(io_t **) user;
    memcpy (buf, io->mask, len < 4? len: 4);
    return 0;
}

static const struct wslay_frame_callbacks s_callbacks = { s_send, s_recv, s_genmask };

//  A thread's send context, freed when the thread ends.
static pthread_key_t s_context_key;
static pthread_once_t s_context_once = PTHREAD_ONCE_INIT;

static void
s_context_free (void *wslay)
{
    wslay_frame_context_free (wslay);
}

static void
s_context_key_make (void)
{
    pthread_key_create (&s_context_key, s_context_free);
}

int
wsproto_frame (uint8_t *out, size_t size, int opcode, const void *payload, size_t length,
               const uint8_t mask [4])
{
    static __thread io_t *current;
    size_t head = 2 + (length < 126? 0: length < 65536? 2: 8) + 4;
    if (head + length > size)
        return -1;                      //  before wslay: a frame half sent would stay in it
    pthread_once (&s_context_once, s_context_key_make);
    wslay_frame_context_ptr wslay = pthread_getspecific (s_context_key);
    if (!wslay) {
        if (wslay_frame_context_init (&wslay, &s_callbacks, &current))
            return -1;
        pthread_setspecific (s_context_key, wslay);
    }
    io_t io = { .out = out, .size = size };
    memcpy (io.mask, mask, 4);
    current = &io;
    struct wslay_frame_iocb iocb = {
        .fin = 1, .opcode = (uint8_t) (opcode & 0x0F), .mask = 1,
        .payload_length = length, .data = payload, .data_length = length };
    ssize_t sent = wslay_frame_send (wslay, &iocb);
    current = NULL;
    assert (sent == (ssize_t) length && io.at == head + length);
    return (int) io.at;
}

long
wsproto_parse (const uint8_t *data, size_t size, wsproto_frame_t *frame)
{
    io_t io = { .data = data, .data_size = size };
    io_t *current = &io;
    wslay_frame_context_ptr wslay;
    if (wslay_frame_context_init (&wslay, &s_callbacks, &current))
        return -1;
    struct wslay_frame_iocb iocb;
    ssize_t got = wslay_frame_recv (wslay, &iocb);
    wslay_frame_context_free (wslay);
    if (got == WSLAY_ERR_WANT_READ)
        return 0;
    if (got < 0 || iocb.rsv || iocb.mask)
        return -1;                      //  no extension was agreed; a server never masks
    if (iocb.payload_length >> 62)
        return -1;
    //  wslay takes a length only in its shortest form: the header's size
    //  follows from it.
    size_t at = 2 + (iocb.payload_length >= 65536? 8: iocb.payload_length >= 126? 2: 0);
    if (size - at < iocb.payload_length)
        return 0;
    frame->fin = iocb.fin;
    frame->opcode = iocb.opcode;
    frame->payload = data + at;
    frame->length = (size_t) iocb.payload_length;
    return (long) (at + frame->length);
}
