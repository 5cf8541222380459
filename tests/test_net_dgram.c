#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"

/* test_net_dgram.c - batched UDP: recvmmsg/sendmmsg round trips over loopback (IPv4, IPv6) and
   over a veth pair between two network namespaces the test makes, GSO and GRO, truncation,
   metadata, the fault layer, bad input; everything under a debug allocator, packets counted. */

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int small;   /* valgrind, qemu: fewer rounds */
static int qemu;    /* qemu-user: it knows no SO_TIMESTAMPNS (7.2) */
static int no_timestamps;

/* buffet_net_udp_setup, where qemu's missing SO_TIMESTAMPNS is allowed (and then not checked). */
static bool setup(int fd, unsigned flags) {
    buffet_result r = buffet_net_udp_setup(fd, flags);
    if (r == BUFFET_ERR_UNSUPPORTED && qemu) {
        no_timestamps = 1;
        return true;
    }
    return r == BUFFET_OK;
}

/* ---- fixture: a debug allocator under a pool with room for the meta, and a cache ---- */
typedef struct fx {
    buffet_debug *dbg;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
} fx;

static void fx_open_user(fx *f, uint32_t user_size) {
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    memset(f, 0, sizeof *f);
    memset(&dd, 0, sizeof dd);
    BT_CHECK(buffet_debug_create(&f->dbg, &dd) == BUFFET_OK);
    memset(&pd, 0, sizeof pd);
    pd.name = "dgram";
    pd.class_sizes[0] = 2048;
    pd.class_sizes[1] = 65535 - 128;   /* a whole coalesced GRO datagram */
    pd.user_size = user_size;
    pd.initial = 64;
    pd.max = 2048;
    pd.no_huge_pages = true;
    pd.allocator = buffet_debug_allocator(f->dbg);
    BT_CHECK(buffet_pkt_pool_create(&f->pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&f->cache, f->pool, 0) == BUFFET_OK);
}
static void fx_open(fx *f) { fx_open_user(f, (uint32_t)sizeof(buffet_net_meta)); }

static size_t fx_in_use(fx *f) { return nu_pool_in_use(f->pool, f->cache); }

static void fx_close(fx *f) {
    BT_CHECK(fx_in_use(f) == 0);   /* every packet came back */
    buffet_pkt_cache_destroy(f->cache);
    buffet_pkt_pool_destroy(f->pool);
    BT_CHECK(buffet_debug_get_stats(f->dbg).live_count == 0);
    buffet_debug_destroy(f->dbg);
}

