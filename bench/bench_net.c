/* bench_net.c - buffet_net.h against what a C programmer would otherwise write, side by side in
   one process run, in three sections.

   1. TCP on loopback, stream send:
     a) chain send: a message of M bytes held as a chain of 16 KiB heap buffers (built per
        message: a reference per slice, as a server assembling a reply does), sent with
        buffet_net_send_chain (one sendmsg over up to 1024 iovecs)
     b) hand-written sendmsg: one sendmsg over iovecs of the same pieces, written out by hand (what
        buffet_net_send_chain does, without a chain): the kernel's own cost of scattered memory,
        so that a/b is buffet's overhead alone
     c) copy + send: the same 16 KiB pieces copied into one contiguous buffer, then send() in a
        loop until all of it went (what code without scatter-gather does)
     d) contiguous send: M bytes already contiguous, send() in a loop: the floor of what a
        message of M bytes costs to hand to the kernel
     e) iperf3 on the same loopback, a contestant like the others: one server for the section,
        and in every repetition a client run of the same bytes (at least 128 MiB: shorter runs
        report nothing received) in writes and reads of the message size, at most 1 MiB (the
        most iperf3 takes), its time being what iperf3's receiver measured; skipped with the
        reason when iperf3 is not installed
   for M = 64 KiB, 128 KiB, 256 KiB, 1 MiB, 4 MiB. Every run is on a new connection, as every
   iperf3 run is, so that the receive buffer autotunes from its default alike for all (on one
   connection kept for the section it grows to tcp_rmem's maximum, and the more bytes in flight,
   the slower loopback goes); a second thread drains it as fast as it can, reading what iperf3's
   receiver reads at a time (M, at most 1 MiB), and a run is timed until the drain has read the
   last byte. The sender, the drain and both ends of iperf3 share the first CPU this process may
   use: on the 2-vCPU machines this is measured on, the same runs with the drain on a CPU of its
   own (BUFFET_BENCH_TCP_SPLIT=1) spread 3-4 times wider (interquartile range 44-94% of the
   median against 7-32%), and a ratio needs the narrow spread (BUFFET_BENCH_NOPIN=1: wherever
   the scheduler puts them). Gbit/s, and ratios chain / peer (above 1: the chain send is
   faster), each the median of the ratios within each repetition (the contestants alternate, so
   a slow stretch of the machine hits both sides of a ratio). The goal line calls the chain send
   "above" a peer when that median is at least 1, "at" when the sign test's 99% interval for it
   (the 2nd to the 10th of the 11 ratios) reaches 1 (the two cannot be told apart in this run),
   else "below".

   2. UDP on loopback, datagrams of 64 and 1400 payload bytes, one unconnected sender addressing
   each datagram (as a server answering many peers does), a receiver thread draining:
     a) per packet: sendto() / recvfrom(), one datagram per call
     b) batched: buffet_net_udp_send / buffet_net_udp_recv, sendmmsg / recvmmsg of 64 datagrams,
        each a buffet packet (pool with a buffet_net_meta user area) allocated, filled and freed
     c) GSO / GRO: buffet_net_udp_send_gso from one buffer (up to 64 segments a call), received
        on a UDP_GRO socket by buffet_net_udp_recv, which splits each coalesced datagram back
        into one packet per datagram (clones); the datagrams are counted after the split
   Every contestant writes each datagram's payload (a memcpy) before it goes out. Only plain
   receives: no timestamps, pktinfo or ECN (buffet_net_udp_setup is not called; UDP_GRO is set
   with setsockopt). Receiver side: what arrived, in datagrams/s and Gbit/s of payload, over the
   time from the first send to the last arrival; drops (sent - received) are counted and
   printed, never hidden. Receive buffers are raised (SO_RCVBUFFORCE as root, else SO_RCVBUF up
   to rmem_max) to keep drops down. Ratios batched / per packet and GSO-GRO / per packet.

   3. MSG_ZEROCOPY against a plain send, TCP over a veth pair between two network namespaces the
   bench makes (root and iproute2's `ip`; otherwise "skipped: <reason>"), torn down at exit,
   even on an error or a signal. Messages of 64 KiB, 256 KiB, 1 MiB, 4 MiB as chains of 16 KiB
   buffers: buffet_net_send_chain against buffet_net_send_chain_zc, whose completions are
   drained after each message and waited for at the end of each run (the buffers are free to
   reuse only then, so that time counts). Gbit/s, the ratio zerocopy / plain, and how many
   zerocopy calls the kernel reported as copied: veth, like loopback, delivers to a local socket,
   so the kernel copies after all; this measures what zerocopy's bookkeeping costs, not its gain
   on a NIC.

   Every number is the median of REPS repetitions after a warm-up; within a repetition the
   contestants alternate (in reverse order every other repetition). BUFFET_BENCH_QUICK=1 makes
   every run short (a few seconds in all): rough numbers, for checking that it works. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>

#ifndef UDP_GRO
#define UDP_GRO 104   /* linux/udp.h, Linux 5.0 */
#endif

