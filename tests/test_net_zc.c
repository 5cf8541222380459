/* test_net_zc.c - the tests of buffet_net.h, MSG_ZEROCOPY: buffet_net_send_chain_zc and the
   completion tracker (create, drain, wait, destroy, stats) over TCP and UDP on loopback and over
   TCP through a veth pair between two network namespaces the test makes; many small sends (the
   kernel merges their completions), large ones (64 KiB .. 4 MiB), partial sends (a small send
   buffer), UDP to a closed port with IP_RECVERR (ICMP entries ignored, ECONNREFUSED sends not
   numbered), the fault layer, the socket's
   option memory running out (ENOBUFS), a reference count at its limit, a destroy with calls in
   flight, call numbers wrapping past 2^32 - 1, merged, repeated and foreign ranges, and bad
   input. Every buffer is a WRAP buffer whose release is counted, so each must be released exactly
   once; every byte received is checked; everything comes from a debug allocator, so a leak
   fails the test. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
   Helpers */

/* valgrind and qemu run everything many times slower: fewer and smaller sends there */
static bool tz_slow(void) { return bt_mode("valgrind") || bt_mode("aarch64"); }

/* Does this kernel do MSG_ZEROCOPY? (qemu-user does not pass SO_ZEROCOPY on: ENOPROTOOPT.) */
static bool tz_zc_ok(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) == 0;
    if (fd >= 0) close(fd);
    return ok;
}
#define TZ_NEED_ZC() do { if (!tz_zc_ok()) BT_SKIP("zerocopy", "SO_ZEROCOPY refused (kernel < 4.14, or qemu-user)"); } while (0)

/* The byte at stream position i: every position tells where it came from. */
static unsigned char tz_byte(size_t i) { return (unsigned char)((i * 131u + 7u + (i >> 9)) & 0xff); }

typedef struct tz_ctx {
    buffet_debug *dbg;
    buffet_allocator a;
    unsigned created, released;   /* WRAP buffers made, and released (their last reference gone) */
    size_t tx_pos, rx_pos;        /* stream bytes put in chains, and received and checked */
    bool rx_bad;                  /* a byte received was not the one sent there */
    unsigned char *scratch;       /* receive buffer */
    size_t scratch_size;
} tz_ctx;

static void tz_begin(tz_ctx *t) {
    buffet_debug_desc d;
    memset(t, 0, sizeof *t);
    memset(&d, 0, sizeof d);
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&t->dbg, &d) == BUFFET_OK);
    t->a = buffet_debug_allocator(t->dbg);
    t->scratch_size = (size_t)256 << 10;
    t->scratch = (unsigned char *)malloc(t->scratch_size);
}
static void tz_end(tz_ctx *t) {
    buffet_debug_stats st = buffet_debug_get_stats(t->dbg);
    BT_CHECK(t->created == t->released);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(t->dbg, stderr);
    buffet_debug_destroy(t->dbg);
    free(t->scratch);
}

static void tz_release(void *user, void *data, size_t size) {
    tz_ctx *t = (tz_ctx *)user;
    buffet_free(t->a, data, size, 64, BUFFET_SITE);
    t->released++;
}

/* A WRAP buffer of n bytes holding stream bytes [from, from + n); its release is counted. */
static buffet_buf *tz_buf(tz_ctx *t, size_t from, size_t n) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    unsigned char *p = (unsigned char *)buffet_alloc(t->a, n, 64, BUFFET_SITE);
    size_t i;
    if (!p) return NULL;
    for (i = 0; i < n; i++) p[i] = tz_byte(from + i);
    memset(&d, 0, sizeof d);
    d.kind = BUFFET_BUF_WRAP;
    d.size = n;
    d.allocator = t->a;
    d.wrap_data = p;
    d.release = tz_release;
    d.release_user = t;
    if (buffet_buf_create(&b, &d) != BUFFET_OK) {
        buffet_free(t->a, p, n, 64, BUFFET_SITE);
        return NULL;
    }
    t->created++;
    return b;
}

/* Append the next n stream bytes to c: buffers of at most 1 MiB (3 bytes of padding each side),
   each given as two slices (a run of one buffer: the tracker takes one reference for both). The
   chain then holds the only references. */
