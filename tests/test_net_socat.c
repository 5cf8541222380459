/* test_net_socat.c - buffet_net.h against a real, independent peer: socat. 1 GiB (in the gcc C11
   build; less in the other builds, see ts_bytes) of a seeded stream goes through chains of every
   buffer kind (heap, mmap, shared memory, packets) to `socat` writing a file, and the file comes
   back through `socat` reading it into buffet_net_recv (heap buffers and packets in turn); the
   SHA-256 of what buffet sent, of the file (sha256sum) and of what buffet received must match.
   Then the same both ways with the fault layer on (short calls, EAGAIN and EINTR at random; the
   seed is printed, BUFFET_NET_SEED picks it). Last, a peer that resets the connection in the
   middle: a clean BUFFET_ERR_CLOSED on either side, and the debug allocator under every buffer
   reports nothing left. BUFFET_NET_BYTES overrides the size. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "sha256.h"
#include "net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------------------------------------
   Helpers */

/* 1 GiB where the issue asks it (gcc, C11, plain build); the other compilers and languages
   check the same paths with less, and the tools that slow everything down with less still. */
static size_t ts_bytes(void) {
    const char *o = getenv("BUFFET_NET_BYTES");
    if (o && *o) return (size_t)strtoull(o, NULL, 10) & ~(size_t)7;
    if (bt_mode("valgrind") || bt_mode("aarch64")) return (size_t)16 << 20;
    if (bt_mode("tsan")) return (size_t)64 << 20;
    if (bt_mode("asan")) return (size_t)256 << 20;
#if defined(__clang__) || defined(__cplusplus)
    return (size_t)64 << 20;
#else
    return (size_t)1 << 30;
#endif
}

/* The seeded stream: 8 bytes a step of a 64-bit LCG, output-mixed. */
typedef struct ts_gen { uint64_t x; } ts_gen;
static void ts_fill(ts_gen *g, unsigned char *p, size_t n) {   /* n: a multiple of 8 */
    size_t i;
    for (i = 0; i < n; i += 8) {
        uint64_t v;
        g->x = g->x * 6364136223846793005ull + 1442695040888963407ull;
        v = g->x ^ (g->x >> 29);
        memcpy(p + i, &v, 8);
    }
}

typedef struct ts_env {
    buffet_debug *dbg;
    buffet_allocator a;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
} ts_env;

static void ts_begin(ts_env *e) {
    buffet_debug_desc d;
    buffet_pkt_pool_desc pd;
    memset(e, 0, sizeof *e);
    memset(&d, 0, sizeof d);
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&e->dbg, &d) == BUFFET_OK);
    e->a = buffet_debug_allocator(e->dbg);
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 2048;
    pd.initial = 64;
    pd.max = 4096;
    pd.no_huge_pages = true;
    pd.allocator = e->a;
    BT_CHECK(buffet_pkt_pool_create(&e->pool, &pd) == BUFFET_OK);
    BT_CHECK(e->pool && buffet_pkt_cache_create(&e->cache, e->pool, 64) == BUFFET_OK);
}
static void ts_end(ts_env *e) {
    buffet_debug_stats st;
    buffet_pkt_cache_destroy(e->cache);
    buffet_pkt_pool_destroy(e->pool);
    st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(e->dbg, stderr);
    buffet_debug_destroy(e->dbg);
}