#define BENCH_NAME "bench_net"
#define REPS 11
#define MAX_CONTESTANTS 5
#include "bench.h"
#include "../tests/net_util.h"

extern char **environ;

#define PIECE (16 << 10)
#define MAX_MSG (4 << 20)
#define IPERF3_MAX_BLOCK (1 << 20)   /* the largest -l iperf3 takes */

/* BUFFET_BENCH_QUICK: short runs everywhere. */
static bool quick;

typedef struct ctx {
    int fd;
    bool fresh;                     /* section 1: every run on a new connection (conn_begin) */
    int rx;                         /* the drain's end of that connection */
    pthread_t drainer;
    size_t msg;                     /* bytes per message */
    buffet_buf *pieces[MAX_MSG / PIECE];
    unsigned char *flat;            /* MAX_MSG contiguous bytes */
    buffet_chain chain;
    buffet_net_zc *zc;              /* section 3 */
    uint64_t zc_completed, zc_copied, zc_full;   /* completions, of them copied; ENOBUFS retries */
} ctx;

static atomic_bool stop_drain;
static atomic_size_t drain_chunk = IPERF3_MAX_BLOCK;   /* bytes a read asks for: iperf3's block for the message size */
static int tcp_cpu[2];              /* the sender's and the drain's CPU (-1: not pinned) */
static void *drain(void *arg) {
    int fd = *(int *)arg;
    static unsigned char sink[IPERF3_MAX_BLOCK];
    bench_pin_self(tcp_cpu[1], NULL);
    while (!atomic_load_explicit(&stop_drain, memory_order_relaxed))
        if (read(fd, sink, atomic_load_explicit(&drain_chunk, memory_order_relaxed)) <= 0) break;
    return NULL;
}

/* Section 1 runs each contestant on a new connection, as each iperf3 run is: the receive buffer
   autotunes from its default alike for all (on a connection kept for the whole section it grows
   to tcp_rmem's maximum, and the larger amount in flight makes loopback slower here). */
static void conn_begin(ctx *c) {
    if (!c->fresh) return;
    if (!nu_tcp_pair(&c->fd, &c->rx)) die("TCP over loopback failed");
    if (pthread_create(&c->drainer, NULL, drain, &c->rx) != 0) die("thread failed");
}
/* The ns since t0, on a new connection until the drain has read the last byte (what iperf3's
   receiver counts). */
static uint64_t conn_end(ctx *c, uint64_t t0) {
    uint64_t t;
    if (!c->fresh) return now_ns() - t0;
    shutdown(c->fd, SHUT_WR);
    pthread_join(c->drainer, NULL);
    t = now_ns() - t0;
    close(c->fd);
    close(c->rx);
    return t;
}

static void send_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0) { if (errno == EINTR) continue; die("send failed"); }
        p += r;
        n -= (size_t)r;
    }
}

static void build_chain(ctx *c) {
    for (size_t k = 0; k < c->msg / PIECE; k++)
        if (buffet_chain_append(&c->chain, c->pieces[k], 0, PIECE) != BUFFET_OK) die("append failed");
}

static uint64_t run_chain(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    conn_begin(c);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        build_chain(c);
        if (buffet_net_send_chain(c->fd, &c->chain, 0, NULL) != BUFFET_OK) die("chain send failed");
    }
    return conn_end(c, t0);
}
static uint64_t run_sendmsg(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    static struct iovec iov[MAX_MSG / PIECE];
    conn_begin(c);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        size_t n = c->msg / PIECE, off = 0;
        for (size_t k = 0; k < n; k++) {
            iov[k].iov_base = c->pieces[k]->data;
            iov[k].iov_len = PIECE;
        }
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = n;
        while (off < c->msg) {   /* a blocking socket takes it all, but a signal may cut it */
            ssize_t r = sendmsg(c->fd, &m, MSG_NOSIGNAL);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) die("sendmsg failed");
            off += (size_t)r;
            while (m.msg_iovlen > 0 && (size_t)r >= m.msg_iov->iov_len) {
                r -= (ssize_t)m.msg_iov->iov_len;
                m.msg_iov++;
                m.msg_iovlen--;
            }
            if (m.msg_iovlen > 0) {
                m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + r;
                m.msg_iov->iov_len -= (size_t)r;
            }
        }
    }
    return conn_end(c, t0);
}
static uint64_t run_copy(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    conn_begin(c);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        for (size_t k = 0; k < c->msg / PIECE; k++) memcpy(c->flat + k * PIECE, c->pieces[k]->data, PIECE);
        escape(c->flat);
        send_all(c->fd, c->flat, c->msg);
    }
    return conn_end(c, t0);
}
static uint64_t run_flat(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    conn_begin(c);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) send_all(c->fd, c->flat, c->msg);
    return conn_end(c, t0);
}