static bool tz_fill(tz_ctx *t, buffet_chain *c, size_t n) {
    while (n > 0) {
        size_t k = n < ((size_t)1 << 20) ? n : (size_t)1 << 20, h = k / 2;
        buffet_buf *b = tz_buf(t, t->tx_pos - 3, k + 6);
        bool ok = b && buffet_chain_append(c, b, 3, h) == BUFFET_OK && buffet_chain_append(c, b, 3 + h, k - h) == BUFFET_OK;
        buffet_buf_unref(b);
        if (!ok) return false;
        t->tx_pos += k;
        n -= k;
    }
    return true;
}

/* Read what rx has now (stream) and check it. */
static void tz_pump(tz_ctx *t, int rx) {
    for (;;) {
        ssize_t r = recv(rx, t->scratch, t->scratch_size, MSG_DONTWAIT);
        ssize_t i;
        if (r <= 0) return;
        for (i = 0; i < r; i++)
            if (t->scratch[i] != tz_byte(t->rx_pos + (size_t)i)) t->rx_bad = true;
        t->rx_pos += (size_t)r;
    }
}

/* Receive one datagram of n bytes (waiting up to 5 s) and check it. */
static bool tz_datagram(tz_ctx *t, int rx, size_t n) {
    struct pollfd p;
    ssize_t r, i;
    p.fd = rx;
    p.events = POLLIN;
    if (poll(&p, 1, 5000) != 1) return false;
    r = recv(rx, t->scratch, t->scratch_size, MSG_DONTWAIT);
    if (r != (ssize_t)n) return false;
    for (i = 0; i < r; i++)
        if (t->scratch[i] != tz_byte(t->rx_pos + (size_t)i)) t->rx_bad = true;
    t->rx_pos += (size_t)r;
    return true;
}

/* Wait until tx can send or rx has bytes (at most 100 ms). */
static void tz_poll(int tx, int rx) {
    struct pollfd p[2];
    p[0].fd = tx;
    p[0].events = POLLOUT;
    p[1].fd = rx;
    p[1].events = POLLIN;
    p[0].revents = p[1].revents = 0;
    poll(p, 2, 100);
}

/* Seconds on the monotonic clock: every wait in these tests is bounded in time, not in tries, so
   that a slow machine (CI under load, valgrind, qemu) is given the same time as a fast one. */
static double tz_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#define TZ_LIMIT_S 30.0   /* far above what any transfer here needs, far below the runner's limit */

/* Send the next n stream bytes over a stream socket with zerocopy, reading rx whenever tx would
   block or its option memory is full (EXHAUSTED: then drain, or wait for a completion to arrive
   on tx's error queue). Counts EXHAUSTED answers. */
static bool tz_send_stream(tz_ctx *t, int tx, int rx, buffet_net_zc *zc, size_t n, unsigned *exhausted) {
    buffet_chain c;
    buffet_result r = BUFFET_OK;
    unsigned again = 0, full = 0;
    double until = tz_now() + TZ_LIMIT_S;
    bool ok = true;
    buffet_chain_init(&c, t->a);
    if (!tz_fill(t, &c, n)) ok = false;
    while (ok && buffet_chain_len(&c) > 0) {
        size_t before = buffet_chain_len(&c), sent = 0;
        r = buffet_net_send_chain_zc(tx, &c, zc, 0, &sent);
        BT_CHECK(buffet_chain_len(&c) + sent == before);   /* exactly what the kernel took */
        if (r == BUFFET_OK) break;
        if (r == BUFFET_ERR_EXHAUSTED) {
            buffet_net_zc_drained d;
            if (exhausted) (*exhausted)++;
            full++;
            tz_pump(t, rx);
            buffet_net_zc_drain(tx, zc, &d);
            if (d.completed == 0) {   /* nothing had arrived: wait for the error queue or for rx */
                struct pollfd p[2];
                p[0].fd = tx;
                p[0].events = 0;   /* POLLERR, always reported: a completion is queued */
                p[1].fd = rx;
                p[1].events = POLLIN;
                poll(p, 2, 10);
            }
        } else if (r == BUFFET_AGAIN) {
            again++;
            tz_pump(t, rx);
            tz_poll(tx, rx);
        } else {
            ok = false;
        }
        if (ok && tz_now() > until) ok = false;
    }
    if (!ok)
        fprintf(stderr, "send of %zu bytes stopped with %zu left: last %s (errno %d), %u EAGAIN, %u EXHAUSTED, "
                "%zu of %zu stream bytes received\n", n, buffet_chain_len(&c), buffet_result_str(r), errno, again, full,
                t->rx_pos, t->tx_pos);
    buffet_chain_deinit(&c);
    return ok;
}

