#define BUFFET_NET_URING 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"

/* test_net_uring.c - the io_uring receive of buffet_net.h (>>uring): a UDP sink over loopback
   (every datagram byte-exact, exactly once), a TCP echo whose packets go back out by reference
   in a chain until the peer's close ends the receive, a ring of 4 buffers starved and re-armed,
   io_uring refused by a seccomp filter (ENOSYS, EPERM) giving BUFFET_ERR_UNSUPPORTED, bad
   input and cancel, and destroy with receives armed and completions not taken; sends of chains
   (plain and zerocopy) over TCP (more slices than one sendmsg takes, more bytes than the socket
   buffers: cut short and submitted again, two sends on a socket in order), a reset peer, UDP
   datagrams, a UNIX socket refusing zerocopy, refused input, the limit of sends in flight and
   destroy with sends in flight, every buffer released exactly once (WRAP buffers count their
   releases; heap ones come from the debug allocator). Buffers come
   from a packet pool whose bookkeeping sits on a debug allocator: every test ends with every
   buffer back in the pool and nothing live. Where io_uring is missing (qemu-user, an old or
   locked-down kernel) the ring tests skip. C11 and C++17. */

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int small;   /* valgrind, qemu: fewer datagrams and bytes */

/* ---- fixture: a debug allocator under a pool of 2048-byte buffers, and a cache (64) ---- */
typedef struct fx {
    buffet_debug *dbg;
    buffet_allocator a;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
} fx;

static void fx_open(fx *f, size_t max) {
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    memset(f, 0, sizeof *f);
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&f->dbg, &dd) == BUFFET_OK);
    f->a = buffet_debug_allocator(f->dbg);
    memset(&pd, 0, sizeof pd);
    pd.name = "uring";
    pd.class_sizes[0] = 2048;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = max < 64 ? max : 64;
    pd.max = max;
    pd.no_huge_pages = true;
    pd.allocator = f->a;
    BT_CHECK(buffet_pkt_pool_create(&f->pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&f->cache, f->pool, 0) == BUFFET_OK);
}

static size_t fx_in_use(fx *f) { return nu_pool_in_use(f->pool, f->cache); }

static void fx_close(fx *f) {
    buffet_debug_stats st;
    BT_CHECK(fx_in_use(f) == 0);   /* every buffer came back, the ring's included */
    buffet_pkt_cache_destroy(f->cache);
    buffet_pkt_pool_destroy(f->pool);
    st = buffet_debug_get_stats(f->dbg);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(f->dbg, stderr);
    buffet_debug_destroy(f->dbg);
}

/* A ring on f's class 0 with `buffers` buffers (0: the default). 1: made; 0: io_uring is not
   here (the caller closes f and skips); -1: failed (checked). */
static int ring_open(fx *f, buffet_net_uring **u, uint32_t buffers) {
    buffet_net_uring_desc d;
    buffet_result r;
    memset(&d, 0, sizeof d);
    d.cache = f->cache;
    d.cls = 0;
    d.buffers = buffers;
    d.group = 3;
    *u = NULL;
    r = buffet_net_uring_create(u, &d);
    if (r == BUFFET_ERR_UNSUPPORTED) return 0;
    BT_CHECK(r == BUFFET_OK && *u != NULL);
    return r == BUFFET_OK ? 1 : -1;
}
#define RING_OR_SKIP(f, u, n)                                                                   \
    do {                                                                                      \
        int ok_ = ring_open(f, u, n);                                                         \
        if (ok_ <= 0) {                                                                       \
            fx_close(f);                                                                      \
            if (ok_ == 0) BT_SKIP("io_uring", "io_uring unsupported here (kernel, sysctl, sandbox or qemu-user)"); \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
/* Loops that wait for the kernel give up after this long without progress: a hang guard, not
   a performance bound. */
#define STALL_MS 5000u

/* A blocking UDP socket bound to 127.0.0.1 (port from the kernel), room for bursts. */
static int udp_bound(struct sockaddr_in *a) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t l = sizeof *a;
    int big = 4 << 20;
    if (fd < 0) return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)a, sizeof *a) != 0 || getsockname(fd, (struct sockaddr *)a, &l) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- datagrams: index i in the first two bytes (low byte first), then a pattern of (i, j) ---- */
static unsigned char pat(unsigned i, size_t j) { return (unsigned char)(i * 37u + j * 11u + (j >> 7)); }

/* Lengths 1..1400: only datagram 0 has length 1 (its one byte, 0, names it). */
static size_t dg_len(unsigned i, size_t fixed) { return fixed ? fixed : i == 0 ? 1 : 2 + (i * 613u) % 1399u; }

static bool dg_send(int tx, const struct sockaddr_in *to, unsigned i, size_t fixed) {
    unsigned char b[1400];
    size_t len = dg_len(i, fixed), j;
    for (j = 0; j < len; j++) b[j] = j == 0 ? (unsigned char)(i & 0xff) : j == 1 ? (unsigned char)(i >> 8) : pat(i, j);
    return sendto(tx, b, len, 0, (const struct sockaddr *)to, sizeof *to) == (ssize_t)len;
}

/* Checks one event against datagram stream `fixed` on fd/tag and marks it in seen[0..n); the
   packet stays the caller's. Returns whether it was a datagram not seen before, whole and exact. */
static bool dg_check(const buffet_net_uring_event *e, int fd, uint64_t tag, unsigned char *seen, unsigned n,
                     size_t fixed) {
    const unsigned char *d;
    unsigned i;
    size_t j, len;
    bool ok;
    BT_CHECK(e->result == BUFFET_OK && e->tag == tag && e->fd == fd && e->pkt != NULL);
    if (e->result != BUFFET_OK || !e->pkt) return false;
    len = e->pkt->len;
    d = (const unsigned char *)buffet_pkt_data(e->pkt);
    ok = len >= 1 && e->pkt->pkt_len == len && e->pkt->next == NULL && e->pkt->nb_segs == 1;
    i = ok ? (unsigned)d[0] | (len > 1 ? (unsigned)d[1] << 8 : 0u) : n;
    ok = ok && i < n && !seen[i] && len == dg_len(i, fixed);
    for (j = 2; ok && j < len; j++) ok = d[j] == pat(i, j);
    if (ok) seen[i] = 1;
    return ok;
}

/* dg_check, then the packet freed. */
static bool dg_take(fx *f, const buffet_net_uring_event *e, int fd, uint64_t tag, unsigned char *seen, unsigned n,
                    size_t fixed) {
    bool ok = dg_check(e, fd, tag, seen, n, fixed);
    if (e->pkt) buffet_pkt_free(f->cache, e->pkt);
    return ok;
}

/* ---- 1. UDP sink over loopback ---- */
static void test_udp_sink(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[32];
    buffet_net_uring_stats st;
    struct sockaddr_in ra, ta;
    unsigned n = small ? 40 : 200, sent = 0, got = 0, good = 0, i;
    unsigned char seen[200];
    uint64_t bytes = 0, last;
    int rx, tx;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    rx = udp_bound(&ra);
    tx = udp_bound(&ta);
    BT_CHECK(rx >= 0 && tx >= 0);
    BT_CHECK(buffet_net_uring_recv(u, rx, 7) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_get_stats(u).receives == 1);
    memset(seen, 0, sizeof seen);
    for (i = 0; i < n; i++) bytes += dg_len(i, 0);
    last = now_ms();
    while (got < n && now_ms() - last < STALL_MS) {
        size_t k, m;
        /* At most 24 in flight: the socket's queue never overflows, so none is dropped, and the
           ring (64) holds them and the 32 a wait takes, whose buffers come back at the next wait:
           it never starves. */
        while (sent < n && sent - got < 24) BT_CHECK(dg_send(tx, &ra, sent++, 0));
        m = buffet_net_uring_wait(u, ev, 32, 100);
        BT_CHECK(m <= 32);
        for (k = 0; k < m; k++) good += dg_take(&f, &ev[k], rx, 7, seen, n, 0);
        got += (unsigned)m;
        if (m) last = now_ms();
    }
    BT_CHECK(got == n && good == n);
    BT_CHECK(buffet_net_uring_wait(u, ev, 32, 50) == 0);   /* nothing more, nothing twice */
    st = buffet_net_uring_get_stats(u);
    BT_CHECK(st.packets == n && st.bytes == bytes && st.receives == 1 && st.starved == 0);
    BT_CHECK(st.in_ring >= 1 && st.in_ring <= 64);
    buffet_net_uring_destroy(u);
    close(rx);
    close(tx);
    fx_close(&f);
}

