#define BUFFET_NET_AFXDP 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"
#include "frame_util.h"

/* test_net_afxdp.c - AF_XDP in buffet_net.h (>>afxdp), on a veth pair between two network
   namespaces of the test's own: the UMEM is a packet pool class's region and the redirect
   program is loaded by the header itself. Frames sent by a plain packet socket on the far end
   come out byte-exact, in order, each once, as packets of the pool whose bytes the kernel wrote
   into their buffers; sends go out byte-exact, a one-segment packet of the class as it is, the
   rest copied; received packets echoed back by reference; native and generic attachment both
   run (and say which); a second socket on the interface, bad input and the interface deleted
   get clean errors; without privileges, BUFFET_ERR_UNSUPPORTED. Every test ends with every
   buffer back in the pool. Root only: skips say why. C11 and C++17. */

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>

#define NBUF 1024   /* the class: one region of this many 2048-byte buffers */

static int small;   /* valgrind: fewer frames */
static nu_veth V;
static const char *veth_why = "not made yet", *xdp_why;

typedef struct xdp_job {
    buffet_net_xdp_desc d;
    buffet_net_xdp *x;
    buffet_result r;
    int err;
} xdp_job;
static int xdp_fn(void *arg) {
    xdp_job *j = (xdp_job *)arg;
    if (!j->d.ifname) j->d.ifname = V.dev[1];
    j->r = buffet_net_xdp_create(&j->x, &j->d);
    j->err = errno;
    return 0;
}
/* An AF_XDP socket on V.dev[1] (made in V.ns[1]) over f's class 0. */
static buffet_net_xdp *xdp_make(fx *f, unsigned flags, buffet_result *r) {
    xdp_job j;
    memset(&j, 0, sizeof j);
    j.d.cache = f->cache;
    j.d.flags = flags;
    j.d.ring_size = 256;
    if (nu_in_ns(V.ns[1], xdp_fn, &j) != 0) j.r = BUFFET_ERR_SYSTEM;
    if (r) *r = j.r;
    else BT_CHECK(j.r == BUFFET_OK && j.x);
    if (!r && j.r != BUFFET_OK) fprintf(stderr, "xdp_make: %s (errno %d %s)\n", buffet_result_str(j.r), j.err, strerror(j.err));
    return j.x;
}

#define XDP_OR_SKIP()                                                              \
    do {                                                                           \
        if (veth_why) BT_SKIP("netns", veth_why);                                 \
        if (xdp_why) BT_SKIP("afxdp", xdp_why);                                   \
    } while (0)

static buffet_result xdp_rx(void *x, buffet_pkt **pkts, size_t max, int timeout_ms, size_t *got) {
    return buffet_net_xdp_recv((buffet_net_xdp *)x, pkts, max, timeout_ms, got);
}

/* Frames the far side's socket receives: `want` test frames of len bytes, seq first.., exact? */
static bool peer_gets(int fd, uint32_t first, uint32_t want, size_t len) {
    uint32_t k;
    bool ok = true;
    for (k = 0; k < want; k++) {
        unsigned char b[2048], w[2048];
        struct pollfd pf;
        ssize_t r;
        pf.fd = fd;
        pf.events = POLLIN;
        pf.revents = 0;
        if (poll(&pf, 1, 5000) != 1) return false;
        r = recv(fd, b, sizeof b, 0);
        frame_fill(w, len, first + k);
        if (r != (ssize_t)len || memcmp(b, w, len) != 0) ok = false;
    }
    return ok;
}