/* Read rx until everything put in chains arrived, then wait for every completion (each bounded). */
static bool tz_finish_stream(tz_ctx *t, int tx, int rx, buffet_net_zc *zc) {
    double until = tz_now() + TZ_LIMIT_S;
    while (t->rx_pos < t->tx_pos && tz_now() < until) {
        tz_pump(t, rx);
        if (t->rx_pos < t->tx_pos) tz_poll(tx, rx);
    }
    return t->rx_pos == t->tx_pos && buffet_net_zc_wait(tx, zc, 10000, NULL) == BUFFET_OK;
}

/* The sender's side of a TCP pair (nu_tcp_pair, nu_veth_tcp_pair): no Nagle delay, non-blocking. */
static bool tz_sender(bool paired, const int *tx) {
    int one = 1;
    if (!paired) return false;
    setsockopt(*tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(*tx, F_SETFL, fcntl(*tx, F_GETFL) | O_NONBLOCK);
    return true;
}

/* A connected UDP pair on loopback: tx (non-blocking) sends to rx. */
static bool tz_udp_pair(int *tx, int *rx) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int big = 4 << 20;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *rx = socket(AF_INET, SOCK_DGRAM, 0);
    *tx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (*rx < 0 || *tx < 0 || bind(*rx, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(*rx, (struct sockaddr *)&sa, &len) < 0 || connect(*tx, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (*rx >= 0) close(*rx);
        if (*tx >= 0) close(*tx);
        return false;
    }
    setsockopt(*rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    return true;
}

static buffet_net_zc *tz_tracker(tz_ctx *t, bt_log *lg) {
    buffet_net_zc_desc d;
    buffet_net_zc *zc = NULL;
    memset(&d, 0, sizeof d);
    d.allocator = t->a;
    if (lg) d.log = bt_logger(lg);
    BT_CHECK(buffet_net_zc_create(&zc, &d) == BUFFET_OK && zc);
    return zc;
}

/* The small-then-large TCP transfer shared by the loopback, veth and fault tests. */
static void tz_tcp_transfer(tz_ctx *t, int tx, int rx, buffet_net_zc *zc, const char *where) {
    static const size_t large[] = {(size_t)64 << 10, (size_t)300 << 10, (size_t)1 << 20, (size_t)4 << 20,
                                   ((size_t)2 << 20) + 12345, (size_t)64 << 10};
    buffet_net_zc_stats s0, s1, s2;
    unsigned i, small = tz_slow() ? 40 : 300, nlarge = tz_slow() ? 2 : 6;
    bool ok = true;
    /* small sends, no drain between them: the kernel coalesces their completions */
    for (i = 0; i < small && ok; i++) ok = tz_send_stream(t, tx, rx, zc, 1 + (i * 37) % 700, NULL);
    BT_CHECK(ok);
    BT_CHECK(tz_finish_stream(t, tx, rx, zc));
    s0 = buffet_net_zc_get_stats(zc);
    BT_CHECK(s0.in_flight == 0 && s0.completed == s0.calls && s0.calls >= small);
    BT_CHECK(s0.notifications < s0.completed);   /* merged: fewer entries than calls */
    printf("note %s small: %u sends, %llu calls, %llu notifications, %llu copied, %llu stale\n", where, small,
           (unsigned long long)s0.calls, (unsigned long long)s0.notifications, (unsigned long long)s0.copied,
           (unsigned long long)s0.stale);
    /* large sends, drained as they go */
    for (i = 0; i < nlarge && ok; i++) {
        size_t n = tz_slow() ? large[i] / 8 : large[i];
        ok = tz_send_stream(t, tx, rx, zc, n, NULL);
        buffet_net_zc_drain(tx, zc, NULL);
    }
    BT_CHECK(ok);
    BT_CHECK(tz_finish_stream(t, tx, rx, zc));
    s1 = buffet_net_zc_get_stats(zc);
    BT_CHECK(s1.in_flight == 0 && s1.completed == s1.calls && s1.stale == 0);
    printf("note %s large: %llu calls, %llu notifications, %llu copied\n", where,
           (unsigned long long)(s1.calls - s0.calls), (unsigned long long)(s1.notifications - s0.notifications),
           (unsigned long long)(s1.copied - s0.copied));
    s2 = s1;
    BT_CHECK(s2.copied == s2.completed);   /* loopback and veth deliver to a local socket: always copied */
    BT_CHECK(!t->rx_bad && t->rx_pos == t->tx_pos);
    BT_CHECK(t->released == t->created);   /* every buffer released exactly once, none still held */
}

/* ---------------------------------------------------------------------------------------------
   Tests */

static void test_tcp_loopback(void) {
    tz_ctx t;
    int tx, rx;
    buffet_net_zc *zc;
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_sender(nu_tcp_pair(&tx, &rx), &tx)) {
        tz_end(&t);
        BT_SKIP("tcp", "no TCP over loopback");
    }
    zc = tz_tracker(&t, NULL);
    tz_tcp_transfer(&t, tx, rx, zc, "tcp loopback");
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    close(tx);
    close(rx);
    tz_end(&t);
}

static void test_udp_loopback(void) {
    tz_ctx t;
    int tx, rx;
    unsigned i, small = tz_slow() ? 40 : 400, made;
    buffet_net_zc *zc;
    buffet_net_zc_stats s;
    buffet_net_zc_drained d;
    buffet_chain c;
    size_t sent = 0, big[] = {(size_t)16 << 10, (size_t)60000, (size_t)65507};
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_udp_pair(&tx, &rx)) {
        tz_end(&t);
        BT_SKIP("udp", "no UDP over loopback");
    }
    zc = tz_tracker(&t, NULL);
    buffet_chain_init(&c, t.a);
    /* small datagrams, received at once, completions not read between them: merged */
    for (i = 0; i < small; i++) {
        size_t n = 1 + (i * 53) % 900;
        BT_CHECK(tz_fill(&t, &c, n));
        BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_OK && sent == n && buffet_chain_len(&c) == 0);
        BT_CHECK(tz_datagram(&t, rx, n));
    }
    BT_CHECK(buffet_net_zc_wait(tx, zc, 5000, &d) == BUFFET_OK);
    s = buffet_net_zc_get_stats(zc);
    BT_CHECK(s.calls == small && s.completed == small && s.notifications < s.completed && d.completed == small);
    printf("note udp loopback small: %u datagrams, %llu notifications, %llu copied\n", small,
           (unsigned long long)s.notifications, (unsigned long long)s.copied);
    /* large datagrams, up to the largest UDP/IPv4 payload */
    for (i = 0; i < 3; i++) {
        BT_CHECK(tz_fill(&t, &c, big[i]));
        BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_OK && sent == big[i]);
        BT_CHECK(tz_datagram(&t, rx, big[i]));
    }
    /* one byte too many: refused whole, no number used, nothing released early */
    made = t.created;
    BT_CHECK(tz_fill(&t, &c, 65508));
    BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_ERR_TOO_LARGE && sent == 0);
    BT_CHECK(buffet_chain_len(&c) == 65508 && t.released < made + 1);
    buffet_chain_deinit(&c);
    t.tx_pos -= 65508;   /* never sent */
    BT_CHECK(tz_fill(&t, &c, 1000));
    BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_OK && sent == 1000);
    BT_CHECK(tz_datagram(&t, rx, 1000));
    BT_CHECK(buffet_net_zc_wait(tx, zc, 5000, NULL) == BUFFET_OK);
    s = buffet_net_zc_get_stats(zc);
    BT_CHECK(s.calls == small + 4 && s.completed == s.calls && s.stale == 0 && s.in_flight == 0);
    BT_CHECK(s.copied == s.completed);
    BT_CHECK(!t.rx_bad && t.rx_pos == t.tx_pos && t.released == t.created);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    buffet_chain_deinit(&c);
    close(tx);
    close(rx);
    tz_end(&t);
}