/* Packets freed on another thread: their buffers go back to the pool through that thread's
   cache (a small one, so it spills), and the ring, which takes buffers from the pool at every
   wait, keeps receiving. With 24 buffers in the pool and 8 in the ring, n datagrams come
   through only if the buffers freed elsewhere come back. Each wait's packets go to the other
   thread through a pipe, and the next wait comes after it said it freed them (valgrind runs
   one thread at a time, and a thread that is not scheduled would look like buffers lost). */
typedef struct far_free {
    buffet_pkt_pool *pool;
    int rd, ack;
    unsigned freed;
} far_free;
static void *far_free_thread(void *arg) {
    far_free *j = (far_free *)arg;
    buffet_pkt_cache *c = NULL;
    buffet_pkt *p;
    if (buffet_pkt_cache_create(&c, j->pool, 4) != BUFFET_OK) return NULL;
    while (read(j->rd, &p, sizeof p) == (ssize_t)sizeof p) {
        char one = 1;
        buffet_pkt_free(c, p);
        j->freed++;
        if (write(j->ack, &one, 1) != 1) break;
    }
    buffet_pkt_cache_destroy(c);
    return NULL;
}
static void test_freed_elsewhere(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[8];
    struct sockaddr_in ra, ta;
    unsigned n = small ? 100 : 400, sent = 0, got = 0, good = 0, freed = 0;
    unsigned char seen[400];
    int rx, tx, to[2], back[2];
    uint64_t last;
    pthread_t t;
    far_free j;
    fx_open(&f, 24);
    RING_OR_SKIP(&f, &u, 8);
    rx = udp_bound(&ra);
    tx = udp_bound(&ta);
    BT_CHECK(rx >= 0 && tx >= 0 && pipe(to) == 0 && pipe(back) == 0);
    BT_CHECK(buffet_net_uring_recv(u, rx, 9) == BUFFET_OK);
    memset(&j, 0, sizeof j);
    j.pool = f.pool;
    j.rd = to[0];
    j.ack = back[1];
    BT_CHECK(pthread_create(&t, NULL, far_free_thread, &j) == 0);
    memset(seen, 0, sizeof seen);
    last = now_ms();
    while (got < n && now_ms() - last < STALL_MS) {
        size_t m, k;
        while (sent < n && sent - got < 6) BT_CHECK(dg_send(tx, &ra, sent++, 100));
        m = buffet_net_uring_wait(u, ev, 8, 100);
        for (k = 0; k < m; k++) {
            good += dg_check(&ev[k], rx, 9, seen, n, 100);
            if (ev[k].pkt && write(to[1], &ev[k].pkt, sizeof ev[k].pkt) == (ssize_t)sizeof ev[k].pkt) freed++;
        }
        for (k = 0; k < m; k++) {   /* freed over there before the next wait */
            char one;
            BT_CHECK(read(back[0], &one, 1) == 1);
        }
        got += (unsigned)m;
        if (m) last = now_ms();
    }
    close(to[1]);
    pthread_join(t, NULL);
    close(to[0]);
    close(back[0]);
    close(back[1]);
    BT_CHECK(got == n && good == n && freed == n && j.freed == n);
    BT_CHECK(buffet_net_uring_get_stats(u).packets == n);
    buffet_net_uring_destroy(u);
    close(rx);
    close(tx);
    fx_close(&f);
}

/* ---- 2. TCP echo: packets back out by reference ---- */
static unsigned char tcp_byte(size_t i) { return (unsigned char)(i * 131u + (i >> 10) * 7u + (i >> 17)); }

/* What a hostile or careless peer sends a UDP receive: an empty datagram (a 0-byte RECV would
   end a multishot: the receive must go on), one far larger than the buffer (reported with what
   fitted, its real length and TRUNC, never cut silently), then an ordinary one; each carries
   the sender's address in its metadata. */
static void test_udp_edges(void) {
    static unsigned char big[60000];
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[8];
    struct sockaddr_in ra, ta;
    size_t got = 0, k;
    int rx, tx, r;
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    rx = udp_bound(&ra);
    tx = udp_bound(&ta);
    BT_CHECK(rx >= 0 && tx >= 0 && buffet_net_uring_recv(u, rx, 5) == BUFFET_OK);
    memset(big, 0x5a, sizeof big);
    BT_CHECK(sendto(tx, big, 0, 0, (const struct sockaddr *)&ra, sizeof ra) == 0);
    BT_CHECK(sendto(tx, big, sizeof big, 0, (const struct sockaddr *)&ra, sizeof ra) == (ssize_t)sizeof big);
    BT_CHECK(dg_send(tx, &ra, 7, 300));
    last = now_ms();
    while (got < 3 && now_ms() - last < STALL_MS) {
        size_t m = buffet_net_uring_wait(u, ev, 8, 100);
        for (k = 0; k < m; k++, got++) {
            buffet_net_meta *meta = ev[k].pkt ? buffet_net_meta_of(ev[k].pkt) : NULL;
            BT_CHECK(ev[k].tag == 5 && ev[k].pkt != NULL && meta != NULL);
            if (!ev[k].pkt || !meta) continue;
            BT_CHECK(meta->peer.in4.sin_family == AF_INET && meta->peer.in4.sin_port == ta.sin_port &&
                     meta->peer.in4.sin_addr.s_addr == ta.sin_addr.s_addr);
            if (got == 0) {
                BT_CHECK(ev[k].result == BUFFET_OK && ev[k].pkt->len == 0 && meta->wire_len == 0);
            } else if (got == 1) {
                const unsigned char *d = (const unsigned char *)buffet_pkt_data(ev[k].pkt);
                BT_CHECK(ev[k].result == BUFFET_ERR_TRUNCATED && (meta->flags & BUFFET_NET_META_TRUNC));
                BT_CHECK(meta->wire_len == sizeof big && ev[k].pkt->len > 0 && ev[k].pkt->len < 2048);
                BT_CHECK(d[0] == 0x5a && d[ev[k].pkt->len - 1] == 0x5a);
            } else {
                unsigned char seen[8] = {0};
                buffet_net_uring_event e = ev[k];
                BT_CHECK(!(meta->flags & BUFFET_NET_META_TRUNC) && meta->wire_len == 300);
                BT_CHECK(dg_take(&f, &e, rx, 5, seen, 8, 300) && seen[7]);
                continue;   /* dg_take freed it */
            }
            buffet_pkt_free(f.cache, ev[k].pkt);
        }
        if (m) last = now_ms();
    }
    BT_CHECK(got == 3);
    BT_CHECK(buffet_net_uring_get_stats(u).receives == 1);   /* none of them ended the receive */
    r = buffet_net_uring_cancel(u, rx);
    BT_CHECK(r == BUFFET_OK);
    buffet_net_uring_destroy(u);
    if (rx >= 0) close(rx);
    if (tx >= 0) close(tx);
    fx_close(&f);
}

