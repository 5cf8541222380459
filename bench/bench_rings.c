/* bench_rings.c - buffet's kernel rings (buffet_net.h, >>uring) against the receive paths a C
   programmer would otherwise write, side by side in one process run.

   1. TCP receive over loopback, one connection; a second thread sends an endless stream in
      128 KiB writes, and each contestant takes M bytes of it per iteration (M = 1 MiB):
     a) read into one 128 KiB buffer, dropped: what iperf3's receiver does, the floor
     b) buffet_net_recv: readv into 16 KiB heap buffers appended to a chain (buffet.h), which is
        then consumed: a receive path that keeps the bytes without copying them again
     c) io_uring: a multishot receive into a provided-buffer ring of 64 packets of a 16 KiB
        class (buffet_net_uring_*), each completion a packet, freed at once
   Gbit/s (median of REPS runs after a warm-up; the contestants alternate), and the ratios
   io_uring / readv and io_uring / read. Each io_uring run arms the receive and cancels it at its
   end, so that the contestants take turns on one connection; what the kernel had already put in
   the ring's buffers is drained (and counted) before the next contestant reads.
   2. Frames from a veth peer (root: the bench makes two network namespaces and a veth pair): a
      thread in the far namespace sends UDP datagrams in Ethernet frames of 64 bytes (60 without
      the frame check sequence) and of a 1500-byte IP packet (1514), in bursts of 64, through a
      buffet AF_PACKET transmit ring, as fast as it can; each contestant takes F frames an
      iteration, waiting in poll when none is there:
     a) buffet_net_udp_recv (recvmmsg, part 1) on a UDP socket bound to the address
     b) AF_PACKET TPACKET_V3: buffet_net_afp_recv, each frame a packet over the ring's block,
        freed at once (the ring is made for the contestant's run, so that it costs the kernel
        nothing while the others run)
     c) AF_XDP: buffet_net_xdp_recv, each frame a packet of the UMEM's pool (one class of 2 KiB
        buffers, made whole), freed at once; the socket, and its XDP program on the veth end, made
        for the contestant's run as b)'s ring is (while it runs, every frame goes to it, none to
        the stack). The row says whether the program ran native or generic, and the socket
        zero-copy or in copy mode (a veth: native, copy mode).
      Mpps received, and the receiving thread's CPU time per frame (CLOCK_THREAD_CPUTIME_ID):
      with two cores the sender's core also runs the kernel's receive path (veth delivers in
      the sender's context), so Mpps says as much of the sender as of the receiver; CPU ns per
      frame is the receiver's own cost.
   3. The L2 switch (root): examples/l2_switch.c's own code (included, its loop in a thread that
      joined the switch's namespace) between three hosts, each a namespace a veth pair away, as
      tests/test_net_switch.c builds them. Host 2 sends one frame so that the switch learns its
      port; then a thread in host 1 sends 60-byte frames to host 2's MAC (an EtherType nothing on
      the host handles) through an AF_PACKET transmit ring as fast as it can, for 3 s (1 s quick),
      one run: the switch's forwarding rate in Mpps (frames out of host 2's port per second of
      the sender's run), the sender's rate, every drop (the switch's receive ring, the veth's
      backlog before it, the switch's transmit ring), the switch thread's CPU ns per frame (read
      from its CPU clock over the sender's run) and the share of that run it spent runnable but
      waiting for a CPU (/proc schedstat: a switch that drops while it waits is starved, not
      slow), and the pool's cache hit rate (allocations
      served by the switch thread's cache without a refill from the pool's shared store: 1 -
      refills / allocations, over every class). With two cores the sender's core also runs the
      kernel's receive into the switch's ring, and the switch's runs the delivery to host 2: when
      nothing is dropped the sender set the rate and the switch's CPU share says how near its
      own limit it was. The switch runs twice: AF_PACKET ports, then AF_XDP ports (-x afxdp:
      frames forwarded from one socket's UMEM buffer to another's without a copy; the row says
      how many were copied, and the ports' XDP mode).
   BUFFET_BENCH_QUICK=1 makes every run short (rough numbers, for checking that it works). */
#define BUFFET_NET_URING 1
#define BUFFET_NET_AFPACKET 1
#define BUFFET_NET_AFXDP 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#define L2_SWITCH_NO_MAIN
#include "../examples/l2_switch.c"   /* section 3: the switch's code, run in a thread */

#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#define BENCH_NAME "bench_rings"
#define REPS 9
#define MAX_CONTESTANTS 3
#include "bench.h"
#include "../tests/net_util.h"

#define CHUNK (1u << 20)   /* bytes a contestant takes per iteration */
#define RING_BUF 16384     /* data room of the ring's packet class */

static bool quick;

typedef struct rx_ctx {
    int fd;                        /* the receiving end */
    buffet_chain chain;            /* b) */
    buffet_pkt_pool *pool;         /* c) */
    buffet_pkt_cache *cache;
    buffet_net_uring *ring;
    uint64_t drained;              /* c) bytes the ring held when its receive was cancelled */
} rx_ctx;

static atomic_bool stop_send;
static void *sender(void *arg) {
    int fd = *(int *)arg;
    static unsigned char src[128 << 10];
    memset(src, 0x3c, sizeof src);
    while (!atomic_load_explicit(&stop_send, memory_order_relaxed))
        if (send(fd, src, sizeof src, MSG_NOSIGNAL) < 0 && errno != EINTR) break;
    return NULL;
}