/* Start a program; its pid, or -1. */
static pid_t ts_spawn(char *const argv[]) {
    pid_t pid;
    return posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) == 0 ? pid : -1;
}
/* socat -u FROM TO */
static pid_t ts_socat(const char *from, const char *to) {
    char *argv[5];
    argv[0] = (char *)"socat";
    argv[1] = (char *)"-u";
    argv[2] = (char *)from;
    argv[3] = (char *)to;
    argv[4] = NULL;
    return ts_spawn(argv);
}
static int ts_wait(pid_t pid) {
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A free loopback port (bound and let go: socat binds it next). */
static int ts_free_port(void) {
    buffet_net_addr a;
    int fd = nu_tcp_listen("127.0.0.1", &a);
    if (fd < 0) return -1;
    close(fd);
    return ntohs(a.in4.sin_port);
}

/* A connection to 127.0.0.1:port, tried for up to 20 s while the peer starts. */
static int ts_connect(int port) {
    buffet_net_addr a;
    int i;
    nu_addr(&a, "127.0.0.1", port);
    for (i = 0; i < 2000; i++) {
        int fd = nu_tcp_connect(&a);
        if (fd >= 0) return fd;
        usleep(10000);
    }
    return -1;
}

/* A listening socket on 127.0.0.1 and its port. */
static int ts_listen(int *port) {
    buffet_net_addr a;
    int fd = nu_tcp_listen("127.0.0.1", &a);
    *port = fd >= 0 ? ntohs(a.in4.sin_port) : 0;
    return fd;
}

/* sha256sum's digest of a file (its first 64 characters), or "" */
static void ts_sha256sum(const char *path, char out[65]) {
    char cmd[600];
    FILE *p;
    out[0] = '\0';
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    p = popen(cmd, "r");
    if (!p) return;
    if (fread(out, 1, 64, p) != 64) out[0] = '\0';
    else out[64] = '\0';
    pclose(p);
}

static void ts_wait_fd(int fd, short ev) {
    struct pollfd pf;
    pf.fd = fd;
    pf.events = ev;
    pf.revents = 0;
    (void)poll(&pf, 1, 1000);
}

/* One buffer of `kind` holding the next n bytes of the stream (hashed), appended to c. */
static bool ts_add(ts_env *e, buffet_chain *c, unsigned kind, size_t n, ts_gen *g, sha256 *h) {
    buffet_buf *b = NULL;
    buffet_result r;
    if (kind == 3) {   /* packets of 2 KiB, by reference */
        size_t done;
        for (done = 0; done < n; done += 2048) {
            buffet_pkt *p = buffet_pkt_alloc(e->cache, 2048);
            unsigned char *d = p ? (unsigned char *)buffet_pkt_append(p, 2048) : NULL;
            if (!d) { buffet_pkt_free(e->cache, p); return false; }
            ts_fill(g, d, 2048);
            sha256_add(h, d, 2048);
            r = buffet_pkt_to_chain(p, c);
            buffet_pkt_free(e->cache, p);
            if (r != BUFFET_OK) return false;
        }
        return true;
    } else {
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.kind = kind == 0 ? BUFFET_BUF_HEAP : kind == 1 ? BUFFET_BUF_MMAP : BUFFET_BUF_SHM;
        d.size = n;
        d.allocator = e->a;
        if (buffet_buf_create(&b, &d) != BUFFET_OK) return false;
        ts_fill(g, (unsigned char *)b->data, n);
        sha256_add(h, b->data, n);
        r = buffet_chain_append(c, b, 0, n);
        buffet_buf_unref(b);
        return r == BUFFET_OK;
    }
}

/* Send `total` bytes of stream seed to fd in rounds of mixed buffers; the digest in hex. Under
   faults a round is retried after BUFFET_AGAIN once the socket is writable. */
static bool ts_send(ts_env *e, int fd, size_t total, uint64_t seed, char hex[65], unsigned flags) {
    static const size_t sizes[4] = {64 << 10, 256 << 10, 128 << 10, 32 << 10};
    buffet_chain c;
    ts_gen g;
    sha256 h;
    size_t done = 0;
    unsigned k = 0;
    bool ok = true;
    g.x = seed;
    sha256_init(&h);
    if (buffet_chain_init(&c, e->a) != BUFFET_OK) return false;
    while (ok && done < total) {
        size_t n = sizes[k % 4] < total - done ? sizes[k % 4] : total - done;
        buffet_result r;
        ok = ts_add(e, &c, k % 4 == 3 && n % 2048 == 0 ? 3 : k % 3, n, &g, &h);
        done += n;
        k++;
        if (buffet_chain_len(&c) < ((size_t)1 << 20) && done < total) continue;
        while (ok && (r = buffet_net_send_chain(fd, &c, flags, NULL)) != BUFFET_OK) {
            if (r != BUFFET_AGAIN) {
                fprintf(stderr, "send: %s (errno %d)\n", buffet_result_str(r), errno);
                ok = false;
            }
            ts_wait_fd(fd, POLLOUT);
        }
    }
    buffet_chain_deinit(&c);
    sha256_hex(&h, hex);
    return ok && done == total;
}

/* Receive until end of file into heap buffers and packets in turn; the digest and the count. */
static bool ts_recv(ts_env *e, int fd, char hex[65], size_t *total) {
    buffet_net_source heap, pk;
    buffet_chain c;
    sha256 h;
    size_t i;
    unsigned turn = 0;
    bool ok = true;
    memset(&heap, 0, sizeof heap);
    heap.allocator = e->a;
    heap.buf_size = 64 << 10;
    memset(&pk, 0, sizeof pk);
    pk.packets = e->cache;
    sha256_init(&h);
    *total = 0;
    if (buffet_chain_init(&c, e->a) != BUFFET_OK) return false;
    for (;;) {
        size_t got = 0;
        buffet_result r = buffet_net_recv(fd, &c, turn++ % 2 ? &pk : &heap, 256 << 10, &got);
        if (r == BUFFET_AGAIN) { ts_wait_fd(fd, POLLIN); continue; }
        if (r == BUFFET_ERR_CLOSED && errno == 0) break;
        if (r != BUFFET_OK) {
            fprintf(stderr, "recv: %s (errno %d)\n", buffet_result_str(r), errno);
            ok = false;
            break;
        }
        for (i = 0; i < buffet_chain_count(&c); i++) {
            const buffet_slice *s = buffet_chain_at(&c, i);
            sha256_add(&h, buffet_slice_data(s), s->len);
        }
        *total += buffet_chain_len(&c);
        buffet_chain_consume(&c, buffet_chain_len(&c));
    }
    buffet_chain_deinit(&c);
    sha256_hex(&h, hex);
    return ok;
}

/* The fault layer on fd: 30% of calls short, 10% EAGAIN, 10% EINTR. */
static void ts_faults_on(buffet_net_faults *f, uint64_t seed, int fd) {
    memset(f, 0, sizeof *f);
    f->seed = seed;
    f->fd = fd;
    f->short_per_million = 300000;
    f->again_per_million = 100000;
    f->intr_per_million = 100000;
    buffet_net_faults_set(f);
}

static uint64_t ts_seed(void) {
    const char *s = getenv("BUFFET_NET_SEED");
    return s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
}

/* ---------------------------------------------------------------------------------------------
   The tests */

/* Both ways through socat, without and with faults. */
static void test_socat_both_ways(void) {
    ts_env e;
    char path[256], sent[65], file[65], got[65], port_arg[96], file_arg[300];
    const char *tmp = getenv("TMPDIR");
    size_t total = ts_bytes(), received = 0;
    uint64_t fault_seed = ts_seed();
    int round;
    if (access("/usr/bin/socat", X_OK) != 0 && access("/bin/socat", X_OK) != 0)
        BT_SKIP("socat", "socat is not installed (make deps)");
    snprintf(path, sizeof path, "%s/buffet-socat-%d.bin", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    ts_begin(&e);
    printf("test_net_socat: %zu bytes each way; fault layer seed %llu (BUFFET_NET_SEED)\n", total,
           (unsigned long long)fault_seed);
    for (round = 0; round < 2; round++) {
        buffet_net_faults f;
        int port = ts_free_port(), fd, lfd, rport = 0;
        pid_t pid;
        /* buffet -> socat -> file */
        snprintf(port_arg, sizeof port_arg, "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr", port);
        snprintf(file_arg, sizeof file_arg, "CREATE:%s", path);
        pid = ts_socat(port_arg, file_arg);
        BT_CHECK(port > 0 && pid > 0);
        fd = pid > 0 ? ts_connect(port) : -1;
        BT_CHECK(fd >= 0);
        if (fd < 0) break;
        if (round == 1) ts_faults_on(&f, fault_seed, fd);
        BT_CHECK(ts_send(&e, fd, total, 1234 + (uint64_t)round, sent, BUFFET_NET_SENDFILE));
        buffet_net_faults_set(NULL);
        close(fd);
        BT_CHECK(ts_wait(pid) == 0);
        ts_sha256sum(path, file);
        printf("round %d (%s): sent %s, file %s\n", round, round ? "faults" : "no faults", sent, file);
        BT_CHECK(strcmp(sent, file) == 0);
        if (round == 1) BT_CHECK(f.shorts > 0 && f.agains > 0 && f.intrs > 0);
        /* file -> socat -> buffet */
        lfd = ts_listen(&rport);
        BT_CHECK(lfd >= 0);
        if (lfd < 0) break;
        snprintf(port_arg, sizeof port_arg, "TCP:127.0.0.1:%d", rport);
        snprintf(file_arg, sizeof file_arg, "OPEN:%s,rdonly", path);
        pid = ts_socat(file_arg, port_arg);
        fd = pid > 0 ? accept(lfd, NULL, NULL) : -1;
        close(lfd);
        BT_CHECK(fd >= 0);
        if (fd < 0) break;
        if (round == 1) ts_faults_on(&f, fault_seed + 1, fd);
        BT_CHECK(ts_recv(&e, fd, got, &received));
        buffet_net_faults_set(NULL);
        close(fd);
        BT_CHECK(ts_wait(pid) == 0);
        printf("round %d: received %zu bytes, %s\n", round, received, got);
        BT_CHECK(received == total && strcmp(got, file) == 0);
        if (round == 1) BT_CHECK(f.shorts > 0 && f.agains > 0 && f.intrs > 0);
        unlink(path);
    }
    unlink(path);
    ts_end(&e);
}

/* A peer that resets the connection (SO_LINGER 0) after some bytes. */
typedef struct ts_peer { int lfd; size_t read_first, write_first; } ts_peer;
static void *ts_peer_main(void *arg) {
    ts_peer *p = (ts_peer *)arg;
    int fd = accept(p->lfd, NULL, NULL);
    struct linger lg;
    size_t n = 0;
    static unsigned char tmp[65536];
    if (fd < 0) return NULL;
    while (n < p->read_first) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r <= 0) break;
        n += (size_t)r;
    }
    memset(tmp, 'x', sizeof tmp);
    for (n = 0; n < p->write_first; n += sizeof tmp)
        if (write(fd, tmp, sizeof tmp) <= 0) break;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);   /* RST */
    return NULL;
}