/* ---- sockets and helpers ---- */
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A non-blocking UDP socket bound to ip, port chosen by the kernel; *a gets the address. */
static int udp_bound(int family, const char *ip, buffet_net_addr *a) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t l = sizeof *a;
    int big = 8 << 20;
    if (fd < 0) return -1;
    /* Bursts of hundreds of datagrams sit in the queue before the test reads them: room for them
       (FORCE, as root, passes rmem_max; else as much as rmem_max allows). */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    memset(a, 0, sizeof *a);
    a->sa.sa_family = (sa_family_t)family;
    if (family == AF_INET) inet_pton(AF_INET, ip, &a->in4.sin_addr);
    else inet_pton(AF_INET6, ip, &a->in6.sin6_addr);
    if (bind(fd, &a->sa, family == AF_INET ? (socklen_t)sizeof a->in4 : (socklen_t)sizeof a->in6) != 0 ||
        getsockname(fd, &a->sa, &l) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool same_addr(const buffet_net_addr *a, const buffet_net_addr *b, bool port) {
    if (a->sa.sa_family != b->sa.sa_family) return false;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr && (!port || a->in4.sin_port == b->in4.sin_port);
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0 && (!port || a->in6.sin6_port == b->in6.sin6_port);
}

static unsigned char pat(unsigned seed, size_t j) { return (unsigned char)(seed * 131u + j * 7u + (j >> 8)); }

static bool has_pat(const buffet_pkt *p, unsigned seed, size_t from, size_t len) {
    size_t j;
    unsigned char tmp[65536];
    const unsigned char *d = (const unsigned char *)buffet_pkt_read(p, 0, len, tmp);
    if (len == 0) return p->pkt_len == 0;
    if (!d) return false;
    for (j = 0; j < len; j++)
        if (d[j] != pat(seed, from + j)) return false;
    return true;
}

/* Receive until want packets are in pkts (or 2 s pass); every result is ORed into *seen as a bit
   (1 OK, 2 TRUNCATED, 4 other). */
static size_t recv_n(int fd, fx *f, int cls, buffet_pkt **pkts, size_t want, unsigned *seen) {
    size_t have = 0;
    int idle = 0;
    while (have < want && idle < 200) {
        size_t got = 0;
        buffet_result r = buffet_net_udp_recv(fd, f->cache, cls, pkts + have, want - have, &got);
        have += got;
        if (r == BUFFET_AGAIN) {
            struct pollfd pf;
            pf.fd = fd;
            pf.events = POLLIN;
            pf.revents = 0;
            if (poll(&pf, 1, 10) == 0) idle++;
            continue;
        }
        if (seen) *seen |= r == BUFFET_OK ? 1u : r == BUFFET_ERR_TRUNCATED ? 2u : 4u;
        if (r != BUFFET_OK && r != BUFFET_ERR_TRUNCATED) break;
    }
    return have;
}

/* Send all of pkts, retrying on AGAIN (the fault layer); returns the last result. */
static buffet_result send_all(int fd, fx *f, buffet_pkt **pkts, size_t n) {
    size_t done = 0;
    int tries = 0;
    buffet_result r = BUFFET_OK;
    while (done < n && tries++ < 10000) {
        size_t sent = 0;
        r = buffet_net_udp_send(fd, f->cache, pkts + done, n - done, &sent);
        done += sent;
        if (r != BUFFET_OK && r != BUFFET_AGAIN) return r;
    }
    return done == n ? BUFFET_OK : r;
}

/* A packet of len pattern bytes, in two chained segments when split (and len allows). */
static buffet_pkt *make_pkt(fx *f, unsigned seed, size_t len, bool split) {
    size_t a = split && len > 1 ? len / 3 : len, j;
    buffet_pkt *p = buffet_pkt_alloc(f->cache, a), *q;
    unsigned char *d;
    if (!p) return NULL;
    if (buffet_net_meta_of(p)) memset(buffet_net_meta_of(p), 0, sizeof(buffet_net_meta));
    d = (unsigned char *)buffet_pkt_append(p, a);
    for (j = 0; j < a; j++) d[j] = pat(seed, j);
    if (a < len) {
        q = buffet_pkt_alloc(f->cache, len - a);
        d = (unsigned char *)buffet_pkt_append(q, len - a);
        for (j = a; j < len; j++) d[j - a] = pat(seed, j);
        BT_CHECK(buffet_pkt_chain(p, q) == BUFFET_OK);
    }
    return p;
}

/* ---- the round trip: 32 mixed datagrams a round, metadata checked ---- */
static const size_t sizes[] = {0, 1, 2, 7, 64, 100, 511, 512, 1000, 1200, 1471, 1472, 17, 300, 1024, 1400};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void roundtrip(fx *f, int tx, const buffet_net_addr *tx_addr, int rx, const buffet_net_addr *rx_addr,
                      unsigned ifindex, int rounds) {
    int round;
    for (round = 0; round < rounds; round++) {
        buffet_pkt *out[32], *in[32];
        size_t len[32], i, got;
        uint8_t ecn[32];
        uint64_t t0, t1;
        unsigned seen = 0;
        for (i = 0; i < 32; i++) {
            buffet_net_meta *m;
            len[i] = sizes[((size_t)round * 7 + i) % NSIZES];
            out[i] = make_pkt(f, (unsigned)((size_t)round * 32 + i), len[i], i % 5 == 3);
            m = buffet_net_meta_of(out[i]);
            BT_CHECK(m != NULL);
            if (!m) return;
            memset(m, 0, sizeof *m);
            m->peer = *rx_addr;
            ecn[i] = (uint8_t)(i % 4);
            if (i % 4) m->flags = BUFFET_NET_META_ECN;
            m->ecn = ecn[i];
        }
        t0 = now_ns();
        BT_CHECK(send_all(tx, f, out, 32) == BUFFET_OK);
        got = recv_n(rx, f, -1, in, 32, &seen);
        t1 = now_ns();
        BT_CHECK(got == 32);
        BT_CHECK(seen == 1);
        for (i = 0; i < got; i++) {
            buffet_net_meta *m = buffet_net_meta_of(in[i]);
            BT_CHECK(in[i]->pkt_len == len[i] && in[i]->nb_segs == 1);
            BT_CHECK(has_pat(in[i], (unsigned)((size_t)round * 32 + i), 0, len[i]));
            BT_CHECK(same_addr(&m->peer, tx_addr, true));
            BT_CHECK((m->flags & BUFFET_NET_META_LOCAL) && same_addr(&m->local, rx_addr, false));
            BT_CHECK(m->ifindex == ifindex);
            BT_CHECK((m->flags & BUFFET_NET_META_ECN) && m->ecn == ecn[i]);
            BT_CHECK(!(m->flags & BUFFET_NET_META_TRUNC) && m->wire_len == len[i] && m->seg_size == 0);
            BT_CHECK(no_timestamps || (in[i]->timestamp >= t0 - 1000000 && in[i]->timestamp <= t1 + 1000000));
        }
        buffet_pkt_free_bulk(f->cache, in, got);
    }
}

static void loopback(int family, const char *ip) {
    fx f;
    buffet_net_addr ta, ra;
    int tx, rx;
    fx_open(&f);
    tx = udp_bound(family, ip, &ta);
    rx = udp_bound(family, ip, &ra);
    if (tx < 0 || rx < 0) {
        if (tx >= 0) close(tx);
        if (rx >= 0) close(rx);
        fx_close(&f);
        BT_SKIP(family == AF_INET ? "ipv4" : "ipv6", "no loopback address to bind");
    }
    BT_CHECK(setup(rx, 0));
    BT_CHECK(setup(tx, 0));
    roundtrip(&f, tx, &ta, rx, &ra, if_nametoindex("lo"), small ? 2 : 20);
    close(tx);
    close(rx);
    fx_close(&f);
}
static void test_loopback_v4(void) { loopback(AF_INET, "127.0.0.1"); }
static void test_loopback_v6(void) { loopback(AF_INET6, "::1"); }

/* An IPv6 socket talking to an IPv4 peer (v4-mapped): pktinfo and ECN through the IPv4 options. */
static void test_dual_stack(void) {
    fx f;
    buffet_net_addr ta, ra, mapped;
    int tx, rx;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rx = udp_bound(AF_INET6, "::", &ra);
    BT_CHECK(tx >= 0 && rx >= 0);
    BT_CHECK(setup(rx, 0));
    if (tx >= 0 && rx >= 0) {
        buffet_pkt *p = make_pkt(&f, 9, 100, false), *in[1];
        buffet_net_meta *m = buffet_net_meta_of(p);
        unsigned seen = 0;
        BT_CHECK(m != NULL);   /* the fixture's pool has the user area */
        if (!m) goto done;
        memset(m, 0, sizeof *m);
        m->peer.in4.sin_family = AF_INET;
        inet_pton(AF_INET, "127.0.0.1", &m->peer.in4.sin_addr);
        m->peer.in4.sin_port = ra.in6.sin6_port;
        m->flags = BUFFET_NET_META_ECN;
        m->ecn = BUFFET_NET_ECN_CE;
        BT_CHECK(send_all(tx, &f, &p, 1) == BUFFET_OK);
        if (recv_n(rx, &f, -1, in, 1, &seen) != 1 || !(m = buffet_net_meta_of(in[0]))) {
            BT_CHECK(!"the datagram came, with its metadata");
            goto done;
        }
        memset(&mapped, 0, sizeof mapped);
        mapped.in6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.in6.sin6_addr);
        mapped.in6.sin6_port = ta.in4.sin_port;
        BT_CHECK(same_addr(&m->peer, &mapped, true));
        BT_CHECK((m->flags & BUFFET_NET_META_LOCAL) && m->local.sa.sa_family == AF_INET);
        BT_CHECK((m->flags & BUFFET_NET_META_ECN) && m->ecn == BUFFET_NET_ECN_CE);
        BT_CHECK(has_pat(in[0], 9, 0, 100));
        /* and back: the reply goes to the v4-mapped peer, its ECN as IP_TOS */
        m->flags = BUFFET_NET_META_ECN;
        m->ecn = BUFFET_NET_ECN_ECT1;
        BT_CHECK(setup(tx, 0));
        BT_CHECK(send_all(rx, &f, in, 1) == BUFFET_OK);
        if (recv_n(tx, &f, -1, in, 1, &seen) != 1 || !(m = buffet_net_meta_of(in[0]))) {
            BT_CHECK(!"the reply came, with its metadata");
            goto done;
        }
        BT_CHECK(m->ecn == BUFFET_NET_ECN_ECT1 && has_pat(in[0], 9, 0, 100));
        buffet_pkt_free(f.cache, in[0]);
        BT_CHECK(seen == 1);
    }
done:
    if (tx >= 0) close(tx);
    if (rx >= 0) close(rx);
    fx_close(&f);
}