/* iperf3 as a contestant: one server for the whole section, and per run a client that moves
   the run's bytes (-n) in writes of the block (-l), pinned as the sender and the drain are. Its
   time is what iperf3's receiver measured (sum_received), so its start-up is not counted. */
typedef struct iperf3_ctx {
    pid_t server;                   /* 0: none */
    char port[16];
    size_t msg, block;              /* bytes per message (an iteration), per write */
} iperf3_ctx;

/* Start the server: true, or false with the reason in why. */
static bool iperf3_start(iperf3_ctx *p, char *why, size_t cap) {
    char *srv[] = {(char *)"iperf3", (char *)"-s", (char *)"-p", p->port, NULL};
    posix_spawn_file_actions_t fa;
    int rc, status;
    snprintf(p->port, sizeof p->port, "%d", 20000 + (int)(getpid() % 20000));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);   /* the server's chatter */
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    fflush(stdout);
    rc = posix_spawnp(&p->server, "iperf3", &fa, NULL, srv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        p->server = 0;
        snprintf(why, cap, "iperf3 is not installed (make bench-deps)");
        return false;
    }
    usleep(300000);   /* the server starts listening */
    if (waitpid(p->server, &status, WNOHANG) == p->server) {
        p->server = 0;
        snprintf(why, cap, "the iperf3 server exited at once (port %s taken?)", p->port);
        return false;
    }
    return true;
}
static void iperf3_stop(iperf3_ctx *p) {
    if (!p->server) return;
    kill(p->server, SIGTERM);
    waitpid(p->server, NULL, 0);
    p->server = 0;
}
/* One client run of iters messages: the ns iperf3's receiver took for them, or 0 when iperf3
   printed no result (reason in why). */
static uint64_t iperf3_once(iperf3_ctx *p, size_t iters, char *why, size_t cap) {
    char cmd[200], pin[40] = "", out[65536];
    double bytes = (double)iters * (double)p->msg, bps = 0;
    if (tcp_cpu[0] >= 0) snprintf(pin, sizeof pin, "-A %d,%d", tcp_cpu[0], tcp_cpu[1]);
    /* at least 128 MiB a run: iperf3 reports 0 bytes received for a run of a few milliseconds;
       the rate it measured is then taken for the run's bytes */
    snprintf(cmd, sizeof cmd, "iperf3 -c 127.0.0.1 -p %s -n %.0f -l %zu %s -J 2>/dev/null", p->port,
             bytes > 134217728.0 ? bytes : 134217728.0, p->block, pin);
    for (int tries = 0; tries < 3 && !(bps > 0); tries++) {   /* a run the server missed is run again */
        FILE *f = popen(cmd, "r");
        size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
        out[n] = '\0';
        if (f) pclose(f);
        const char *s = strstr(out, "\"sum_received\"");
        s = s ? strstr(s, "\"bits_per_second\"") : NULL;
        bps = s ? strtod(strchr(s, ':') + 1, NULL) : 0;
    }
    if (!(bps > 0)) {
        snprintf(why, cap, "iperf3 printed no result");
        return 0;
    }
    return (uint64_t)(bytes * 8 / bps * 1e9);
}
static uint64_t run_iperf3(void *v, size_t iters) {
    char why[64];
    uint64_t ns = iperf3_once((iperf3_ctx *)v, iters, why, sizeof why);
    if (!ns) {
        iperf3_stop((iperf3_ctx *)v);   /* no server left behind */
        die(why);
    }
    return ns;
}

/* "at or above": the median ratio is at least 1, or the sign test's interval for it (the 2nd to
   the 10th of 11 ratios, one per repetition: 99% confidence) reaches 1, so that this run cannot
   tell the two apart. 99%, not less: the goal line judges ten such pairs at once. */
_Static_assert(REPS == 11, "at_or_above's interval is the sign test's for 11 repetitions");
static const char *at_or_above(int a, int b) {
    double r[REPS];
    for (int k = 0; k < REPS; k++) r[k] = bench_sample[b][k] / bench_sample[a][k];
    qsort(r, REPS, sizeof(double), cmp_double);
    return r[REPS / 2] >= 1.0 ? "above" : r[REPS - 2] >= 1.0 ? "at" : "below";
}