/* Frames in, byte-exact and in order, native then generic; every buffer back. */
static void test_receive(void) {
    unsigned mode;
    XDP_OR_SKIP();
    for (mode = 0; mode < 2; mode++) {
        fx f;
        buffet_net_xdp *x;
        buffet_net_xdp_stats st;
        uint32_t n = small ? 64 : 2000, s, seen = 0;
        int tx;
        bool exact = true;
        fx_open(&f, 2048, NBUF, NBUF);
        x = xdp_make(&f, mode ? BUFFET_NET_XDP_GENERIC : 0, NULL);
        tx = nu_in_ns(V.ns[0], raw_fn, V.dev[0]);
        BT_CHECK(tx >= 0);
        if (x && tx >= 0) {
            st = buffet_net_xdp_get_stats(x);
            BT_CHECK(st.native == (mode == 0));   /* veth takes native programs */
            BT_CHECK(!st.zerocopy);                /* veth has no zero-copy AF_XDP */
            BT_CHECK(st.in_kernel > 0);
            for (s = 0; s < n; s += 32) {
                uint32_t k;
                bool ok;
                size_t len = 60 + (s * 7) % 1400;
                for (k = 0; k < 32 && s + k < n; k++) BT_CHECK(raw_send(tx, len, s + k));
                seen += fu_recv_frames(&f, xdp_rx, x, s, k, len, &ok, NULL);
                exact = exact && ok;
            }
            BT_CHECK(seen == n && exact);
            st = buffet_net_xdp_get_stats(x);
            BT_CHECK(st.rx_packets >= n);
        }
        if (tx >= 0) close(tx);
        buffet_net_xdp_destroy(x);
        fx_close(&f);
    }
}

/* Sends: one-segment packets of the class go as they are, two-segment ones and packets of
   another class are copied; all arrive byte-exact; the copies are counted. */
static void test_send(void) {
    fx f;
    buffet_net_xdp *x;
    buffet_net_xdp_stats st;
    uint32_t n = small ? 64 : 1024, s;
    int rx;
    bool exact = true;
    XDP_OR_SKIP();
    fx_open(&f, 2048, NBUF, NBUF);
    x = xdp_make(&f, 0, NULL);
    rx = nu_in_ns(V.ns[0], raw_fn, V.dev[0]);
    BT_CHECK(rx >= 0);
    if (!x || rx < 0) goto out;
    for (s = 0; s < n; s += 32) {
        buffet_pkt *pk[32];
        size_t k, sent = 0, len = 60 + (s * 3) % 1400;
        for (k = 0; k < 32; k++) {
            unsigned char b[2048];
            pk[k] = buffet_pkt_alloc(f.cache, len);
            BT_CHECK(pk[k] != NULL);
            if (!pk[k]) goto out;
            frame_fill(b, len, s + (uint32_t)k);
            if (k % 4 == 3) {   /* two segments: copied */
                buffet_pkt *tail = buffet_pkt_alloc(f.cache, len);
                memcpy(buffet_pkt_append(pk[k], 14), b, 14);
                memcpy(buffet_pkt_append(tail, len - 14), b + 14, len - 14);
                BT_CHECK(buffet_pkt_chain(pk[k], tail) == BUFFET_OK);
            } else {
                memcpy(buffet_pkt_append(pk[k], len), b, len);
            }
        }
        BT_CHECK(buffet_net_xdp_send(x, pk, 32, &sent) == BUFFET_OK && sent == 32);
        for (k = sent; k < 32; k++) buffet_pkt_free(f.cache, pk[k]);
        exact = exact && peer_gets(rx, s, (uint32_t)sent, len);
    }
    BT_CHECK(exact);
    st = buffet_net_xdp_get_stats(x);
    BT_CHECK(st.tx_packets == n && st.tx_copied == n / 4);
out:
    if (rx >= 0) close(rx);
    buffet_net_xdp_destroy(x);
    fx_close(&f);
}

/* Received packets sent straight back (by reference: their buffers are the UMEM's), and a clone
   of one (shared: copied); the far side gets them byte-exact. Some still held at destroy. */