/* The client's side, one step: send a chunk of varied size (non-blocking) while bytes are left,
   then read what came back and check it. Returns false on a wrong byte or an early end. One
   thread plays client and server: under valgrind, io_uring completions that another thread's
   sends cause never arrive (valgrind 3.19), and one thread tests the same paths. */
typedef struct client {
    int fd;
    size_t total, sent, back;
    unsigned k;
} client;

static bool client_step(client *c) {
    static unsigned char out[16384], in[65536];
    ssize_t r, j;
    if (c->sent < c->total) {
        size_t n = 1 + (c->k++ * 7919u) % sizeof out, i;
        ssize_t w;
        if (n > c->total - c->sent) n = c->total - c->sent;
        for (i = 0; i < n; i++) out[i] = tcp_byte(c->sent + i);
        w = send(c->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) c->sent += (size_t)w;
    }
    r = recv(c->fd, in, sizeof in, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return false;
    for (j = 0; j < r; j++)
        if (in[j] != tcp_byte(c->back++)) return false;
    return true;
}

static void test_tcp_echo(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[32];
    buffet_net_uring_stats st;
    buffet_net_addr a;
    buffet_chain ch;
    client cl;
    size_t echoed = 0, was_sent = 0, was_back = 0;
    int l, srv, closed = 0, others = 0, bad = 0;
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    memset(&cl, 0, sizeof cl);
    cl.total = small ? (128u << 10) : (1u << 20);
    l = nu_tcp_listen("127.0.0.1", &a);
    cl.fd = l >= 0 ? nu_tcp_connect(&a) : -1;
    srv = cl.fd >= 0 ? accept(l, NULL, NULL) : -1;
    BT_CHECK(l >= 0 && cl.fd >= 0 && srv >= 0);
    if (l >= 0) close(l);
    if (srv < 0) {
        if (cl.fd >= 0) close(cl.fd);
        buffet_net_uring_destroy(u);
        fx_close(&f);
        return;
    }
    BT_CHECK(fcntl(srv, F_SETFL, fcntl(srv, F_GETFL) | O_NONBLOCK) == 0);
    BT_CHECK(buffet_net_uring_recv(u, srv, 11) == BUFFET_OK);
    BT_CHECK(buffet_chain_init(&ch, f.a) == BUFFET_OK);
    last = now_ms();
    while (!closed && now_ms() - last < STALL_MS) {
        size_t m, k;
        if (cl.fd >= 0 && !client_step(&cl)) bad = 1;
        if (cl.fd >= 0 && (bad || cl.back == cl.total)) {   /* all back: the close ends the receive */
            close(cl.fd);
            cl.fd = -1;
        }
        m = buffet_net_uring_wait(u, ev, 32, 10);
        for (k = 0; k < m; k++) {
            BT_CHECK(ev[k].tag == 11 && ev[k].fd == srv);
            if (ev[k].result == BUFFET_OK && ev[k].pkt) {
                BT_CHECK(ev[k].pkt->len >= 1 && ev[k].pkt->pkt_len == ev[k].pkt->len);
                BT_CHECK(buffet_pkt_to_chain(ev[k].pkt, &ch) == BUFFET_OK);
                echoed += ev[k].pkt->pkt_len;
                buffet_pkt_free(f.cache, ev[k].pkt);
            } else if (ev[k].result == BUFFET_ERR_CLOSED) {
                BT_CHECK(ev[k].pkt == NULL);
                closed = 1;
            } else {
                others++;
                if (ev[k].pkt) buffet_pkt_free(f.cache, ev[k].pkt);
            }
        }
        /* non-blocking: what the socket does not take now stays in the chain for the next round */
        if (buffet_chain_len(&ch) && !closed) {
            buffet_result r = buffet_net_send_chain(srv, &ch, 0, NULL);
            BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
        }
        if (m || cl.sent != was_sent || cl.back != was_back) last = now_ms();   /* progress */
        was_sent = cl.sent;
        was_back = cl.back;
    }
    if (cl.fd >= 0) close(cl.fd);
    BT_CHECK(!bad && cl.sent == cl.total && cl.back == cl.total);
    BT_CHECK(echoed == cl.total);
    BT_CHECK(closed == 1 && others == 0);
    st = buffet_net_uring_get_stats(u);
    BT_CHECK(st.bytes == cl.total && st.packets >= 1 && st.receives == 0);   /* the close ended it */
    buffet_chain_deinit(&ch);
    buffet_net_uring_destroy(u);
    close(srv);
    fx_close(&f);
}

/* A wait without limit while the ring is starved: each call must come back with datagrams. The
   kernel ends a starved receive with a completion that makes no event; a wait that found only
   that one and then slept on the ring, with no receive armed, would sleep for ever. Run in a
   child with an alarm, so that such a hang fails the test instead of stopping the suite. */
static void test_wait_unbounded_starved(void) {
    pid_t pid;
    int status = 0;
    fx f;
    buffet_net_uring *u;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 4);   /* io_uring is here: the child's ring will be made too */
    buffet_net_uring_destroy(u);
    u = NULL;
    pid = fork();
    BT_CHECK(pid >= 0);
    if (pid == 0) {
        buffet_net_uring_event ev[8];
        struct sockaddr_in ra, ta;
        unsigned got = 0, i, calls = 0;
        int rx = udp_bound(&ra), tx = udp_bound(&ta), ok = rx >= 0 && tx >= 0;
        alarm(60);
        for (i = 0; ok && i < 24; i++) ok = dg_send(tx, &ra, i, 100);
        ok = ok && ring_open(&f, &u, 4) == 1 && buffet_net_uring_recv(u, rx, 1) == BUFFET_OK;
        while (ok && got < 24 && calls++ < 1000) {
            size_t m = buffet_net_uring_wait(u, ev, 4, -1), k;   /* 4 a call: the ring runs dry between calls */
            for (k = 0; k < m; k++) {
                ok = ok && ev[k].result == BUFFET_OK && ev[k].pkt && ev[k].pkt->len == 100;
                if (ev[k].pkt) buffet_pkt_free(f.cache, ev[k].pkt);
            }
            got += (unsigned)m;
        }
        /* everything given back before the exit: valgrind checks the child for leaks too */
        if (u) buffet_net_uring_destroy(u);
        if (rx >= 0) close(rx);
        if (tx >= 0) close(tx);
        ok = ok && nu_pool_in_use(f.pool, f.cache) == 0;
        buffet_pkt_cache_destroy(f.cache);
        buffet_pkt_pool_destroy(f.pool);
        buffet_debug_destroy(f.dbg);
        _exit(ok && got == 24 ? 0 : 1);
    }
    if (pid > 0) BT_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx_close(&f);
}

