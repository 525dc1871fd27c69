/*  =========================================================================
    fds.c - the descriptor of a civetweb connection: found, and taken over
    for the event loop

    civetweb 1.15 does not give out a connection's descriptor, and the
    gateway needs it twice: to take a WebSocket over for the event loop
    once its handshake is answered (fds_take), and to end the read of an
    HTTP request body that is past its deadline (body.c). The one we want
    is the socket whose peer is the request's remote address and port and
    whose own port is the server's: that names one open socket, and while
    the civetweb thread that serves it is in our handler it stays open.

    Sockets already known to be some connection's (taken over, or being
    read under a deadline) are skipped without a system call (a bitmap),
    and so are descriptors seen to be no client socket of the server's
    port (ZeroMQ's eventfds, its TCP sockets, the listener, files: another
    bitmap). A look then costs a few system calls, not a getpeername for
    every open descriptor (reading /proc/self/fd for each new socket made
    connecting O(sockets): half the gateway's time in churn). A descriptor
    seen as "other" may be closed and reused by a new client socket: a
    look that finds nothing looks again at all of them and learns the
    "other" set afresh.

    Any thread may call these (civetweb's, in their handlers; the backend
    thread, as it closes a socket): the bitmaps are under one lock.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include "gateway.h"
#include "log.h"

typedef struct {
    uint64_t *bits;
    size_t words;
} bitmap_t;

static struct {
    pthread_mutex_t lock;
    bitmap_t ours, other;
} s_fds = { PTHREAD_MUTEX_INITIALIZER, { NULL, 0 }, { NULL, 0 } };

static bool
s_bit (const bitmap_t *map, int fd)
{
    size_t word = (size_t) fd / 64;
    return word < map->words && (map->bits [word] >> (fd % 64) & 1);
}

static void
s_bit_set (bitmap_t *map, int fd, bool value)
{
    size_t word = (size_t) fd / 64;
    if (word >= map->words) {
        if (!value)
            return;
        size_t words = (word + 1) * 2;
        map->bits = realloc (map->bits, words * sizeof *map->bits);
        assert (map->bits);
        memset (map->bits + map->words, 0, (words - map->words) * sizeof *map->bits);
        map->words = words;
    }
    if (value)
        map->bits [word] |= (uint64_t) 1 << (fd % 64);
    else
        map->bits [word] &= ~((uint64_t) 1 << (fd % 64));
}

typedef enum { FD_CLOSED, FD_OTHER, FD_CLIENT, FD_THE_ONE } fd_kind_t;

//  The port of an IPv4 or IPv6 address, or -1 for another family.
static int
s_port (const struct sockaddr_storage *address)
{
    if (address->ss_family == AF_INET)
        return ntohs (((const struct sockaddr_in *) address)->sin_port);
    if (address->ss_family == AF_INET6)
        return ntohs (((const struct sockaddr_in6 *) address)->sin6_port);
    return -1;
}

static fd_kind_t
s_kind (int fd, const struct mg_request_info *info)
{
    struct sockaddr_storage peer, local;
    socklen_t peer_size = sizeof peer, local_size = sizeof local;
    if (getsockname (fd, (struct sockaddr *) &local, &local_size))
        return errno == EBADF? FD_CLOSED: FD_OTHER;
    if (s_port (&local) != info->server_port)
        return FD_OTHER;
    if (getpeername (fd, (struct sockaddr *) &peer, &peer_size))
        return errno == EBADF? FD_CLOSED: FD_OTHER;    //  the listener has no peer
    if (s_port (&peer) != info->remote_port)
        return FD_CLIENT;
    //  Written as civetweb writes remote_addr (getnameinfo, numeric).
    char address [NI_MAXHOST];
    return getnameinfo ((struct sockaddr *) &peer, peer_size, address, sizeof address,
                        NULL, 0, NI_NUMERICHOST) == 0
        && strcmp (address, info->remote_addr) == 0? FD_THE_ONE: FD_CLIENT;
}

//  One pass over the descriptors; trust_other skips those seen as other.
static int
s_look (const struct mg_request_info *info, int limit, bool trust_other)
{
    //  Descriptors are handed out lowest first, so past a long run of
    //  closed ones there is none left to look at.
    int closed_run = 0;
    for (int fd = 0; fd < limit && closed_run < 1024; fd++) {
        if (s_bit (&s_fds.ours, fd) || (trust_other && s_bit (&s_fds.other, fd))) {
            closed_run = 0;
            continue;
        }
        fd_kind_t kind = s_kind (fd, info);
        closed_run = kind == FD_CLOSED? closed_run + 1: 0;
        s_bit_set (&s_fds.other, fd, kind == FD_OTHER);
        if (kind == FD_THE_ONE)
            return fd;
    }
    return -1;
}

int
fds_find (const struct mg_connection *mg)
{
    const struct mg_request_info *info = mg_get_request_info (mg);
    if (!info)
        return -1;
    struct rlimit files;
    int limit = getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (rlim_t) INT_MAX
              ? (int) files.rlim_cur: 65536;
    //  (The lock is held across the look, so the bitmaps are one thread's
    //  at a time.)
    pthread_mutex_lock (&s_fds.lock);
    int found = s_look (info, limit, true);
    if (found < 0)
        found = s_look (info, limit, false);
    if (found >= 0)
        s_bit_set (&s_fds.ours, found, true);
    pthread_mutex_unlock (&s_fds.lock);
    return found;
}

void
fds_claim (int fd)
{
    pthread_mutex_lock (&s_fds.lock);
    s_bit_set (&s_fds.ours, fd, true);
    pthread_mutex_unlock (&s_fds.lock);
}

void
fds_forget (int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock (&s_fds.lock);
    s_bit_set (&s_fds.ours, fd, false);
    pthread_mutex_unlock (&s_fds.lock);
}

//  ---------------------------------------------------------------------------
//  Taking a socket over (a civetweb thread, in the ready handler)

int
fds_take (const struct mg_connection *mg)
{
    int theirs = fds_find (mg);
    if (theirs < 0)
        return -1;
    int ours = fcntl (theirs, F_DUPFD_CLOEXEC, 0);
    int pair [2] = { -1, -1 };
    if (ours < 0 || socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair)
    ||  dup2 (pair [0], theirs) < 0) {
        log_warn ("cannot take a WebSocket over from civetweb: %s", strerror (errno));
        if (ours >= 0)
            close (ours);
        if (pair [0] >= 0) {
            close (pair [0]);
            close (pair [1]);
        }
        //  Refused (ws_ready writes its close frame): civetweb's read
        //  loop must end at once, not serve it.
        shutdown (theirs, SHUT_RD);
        fds_forget (theirs);
        return -1;
    }
    close (pair [0]);
    close (pair [1]);
    fds_forget (theirs);                //  civetweb's number is no client socket now
    fds_claim (ours);
    int flags = fcntl (ours, F_GETFL);
    fcntl (ours, F_SETFL, flags | O_NONBLOCK);
    return ours;
}