static void tcp_section(ctx *c) {
    static const size_t sizes[5] = {64 << 10, 128 << 10, 256 << 10, 1 << 20, 4 << 20};
    cpu_set_t all;
    int below = 0;
    char why[128] = "", verdicts[5][2][8];
    iperf3_ctx ip;
    memset(&ip, 0, sizeof ip);
    bench_pick_cpus(tcp_cpu);
    if (!getenv("BUFFET_BENCH_TCP_SPLIT")) tcp_cpu[1] = tcp_cpu[0];
    bench_pin_self(tcp_cpu[0], &all);
    atomic_store(&stop_drain, false);
    c->fresh = true;
    bool have_iperf3 = iperf3_start(&ip, why, sizeof why);
    printf("\nTCP over loopback, a thread draining the connection; Gbit/s (median of %d), ratio chain / peer\n"
           "(the median of the ratios within each repetition); every run on a new connection, timed until the\n"
           "drain has read the last byte; iperf3 with writes and reads of the message size (at most 1 MiB),\n"
           "one run of it in each repetition; ", REPS);
    if (tcp_cpu[0] < 0) printf("not pinned\n");
    else if (tcp_cpu[0] == tcp_cpu[1])
        printf("sender, drain and iperf3 on CPU %d\n(BUFFET_BENCH_TCP_SPLIT=1: the drain on a CPU of its own)\n", tcp_cpu[0]);
    else printf("sender and iperf3's client on CPU %d, drain and iperf3's server on CPU %d\n", tcp_cpu[0], tcp_cpu[1]);
    printf("%-9s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "message", "chain", "sendmsg", "copy", "contig.", "iperf3",
           "vs sendm", "vs copy", "vs cont.", "vs iperf");
    for (int i = 0; i < 5; i++) {
        contestant cs[5] = {{"chain send", run_chain, c, 0}, {"hand-written sendmsg", run_sendmsg, c, 0},
                            {"copy + send", run_copy, c, 0}, {"contiguous send", run_flat, c, 0},
                            {"iperf3", run_iperf3, &ip, 0}};
        int n = have_iperf3 ? 5 : 4;
        double ns[5];
        c->msg = ip.msg = sizes[i];
        ip.block = sizes[i] < IPERF3_MAX_BLOCK ? sizes[i] : IPERF3_MAX_BLOCK;
        atomic_store(&drain_chunk, ip.block);
        for (int k = 0; k < n; k++) cs[k].ops_per_iter = (double)sizes[i];   /* ns per byte */
        measure(cs, n, ns, quick ? 1e7 : 2e8, 4);
        printf("%4zu KiB  %8.1f %8.1f %8.1f %8.1f ", sizes[i] >> 10, 8 / ns[0], 8 / ns[1], 8 / ns[2], 8 / ns[3]);
        if (have_iperf3) printf("%8.1f ", 8 / ns[4]);
        else printf("%8s ", "-");
        printf("%7.2fx %7.2fx %7.2fx ", paired_ratio(0, 1), paired_ratio(0, 2), paired_ratio(0, 3));
        if (have_iperf3) printf("%7.2fx\n", paired_ratio(0, 4));
        else printf("%8s\n", "-");
        for (int k = 0; k < 2; k++) {
            const char *v = k == 0 ? at_or_above(0, 3) : have_iperf3 ? at_or_above(0, 4) : "-";
            snprintf(verdicts[i][k], sizeof verdicts[i][k], "%s", v);
            below += !strcmp(v, "below");
        }
    }
    print_spread();
    iperf3_stop(&ip);
    if (!have_iperf3) printf("iperf3: skipped: %s\n", why);
    printf("goal (chain send at or above the contiguous send and iperf3; 'at': the 99%% interval of the\n"
           "median ratio reaches 1):");
    for (int i = 0; i < 5; i++) printf("%s %zu KiB %s/%s", i ? "," : "", sizes[i] >> 10, verdicts[i][0], verdicts[i][1]);
    printf(" -- %s\n", below || !have_iperf3 ? "NOT met" : "met");
    c->fresh = false;
    if (sched_setaffinity(0, sizeof all, &all) != 0) die("sched_setaffinity failed");
}

/* ---- 2. UDP on loopback ---- */
#define UDP_BATCH 64                                           /* datagrams a sendmmsg / recvmmsg */
#define GRO_SLOTS (UDP_BATCH * BUFFET_NET_GSO_MAX_SEGS)         /* packets one GRO receive may split into */
#define GRO_BYTES 64400                                         /* most payload a GSO call carries here:
                                                                   46 x 1400, under the large class */
enum { U_PLAIN, U_MMSG, U_GSO, U_KINDS };
static const char *const udp_names[U_KINDS] = {"per packet", "batched", "GSO/GRO"};

typedef struct udp_bench {
    int tx;                         /* the sender: unconnected, every datagram addressed */
    int rx[U_KINDS];                /* a receiving socket per contestant (U_GSO's has UDP_GRO) */
    buffet_net_meta to[U_KINDS];    /* where each contestant sends (meta.peer) */
    buffet_pkt_pool *pool;          /* class 0: 2 KiB, class 1: a whole coalesced GRO datagram */
    buffet_pkt_cache *cache;        /* the sender's (this thread's) */
    size_t size;                    /* payload bytes per datagram */
    unsigned char *tmpl, *buf;      /* the payload written into each datagram; the send buffer */
    uint64_t duration_ns;           /* the sender's time per run */
} udp_bench;