static uint64_t run_read(void *v, size_t iters) {
    rx_ctx *c = (rx_ctx *)v;
    static unsigned char sink[128 << 10];
    uint64_t want = (uint64_t)iters * CHUNK, got = 0, t0 = now_ns();
    while (got < want) {
        ssize_t r = read(c->fd, sink, sizeof sink);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; die("read failed"); }
        got += (uint64_t)r;
    }
    return now_ns() - t0;
}

static uint64_t run_readv(void *v, size_t iters) {
    rx_ctx *c = (rx_ctx *)v;
    uint64_t want = (uint64_t)iters * CHUNK, got = 0, t0 = now_ns();
    while (got < want) {
        size_t n = 0;
        if (buffet_net_recv(c->fd, &c->chain, NULL, 0, &n) != BUFFET_OK) die("buffet_net_recv failed");
        got += n;
        if (buffet_chain_consume(&c->chain, buffet_chain_len(&c->chain)) != BUFFET_OK) die("consume failed");
    }
    return now_ns() - t0;
}

/* Events of c's ring: packets freed, bytes added to *got. */
static void take_events(rx_ctx *c, buffet_net_uring_event *ev, size_t m, uint64_t *got) {
    for (size_t k = 0; k < m; k++) {
        if (ev[k].result != BUFFET_OK || !ev[k].pkt) die("io_uring receive failed");
        *got += ev[k].pkt->pkt_len;
        buffet_pkt_free(c->cache, ev[k].pkt);
    }
}

static uint64_t run_uring(void *v, size_t iters) {
    rx_ctx *c = (rx_ctx *)v;
    buffet_net_uring_event ev[64];
    uint64_t want = (uint64_t)iters * CHUNK, got = 0, t0 = now_ns(), t;
    if (buffet_net_uring_recv(c->ring, c->fd, 1) != BUFFET_OK) die("buffet_net_uring_recv failed");
    while (got < want) take_events(c, ev, buffet_net_uring_wait(c->ring, ev, 64, -1), &got);
    t = now_ns() - t0;
    /* the next contestant reads the socket alone: the receive ends here, and what the kernel had
       already taken off the socket comes out of the ring (counted apart) */
    if (buffet_net_uring_cancel(c->ring, c->fd) != BUFFET_OK) die("buffet_net_uring_cancel failed");
    for (size_t m; (m = buffet_net_uring_wait(c->ring, ev, 64, 1)) != 0;) take_events(c, ev, m, &c->drained);
    return t;
}

/* ---- 2. frames from a veth peer ---- */
#define FRAMES 4096       /* frames a contestant takes per iteration */
#define UDP_PORT 9999

typedef struct frame_ctx {
    nu_veth v;
    unsigned char frame[1514];   /* the frame the sender sends */
    size_t len;
    atomic_bool stop;
    int udp;                     /* a) the socket, bound in v.ns[1] */
    buffet_pkt_pool *pool;       /* the receiver's packets */
    buffet_pkt_cache *cache;
    buffet_net_afp *afp;         /* b) the ring, for one run */
    buffet_pkt_pool *xpool;      /* c) the UMEM's pool: one class, made whole */
    buffet_pkt_cache *xcache;
    buffet_net_xdp *xdp;         /* c) the socket, for one run */
    bool xdp_native, xdp_zerocopy;   /* as the last one ran */
    buffet_result xdp_r;         /* the last create's result, and errno */
    int xdp_err;
    uint64_t sent, send_ns;      /* the sender's frames handed to the kernel, and its time from
                                    its first send to stop_send */
} frame_ctx;

/* A contestant: the shared context, and its CPU time and frames over every run. */
typedef struct frame_side {
    frame_ctx *f;
    uint64_t cpu_ns, frames;
} frame_side;

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int join_ns(const char *ns) {
    char path[64];
    int fd, r;
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    r = setns(fd, CLONE_NEWNET);
    close(fd);
    return r;
}

/* The sender: its own pool and transmit ring on v.dev[0], bursts of 64 copies of the frame. */
static void *frame_sender(void *arg) {
    frame_ctx *f = (frame_ctx *)arg;
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *cache = NULL;
    buffet_pkt_pool_desc pd;
    buffet_net_afp_desc d;
    buffet_net_afp *a;
    buffet_pkt *pk[64];
    if (join_ns(f->v.ns[0]) != 0) die("the sender could not join its namespace");
    memset(&pd, 0, sizeof pd);
    pd.name = "sender";
    pd.class_sizes[0] = 2048;
    if (buffet_pkt_pool_create(&pool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&cache, pool, 256) != BUFFET_OK)
        die("sender pool failed");
    memset(&d, 0, sizeof d);
    d.cache = cache;
    d.ifname = f->v.dev[0];
    d.blocks = 2;
    d.block_size = 4096;
    d.tx_frames = 1024;
    if (buffet_net_afp_create(&a, &d) != BUFFET_OK) die("the sender's ring failed");
    uint64_t t0 = now_ns(), n_sent = 0;
    while (!atomic_load_explicit(&stop_send, memory_order_relaxed)) {
        size_t i, sent = 0;
        for (i = 0; i < 64; i++) {
            if (!(pk[i] = buffet_pkt_alloc(cache, f->len))) die("sender alloc failed");
            memcpy(buffet_pkt_append(pk[i], f->len), f->frame, f->len);
        }
        buffet_result r = buffet_net_afp_send(a, pk, 64, &sent);
        if (r != BUFFET_OK && r != BUFFET_AGAIN) die("the sender's send failed");
        for (i = sent; i < 64; i++) buffet_pkt_free(cache, pk[i]);
        n_sent += sent;
        if (r == BUFFET_AGAIN) sched_yield();
    }
    f->send_ns = now_ns() - t0;
    f->sent = n_sent;
    buffet_net_afp_destroy(a);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    return NULL;
}