static void test_echo(void) {
    fx f;
    buffet_net_xdp *x;
    buffet_pkt *kept[16], *c;
    uint32_t seen;
    size_t sent = 0, i;
    int peer;
    bool exact;
    XDP_OR_SKIP();
    fx_open(&f, 2048, NBUF, NBUF);
    x = xdp_make(&f, 0, NULL);
    peer = nu_in_ns(V.ns[0], raw_fn, V.dev[0]);
    BT_CHECK(peer >= 0);
    if (!x || peer < 0) goto out;
    for (i = 0; i < 16; i++) BT_CHECK(raw_send(peer, 200, 500 + (uint32_t)i));
    seen = fu_recv_frames(&f, xdp_rx, x, 500, 16, 200, &exact, kept);
    BT_CHECK(seen == 16 && exact);
    if (seen != 16) {
        while (seen) buffet_pkt_free(f.cache, kept[--seen]);
        goto out;
    }
    BT_CHECK(buffet_net_xdp_send(x, kept + 1, 7, &sent) == BUFFET_OK && sent == 7);
    BT_CHECK(peer_gets(peer, 501, 7, 200));
    BT_CHECK(buffet_net_xdp_get_stats(x).tx_copied == 0);   /* their own buffers */
    c = buffet_pkt_clone(f.cache, kept[0]);
    BT_CHECK(c != NULL);
    if (c) {
        BT_CHECK(buffet_net_xdp_send(x, &c, 1, &sent) == BUFFET_OK && sent == 1);
        BT_CHECK(peer_gets(peer, 500, 1, 200));
        BT_CHECK(buffet_net_xdp_get_stats(x).tx_copied == 1);   /* shared: copied */
    }
    BT_CHECK(frame_is(kept[0], 200, 500));
    buffet_pkt_free(f.cache, kept[0]);
    buffet_net_xdp_destroy(x);   /* packets 8..15 are the caller's: still good after */
    x = NULL;
    for (i = 8; i < 16; i++) {
        BT_CHECK(frame_is(kept[i], 200, 500 + (uint32_t)i));
        buffet_pkt_free(f.cache, kept[i]);
    }
out:
    if (peer >= 0) close(peer);
    buffet_net_xdp_destroy(x);
    fx_close(&f);
}

/* A burst far larger than the rings, not read while it comes: the kernel drops what has no room
   and counts it; the ring then receives what comes next, whole. A frame longer than a chunk
   (the MTU raised for it) is dropped by the kernel, not cut. */
static void test_overrun(void) {
    fx f;
    buffet_net_xdp *x = NULL;
    buffet_net_xdp_stats st;
    buffet_pkt *pk[64];
    buffet_result r;
    uint32_t i, seen;
    size_t got = 0;
    int tx;
    bool exact;
    xdp_job j;
    char cmd[256];
    XDP_OR_SKIP();
    fx_open(&f, 2048, 256, 256);
    memset(&j, 0, sizeof j);
    j.d.cache = f.cache;
    j.d.ring_size = 64;
    BT_CHECK(nu_in_ns(V.ns[1], xdp_fn, &j) == 0 && j.r == BUFFET_OK);
    x = j.x;
    tx = nu_in_ns(V.ns[0], raw_fn, V.dev[0]);
    BT_CHECK(tx >= 0);
    if (!x || tx < 0) goto out;
    for (i = 0; i < 2000; i++) BT_CHECK(raw_send(tx, 100, i));
    while ((r = buffet_net_xdp_recv(x, pk, 64, 200, &got)) == BUFFET_OK)
        while (got) buffet_pkt_free(f.cache, pk[--got]);
    BT_CHECK(r == BUFFET_AGAIN);
    st = buffet_net_xdp_get_stats(x);
    BT_CHECK(st.rx_packets < 2000);
    BT_CHECK(st.kernel_rx_ring_full + st.kernel_rx_dropped + st.kernel_fill_ring_empty > 0);
    for (i = 0; i < 5; i++) BT_CHECK(raw_send(tx, 100, 9000 + i));
    seen = fu_recv_frames(&f, xdp_rx, x, 9000, 5, 100, &exact, NULL);
    BT_CHECK(seen == 5 && exact);
    /* 2900 bytes: above the chunk's 2176 - 256 (a native program keeps the MTU within a page) */
    snprintf(cmd, sizeof cmd, "ip -n %s link set %s mtu 3000 && ip -n %s link set %s mtu 3000", V.ns[0], V.dev[0],
             V.ns[1], V.dev[1]);
    BT_CHECK(nu_sh(cmd) == 0);
    {
        uint64_t before = buffet_net_xdp_get_stats(x).rx_packets;
        BT_CHECK(raw_send(tx, 2900, 7));
        BT_CHECK(raw_send(tx, 100, 9100));
        seen = fu_recv_frames(&f, xdp_rx, x, 9100, 1, 100, &exact, NULL);
        BT_CHECK(seen == 1 && exact);
        BT_CHECK(buffet_net_xdp_get_stats(x).rx_packets == before + 1);   /* the long one never came */
        snprintf(cmd, sizeof cmd, "ip -n %s link set %s mtu 1500 && ip -n %s link set %s mtu 1500", V.ns[0], V.dev[0],
                 V.ns[1], V.dev[1]);
        BT_CHECK(nu_sh(cmd) == 0);
    }
out:
    if (tx >= 0) close(tx);
    buffet_net_xdp_destroy(x);
    fx_close(&f);
}