static void test_peer_resets(void) {
    ts_env e;
    int side;
    ts_begin(&e);
    for (side = 0; side < 2; side++) {
        ts_peer p;
        pthread_t t;
        int port = 0, fd;
        size_t got = 0;
        p.lfd = ts_listen(&port);
        p.read_first = side == 0 ? (size_t)1 << 20 : 0;
        p.write_first = side == 0 ? 0 : (size_t)256 << 10;
        BT_CHECK(p.lfd >= 0 && pthread_create(&t, NULL, ts_peer_main, &p) == 0);
        fd = ts_connect(port);
        BT_CHECK(fd >= 0);
        if (side == 0) {
            /* sending 64 MiB into a peer that reads 1 MiB and resets: a clean CLOSED */
            buffet_chain c;
            ts_gen g;
            sha256 h;
            buffet_result r = BUFFET_OK;
            size_t i;
            g.x = 5;
            sha256_init(&h);
            BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
            for (i = 0; i < 64 && r == BUFFET_OK; i++) {
                size_t before;
                BT_CHECK(ts_add(&e, &c, i % 4, 1 << 20, &g, &h));
                before = buffet_chain_len(&c);
                r = buffet_net_send_chain(fd, &c, 0, &got);
                BT_CHECK(buffet_chain_len(&c) == before - got);   /* what was not sent is still there */
            }
            BT_CHECK(r == BUFFET_ERR_CLOSED && (errno == ECONNRESET || errno == EPIPE));
            buffet_chain_deinit(&c);
        } else {
            /* receiving from a peer that writes 256 KiB and resets: the bytes before the reset,
               then a clean CLOSED with errno ECONNRESET */
            buffet_net_source src;
            buffet_chain c;
            buffet_result r;
            memset(&src, 0, sizeof src);
            src.allocator = e.a;
            BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
            while ((r = buffet_net_recv(fd, &c, &src, 100000, &got)) == BUFFET_OK) {}
            BT_CHECK(r == BUFFET_ERR_CLOSED && (errno == ECONNRESET || errno == 0));
            buffet_chain_deinit(&c);
        }
        close(fd);
        pthread_join(t, NULL);
        close(p.lfd);
    }
    ts_end(&e);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);   /* sockets never raise it (MSG_NOSIGNAL); socat's pipes might */
    BT_RUN(test_socat_both_ways);
    BT_RUN(test_peer_resets);
    return bt_finish("test_net_socat.c");
}