static uint64_t run_recvmmsg(void *v, size_t iters) {
    frame_side *side = (frame_side *)v;
    frame_ctx *f = side->f;
    buffet_pkt *pk[64];
    uint64_t want = (uint64_t)iters * FRAMES, got = 0, t0, c0;
    /* what waited in the socket's queue while others ran is not this run's */
    for (size_t n = 0; buffet_net_udp_recv(f->udp, f->cache, 0, pk, 64, &n) == BUFFET_OK;)
        while (n) buffet_pkt_free(f->cache, pk[--n]);
    t0 = now_ns();
    c0 = thread_cpu_ns();
    while (got < want) {
        size_t n = 0, i;
        buffet_result r = buffet_net_udp_recv(f->udp, f->cache, 0, pk, 64, &n);
        if (r == BUFFET_AGAIN) {
            struct pollfd p = {f->udp, POLLIN, 0};
            if (poll(&p, 1, 1000) == 0) die("no datagram for 1 s");
            continue;
        }
        if (r != BUFFET_OK) die("buffet_net_udp_recv failed");
        for (i = 0; i < n; i++) buffet_pkt_free(f->cache, pk[i]);
        got += n;
    }
    side->cpu_ns += thread_cpu_ns() - c0;
    side->frames += got;
    return now_ns() - t0;
}
static int afp_fn(void *arg) {
    frame_ctx *f = (frame_ctx *)arg;
    buffet_net_afp_desc d;
    buffet_net_afp *a = NULL;
    memset(&d, 0, sizeof d);
    d.cache = f->cache;
    d.ifname = f->v.dev[1];
    d.flags = BUFFET_NET_AFP_NO_TX;
    d.blocks = 64;
    d.block_size = 1u << 17;
    if (buffet_net_afp_create(&a, &d) != BUFFET_OK) return -1;
    f->afp = a;
    return 0;
}

static uint64_t run_afpacket(void *v, size_t iters) {
    frame_side *side = (frame_side *)v;
    frame_ctx *f = side->f;
    buffet_pkt *pk[64];
    uint64_t want = (uint64_t)iters * FRAMES, got = 0, t0, c0, t;
    if (nu_in_ns(f->v.ns[1], afp_fn, f) != 0) die("the AF_PACKET ring failed");
    t0 = now_ns();
    c0 = thread_cpu_ns();
    while (got < want) {
        size_t n = 0, i;
        buffet_result r = buffet_net_afp_recv(f->afp, pk, 64, 1000, &n);
        if (r == BUFFET_AGAIN) die("no frame for 1 s");
        if (r != BUFFET_OK) die("buffet_net_afp_recv failed");
        for (i = 0; i < n; i++) buffet_pkt_free(f->cache, pk[i]);
        got += n;
    }
    side->cpu_ns += thread_cpu_ns() - c0;
    side->frames += got;
    t = now_ns() - t0;
    buffet_net_afp_destroy(f->afp);
    f->afp = NULL;
    return t;
}

static int xdp_fn(void *arg) {
    frame_ctx *f = (frame_ctx *)arg;
    buffet_net_xdp_desc d;
    buffet_net_xdp *x = NULL;
    memset(&d, 0, sizeof d);
    d.cache = f->xcache;
    d.ifname = f->v.dev[1];
    d.ring_size = 1024;
    f->xdp_r = buffet_net_xdp_create(&x, &d);
    f->xdp_err = errno;
    if (f->xdp_r != BUFFET_OK) return -1;
    f->xdp = x;
    return 0;
}

static uint64_t run_afxdp(void *v, size_t iters) {
    frame_side *side = (frame_side *)v;
    frame_ctx *f = side->f;
    buffet_pkt *pk[64];
    uint64_t want = (uint64_t)iters * FRAMES, got = 0, t0, c0, t;
    if (nu_in_ns(f->v.ns[1], xdp_fn, f) != 0) die("the AF_XDP socket failed");
    t0 = now_ns();
    c0 = thread_cpu_ns();
    while (got < want) {
        size_t n = 0, i;
        buffet_result r = buffet_net_xdp_recv(f->xdp, pk, 64, 1000, &n);
        if (r == BUFFET_AGAIN) die("no frame for 1 s");
        if (r != BUFFET_OK) die("buffet_net_xdp_recv failed");
        for (i = 0; i < n; i++) buffet_pkt_free(f->xcache, pk[i]);
        got += n;
    }
    side->cpu_ns += thread_cpu_ns() - c0;
    side->frames += got;
    t = now_ns() - t0;
    {
        buffet_net_xdp_stats st = buffet_net_xdp_get_stats(f->xdp);
        f->xdp_native = st.native;
        f->xdp_zerocopy = st.zerocopy;
    }
    buffet_net_xdp_destroy(f->xdp);
    f->xdp = NULL;
    return t;
}