/* A UDP peer that is gone, with IP_RECVERR: ICMP errors join the error queue (counted as other
   entries, ignored) and a later send fails (ECONNREFUSED) after which the numbering must still
   hold: every call completes, every buffer is released once. */
static void test_udp_icmp_errors(void) {
    tz_ctx t;
    int tx, rx, one = 1;
    unsigned i, refused = 0, rounds = tz_slow() ? 10 : 50;
    buffet_net_zc *zc;
    buffet_net_zc_stats s;
    buffet_chain c;
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_udp_pair(&tx, &rx)) {
        tz_end(&t);
        BT_SKIP("udp", "no UDP over loopback");
    }
    close(rx);   /* nobody listens: each datagram comes back as ICMP port unreachable */
    setsockopt(tx, SOL_IP, IP_RECVERR, &one, sizeof one);
    zc = tz_tracker(&t, NULL);
    buffet_chain_init(&c, t.a);
    for (i = 0; i < rounds; i++) {
        buffet_result r;
        BT_CHECK(tz_fill(&t, &c, 100 + i));
        r = buffet_net_send_chain_zc(tx, &c, zc, 0, NULL);
        BT_CHECK(r == BUFFET_OK || r == BUFFET_ERR_SYSTEM);
        if (r != BUFFET_OK) {
            BT_CHECK(errno == ECONNREFUSED && buffet_chain_len(&c) == 100 + i);
            refused++;
        }
        buffet_chain_deinit(&c);
        if (i % 5 == 4) buffet_net_zc_drain(tx, zc, NULL);
    }
    BT_CHECK(buffet_net_zc_wait(tx, zc, 5000, NULL) == BUFFET_OK);
    s = buffet_net_zc_get_stats(zc);
    BT_CHECK(s.calls + refused == rounds && s.completed == s.calls && s.stale == 0 && s.other > 0);
    printf("note udp to a closed port, IP_RECVERR: %u sends, %llu calls, %u refused, %llu other entries\n", rounds,
           (unsigned long long)s.calls, refused, (unsigned long long)s.other);
    BT_CHECK(t.released == t.created);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    close(tx);
    tz_end(&t);
}

