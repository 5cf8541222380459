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
   Still to come here: AF_PACKET and AF_XDP receive from a veth peer, and the L2 switch.
   BUFFET_BENCH_QUICK=1 makes every run short (rough numbers, for checking that it works). */
#define BUFFET_NET_URING 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <pthread.h>
#include <stdatomic.h>
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

int main(void) {
    rx_ctx c;
    int tx;
    pthread_t t;
    buffet_result r;
    bench_read_iters();
    quick = getenv("BUFFET_BENCH_QUICK") && strcmp(getenv("BUFFET_BENCH_QUICK"), "0") != 0;
    bench_print_machine("");
    bench_print_load();
    bench_print_iters();
    if (quick) printf("BUFFET_BENCH_QUICK: short runs, rough numbers\n");
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
            return 0;
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
    return 0;
}