/* Can an AF_XDP socket be made on the receiving end? NULL, or why not. */
static const char *xdp_refused(frame_ctx *f) {
    static char why[160];
    f->xdp_r = BUFFET_ERR_SYSTEM;
    f->xdp_err = 0;
    if (nu_in_ns(f->v.ns[1], xdp_fn, f) == 0) {
        buffet_net_xdp_destroy(f->xdp);
        f->xdp = NULL;
        return NULL;
    }
    snprintf(why, sizeof why, "no AF_XDP socket on the veth: %s (%s)", buffet_result_str(f->xdp_r), strerror(f->xdp_err));
    return why;
}

static void tcp_section(void) {
    rx_ctx c;
    int tx;
    pthread_t t;
    buffet_result r;
    memset(&c, 0, sizeof c);
    {
        buffet_pkt_pool_desc pd;
        buffet_net_uring_desc d;
        memset(&pd, 0, sizeof pd);
        pd.name = "rings";
        pd.class_sizes[0] = RING_BUF + 128;   /* the data room: headroom + 16 KiB */
        pd.initial = 256;
        if (buffet_pkt_pool_create(&c.pool, &pd) != BUFFET_OK) die("pool failed");
        if (buffet_pkt_cache_create(&c.cache, c.pool, 256) != BUFFET_OK) die("cache failed");
        memset(&d, 0, sizeof d);
        d.cache = c.cache;
        d.buffers = 64;
        r = buffet_net_uring_create(&c.ring, &d);
        if (r != BUFFET_OK) {
            printf("\nTCP receive: skipped: io_uring refused (%s): no io_uring here, or disabled\n", buffet_result_str(r));
            return;
        }
    }
    buffet_chain_init(&c.chain, (buffet_allocator){0});
    if (!nu_tcp_pair(&tx, &c.fd)) die("TCP over loopback failed");
    atomic_store(&stop_send, false);
    if (pthread_create(&t, NULL, sender, &tx) != 0) die("thread failed");
    printf("\n1. TCP receive over loopback, one connection, a thread sending 128 KiB writes; %u KiB an iteration;\n"
           "   Gbit/s (median of %d), ratios io_uring / peer\n", CHUNK >> 10, REPS);
    {
        contestant cs[3] = {{"read, 128 KiB buffer", run_read, &c, (double)CHUNK},
                            {"buffet_net_recv (readv, chain)", run_readv, &c, (double)CHUNK},
                            {"io_uring multishot, provided buffers", run_uring, &c, (double)CHUNK}};
        double ns[3];
        bench_table = "1. TCP receive";
        measure(cs, 3, ns, quick ? 1e7 : 2e8, 4);
        for (int k = 0; k < 3; k++) printf("   %-40s %8.1f Gbit/s\n", cs[k].name, 8 / ns[k]);
        printf("   io_uring / readv %.2fx, io_uring / read %.2fx\n", ns[1] / ns[2], ns[0] / ns[2]);
        print_spread();
    }
    {
        buffet_net_uring_stats s = buffet_net_uring_get_stats(c.ring);
        printf("   (ring: %llu packets, %llu starved and re-armed; %llu bytes drained after cancels)\n",
               (unsigned long long)s.packets, (unsigned long long)s.starved, (unsigned long long)c.drained);
    }
    atomic_store(&stop_send, true);
    shutdown(c.fd, SHUT_RD);
    shutdown(tx, SHUT_RDWR);
    pthread_join(t, NULL);
    close(tx);
    close(c.fd);
    buffet_net_uring_destroy(c.ring);
    buffet_chain_deinit(&c.chain);
    buffet_pkt_cache_destroy(c.cache);
    buffet_pkt_pool_destroy(c.pool);
}

/* The UDP socket of a), bound in the receiving namespace, non-blocking, with room for bursts. */
static int udp_fn(void *arg) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), sz = 8 << 20;
    (void)arg;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(UDP_PORT);
    inet_pton(AF_INET, "10.94.0.2", &a.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
    return fd;
}

/* The receiving end's MAC address, as the frame's destination. */
static int mac_fn(void *arg) {
    frame_ctx *f = (frame_ctx *)arg;
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", f->v.dev[1]);
    r = fd >= 0 ? ioctl(fd, SIOCGIFHWADDR, &ifr) : -1;
    if (fd >= 0) close(fd);
    if (r == 0) memcpy(f->frame, ifr.ifr_hwaddr.sa_data, 6);
    return r;
}

/* f->frame: len bytes, an IPv4 UDP datagram from 10.94.0.1 to 10.94.0.2:UDP_PORT (destination
   MAC already in place). */