static void test_faults(void) {
    tz_ctx t;
    int tx, rx;
    buffet_net_zc *zc;
    buffet_net_faults f;
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_sender(nu_tcp_pair(&tx, &rx), &tx)) {
        tz_end(&t);
        BT_SKIP("tcp", "no TCP over loopback");
    }
    zc = tz_tracker(&t, NULL);
    memset(&f, 0, sizeof f);
    f.seed = 42;
    f.fd = tx;   /* the sends and the error-queue reads */
    f.short_per_million = 300000;
    f.again_per_million = 150000;
    f.intr_per_million = 150000;
    buffet_net_faults_set(&f);
    tz_tcp_transfer(&t, tx, rx, zc, "tcp faults");
    buffet_net_faults_set(NULL);
    BT_CHECK(f.shorts > 0 && f.agains > 0 && f.intrs > 0);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    close(tx);
    close(rx);
    tz_end(&t);
}

/* ---- network namespaces joined by a veth pair ---- */

static nu_veth tz_veth;   /* A: 10.89.0.1 (the sender), B: 10.89.0.2 */

static void test_veth_netns(void) {
    tz_ctx t;
    int tx, rx;
    unsigned exhausted = 0, i;
    const char *why;
    char cmd[128];
    buffet_net_zc *zc;
    bool ok;
    TZ_NEED_ZC();
    if ((why = nu_veth_make(&tz_veth, "bzc", "10.89.0", NULL)) != NULL) BT_SKIP("netns", why);
    tz_begin(&t);
    if (!tz_sender(nu_veth_tcp_pair(&tz_veth, "10.89.0.2", &tx, &rx), &tx)) {
        nu_veth_del(&tz_veth);
        tz_end(&t);
        BT_SKIP("netns", "TCP across the veth pair failed");
    }
    zc = tz_tracker(&t, NULL);
    tz_tcp_transfer(&t, tx, rx, zc, "tcp veth");
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    close(tx);
    close(rx);

    /* A's option memory cut to almost nothing: a notification not read yet fills it, and the
       next zerocopy call is refused with ENOBUFS (EXHAUSTED) until a drain frees it */
    snprintf(cmd, sizeof cmd, "ip netns exec %s sysctl -qw net.core.optmem_max=1024", tz_veth.ns[0]);
    BT_CHECK(system(cmd) == 0);
    ok = tz_sender(nu_veth_tcp_pair(&tz_veth, "10.89.0.2", &tx, &rx), &tx);
    BT_CHECK(ok);
    if (ok) {
        bt_log lg;
        zc = tz_tracker(&t, &lg);
        for (i = 0; i < (tz_slow() ? 20u : 100u) && ok; i++) ok = tz_send_stream(&t, tx, rx, zc, (size_t)32 << 10, &exhausted);
        BT_CHECK(ok);
        BT_CHECK(tz_finish_stream(&t, tx, rx, zc));
        BT_CHECK(exhausted > 0 && bt_logged(&lg, BUFFET_ERR_EXHAUSTED) == exhausted);
        printf("note tcp veth optmem_max=1024: %u ENOBUFS refusals over %llu calls\n", exhausted,
               (unsigned long long)buffet_net_zc_get_stats(zc).calls);
        BT_CHECK(!t.rx_bad && t.rx_pos == t.tx_pos && t.released == t.created);
        BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
        close(tx);
        close(rx);
    }
    nu_veth_del(&tz_veth);
    tz_end(&t);
}

