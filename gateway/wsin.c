/*  =========================================================================
    wsin.c - a WebSocket's client messages, read with wslay (see wsin.h)

    wslay_frame_recv gives a frame's payload in pieces, as its bytes come
    (its own buffer holds 4 KiB read ahead), unmasked. A piece names its
    frame's header (opcode, fin, rsv, mask, payload length); the frame is
    whole when the pieces add up to its length. wslay refuses a control
    frame that is fragmented or over 125 bytes and a length not in its
    shortest form (WSLAY_ERR_PROTO); the rest of RFC 6455's rules are here.

    A message that came whole in one piece is handed over from wslay's
    buffer; only fragments, and frames split across reads, are copied into
    the message buffer, which is freed (with wslay's context) once the
    socket holds nothing, so an idle socket keeps no buffer.
    =========================================================================
*/

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "wsin.h"

//  wslay's frame context: its 4 KiB buffer and a little state (4,272
//  bytes of heap with libwslay 1.1.1).
#define WSLAY_CONTEXT_SIZE  4272

static ssize_t
s_recv (uint8_t *buf, size_t len, int flags, void *user)
{
    (void) flags;
    wsin_t *self = user;
    ssize_t got;
    if (self->preface) {
        size_t left = self->preface_size - self->preface_at;
        got = (ssize_t) (len < left? len: left);
        memcpy (buf, self->preface + self->preface_at, (size_t) got);
        self->preface_at += (size_t) got;
        if (self->preface_at == self->preface_size) {
            free (self->preface);
            self->preface = NULL;
            self->preface_size = self->preface_at = 0;
        }
    }
    else
        got = self->read (self->user, buf, len);
    if (got <= 0)
        return -1;                      //  wslay: WSLAY_ERR_WANT_READ
    size_t size = (size_t) got, keep = sizeof self->tail;
    if (size >= keep)
        memcpy (self->tail, buf + size - keep, keep);
    else {
        memmove (self->tail, self->tail + size, keep - size);
        memcpy (self->tail + keep - size, buf, size);
    }
    self->held += size;
    return got;
}

//  wslay's frame API says nothing of a frame until a byte of its payload
//  is in, but a header that announces too long a message is refused as it
//  comes (the payload need not follow). Between frames, what wslay holds
//  and cannot parse yet is at most a header and its mask: the last bytes
//  given to it.
static bool
s_too_long (wsin_t *self, size_t max)
{
    if (self->in_frame || self->held < 2 || self->held > sizeof self->tail)
        return false;
    const uint8_t *head = self->tail + sizeof self->tail - self->held;
    if (head [0] & 0x08)
        return false;                   //  a control frame: wslay bounds it
    uint64_t length = head [1] & 0x7f;
    size_t need = length == 127? 10: length == 126? 4: 2;
    if (self->held < need)
        return false;
    if (need > 2) {
        length = 0;
        for (size_t i = 2; i < need; i++)
            length = length << 8 | head [i];
    }
    return length > max - (self->message? self->size: 0);
}

static ssize_t
s_send (const uint8_t *data, size_t len, int flags, void *user)
{
    (void) data; (void) len; (void) flags; (void) user;
    return -1;                          //  wsin only reads
}

static int
s_genmask (uint8_t *buf, size_t len, void *user)
{
    (void) user;
    memset (buf, 0, len);
    return 0;
}

void
wsin_init (wsin_t *self, wsin_read_fn *read, void *user)
{
    uint8_t *preface = self->preface;
    size_t preface_size = self->preface_size;
    memset (self, 0, sizeof *self);
    self->preface = preface;
    self->preface_size = preface_size;
    self->read = read;
    self->user = user;
}

//  wsin_preface's wslay: what it frames is appended to the preface.
static ssize_t
s_preface_send (const uint8_t *data, size_t len, int flags, void *user)
{
    (void) flags;
    wsin_t *self = user;
    self->preface = realloc (self->preface, self->preface_size + len);
    assert (self->preface);
    memcpy (self->preface + self->preface_size, data, len);
    self->preface_size += len;
    return (ssize_t) len;
}