static void frame_build(frame_ctx *f, size_t len) {
    unsigned char *b = f->frame, *ip = b + 14, *udp = ip + 20;
    uint32_t sum = 0;
    size_t i;
    memcpy(b + 6, "\x02\x00\x00\x00\x94\x01", 6);
    b[12] = 0x08;
    b[13] = 0x00;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    ip[2] = (unsigned char)((len - 14) >> 8);
    ip[3] = (unsigned char)(len - 14);
    ip[6] = 0x40;   /* don't fragment */
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, "\x0a\x5e\x00\x01\x0a\x5e\x00\x02", 8);
    for (i = 0; i < 20; i += 2) sum += (uint32_t)ip[i] << 8 | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = (unsigned char)(~sum >> 8);
    ip[11] = (unsigned char)~sum;
    udp[0] = 0x27;   /* source port 9999 too */
    udp[1] = 0x0f;
    udp[2] = (unsigned char)(UDP_PORT >> 8);
    udp[3] = (unsigned char)UDP_PORT;
    udp[4] = (unsigned char)((len - 34) >> 8);
    udp[5] = (unsigned char)(len - 34);
    udp[6] = udp[7] = 0;   /* no checksum (IPv4 allows it) */
    for (i = 42; i < len; i++) b[i] = (unsigned char)i;
    f->len = len;
}

static void frames_section(void) {
    static frame_ctx f;
    static const size_t lens[] = {60, 1514};
    buffet_pkt_pool_desc pd;
    const char *why;
    printf("\n2. Frames from a veth peer: a thread sends UDP in bursts of 64 through an AF_PACKET ring; %u frames an\n"
           "   iteration; Mpps received (median of %d) and the receiving thread's CPU ns per frame\n", FRAMES, REPS);
    if (geteuid() != 0) {
        printf("   skipped: not root (the bench makes two network namespaces and a veth pair)\n");
        return;
    }
    memset(&f, 0, sizeof f);
    if ((why = nu_veth_make(&f.v, "bfbr", "10.94.0", NULL)) != NULL) {
        printf("   skipped: %s\n", why);
        return;
    }
    memset(&pd, 0, sizeof pd);
    pd.name = "frames";
    pd.class_sizes[0] = 2048;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = 1024;
    if (buffet_pkt_pool_create(&f.pool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&f.cache, f.pool, 256) != BUFFET_OK)
        die("pool failed");
    /* AF_XDP's UMEM is one class's one region: made whole (fill and receive rings of 1024, the
       cache's, a burst) */
    memset(&pd, 0, sizeof pd);
    pd.name = "xdp-frames";
    pd.class_sizes[0] = 2048;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = pd.max = 4096;
    pd.no_huge_pages = true;
    if (buffet_pkt_pool_create(&f.xpool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&f.xcache, f.xpool, 256) != BUFFET_OK)
        die("pool failed");
    f.udp = nu_in_ns(f.v.ns[1], udp_fn, NULL);
    if (f.udp < 0 || nu_in_ns(f.v.ns[1], mac_fn, &f) != 0) die("the receiving side failed");
    const char *xdp_why = xdp_refused(&f);
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        frame_side sa = {&f, 0, 0}, sb = {&f, 0, 0}, sc = {&f, 0, 0};
        contestant cs[3] = {{"recvmmsg (buffet_net_udp_recv)", run_recvmmsg, &sa, (double)FRAMES},
                            {"AF_PACKET TPACKET_V3 (buffet_net_afp_recv)", run_afpacket, &sb, (double)FRAMES},
                            {"AF_XDP (buffet_net_xdp_recv)", run_afxdp, &sc, (double)FRAMES}};
        int nc = xdp_why ? 2 : 3;
        double ns[3];
        pthread_t t;
        frame_build(&f, lens[l]);
        atomic_store(&stop_send, false);
        if (pthread_create(&t, NULL, frame_sender, &f) != 0) die("thread failed");
        printf("   %zu-byte frames (%zu on the wire with the frame check sequence):\n", lens[l], lens[l] + 4);
        bench_table = lens[l] == 60 ? "2. frames, 64 B" : "2. frames, 1518 B";
        measure(cs, nc, ns, quick ? 1e7 : 2e8, 1);
        double cpa = (double)sa.cpu_ns / (double)(sa.frames ? sa.frames : 1);
        double cpb = (double)sb.cpu_ns / (double)(sb.frames ? sb.frames : 1);
        double cpc = (double)sc.cpu_ns / (double)(sc.frames ? sc.frames : 1);
        printf("   %-44s %7.2f Mpps  %6.0f CPU ns/frame\n", cs[0].name, 1e3 / ns[0], cpa);
        printf("   %-44s %7.2f Mpps  %6.0f CPU ns/frame\n", cs[1].name, 1e3 / ns[1], cpb);
        if (xdp_why) printf("   %-44s skipped: %s\n", "AF_XDP", xdp_why);
        else printf("   %-44s %7.2f Mpps  %6.0f CPU ns/frame  (%s, %s)\n", cs[2].name, 1e3 / ns[2], cpc,
                    f.xdp_native ? "native" : "generic", f.xdp_zerocopy ? "zero-copy" : "copy mode");
        printf("   AF_PACKET / recvmmsg: %.2fx the rate, %.2fx the CPU per frame\n", ns[0] / ns[1], cpb / cpa);
        if (!xdp_why)
            printf("   AF_XDP / recvmmsg: %.2fx the rate, %.2fx the CPU per frame; AF_XDP / AF_PACKET: %.2fx, %.2fx\n",
                   ns[0] / ns[2], cpc / cpa, ns[1] / ns[2], cpc / cpb);
        print_spread();
        atomic_store(&stop_send, true);
        pthread_join(t, NULL);
    }
    close(f.udp);
    buffet_pkt_cache_destroy(f.xcache);
    buffet_pkt_pool_destroy(f.xpool);
    buffet_pkt_cache_destroy(f.cache);
    buffet_pkt_pool_destroy(f.pool);
    nu_veth_del(&f.v);
}