/* ---- GSO and GRO ---- */
/* Receive total bytes of seg-sized datagrams (pattern seed) and check each, in order. Returns
   how many packets came coalesced (meta.seg_size set). */
static size_t expect_segments(fx *f, int rx, unsigned seed, size_t total, size_t seg) {
    size_t want = (total + seg - 1) / seg, have = 0, coalesced = 0, i, at = 0;
    buffet_pkt **in = (buffet_pkt **)calloc(want, sizeof *in);
    unsigned seen = 0;
    have = recv_n(rx, f, -1, in, want, &seen);
    BT_CHECK(have == want);
    BT_CHECK(seen == 1);
    if (have != want) fprintf(stderr, "  expect_segments: %zu of %zu\n", have, want);
    for (i = 0; i < have; i++) {
        size_t l = total - at < seg ? total - at : seg;
        buffet_net_meta *m = buffet_net_meta_of(in[i]);
        BT_CHECK(in[i]->len == l && m->wire_len == l && !(m->flags & BUFFET_NET_META_TRUNC));
        BT_CHECK(has_pat(in[i], seed, at, l));
        if (m->seg_size) {
            BT_CHECK(m->seg_size == seg);
            coalesced++;
        }
        at += l;
    }
    buffet_pkt_free_bulk(f->cache, in, have);
    free(in);
    return coalesced;
}

static void gso_gro(fx *f, int tx, int rx_gro, const buffet_net_addr *gro_addr, int rx_plain,
                    const buffet_net_addr *plain_addr) {
    size_t seg = 1200, total = (small ? 70 : 200) * seg + 333, sent = 0, j;
    unsigned char *buf = (unsigned char *)malloc(total);
    buffet_net_meta to;
    buffet_chain ch;
    buffet_pkt *p;
    for (j = 0; j < total; j++) buf[j] = pat(1, j);
    memset(&to, 0, sizeof to);
    /* one large buffer, GRO on: several calls (at most 64 segments / 64 KiB each), split back */
    to.peer = *gro_addr;
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, total, seg, &to, &sent) == BUFFET_OK && sent == total);
    BT_CHECK(expect_segments(f, rx_gro, 1, total, seg) > 0);   /* the kernel did coalesce */
    /* GRO off: the kernel segments, the receiver sees plain datagrams */
    to.peer = *plain_addr;
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, total, seg, &to, &sent) == BUFFET_OK && sent == total);
    BT_CHECK(expect_segments(f, rx_plain, 1, total, seg) == 0);
    /* a buffet_chain of odd-sized slices: consumed as it goes */
    buffet_chain_init(&ch, buffet_debug_allocator(f->dbg));
    for (j = 0; j < total;) {
        size_t k = total - j < 777 ? total - j : 777;
        buffet_buf *b;
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.kind = BUFFET_BUF_HEAP;
        d.size = k;
        d.allocator = buffet_debug_allocator(f->dbg);
        BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
        memcpy(b->data, buf + j, k);
        BT_CHECK(buffet_chain_append(&ch, b, 0, k) == BUFFET_OK);
        buffet_buf_unref(b);
        j += k;
    }
    to.peer = *gro_addr;
    BT_CHECK(buffet_net_udp_send_gso_chain(tx, &ch, seg, &to, &sent) == BUFFET_OK && sent == total);
    BT_CHECK(buffet_chain_len(&ch) == 0);
    buffet_chain_deinit(&ch);
    expect_segments(f, rx_gro, 1, total, seg);
    /* a packet chain of three segments, from byte 100 on */
    p = make_pkt(f, 1, 2000, false);
    {
        buffet_pkt *q = make_pkt(f, 1, 4000, false), *r = make_pkt(f, 1, 6000, false);
        unsigned char *d;
        /* rewrite q and r so the chain carries one pattern end to end */
        d = (unsigned char *)buffet_pkt_data(q);
        for (j = 0; j < q->len; j++) d[j] = pat(1, 2000 + j);
        d = (unsigned char *)buffet_pkt_data(r);
        for (j = 0; j < r->len; j++) d[j] = pat(1, 6000 + j);
        BT_CHECK(buffet_pkt_chain(p, q) == BUFFET_OK && buffet_pkt_chain(p, r) == BUFFET_OK);
    }
    memset(buffet_net_meta_of(p), 0, sizeof to);
    buffet_net_meta_of(p)->peer = *gro_addr;
    BT_CHECK(buffet_net_udp_send_gso_pkt(tx, f->cache, &p, 100, 500, &sent) == BUFFET_OK && p == NULL);
    BT_CHECK(sent == 11900);
    {
        /* segments carry pattern bytes 100 .. 12000 */
        size_t want = (11900 + 499) / 500, have, i;
        buffet_pkt *in[32];
        unsigned seen = 0;
        have = recv_n(rx_gro, f, -1, in, want, &seen);
        BT_CHECK(have == want);
        for (i = 0; i < have; i++)
            BT_CHECK(in[i]->len == (i + 1 < want ? 500u : 11900u % 500u) && has_pat(in[i], 1, 100 + i * 500, in[i]->len));
        buffet_pkt_free_bulk(f->cache, in, have);
    }
    free(buf);
}

