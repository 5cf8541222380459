/* bench_net.c - buffet_net.h's stream send against what a C programmer would otherwise write,
   side by side in one process run, over TCP on loopback:
     a) chain send: a message of M bytes held as a chain of 16 KiB heap buffers (built per
        message: a reference per slice, as a server assembling a reply does), sent with
        buffet_net_send_chain (one sendmsg over up to 1024 iovecs)
     b) copy + send: the same 16 KiB pieces copied into one contiguous buffer, then send() in a
        loop until all of it went (what code without scatter-gather does)
     c) contiguous send: M bytes already contiguous, send() in a loop: the floor of what a
        message of M bytes costs to hand to the kernel
     d) iperf3 on the same loopback in the same run (its own sender and receiver, 128 KiB writes,
        3 s), for reference; skipped with the reason when iperf3 is not installed
   for M = 64 KiB, 128 KiB, 256 KiB, 1 MiB, 4 MiB. A second thread drains the socket into a 128 KiB buffer
   as fast as it can, 128 KiB at a time. Every number is the median of REPS repetitions after a warm-up; within a
   repetition the contestants alternate. Printed as Gbit/s and as ratios chain / peer (above 1:
   the chain send is faster). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define BENCH_NAME "bench_net"
#define REPS 9
#define MAX_CONTESTANTS 3
#include "bench.h"

extern char **environ;

#define PIECE (16 << 10)
#define MAX_MSG (4 << 20)

typedef struct ctx {
    int fd;
    size_t msg;                     /* bytes per message */
    buffet_buf *pieces[MAX_MSG / PIECE];
    unsigned char *flat;            /* MAX_MSG contiguous bytes */
    buffet_chain chain;
} ctx;

static atomic_bool stop_drain;
static void *drain(void *arg) {
    int fd = *(int *)arg;
    static unsigned char sink[128 << 10];   /* what iperf3 reads into: it stays in L2 */
    while (!atomic_load_explicit(&stop_drain, memory_order_relaxed))
        if (read(fd, sink, sizeof sink) <= 0) break;
    return NULL;
}

static void send_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0) { if (errno == EINTR) continue; die("send failed"); }
        p += r;
        n -= (size_t)r;
    }
}

static uint64_t run_chain(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        for (size_t k = 0; k < c->msg / PIECE; k++)
            if (buffet_chain_append(&c->chain, c->pieces[k], 0, PIECE) != BUFFET_OK) die("append failed");
        if (buffet_net_send_chain(c->fd, &c->chain, 0, NULL) != BUFFET_OK) die("chain send failed");
    }
    return now_ns() - t0;
}
static uint64_t run_copy(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        for (size_t k = 0; k < c->msg / PIECE; k++) memcpy(c->flat + k * PIECE, c->pieces[k]->data, PIECE);
        escape(c->flat);
        send_all(c->fd, c->flat, c->msg);
    }
    return now_ns() - t0;
}
static uint64_t run_flat(void *v, size_t iters) {
    ctx *c = (ctx *)v;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) send_all(c->fd, c->flat, c->msg);
    return now_ns() - t0;
}

/* A connected loopback pair: *tx for the sender, *rx for the drain thread. */
static void tcp_pair(int *tx, int *rx) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        die("listen failed");
    *tx = socket(AF_INET, SOCK_STREAM, 0);
    if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof a) != 0) die("connect failed");
    *rx = accept(l, NULL, NULL);
    if (*rx < 0) die("accept failed");
    close(l);
}

/* iperf3's receiver-side throughput in Gbit/s over 3 s of 128 KiB writes, or a negative number
   (the reason in why). */
static double iperf3_gbits(char *why, size_t cap) {
    char port[16], *srv[] = {(char *)"iperf3", (char *)"-s", (char *)"-1", (char *)"-p", port, NULL};
    char cmd[160], out[65536];
    pid_t pid;
    FILE *p;
    size_t n;
    int status = 0;
    snprintf(port, sizeof port, "%d", 20000 + (int)(getpid() % 20000));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);   /* the server's chatter */
    fflush(stdout);
    int rc = posix_spawnp(&pid, "iperf3", &fa, NULL, srv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(why, cap, "iperf3 is not installed (make bench-deps)");
        return -1;
    }
    usleep(300000);   /* the server starts listening */
    snprintf(cmd, sizeof cmd, "iperf3 -c 127.0.0.1 -p %s -t 3 -l 128K -J 2>/dev/null", port);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    if (p) pclose(p);
    waitpid(pid, &status, 0);
    const char *s = strstr(out, "\"sum_received\"");
    s = s ? strstr(s, "\"bits_per_second\"") : NULL;
    if (!s) {
        snprintf(why, cap, "iperf3 printed no result");
        return -1;
    }
    return strtod(strchr(s, ':') + 1, NULL) / 1e9;
}

int main(void) {
    static const size_t sizes[5] = {64 << 10, 128 << 10, 256 << 10, 1 << 20, 4 << 20};
    ctx c;
    pthread_t t;
    int rx;
    char why[128];
    bench_read_iters();
    bench_print_machine("");
    bench_print_load();
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
    tcp_pair(&c.fd, &rx);
    if (pthread_create(&t, NULL, drain, &rx) != 0) die("thread failed");
    printf("\nTCP over loopback, one connection, a thread draining it; Gbit/s (median of %d), ratio chain / peer\n", REPS);
    printf("%-10s %14s %14s %16s %12s %12s\n", "message", "chain send", "copy + send", "contiguous send", "vs copy", "vs contig.");
    for (int i = 0; i < 5; i++) {
        contestant cs[3] = {{"chain send", run_chain, &c, 0}, {"copy + send", run_copy, &c, 0},
                            {"contiguous send", run_flat, &c, 0}};
        double ns[3];
        c.msg = sizes[i];
        for (int k = 0; k < 3; k++) cs[k].ops_per_iter = (double)sizes[i];   /* ns per byte */
        measure(cs, 3, ns, 2e8, 4);
        printf("%4zu KiB   %14.1f %14.1f %16.1f %11.2fx %11.2fx\n", sizes[i] >> 10, 8 / ns[0], 8 / ns[1], 8 / ns[2],
               ns[1] / ns[0], ns[2] / ns[0]);
    }
    print_spread();
    atomic_store(&stop_drain, true);
    shutdown(c.fd, SHUT_WR);
    pthread_join(t, NULL);
    close(c.fd);
    close(rx);
    double ip = iperf3_gbits(why, sizeof why);
    if (ip > 0) printf("iperf3 (reference, 128 KiB writes, 3 s): %.1f Gbit/s\n", ip);
    else printf("iperf3: skipped: %s\n", why);
    buffet_chain_deinit(&c.chain);
    for (size_t k = 0; k < MAX_MSG / PIECE; k++) buffet_buf_unref(c.pieces[k]);
    free(c.flat);
    return 0;
}