/* ---- 3. the L2 switch ---- */
#define SW_HOSTS 3

static struct {
    bool made;
    char sw[32], host[SW_HOSTS][32];   /* the switch's namespace (ports p1..p3) and the hosts' (e1..e3) */
    char stats[96];                    /* the switch's -s file: there once its ports are open */
    const char *mode;                  /* its -x */
    unsigned seconds;                  /* its -t */
    atomic_int rc;                     /* l2sw_main's, -1 while it runs */
    uint64_t cpu_ns, wall_ns;          /* the switch thread's CPU time and wall time while h1 sent */
    uint64_t wait_ns;                  /* and its time runnable but waiting for a CPU (0: unknown) */
    atomic_long tid;                   /* the switch thread's, for its schedstat */
    /* read at its end (l2sw_at_end) */
    uint64_t rx1, forwarded1, flooded1, tx2, tx_full2, tx_copied2, kernel_drops1, rx_lost1;
    bool native, zerocopy;
    uint64_t allocs[BUFFET_PKT_MAX_CLASSES + 1], misses[BUFFET_PKT_MAX_CLASSES + 1];
    uint32_t room[BUFFET_PKT_MAX_CLASSES + 1];
    unsigned nclasses;
} swb;

static void sw_del(void) {
    char cmd[256];
    if (!swb.made) return;
    swb.made = false;
    for (int i = 0; i < SW_HOSTS; i++) {
        snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null", swb.host[i]);
        nu_sh(cmd);
    }
    snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null", swb.sw);
    nu_sh(cmd);
    unlink(swb.stats);
}

/* Three hosts, each a veth pair away from the switch's namespace, as tests/test_net_switch.c
   makes them (no addresses: the bench sends raw frames). NULL, or why not. */
static const char *sw_make(void) {
    char cmd[1024];
    if (nu_sh("ip -V >/dev/null 2>&1") != 0) return "no `ip` (iproute2)";
    if (nu_sh("ethtool --version >/dev/null 2>&1") != 0) return "no ethtool";
    snprintf(swb.sw, sizeof swb.sw, "bfsw%ds", (int)getpid());
    for (int i = 0; i < SW_HOSTS; i++) snprintf(swb.host[i], sizeof swb.host[i], "bfsw%dh%d", (int)getpid(), i + 1);
    snprintf(swb.stats, sizeof swb.stats, "/tmp/bench_rings-l2sw-%d.prom", (int)getpid());
    swb.made = true;
    atexit(sw_del);
    snprintf(cmd, sizeof cmd, "ip netns add %s && ip -n %s link set lo up", swb.sw, swb.sw);
    if (nu_sh(cmd) != 0) return "`ip netns` failed";
    for (int i = 0; i < SW_HOSTS; i++) {
        /* IPv6 off: no router solicitations or DAD frames in the switch's counters. Offloads off
           as the test has them (they matter to TCP, not to these raw frames). */
        snprintf(cmd, sizeof cmd,
                 "ip netns add %s && ip -n %s link add p%d type veth peer name e%d netns %s && "
                 "ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && "
                 "ip -n %s link set e%d up && ip -n %s link set lo up && ip -n %s link set p%d up && "
                 "ip netns exec %s ethtool -K e%d tx off tso off gso off >/dev/null 2>&1",
                 swb.host[i], swb.sw, i + 1, i + 1, swb.host[i], swb.host[i], swb.host[i], i + 1, swb.host[i], swb.sw,
                 i + 1, swb.host[i], i + 1);
        if (nu_sh(cmd) != 0) return "`ip netns` / veth / ethtool setup failed";
    }
    /* "link set up" returns before the link watcher gave the ends a real qdisc (noop drops) */
    snprintf(cmd, sizeof cmd,
             "{ ip -n %s link; ip -n %s link; ip -n %s link; ip -n %s link; } | "
             "grep -q -e 'qdisc noop' -e 'state DOWN' -e 'NO-CARRIER'",
             swb.sw, swb.host[0], swb.host[1], swb.host[2]);
    for (int i = 0; nu_sh(cmd) == 0; i++) {
        if (i == 500) return "the veth pairs did not come up within 5 s";
        usleep(10000);
    }
    return NULL;
}

static void sw_at_end(l2sw *s) {
    buffet_pkt_stats ps = buffet_pkt_pool_get_stats(s->pool);
    swb.rx1 = s->port[0].rx_frames;
    swb.forwarded1 = s->port[0].forwarded;
    swb.flooded1 = s->port[0].flooded;
    swb.tx2 = s->port[1].tx_frames;
    swb.tx_full2 = s->port[1].tx_full;
    if (s->xdp) {
        const buffet_net_xdp_stats *x = &s->port[0].xdp_stats;
        swb.kernel_drops1 = x->kernel_rx_dropped + x->kernel_rx_ring_full;
        swb.rx_lost1 = 0;   /* a fill failure loses no frame of its own: the kernel drops (counted above) */
        swb.tx_copied2 = s->port[1].xdp_stats.tx_copied;
        swb.native = x->native;
        swb.zerocopy = x->zerocopy;
    } else {
        swb.kernel_drops1 = s->port[0].afp_stats.kernel_drops;
        swb.rx_lost1 = s->port[0].afp_stats.rx_lost;
    }
    swb.nclasses = ps.nclasses;
    for (unsigned k = 0; k <= ps.nclasses; k++) {
        swb.allocs[k] = ps.cls[k].allocs;
        swb.misses[k] = ps.cls[k].cache_misses;
        swb.room[k] = ps.cls[k].data_room;
    }
}