static void test_gso_gro_loopback(void) {
    fx f;
    buffet_net_addr ta, ga, pa;
    int tx, rg, rp;
    buffet_result r;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rg = udp_bound(AF_INET, "127.0.0.1", &ga);
    rp = udp_bound(AF_INET, "127.0.0.1", &pa);
    BT_CHECK(tx >= 0 && rg >= 0 && rp >= 0);
    r = buffet_net_udp_setup(rg, BUFFET_NET_UDP_GRO);
    {
        int v = 0;
        socklen_t l = sizeof v;
        if (getsockopt(rg, SOL_UDP, UDP_GRO, &v, &l) != 0) v = 0;
        if (v && r == BUFFET_ERR_UNSUPPORTED && qemu) r = BUFFET_OK;   /* GRO on; timestamps not */
    }
    if (r == BUFFET_ERR_UNSUPPORTED) {
        close(tx);
        close(rg);
        close(rp);
        fx_close(&f);
        BT_SKIP("udp_gro", "the kernel has no UDP_GRO");
    }
    BT_CHECK(r == BUFFET_OK);
    BT_CHECK(setup(rp, 0));
    gso_gro(&f, tx, rg, &ga, rp, &pa);
    close(tx);
    close(rg);
    close(rp);
    fx_close(&f);
}

/* A GRO datagram larger than the slots given stays whole in the last one; buffet_net_udp_split
   cuts it; a truncated GRO datagram marks only its last piece. */
static void test_gro_split_and_trunc(void) {
    fx f;
    buffet_net_addr ta, ga;
    unsigned char buf[10000];
    buffet_net_meta to, *m;
    buffet_pkt *in[16], *more[16];
    size_t sent, got, made, j;
    int tx, rg;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rg = udp_bound(AF_INET, "127.0.0.1", &ga);
    BT_CHECK(setup(rg, BUFFET_NET_UDP_GRO));
    for (j = 0; j < sizeof buf; j++) buf[j] = pat(2, j);
    memset(&to, 0, sizeof to);
    to.peer = ga;
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, sizeof buf, 1000, &to, &sent) == BUFFET_OK);
    {
        struct pollfd pf;
        pf.fd = rg;
        pf.events = POLLIN;
        pf.revents = 0;
        BT_CHECK(poll(&pf, 1, 2000) == 1);
    }
    BT_CHECK(buffet_net_udp_recv(rg, f.cache, -1, in, 4, &got) == BUFFET_OK && got == 4);
    for (j = 0; j < 3; j++) BT_CHECK(in[j]->len == 1000 && has_pat(in[j], 2, j * 1000, 1000));
    m = buffet_net_meta_of(in[3]);
    BT_CHECK(in[3]->len == 7000 && m->seg_size == 1000 && m->wire_len == 7000 && has_pat(in[3], 2, 3000, 7000));
    BT_CHECK(in[1]->flags & BUFFET_PKT_CLONE);   /* shared, not copied */
    BT_CHECK(buffet_net_udp_split(f.cache, in[3], more, 16, &made) == BUFFET_OK && made == 7 && more[0] == in[3]);
    for (j = 0; j < made; j++) BT_CHECK(more[j]->len == 1000 && has_pat(more[j], 2, 3000 + j * 1000, 1000));
    buffet_pkt_free_bulk(f.cache, in, 3);
    buffet_pkt_free_bulk(f.cache, more, made);
    BT_CHECK(buffet_net_udp_split(NULL, in[0], more, 16, &made) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_split(f.cache, NULL, more, 16, &made) == BUFFET_ERR_INVALID);

    /* truncated: 10 segments coalesced into a 2048-byte buffer */
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, sizeof buf, 1000, &to, &sent) == BUFFET_OK);
    {
        struct pollfd pf;
        pf.fd = rg;
        pf.events = POLLIN;
        pf.revents = 0;
        BT_CHECK(poll(&pf, 1, 2000) == 1);
    }
    BT_CHECK(buffet_net_udp_recv(rg, f.cache, 0, in, 16, &got) == BUFFET_ERR_TRUNCATED && got == 3);
    BT_CHECK(in[0]->len == 1000 && in[1]->len == 1000 && in[2]->len == 48);
    BT_CHECK(!(buffet_net_meta_of(in[0])->flags & BUFFET_NET_META_TRUNC));
    BT_CHECK(!(buffet_net_meta_of(in[1])->flags & BUFFET_NET_META_TRUNC));
    m = buffet_net_meta_of(in[2]);
    BT_CHECK((m->flags & BUFFET_NET_META_TRUNC) && m->wire_len == 48 + (10000 - 2048));
    BT_CHECK(has_pat(in[0], 2, 0, 1000) && has_pat(in[1], 2, 1000, 1000) && has_pat(in[2], 2, 2000, 48));
    buffet_pkt_free_bulk(f.cache, in, got);
    close(tx);
    close(rg);
    fx_close(&f);
}

