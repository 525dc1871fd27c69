/*  =========================================================================
    test_stress - many sockets joining, sending, switching and closing at
    once while HTTP calls run, against the real system (stored, gateway,
    2 shards, the reaper); run under ASan by `./nearchat test --sanitize`

    A few hundred WebSockets in one poll loop (stress_ws.c) play scripts at
    once over rooms on both shards: stayers join and stay, sending as they
    go; churners join, send with messageIds, type, switch rooms, ping, and
    close abruptly or with a close frame, then reconnect and rejoin their
    room with sinceSeq; a few sockets send bad JSON, an unknown action,
    oversized frames, unmasked frames, bad UTF-8 and garbage. Meanwhile
    two threads create rooms, join over HTTP, read history, /healthz,
    /metrics and search. Then what must hold, whatever the interleaving:
    every acked message is in its room's history once, at its ack's seq,
    and no messageId is there twice; every socket's view of a room (its
    message-history, then new-messages) is in seq order without repeats,
    and one that stayed to the end heard every acked message after its
    join (or its sinceSeq); bad input got an error frame or a close, and
    crashed nothing; after the sockets close, /healthz counts none and
    stored holds no connection of the gateway; every daemon is alive and
    exits 0 on SIGTERM with no sanitizer report in its log.
    Counts bound every loop, and a deadline bounds the whole; waits are
    on conditions. STRESS_SOCKETS overrides the number of sockets.
    =========================================================================
*/

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "api.h"
#include "harness_system.h"
#include "clock.h"
#include "stress_ws.h"
#include "stress_check.h"
#include "stress_http.h"

#ifdef NEARCHAT_SANITIZE
#   define SCALE        3       //  ASan and UBSan make every daemon about 3x slower
#else
#   define SCALE        1
#endif
#define SOCKETS         240
#define SOCKETS_MAX     1000
#define USERS           90      //  users the sockets share (< MAX_PARTICIPANTS, 100)
#define STAYERS_A_ROOM  6
#define BAD_SOCKETS     6
#define STAYER_SENDS    10
#define SESSIONS        4       //  connections a churner makes in turn
#define STEPS           8       //  actions a churner takes in a session
#define BAD_SESSIONS    7       //  one of each kind of bad input
#define PACE_MS         40      //  at most this long between two actions of a socket
#define WAIT_MS         (10000 * SCALE)     //  for an answer that must come
#define RUN_MS          (60000 * SCALE)     //  the whole load, at most
#define HTTP_THREADS    2
#define HTTP_CALLS      2000    //  each thread's, at most (they stop with the load)
#define TWIN_TRIES      20

static harness_system_t s_system;
static int s_port;

typedef enum { STAYER, CHURNER, BAD } kind_t;
typedef enum { W_NONE, W_OPEN, W_HISTORY, W_ACK, W_PONG, W_ERROR, W_END } wait_t;
static const char *s_wait_names [] = { "nothing", "the upgrade", "message-history", "ack",
                                       "pong", "an error frame", "the close" };

typedef struct {
    int index;
    kind_t kind;
    char user [16];
    sws_t ws;
    int session;                    //  connections made so far
    int sessions;                   //  ... and to make
    int step;                       //  actions taken in this session
    int room;                       //  the room of the socket's segment, or -1
    int segment;                    //  its view of that room (stress_check), or -1
    int left;                       //  the segment just left, while what was under way comes
    int last_room;                  //  the room joined last, for a rejoin after a close
    int64_t last_seq [STRESS_ROOMS];    //  the highest seq heard in each room
    wait_t waiting;
    int64_t wait_until;
    char pending [48];              //  the messageId an ack is awaited for
    int64_t next_at;                //  when the next action is due
    int sent;
    bool stays;                     //  the last session stays to the end
    bool done;
} actor_t;

static actor_t s_actors [SOCKETS_MAX];
static int s_actor_count;
static size_t s_errors;             //  error frames to sends and joins (503 under load)

static int
s_random (int below)
{
    return (int) (harness_random () * below);
}

//  ---------------------------------------------------------------------------
//  Actions

static void
s_wait (actor_t *self, wait_t what)
{
    self->waiting = what;
    self->wait_until = clock_mono_ms () + WAIT_MS;
}

static void
s_connect (actor_t *self)
{
    char path [96];
    snprintf (path, sizeof path, "/ws?userId=%s&userName=%s", self->user, self->user);
    CHECK (sws_open (&self->ws, s_port, path) == 0);
    self->step = 0;
    self->room = self->segment = self->left = -1;
    s_wait (self, W_OPEN);
}

