/*  =========================================================================
    stress_check.h - what test_stress records as its sockets play, and the
    checks it makes of it at the end

    The rooms of the test; every ack a socket got (room, seq, messageId);
    and every socket's view of a room, a segment: the seqs it heard there
    from its join (its message-history, then new-messages) until it left,
    closed, or the test ended with it still there (live). At the end each
    room's history is read back by GET /rooms/{id}/messages, page by page,
    and held against the acks and the segments.
    =========================================================================
*/

#ifndef NEARCHAT_STRESS_CHECK_H_INCLUDED
#define NEARCHAT_STRESS_CHECK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "harness_system.h"

#define STRESS_ROOMS    8

//  The rooms, by index 0..STRESS_ROOMS-1.
void
    stress_room_set (int room, const char *room_id);
const char *
    stress_room_id (int room);
//  The index of room_id, or -1 if it is none of the test's.
int
    stress_room_index (const char *room_id);

//  An ack of messageId id at seq in room.
void
    stress_acked (int room, int64_t seq, const char *id);
size_t
    stress_acked_count (void);

//  A socket (actor) joins room, with sinceSeq since_seq (0: a plain
//  join). Returns the new segment.
int
    stress_segment_new (int room, int actor, int64_t since_seq);
//  The segment's message-history came (what it held was added before):
//  from here on it must hear every acked message after its base (the
//  sinceSeq, else the last seq of its history, else 0).
void
    stress_segment_history (int segment);
//  The socket heard the message seq (messageId id) in the segment's room.
void
    stress_segment_add (int segment, int64_t seq, const char *id);
//  The socket left the room or closed (-1 is ignored; twice is harmless).
void
    stress_segment_end (int segment);
//  The segment's room, or -1 for segment -1.
int
    stress_segment_room (int segment);

//  Whether every live segment has heard up to its room's last acked seq.
bool
    stress_caught_up (void);

//  Read every room's history over HTTP (the gateway on port) and CHECK
//  that each acked message is there once, at its ack's seq, and that no
//  seq or messageId is there twice.
void
    stress_check_rooms (int port);

//  CHECK every segment: seqs in order without repeats, each the message
//  stored at that seq; a live segment, every acked seq after its base.
//  After stress_check_rooms.
void
    stress_check_segments (void);

//  Wait at most timeout_ms until stored (at endpoint) lists no connection
//  of gateway_id. False, with what it still lists printed, if it never did.
bool
    stress_wait_no_connections (const char *endpoint, const char *gateway_id, int timeout_ms);

//  CHECK that every daemon of sys still runs, then stop each (SIGTERM)
//  and CHECK that it exits 0 and that its log holds no sanitizer report.
void
    stress_check_daemons (harness_system_t *sys);

#endif