/* A datagram larger than the buffer: reported, its prefix kept, its neighbours intact. */
static void test_truncated(void) {
    fx f;
    buffet_net_addr ta, ra;
    buffet_pkt *out[3], *in[3];
    size_t lens[3] = {100, 3000, 50}, i, got;
    unsigned seen = 0;
    int tx, rx;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rx = udp_bound(AF_INET, "127.0.0.1", &ra);
    BT_CHECK(setup(rx, 0));
    for (i = 0; i < 3; i++) {
        out[i] = make_pkt(&f, (unsigned)i, lens[i], false);
        memset(buffet_net_meta_of(out[i]), 0, sizeof(buffet_net_meta));
        buffet_net_meta_of(out[i])->peer = ra;
    }
    BT_CHECK(send_all(tx, &f, out, 3) == BUFFET_OK);
    got = recv_n(rx, &f, 0, in, 3, &seen);   /* class 0: 2048 bytes */
    BT_CHECK(got == 3 && (seen & 2));
    for (i = 0; i < got; i++) {
        buffet_net_meta *m = buffet_net_meta_of(in[i]);
        size_t l = lens[i] > 2048 ? 2048 : lens[i];
        BT_CHECK(in[i]->len == l && has_pat(in[i], (unsigned)i, 0, l));
        BT_CHECK(m->wire_len == lens[i]);
        BT_CHECK(!!(m->flags & BUFFET_NET_META_TRUNC) == (lens[i] > 2048));
    }
    buffet_pkt_free_bulk(f.cache, in, got);
    close(tx);
    close(rx);
    fx_close(&f);
}

/* The fault layer: EAGAIN, EINTR and short batches at random on both ends; nothing lost or
   reordered, nothing leaked. */
static void test_faults(void) {
    fx f;
    buffet_net_addr ta, ra;
    buffet_net_faults fl;
    int tx, rx;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rx = udp_bound(AF_INET, "127.0.0.1", &ra);
    BT_CHECK(setup(rx, 0));
    memset(&fl, 0, sizeof fl);
    fl.seed = 42;
    fl.fd = -1;
    fl.short_per_million = 300000;
    fl.again_per_million = 200000;
    fl.intr_per_million = 200000;
    buffet_net_faults_set(&fl);
    roundtrip(&f, tx, &ta, rx, &ra, if_nametoindex("lo"), small ? 8 : 16);
    {
        /* GSO through the faults: an AGAIN says how far it got; the rest goes on the next call */
        static unsigned char buf[200 * 1000];
        buffet_net_meta to;
        size_t done = 0, j;
        int tries = 0;
        for (j = 0; j < sizeof buf; j++) buf[j] = pat(4, j);
        memset(&to, 0, sizeof to);
        to.peer = ra;
        while (done < sizeof buf && tries++ < 1000) {
            size_t sent = 0;
            buffet_result r = buffet_net_udp_send_gso(tx, buf + done, sizeof buf - done, 1000, &to, &sent);
            BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
            BT_CHECK(sent % 1000 == 0);
            done += sent;
        }
        BT_CHECK(done == sizeof buf);
        expect_segments(&f, rx, 4, sizeof buf, 1000);
    }
    buffet_net_faults_set(NULL);
    BT_CHECK(fl.shorts > 0 && fl.agains > 0 && fl.intrs > 0);
    close(tx);
    close(rx);
    fx_close(&f);
}

/* A connected IPv6 socket: no address in the meta (the ECN cmsg then follows the socket's
   family), GSO with no destination; a blocking receiver returns what is queued without waiting
   for a full batch. */
