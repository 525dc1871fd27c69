/*  =========================================================================
    conn.h - a WebSocket connection, as sockets.c and writers.c share it

    Private to those two files: sockets.c owns the table, the room index
    and the queues; writers.c owns how queued frames reach the socket.

    Invariants:
      - a conn's lock guards every field below it marked (lock); fields
        marked (const) are set before the conn is shared and never change;
      - a conn is written by at most one writer at a time (writing), sits
        on the ready list at most once (ready) and on the parked list (a
        writer found its socket full) at most once (parked);
      - conn->mg and conn->fd are used only while state != CONN_CLOSED or
        writing is set: sockets_close marks the conn CLOSED and waits for
        writing to clear before civetweb may close the socket, so a write
        or a shutdown never lands on a socket that is no longer ours;
      - an owned conn (the event loop serves its socket, loop.c; mg is
        NULL) is read, written and closed on the backend thread alone: its
        "ready" is a stay on the loop's flush list, not the writers';
      - lifetime: one reference for the table (sockets_add .. sockets_close),
        one for each stay on the ready list and on the parked list.
        conn_unref frees the conn with the last.
    =========================================================================
*/

#ifndef NEARCHAT_GATEWAY_CONN_H_INCLUDED
#define NEARCHAT_GATEWAY_CONN_H_INCLUDED

#include <pthread.h>
#include "gateway.h"
#include "ids.h"

//  A frame's JSON text, shared by every queue it is on.
typedef struct {
    atomic_int refs;
    int64_t made_ns;                        //  monotonic, for the delivery latency
    int opcode;                             //  WSFRAME_TEXT, or a pong's or a close's
    size_t size;
    char data [];
} frame_t;

frame_t *frame_new (const char *text);
//  A control frame (a pong, a close) of payload.
frame_t *frame_new_control (int opcode, const void *payload, size_t size);
void frame_unref (frame_t *frame);

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
    struct mg_connection *mg;               //  (const) civetweb's, NULL when owned
    int fd;                                 //  (const) its socket, or -1 when not found
    bool owned;                             //  (const) the event loop serves fd
    profile_t profile;                      //  the worker thread's alone
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t idle;                    //  signalled when writing clears
    conn_state_t state;                     //  (lock)
    frame_t **queue;                        //  (lock) a ring of queue_size slots
    size_t queue_head, queue_count, queue_size;
    bool writing, ready, parked;            //  (lock)
    bool close_pending;                     //  (lock) write a close frame, then shut it
    int close_status;                       //  (lock) its status and reason (conn_begin_close)
    const char *close_reason;               //  (lock) a static string
    bool close_staged;                      //  the close frame is in out (the writer's)
    int64_t close_deadline_ms;              //  monotonic: past it, shut it even if unsent
    bool lingering;                         //  on the loop's list of closes that wait (loop.c)
    outbuf_t out;                           //  the writer's, while writing is set or parked
    char *join_request;                     //  (lock) client requestId (JSON) of a join in flight
    conn_t *ready_next;                     //  under the ready list's lock, or the loop's
    //  The event loop's, for an owned conn (backend thread only).
    struct { uint8_t *data; size_t size, max; } in;     //  read, not yet handled
    bool busy;                              //  an action waits for its reply: frames wait
    bool processing;                        //  the loop is handling its frames now
    bool resuming;                          //  on the loop's resume list
    bool ended;                             //  the peer is gone: close once not busy
    uint32_t interest;                      //  its epoll events now
    int64_t heard_ms;                       //  monotonic: the peer last sent anything (pings)
    int64_t pinged_ms;                      //  when it was pinged, unanswered; 0: not
    conn_t *loop_prev, *loop_next;          //  the loop's list of its conns
    //  Under sockets.c's index lock (held is also written by the backend
    //  thread under the lock held for reading: it alone does so).
    char room_id [PROTO_ID_MAX + 1];        //  "" when in no room
    bool joining;                           //  in room_id, its join not yet answered
    struct { frame_t *frame; uint64_t seq; } *held;     //  events while joining
    size_t held_count, held_max;
    //  Delivery order in room_id (sockets.c): the newest message seq the
    //  socket was given; while a read of what it missed is under way
    //  (recovering), the newest seq an event announced, and which read it
    //  is (a join's history pages, or a gap's new-messages).
    uint64_t seq, seen;
    bool recovering, paging;
    uint32_t recovery;                      //  generation: a late answer for an old read is moot
};

void conn_unref (conn_t *conn);
//  Queue frame (a reference is taken) for conn, or find it a slow reader.
void sockets_queue (conn_t *conn, frame_t *frame);
//  Drop every queued frame. Conn's lock held.
void conn_queue_drop (conn_t *conn);
//  Close an open conn with a close frame of status and reason (static):
//  its queue is dropped, nothing more is queued, and a writer writes the
//  close frame after whatever is half sent and then shuts the socket.
//  Conn's lock held.
void conn_begin_close (conn_t *conn, int status, const char *reason);

//  ---------------------------------------------------------------------------
//  writers.c

int  writers_start (size_t count);
void writers_stop (void);
//  Hand conn to a writer: it has frames queued, or close_pending. Conn's
//  lock held; does nothing while a writer has it or its socket is full.
void writers_wake (conn_t *conn);
//  The socket of civetweb's connection mg, or -1 (see writers.c); it is
//  known as a connection's until writers_forget_fd, before civetweb closes it.
int  writers_find_fd (const struct mg_connection *mg);
void writers_forget_fd (int fd);
//  Fd is a client socket of ours (taken over): looks skip it.
void writers_claim_fd (int fd);
//  Write what is queued for conn, or close it as a slow reader: a writer
//  thread's turn, also taken by the loop for its owned conns (which it
//  wakes with writers_wake, taking a reference as the ready list does).
void writers_serve (conn_t *conn);
//  The socket of a parked owned conn drained (the loop saw it writable),
//  or the conn is closing: off the parked state, back to serving.
void writers_unpark (conn_t *conn);
//  How long a close frame may wait for its socket to drain (a parked
//  closing conn is looked at again once it has waited this long).
#define WRITERS_CLOSE_DRAIN_MS  30000

//  ---------------------------------------------------------------------------
//  loop.c (backend thread)

//  Owned conn has frames to write (writers_wake) or waits for its socket
//  to drain (parked): the loop's turn.
void loop_wake (conn_t *conn);
void loop_park (conn_t *conn);

#endif
