/*  =========================================================================
    conn.h - a WebSocket connection, as the loop's files share it

    Private to sockets.c (the conn, the table, the queues), rooms.c and
    recovery.c (its room and its delivery order there), output.c (how its
    queue reaches the socket), client.c (reading it, closing it) and
    loop.c (the turn).

    Invariants:
      - a conn is made on a civetweb thread (conn_new, in the ready
        handler), given what civetweb read of it (client_preface, in the
        data handler) and handed to the event loop (client_adopt, in the
        close handler, once civetweb's read of it has ended); from then on
        it is touched on the loop's thread alone, but for its reference
        count (atomic). Fields marked (const) are set before the conn is
        handed over and never change;
      - a conn sits on the flush list at most once (ready) and waits for
        its socket to drain at most once (parked);
      - conn->fd is used only while state != CONN_CLOSED: sockets_close
        marks the conn CLOSED before the loop closes its socket, so a write
        or a shutdown never lands on a socket that is no longer ours;
      - lifetime: one reference for the table (conn_new .. sockets_close),
        one for each stay on the flush list, on a list of the loop's and in
        the parked state. conn_unref frees the conn with the last.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_CONN_H_INCLUDED
#define NEARCHAT_GATEWAY_CONN_H_INCLUDED

#include <czmq.h>
#include "gateway.h"
#include "ids.h"
#include "wsin.h"

//  A frame's JSON text, shared by every queue it is on.
typedef struct {
    atomic_int refs;
    int64_t made_ns;                        //  monotonic, for the delivery latency
    int opcode;                             //  WSFRAME_TEXT, or a pong's or a close's
    size_t size;
    char data [];
} frame_t;

frame_t *frame_new (const char *text);
//  A text frame of room for size bytes (and a NUL); its size is size until
//  its writer says what it wrote.
frame_t *frame_alloc (size_t size);
//  A control frame (a pong, a close) of payload.
frame_t *frame_new_control (int opcode, const void *payload, size_t size);
void frame_unref (frame_t *frame);

//  The frames every message makes, as JSON text written without jansson's
//  tree (frames.c): byte for byte render_text (render_message (message)),
//  and the ack of a send-message (with "requestId" when request_id).
frame_t *render_message_frame (const proto_message_t *message);
frame_t *render_ack_frame (const char *id, const char *room_id, uint64_t seq,
                           const json_t *request_id);

typedef enum { CONN_OPEN, CONN_CLOSING, CONN_CLOSED } conn_state_t;


//  Bytes taken from the queue and framed, not yet all written.
typedef struct {
    unsigned char *data;
    size_t size, max;
    size_t sent;                            //  of size, already written
} outbuf_t;

struct conn {
    char id [IDS_UUID_SIZE];                //  (const)
    char user_id [PROTO_ID_MAX + 1];        //  (const)
    char address [LIMITS_ADDRESS_MAX];      //  (const) the client's (limits.c)
    int fd;                                 //  its socket, taken over from civetweb (loop.c)
    profile_t profile;
    atomic_int refs;
    conn_state_t state;
    frame_t **queue;                        //  a ring of queue_size slots
    size_t queue_head, queue_count, queue_size;
    bool ready, parked;                     //  on the flush list; waiting for the socket
    bool close_pending;                     //  write a close frame, then shut it
    int close_status;                       //  its status and reason (conn_begin_close)
    const char *close_reason;               //  a static string
    bool close_staged;                      //  the close frame is in out
    int64_t close_deadline_ms;              //  monotonic: past it, shut it even if unsent
    bool lingering;                         //  on the loop's list of closes that wait (loop.c)
    outbuf_t out;                           //  framed, not all written: the socket was full
    conn_t *ready_next;                     //  on the loop's flush list
    int64_t ready_ns;                       //  monotonic: when it went on it
    //  The event loop's.
    wsin_t in;                              //  its client frames, read through wslay;
                                            //  its preface is set before the loop has it
    size_t budget;                          //  bytes it may still read this turn
    bool hung_up;                           //  a read found the end of the stream
    bool draining;                          //  our close frame is out: read to the end, unseen
    bool busy;                              //  an action waits for its reply: frames wait
    uint32_t sends;                         //  its send-messages waiting for their answers
    uint64_t sends_generation;              //  the shard set's when the first of them went
    action_t *deferred;                     //  parsed, waits for the sends to be answered
    bool processing;                        //  the loop is handling its frames now
    bool resuming;                          //  on the loop's resume list
    bool ended;                             //  the peer is gone: close once not busy
    uint32_t interest;                      //  its epoll events now
    int64_t heard_ms;                       //  monotonic: the peer last sent anything (pings)
    int64_t pinged_ms;                      //  when it was pinged, unanswered; 0: not
    conn_t *loop_prev, *loop_next;          //  the loop's list of its conns
    loop_mail_t adoption;                   //  how civetweb's close handler hands it over
    //  Its room (rooms.c), and its delivery order there (recovery.c).
    char room_id [PROTO_ID_MAX + 1];        //  "" when in no room
    bool joining;                           //  in room_id, its join not yet answered
    struct { frame_t *frame; uint64_t seq; } *held;     //  events while joining, and
                                                        //  messages while recovering
    size_t held_count, held_max;
    //  Delivery order in room_id: the newest message seq the
    //  socket was given; while a read of what it missed is under way
    //  (recovering), the newest seq an event announced, and which read it
    //  is (a join's history pages, or a gap's new-messages).
    uint64_t seq, seen;
    bool recovering, paging;
    uint32_t recovery;                      //  generation: a late answer for an old read is moot
};

//  Conn adopted by the loop: into the table (client.c).
void sockets_add (conn_t *conn);
//  The open conn of that id, or NULL.
conn_t *sockets_find (const char *conn_id);
void conn_unref (conn_t *conn);
//  Queue frame (a reference is taken) for conn, or find it a slow reader.
void sockets_queue (conn_t *conn, frame_t *frame);
//  Drop every queued frame.
void conn_queue_drop (conn_t *conn);
//  Close an open conn with a close frame of status and reason (static):
//  its queue is dropped, nothing more is queued, and output_serve writes
//  the close frame after whatever is half sent and then shuts the socket.
void conn_begin_close (conn_t *conn, int status, const char *reason);

//  ---------------------------------------------------------------------------
//  output.c (the loop's thread)

//  Put conn on the flush list: it has frames queued, or close_pending.
//  Does nothing while it is there, or its socket is full.
void output_wake (conn_t *conn);
//  Take the head of the flush list (the loop serves each conn on it, by
//  ready_next, and drops the list's reference): the conns that went on it
//  at or before due_ns (monotonic), and every conn whose close waits. The
//  list is in the order conns went on it, so the rest are younger; a conn
//  woken meanwhile goes after them.
conn_t *output_ready (int64_t due_ns);
//  Whether the flush list holds a conn.
bool output_waiting (void);
//  When its first conn went on the flush list (monotonic ns), or -1 if
//  none is there.
int64_t output_first_ns (void);
//  Write what is queued for conn, or close it as a slow reader: its turn
//  on the flush list. True when it is parked now: the loop is to watch
//  its socket for room (and a close that waits, for its deadline).
bool output_serve (conn_t *conn);
//  The socket of a parked conn drained (the loop saw it writable), or the
//  conn is closing: off the parked state, back to serving.
void output_unpark (conn_t *conn);
//  Frame payload (size bytes) as one server frame (FIN, unmasked) at the
//  end of out: wslay's framing, its send callback appending to out.
void output_stage (outbuf_t *out, const void *payload, size_t size, int opcode);
//  Free the staging buffer (the loop has stopped).
void output_destroy (void);
//  How long a close frame may wait for its socket to drain (a parked
//  closing conn is looked at again once it has waited this long).
#define OUTPUT_CLOSE_DRAIN_MS   30000


//  ---------------------------------------------------------------------------
//  client.c (the loop's thread), for the loop's turn

//  Epoll said events (EPOLLIN, EPOLLOUT, ...) for conn.
void client_event (conn_t *conn, uint32_t events);
//  Whether a conn's action ended this turn (client_resume has work).
bool client_resuming (void);
//  Conns whose action ended go on with the frames that waited, or close.
void client_resume (void);
//  Conn's socket is full (output_serve parked it): watch it for room.
void client_park (conn_t *conn);
//  The closes that waited long enough, and the pings: now is monotonic ms.
void client_timers (int64_t now);
//  Whether conns closed this turn; drop the loop's references to them
//  (after the turn's writes).
bool client_dead (void);
void client_bury (void);
//  Close every conn (the gateway is stopping), and free the lists after.
void client_close_all (void);
void client_stop (void);

//  ---------------------------------------------------------------------------
//  rooms.c and recovery.c (the loop's thread)

//  The conns in room_id (count of them; NULL if none); the ids of the
//  rooms that have conns (a list of strings, for the caller to destroy).
conn_t **rooms_members (const char *room_id, size_t *count);
zlistx_t *rooms_list (void);

//  Reads of missed messages to send once a walk over a room is done.
typedef struct recovery recovery_t;
typedef struct {
    recovery_t **reads;
    size_t count, max;
} recoveries_t;
//  Begin a read of what conn missed after conn->seq (into starts).
void recovery_begin (conn_t *conn, recoveries_t *starts);
//  Hold frame (an event of seq, 0: no message) for conn (rooms.c).
void rooms_hold (conn_t *conn, frame_t *frame, uint64_t seq);
//  A message event of seq for conn: give it, drop it, or find a gap.
void recovery_offer (conn_t *conn, frame_t *frame, uint64_t seq, recoveries_t *starts);
//  Send the reads in starts, and empty it.
void recovery_send (recoveries_t *starts);
//  The message-history frame of messages (after after_seq only).
frame_t *recovery_history_frame (const char *room_id, const proto_message_t *messages,
                                 uint32_t count, uint64_t after_seq, bool more);

#endif
