/* bench_quic.c - one QUIC stream of 256 MiB over loopback, side by side in one process run:
     a) chain: buffet_net_quic over chains of slices of the data's buffers (no copy: ngtcp2
        encrypts straight from them, each slice released when acknowledged)
     b) copy: the same connection code, but the data copied into flat 64 KiB buffers first and
        those sent (what code without chains does: a copy into the stack's send buffer)
     c) aioquic: tests/quic_peer.py's client and server (aioquic, Python) moving the same bytes
        between two of its own endpoints, for reference; skipped with the reason when python3
        cannot import aioquic
   The sender and the receiver run on their own threads (a and b) or processes (c), as on two
   cores. Both ends use ngtcp2's defaults and the same windows; the receiver counts the bytes (a
   SHA-256 at this rate would be the cost measured). Gbit/s of stream payload, CPU seconds per GiB
   (both ends together, user + system, from getrusage), and ratios chain / peer (above 1: the
   chain path is faster, or cheaper). The median of 3 runs, contestants alternating;
   BUFFET_BENCH_QUICK=1: 32 MiB, one run. */
// pkg-config: libngtcp2 libngtcp2_crypto_gnutls gnutls
#define BUFFET_IMPLEMENTATION
#define BUFFET_NET_QUIC 1
#include "../buffet_net.h"

#include <pthread.h>
#include <sys/resource.h>

#include "../tests/quic_util.h"

#define REPS 3

typedef struct side {
    qu_ep ep;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    qu_src src;
    buffet_net_quic_desc d;
    bool ok;
} side;

static qu_cert cert;
static uint64_t total;

static bool side_open(side *s, bool server, int fd, const buffet_net_addr *peer) {
    buffet_pkt_pool_desc pd;
    memset(s, 0, sizeof *s);
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 2048;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = 1024;
    pd.max = 1 << 16;
    if (buffet_pkt_pool_create(&s->pool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&s->cache, s->pool, 0) != BUFFET_OK ||
        !qu_src_init(&s->src, s->cache))
        return false;
    s->d.fd = fd;
    s->d.flags = server ? BUFFET_NET_QUIC_SERVER : 0;
    s->d.cache = s->cache;
    s->d.alpn = QU_ALPN;
    s->d.cert_file = cert.cert;
    s->d.key_file = cert.key;
    s->d.ca_file = cert.cert;
    if (peer) s->d.peer = *peer;
    s->ep.fd = fd;
    s->ep.server = server;
    s->ep.src = &s->src;
    s->ep.count_only = true;
    s->ep.max_open = 4;
    s->ep.small_size = 1;
    return buffet_net_quic_create(&s->ep.q, &s->d) == BUFFET_OK;
}

static void side_close(side *s) {
    while (s->ep.x) qu_xfer_end(&s->ep, s->ep.x, true);
    buffet_net_quic_destroy(s->ep.q);
    qu_src_free(&s->src);
    buffet_pkt_cache_destroy(s->cache);
    buffet_pkt_pool_destroy(s->pool);
}

static bool server_done(void *u) { return ((side *)u)->ep.closed; }
static bool client_done(void *u) {
    side *s = (side *)u;
    return qu_client_done(&s->ep) || s->ep.closed;
}

static void *server_main(void *u) {
    side *s = (side *)u;
    qu_ep *e = &s->ep;
    (void)qu_run(&e, 1, 600000, server_done, s);
    /* the client closes once it has the answer: the answer's acknowledgement may not get here */
    s->ok = s->ep.failed == 0 && (s->ep.done == 1 || (s->ep.x && s->ep.x->ended && s->ep.x->ok));
    return NULL;
}