/* ---- 3. a ring of 4 buffers starves and is re-armed ---- */
static void test_starvation(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[32];
    buffet_net_uring_stats st;
    buffet_net_uring_desc d;
    buffet_pkt *held[64];
    struct sockaddr_in ra, ta;
    unsigned char seen[64];
    unsigned nheld = 0, got = 0, good = 0, i;
    int rx, tx;
    uint64_t last, starved = 0;
    /* 8 buffers in all: held packets empty the pool, so the ring cannot be refilled. */
    fx_open(&f, 8);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    d.buffers = 16;
    u = NULL;
    {
        buffet_result r = buffet_net_uring_create(&u, &d);
        if (r == BUFFET_ERR_UNSUPPORTED) {
            fx_close(&f);
            BT_SKIP("io_uring", "io_uring unsupported here (kernel, sysctl, sandbox or qemu-user)");
        }
        BT_CHECK(r == BUFFET_ERR_EXHAUSTED && u == NULL);   /* 16 buffers from a pool of 8 */
        if (r == BUFFET_OK) buffet_net_uring_destroy(u);
    }
    BT_CHECK(fx_in_use(&f) == 0);
    RING_OR_SKIP(&f, &u, 4);
    rx = udp_bound(&ra);
    tx = udp_bound(&ta);
    BT_CHECK(rx >= 0 && tx >= 0);
    /* Queued before the receive is armed: the kernel meets 64 with 4 buffers at once. */
    for (i = 0; i < 64; i++) BT_CHECK(dg_send(tx, &ra, i, 100));
    BT_CHECK(buffet_net_uring_recv(u, rx, 5) == BUFFET_OK);
    memset(seen, 0, sizeof seen);
    last = now_ms();
    while (starved == 0 && now_ms() - last < STALL_MS) {
        size_t m = buffet_net_uring_wait(u, ev, 32, 100), k;
        for (k = 0; k < m; k++) {
            BT_CHECK(ev[k].result == BUFFET_OK && ev[k].pkt != NULL && nheld < 64);
            if (ev[k].pkt && nheld < 64) held[nheld++] = ev[k].pkt;
        }
        starved = buffet_net_uring_get_stats(u).starved;
        if (m) last = now_ms();
    }
    BT_CHECK(starved >= 1);
    BT_CHECK(nheld >= 1 && nheld < 64);
    /* Checked (and freed) only now: the pool gets its buffers back, the ring its refill. */
    for (i = 0; i < nheld; i++) {
        buffet_net_uring_event e;
        memset(&e, 0, sizeof e);
        e.result = BUFFET_OK;
        e.tag = 5;
        e.fd = rx;
        e.pkt = held[i];
        good += dg_take(&f, &e, rx, 5, seen, 64, 100);
    }
    got = nheld;
    last = now_ms();
    while (got < 64 && now_ms() - last < STALL_MS) {
        size_t m = buffet_net_uring_wait(u, ev, 32, 100), k;
        for (k = 0; k < m; k++) good += dg_take(&f, &ev[k], rx, 5, seen, 64, 100);
        got += (unsigned)m;
        if (m) last = now_ms();
    }
    BT_CHECK(got == 64 && good == 64);
    BT_CHECK(buffet_net_uring_wait(u, ev, 32, 50) == 0);
    st = buffet_net_uring_get_stats(u);
    BT_CHECK(st.starved >= 1 && st.rearmed >= 1 && st.packets == 64 && st.bytes == 6400);
    BT_CHECK(st.receives == 1 && st.in_ring <= 4);
    buffet_net_uring_destroy(u);
    close(rx);
    close(tx);
    fx_close(&f);
}

/* ---- 4. io_uring refused by seccomp ---- */
#if defined(__x86_64__)
#define TNU_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TNU_ARCH AUDIT_ARCH_AARCH64
#endif

#if defined(TNU_ARCH) && defined(__NR_io_uring_setup)
/* In a child: io_uring_setup fails with err; create must say UNSUPPORTED and leave nothing.
   Exit status: 0 as expected, 77 no seccomp here, else which check failed. */
static int refused_child(int err) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)TNU_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, (uint32_t)SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)__NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, (uint32_t)SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, (uint32_t)SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp;
    static char sentinel;
    buffet_net_uring *u = (buffet_net_uring *)(void *)&sentinel;
    buffet_net_uring_desc d;
    fx f;
    buffet_result r;
    fp.len = (unsigned short)(sizeof prog / sizeof prog[0]);
    fp.filter = prog;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) != 0) return 77;
    if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != err) return 76;   /* the filter works */
    fx_open(&f, 2048);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    r = buffet_net_uring_create(&u, &d);
    if (r != BUFFET_ERR_UNSUPPORTED) return 1;
    if (u != NULL) return 2;
    if (fx_in_use(&f) != 0) return 3;
    fx_close(&f);
    return bt_cur_failed ? 4 : 0;
}
#endif

static void test_unsupported(void) {
#if defined(TNU_ARCH) && defined(__NR_io_uring_setup)
    static const int errs[2] = {ENOSYS, EPERM};
    int k;
    if (bt_mode("aarch64")) BT_SKIP("seccomp", "qemu-user does not apply seccomp filters to the guest");
    for (k = 0; k < 2; k++) {
        int status = -1;
        pid_t pid;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        BT_CHECK(pid >= 0);
        if (pid == 0) _exit(refused_child(errs[k]));
        if (pid < 0) return;
        BT_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) BT_SKIP("seccomp", "seccomp filters refused here");
        if (WEXITSTATUS(status) != 0) fprintf(stderr, "child (errno %d): status %d\n", errs[k], WEXITSTATUS(status));
        BT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
#else
    BT_SKIP("seccomp", "no seccomp architecture or __NR_io_uring_setup known for this target");
#endif
}