static void
s_join (actor_t *self, int room, bool since)
{
    int64_t since_seq = since? self->last_seq [room]: 0;
    json_t *join = json_pack ("{s:s, s:s, s:s}", "action", "join-room",
                              "roomId", stress_room_id (room), "userName", self->user);
    if (since_seq > 0)
        json_object_set_new (join, "sinceSeq", json_integer (since_seq));
    sws_send_json (&self->ws, join);
    self->room = self->last_room = room;
    self->segment = stress_segment_new (room, self->index, since_seq);
    s_wait (self, W_HISTORY);
}

static void
s_say (actor_t *self)
{
    //  The room is in the id, so that a late ack still says where it was.
    snprintf (self->pending, sizeof self->pending, "m%d-%d-%d", self->room, self->index,
              self->sent++);
    char text [96];
    snprintf (text, sizeof text, "stress %s from %s", self->pending, self->user);
    sws_send_json (&self->ws, json_pack ("{s:s, s:s, s:s, s:s}", "action", "send-message",
                                         "roomId", stress_room_id (self->room), "message", text,
                                         "messageId", self->pending));
    s_wait (self, W_ACK);
}

static void
s_type (actor_t *self)
{
    sws_send_json (&self->ws, json_pack ("{s:s, s:s, s:s}", "action", "user-typing",
                                         "roomId", stress_room_id (self->room),
                                         "userName", self->user));
}

static void
s_ping (actor_t *self)
{
    sws_send_json (&self->ws, json_pack ("{s:s}", "action", "ping"));
    s_wait (self, W_PONG);
}

//  End the session: an abrupt close, or a close frame and a wait for the
//  server's close.
static void
s_hang_up (actor_t *self, bool with_frame)
{
    //  What was under way to the socket may still come, until the close.
    stress_segment_end (self->segment);
    self->left = self->segment;
    self->segment = self->room = -1;
    self->session++;
    if (with_frame && self->ws.state == SWS_OPEN) {
        uint8_t code [2] = { 1000 >> 8, 1000 & 0xff };
        sws_send_frame (&self->ws, WSPROTO_CLOSE, code, sizeof code);
        s_wait (self, W_END);
    }
    else {
        sws_drop (&self->ws);
        self->waiting = W_NONE;
    }
}

//  One of the bad inputs, by number; returns what must follow it.
static wait_t
s_bad_input (actor_t *self, int which)
{
    unsigned char frame [64];
    static char big [70000];            //  over the 64 KiB a frame may hold
    switch (which) {
        case 0:
            sws_send_text (&self->ws, "{\"action\": \"send-message\", \"roomId\": ");
            return W_ERROR;             //  bad JSON: an error frame, the socket stays
        case 1:
            sws_send_text (&self->ws, "{\"action\": \"fly\", \"roomId\": \"nowhere\"}");
            return W_ERROR;
        case 2:
            memset (big, 'a', sizeof big);
            big [0] = '"';
            big [sizeof big - 1] = '"';
            sws_send_frame (&self->ws, WSPROTO_TEXT, big, sizeof big);
            return W_END;               //  closed 1009
        case 3: {                       //  a header that announces 1 GiB, and no more
            unsigned char head [] = { 0x81, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4 };
            sws_send_raw (&self->ws, head, sizeof head);
            return W_END;
        }
        case 4:                         //  unmasked: a protocol error
            sws_send_raw (&self->ws, frame, ws_raw_build (frame, sizeof frame, WSPROTO_TEXT,
                                                          true, false, "{}", 2));
            return W_END;
        case 5:
            sws_send_frame (&self->ws, WSPROTO_TEXT, "{\"a\": \"\xff\xfe\"}", 12);
            return W_END;               //  not UTF-8: closed 1007
        default:
            sws_send_raw (&self->ws, "\xff\xff\xff\xff garbage \x00\x01", 16);
            return W_END;               //  reserved bits and opcode
    }
}