/* One run: the sender (the main thread) and the receiver thread it starts. */
typedef struct udp_run {
    udp_bench *u;
    int kind;
    atomic_bool ready, done;
    atomic_uint_least64_t sent;     /* stored before done */
    uint64_t received, last_ns;     /* the receiver's: read after the join */
} udp_run;

/* Datagrams one received packet stands for: several when a GRO datagram stayed whole (no room
   to split it; cannot happen with GRO_SLOTS, counted right anyway). */
static uint64_t udp_count(buffet_pkt *p) {
    buffet_net_meta *m = buffet_net_meta_of(p);
    if (m && m->seg_size && p->pkt_len > m->seg_size) return (p->pkt_len + m->seg_size - 1u) / m->seg_size;
    return 1;
}

/* Receive until the sender is done and everything it sent arrived, or nothing came for 50 ms
   after it was done (drops): the socket is empty then, so nothing leaks into the next run. */
static void *udp_receiver(void *arg) {
    udp_run *r = (udp_run *)arg;
    udp_bench *u = r->u;
    int fd = u->rx[r->kind];
    static buffet_pkt *pkts[GRO_SLOTS];    /* one receiver at a time */
    static unsigned char buf[65536];
    buffet_pkt_cache *c = NULL;
    uint64_t idle_since = 0;
    if (r->kind != U_PLAIN && buffet_pkt_cache_create(&c, u->pool, 512) != BUFFET_OK) die("cache failed");
    atomic_store_explicit(&r->ready, true, memory_order_release);
    for (;;) {
        uint64_t n = 0;
        if (r->kind == U_PLAIN) {
            buffet_net_addr from;
            socklen_t flen = sizeof from;
            if (recvfrom(fd, buf, sizeof buf, 0, &from.sa, &flen) >= 0) n = 1;
            else if (errno != EAGAIN && errno != EINTR) die("recvfrom failed");
        } else {
            size_t got = 0;
            buffet_result res = buffet_net_udp_recv(fd, c, r->kind == U_GSO ? 1 : 0, pkts,
                                                    r->kind == U_GSO ? GRO_SLOTS : UDP_BATCH, &got);
            if (res != BUFFET_OK && res != BUFFET_AGAIN) {
                fprintf(stderr, BENCH_NAME ": buffet_net_udp_recv: %s\n", buffet_result_str(res));
                exit(1);
            }
            for (size_t i = 0; i < got; i++) n += udp_count(pkts[i]);
            buffet_pkt_free_bulk(c, pkts, got);
        }
        if (n) {
            r->received += n;
            r->last_ns = now_ns();
            idle_since = 0;
            continue;
        }
        /* Acquire: pairs with the sender's release of done, so sent is its final count. */
        if (atomic_load_explicit(&r->done, memory_order_acquire)) {
            uint64_t t = now_ns();
            if (r->received >= atomic_load_explicit(&r->sent, memory_order_relaxed)) break;
            if (!idle_since) idle_since = t;
            else if (t - idle_since > 50000000u) break;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        poll(&pf, 1, 5);
    }
    buffet_pkt_cache_destroy(c);
    return NULL;
}

/* One round of the sender: datagrams sent. */
static uint64_t udp_send_some(udp_bench *u, int kind) {
    const buffet_net_meta *to = &u->to[kind];
    socklen_t alen = sizeof to->peer.in4;
    uint64_t n = 0;
    if (kind == U_PLAIN) {
        for (int i = 0; i < UDP_BATCH; i++) {
            memcpy(u->buf, u->tmpl, u->size);
            if (sendto(u->tx, u->buf, u->size, 0, &to->peer.sa, alen) == (ssize_t)u->size) n++;
            else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) die("sendto failed");
        }
    } else if (kind == U_MMSG) {
        buffet_pkt *p[UDP_BATCH];
        size_t sent = 0;
        if (buffet_pkt_alloc_bulk(u->cache, 0, p, UDP_BATCH) != UDP_BATCH) die("packets ran out");
        for (int i = 0; i < UDP_BATCH; i++) {
            memcpy(buffet_pkt_append(p[i], u->size), u->tmpl, u->size);
            buffet_net_meta_of(p[i])->peer = to->peer;
        }
        buffet_result r = buffet_net_udp_send(u->tx, u->cache, p, UDP_BATCH, &sent);
        buffet_pkt_free_bulk(u->cache, p + sent, UDP_BATCH - sent);   /* what did not go is ours */
        if (r != BUFFET_OK && r != BUFFET_AGAIN && r != BUFFET_ERR_SYSTEM) {
            fprintf(stderr, BENCH_NAME ": buffet_net_udp_send: %s\n", buffet_result_str(r));
            exit(1);
        }
        n = sent;
    } else {
        size_t segs = GRO_BYTES / u->size, sent = 0;
        if (segs > BUFFET_NET_GSO_MAX_SEGS) segs = BUFFET_NET_GSO_MAX_SEGS;
        memcpy(u->buf, u->tmpl, segs * u->size);
        buffet_result r = buffet_net_udp_send_gso(u->tx, u->buf, segs * u->size, u->size, to, &sent);
        if (r != BUFFET_OK && r != BUFFET_AGAIN && r != BUFFET_ERR_SYSTEM) {
            fprintf(stderr, BENCH_NAME ": buffet_net_udp_send_gso: %s\n", buffet_result_str(r));
            exit(1);
        }
        n = sent / u->size;
    }
    return n;
}