void
wsin_preface (wsin_t *self, int bits, const void *data, size_t size)
{
    //  A rare path (a frame sent with the upgrade): a context a frame.
    //  Masked with a zero key, so the payload goes as it is.
    struct wslay_frame_callbacks callbacks = { s_preface_send, s_recv, s_genmask };
    wslay_frame_context_ptr wslay;
    if (wslay_frame_context_init (&wslay, &callbacks, self))
        return;
    struct wslay_frame_iocb iocb = {
        .fin = (bits >> 7) & 1, .rsv = (bits >> 4) & 7, .opcode = bits & 0x0f, .mask = 1,
        .payload_length = size, .data = data, .data_length = size };
    ssize_t sent = wslay_frame_send (wslay, &iocb);
    assert (sent == (ssize_t) size || sent == WSLAY_ERR_INVALID_ARGUMENT);
    (void) sent;
    wslay_frame_context_free (wslay);
}

bool
wsin_has_preface (const wsin_t *self)
{
    return self->preface != NULL;
}

//  UTF-8 (RFC 3629: no overlong forms, surrogates or code points past
//  U+10FFFF), checked a byte at a time across fragments.
static bool
s_utf8 (wsin_t *self, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        uint8_t byte = data [i];
        if (self->utf8_need) {
            if (byte < self->utf8_lo || byte > self->utf8_hi)
                return false;
            self->utf8_need--;
            self->utf8_lo = 0x80;
            self->utf8_hi = 0xBF;
            continue;
        }
        if (byte < 0x80)
            continue;
        self->utf8_lo = 0x80;
        self->utf8_hi = 0xBF;
        if (byte >= 0xC2 && byte <= 0xDF)
            self->utf8_need = 1;
        else
        if (byte >= 0xE0 && byte <= 0xEF) {
            self->utf8_need = 2;
            if (byte == 0xE0)
                self->utf8_lo = 0xA0;
            if (byte == 0xED)
                self->utf8_hi = 0x9F;
        }
        else
        if (byte >= 0xF0 && byte <= 0xF4) {
            self->utf8_need = 3;
            if (byte == 0xF0)
                self->utf8_lo = 0x90;
            if (byte == 0xF4)
                self->utf8_hi = 0x8F;
        }
        else
            return false;
    }
    return true;
}

static wsin_result_t
s_error (wsin_msg_t *msg, int status, const char *reason)
{
    msg->status = status;
    msg->reason = reason;
    return WSIN_ERROR;
}