static void test_destroy_in_flight(void) {
    tz_ctx t;
    int tx, rx, small = 16 << 10;
    bt_log lg;
    buffet_net_zc *zc;
    buffet_net_zc_drained d;
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_sender(nu_tcp_pair(&tx, &rx), &tx)) {
        tz_end(&t);
        BT_SKIP("tcp", "no TCP over loopback");
    }
    zc = tz_tracker(&t, &lg);
    /* a small send buffer: the kernel takes the megabyte in parts, with EAGAIN between them */
    setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    BT_CHECK(tz_send_stream(&t, tx, rx, zc, tz_slow() ? (size_t)200 << 10 : (size_t)1 << 20, NULL));
    BT_CHECK(buffet_net_zc_get_stats(zc).in_flight > 1);
    printf("note tcp SO_SNDBUF 16 KiB: %u calls for one chain\n", (unsigned)buffet_net_zc_get_stats(zc).calls);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_ERR_STATE && bt_logged(&lg, BUFFET_ERR_STATE) == 1);
    BT_CHECK(t.released < t.created);   /* the tracker still holds the buffers */
    BT_CHECK(tz_finish_stream(&t, tx, rx, zc));   /* drains, so wait finds nothing more to do */
    BT_CHECK(buffet_net_zc_wait(tx, zc, 10000, &d) == BUFFET_OK);
    BT_CHECK(buffet_net_zc_get_stats(zc).in_flight == 0 && t.released == t.created);
    BT_CHECK(buffet_net_zc_wait(tx, zc, 0, NULL) == BUFFET_OK);   /* nothing in flight: at once */
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    BT_CHECK(!t.rx_bad);
    close(tx);
    close(rx);
    tz_end(&t);
}

/* A buffer already at BUFFET_BUF_REF_MAX references: the call is refused before it is made. */
static void test_ref_limit(void) {
    tz_ctx t;
    int tx, rx;
    bt_log lg;
    buffet_net_zc *zc;
    buffet_chain c;
    buffet_buf *b;
    uint32_t saved;
    size_t sent = 1;
    TZ_NEED_ZC();
    tz_begin(&t);
    if (!tz_sender(nu_tcp_pair(&tx, &rx), &tx)) {
        tz_end(&t);
        BT_SKIP("tcp", "no TCP over loopback");
    }
    zc = tz_tracker(&t, &lg);
    buffet_chain_init(&c, t.a);
    BT_CHECK(tz_fill(&t, &c, 5000));
    b = buffet_chain_at(&c, 0)->buf;
    saved = __atomic_load_n(&b->refcount, __ATOMIC_RELAXED);
    __atomic_store_n(&b->refcount, BUFFET_BUF_REF_MAX, __ATOMIC_RELAXED);   /* as if 2^31 holders */
    BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_ERR_OVERFLOW && sent == 0);
    BT_CHECK(bt_logged(&lg, BUFFET_ERR_OVERFLOW) == 1 && buffet_chain_len(&c) == 5000);
    BT_CHECK(buffet_net_zc_get_stats(zc).calls == 0 && recv(rx, t.scratch, 1, MSG_DONTWAIT) < 0);
    __atomic_store_n(&b->refcount, saved, __ATOMIC_RELAXED);
    BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_OK && sent == 5000);
    buffet_chain_deinit(&c);
    BT_CHECK(tz_finish_stream(&t, tx, rx, zc) && !t.rx_bad);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    close(tx);
    close(rx);
    tz_end(&t);
}