/* ---- 5. bad input, a closed descriptor, cancel ---- */
static void test_bad_input(void) {
    fx f;
    buffet_net_uring *u, *v;
    buffet_net_uring_desc d;
    buffet_net_uring_event ev[8];
    buffet_net_uring_stats zs;
    struct sockaddr_in ra, ta;
    static const uint32_t bad_buffers[] = {3, 65536, 100};
    unsigned i;
    int rx, tx, dead, r;
    uint64_t last;
    bool seen = false;
    fx_open(&f, 2048);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    v = NULL;
    BT_CHECK(buffet_net_uring_create(NULL, &d) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_create(&v, NULL) == BUFFET_ERR_INVALID && v == NULL);
    d.cache = NULL;
    BT_CHECK(buffet_net_uring_create(&v, &d) == BUFFET_ERR_INVALID && v == NULL);
    d.cache = f.cache;
    d.cls = 1;   /* the pool has one data class */
    BT_CHECK(buffet_net_uring_create(&v, &d) == BUFFET_ERR_INVALID && v == NULL);
    d.cls = 0;
    for (i = 0; i < sizeof bad_buffers / sizeof bad_buffers[0]; i++) {
        d.buffers = bad_buffers[i];
        BT_CHECK(buffet_net_uring_create(&v, &d) == BUFFET_ERR_INVALID && v == NULL);
    }
    d.buffers = 0;
    d.entries = 8192;
    BT_CHECK(buffet_net_uring_create(&v, &d) == BUFFET_ERR_INVALID && v == NULL);
    BT_CHECK(fx_in_use(&f) == 0);
    /* NULL ring */
    zs = buffet_net_uring_get_stats(NULL);
    BT_CHECK(zs.in_ring == 0 && zs.receives == 0 && zs.packets == 0 && zs.bytes == 0 && zs.starved == 0 &&
             zs.rearmed == 0 && zs.refill_failures == 0);
    buffet_net_uring_destroy(NULL);
    BT_CHECK(buffet_net_uring_recv(NULL, 0, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_cancel(NULL, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_wait(NULL, ev, 8, 0) == 0);
    RING_OR_SKIP(&f, &u, 0);
    rx = udp_bound(&ra);
    tx = udp_bound(&ta);
    BT_CHECK(rx >= 0 && tx >= 0);
    BT_CHECK(buffet_net_uring_recv(u, -1, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_cancel(u, rx) == BUFFET_ERR_INVALID);   /* not armed */
    BT_CHECK(buffet_net_uring_recv(u, rx, 1) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_recv(u, rx, 2) == BUFFET_ERR_INVALID);   /* armed already */
    BT_CHECK(buffet_net_uring_wait(u, NULL, 8, 0) == 0);
    BT_CHECK(buffet_net_uring_wait(u, ev, 0, 0) == 0);
    BT_CHECK(buffet_net_uring_wait(u, ev, 8, 20) == 0);   /* nothing sent */
    /* Cancelled: its end is no event, and what arrives next stays in the socket. */
    BT_CHECK(buffet_net_uring_cancel(u, rx) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_get_stats(u).receives == 0);
    BT_CHECK(buffet_net_uring_cancel(u, rx) == BUFFET_ERR_INVALID);
    BT_CHECK(dg_send(tx, &ra, 9, 100));
    for (i = 0; i < 3; i++) BT_CHECK(buffet_net_uring_wait(u, ev, 8, 50) == 0);
    {
        unsigned char b[200];
        BT_CHECK(recv(rx, b, sizeof b, MSG_DONTWAIT) == 100 && b[0] == 9);
    }
    /* Armed again after the cancel: the next datagram comes as an event. */
    BT_CHECK(buffet_net_uring_recv(u, rx, 3) == BUFFET_OK);
    BT_CHECK(dg_send(tx, &ra, 10, 100));
    last = now_ms();
    while (!seen && now_ms() - last < STALL_MS) {
        size_t m = buffet_net_uring_wait(u, ev, 8, 100), k;
        for (k = 0; k < m; k++) {
            unsigned char s[16];
            memset(s, 0, sizeof s);
            BT_CHECK(dg_take(&f, &ev[k], rx, 3, s, 16, 100) && s[10]);
            seen = true;
        }
    }
    BT_CHECK(seen);
    /* A closed descriptor: refused at once, or an event that ends the receive with EBADF. */
    dead = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    BT_CHECK(dead >= 0);
    close(dead);
    r = buffet_net_uring_recv(u, dead, 4);
    BT_CHECK(r == BUFFET_OK || r == BUFFET_ERR_INVALID || r == BUFFET_ERR_SYSTEM);
    if (r == BUFFET_OK) {
        bool ended = false;
        last = now_ms();
        while (!ended && now_ms() - last < STALL_MS) {
            size_t m = buffet_net_uring_wait(u, ev, 8, 100), k;
            for (k = 0; k < m; k++) {
                BT_CHECK(ev[k].fd == dead && ev[k].tag == 4 && ev[k].pkt == NULL);
                BT_CHECK(ev[k].result == BUFFET_ERR_SYSTEM && ev[k].error == EBADF);
                if (ev[k].pkt) buffet_pkt_free(f.cache, ev[k].pkt);
                ended = true;
            }
        }
        BT_CHECK(ended);
    }
    BT_CHECK(buffet_net_uring_get_stats(u).receives == 1);   /* rx's only */
    buffet_net_uring_destroy(u);
    close(rx);
    close(tx);
    fx_close(&f);
}

/* ---- 6. destroy with receives armed and completions not taken ---- */
static void test_destroy_armed(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[5];
    struct sockaddr_in ra, rb, ta;
    unsigned char seen_a[32], seen_b[32];
    buffet_pkt *kept = NULL;
    unsigned i, taken = 0;
    int a, b, tx;
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    a = udp_bound(&ra);
    b = udp_bound(&rb);
    tx = udp_bound(&ta);
    BT_CHECK(a >= 0 && b >= 0 && tx >= 0);
    BT_CHECK(buffet_net_uring_recv(u, a, 1) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_recv(u, b, 2) == BUFFET_OK);
    for (i = 0; i < 20; i++) {
        BT_CHECK(dg_send(tx, &ra, i, 0));
        BT_CHECK(dg_send(tx, &rb, i, 0));
    }
    memset(seen_a, 0, sizeof seen_a);
    memset(seen_b, 0, sizeof seen_b);
    last = now_ms();
    /* A few of the 40, the first kept past destroy (a packet is the caller's, not the ring's). */
    while (taken < 5 && now_ms() - last < STALL_MS) {
        size_t m = buffet_net_uring_wait(u, ev, 5 - taken, 100), k;
        for (k = 0; k < m; k++) {
            BT_CHECK(ev[k].result == BUFFET_OK && ev[k].pkt != NULL && (ev[k].fd == a || ev[k].fd == b));
            if (!kept && ev[k].pkt) {
                kept = ev[k].pkt;
                continue;
            }
            if (ev[k].pkt) BT_CHECK(dg_take(&f, &ev[k], ev[k].fd, ev[k].fd == a ? 1 : 2,
                                            ev[k].fd == a ? seen_a : seen_b, 32, 0));
        }
        taken += (unsigned)m;
        if (m) last = now_ms();
    }
    BT_CHECK(taken == 5 && kept != NULL);
    BT_CHECK(buffet_net_uring_get_stats(u).receives == 2);
    buffet_net_uring_destroy(u);
    /* The descriptors are the caller's: still open. */
    BT_CHECK(fcntl(a, F_GETFD) != -1 && fcntl(b, F_GETFD) != -1);
    if (kept) {
        BT_CHECK(kept->len >= 1 && kept->pkt_len == kept->len);
        buffet_pkt_free(f.cache, kept);
    }
    close(a);
    close(b);
    close(tx);
    fx_close(&f);   /* the undelivered completions' buffers and the ring's are back too */
}

/* ---- 7. sends: chains out through the ring ---- */

/* WRAP buffers over the test's own memory, each counting its releases: every one must be
   released exactly once, and (zerocopy) not before its send's event. */
#define WS_MAX 8
typedef struct wrapset {
    unsigned char *mem[WS_MAX];
    unsigned rel[WS_MAX];
    unsigned n;
} wrapset;

static void ws_release(void *user, void *data, size_t size) {
    (void)data;
    (void)size;
    (*(unsigned *)user)++;
}

/* A WRAP buffer of size bytes (malloc'd: the debug allocator need not see it), release counted in
   ws->rel[ws->n]. NULL on failure (checked). */
static buffet_buf *ws_buf(wrapset *ws, size_t size) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    unsigned i = ws->n;
    BT_CHECK(i < WS_MAX);
    if (i >= WS_MAX) return NULL;
    ws->mem[i] = (unsigned char *)malloc(size);
    BT_CHECK(ws->mem[i] != NULL);
    if (!ws->mem[i]) return NULL;
    memset(&d, 0, sizeof d);
    d.kind = BUFFET_BUF_WRAP;
    d.size = size;
    d.wrap_data = ws->mem[i];
    d.release = ws_release;
    d.release_user = &ws->rel[i];
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
    ws->n++;
    return b;
}

static void ws_free(wrapset *ws) {
    unsigned i;
    for (i = 0; i < ws->n; i++) free(ws->mem[i]);
    ws->n = 0;
}

/* A heap buffer from the debug allocator (so that a double release shows there). */
static buffet_buf *heap_buf(fx *f, size_t size) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    memset(&d, 0, sizeof d);
    d.kind = BUFFET_BUF_HEAP;
    d.size = size;
    d.allocator = f->a;
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
    return b;
}

/* Append buffer b to c as slices of 1..1200 bytes holding the stream's bytes from *pos on, a
   byte apart (adjacent ones would merge into one slice), then drop the caller's reference: the
   chain holds the only ones. Returns the slices; *pos is past their bytes. */
static size_t add_sliced(buffet_chain *c, buffet_buf *b, size_t *pos, unsigned *k) {
    unsigned char *d;
    size_t off = 0, n = 0, i;
    if (!b) return 0;
    d = (unsigned char *)b->data;
    memset(d, 0xee, b->size);   /* the gaps: a byte of them sent would show */
    while (off < b->size) {
        size_t len = 1 + ((*k)++ * 7919u) % 1200u;
        if (len > b->size - off) len = b->size - off;
        for (i = 0; i < len; i++) d[off + i] = tcp_byte(*pos + i);
        BT_CHECK(buffet_chain_append(c, b, off, len) == BUFFET_OK);
        *pos += len;
        off += len + 1;
        n++;
    }
    buffet_buf_unref(b);
    return n;
}

/* Small socket buffers: a send of a few hundred KiB is cut short by the kernel. */
static void small_bufs(int tx, int rx) {
    int v = 32 << 10;
    BT_CHECK(setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    BT_CHECK(setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == 0);
}

static bool is_send_event(const buffet_net_uring_event *e, int fd) {
    return e->op == BUFFET_NET_URING_SEND && e->fd == fd && e->pkt == NULL;
}

/* Two sends on one TCP socket, made back to back: A of more than BUFFET_NET_IOV_MAX slices over 8
   buffers (4 WRAP, 4 heap), more bytes than the socket buffers hold (cut short, submitted again),
   and B of a few slices behind it. The reader, in this thread between waits, gets every byte of A
   then B in order; each send makes one event with its byte count; every buffer is released once
   (zerocopy: not before A's event). */
static void tcp_send_run(unsigned flags) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[8];
    buffet_net_uring_stats st;
    buffet_chain a, b;
    wrapset ws;
    static unsigned char in[65536];
    size_t total = small ? (1u << 20) : (2u << 20), pos = 0, got = 0, slices = 0, total_a, i;
    unsigned k = 0, events_a = 0, events_b = 0, j, bad = 0, early = 0;
    int tx, rx;
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    memset(&ws, 0, sizeof ws);
    BT_CHECK(nu_tcp_pair(&tx, &rx));
    small_bufs(tx, rx);
    BT_CHECK(fcntl(rx, F_SETFL, fcntl(rx, F_GETFL) | O_NONBLOCK) == 0);
    BT_CHECK(buffet_chain_init(&a, f.a) == BUFFET_OK && buffet_chain_init(&b, f.a) == BUFFET_OK);
    for (i = 0; i < 8; i++) slices += add_sliced(&a, i % 2 ? heap_buf(&f, total / 8) : ws_buf(&ws, total / 8), &pos, &k);
    total_a = pos;
    slices += add_sliced(&b, heap_buf(&f, 3000), &pos, &k);
    BT_CHECK(slices > BUFFET_NET_IOV_MAX + 3 && buffet_chain_count(&b) >= 2 && ws.n == 4);
    BT_CHECK(buffet_net_uring_send(u, tx, &a, 100, flags) == BUFFET_OK);
    BT_CHECK(buffet_chain_len(&a) == 0 && buffet_chain_count(&a) == 0);   /* moved into the request */
    BT_CHECK(buffet_net_uring_send(u, tx, &b, 200, flags) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_get_stats(u).sends == 2);
    last = now_ms();
    while ((events_a + events_b < 2 || got < pos) && now_ms() - last < STALL_MS) {
        ssize_t r = got < pos ? recv(rx, in, sizeof in, MSG_DONTWAIT) : 0;
        size_t m, q;
        if (r > 0) {
            for (q = 0; q < (size_t)r; q++) bad += in[q] != tcp_byte(got + q);
            got += (size_t)r;
            last = now_ms();
        }
        if (events_a == 0)
            for (j = 0; j < ws.n; j++) early += (flags & BUFFET_NET_URING_ZEROCOPY) && ws.rel[j] != 0;
        m = buffet_net_uring_wait(u, ev, 8, r > 0 ? 0 : 10);
        for (q = 0; q < m; q++) {
            BT_CHECK(is_send_event(&ev[q], tx) && ev[q].result == BUFFET_OK && ev[q].error == 0);
            if (ev[q].tag == 100) {
                events_a++;
                BT_CHECK(ev[q].bytes == total_a);
                for (j = 0; j < ws.n; j++) BT_CHECK(ws.rel[j] == 1);   /* A's buffers are free now */
            } else {
                events_b++;
                BT_CHECK(ev[q].tag == 200 && ev[q].bytes == pos - total_a);
            }
            last = now_ms();
        }
    }
    BT_CHECK(got == pos && bad == 0 && early == 0);
    BT_CHECK(events_a == 1 && events_b == 1);
    BT_CHECK(buffet_net_uring_wait(u, ev, 8, 20) == 0);   /* nothing twice */
    st = buffet_net_uring_get_stats(u);
    BT_CHECK(st.sends == 0 && st.sends_done == 2 && st.bytes_sent == pos);
    /* more requests than the slices need: the kernel cut some short and the rest went again */
    BT_CHECK(st.send_requests > (slices + BUFFET_NET_IOV_MAX - 1) / BUFFET_NET_IOV_MAX + 1);
    if (flags & BUFFET_NET_URING_ZEROCOPY) BT_CHECK(st.zc_notifications == st.send_requests && st.zc_fallbacks == 0);
    else BT_CHECK(st.zc_notifications == 0);
    BT_CHECK(st.packets == 0 && st.receives == 0);
    /* the chains are reusable */
    {
        buffet_buf *x = heap_buf(&f, 10);
        BT_CHECK(x && buffet_chain_append(&a, x, 0, 10) == BUFFET_OK && buffet_chain_len(&a) == 10);
        if (x) buffet_buf_unref(x);
    }
    buffet_chain_deinit(&a);
    buffet_chain_deinit(&b);
    buffet_net_uring_destroy(u);
    for (j = 0; j < ws.n; j++) BT_CHECK(ws.rel[j] == 1);
    ws_free(&ws);
    close(tx);
    close(rx);
    fx_close(&f);
}

static void test_send_tcp(void) { tcp_send_run(0); }
static void test_send_tcp_zerocopy(void) { tcp_send_run(BUFFET_NET_URING_ZEROCOPY); }

/* The peer reset the connection (it closed with data unread and SO_LINGER 0): the send ends with
   BUFFET_ERR_CLOSED, nothing sent, its buffer released once. */
static void test_send_closed(void) {
    unsigned flags;
    for (flags = 0; flags <= BUFFET_NET_URING_ZEROCOPY; flags++) {
        fx f;
        buffet_net_uring *u;
        buffet_net_uring_event ev[4];
        buffet_chain c;
        wrapset ws;
        struct linger lg;
        size_t pos = 0, n = 0;
        unsigned k = 0;
        int tx, rx;
        uint64_t last;
        fx_open(&f, 2048);
        RING_OR_SKIP(&f, &u, 0);
        memset(&ws, 0, sizeof ws);
        BT_CHECK(nu_tcp_pair(&tx, &rx));
        lg.l_onoff = 1;
        lg.l_linger = 0;
        BT_CHECK(setsockopt(rx, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        BT_CHECK(send(tx, "x", 1, MSG_NOSIGNAL) == 1);
        close(rx);   /* a reset, at once over loopback */
        BT_CHECK(buffet_chain_init(&c, f.a) == BUFFET_OK);
        add_sliced(&c, ws_buf(&ws, 5000), &pos, &k);
        BT_CHECK(buffet_net_uring_send(u, tx, &c, 9, flags) == BUFFET_OK);
        last = now_ms();
        while (n == 0 && now_ms() - last < STALL_MS) n = buffet_net_uring_wait(u, ev, 4, 100);
        BT_CHECK(n == 1);
        if (n == 1) {
            BT_CHECK(is_send_event(&ev[0], tx) && ev[0].tag == 9 && ev[0].result == BUFFET_ERR_CLOSED);
            BT_CHECK((ev[0].error == ECONNRESET || ev[0].error == EPIPE) && ev[0].bytes == 0);
        }
        BT_CHECK(ws.rel[0] == 1);   /* back when the event came */
        BT_CHECK(buffet_net_uring_get_stats(u).sends == 0 && buffet_net_uring_get_stats(u).sends_done == 1);
        buffet_net_uring_destroy(u);
        BT_CHECK(ws.rel[0] == 1);
        ws_free(&ws);
        buffet_chain_deinit(&c);
        close(tx);
        fx_close(&f);
    }
}

/* A connected UDP socket: each send is one datagram (3 slices over 2 buffers, or none: an empty
   datagram), received whole and exact; one event each. */
static void test_send_udp(void) {
    unsigned flags;
    for (flags = 0; flags <= BUFFET_NET_URING_ZEROCOPY; flags++) {
        fx f;
        buffet_net_uring *u;
        buffet_net_uring_event ev[8];
        buffet_net_uring_stats st;
        struct sockaddr_in ra, ta;
        unsigned char seen[8], in[2048];
        wrapset ws;
        unsigned i, events = 0, got = 0, good = 0, empties = 0;
        size_t bytes = 0;
        int rx, tx;
        uint64_t last;
        fx_open(&f, 2048);
        RING_OR_SKIP(&f, &u, 0);
        memset(&ws, 0, sizeof ws);
        memset(seen, 0, sizeof seen);
        rx = udp_bound(&ra);
        tx = udp_bound(&ta);
        BT_CHECK(rx >= 0 && tx >= 0 && connect(tx, (const struct sockaddr *)&ra, sizeof ra) == 0);
        for (i = 0; i < 6; i++) {
            buffet_chain c;
            BT_CHECK(buffet_chain_init(&c, f.a) == BUFFET_OK);
            if (i < 5) {
                /* datagram i: index, then pat(i, j); its bytes split 3 ways over a WRAP and a heap buffer */
                size_t len = dg_len(i + 1, 0), j, cut1 = len / 3, cut2 = 2 * len / 3;
                buffet_buf *w = ws_buf(&ws, len), *h = heap_buf(&f, len);
                if (!w || !h) return;
                for (j = 0; j < len; j++) {
                    unsigned char v = j == 0 ? (unsigned char)(i + 1) : j == 1 ? 0 : pat(i + 1, j);
                    ((unsigned char *)w->data)[j] = v;
                    ((unsigned char *)h->data)[j] = v;
                }
                BT_CHECK(buffet_chain_append(&c, w, 0, cut1) == BUFFET_OK);
                BT_CHECK(buffet_chain_append(&c, h, cut1, cut2 - cut1) == BUFFET_OK);
                BT_CHECK(buffet_chain_append(&c, w, cut2, len - cut2) == BUFFET_OK);
                buffet_buf_unref(w);
                buffet_buf_unref(h);
                bytes += len;
            }
            BT_CHECK(buffet_net_uring_send(u, tx, &c, 50 + i, flags) == BUFFET_OK);
            buffet_chain_deinit(&c);
        }
        last = now_ms();
        while ((events < 6 || got < 6) && now_ms() - last < STALL_MS) {
            ssize_t r = recv(rx, in, sizeof in, MSG_DONTWAIT);
            size_t m = buffet_net_uring_wait(u, ev, 8, r >= 0 ? 0 : 10), q;
            if (r == 0) empties++;
            if (r > 0) {
                unsigned idx = in[0];
                bool ok = r >= 2 && idx >= 1 && idx <= 5 && !seen[idx] && (size_t)r == dg_len(idx, 0) && in[1] == 0;
                for (q = 2; ok && q < (size_t)r; q++) ok = in[q] == pat(idx, q);
                if (ok) seen[idx] = 1;
                good += ok;
            }
            if (r >= 0) {
                got++;
                last = now_ms();
            }
            for (q = 0; q < m; q++, events++) {
                unsigned t = (unsigned)(ev[q].tag - 50);
                BT_CHECK(is_send_event(&ev[q], tx) && ev[q].result == BUFFET_OK && t < 6);
                BT_CHECK(ev[q].bytes == (t < 5 ? dg_len(t + 1, 0) : 0));
                last = now_ms();
            }
        }
        BT_CHECK(events == 6 && got == 6 && good == 5 && empties == 1);
        for (i = 0; i < ws.n; i++) BT_CHECK(ws.rel[i] == 1);
        st = buffet_net_uring_get_stats(u);
        BT_CHECK(st.sends == 0 && st.sends_done == 6 && st.bytes_sent == bytes && st.send_requests == 6);
        BT_CHECK(st.zc_fallbacks == 0 && st.zc_notifications == (flags ? 6u : 0u));
        buffet_net_uring_destroy(u);
        ws_free(&ws);
        close(rx);
        close(tx);
        fx_close(&f);
    }
}

/* A UNIX stream socket refuses zerocopy: the send goes on plainly, every byte there. */
static void test_send_zc_fallback(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[4];
    buffet_net_uring_stats st;
    buffet_chain c;
    unsigned char in[8192];
    size_t pos = 0, got = 0, q;
    unsigned k = 0, n = 0, bad = 0;
    int sv[2];
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    BT_CHECK(buffet_chain_init(&c, f.a) == BUFFET_OK);
    add_sliced(&c, heap_buf(&f, 6000), &pos, &k);
    BT_CHECK(buffet_net_uring_send(u, sv[0], &c, 3, BUFFET_NET_URING_ZEROCOPY) == BUFFET_OK);
    last = now_ms();
    while ((n == 0 || got < pos) && now_ms() - last < STALL_MS) {
        ssize_t r = recv(sv[1], in, sizeof in, MSG_DONTWAIT);
        size_t m;
        if (r > 0) {
            for (q = 0; q < (size_t)r; q++) bad += in[q] != tcp_byte(got + q);
            got += (size_t)r;
        }
        m = buffet_net_uring_wait(u, ev, 4, r > 0 ? 0 : 10);
        for (q = 0; q < m; q++, n++)
            BT_CHECK(is_send_event(&ev[q], sv[0]) && ev[q].tag == 3 && ev[q].result == BUFFET_OK && ev[q].bytes == pos);
    }
    BT_CHECK(n == 1 && got == pos && bad == 0);
    st = buffet_net_uring_get_stats(u);
    BT_CHECK(st.zc_fallbacks == 1 && st.sends == 0 && st.bytes_sent == pos);
    buffet_net_uring_destroy(u);
    buffet_chain_deinit(&c);
    close(sv[0]);
    close(sv[1]);
    fx_close(&f);
}

/* Refused sends leave the chain as it was; an empty chain on a stream is a send of nothing. */
static void test_send_bad_input(void) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[4];
    buffet_chain c, big;
    buffet_buf *h, dev;
    struct sockaddr_in ra, ta;
    size_t pos = 0, n = 0, n0, i;
    unsigned k = 0;
    int tx, rx, udp, udp_rx, dead, p[2];
    uint64_t last;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);   /* before the chain: a skip must leave nothing behind */
    BT_CHECK(buffet_chain_init(&c, f.a) == BUFFET_OK);
    n0 = add_sliced(&c, heap_buf(&f, 100), &pos, &k);
    BT_CHECK(pos > 1 && buffet_net_uring_send(NULL, 0, &c, 1, 0) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == pos);
    BT_CHECK(nu_tcp_pair(&tx, &rx));
    BT_CHECK(buffet_net_uring_send(u, tx, NULL, 1, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_send(u, -1, &c, 1, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_uring_send(u, tx, &c, 1, 4) == BUFFET_ERR_INVALID);   /* unknown flag */
    dead = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BT_CHECK(dead >= 0);
    close(dead);
    BT_CHECK(buffet_net_uring_send(u, dead, &c, 1, 0) == BUFFET_ERR_INVALID);   /* closed */
    BT_CHECK(pipe(p) == 0);
    BT_CHECK(buffet_net_uring_send(u, p[1], &c, 1, 0) == BUFFET_ERR_INVALID);   /* not a socket */
    close(p[0]);
    close(p[1]);
    BT_CHECK(buffet_chain_len(&c) == pos && buffet_chain_count(&c) == n0);
    /* device memory (no host address) after a good slice */
    memset(&dev, 0, sizeof dev);
    dev.size = 64;
    dev.refcount = 1;
    dev.fd = -1;
    BT_CHECK(buffet_chain_append(&c, &dev, 0, 64) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_send(u, tx, &c, 1, 0) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == pos + 64);
    BT_CHECK(buffet_chain_trim(&c, 64) == BUFFET_OK && dev.refcount == 1);
    /* a datagram of more slices than one sendmsg takes */
    udp_rx = udp_bound(&ra);
    udp = udp_bound(&ta);
    BT_CHECK(udp >= 0 && udp_rx >= 0 && connect(udp, (const struct sockaddr *)&ra, sizeof ra) == 0);
    BT_CHECK(buffet_chain_init(&big, f.a) == BUFFET_OK);
    h = heap_buf(&f, 2 * (BUFFET_NET_IOV_MAX + 1));   /* slices apart: none merges with the last */
    for (i = 0; h && i <= BUFFET_NET_IOV_MAX; i++) BT_CHECK(buffet_chain_append(&big, h, 2 * i, 1) == BUFFET_OK);
    if (h) buffet_buf_unref(h);
    BT_CHECK(buffet_net_uring_send(u, udp, &big, 1, 0) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_chain_count(&big) == BUFFET_NET_IOV_MAX + 1);
    buffet_chain_deinit(&big);
    BT_CHECK(buffet_net_uring_get_stats(u).sends == 0 && buffet_net_uring_get_stats(u).send_requests == 0);
    /* an empty chain on a stream: an event, BUFFET_OK, 0 bytes */
    BT_CHECK(buffet_chain_init(&big, f.a) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_send(u, tx, &big, 7, 0) == BUFFET_OK);
    last = now_ms();
    while (n == 0 && now_ms() - last < STALL_MS) n = buffet_net_uring_wait(u, ev, 4, 100);
    BT_CHECK(n == 1 && is_send_event(&ev[0], tx) && ev[0].tag == 7 && ev[0].result == BUFFET_OK && ev[0].bytes == 0);
    /* the refused chain still sends */
    BT_CHECK(buffet_net_uring_send(u, tx, &c, 8, 0) == BUFFET_OK && buffet_chain_len(&c) == 0);
    n = 0;
    last = now_ms();
    while (n == 0 && now_ms() - last < STALL_MS) n = buffet_net_uring_wait(u, ev, 4, 100);
    BT_CHECK(n == 1 && ev[0].tag == 8 && ev[0].result == BUFFET_OK && ev[0].bytes == pos);
    {
        unsigned char in[200];
        size_t got = 0, bad = 0;
        last = now_ms();
        while (got < pos && now_ms() - last < STALL_MS) {
            ssize_t r = recv(rx, in, sizeof in, MSG_DONTWAIT);
            for (i = 0; r > 0 && i < (size_t)r; i++) bad += in[i] != tcp_byte(got + i);
            if (r > 0) got += (size_t)r;
            else poll(NULL, 0, 1);
        }
        BT_CHECK(got == pos && bad == 0);
    }
    buffet_net_uring_destroy(u);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&big);
    close(tx);
    close(rx);
    close(udp);
    close(udp_rx);
    fx_close(&f);
}

/* BUFFET_NET_URING_MAX_SENDS on a socket whose peer does not read: the first is in the kernel,
   cut short, the others wait behind it; one more is refused with its chain untouched. Destroy
   then cancels them all and releases every buffer once. */
static void destroy_sends_run(unsigned flags) {
    fx f;
    buffet_net_uring *u;
    buffet_net_uring_event ev[8];
    buffet_chain c, extra;
    buffet_buf *w, *h;
    wrapset ws;
    unsigned i;
    int tx, rx;
    fx_open(&f, 2048);
    RING_OR_SKIP(&f, &u, 0);
    memset(&ws, 0, sizeof ws);
    BT_CHECK(nu_tcp_pair(&tx, &rx));
    small_bufs(tx, rx);
    w = ws_buf(&ws, 256u << 10);
    h = heap_buf(&f, 4096);
    if (!w || !h) return;
    memset(w->data, 0x33, w->size);
    memset(h->data, 0x44, h->size);
    BT_CHECK(buffet_chain_init(&c, f.a) == BUFFET_OK && buffet_chain_init(&extra, f.a) == BUFFET_OK);
    for (i = 0; i < BUFFET_NET_URING_MAX_SENDS; i++) {
        BT_CHECK(buffet_chain_append(&c, w, 0, w->size) == BUFFET_OK);
        BT_CHECK(buffet_chain_append(&c, h, 0, h->size) == BUFFET_OK);
        BT_CHECK(buffet_net_uring_send(u, tx, &c, i, flags) == BUFFET_OK && buffet_chain_len(&c) == 0);
    }
    BT_CHECK(buffet_chain_append(&extra, h, 0, 10) == BUFFET_OK);
    BT_CHECK(buffet_net_uring_send(u, tx, &extra, 99, flags) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_chain_len(&extra) == 10 && buffet_chain_count(&extra) == 1);
    buffet_buf_unref(w);
    buffet_buf_unref(h);
    /* the first send's short result taken, its rest submitted: none can end (nobody reads) */
    for (i = 0; i < 3; i++) BT_CHECK(buffet_net_uring_wait(u, ev, 8, 10) == 0);
    BT_CHECK(buffet_net_uring_get_stats(u).sends == BUFFET_NET_URING_MAX_SENDS);
    BT_CHECK(ws.rel[0] == 0);
    /* Zerocopy: the pages of bytes the socket took stay the kernel's until they leave its queue
       (acknowledged), which a peer that reads nothing never lets happen: its reset (close with
       bytes unread) drops the queue, and the notifications come. */
    if (flags & BUFFET_NET_URING_ZEROCOPY) {
        close(rx);
        rx = -1;
    }
    buffet_net_uring_destroy(u);
    BT_CHECK(ws.rel[0] == 1);   /* every send's reference gone, once */
    buffet_chain_deinit(&extra);
    buffet_chain_deinit(&c);
    ws_free(&ws);
    close(tx);
    if (rx >= 0) close(rx);
    fx_close(&f);   /* the heap buffer, the chains' arrays: nothing live */
}

static void test_send_destroy_in_flight(void) {
    destroy_sends_run(0);
    destroy_sends_run(BUFFET_NET_URING_ZEROCOPY);
}

int main(void) {
    small = bt_mode("valgrind") || bt_mode("aarch64");
    BT_RUN(test_udp_sink);
    BT_RUN(test_udp_edges);
    BT_RUN(test_freed_elsewhere);
    BT_RUN(test_tcp_echo);
    BT_RUN(test_starvation);
    BT_RUN(test_wait_unbounded_starved);
    BT_RUN(test_unsupported);
    BT_RUN(test_bad_input);
    BT_RUN(test_destroy_armed);
    BT_RUN(test_send_tcp);
    BT_RUN(test_send_tcp_zerocopy);
    BT_RUN(test_send_closed);
    BT_RUN(test_send_udp);
    BT_RUN(test_send_zc_fallback);
    BT_RUN(test_send_bad_input);
    BT_RUN(test_send_destroy_in_flight);
    return bt_finish("test_net_uring.c");
}
