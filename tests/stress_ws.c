/*  =========================================================================
    stress_ws.c - many WebSockets in one poll loop, for test_stress
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include "stress_ws.h"

//  Append size bytes to a growing buffer.
static void
s_append (unsigned char **buffer, size_t *used, size_t *max, const void *bytes, size_t size)
{
    if (*used + size > *max) {
        size_t wanted = *max? *max: 4096;
        while (wanted < *used + size)
            wanted *= 2;
        *buffer = realloc (*buffer, wanted);
        assert (*buffer);
        *max = wanted;
    }
    memcpy (*buffer + *used, bytes, size);
    *used += size;
}

int
sws_open (sws_t *self, int port, const char *path_and_query)
{
    assert (self);
    memset (self, 0, sizeof *self);
    self->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    self->frames = json_array ();
    self->state = SWS_ENDED;
    if (self->fd < 0)
        return -1;
    int one = 1;
    setsockopt (self->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    if (connect (self->fd, (struct sockaddr *) &address, sizeof address) && errno != EINPROGRESS)
        return -1;
    uint8_t random [16];
    if (getrandom (random, sizeof random, 0) != (ssize_t) sizeof random)
        return -1;
    wsproto_key (random, self->key);
    char request [1024];
    int size = wsproto_request (request, sizeof request, "127.0.0.1", port, path_and_query,
                                self->key);
    if (size < 0)
        return -1;
    s_append (&self->out, &self->out_used, &self->out_max, request, (size_t) size);
    self->state = SWS_UPGRADING;
    return 0;
}

short
sws_events (const sws_t *self)
{
    if (self->state != SWS_UPGRADING && self->state != SWS_OPEN)
        return 0;
    return (short) (POLLIN | (self->out_sent < self->out_used? POLLOUT: 0));
}

static void
s_end (sws_t *self)
{
    self->state = SWS_ENDED;
}

static void
s_flush (sws_t *self)
{
    while (self->out_sent < self->out_used) {
        ssize_t sent = send (self->fd, self->out + self->out_sent,
                             self->out_used - self->out_sent, MSG_NOSIGNAL);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN))
            return;         //  ENOTCONN: the connect is still under way
        if (sent <= 0) {
            s_end (self);
            return;
        }
        self->out_sent += (size_t) sent;
    }
    self->out_sent = self->out_used = 0;
}

//  One whole server frame: a text message is parsed and queued, a ping
//  answered, a close frame noted and echoed.
static void
s_frame (sws_t *self, const wsproto_frame_t *frame)
{
    if (frame->opcode == WSPROTO_PING) {
        sws_send_frame (self, WSPROTO_PONG, frame->payload, frame->length);
        return;
    }
    if (frame->opcode == WSPROTO_CLOSE) {
        self->close_code = frame->length >= 2
                         ? frame->payload [0] << 8 | frame->payload [1]: 1005;
        sws_send_frame (self, WSPROTO_CLOSE, frame->payload, frame->length >= 2? 2: 0);
        return;
    }
    if (frame->opcode == WSPROTO_PONG)
        return;
    if (frame->opcode != WSPROTO_TEXT && frame->opcode != 0) {
        self->bad_frames++;
        return;
    }
    s_append (&self->message, &self->message_size, &self->message_max,
              frame->payload, frame->length);
    if (!frame->fin)
        return;
    s_append (&self->message, &self->message_size, &self->message_max, "", 1);
    json_t *json = json_loads ((const char *) self->message, 0, NULL);
    if (json_is_object (json))
        json_array_append_new (self->frames, json);
    else {
        self->not_json++;
        json_decref (json);
    }
    free (self->message);
    self->message = NULL;
    self->message_size = self->message_max = 0;
}

//  Take apart what was read: first the upgrade's answer, then frames.
static void
s_parse (sws_t *self)
{
    size_t taken = 0;
    if (self->state == SWS_UPGRADING) {
        int header = wsproto_response ((const char *) self->in, self->in_used, self->key);
        if (header == 0)
            return;
        if (header < 0) {
            self->status = -1;
            if (self->in_used > 12 && !memcmp (self->in, "HTTP/1.1 ", 9))
                self->status = atoi ((const char *) self->in + 9);
            s_end (self);
            return;
        }
        self->status = 101;
        self->state = SWS_OPEN;
        taken = (size_t) header;
    }
    while (self->state == SWS_OPEN && taken < self->in_used && self->close_code == 0) {
        wsproto_frame_t frame;
        long size = wsproto_parse (self->in + taken, self->in_used - taken, &frame);
        if (size == 0)
            break;
        if (size < 0) {
            self->bad_frames++;
            s_end (self);
            break;
        }
        s_frame (self, &frame);
        taken += (size_t) size;
    }
    memmove (self->in, self->in + taken, self->in_used - taken);
    self->in_used -= taken;
}

void
sws_service (sws_t *self, short revents)
{
    assert (self);
    if (self->state != SWS_UPGRADING && self->state != SWS_OPEN)
        return;
    if (revents & POLLOUT)
        s_flush (self);
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    for (int reads = 0; reads < 16 && self->state != SWS_ENDED; reads++) {
        unsigned char buffer [16384];
        ssize_t size = recv (self->fd, buffer, sizeof buffer, 0);
        if (size < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (size <= 0) {
            s_end (self);
            break;
        }
        s_append (&self->in, &self->in_used, &self->in_max, buffer, (size_t) size);
        s_parse (self);
    }
    if (self->state != SWS_ENDED)
        s_flush (self);
}

int
sws_send_raw (sws_t *self, const void *bytes, size_t size)
{
    if (self->state != SWS_OPEN)
        return -1;
    s_append (&self->out, &self->out_used, &self->out_max, bytes, size);
    s_flush (self);
    return 0;
}

int
sws_send_frame (sws_t *self, int opcode, const void *payload, size_t size)
{
    uint8_t mask [4];
    if (getrandom (mask, sizeof mask, 0) != (ssize_t) sizeof mask)
        return -1;
    uint8_t *frame = malloc (size + 14);
    assert (frame);
    int length = wsproto_frame (frame, size + 14, opcode, payload, size, mask);
    int rc = length > 0? sws_send_raw (self, frame, (size_t) length): -1;
    free (frame);
    return rc;
}

int
sws_send_text (sws_t *self, const char *text)
{
    return sws_send_frame (self, WSPROTO_TEXT, text, strlen (text));
}

int
sws_send_json (sws_t *self, json_t *json)
{
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    int rc = text? sws_send_text (self, text): -1;
    free (text);
    return rc;
}

json_t *
sws_take (sws_t *self)
{
    if (!self->frames || json_array_size (self->frames) == 0)
        return NULL;
    json_t *frame = json_incref (json_array_get (self->frames, 0));
    json_array_remove (self->frames, 0);
    return frame;
}

void
sws_drop (sws_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    free (self->in);
    free (self->out);
    free (self->message);
    json_decref (self->frames);
    memset (self, 0, sizeof *self);
    self->fd = -1;
    self->state = SWS_IDLE;
}