//  The socket's next action, when it waits for nothing and its time came.
static void
s_act (actor_t *self)
{
    if (self->ws.state == SWS_IDLE) {
        if (self->session >= self->sessions)
            self->done = true;
        else
            s_connect (self);
        return;
    }
    if (self->room < 0) {
        //  A churner back after a close rejoins where it was, with sinceSeq.
        bool rejoin = self->kind == CHURNER && self->session > 0;
        int room = rejoin? self->last_room
                 : self->kind == CHURNER? s_random (STRESS_ROOMS): self->index % STRESS_ROOMS;
        s_join (self, room, rejoin);
        return;
    }
    if (self->kind == STAYER) {
        if (self->sent < STAYER_SENDS) {
            if (s_random (3) == 0)
                s_type (self);
            s_say (self);
        }
        else
            self->done = true;          //  stays in its room to the end
        return;
    }
    if (self->kind == BAD) {
        if (self->step++ == 0) {
            s_wait (self, s_bad_input (self, (self->index + self->session) % BAD_SESSIONS));
            if (self->waiting == W_END) {   //  the server closes: the session is over
                stress_segment_end (self->segment);
                self->left = self->segment;
                self->segment = self->room = -1;
                self->session++;
            }
        }
        else
        if (self->step == 2)
            s_ping (self);              //  still served after the error frame
        else
            s_hang_up (self, false);
        return;
    }
    if (self->step >= STEPS) {
        if (self->session == self->sessions - 1 && self->stays)
            self->done = true;
        else
            s_hang_up (self, s_random (2));
        return;
    }
    self->step++;
    int roll = s_random (100);
    if (roll < 55)
        s_say (self);
    else
    if (roll < 70)
        s_type (self);
    else
    if (roll < 90) {                    //  joining another room leaves this one
        int room = (self->room + 1 + s_random (STRESS_ROOMS - 1)) % STRESS_ROOMS;
        self->left = self->segment;
        stress_segment_end (self->segment);
        s_join (self, room, false);
    }
    else
        s_ping (self);
}

//  ---------------------------------------------------------------------------
//  What the server sent

static int
s_room_of (json_t *frame)
{
    const char *room_id = j_str (frame, "roomId");
    return room_id? stress_room_index (room_id): -1;
}

static void
s_heard (actor_t *self, json_t *message, int room)
{
    int64_t seq = (int64_t) j_num (message, "seq");
    const char *id = j_str (message, "id");
    if (seq > self->last_seq [room])
        self->last_seq [room] = seq;
    int segment = room == self->room? self->segment
                : stress_segment_room (self->left) == room? self->left: -1;
    if (segment < 0) {
        fprintf (stderr, "  socket %d (%s) heard seq %lld of room %d, where it is not\n",
                 self->index, self->user, (long long) seq, room);
        CHECK (segment >= 0);
        return;
    }
    stress_segment_add (segment, seq, id);
}

//  A send or a join of a socket in its room refused. Under load a shard or
//  stored may be late (503); anything else breaks the contract: e.g. 403 to
//  a send from a socket whose join was answered means the room lost its
//  user as a participant while the socket is there.
static void
s_refused (actor_t *self, json_t *frame)
{
    int status = (int) j_num (frame, "status");
    fprintf (stderr, "  socket %d (%s): %s in room %d refused: %s (%d)\n", self->index,
             self->user, j_str (frame, "action"), self->room, j_str (frame, "error"), status);
    CHECK (status == 503);
    s_errors++;
}

static void
s_frame (actor_t *self, json_t *frame)
{
    const char *type = j_str (frame, "type");
    int room = s_room_of (frame);
    if (!type)
        return;
    if (!strcmp (type, "message-history") && room >= 0 && room == self->room
    &&  self->waiting == W_HISTORY) {
        json_t *messages = json_object_get (frame, "messages"), *message;
        size_t i;
        json_array_foreach (messages, i, message)
            s_heard (self, message, room);
        stress_segment_history (self->segment);
        self->left = -1;
        self->waiting = W_NONE;
    }
    else
    if (!strcmp (type, "new-message") && room >= 0)
        s_heard (self, frame, room);
    else
    if (!strcmp (type, "ack")) {
        const char *id = j_str (frame, "messageId");
        int64_t seq = (int64_t) j_num (frame, "seq");
        int acked_room = id? atoi (id + 1): -1;
        CHECK (id && seq > 0 && acked_room >= 0 && acked_room < STRESS_ROOMS);
        if (id && seq > 0 && acked_room >= 0 && acked_room < STRESS_ROOMS)
            stress_acked (acked_room, seq, id);
        if (self->waiting == W_ACK && id && !strcmp (id, self->pending))
            self->waiting = W_NONE;
    }
    else
    if (!strcmp (type, "error")) {
        const char *id = j_str (frame, "messageId"), *action = j_str (frame, "action");
        if (self->waiting == W_ERROR)
            self->waiting = W_NONE;
        else
        if (self->waiting == W_ACK && id && !strcmp (id, self->pending)) {
            s_refused (self, frame);
            self->waiting = W_NONE;
        }
        else
        if (self->waiting == W_HISTORY && action && !strcmp (action, "join-room")) {
            s_refused (self, frame);    //  not in the room: the session ends
            s_hang_up (self, false);
        }
        else
        if (!action || strcmp (action, "user-typing"))
            fprintf (stderr, "  socket %d: an error frame: %s %s (%g)\n", self->index,
                     action? action: "-", j_str (frame, "error"), j_num (frame, "status"));
    }
    else
    if (!strcmp (type, "pong") && self->waiting == W_PONG)
        self->waiting = W_NONE;
}