/* One run of a contestant: *ns gets ns per datagram received, *drops what did not arrive. */
static void udp_run_one(udp_bench *u, int kind, double *ns, uint64_t *sent_out, uint64_t *drops) {
    udp_run r;
    pthread_t t;
    uint64_t sent = 0, t0, rounds = 0;
    memset(&r, 0, sizeof r);
    r.u = u;
    r.kind = kind;
    atomic_init(&r.ready, false);
    atomic_init(&r.done, false);
    atomic_init(&r.sent, 0);
    if (pthread_create(&t, NULL, udp_receiver, &r) != 0) die("thread failed");
    for (unsigned spins = 0; !atomic_load_explicit(&r.ready, memory_order_acquire);) backoff(&spins);
    t0 = now_ns();
    do {
        sent += udp_send_some(u, kind);
        rounds++;
    } while (fixed_iters ? rounds < fixed_iters : now_ns() - t0 < u->duration_ns);
    atomic_store_explicit(&r.sent, sent, memory_order_relaxed);
    atomic_store_explicit(&r.done, true, memory_order_release);   /* publishes sent */
    pthread_join(t, NULL);
    if (r.received == 0) die("no datagram arrived");
    *ns = (double)(r.last_ns - t0) / (double)r.received;
    *sent_out += sent;
    *drops += r.received < sent ? sent - r.received : 0;
}

/* A UDP socket bound to 127.0.0.1 with a large receive buffer; *a gets its address. */
static int udp_socket(buffet_net_addr *a, int *rcvbuf) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), big = 64 << 20;
    socklen_t l = sizeof a->in4;
    if (fd < 0) die("socket failed");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);   /* not root: up to rmem_max */
    memset(a, 0, sizeof *a);
    a->in4.sin_family = AF_INET;
    a->in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, &a->sa, sizeof a->in4) != 0 || getsockname(fd, &a->sa, &l) != 0) die("bind failed");
    l = sizeof *rcvbuf;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf, &l);
    /* Receivers wait in poll, so a socket that is empty says so at once. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void udp_section(void) {
    static const size_t sizes[2] = {64, 1400};
    udp_bench u;
    buffet_pkt_pool_desc pd;
    int rcvbuf = 0, one = 1;
    double ratio_gso[2];
    memset(&u, 0, sizeof u);
    memset(&pd, 0, sizeof pd);
    pd.name = "bench_udp";
    pd.class_sizes[0] = 2048;
    pd.class_sizes[1] = 65535 - 128;   /* a whole coalesced datagram, after the headroom */
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = 256;
    pd.max = 2 * GRO_SLOTS;
    if (buffet_pkt_pool_create(&u.pool, &pd) != BUFFET_OK) die("pool failed");
    if (buffet_pkt_cache_create(&u.cache, u.pool, 256) != BUFFET_OK) die("cache failed");
    u.tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (u.tx < 0) die("socket failed");
    for (int k = 0; k < U_KINDS; k++) u.rx[k] = udp_socket(&u.to[k].peer, &rcvbuf);
    u.tmpl = (unsigned char *)malloc(65536);
    u.buf = (unsigned char *)malloc(65536);
    if (!u.tmpl || !u.buf) die("out of memory");
    for (size_t i = 0; i < 65536; i++) u.tmpl[i] = (unsigned char)rnd();
    u.duration_ns = quick ? 20000000u : 200000000u;
    printf("\nUDP over loopback, one unconnected sender, a receiver thread draining (receive buffers %d MiB);\n"
           "datagrams/s and Gbit/s of payload received (median of %d), ratio to per packet\n",
           rcvbuf >> 20, REPS);
    if (setsockopt(u.rx[U_GSO], IPPROTO_UDP, UDP_GRO, &one, sizeof one) != 0) {
        printf("GSO/GRO: skipped: UDP_GRO refused (%s): the kernel has no UDP GRO (before Linux 5.0)\n",
               strerror(errno));
        goto out;
    }
    printf("%-8s %22s %22s %22s %10s %10s\n", "payload", "sendto/recvfrom", "sendmmsg/recvmmsg", "GSO/GRO",
           "batched", "GSO/GRO");
    for (int s = 0; s < 2; s++) {
        static double v[U_KINDS][REPS];
        uint64_t sent[U_KINDS] = {0}, drops[U_KINDS] = {0};
        double med[U_KINDS];
        int reps = fixed_iters ? 1 : REPS;
        u.size = sizes[s];
        if (!fixed_iters)
            for (int k = 0; k < U_KINDS; k++) {   /* warm-up: its figures are not kept */
                uint64_t x = 0, y = 0;
                udp_run_one(&u, k, &v[k][0], &x, &y);
            }
        for (int r = 0; r < reps; r++)
            for (int j = 0; j < U_KINDS; j++) {
                int k = (r & 1) ? U_KINDS - 1 - j : j;
                udp_run_one(&u, k, &v[k][r], &sent[k], &drops[k]);
            }
        for (int k = 0; k < U_KINDS; k++) {
            char name[48];
            qsort(v[k], (size_t)reps, sizeof(double), cmp_double);
            med[k] = v[k][reps / 2];
            snprintf(name, sizeof name, "UDP %s %zu B", udp_names[k], u.size);
            if (!fixed_iters) note_spread(name, med[k], v[k][reps / 4], v[k][(3 * reps) / 4]);
        }
        printf("%5zu B ", u.size);
        for (int k = 0; k < U_KINDS; k++)
            printf(" %8.2f Mpps %6.2f Gbit/s", 1e3 / med[k], 8.0 * (double)u.size / med[k]);
        printf(" %9.2fx %9.2fx\n", med[U_PLAIN] / med[U_MMSG], med[U_PLAIN] / med[U_GSO]);
        ratio_gso[s] = med[U_PLAIN] / med[U_GSO];
        printf("         drops (sent - received, all runs):");
        for (int k = 0; k < U_KINDS; k++)
            printf(" %s %llu of %llu (%.2f%%)%s", udp_names[k], (unsigned long long)drops[k],
                   (unsigned long long)sent[k], sent[k] ? 100.0 * (double)drops[k] / (double)sent[k] : 0.0,
                   k + 1 < U_KINDS ? "," : "\n");
    }
    print_spread();
    printf("goal (GSO/GRO at least 3x per packet): 64 B %.2fx %s, 1400 B %.2fx %s\n", ratio_gso[0],
           ratio_gso[0] >= 3 ? "met" : "NOT met", ratio_gso[1], ratio_gso[1] >= 3 ? "met" : "NOT met");