/* Numbers wrapping past 2^32 - 1, ranges out of order, merged, repeated, foreign and absurd,
   through the tracker's own bookkeeping (the kernel starts each socket at 0 and cannot be made
   to wrap in a test). */
static void test_wrap_and_ranges(void) {
    tz_ctx t;
    buffet_net_zc *zc;
    buffet_net_zc_drained d;
    buffet_net_zc_stats s;
    buffet_buf *b[40];
    uint32_t i, start = 0xFFFFFFF0u;
    tz_begin(&t);
    zc = tz_tracker(&t, NULL);
    zc->base = zc->next = start;   /* as if 2^32 - 16 calls went before */
    for (i = 0; i < 40; i++) {
        b[i] = tz_buf(&t, 0, 16);
        BT_CHECK(buffet__net_zc_reserve(zc, 2) == BUFFET_OK);
        /* call i holds b[i] (twice for even i: a buffer in two runs) */
        zc->refs[zc->rtail & (zc->rcap - 1)] = buffet_buf_ref(b[i]);
        if (i % 2 == 0) zc->refs[(zc->rtail + 1) & (zc->rcap - 1)] = buffet_buf_ref(b[i]);
        buffet__net_zc_commit(zc, i % 2 == 0 ? 2 : 1);
        buffet_buf_unref(b[i]);   /* the tracker holds the only references */
    }
    BT_CHECK(zc->next == start + 40 && zc->next == 24 && zc->in_flight == 40);
    memset(&d, 0, sizeof d);
    /* out of order: calls 10..19 (across the wrap: 0xFFFFFFFA..3) before the first ones */
    buffet__net_zc_complete(zc, start + 10, start + 19, true, &d);
    BT_CHECK(d.completed == 10 && t.released == 10 && zc->base == start);
    /* repeated: nothing released twice */
    buffet__net_zc_complete(zc, start + 12, start + 15, false, &d);
    BT_CHECK(d.completed == 10 && t.released == 10);
    /* the first ten: the window moves past all twenty */
    buffet__net_zc_complete(zc, start, start + 9, false, &d);
    BT_CHECK(t.released == 20 && zc->base == start + 20 && zc->rhead == zc->calls[zc->base & (zc->ncap - 1)].first);
    /* foreign: numbers far from the window, and a range ending before it */
    buffet__net_zc_complete(zc, 1000, 2000, false, &d);
    buffet__net_zc_complete(zc, start - 100, start - 1, false, &d);
    BT_CHECK(t.released == 20 && zc->in_flight == 20);
    /* absurd: every number there is (2^32 of them) -- only the window is walked */
    buffet__net_zc_complete(zc, start + 30, start + 29, true, &d);
    BT_CHECK(t.released == 40 && zc->in_flight == 0 && zc->base == zc->next && zc->rhead == zc->rtail);
    s = buffet_net_zc_get_stats(zc);
    BT_CHECK(s.completed == 40 && s.copied == 30 && s.notifications == 6 && s.calls == 40);
    BT_CHECK(s.stale == 4 + 1001 + 100 + (((uint64_t)1 << 32) - 20));
    BT_CHECK(d.completed == 40 && d.copied == 30 && d.notifications == 6);
    /* the rings grow with a window that wraps: 200 more calls, then all done in one range */
    for (i = 0; i < 200; i++) {
        buffet_buf *x = tz_buf(&t, 0, 8);
        BT_CHECK(buffet__net_zc_reserve(zc, 1) == BUFFET_OK);
        zc->refs[zc->rtail & (zc->rcap - 1)] = x;   /* the creator's reference goes to the tracker */
        buffet__net_zc_commit(zc, 1);
    }
    buffet__net_zc_complete(zc, start + 40, start + 239, false, NULL);
    BT_CHECK(t.released == 240 && zc->in_flight == 0);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    tz_end(&t);
}