/* The switch: l2sw_main in a thread that joined its namespace, for swb.seconds. */
static void *switch_thread(void *arg) {
    char a0[] = "l2_switch", t[] = "-t", secs[16], s[] = "-s", x[] = "-x", mode[16], p1[] = "p1", p2[] = "p2",
         p3[] = "p3";
    char *argv[] = {a0, t, secs, s, swb.stats, x, mode, p1, p2, p3, NULL};
    (void)arg;
    snprintf(secs, sizeof secs, "%u", swb.seconds);
    snprintf(mode, sizeof mode, "%s", swb.mode);
    l2sw_at_end = sw_at_end;
    atomic_store(&swb.tid, (long)syscall(SYS_gettid));
    if (join_ns(swb.sw) != 0) {
        atomic_store(&swb.rc, 3);
        return NULL;
    }
    atomic_store(&swb.rc, l2sw_main(10, argv));
    return NULL;
}

/* In host 2's namespace: e2's MAC into mac, and one broadcast frame from it, so that the switch
   learns where it is and forwards to it rather than flooding. */
static int learn_fn(void *arg) {
    unsigned char *mac = (unsigned char *)arg, frame[60];
    struct ifreq ifr;
    struct sockaddr_ll sl;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0), r = -1;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "e2");
    memset(&sl, 0, sizeof sl);
    sl.sll_family = AF_PACKET;
    sl.sll_ifindex = (int)if_nametoindex("e2");
    if (fd >= 0 && sl.sll_ifindex != 0 && ioctl(fd, SIOCGIFHWADDR, &ifr) == 0) {
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
        memset(frame, 0, sizeof frame);
        memset(frame, 0xff, 6);
        memcpy(frame + 6, mac, 6);
        frame[12] = 0x88;   /* local experimental EtherType: nothing on the hosts handles it */
        frame[13] = 0xb5;
        if (sendto(fd, frame, sizeof frame, 0, (struct sockaddr *)&sl, sizeof sl) == (ssize_t)sizeof frame) r = 0;
    }
    if (fd >= 0) close(fd);
    return r;
}

/* Nanoseconds thread tid has waited on a run queue (the second field of its schedstat), or 0. */
static uint64_t sched_wait_ns(long tid) {
    char path[64];
    unsigned long long run = 0, wait = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    f = fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) wait = 0;
    fclose(f);
    return wait;
}

