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
      Mpps received, and the receiving thread's CPU time per frame (CLOCK_THREAD_CPUTIME_ID):
      with two cores the sender's core also runs the kernel's receive path (veth delivers in
      the sender's context), so Mpps says as much of the sender as of the receiver; CPU ns per
      frame is the receiver's own cost. AF_XDP is not built yet: its row says so.
   Still to come here: AF_XDP receive, and the L2 switch.
   BUFFET_BENCH_QUICK=1 makes every run short (rough numbers, for checking that it works). */
#define BUFFET_NET_URING 1
#define BUFFET_NET_AFPACKET 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

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
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
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
    while (!atomic_load_explicit(&stop_send, memory_order_relaxed)) {
        size_t i, sent = 0;
        for (i = 0; i < 64; i++) {
            if (!(pk[i] = buffet_pkt_alloc(cache, f->len))) die("sender alloc failed");
            memcpy(buffet_pkt_append(pk[i], f->len), f->frame, f->len);
        }
        buffet_result r = buffet_net_afp_send(a, pk, 64, &sent);
        if (r != BUFFET_OK && r != BUFFET_AGAIN) die("the sender's send failed");
        for (i = sent; i < 64; i++) buffet_pkt_free(cache, pk[i]);
        if (r == BUFFET_AGAIN) sched_yield();
    }
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
    f.udp = nu_in_ns(f.v.ns[1], udp_fn, NULL);
    if (f.udp < 0 || nu_in_ns(f.v.ns[1], mac_fn, &f) != 0) die("the receiving side failed");
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        frame_side sa = {&f, 0, 0}, sb = {&f, 0, 0};
        contestant cs[2] = {{"recvmmsg (buffet_net_udp_recv)", run_recvmmsg, &sa, (double)FRAMES},
                            {"AF_PACKET TPACKET_V3 (buffet_net_afp_recv)", run_afpacket, &sb, (double)FRAMES}};
        double ns[2];
        pthread_t t;
        frame_build(&f, lens[l]);
        atomic_store(&stop_send, false);
        if (pthread_create(&t, NULL, frame_sender, &f) != 0) die("thread failed");
        printf("   %zu-byte frames (%zu on the wire with the frame check sequence):\n", lens[l], lens[l] + 4);
        bench_table = lens[l] == 60 ? "2. frames, 64 B" : "2. frames, 1518 B";
        measure(cs, 2, ns, quick ? 1e7 : 2e8, 1);
        printf("   %-44s %7.2f Mpps  %6.0f CPU ns/frame\n", cs[0].name, 1e3 / ns[0], (double)sa.cpu_ns / (double)(sa.frames ? sa.frames : 1));
        printf("   %-44s %7.2f Mpps  %6.0f CPU ns/frame\n", cs[1].name, 1e3 / ns[1], (double)sb.cpu_ns / (double)(sb.frames ? sb.frames : 1));
        printf("   %-44s not built yet\n", "AF_XDP");
        printf("   AF_PACKET / recvmmsg: %.2fx the rate, %.2fx the CPU per frame\n", ns[0] / ns[1],
               ((double)sb.cpu_ns / (double)(sb.frames ? sb.frames : 1)) / ((double)sa.cpu_ns / (double)(sa.frames ? sa.frames : 1)));
        print_spread();
        atomic_store(&stop_send, true);
        pthread_join(t, NULL);
    }
    close(f.udp);
    buffet_pkt_cache_destroy(f.cache);
    buffet_pkt_pool_destroy(f.pool);
    nu_veth_del(&f.v);
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
    return 0;
}