static void test_connected_blocking(void) {
    fx f;
    buffet_net_addr ta, ra;
    buffet_pkt *out[5], *in[32];
    unsigned char buf[3000];
    size_t i, sent, got;
    int tx, rx;
    fx_open(&f);
    tx = udp_bound(AF_INET6, "::1", &ta);
    rx = udp_bound(AF_INET6, "::1", &ra);
    if (tx < 0 || rx < 0) {
        if (tx >= 0) close(tx);
        if (rx >= 0) close(rx);
        fx_close(&f);
        BT_SKIP("ipv6", "no ::1 to bind");
    }
    BT_CHECK(connect(tx, &ra.sa, sizeof ra.in6) == 0);
    BT_CHECK(fcntl(rx, F_SETFL, fcntl(rx, F_GETFL) & ~O_NONBLOCK) == 0);
    BT_CHECK(setup(rx, 0));
    for (i = 0; i < 5; i++) {
        out[i] = make_pkt(&f, (unsigned)i, 10 + i, false);
        buffet_net_meta_of(out[i])->flags = BUFFET_NET_META_ECN;   /* peer AF_UNSPEC: connected */
        buffet_net_meta_of(out[i])->ecn = BUFFET_NET_ECN_ECT0;
    }
    BT_CHECK(buffet_net_udp_send(tx, f.cache, out, 5, &sent) == BUFFET_OK && sent == 5);
    for (i = 0; i < sizeof buf; i++) buf[i] = pat(7, i);
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, sizeof buf, 1000, NULL, &sent) == BUFFET_OK && sent == sizeof buf);
    /* blocking: waits for the first datagram only, then takes what is there (8 of 32) */
    got = 0;
    while (got < 8) {
        size_t k = 0;
        BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, in + got, 32 - got, &k) == BUFFET_OK && k > 0);
        if (k == 0) break;
        got += k;
    }
    BT_CHECK(got == 8);
    for (i = 0; i < got; i++) {
        buffet_net_meta *m = buffet_net_meta_of(in[i]);
        BT_CHECK(same_addr(&m->peer, &ta, true));
        if (i < 5)
            BT_CHECK(in[i]->len == 10 + i && has_pat(in[i], (unsigned)i, 0, 10 + i) && m->ecn == BUFFET_NET_ECN_ECT0);
        else BT_CHECK(in[i]->len == 1000 && has_pat(in[i], 7, (i - 5) * 1000, 1000) && m->ecn == 0);
    }
    buffet_pkt_free_bulk(f.cache, in, got);
    close(tx);
    close(rx);
    fx_close(&f);
}

/* The clone class runs dry while a GRO datagram is split: the reason is returned, the packets
   made so far are delivered, the last holds the rest, nothing leaks. */
static void test_gro_clone_exhaustion(void) {
    fx f;
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    buffet_net_addr ta, ga;
    buffet_net_meta to;
    unsigned char buf[30000];
    buffet_pkt *in[32];
    size_t j, sent, got = 0, total = 0;
    buffet_result r;
    int tx, rg;
    /* a pool of 8 buffers a class: 16 clone headers in all */
    memset(&f, 0, sizeof f);
    memset(&dd, 0, sizeof dd);
    BT_CHECK(buffet_debug_create(&f.dbg, &dd) == BUFFET_OK);
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 2048;
    pd.class_sizes[1] = 65535 - 128;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = 4;
    pd.max = 8;
    pd.no_huge_pages = true;
    pd.allocator = buffet_debug_allocator(f.dbg);
    BT_CHECK(buffet_pkt_pool_create(&f.pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&f.cache, f.pool, 0) == BUFFET_OK);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rg = udp_bound(AF_INET, "127.0.0.1", &ga);
    BT_CHECK(setup(rg, BUFFET_NET_UDP_GRO));
    for (j = 0; j < sizeof buf; j++) buf[j] = pat(3, j);
    memset(&to, 0, sizeof to);
    to.peer = ga;
    BT_CHECK(buffet_net_udp_send_gso(tx, buf, sizeof buf, 1000, &to, &sent) == BUFFET_OK);
    {
        struct pollfd pf;
        pf.fd = rg;
        pf.events = POLLIN;
        pf.revents = 0;
        BT_CHECK(poll(&pf, 1, 2000) == 1);
    }
    r = buffet_net_udp_recv(rg, f.cache, -1, in, 32, &got);
    BT_CHECK(r == BUFFET_ERR_EXHAUSTED && got == 17);
    for (j = 0; j < got; j++) {
        BT_CHECK(in[j]->len == (j + 1 < got ? 1000u : 14000u) && has_pat(in[j], 3, total, in[j]->len));
        total += in[j]->len;
    }
    BT_CHECK(total == sizeof buf);
    buffet_pkt_free_bulk(f.cache, in, got);
    close(tx);
    close(rg);
    fx_close(&f);
}