/* One run of the switch in `mode`: h1 sends 60-byte frames to h2 at full speed for `secs`. */
static void switch_run(frame_ctx *f, const char *mode, unsigned secs) {
    pthread_t sw, tx;
    uint64_t allocs = 0, misses = 0;
    unsigned char mac2[6];
    struct stat st;
    int i;
    memset(&swb.rx1, 0, (size_t)((char *)&swb.nclasses - (char *)&swb.rx1));
    swb.mode = mode;
    swb.seconds = secs + 1;   /* outlives the sender, to take what is still in flight when it stops */
    atomic_store(&swb.rc, -1);
    atomic_store(&swb.tid, 0L);
    unlink(swb.stats);
    if (pthread_create(&sw, NULL, switch_thread, NULL) != 0) die("thread failed");
    for (i = 0; i < 3000 && stat(swb.stats, &st) != 0 && atomic_load(&swb.rc) < 0; i++) usleep(10000);
    if (stat(swb.stats, &st) != 0) {
        pthread_join(sw, NULL);
        printf("   %-10s skipped: the switch did not start (exit %d)\n", mode, atomic_load(&swb.rc));
        return;
    }
    if (nu_in_ns(swb.host[1], learn_fn, mac2) != 0) die("host 2's frame failed");
    usleep(20000);
    memcpy(f->frame, mac2, 6);
    memcpy(f->frame + 6, "\x02\x00\x00\x00\x94\x01", 6);
    f->frame[12] = 0x88;
    f->frame[13] = 0xb5;
    memset(f->frame + 14, 0, 60 - 14);
    f->len = 60;
    /* the switch thread's CPU clock, read from here around the sender's run: its cost per frame
       without its idle start and tail */
    clockid_t swclock;
    struct timespec c0, c1;
    uint64_t t0;
    if (pthread_getcpuclockid(sw, &swclock) != 0 || clock_gettime(swclock, &c0) != 0) die("no thread CPU clock");
    uint64_t w0 = sched_wait_ns(atomic_load(&swb.tid));
    t0 = now_ns();
    atomic_store(&stop_send, false);
    if (pthread_create(&tx, NULL, frame_sender, f) != 0) die("thread failed");
    usleep(secs * 1000000u);
    atomic_store(&stop_send, true);
    pthread_join(tx, NULL);
    if (clock_gettime(swclock, &c1) != 0) die("no thread CPU clock");
    swb.wait_ns = w0 ? sched_wait_ns(atomic_load(&swb.tid)) - w0 : 0;
    swb.wall_ns = now_ns() - t0;
    swb.cpu_ns = (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000ll + (c1.tv_nsec - c0.tv_nsec));
    pthread_join(sw, NULL);
    if (atomic_load(&swb.rc) != 0) {
        printf("   %-10s failed: the switch exited %d\n", mode, atomic_load(&swb.rc));
        return;
    }
    double s = (double)f->send_ns / 1e9;
    for (unsigned k = 0; k <= swb.nclasses; k++) {
        allocs += swb.allocs[k];
        misses += swb.misses[k];
    }
    printf("   %-10s forwarded %6.3f Mpps (%llu frames out of p2 in %.2f s); the sender sent %6.3f Mpps\n", mode,
           (double)swb.tx2 / s / 1e6, (unsigned long long)swb.tx2, s, (double)f->sent / s / 1e6);
    printf("   %-10s sent %llu, switch received %llu (forwarded %llu, flooded %llu); dropped: by the kernel at the\n"
           "   %-10s switch's p1 ring %llu, on the veth before it %lld, at p2's full transmit ring %llu, no buffer %llu\n",
           "", (unsigned long long)f->sent, (unsigned long long)swb.rx1, (unsigned long long)swb.forwarded1,
           (unsigned long long)swb.flooded1, "", (unsigned long long)swb.kernel_drops1,
           (long long)f->sent - (long long)swb.rx1 - (long long)swb.kernel_drops1 - (long long)swb.rx_lost1,
           (unsigned long long)swb.tx_full2, (unsigned long long)swb.rx_lost1);
    if (strcmp(mode, "afxdp") == 0)
        printf("   %-10s ports %s, %s; frames out of p2 copied: %llu\n", "", swb.native ? "native" : "generic",
               swb.zerocopy ? "zero-copy" : "copy mode", (unsigned long long)swb.tx_copied2);
    printf("   %-10s switch thread: %.0f CPU ns per frame forwarded, on a CPU %.0f%% of the time h1 sent and waiting\n"
           "   %-10s for one %.0f%% (runnable; /proc schedstat), the rest in poll (the kernel's delivery of its\n"
           "   %-10s sends to h2 runs on it and counts in it)\n", "",
           (double)swb.cpu_ns / (double)(swb.tx2 ? swb.tx2 : 1), 100.0 * (double)swb.cpu_ns / (double)swb.wall_ns, "",
           100.0 * (double)swb.wait_ns / (double)swb.wall_ns, "");
    printf("   %-10s pool cache hit rate %.5f (%llu allocations, %llu refills:", "",
           allocs ? 1.0 - (double)misses / (double)allocs : 0.0, (unsigned long long)allocs, (unsigned long long)misses);
    for (unsigned k = 0; k <= swb.nclasses; k++)
        if (swb.allocs[k]) {
            if (k < swb.nclasses) printf(" %u-byte class %llu/%llu", swb.room[k], (unsigned long long)swb.allocs[k],
                                         (unsigned long long)swb.misses[k]);
            else printf(" clone class %llu/%llu", (unsigned long long)swb.allocs[k], (unsigned long long)swb.misses[k]);
        }
    printf(")\n");
}

static void switch_section(void) {
    static frame_ctx f;
    const char *why;
    unsigned secs = quick ? 1 : 3;
    printf("\n3. The L2 switch (examples/l2_switch.c, its loop in a thread here) between three veth-attached hosts:\n"
           "   h1 sends 60-byte frames (64 on the wire) to h2's learned MAC in bursts of 64 through an AF_PACKET\n"
           "   ring, as fast as it can, for %u s; one run. Forwarded: frames the switch sent out of h2's port per\n"
           "   second of the sender's run. Cache hit rate: the pool's allocations that the switch thread's own\n"
           "   cache served without a refill from the pool's shared store (1 - refills / allocations, every\n"
           "   class; a refill takes half a cache). The veth's drops are the frames sent that the switch's ring\n"
           "   neither received nor counted as dropped (the receiving CPU's backlog was full).\n", secs);
    if (geteuid() != 0) {
        printf("   skipped: not root (the bench makes four network namespaces and three veth pairs)\n");
        return;
    }
    if ((why = sw_make()) != NULL) {
        printf("   skipped: %s\n", why);
        sw_del();
        return;
    }
    memset(&f, 0, sizeof f);
    snprintf(f.v.ns[0], sizeof f.v.ns[0], "%s", swb.host[0]);
    snprintf(f.v.dev[0], sizeof f.v.dev[0], "e1");
    switch_run(&f, "afpacket", secs);
    switch_run(&f, "afxdp", secs);
    sw_del();
}

int main(void) {
    bench_read_iters();
    quick = getenv("BUFFET_BENCH_QUICK") && strcmp(getenv("BUFFET_BENCH_QUICK"), "0") != 0;
    bench_print_machine("");
    bench_print_load();
    bench_print_iters();
    if (quick) printf("BUFFET_BENCH_QUICK: short runs, rough numbers\n");
    tcp_section();
    frames_section();
    switch_section();
    return 0;
}
