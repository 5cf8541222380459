/* udp_relay.h - a lossy UDP relay for tests (C11 and C++17, libc and pthreads only).
   The kernels the tests run on may have no netem qdisc, so a test that needs loss, duplication,
   delay and reordering between a client and a server puts this relay between them: a thread of
   the test process that forwards datagrams both ways and decides each datagram's fate with a
   seeded PRNG (one stream per direction, so that the same seed and the same datagrams in one
   direction give the same decisions whatever the other direction does).

     ur_relay *r = ur_start(&server.sa, server_len, &cfg, &relay_addr, &relay_len);
     ... the client sends to relay_addr; the server answers to whatever address it saw ...
     ur_stats s = ur_stop(r);

   Datagrams from any client go to the server (through a socket connected to it); the server's go
   to the last client address seen at the time they are sent. Each datagram, per direction:
     - lost with probability `loss` (dropped); else
     - sent twice with probability `dup` (duplicated); each copy then on its own:
     - delayed by a uniform random time in [0, delay_ms] (delayed counts those above zero); jitter
       alone can reorder datagrams, as on a real path with jitter;
     - held back with probability `reorder` when due, until the next datagram of its direction
       has gone (reordered counts those overtaken that way), or UR_HOLD_MS at most, so that a lone
       datagram is not stuck; while one is held, another is not.
   Per direction: in + duplicated == out + dropped + unsent + pending (0 once stopped); a held
   datagram that its timer sends is not counted as reordered. unsent: datagrams the
   kernel refused to send, server datagrams before any client, datagrams beyond UR_MAX_PENDING_BYTES
   waiting, and those still waiting at ur_stop. kernel_dropped: what the relay's sockets lost
   before it could read them (SO_RXQ_OVFL; 0 where that is unknown, as under qemu-user).
   Include this first in a file (it needs what -std=c11 hides), or define _GNU_SOURCE
   before any #include; the buffet headers, included first with BUFFET_IMPLEMENTATION, do that. */
#ifndef UDP_RELAY_H
#define UDP_RELAY_H

/* -std=c11 hides clock_gettime, SO_RCVBUFFORCE and friends unless asked for before the first
   libc header (gnu11 and C++ ask by default) */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#  if defined(__GLIBC__)
#    if !defined(_DEFAULT_SOURCE)
#      error "udp_relay.h: define _GNU_SOURCE before the first #include, or include udp_relay.h first"
#    endif
#  else
#    define _GNU_SOURCE 1
#  endif
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UR_HOLD_MS
#define UR_HOLD_MS 5   /* how long a datagram held back for reordering waits for one to pass it */
#endif
#ifndef UR_MAX_PENDING_BYTES
#define UR_MAX_PENDING_BYTES (64u << 20)   /* bounds memory when the peers outrun a long delay */
#endif
#ifndef UR_SOCKET_BUFFER
#define UR_SOCKET_BUFFER (4 << 20)   /* room for bursts: the relay must not add losses of its own */
#endif

typedef struct ur_config {
    uint64_t seed;
    double loss, dup, reorder; /* probabilities in [0,1], each datagram, each direction */
    unsigned delay_ms;         /* extra delay: uniform random in [0, delay_ms] per datagram (0: none) */
    int keep_order;            /* delays never reorder: a datagram is due no earlier than the one
                                  before it in its direction (a queue, not jitter); only `reorder`
                                  then reorders */
} ur_config;

/* pending: copies waiting for their time or held back (0 once stopped: those become unsent) */
typedef struct ur_count {
    uint64_t in, out, dropped, duplicated, reordered, delayed, unsent, kernel_dropped, pending;
} ur_count;

/* The totals first, then each direction's. */
typedef struct ur_stats {
    uint64_t in, out, dropped, duplicated, reordered, delayed, unsent, kernel_dropped, pending;
    ur_count to_server, to_client;
} ur_stats;

typedef struct ur_relay ur_relay;

/* Starts a relay to server (IPv4 or IPv6): it listens on 127.0.0.1 or ::1 (server's family), on a
   port the kernel picks, written to *listen_addr and *listen_len (either may be NULL). NULL on
   failure, errno set: EINVAL for a bad family or a probability outside [0,1]. */
static ur_relay *ur_start(const struct sockaddr *server, socklen_t server_len, const ur_config *cfg,
                          struct sockaddr_storage *listen_addr, socklen_t *listen_len);
/* The counts so far, as the relay thread last published them (once per wake-up, after the
   datagrams it read went out or into waiting): a test waits on them, e.g. until `in` reaches what
   it sent and nothing is pending, instead of sleeping. */