//  After service: the upgrade done, frames handled, a close seen.
static void
s_after_service (actor_t *self, int64_t now)
{
    if (self->waiting == W_OPEN && self->ws.state == SWS_OPEN)
        self->waiting = W_NONE;
    json_t *frame;
    while ((frame = sws_take (&self->ws))) {
        s_frame (self, frame);
        json_decref (frame);
    }
    if (self->ws.state == SWS_ENDED || (self->waiting == W_END && self->ws.close_code)) {
        bool expected = self->waiting == W_END;
        if (!expected)
            fprintf (stderr, "  socket %d (%s) was closed by the server (status %d, code %d) "
                     "while it waited for %s\n", self->index, self->user, self->ws.status,
                     self->ws.close_code, s_wait_names [self->waiting]);
        CHECK (expected);
        CHECK (self->ws.not_json == 0 && self->ws.bad_frames == 0);
        if (!expected) {
            stress_segment_end (self->segment);
            self->segment = self->room = -1;
            self->session = self->sessions;     //  a lost socket is not played on
        }
        sws_drop (&self->ws);
        self->waiting = W_NONE;
        self->next_at = now + s_random (PACE_MS);
    }
    if (self->waiting != W_NONE && now > self->wait_until) {
        fprintf (stderr, "  socket %d (%s) waited %d ms for %s\n", self->index, self->user,
                 WAIT_MS, s_wait_names [self->waiting]);
        CHECK (false);
        stress_segment_end (self->segment);
        self->segment = self->room = -1;
        self->session = self->sessions;
        sws_drop (&self->ws);
        self->waiting = W_NONE;
    }
}

//  Poll every socket once (at most 5 ms) and act for those whose time came.
//  Returns how many actors are not done.
static int
s_turn (bool acting)
{
    static struct pollfd fds [SOCKETS_MAX];
    static int owners [SOCKETS_MAX];
    int count = 0;
    for (int i = 0; i < s_actor_count; i++) {
        short events = sws_events (&s_actors [i].ws);
        if (events) {
            fds [count] = (struct pollfd) { .fd = s_actors [i].ws.fd, .events = events };
            owners [count++] = i;
        }
    }
    poll (fds, (nfds_t) count, 5);
    for (int i = 0; i < count; i++)
        sws_service (&s_actors [owners [i]].ws, fds [i].revents);
    int64_t now = clock_mono_ms ();
    int busy = 0;
    for (int i = 0; i < s_actor_count; i++) {
        actor_t *actor = &s_actors [i];
        s_after_service (actor, now);
        if (acting && !actor->done && actor->waiting == W_NONE && now >= actor->next_at) {
            s_act (actor);
            actor->next_at = now + s_random (PACE_MS);
        }
        busy += !actor->done || actor->waiting != W_NONE;
    }
    return busy;
}

//  ---------------------------------------------------------------------------

static void
s_setup (void)
{
    const char *env [] = { "SOCKETS_PER_USER=0", "SOCKETS_PER_ADDRESS=0", "MESSAGES_PER_S=0",
                           "ROOMS_PER_MINUTE=0", "MAX_PARTICIPANTS=100", "GATEWAY_ID=gw-stress",
                           NULL };
    REQUIRE (harness_system_start (&s_system, 2, true, env) == 0);
    s_port = s_system.http_port;
    //  Half the rooms on each shard.
    int owned [2] = { 0, 0 }, rooms = 0;
    for (int attempt = 0; attempt < 200 && rooms < STRESS_ROOMS; attempt++) {
        double latitude, longitude;
        api_offset (48.85, 2.35, 20.0 * attempt, 10.0, &latitude, &longitude);
        const char *id = api_create_room (s_port, "u0", latitude, longitude, NULL, 0);
        REQUIRE (id);
        int owner = harness_shard_owner (&s_system, id);
        if (owned [owner] < STRESS_ROOMS / 2) {
            owned [owner]++;
            stress_room_set (rooms++, id);
        }
    }
    REQUIRE (rooms == STRESS_ROOMS);
}

