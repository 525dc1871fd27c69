/*  =========================================================================
    loop.c - the event loop: the one thread that owns every WebSocket and
    every ZeroMQ socket

    One epoll set holds the client sockets (client.c), the ZeroMQ sockets'
    descriptors (links.c) and the mail eventfd. A turn:

      1. looks at the timers: the beat to stored (links_beat), the closes
         that waited and the pings (client_timers);
      2. waits (not at all when something is queued to write, or a ZeroMQ
         socket holds a message already) and reads the client sockets that
         have input, running their actions (ws.c), and the mail;
      3. reads the shards' messages (events are delivered to the room's
         sockets, answers end what waited for them: pending.c) and
         stored's, at most DRAIN_MAX each, peers first;
      4. lets the sockets whose actions ended go on (client_resume);
      5. writes what was queued (output.c) when no more work waits, or
         every FLUSH_EVERY_US while it keeps coming;
      6. expires what waited too long for an answer, drops silent shards,
         and asks stored what a socket may have missed when a shard came
         or went (recovery_audit).

    Other threads reach the loop only by mail (loop_mail): a locked list
    and an eventfd. civetweb's close handler mails a socket it handed over
    (client_adopt), an HTTP thread its call (calls.c). Nothing else of the
    loop's is shared: no lock guards a socket's state.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <czmq.h>
#include "gateway.h"
#include "conn.h"
#include "clock.h"
#include "log.h"
#include "wsframe.h"

#define EVENTS_MAX      256             //  epoll events taken at once
#define ZMQ_SOCKETS_MAX 4
#define WAKE_MS         100             //  longest sleep: timers, the stop flag
#define DRAIN_MAX       256             //  messages read from one socket before the others' turn
#define GATEWAY_BEAT_MS 1000            //  how often stored hears we are alive
#define FLUSH_EVERY_US  1000            //  longest a frame waits while work keeps coming
#define BUSY_WINDOW_NS  (50 * 1000000LL)    //  the loop's busy share is measured over this
#define BUSY_CALM       0.85            //  below this share of its time busy, nothing is held
#define HOLD_MAX_NS     (20 * 1000000LL)    //  the longest a socket's frames are held, when saturated
#define RUN_GONE_REASON "the gateway lost its rooms; reconnect and join again with sinceSeq"

static struct {
    int epoll;
    int mail;                           //  eventfd: something was mailed
    pthread_mutex_t lock;
    loop_mail_t *mail_head, *mail_tail; //  (lock) mailed, not yet run
    void *zmq [ZMQ_SOCKETS_MAX];
    int zmq_count;
    bool hurry;
    //  How busy the loop is: the share of its time spent outside
    //  epoll_wait, smoothed over windows of BUSY_WINDOW_NS.
    int64_t window_ns, waited_ns;
    double busy;
    pthread_t thread;
    bool started;
    atomic_bool stopping;               //  the thread should end
} s_loop = { .epoll = -1, .mail = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static __thread bool s_on_thread;      //  this is the loop's thread

//  Markers for epoll's data of the descriptors that are not conns.
static char s_mail_marker, s_zmq_marker;

//  ---------------------------------------------------------------------------
//  Mail (from any thread)

void
loop_mail (loop_mail_t *mail)
{
    mail->next = NULL;
    pthread_mutex_lock (&s_loop.lock);
    if (s_loop.mail_tail)
        s_loop.mail_tail->next = mail;
    else
        s_loop.mail_head = mail;
    s_loop.mail_tail = mail;
    pthread_mutex_unlock (&s_loop.lock);
    uint64_t one = 1;
    ssize_t rc = write (s_loop.mail, &one, sizeof one);
    (void) rc;                          //  a full eventfd is awake anyway
}

//  Run what was mailed, in order.
static void
s_take_mail (void)
{
    uint64_t value;
    ssize_t rc = read (s_loop.mail, &value, sizeof value);
    (void) rc;
    pthread_mutex_lock (&s_loop.lock);
    loop_mail_t *mail = s_loop.mail_head;
    s_loop.mail_head = s_loop.mail_tail = NULL;
    pthread_mutex_unlock (&s_loop.lock);
    while (mail) {
        loop_mail_t *next = mail->next;
        mail->run (mail);
        mail = next;
    }
}

//  ---------------------------------------------------------------------------
//  The turn

//  Wait at most timeout_ms for a client socket, mail or a ZeroMQ socket
//  (at once when one has a message already), and handle the client
//  sockets' input. Returns how many client sockets had some.
static int
s_wait (int timeout_ms)
{
    //  ZeroMQ's descriptors are edge-like: a message may wait although
    //  the descriptor is quiet, so ask each socket before sleeping.
    for (int i = 0; i < s_loop.zmq_count && timeout_ms > 0; i++) {
        int events = 0;
        size_t size = sizeof events;
        if (s_loop.hurry || client_resuming ()
        || (zmq_getsockopt (s_loop.zmq [i], ZMQ_EVENTS, &events, &size) == 0
            && (events & ZMQ_POLLIN)))
            timeout_ms = 0;
    }
    struct epoll_event events [EVENTS_MAX];
    int64_t before_ns = timeout_ms > 0? clock_mono_ns (): 0;
    int count = epoll_wait (s_loop.epoll, events, EVENTS_MAX, timeout_ms);
    if (timeout_ms > 0)
        s_loop.waited_ns += clock_mono_ns () - before_ns;
    if (count < 0 && errno != EINTR)
        log_error ("epoll_wait: %s", strerror (errno));
    int work = 0;
    for (int i = 0; i < count; i++) {
        void *ptr = events [i].data.ptr;
        if (ptr == &s_mail_marker) {
            s_take_mail ();
            work++;
        }
        else
        if (ptr != &s_zmq_marker) {     //  (not work in itself: the drain counts it)
            client_event (ptr, events [i].events);
            work++;
        }
    }
    return work;
}

static bool
s_unwritten (void)
{
    return output_waiting () || client_dead ();
}

//  How long a socket's frames are held before they are written, so that
//  more of them go in one send: nothing while the loop is calm, up to
//  HOLD_MAX_NS as it nears saturation. A send on loopback costs about as
//  much as the receiver's whole TCP path, nearly the same for one frame
//  as for ten: at saturation half the loop's time was in send, at two
//  frames a send; held, five to eleven go in one (perf, nearchat-load
//  fanout --rate 20 and 30). Holding frees the time the loop lacks, and
//  its busy share falls back: the hold settles where the loop keeps up,
//  at milliseconds of latency, in place of the seconds a queue grows to
//  when it does not. Below BUSY_CALM it would only add latency: held
//  from half busy on, a message took 4 ms more at p50 at a sixth of the
//  loop's load, where it otherwise takes 1.5 ms.
static int64_t
s_hold_ns (void)
{
    if (s_loop.busy <= BUSY_CALM)
        return 0;
    return (int64_t) ((s_loop.busy - BUSY_CALM) / (1 - BUSY_CALM) * HOLD_MAX_NS);
}

//  Account a turn's time to the loop's busy share.
static void
s_measure (int64_t now_ns)
{
    if (!s_loop.window_ns) {
        s_loop.window_ns = now_ns;
        return;
    }
    int64_t elapsed = now_ns - s_loop.window_ns;
    if (elapsed < BUSY_WINDOW_NS)
        return;
    double busy = 1 - (double) s_loop.waited_ns / (double) elapsed;
    s_loop.busy = (s_loop.busy + (busy < 0? 0: busy)) / 2;
    s_loop.window_ns = now_ns;
    s_loop.waited_ns = 0;
    atomic_store (&gateway_metrics.loop_busy_permille, (long long) (s_loop.busy * 1000));
    atomic_store (&gateway_metrics.hold_us, (long long) (s_hold_ns () / 1000));
}

//  The longest the loop may sleep for the frames it holds (ms): until the
//  first conn on the flush list is due, 0 when one is (or a dead client
//  waits to be closed).
static int64_t
s_due_ms (int64_t now_ns)
{
    if (client_dead ())
        return 0;
    int64_t first = output_first_ns ();
    if (first < 0)
        return WAKE_MS;
    int64_t due = first + s_hold_ns () - now_ns;
    return due <= 0? 0: (due + 999999) / 1000000;
}

//  Write what was queued, of the conns due by now.
static void
s_flush (int64_t now_ns)
{
    //  A conn with more queued than one write takes is put back on the
    //  list by output_serve: it is served next turn, after the others.
    conn_t *conn = output_ready (now_ns - s_hold_ns ());
    while (conn) {
        conn_t *next = conn->ready_next;
        if (output_serve (conn))
            client_park (conn);
        conn_unref (conn);              //  the list's reference
        conn = next;
    }
    client_bury ();
}

//  An event from a shard, to the sockets in its room.
static void
s_deliver (proto_msg_t *event)
{
    rooms_deliver (event);
    proto_msg_destroy (&event);
}

//  The loop: one turn reads what came (client sockets, mail, the ZeroMQ
//  sockets), lets the sockets whose actions ended go on, writes what was
//  queued, and looks at the timers.
static void *
s_run (void *arg)
{
    (void) arg;
    s_on_thread = true;
    int64_t next_beat = 0, flushed_us = 0;
    while (!atomic_load (&s_loop.stopping)) {
        int64_t now = clock_mono_ms ();
        if (now >= next_beat) {
            links_beat ();
            next_beat = now + GATEWAY_BEAT_MS;
        }
        client_timers (now);
        int64_t wait = s_due_ms (clock_mono_ns ());
        int64_t until = pending_wait_ms ();
        if (until >= 0 && until < wait)
            wait = until;
        //  Client frames are read and their actions begun in here. With
        //  frames due to be written it only looks, so they wait for no sleep.
        links_flush ();                 //  the turn's requests, a frame a shard
        int work = s_wait ((int) wait);
        //  Peers first: their replies and events finish work already begun.
        int i, drained = 0;
        for (i = 0; i < DRAIN_MAX && links_from_peer (s_deliver); i++)
            ;
        drained += i;
        for (i = 0; i < DRAIN_MAX && links_from_stored (); i++)
            ;
        drained += i;
        links_watch ();
        if (links_run_lost ()) {
            size_t closed = sockets_close_all (WSFRAME_RESTART, RUN_GONE_REASON);
            log_warn ("%zu sockets closed (1012) for their clients to join again", closed);
        }
        client_resume ();
        //  Write what the sockets were queued once no more work is
        //  waiting, or at least every FLUSH_EVERY_US while it keeps coming:
        //  under load a write then carries many frames (a send on loopback
        //  costs as much as the receiver's whole TCP path, ./nearchat bench
        //  load fanout, perf), at a millisecond's latency at most.
        //  (Frames held for a busy loop wait here too: s_hold_ns.)
        int64_t now_ns = clock_mono_ns ();
        int64_t now_us = now_ns / 1000;
        if (s_unwritten () && (work + drained == 0 || now_us - flushed_us >= FLUSH_EVERY_US)) {
            s_flush (now_ns);
            flushed_us = now_us;
        }
        s_measure (now_ns);
        s_loop.hurry = drained >= DRAIN_MAX;
        recovery_resume ();
        pending_expire ();
        shards_check ();
        if (shards_take_audit ())
            recovery_audit ();
    }
    //  Sockets are closed as civetweb closes its own: each one's leave
    //  and conn-del are posted, and go out with the calls' last.
    s_take_mail ();
    client_close_all ();
    pending_fail_all ("the gateway is stopping");
    client_resume ();                        //  the closes that waited for their actions
    links_flush ();
    s_loop.busy = 0;                         //  nothing is held any more
    s_flush (clock_mono_ns ());
    return NULL;
}

int
loop_watch (int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event event = { .events = events, .data.ptr = ptr };
    return epoll_ctl (s_loop.epoll, op, fd, &event);
}

bool
loop_on_thread (void)
{
    return s_on_thread;
}

int
loop_start (void)
{
    s_loop.epoll = epoll_create1 (EPOLL_CLOEXEC);
    s_loop.mail = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_loop.epoll < 0 || s_loop.mail < 0) {
        log_error ("cannot make the event loop: %s", strerror (errno));
        return -1;
    }
    struct epoll_event event = { .events = EPOLLIN, .data.ptr = &s_mail_marker };
    if (epoll_ctl (s_loop.epoll, EPOLL_CTL_ADD, s_loop.mail, &event))
        return -1;
    void *handles [ZMQ_SOCKETS_MAX];
    int count = links_handles (handles, ZMQ_SOCKETS_MAX);
    for (int i = 0; i < count; i++) {
        //  ZeroMQ's descriptor only says "look": ZMQ_EVENTS tells.
        int fd;
        size_t size = sizeof fd;
        if (zmq_getsockopt (handles [i], ZMQ_FD, &fd, &size))
            return -1;
        event.data.ptr = &s_zmq_marker;
        if (epoll_ctl (s_loop.epoll, EPOLL_CTL_ADD, fd, &event))
            return -1;
        s_loop.zmq [s_loop.zmq_count++] = handles [i];
    }
    shards_reset ();
    atomic_store (&s_loop.stopping, false);
    if (pthread_create (&s_loop.thread, NULL, s_run, NULL)) {
        log_error ("cannot start the event loop's thread");
        return -1;
    }
    s_loop.started = true;
    return 0;
}

void
loop_stop (void)
{
    atomic_store (&s_loop.stopping, true);
    if (s_loop.started) {
        pthread_join (s_loop.thread, NULL);
        s_loop.started = false;
    }
    client_stop ();
    if (s_loop.epoll >= 0)
        close (s_loop.epoll);
    if (s_loop.mail >= 0)
        close (s_loop.mail);
    s_loop.epoll = s_loop.mail = -1;
    s_loop.zmq_count = 0;
}