/* ---- bad input ---- */
static void test_bad_input(void) {
    fx f, tiny;
    buffet_net_addr ta, ra, v6;
    buffet_pkt *p, *q, *arr[3];
    size_t got = 7, sent = 7;
    int tx, rx, closed, tcp, unx, pipefd[2];
    char c = 0;
    fx_open(&f);
    tx = udp_bound(AF_INET, "127.0.0.1", &ta);
    rx = udp_bound(AF_INET, "127.0.0.1", &ra);
    closed = socket(AF_INET, SOCK_DGRAM, 0);
    close(closed);
    tcp = socket(AF_INET, SOCK_STREAM, 0);
    unx = socket(AF_UNIX, SOCK_DGRAM, 0);
    BT_CHECK(pipe(pipefd) == 0);
    {
        int bad[5];
        size_t i;
        bad[0] = closed; bad[1] = tcp; bad[2] = unx; bad[3] = pipefd[0]; bad[4] = -1;
        for (i = 0; i < 5; i++) {
            BT_CHECK(buffet_net_udp_setup(bad[i], 0) == BUFFET_ERR_INVALID);
            BT_CHECK(buffet_net_udp_recv(bad[i], f.cache, -1, arr, 3, &got) == BUFFET_ERR_INVALID && got == 0);
            p = make_pkt(&f, 1, 10, false);
            BT_CHECK(buffet_net_udp_send(bad[i], f.cache, &p, 1, &sent) == BUFFET_ERR_INVALID && sent == 0);
            BT_CHECK(buffet_net_udp_send_gso(bad[i], &c, 1, 1, NULL, &sent) == BUFFET_ERR_INVALID);
            buffet_pkt_free(f.cache, p);   /* still the caller's */
        }
    }
    BT_CHECK(buffet_net_udp_setup(rx, 0x1) == BUFFET_ERR_INVALID);   /* unknown flag */
    /* NULLs, n 0, classes out of range, nothing waiting */
    BT_CHECK(buffet_net_udp_recv(rx, NULL, -1, arr, 3, &got) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, NULL, 3, &got) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, arr, 3, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, 2, arr, 3, &got) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -2, arr, 3, &got) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, arr, 0, &got) == BUFFET_OK && got == 0);
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, arr, 3, &got) == BUFFET_AGAIN && got == 0);
    BT_CHECK(fx_in_use(&f) == 0);   /* AGAIN took nothing */
    BT_CHECK(buffet_net_udp_send(tx, NULL, arr, 1, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send(tx, f.cache, NULL, 1, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send(tx, f.cache, arr, 0, &sent) == BUFFET_OK && sent == 0);
    BT_CHECK(buffet_net_meta_of(NULL) == NULL);
    /* a NULL in the middle, and a packet whose lengths lie: nothing sent, all still ours */
    arr[0] = make_pkt(&f, 1, 10, false);
    arr[1] = NULL;
    arr[2] = make_pkt(&f, 1, 10, false);
    buffet_net_meta_of(arr[0])->peer = ra;
    buffet_net_meta_of(arr[2])->peer = ra;
    BT_CHECK(buffet_net_udp_send(tx, f.cache, arr, 3, &sent) == BUFFET_ERR_INVALID && sent == 0);
    arr[1] = make_pkt(&f, 1, 10, false);
    arr[1]->pkt_len = 500;
    BT_CHECK(buffet_net_udp_send(tx, f.cache, arr, 3, &sent) == BUFFET_ERR_INVALID && sent == 0);
    arr[1]->pkt_len = 10;
    BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, arr, 0, &got) == BUFFET_OK);
    {
        buffet_pkt *none[1];
        BT_CHECK(buffet_net_udp_recv(rx, f.cache, -1, none, 1, &got) == BUFFET_AGAIN);
    }
    /* an IPv6 destination from an IPv4 socket: refused by the kernel, the packet stays ours */
    memset(&v6, 0, sizeof v6);
    v6.in6.sin6_family = AF_INET6;
    v6.in6.sin6_addr = in6addr_loopback;
    v6.in6.sin6_port = ra.in4.sin_port;
    buffet_net_meta_of(arr[1])->peer = v6;
    BT_CHECK(buffet_net_udp_send(tx, f.cache, arr, 3, &sent) != BUFFET_OK && sent == 1);
    BT_CHECK(arr[1]->refcnt == 1 && arr[2]->refcnt == 1);   /* not freed */
    buffet_pkt_free(f.cache, arr[1]);
    buffet_pkt_free(f.cache, arr[2]);
    /* no peer on an unconnected socket */
    p = make_pkt(&f, 1, 10, false);
    memset(buffet_net_meta_of(p), 0, sizeof(buffet_net_meta));
    BT_CHECK(buffet_net_udp_send(tx, f.cache, &p, 1, &sent) == BUFFET_ERR_SYSTEM && sent == 0);
    /* too large for one datagram: two 65407-byte segments */
    q = make_pkt(&f, 1, 65407, false);
    {
        buffet_pkt *r2 = make_pkt(&f, 1, 65407, false);
        BT_CHECK(buffet_pkt_chain(q, r2) == BUFFET_OK);
    }
    memset(buffet_net_meta_of(q), 0, sizeof(buffet_net_meta));
    buffet_net_meta_of(q)->peer = ra;
    BT_CHECK(buffet_net_udp_send(tx, f.cache, &q, 1, &sent) == BUFFET_ERR_TOO_LARGE && sent == 0);
    buffet_pkt_free(f.cache, q);
    /* GSO arguments */
    BT_CHECK(buffet_net_udp_send_gso(tx, NULL, 5, 100, NULL, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso(tx, &c, 1, 0, NULL, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso(tx, &c, 1, 70000, NULL, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso(tx, &c, 1, 100, NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso(tx, &c, 0, 100, NULL, &sent) == BUFFET_OK && sent == 0);
    BT_CHECK(buffet_net_udp_send_gso_chain(tx, NULL, 100, NULL, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso_pkt(tx, f.cache, &p, 11, 100, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso_pkt(tx, f.cache, NULL, 0, 100, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso_pkt(tx, NULL, &p, 0, 100, &sent) == BUFFET_ERR_INVALID);
    BT_CHECK(p != NULL);
    buffet_pkt_free(f.cache, p);
    /* a pool whose user area cannot hold the meta */
    fx_open_user(&tiny, 8);
    p = buffet_pkt_alloc(tiny.cache, 10);
    BT_CHECK(buffet_net_meta_of(p) == NULL);
    BT_CHECK(buffet_net_udp_recv(rx, tiny.cache, -1, arr, 3, &got) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send(tx, tiny.cache, &p, 1, &sent) == BUFFET_ERR_INVALID && sent == 0);
    BT_CHECK(buffet_net_udp_send_gso_pkt(tx, tiny.cache, &p, 0, 100, &sent) == BUFFET_ERR_INVALID && p != NULL);
    /* a packet of another pool given with this cache */
    BT_CHECK(buffet_net_udp_send(tx, f.cache, &p, 1, &sent) == BUFFET_ERR_INVALID);
    buffet_pkt_free(tiny.cache, p);
    fx_close(&tiny);
    close(tx);
    close(rx);
    close(tcp);
    close(unx);
    close(pipefd[0]);
    close(pipefd[1]);
    fx_close(&f);
}

/* ---- two network namespaces joined by a veth pair ---- */
typedef struct ns_job {
    const nu_veth *v;
    int side, family;   /* which namespace; AF_INET or AF_INET6 */
    int fd;             /* the socket made there, non-blocking, bound to the side's address */
    buffet_net_addr addr;
    unsigned ifindex;   /* the side's veth end, as seen there */
} ns_job;

static int ns_bind(void *arg) {
    ns_job *j = (ns_job *)arg;
    static const char *const ip[2][2] = {{"10.77.0.1", "fd77::1"}, {"10.77.0.2", "fd77::2"}};
    j->ifindex = if_nametoindex(j->v->dev[j->side]);
    return udp_bound(j->family, ip[j->side][j->family == AF_INET6], &j->addr);
}

/* A UDP socket in side `side` of v (see ns_bind), set up with flags; fd -1 on failure. */
static void ns_socket(ns_job *j, const nu_veth *v, int side, int family, unsigned flags) {
    memset(j, 0, sizeof *j);
    j->v = v;
    j->side = side;
    j->family = family;
    j->fd = nu_in_ns(v->ns[side], ns_bind, j);
    BT_CHECK(j->fd >= 0 && j->ifindex != 0);
    if (j->fd >= 0) BT_CHECK(setup(j->fd, flags));
}

/* One datagram from a to b, waited for (5 s at most), until one arrives (10 tries): the first
   datagrams to a new neighbour wait for ARP / neighbour discovery, and one lost there would
   shift every later round by one. */
static bool ns_warm(const ns_job *a, const ns_job *b) {
    int k;
    for (k = 0; k < 10; k++) {
        struct pollfd pf;
        char byte = 'w';
        pf.fd = b->fd;
        pf.events = POLLIN;
        pf.revents = 0;
        if (sendto(a->fd, &byte, 1, 0, &b->addr.sa, nu_addr_len(&b->addr)) != 1) return false;
        if (poll(&pf, 1, 500) == 1) {
            while (recv(b->fd, &byte, 1, MSG_DONTWAIT) >= 0) {}   /* this and any earlier try */
            return true;
        }
    }
    return false;
}

static void test_netns_veth(void) {
    nu_veth v;
    ns_job ja[2], jb[2];
    const char *why;
    int k;
    fx f;
    if ((why = nu_veth_make(&v, "bfdg", "10.77.0", "fd77")) != NULL) BT_SKIP("netns", why);
    fx_open(&f);
    for (k = 0; k < 2; k++) {
        ns_socket(&ja[k], &v, 0, k == 0 ? AF_INET : AF_INET6, 0);
        ns_socket(&jb[k], &v, 1, k == 0 ? AF_INET : AF_INET6, 0);
        if (ja[k].fd < 0 || jb[k].fd < 0) continue;
        BT_CHECK(ns_warm(&ja[k], &jb[k]) && ns_warm(&jb[k], &ja[k]));
        roundtrip(&f, ja[k].fd, &ja[k].addr, jb[k].fd, &jb[k].addr, jb[k].ifindex, small ? 2 : 10);
        /* and back the other way */
        roundtrip(&f, jb[k].fd, &jb[k].addr, ja[k].fd, &ja[k].addr, ja[k].ifindex, small ? 1 : 4);
    }
    /* GSO across the veth to a GRO socket and to a plain one in the other namespace (IPv4) */
    if (ja[0].fd >= 0 && jb[0].fd >= 0) {
        ns_job g, pl;
        ns_socket(&g, &v, 1, AF_INET, BUFFET_NET_UDP_GRO);
        ns_socket(&pl, &v, 1, AF_INET, 0);
        if (g.fd >= 0 && pl.fd >= 0) {
            gso_gro(&f, ja[0].fd, g.fd, &g.addr, pl.fd, &pl.addr);
            {
                /* segments above the veth's MTU (1500): EMSGSIZE, nothing goes */
                static unsigned char big[3000];
                buffet_net_meta to;
                size_t sent = 7;
                memset(&to, 0, sizeof to);
                to.peer = g.addr;
                BT_CHECK(buffet_net_udp_send_gso(ja[0].fd, big, sizeof big, 1473, &to, &sent) == BUFFET_ERR_TOO_LARGE);
                BT_CHECK(sent == 0);
            }
        }
        if (g.fd >= 0) close(g.fd);
        if (pl.fd >= 0) close(pl.fd);
    }
    for (k = 0; k < 2; k++) {
        if (ja[k].fd >= 0) close(ja[k].fd);
        if (jb[k].fd >= 0) close(jb[k].fd);
    }
    fx_close(&f);
    nu_veth_del(&v);
}

int main(void) {
    small = bt_mode("valgrind") || bt_mode("aarch64");
    qemu = bt_mode("aarch64");
    BT_RUN(test_loopback_v4);
    BT_RUN(test_loopback_v6);
    BT_RUN(test_dual_stack);
    BT_RUN(test_truncated);
    BT_RUN(test_gso_gro_loopback);
    BT_RUN(test_gro_split_and_trunc);
    BT_RUN(test_faults);
    BT_RUN(test_connected_blocking);
    BT_RUN(test_gro_clone_exhaustion);
    BT_RUN(test_bad_input);
    BT_RUN(test_netns_veth);
    return bt_finish("test_net_dgram.c");
}