static ur_stats ur_peek(ur_relay *r);
/* Stops r (NULL: nothing), joins its thread, closes its sockets, frees it; returns what it counted.
   Datagrams still waiting are not sent (unsent). */
static ur_stats ur_stop(ur_relay *r);

/* ---- implementation ---- */

enum { UR_TO_SERVER = 0, UR_TO_CLIENT = 1 };

typedef struct ur_dgram {
    uint64_t when, seq; /* due time (CLOCK_MONOTONIC ns); seq keeps equal times in arrival order */
    int dir, hold;
    size_t len;
    unsigned char data[1];
} ur_dgram;

struct ur_relay {
    int cfd, sfd, wake[2];
    pthread_t thread;
    ur_config cfg;
    uint64_t rng[2];
    struct sockaddr_storage client;
    socklen_t client_len;
    ur_dgram **heap; /* min-heap on (when, seq) */
    size_t nheap, capheap, pending_bytes;
    uint64_t seq;
    ur_dgram *held[2];
    uint64_t held_until[2];
    uint64_t last_when[2];   /* keep_order: the latest due time given in each direction */
    ur_count c[2];
    pthread_mutex_t lock; /* guards pub */
    ur_count pub[2];
    unsigned char *buf; /* one receive buffer: 64 KiB, a datagram of any size */
};

__attribute__((unused)) static uint64_t ur_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: tiny, any seed is a good one (0 included) */
__attribute__((unused)) static uint64_t ur_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* true with probability p: a uniform double in [0,1) below p, so 0 never and 1 always */
__attribute__((unused)) static int ur_chance(uint64_t *s, double p) {
    return (double)(ur_next(s) >> 11) * (1.0 / 9007199254740992.0) < p;
}

__attribute__((unused)) static int ur_before(const ur_dgram *a, const ur_dgram *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

__attribute__((unused)) static int ur_heap_push(ur_relay *r, ur_dgram *d) {
    size_t i;
    if (r->nheap == r->capheap) {
        size_t cap = r->capheap ? r->capheap * 2 : 64;
        ur_dgram **h = (ur_dgram **)realloc(r->heap, cap * sizeof *h);
        if (!h) return -1;
        r->heap = h;
        r->capheap = cap;
    }
    i = r->nheap++;
    while (i > 0 && ur_before(d, r->heap[(i - 1) / 2])) {
        r->heap[i] = r->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    r->heap[i] = d;
    return 0;
}

__attribute__((unused)) static ur_dgram *ur_heap_pop(ur_relay *r) {
    ur_dgram *top = r->heap[0], *last = r->heap[--r->nheap];
    size_t i = 0, n = r->nheap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n) break;
        if (k + 1 < n && ur_before(r->heap[k + 1], r->heap[k])) k++;
        if (!ur_before(r->heap[k], last)) break;
        r->heap[i] = r->heap[k];
        i = k;
    }
    if (n) r->heap[i] = last;
    return top;
}

__attribute__((unused)) static void ur_free(ur_relay *r, ur_dgram *d) {
    r->pending_bytes -= d->len;
    free(d);
}

__attribute__((unused)) static void ur_send(ur_relay *r, ur_dgram *d) {
    ssize_t n;
    if (d->dir == UR_TO_SERVER) {
        n = send(r->sfd, d->data, d->len, MSG_DONTWAIT);
    } else if (r->client_len == 0) {
        n = -1;
    } else {
        n = sendto(r->cfd, d->data, d->len, MSG_DONTWAIT, (const struct sockaddr *)&r->client, r->client_len);
    }
    if (n == (ssize_t)d->len) r->c[d->dir].out++;
    else r->c[d->dir].unsent++;
    r->c[d->dir].pending--;
    ur_free(r, d);
}

/* d is due: hold it back for reordering, or send it and then the one it overtook */
__attribute__((unused)) static void ur_release(ur_relay *r, ur_dgram *d, uint64_t now) {
    int dir = d->dir;
    if (d->hold && !r->held[dir]) {
        r->held[dir] = d;
        r->held_until[dir] = now + (uint64_t)UR_HOLD_MS * 1000000u;
        return;
    }
    ur_send(r, d);
    if (r->held[dir]) {
        ur_send(r, r->held[dir]);
        r->held[dir] = NULL;
        r->c[dir].reordered++;
    }
}