//  A user's second socket joins a room as their first socket there closes
//  (a reload, a second tab): the user still has a socket in the room, so
//  stays a participant, and the new socket may send. The load below does
//  this by chance (its users share sockets); here it is done on purpose.
static void
s_test_twin_sockets (void)
{
    printf ("a user's socket joins a room as their other socket there closes: it may send\n");
    const char *room_id = stress_room_id (0);
    ws_client_t *before = api_connect (s_port, "twin", NULL);
    REQUIRE (before);
    json_decref (api_join (before, room_id, "twin", -1));
    int refused = 0;
    for (int i = 0; i < TWIN_TRIES; i++) {
        ws_client_t *after = api_connect (s_port, "twin", NULL);
        REQUIRE (after);
        ws_send (after, "{s:s, s:s}", "action", "join-room", "roomId", room_id);
        ws_close (&before);
        json_t *history = ws_expect (after, "message-history", WAIT_MS);
        CHECK (history);
        json_decref (history);
        char id [32];
        snprintf (id, sizeof id, "twin-%d", i);
        long long seq = api_say (after, room_id, id, "still here");
        if (seq > 0)
            stress_acked (0, seq, id);
        else
            refused++;
        before = after;
    }
    ws_close (&before);
    if (refused)
        fprintf (stderr, "  %d of %d sends refused: the room lost the user as a participant "
                 "while their new socket was in it\n", refused, TWIN_TRIES);
    CHECK (refused == 0);
}

static void
s_cast (int sockets)
{
    s_actor_count = sockets;
    for (int i = 0; i < sockets; i++) {
        actor_t *actor = &s_actors [i];
        memset (actor, 0, sizeof *actor);
        actor->index = i;
        actor->kind = i < STAYERS_A_ROOM * STRESS_ROOMS? STAYER
                    : i < STAYERS_A_ROOM * STRESS_ROOMS + BAD_SOCKETS? BAD: CHURNER;
        snprintf (actor->user, sizeof actor->user, "u%d", i % USERS);
        actor->sessions = actor->kind == STAYER? 1: actor->kind == BAD? BAD_SESSIONS: SESSIONS;
        actor->stays = actor->kind == STAYER || (actor->kind == CHURNER && i % 2 == 0);
        actor->room = actor->segment = actor->left = -1;
        actor->ws.fd = -1;
        actor->next_at = clock_mono_ms () + s_random (PACE_MS);
    }
}

int
main (void)
{
    harness_init ("test_stress");
    int sockets = getenv ("STRESS_SOCKETS")? atoi (getenv ("STRESS_SOCKETS")): SOCKETS;
    REQUIRE (sockets > STAYERS_A_ROOM * STRESS_ROOMS + BAD_SOCKETS && sockets <= SOCKETS_MAX);
    s_setup ();
    s_test_twin_sockets ();
    printf ("%d sockets over %d rooms on 2 shards, %d HTTP threads\n", sockets, STRESS_ROOMS,
            HTTP_THREADS);
    s_cast (sockets);
    stress_http_start (s_port, HTTP_THREADS, HTTP_CALLS, USERS);

    int64_t started = clock_mono_ms ();
    int busy = sockets;
    while (busy > 0 && clock_mono_ms () < started + RUN_MS)
        busy = s_turn (true);
    int calls = stress_http_stop ();
    CHECK (busy == 0);
    printf ("load done in %lld ms: %zu messages acked, %zu sends and joins refused, "
            "%d HTTP calls\n", (long long) (clock_mono_ms () - started), stress_acked_count (),
            s_errors, calls);

    //  Every socket still in its room hears the last acked messages.
    for (int64_t until = clock_mono_ms () + WAIT_MS; clock_mono_ms () < until
                                                    && !stress_caught_up (); )
        s_turn (false);
    stress_check_rooms (s_port);
    stress_check_segments ();

    //  Every socket closes, half abruptly; then none is left anywhere.
    for (int i = 0; i < s_actor_count; i++)
        if (s_actors [i].ws.state == SWS_OPEN)
            s_hang_up (&s_actors [i], i % 2);
    for (int64_t until = clock_mono_ms () + WAIT_MS; clock_mono_ms () < until
                                                    && s_turn (false) > 0; )
        ;
    for (int i = 0; i < s_actor_count; i++)
        sws_drop (&s_actors [i].ws);
    printf ("every socket closed: none left in /healthz nor in stored; then every daemon "
            "stops with status 0 and no sanitizer report\n");
    CHECK (api_wait_connections (s_port, 0));
    CHECK (stress_wait_no_connections (s_system.stored.endpoint, "gw-stress", WAIT_MS));
    stress_check_daemons (&s_system);
    return harness_finish ();
}