out:
    for (int k = 0; k < U_KINDS; k++) close(u.rx[k]);
    close(u.tx);
    free(u.tmpl);
    free(u.buf);
    buffet_pkt_cache_destroy(u.cache);
    buffet_pkt_pool_destroy(u.pool);
}

/* ---- 3. MSG_ZEROCOPY over veth between two network namespaces ---- */
static nu_veth zc_veth;                 /* A: 10.213.0.1 (the sender), B: 10.213.0.2 */
static char ns_del_cmd[160];            /* made before any signal can come: the handler runs it */

/* Runs `sh -c cmd` with fork and execve only: safe inside a signal handler. */
static void ns_run_del(void) {
    char *argv[] = {(char *)"sh", (char *)"-c", ns_del_cmd, NULL};
    pid_t p = fork();
    if (p == 0) {
        execve("/bin/sh", argv, environ);
        _exit(127);
    }
    if (p > 0) waitpid(p, NULL, 0);
}
static void ns_on_signal(int sig) {
    if (zc_veth.made) ns_run_del();   /* atexit does not run on a signal */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void zc_note(ctx *c, const buffet_net_zc_drained *d) {
    c->zc_completed += d->completed;
    c->zc_copied += d->copied;
}
static uint64_t run_chain_zc(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    buffet_net_zc_drained d;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        build_chain(c);
        for (;;) {
            buffet_result r = buffet_net_send_chain_zc(c->fd, &c->chain, c->zc, 0, NULL);
            if (r == BUFFET_OK) break;
            if (r != BUFFET_ERR_EXHAUSTED) {
                fprintf(stderr, BENCH_NAME ": buffet_net_send_chain_zc: %s\n", buffet_result_str(r));
                exit(1);
            }
            /* the error queue's memory is full of completions: read some, send the rest */
            c->zc_full++;
            memset(&d, 0, sizeof d);
            buffet_net_zc_wait(c->fd, c->zc, 10, &d);
            zc_note(c, &d);
        }
        memset(&d, 0, sizeof d);
        if (buffet_net_zc_drain(c->fd, c->zc, &d) == BUFFET_OK) zc_note(c, &d);
    }
    memset(&d, 0, sizeof d);
    if (buffet_net_zc_wait(c->fd, c->zc, 10000, &d) != BUFFET_OK) die("zerocopy completions did not come");
    zc_note(c, &d);
    return now_ns() - t0;
}