/* One datagram in: its fate drawn now, its copies queued for their due times. */
__attribute__((unused)) static void ur_accept(ur_relay *r, int dir, size_t len, uint64_t now) {
    uint64_t *s = &r->rng[dir];
    ur_count *c = &r->c[dir];
    int copies, k;
    c->in++;
    if (ur_chance(s, r->cfg.loss)) {
        c->dropped++;
        return;
    }
    copies = ur_chance(s, r->cfg.dup) ? 2 : 1;
    if (copies == 2) c->duplicated++;
    for (k = 0; k < copies; k++) {
        int hold = ur_chance(s, r->cfg.reorder);
        uint64_t delay = r->cfg.delay_ms ? ur_next(s) % ((uint64_t)r->cfg.delay_ms * 1000000u + 1) : 0;
        ur_dgram *d;
        if (delay) c->delayed++;
        if (r->pending_bytes + len > UR_MAX_PENDING_BYTES ||
            !(d = (ur_dgram *)malloc(offsetof(ur_dgram, data) + (len ? len : 1)))) {
            c->unsent++;
            continue;
        }
        d->when = now + delay;
        if (r->cfg.keep_order && d->when < r->last_when[dir]) d->when = r->last_when[dir];
        r->last_when[dir] = d->when;
        d->seq = r->seq++;
        d->dir = dir;
        d->hold = hold;
        d->len = len;
        memcpy(d->data, r->buf, len);
        r->pending_bytes += len;
        if (ur_heap_push(r, d) != 0) {
            c->unsent++;
            ur_free(r, d);
        } else {
            c->pending++;
        }
    }
}

/* Reads what fd has, a batch at most (then timers get their turn). */
__attribute__((unused)) static void ur_drain(ur_relay *r, int fd, int dir) {
    int i;
    for (i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        union {
            struct cmsghdr align;
            char b[CMSG_SPACE(sizeof(uint32_t)) + 64];
        } ctl;
        struct iovec iov;
        struct msghdr m;
        struct cmsghdr *cm;
        ssize_t n;
        iov.iov_base = r->buf;
        iov.iov_len = 65536;
        memset(&m, 0, sizeof m);
        m.msg_name = &from;
        m.msg_namelen = sizeof from;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof ctl.b;
        n = recvmsg(fd, &m, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN, or an ICMP error (ECONNREFUSED while the server is not up): nothing to read */
            return;
        }
        for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
                uint32_t drops;
                memcpy(&drops, CMSG_DATA(cm), sizeof drops);
                r->c[dir].kernel_dropped = drops;   /* the socket's total so far */
            }
        if (dir == UR_TO_SERVER) {
            memcpy(&r->client, &from, sizeof from);
            r->client_len = m.msg_namelen;
        }
        ur_accept(r, dir, (size_t)n, ur_now_ns());
    }
}

__attribute__((unused)) static void *ur_thread(void *arg) {
    ur_relay *r = (ur_relay *)arg;
    for (;;) {
        struct pollfd pf[3];
        uint64_t now = ur_now_ns(), next = UINT64_MAX;
        int dir, timeout;
        while (r->nheap && r->heap[0]->when <= now) ur_release(r, ur_heap_pop(r), now);
        for (dir = 0; dir < 2; dir++)
            if (r->held[dir] && r->held_until[dir] <= now) {
                ur_send(r, r->held[dir]);
                r->held[dir] = NULL;
            }
        pthread_mutex_lock(&r->lock);
        memcpy(r->pub, r->c, sizeof r->pub);
        pthread_mutex_unlock(&r->lock);
        if (r->nheap) next = r->heap[0]->when;
        for (dir = 0; dir < 2; dir++)
            if (r->held[dir] && r->held_until[dir] < next) next = r->held_until[dir];
        /* rounded up: poll's milliseconds must not wake us early and spin */
        timeout = next == UINT64_MAX ? -1 : next - now > 1000000000u ? 1000 : (int)((next - now + 999999u) / 1000000u);
        pf[0].fd = r->wake[0];
        pf[1].fd = r->cfd;
        pf[2].fd = r->sfd;
        for (dir = 0; dir < 3; dir++) {
            pf[dir].events = POLLIN;
            pf[dir].revents = 0;
        }
        if (poll(pf, 3, timeout) < 0 && errno != EINTR) break;
        if (pf[0].revents) break;
        if (pf[1].revents) ur_drain(r, r->cfd, UR_TO_SERVER);
        if (pf[2].revents) ur_drain(r, r->sfd, UR_TO_CLIENT);
    }
    return NULL;
}

__attribute__((unused)) static void ur_close_all(ur_relay *r) {
    if (r->cfd >= 0) close(r->cfd);
    if (r->sfd >= 0) close(r->sfd);
    if (r->wake[0] >= 0) close(r->wake[0]);
    if (r->wake[1] >= 0) close(r->wake[1]);
}