static void test_bad_input(void) {
    tz_ctx t;
    buffet_net_zc *zc;
    buffet_net_zc_desc desc;
    buffet_net_zc_drained d;
    buffet_chain c, empty;
    int p[2], u[2], tx, rx, closed;
    size_t sent = 7;
    bt_log lg;
    tz_begin(&t);
    memset(&desc, 0, sizeof desc);
    BT_CHECK(buffet_net_zc_create(NULL, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_create(&zc, NULL) == BUFFET_ERR_INVALID && zc == NULL);
    BT_CHECK(buffet_net_zc_destroy(NULL) == BUFFET_OK);
    zc = tz_tracker(&t, &lg);
    buffet_chain_init(&c, t.a);
    buffet_chain_init(&empty, t.a);
    BT_CHECK(tz_fill(&t, &c, 3000));
    /* NULL, negative fd, unknown flags: nothing moves */
    BT_CHECK(buffet_net_send_chain_zc(0, NULL, zc, 0, &sent) == BUFFET_ERR_INVALID && sent == 0);
    BT_CHECK(buffet_net_send_chain_zc(0, &c, NULL, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_send_chain_zc(-1, &c, zc, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_send_chain_zc(0, &c, zc, BUFFET_NET_SENDFILE, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_drain(0, NULL, &d) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_drain(-1, zc, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_wait(-1, zc, 0, NULL) == BUFFET_ERR_INVALID);
    /* a closed descriptor, a pipe, a UNIX socket */
    closed = socket(AF_INET, SOCK_STREAM, 0);
    close(closed);
    BT_CHECK(buffet_net_send_chain_zc(closed, &c, zc, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_drain(closed, zc, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(pipe(p) == 0);
    BT_CHECK(buffet_net_send_chain_zc(p[1], &c, zc, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_zc_drain(p[0], zc, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, u) == 0);
    BT_CHECK(buffet_net_send_chain_zc(u[0], &c, zc, 0, NULL) == BUFFET_ERR_UNSUPPORTED);
    BT_CHECK(bt_logged(&lg, BUFFET_ERR_UNSUPPORTED) == 1);
    BT_CHECK(buffet_chain_len(&c) == 3000 && t.released == 0);
    BT_CHECK(buffet_net_zc_get_stats(zc).calls == 0);
    if (tz_zc_ok() && tz_sender(nu_tcp_pair(&tx, &rx), &tx)) {
        /* nothing queued yet */
        BT_CHECK(buffet_net_zc_drain(tx, zc, &d) == BUFFET_AGAIN && d.completed == 0);
        /* an empty chain binds the tracker and sends nothing */
        BT_CHECK(buffet_net_send_chain_zc(tx, &empty, zc, 0, &sent) == BUFFET_OK && sent == 0);
        /* now bound to tx: another socket is refused */
        BT_CHECK(buffet_net_send_chain_zc(rx, &c, zc, 0, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_zc_drain(rx, zc, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_chain_len(&c) == 3000);
        BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, BUFFET_NET_MORE, &sent) == BUFFET_OK && sent == 3000);
        BT_CHECK(tz_fill(&t, &c, 1));   /* the end of what MORE held back */
        BT_CHECK(buffet_net_send_chain_zc(tx, &c, zc, 0, &sent) == BUFFET_OK && sent == 1);
        BT_CHECK(tz_finish_stream(&t, tx, rx, zc) && !t.rx_bad);
        BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
        close(tx);
        close(rx);
    } else {
        BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    }
    close(p[0]);
    close(p[1]);
    close(u[0]);
    close(u[1]);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&empty);
    tz_end(&t);
}

int main(void) {
    BT_RUN(test_bad_input);
    BT_RUN(test_wrap_and_ranges);
    BT_RUN(test_tcp_loopback);
    BT_RUN(test_udp_loopback);
    BT_RUN(test_udp_icmp_errors);
    BT_RUN(test_faults);
    BT_RUN(test_destroy_in_flight);
    BT_RUN(test_ref_limit);
    BT_RUN(test_veth_netns);
    return bt_finish("test_net_zc.c");
}