/* One run: seconds of wall time and CPU; false when something failed. */
static bool run_buffet(bool copy, double *wall, double *cpu) {
    side srv, cli;
    buffet_net_addr sa, ca;
    pthread_t t;
    qu_ep *e = &cli.ep;
    struct rusage r0, r1;
    uint64_t t0;
    int sfd = qu_udp("127.0.0.1", 0, &sa), cfd = qu_udp("127.0.0.1", 0, &ca);
    bool ok;
    if (sfd < 0 || cfd < 0 || !side_open(&srv, true, sfd, NULL)) return false;
    getrusage(RUSAGE_SELF, &r0);
    t0 = qu_ms();
    pthread_create(&t, NULL, server_main, &srv);
    ok = side_open(&cli, false, cfd, &sa);
    cli.ep.put_n = total;
    cli.ep.copy_send = copy;
    ok = ok && qu_run(&e, 1, 600000, client_done, &cli) && cli.ep.failed == 0 && cli.ep.done == 1;
    buffet_net_quic_close(cli.ep.q, 0);
    qu_events(&cli.ep);
    pthread_join(t, NULL);
    *wall = (double)(qu_ms() - t0) / 1e3;
    getrusage(RUSAGE_SELF, &r1);
    *cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
           (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    ok = ok && srv.ok;
    side_close(&cli);
    side_close(&srv);
    close(sfd);
    close(cfd);
    return ok;
}

/* aioquic's own client and server: wall time from the client's start to its end, CPU of both. */
static bool run_aioquic(double *wall, double *cpu) {
    char out[4096] = "", size[24], port[16], *at;
    const char *sargs[] = {"server", "--host", "127.0.0.1", "--port", "0", "--cert", cert.cert, "--key", cert.key, NULL};
    const char *cargs[] = {"client", "--host", "127.0.0.1", "--port", port, "--ca", cert.cert, "--put", size, "--get", "0",
                           "--small", "0", NULL};
    struct rusage r0, r1;
    pid_t sp, cp;
    int sfd, cfd, cst, sst;
    uint64_t t0;
    snprintf(size, sizeof size, "%llu", (unsigned long long)total);
    getrusage(RUSAGE_CHILDREN, &r0);
    sp = qu_spawn(sargs, &sfd);
    if (sp < 0) return false;
    t0 = qu_ms() + 20000;
    while (!(at = strstr(out, "listening ")) || !strchr(at, '\n')) {
        struct pollfd pf = {sfd, POLLIN, 0};
        if (!qu_drain(sfd, out, sizeof out) || qu_ms() > t0) break;
        (void)poll(&pf, 1, 100);
    }
    if (!at) {
        qu_reap(sp, sfd, out, sizeof out, 1000);
        return false;
    }
    snprintf(port, sizeof port, "%d", atoi(at + 10));
    t0 = qu_ms();
    cp = qu_spawn(cargs, &cfd);
    cst = cp > 0 ? qu_reap(cp, cfd, out, sizeof out, 600000) : -1;
    *wall = (double)(qu_ms() - t0) / 1e3;
    sst = qu_reap(sp, sfd, out, sizeof out, 60000);
    getrusage(RUSAGE_CHILDREN, &r1);
    *cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
           (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    return cst == 0 && sst == 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    static const char *names[3] = {"chain (buffet, no copy)", "copy into flat buffers", "aioquic <-> aioquic"};
    double wall[3][REPS], cpu[3][REPS], w[3], c[3];
    bool quick = getenv("BUFFET_BENCH_QUICK") != NULL, have_py = qu_have_aioquic(), ok[3] = {true, true, have_py};
    int reps = quick ? 1 : REPS, r, i;
    total = quick ? (uint64_t)32 << 20 : (uint64_t)256 << 20;
    if (!qu_cert_make(&cert, "localhost")) {
        printf("bench_quic: skipped: openssl could not make a certificate\n");
        return 77;
    }
    printf("QUIC, one stream of %llu MiB over loopback (ngtcp2 %s + GnuTLS %s), sender and receiver on two threads\n",
           (unsigned long long)(total >> 20), ngtcp2_version(0)->version_str, gnutls_check_version(NULL));
    for (r = 0; r < reps; r++)
        for (i = 0; i < 3; i++) {
            int k = (r & 1) ? 2 - i : i;
            if (!ok[k]) continue;
            ok[k] = k == 2 ? run_aioquic(&wall[k][r], &cpu[k][r]) : run_buffet(k == 1, &wall[k][r], &cpu[k][r]);
            if (!ok[k]) printf("  %s: FAILED in run %d\n", names[k], r + 1);
        }
    for (i = 0; i < 3; i++) {
        qsort(wall[i], (size_t)reps, sizeof(double), cmp_double);
        qsort(cpu[i], (size_t)reps, sizeof(double), cmp_double);
        w[i] = wall[i][reps / 2];
        c[i] = cpu[i][reps / 2];
    }
    printf("  %-26s %10s %14s %16s %16s\n", "", "Gbit/s", "CPU s / GiB", "chain speed / x", "x CPU / chain");
    for (i = 0; i < 3; i++) {
        double gib = (double)total / (double)(1u << 30);
        if (!ok[i]) {
            printf("  %-26s skipped: %s\n", names[i], i == 2 && !have_py ? "python3 cannot import aioquic" : "failed");
            continue;
        }
        printf("  %-26s %10.2f %14.2f %16.2f %16.2f\n", names[i], (double)total * 8 / w[i] / 1e9, c[i] / gib, w[i] / w[0],
               c[i] / c[0]);
    }
    qu_cert_remove(&cert);
    return ok[0] && ok[1] && (ok[2] || !have_py) ? 0 : 1;
}