static void
s_keep (wsin_t *self, const uint8_t *data, size_t size)
{
    if (size == 0)
        return;                         //  an empty fragment: nothing to keep
    if (self->size + size > self->max) {
        size_t max = self->max? self->max: 4096;
        while (max < self->size + size)
            max *= 2;
        self->data = realloc (self->data, max);
        assert (self->data);
        self->max = max;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
}

//  A close frame's payload: no status, or a status a peer may send
//  (RFC 6455 7.4: 1005, 1006 and 1015 are never sent) and a UTF-8 reason.
static wsin_result_t
s_close (wsin_t *self, const uint8_t *payload, size_t size, wsin_msg_t *msg)
{
    msg->opcode = WSLAY_CONNECTION_CLOSE;
    msg->data = payload;
    msg->size = size;
    if (size == 0) {
        msg->status = 1000;
        return WSIN_MESSAGE;
    }
    if (size == 1)
        return s_error (msg, 1002, "a close payload of one byte");
    int status = payload [0] << 8 | payload [1];
    bool valid = (status >= 1000 && status <= 1014 && status != 1004
                  && status != 1005 && status != 1006)
              || (status >= 3000 && status <= 4999);
    if (!valid)
        return s_error (msg, 1002, "an invalid close status");
    self->utf8_need = 0;
    if (!s_utf8 (self, payload + 2, size - 2) || self->utf8_need)
        return s_error (msg, 1007, "a close reason that is not UTF-8");
    msg->status = status;
    return WSIN_MESSAGE;
}

//  A whole frame: payload (size bytes) is the frame's own.
static wsin_result_t
s_frame (wsin_t *self, const uint8_t *payload, size_t size, wsin_msg_t *msg)
{
    if (self->opcode == WSLAY_CONNECTION_CLOSE)
        return s_close (self, payload, size, msg);
    if (self->opcode == WSLAY_PING || self->opcode == WSLAY_PONG) {
        msg->opcode = self->opcode;
        msg->data = payload;
        msg->size = size;
        return WSIN_MESSAGE;
    }
    if (!self->fin)
        return WSIN_MORE;
    //  The message's last fragment.
    if (self->message == WSLAY_TEXT_FRAME && self->utf8_need)
        return s_error (msg, 1007, "text that is not UTF-8");
    msg->opcode = self->message;
    msg->data = self->size? self->data: payload;
    msg->size = self->size? self->size: size;
    self->message = 0;
    return WSIN_MESSAGE;
}

//  The start of a frame (its first piece): what RFC 6455 allows of it.
static wsin_result_t
s_begin (wsin_t *self, const struct wslay_frame_iocb *iocb, size_t max, wsin_msg_t *msg)
{
    self->in_frame = true;
    self->opcode = iocb->opcode;
    self->fin = iocb->fin;
    self->length = iocb->payload_length;
    self->got = 0;
    if (iocb->rsv || !iocb->mask)
        return s_error (msg, 1002, "reserved bits, or an unmasked frame");
    bool control = iocb->opcode & 0x08;
    if (control) {
        if (iocb->opcode > WSLAY_PONG)
            return s_error (msg, 1002, "a reserved opcode");
        return WSIN_MORE;
    }
    if (iocb->opcode > WSLAY_BINARY_FRAME)
        return s_error (msg, 1002, "a reserved opcode");
    if ((iocb->opcode == WSLAY_CONTINUATION_FRAME) != (self->message != 0))
        return s_error (msg, 1002, self->message? "a new message inside a fragmented one"
                                                : "a continuation of no message");
    if (self->message == 0) {
        self->message = iocb->opcode;
        self->size = 0;
        self->utf8_need = 0;
    }
    if (iocb->payload_length > max - self->size)
        return s_error (msg, 1009, "frame too big");
    return WSIN_MORE;
}

wsin_result_t
wsin_next (wsin_t *self, size_t max, wsin_msg_t *msg)
{
    memset (msg, 0, sizeof *msg);
    if (!self->wslay) {
        struct wslay_frame_callbacks callbacks = { s_send, s_recv, s_genmask };
        if (wslay_frame_context_init (&self->wslay, &callbacks, self))
            return s_error (msg, 1011, "out of memory");
    }
    while (true) {
        struct wslay_frame_iocb iocb;
        ssize_t got = wslay_frame_recv (self->wslay, &iocb);
        if (got == WSLAY_ERR_WANT_READ)
            return s_too_long (self, max)? s_error (msg, 1009, "frame too big"): WSIN_MORE;
        if (got < 0)
            return s_error (msg, 1002, "protocol error");
        bool first = !self->in_frame;
        if (first) {
            wsin_result_t result = s_begin (self, &iocb, max, msg);
            if (result != WSIN_MORE)
                return result;
        }
        size_t size = (size_t) got;
        bool control = self->opcode & 0x08;
        if (!control && self->message == WSLAY_TEXT_FRAME
        &&  !s_utf8 (self, iocb.data, size))
            return s_error (msg, 1007, "text that is not UTF-8");
        self->got += size;
        bool whole = self->got == self->length;
        const uint8_t *payload = iocb.data;
        if (control) {
            memcpy (self->control + self->got - size, iocb.data, size);
            payload = self->control;
        }
        else
        if (!(first && whole && self->size == 0 && self->fin))
            s_keep (self, iocb.data, size);         //  not whole in one piece
        if (!whole)
            continue;
        //  The frame is done: its header and payload are no longer held
        //  (wslay takes a length only in its shortest form).
        size_t header = 2 + (self->length >= 65536? 8: self->length >= 126? 2: 0) + 4;
        assert (self->held >= header + self->length);
        self->held -= header + (size_t) self->length;
        self->in_frame = false;
        wsin_result_t result = s_frame (self, payload, control? (size_t) self->length: size, msg);
        if (result != WSIN_MORE)
            return result;
    }
}

size_t
wsin_footprint (const wsin_t *self)
{
    return (self->wslay? WSLAY_CONTEXT_SIZE: 0) + self->max + self->preface_size;
}

size_t
wsin_idle (wsin_t *self)
{
    if (self->held || self->in_frame || self->message || self->preface)
        return 0;
    size_t freed = wsin_footprint (self);
    wsin_free (self);
    return freed;
}

void
wsin_free (wsin_t *self)
{
    if (self->wslay)
        wslay_frame_context_free (self->wslay);
    self->wslay = NULL;
    free (self->data);
    self->data = NULL;
    self->size = self->max = 0;
    free (self->preface);
    self->preface = NULL;
    self->preface_size = self->preface_at = 0;
    self->held = 0;
    self->in_frame = false;
    self->message = 0;
}