static void zc_section(ctx *c) {
    static const size_t sizes[4] = {64 << 10, 256 << 10, 1 << 20, 4 << 20};
    pthread_t t;
    int rx = -1;
    buffet_net_zc_desc zd;
    printf("\nMSG_ZEROCOPY over a veth pair between two network namespaces, TCP, a thread draining;\n");
    const char *why = nu_veth_make(&zc_veth, "bbnet", "10.213.0", NULL);
    if (why) {
        printf("skipped: %s\n", why);
        return;
    }
    if (!nu_veth_tcp_pair(&zc_veth, "10.213.0.2", &c->fd, &rx)) {
        nu_veth_del(&zc_veth);
        printf("skipped: TCP across the veth pair failed\n");
        return;
    }
    memset(&zd, 0, sizeof zd);
    if (buffet_net_zc_create(&c->zc, &zd) != BUFFET_OK) die("zerocopy tracker failed");
    atomic_store(&stop_drain, false);
    if (pthread_create(&t, NULL, drain, &rx) != 0) die("thread failed");
    printf("Gbit/s (median of %d), ratio zerocopy / plain\n", REPS);
    printf("%-10s %14s %14s %12s\n", "message", "plain send", "zerocopy send", "zc / plain");
    for (int i = 0; i < 4; i++) {
        contestant cs[2] = {{"plain send (veth)", run_chain, c, 0}, {"zerocopy send (veth)", run_chain_zc, c, 0}};
        double ns[2];
        c->msg = sizes[i];
        for (int k = 0; k < 2; k++) cs[k].ops_per_iter = (double)sizes[i];   /* ns per byte */
        measure(cs, 2, ns, quick ? 1e7 : 2e8, 4);
        printf("%4zu KiB   %14.1f %14.1f %11.2fx\n", sizes[i] >> 10, 8 / ns[0], 8 / ns[1], ns[0] / ns[1]);
    }
    print_spread();
    buffet_net_zc_stats st = buffet_net_zc_get_stats(c->zc);
    printf("zerocopy calls: %llu, completed %llu, reported copied by the kernel %llu (%s); optmem full (ENOBUFS) "
           "retries %llu\n",
           (unsigned long long)st.calls, (unsigned long long)st.completed, (unsigned long long)st.copied,
           st.copied == 0 ? "none: the pages went out as they were"
           : st.copied == st.completed ? "all of them" : "some of them",
           (unsigned long long)c->zc_full);
    printf("note: veth, like loopback, delivers to a socket on this machine, so the kernel copies the pinned\n"
           "      pages after all (SO_EE_CODE_ZEROCOPY_COPIED): this is zerocopy's bookkeeping cost, not its\n"
           "      gain; a NIC with scatter-gather sends from the pages themselves.\n");
    atomic_store(&stop_drain, true);
    shutdown(c->fd, SHUT_WR);
    pthread_join(t, NULL);
    if (buffet_net_zc_destroy(c->zc) != BUFFET_OK) die("zerocopy calls still in flight");
    c->zc = NULL;
    close(c->fd);
    close(rx);
    nu_veth_del(&zc_veth);
}

int main(void) {
    ctx c;
    bench_read_iters();
    quick = getenv("BUFFET_BENCH_QUICK") && strcmp(getenv("BUFFET_BENCH_QUICK"), "0") != 0;
    snprintf(ns_del_cmd, sizeof ns_del_cmd, "ip netns del bbnet%da 2>/dev/null; ip netns del bbnet%db 2>/dev/null",
             (int)getpid(), (int)getpid());
    signal(SIGINT, ns_on_signal);
    signal(SIGTERM, ns_on_signal);
    signal(SIGHUP, ns_on_signal);
    bench_print_machine("");
    bench_print_load();
    bench_print_iters();
    if (quick) printf("BUFFET_BENCH_QUICK: short runs, rough numbers\n");
    memset(&c, 0, sizeof c);
    for (size_t k = 0; k < MAX_MSG / PIECE; k++) {
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.size = PIECE;
        if (buffet_buf_create(&c.pieces[k], &d) != BUFFET_OK) die("buffer failed");
        memset(c.pieces[k]->data, (int)k, PIECE);
    }
    c.flat = (unsigned char *)aligned_alloc(64, MAX_MSG);
    if (!c.flat) die("out of memory");
    memset(c.flat, 7, MAX_MSG);
    buffet_chain_init(&c.chain, (buffet_allocator){0});
    tcp_section(&c);
    udp_section();
    zc_section(&c);
    buffet_chain_deinit(&c.chain);
    for (size_t k = 0; k < MAX_MSG / PIECE; k++) buffet_buf_unref(c.pieces[k]);
    free(c.flat);
    return 0;
}