/* Bad input of every call, and a second socket on the interface. */
static void test_bad_input(void) {
    fx f, two;
    buffet_net_xdp *x = NULL, *y;
    buffet_net_xdp_desc d;
    buffet_pkt *pk[2];
    buffet_result r;
    size_t n = 9;
    fx_open(&f, 2048, NBUF, NBUF);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    d.ifname = "lo";
    BT_CHECK(buffet_net_xdp_create(NULL, &d) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_xdp_create(&x, NULL) == BUFFET_ERR_INVALID && !x);
    d.ifname = "no-such-if0";
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID && !x);
    d.ifname = "lo";
    d.ring_size = 100;
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID);
    d.ring_size = 32768;
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID);
    d.ring_size = 0;
    d.cls = 5;
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID);
    d.cls = 0;
    fx_open(&two, 2048, 64, 256);   /* the class may grow into more regions: no UMEM */
    d.cache = two.cache;
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID && !x);
    fx_close(&two);
    fx_open(&two, 1024, 256, 256);   /* no room for a frame after the kernel's headroom */
    d.cache = two.cache;
    BT_CHECK(buffet_net_xdp_create(&x, &d) == BUFFET_ERR_INVALID && !x);
    fx_close(&two);
    BT_CHECK(buffet_net_xdp_recv(NULL, pk, 2, 0, &n) == BUFFET_ERR_INVALID && n == 0);
    BT_CHECK(buffet_net_xdp_send(NULL, pk, 2, &n) == BUFFET_ERR_INVALID && n == 0);
    BT_CHECK(buffet_net_xdp_fd(NULL) == -1);
    buffet_net_xdp_destroy(NULL);
    BT_CHECK(buffet_net_xdp_get_stats(NULL).rx_packets == 0);
    if (veth_why || xdp_why) {
        fx_close(&f);
        if (veth_why) BT_SKIP("netns", veth_why);
        BT_SKIP("afxdp", xdp_why);
    }
    x = xdp_make(&f, 0, NULL);
    if (x) {
        buffet_pkt *runt = buffet_pkt_alloc(f.cache, 64), *big = buffet_pkt_alloc(f.cache, 2000);
        BT_CHECK(buffet_net_xdp_fd(x) >= 0);
        BT_CHECK(buffet_net_xdp_recv(x, NULL, 2, 0, &n) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_xdp_recv(x, pk, 2, 0, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_xdp_recv(x, pk, 0, 0, &n) == BUFFET_OK && n == 0);
        BT_CHECK(buffet_net_xdp_send(x, pk, 0, &n) == BUFFET_OK && n == 0);
        if (runt && big) {
            memset(buffet_pkt_append(runt, 10), 0, 10);
            memset(buffet_pkt_append(big, 2000), 0, 2000);
            pk[0] = runt;
            BT_CHECK(buffet_net_xdp_send(x, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);
            pk[0] = big;   /* above a frame of the class (2176 - 256 bytes) */
            BT_CHECK(buffet_net_xdp_send(x, pk, 1, &n) == BUFFET_ERR_TOO_LARGE && n == 0);
            pk[0] = NULL;
            BT_CHECK(buffet_net_xdp_send(x, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);
            {   /* a packet of another pool: refused whole, still the caller's */
                fx other;
                fx_open(&other, 2048, 16, 16);
                pk[0] = buffet_pkt_alloc(other.cache, 64);
                BT_CHECK(pk[0] != NULL);
                if (pk[0]) {
                    memset(buffet_pkt_append(pk[0], 60), 0, 60);
                    BT_CHECK(buffet_net_xdp_send(x, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);
                    buffet_pkt_free(other.cache, pk[0]);
                }
                fx_close(&other);
            }
        }
        if (runt) buffet_pkt_free(f.cache, runt);
        if (big) buffet_pkt_free(f.cache, big);
        /* one program per interface: a second socket finds it taken */
        y = xdp_make(&f, 0, &r);
        BT_CHECK(r == BUFFET_ERR_SYSTEM && !y);
        buffet_net_xdp_destroy(y);
        buffet_net_xdp_destroy(x);
        /* and after destroy the interface is free again */
        y = xdp_make(&f, 0, &r);
        BT_CHECK(r == BUFFET_OK && y);
        buffet_net_xdp_destroy(y);
    }
    fx_close(&f);
}

/* Without privileges (a child that became nobody): BUFFET_ERR_UNSUPPORTED. */
static void test_unprivileged(void) {
    pid_t pid;
    int st = 0;
    if (geteuid() != 0) BT_SKIP("netns", "not root: cannot drop privileges in a child");
    pid = fork();
    if (pid == 0) {
        fx f;
        buffet_net_xdp *x = NULL;
        buffet_net_xdp_desc d;
        buffet_result r;
        fx_open(&f, 2048, 256, 256);
        memset(&d, 0, sizeof d);
        d.cache = f.cache;
        d.ifname = "lo";
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        r = buffet_net_xdp_create(&x, &d);
        fx_close(&f);
        _exit(r == BUFFET_ERR_UNSUPPORTED && !x && !bt_cur_failed ? 0 : 1);
    }
    BT_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    BT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The interface deleted under the socket: CLOSED (ENODEV), destroy gives every buffer back. */
static void test_interface_gone(void) {
    fx f;
    buffet_net_xdp *x;
    buffet_pkt *pk[8];
    size_t n = 0;
    int k;
    char cmd[160];
    buffet_result r = BUFFET_OK;
    XDP_OR_SKIP();
    fx_open(&f, 2048, NBUF, NBUF);
    x = xdp_make(&f, 0, NULL);
    if (!x) goto out;
    snprintf(cmd, sizeof cmd, "ip -n %s link del %s", V.ns[1], V.dev[1]);
    BT_CHECK(nu_sh(cmd) == 0);
    for (k = 0; k < 50; k++) {
        r = buffet_net_xdp_recv(x, pk, 8, 100, &n);
        while (r == BUFFET_OK && n) buffet_pkt_free(f.cache, pk[--n]);
        if (r != BUFFET_OK && r != BUFFET_AGAIN) break;
    }
    BT_CHECK(r == BUFFET_ERR_CLOSED && errno == ENODEV);
    pk[0] = buffet_pkt_alloc(f.cache, 64);
    if (pk[0]) {
        memset(buffet_pkt_append(pk[0], 60), 0, 60);
        r = buffet_net_xdp_send(x, pk, 1, &n);
        BT_CHECK(r == BUFFET_ERR_CLOSED);
        if (n == 0) buffet_pkt_free(f.cache, pk[0]);
    }
out:
    buffet_net_xdp_destroy(x);
    fx_close(&f);
}

/* Can an AF_XDP socket with its program be made here at all (on lo, generic)? */
static void probe(void) {
    fx f;
    buffet_net_xdp *x = NULL;
    buffet_net_xdp_desc d;
    buffet_result r;
    if (geteuid() != 0) {
        xdp_why = "not root: AF_XDP and bpf(2) need privileges";
        return;
    }
    fx_open(&f, 2048, 256, 256);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    d.ifname = "lo";
    d.ring_size = 64;
    d.flags = BUFFET_NET_XDP_GENERIC;
    r = buffet_net_xdp_create(&x, &d);
    if (r == BUFFET_ERR_UNSUPPORTED) xdp_why = "AF_XDP or bpf(2) refused here (qemu-user, an old kernel, or a sandbox)";
    buffet_net_xdp_destroy(x);
    fx_close(&f);
}

int main(void) {
    const char *m = getenv("BUFFET_TEST_MODE");
    small = m && (strcmp(m, "valgrind") == 0 || strcmp(m, "aarch64") == 0);
    probe();
    veth_why = nu_veth_make(&V, "bfxd", "10.95.0", NULL);
    BT_RUN(test_bad_input);
    BT_RUN(test_unprivileged);
    BT_RUN(test_receive);
    BT_RUN(test_send);
    BT_RUN(test_echo);
    BT_RUN(test_overrun);
    BT_RUN(test_interface_gone);
    nu_veth_del(&V);
    return bt_finish("test_net_afxdp.c");
}