__attribute__((unused)) static int ur_socket(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), big = UR_SOCKET_BUFFER, one = 1;
    if (fd < 0) return -1;
    /* FORCE passes rmem_max as root; else as much as it allows */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    (void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);   /* unknown to qemu-user: then no count */
    return fd;
}

__attribute__((unused)) static ur_relay *ur_start(const struct sockaddr *server, socklen_t server_len,
                                                  const ur_config *cfg, struct sockaddr_storage *listen_addr,
                                                  socklen_t *listen_len) {
    ur_relay *r;
    struct sockaddr_storage a;
    socklen_t alen;
    int family, err, k;
    if (!server || !cfg || (server->sa_family != AF_INET && server->sa_family != AF_INET6) ||
        !(cfg->loss >= 0 && cfg->loss <= 1) || !(cfg->dup >= 0 && cfg->dup <= 1) ||
        !(cfg->reorder >= 0 && cfg->reorder <= 1)) {
        errno = EINVAL;
        return NULL;
    }
    family = server->sa_family;
    r = (ur_relay *)calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfd = r->sfd = r->wake[0] = r->wake[1] = -1;
    r->cfg = *cfg;
    r->rng[UR_TO_SERVER] = cfg->seed;
    r->rng[UR_TO_CLIENT] = cfg->seed ^ 0x5DEECE66Dull;   /* the other direction: its own stream */
    r->buf = (unsigned char *)malloc(65536);
    memset(&a, 0, sizeof a);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        alen = (socklen_t)sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        alen = (socklen_t)sizeof *s6;
    }
    if (!r->buf || pipe(r->wake) != 0 || (r->cfd = ur_socket(family)) < 0 || (r->sfd = ur_socket(family)) < 0 ||
        bind(r->cfd, (struct sockaddr *)&a, alen) != 0 || connect(r->sfd, server, server_len) != 0)
        goto fail;
    for (k = 0; k < 2; k++)
        if (fcntl(r->wake[k], F_SETFD, FD_CLOEXEC) != 0) goto fail;
    alen = (socklen_t)sizeof a;
    if (getsockname(r->cfd, (struct sockaddr *)&a, &alen) != 0) goto fail;
    if ((errno = pthread_mutex_init(&r->lock, NULL)) != 0) goto fail;
    if ((errno = pthread_create(&r->thread, NULL, ur_thread, r)) != 0) {
        pthread_mutex_destroy(&r->lock);
        goto fail;
    }
    if (listen_addr) memcpy(listen_addr, &a, sizeof a);
    if (listen_len) *listen_len = alen;
    return r;
fail:
    err = errno;
    ur_close_all(r);
    free(r->buf);
    free(r);
    errno = err;
    return NULL;
}

__attribute__((unused)) static ur_stats ur_sum(const ur_count *to_server, const ur_count *to_client) {
    ur_stats s;
    memset(&s, 0, sizeof s);
    s.to_server = *to_server;
    s.to_client = *to_client;
#define UR_SUM(f) s.f = s.to_server.f + s.to_client.f
    UR_SUM(in); UR_SUM(out); UR_SUM(dropped); UR_SUM(duplicated); UR_SUM(reordered);
    UR_SUM(delayed); UR_SUM(unsent); UR_SUM(kernel_dropped); UR_SUM(pending);
#undef UR_SUM
    return s;
}

__attribute__((unused)) static ur_stats ur_peek(ur_relay *r) {
    ur_count c[2];
    pthread_mutex_lock(&r->lock);
    memcpy(c, r->pub, sizeof c);
    pthread_mutex_unlock(&r->lock);
    return ur_sum(&c[0], &c[1]);
}

__attribute__((unused)) static ur_stats ur_stop(ur_relay *r) {
    ur_stats s;
    int dir;
    char one = 1;
    if (!r) {
        memset(&s, 0, sizeof s);
        return s;
    }
    while (write(r->wake[1], &one, 1) < 0 && errno == EINTR) {}
    pthread_join(r->thread, NULL);
    while (r->nheap) {
        ur_dgram *d = ur_heap_pop(r);
        r->c[d->dir].unsent++;
        r->c[d->dir].pending--;
        ur_free(r, d);
    }
    for (dir = 0; dir < 2; dir++)
        if (r->held[dir]) {
            r->c[dir].unsent++;
            r->c[dir].pending--;
            ur_free(r, r->held[dir]);
        }
    s = ur_sum(&r->c[UR_TO_SERVER], &r->c[UR_TO_CLIENT]);
    pthread_mutex_destroy(&r->lock);
    ur_close_all(r);
    free(r->heap);
    free(r->buf);
    free(r);
    return s;
}

#endif /* UDP_RELAY_H */
