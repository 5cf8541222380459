#define BUFFET_NET_AFPACKET 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"
#include "frame_util.h"

/* test_net_afpacket.c - the AF_PACKET TPACKET_V3 rings of buffet_net.h (>>afpacket), on a veth
   pair between two network namespaces of the test's own: frames sent by a plain packet socket
   on one end come out of the receive ring on the other byte-exact, in order, each once, as
   packets over the ring's blocks (or copies), with metadata; a VLAN tag comes back in place;
   blocks held by packets stop the kernel (it counts drops and freezes) and receiving resumes
   when they are freed, from another thread too; a ring destroyed while packets live stays
   readable until the last is freed; sends go out byte-exact; bad input, the interface deleted
   under a running ring, and a process without CAP_NET_RAW get clean errors. Every test ends
   with every buffer back in its pool. Root only (namespaces): skips say why. C11 and C++17. */

#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/wait.h>
#include <time.h>

static int small;   /* valgrind: fewer frames */
static nu_veth V;
static const char *veth_why = "not made yet";

/* The ring on V.dev[1], made in V.ns[1]. */
typedef struct ring_job {
    buffet_net_afp_desc d;
    buffet_net_afp *a;
    buffet_result r;
    const char *ifname;
} ring_job;
static int ring_fn(void *arg) {
    ring_job *j = (ring_job *)arg;
    j->d.ifname = j->ifname ? j->ifname : V.dev[1];
    j->r = buffet_net_afp_create(&j->a, &j->d);
    return 0;
}
static buffet_net_afp *ring_make(fx *f, unsigned flags, uint32_t block_size, uint32_t blocks) {
    ring_job j;
    memset(&j, 0, sizeof j);
    j.d.cache = f->cache;
    j.d.flags = flags;
    j.d.block_size = block_size;
    j.d.blocks = blocks;
    if (nu_in_ns(V.ns[1], ring_fn, &j) != 0) j.r = BUFFET_ERR_SYSTEM;
    BT_CHECK(j.r == BUFFET_OK && j.a);
    return j.a;
}

static buffet_result afp_rx(void *a, buffet_pkt **pkts, size_t max, int timeout_ms, size_t *got) {
    return buffet_net_afp_recv((buffet_net_afp *)a, pkts, max, timeout_ms, got);
}

/* Why the tests cannot run here: no namespaces (not root), or no packet rings (qemu-user
   passes SOL_PACKET options to no kernel), or NULL. */
static const char *afp_why;

/* Can a ring be made here at all (on lo)? */
static void probe(void) {
    fx f;
    ring_job j;
    if (geteuid() != 0) return;   /* test_unprivileged covers that */
    fx_open(&f, 2048, 64, 64);
    memset(&j, 0, sizeof j);
    j.d.cache = f.cache;
    j.ifname = "lo";
    ring_fn(&j);
    if (j.r == BUFFET_ERR_UNSUPPORTED) afp_why = "AF_PACKET TPACKET_V3 rings unsupported here (qemu-user, or no CAP_NET_RAW)";
    buffet_net_afp_destroy(j.a);
    fx_close(&f);
}
#define VETH_OR_SKIP()                                                              \
    do {                                                                            \
        if (afp_why) BT_SKIP("afpacket", afp_why);                                 \
        if (veth_why) BT_SKIP("netns", veth_why);                                  \
    } while (0)

/* A test's pool, a ring on V.dev[1] (flags, block size, blocks) and the far side's packet
   socket. false: something failed (checked); rig_close undoes what was made either way. */
static bool rig_open(fx *f, buffet_net_afp **a, int *peer, uint32_t cls0, size_t max, unsigned flags,
                     uint32_t block_size, uint32_t blocks) {
    fx_open(f, cls0, 64, max);
    *a = ring_make(f, flags, block_size, blocks);
    *peer = nu_in_ns(V.ns[0], raw_fn, V.dev[0]);
    BT_CHECK(*peer >= 0);
    return *a && *peer >= 0;
}
static void rig_close(fx *f, buffet_net_afp *a, int peer) {
    if (peer >= 0) close(peer);
    buffet_net_afp_destroy(a);
    fx_close(f);
}

/* ---- tests ---- */

/* Frames of several sizes across many blocks: every one once, in order, byte-exact, as
   external packets (mostly) over the ring; every block back afterwards. */
static void test_receive(void) {
    fx f;
    buffet_net_afp *a;
    buffet_net_afp_stats st;
    int tx;
    uint32_t n = small ? 200 : 3000, s, seen, first = 1;
    static const size_t lens[] = {60, 64, 1000, 1514};
    size_t li;
    bool exact = true;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 2048, 4096, 0, 16384, 16)) goto out;
    for (li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        bool ok;
        /* in bursts the ring holds, so the kernel never has to drop */
        for (s = 0; s < n; s += 32) {
            uint32_t k;
            for (k = 0; k < 32 && s + k < n; k++) BT_CHECK(raw_send(tx, lens[li], first + s + k));
            seen = fu_recv_frames(&f, afp_rx, a, first + s, k, lens[li], &ok, NULL);
            BT_CHECK(seen == k && ok);
            exact = exact && ok;
        }
        first += n;
    }
    BT_CHECK(exact);
    st = buffet_net_afp_get_stats(a);
    BT_CHECK(st.rx_packets >= 4 * (uint64_t)n);
    BT_CHECK(st.rx_copied < st.rx_packets / 4);   /* only the last frame of a full block is copied */
    BT_CHECK(st.rx_lost == 0 && st.rx_truncated == 0 && st.kernel_drops == 0);
    BT_CHECK(st.blocks_held <= 1);   /* the block being read, at most */
out:
    rig_close(&f, a, tx);
}

/* BUFFET_NET_AFP_COPY: packets of the pool's class, the blocks back at once; a frame larger than
   the class comes cut, flagged. */
static void test_copy_mode(void) {
    fx f;
    buffet_net_afp *a;
    buffet_pkt *pk[8];
    size_t got = 0;
    int tx;
    bool exact;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 512, 256, BUFFET_NET_AFP_COPY, 0, 0)) goto out;
    BT_CHECK(raw_send(tx, 300, 7) && raw_send(tx, 300, 8));
    BT_CHECK(fu_recv_frames(&f, afp_rx, a, 7, 2, 300, &exact, NULL) == 2 && exact);
    BT_CHECK(buffet_net_afp_get_stats(a).blocks_held == 0);
    BT_CHECK(raw_send(tx, 1400, 9));   /* above the 512-byte class */
    for (;;) {
        buffet_result r = buffet_net_afp_recv(a, pk, 1, 2000, &got);
        BT_CHECK(r == BUFFET_OK);
        if (r != BUFFET_OK) break;
        if (is_test(pk[0])) break;
        buffet_pkt_free(f.cache, pk[0]);
    }
    if (got == 1) {
        buffet_net_meta *m = buffet_net_meta_of(pk[0]);
        BT_CHECK(!(pk[0]->flags & BUFFET_PKT_EXTERNAL));
        BT_CHECK(pk[0]->pkt_len < 1400 && frame_seq(pk[0]) == 9);
        BT_CHECK(m && (m->flags & BUFFET_NET_META_TRUNC) && m->wire_len == 1400);
        buffet_pkt_free(f.cache, pk[0]);
    }
    BT_CHECK(buffet_net_afp_get_stats(a).rx_truncated == 1);
out:
    rig_close(&f, a, tx);
}

/* A tagged frame (802.1Q, then 802.1ad) comes out with its tag where it was on the wire. */
static void test_vlan(void) {
    fx f;
    buffet_net_afp *a;
    int tx;
    static const uint16_t tpids[] = {0x8100, 0x88a8};
    size_t t;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 2048, 256, 0, 0, 0)) goto out;
    for (t = 0; t < 2; t++) {
        unsigned char b[128], tmp[128];
        buffet_pkt *pk[4];
        size_t got = 0, i;
        bool found = false;
        int rounds;
        frame_fill(b, sizeof b, 0);
        b[12] = (unsigned char)(tpids[t] >> 8);
        b[13] = (unsigned char)tpids[t];
        b[14] = 0x20;   /* priority 1, VLAN 0x05a */
        b[15] = 0x5a;
        b[16] = ETHERTYPE_TEST >> 8;
        b[17] = ETHERTYPE_TEST & 0xff;
        BT_CHECK(send(tx, b, sizeof b, 0) == (ssize_t)sizeof b);
        for (rounds = 0; rounds < 20 && !found; rounds++) {
            if (buffet_net_afp_recv(a, pk, 4, 200, &got) != BUFFET_OK) continue;
            for (i = 0; i < got; i++) {
                const void *d = pk[i]->pkt_len == sizeof b ? buffet_pkt_read(pk[i], 0, sizeof b, tmp) : NULL;
                if (d && memcmp(d, b, 12) == 0 && ((const unsigned char *)d)[13] == b[13]) {
                    BT_CHECK(memcmp(d, b, sizeof b) == 0);
                    found = true;
                }
                buffet_pkt_free(f.cache, pk[i]);
            }
        }
        BT_CHECK(found);
    }
out:
    rig_close(&f, a, tx);
}

/* Packets held on every block: the kernel has nowhere to write and drops (counted); freed on
   another thread, the blocks go back and the next frames come. */
typedef struct free_job {
    buffet_pkt_pool *pool;
    buffet_pkt **pk;
    size_t n;
} free_job;
static void *free_thread(void *arg) {
    free_job *j = (free_job *)arg;
    buffet_pkt_cache *c = NULL;
    size_t i;
    if (buffet_pkt_cache_create(&c, j->pool, 0) != BUFFET_OK) return NULL;
    for (i = 0; i < j->n; i++) buffet_pkt_free(c, j->pk[i]);
    buffet_pkt_cache_destroy(c);
    return NULL;
}
static void test_held_blocks(void) {
    fx f;
    buffet_net_afp *a;
    buffet_net_afp_stats st;
    static buffet_pkt *held[4096];
    size_t nheld = 0;
    int tx, i;
    uint32_t seq = 0, seen;
    bool exact;
    pthread_t t;
    free_job j;
    VETH_OR_SKIP();
    /* 4 blocks of 4 KiB: 3 frames of 1000 bytes each */
    if (!rig_open(&f, &a, &tx, 2048, 8192, 0, 4096, 4)) goto out;
    for (i = 0; i < 200; i++) BT_CHECK(raw_send(tx, 1000, seq++));
    for (i = 0; i < 40; i++) {
        size_t got = 0;
        if (nheld == 4096) break;
        if (buffet_net_afp_recv(a, held + nheld, 4096 - nheld, 50, &got) == BUFFET_OK) nheld += got;
    }
    st = buffet_net_afp_get_stats(a);
    BT_CHECK(nheld > 0 && nheld < 200);
    BT_CHECK(st.blocks_held == 4);
    BT_CHECK(st.kernel_drops > 0);
    j.pool = f.pool;
    j.pk = held;
    j.n = nheld;
    BT_CHECK(pthread_create(&t, NULL, free_thread, &j) == 0);
    pthread_join(t, NULL);
    BT_CHECK(buffet_net_afp_get_stats(a).blocks_held <= 1);
    /* frames after the freeze come through whole */
    for (i = 0; i < 6; i++) BT_CHECK(raw_send(tx, 1000, 100000 + (uint32_t)i));
    seen = fu_recv_frames(&f, afp_rx, a, 100000, 6, 1000, &exact, NULL);
    BT_CHECK(seen == 6 && exact);
out:
    rig_close(&f, a, tx);
}

/* Packets freed on another thread while this one reads more of the ring and then destroys it:
   the blocks' counts and the ring's own are shared between the two (TSan, ASan). The packets
   travel through a pipe, in order; the freeing thread checks each frame before it frees it. */
typedef struct xfree_job {
    buffet_pkt_pool *pool;
    int rd;
    uint32_t freed, bad;
} xfree_job;
static void *xfree_thread(void *arg) {
    xfree_job *j = (xfree_job *)arg;
    buffet_pkt_cache *c = NULL;
    buffet_pkt *p;
    if (buffet_pkt_cache_create(&c, j->pool, 16) != BUFFET_OK) return NULL;
    while (read(j->rd, &p, sizeof p) == (ssize_t)sizeof p) {
        if (!frame_is(p, 300, frame_seq(p))) j->bad++;
        buffet_pkt_free(c, p);
        j->freed++;
    }
    buffet_pkt_cache_destroy(c);
    return NULL;
}
static void test_cross_thread_free(void) {
    fx f;
    buffet_net_afp *a;
    int tx, pfd[2] = {-1, -1};
    uint32_t n = small ? 300 : 5000, sent = 0, got = 0;
    int idle = 0;
    pthread_t t;
    xfree_job j;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 2048, 4096, 0, 4096, 8)) goto out;
    BT_CHECK(pipe(pfd) == 0);
    memset(&j, 0, sizeof j);
    j.pool = f.pool;
    j.rd = pfd[0];
    BT_CHECK(pthread_create(&t, NULL, xfree_thread, &j) == 0);
    while (got < n && idle < 50) {
        buffet_pkt *pk[16];
        size_t k, m = 0;
        for (k = 0; k < 3 && sent < n; k++) BT_CHECK(raw_send(tx, 300, sent++));
        /* 3 at a time: a block's packets are handed out over several calls, so this thread
           counts packets up on a block while the other counts them down */
        if (buffet_net_afp_recv(a, pk, 3, 20, &m) != BUFFET_OK) {
            idle++;
            continue;
        }
        idle = 0;
        for (k = 0; k < m; k++) {
            if (!is_test(pk[k])) {
                buffet_pkt_free(f.cache, pk[k]);
                continue;
            }
            got++;
            BT_CHECK(write(pfd[1], &pk[k], sizeof pk[k]) == (ssize_t)sizeof pk[k]);
        }
    }
    buffet_net_afp_destroy(a);   /* while the other thread may still hold and free packets */
    a = NULL;
    close(pfd[1]);
    pthread_join(t, NULL);
    close(pfd[0]);
    /* the kernel may drop frames while the other thread holds blocks: most must come */
    if (!(got > n / 2 && j.freed == got && j.bad == 0)) fprintf(stderr, "cross-thread: %u of %u frames, %u freed, %u bad\n", got, n, j.freed, j.bad);
    BT_CHECK(got > n / 2 && j.freed == got && j.bad == 0);
out:
    rig_close(&f, a, tx);
}

/* Destroyed with packets alive: they stay readable, the last free unmaps (ASan, valgrind). */
static void test_destroy_held(void) {
    fx f;
    buffet_net_afp *a;
    buffet_pkt *pk[16];
    size_t have = 0, i;
    int tx, k;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 2048, 256, 0, 0, 0)) goto out;
    for (k = 0; k < 8; k++) BT_CHECK(raw_send(tx, 200, 50 + (uint32_t)k));
    for (k = 0; k < 40 && have < 8; k++) {
        size_t got = 0;
        buffet_pkt *tmp[16];
        if (buffet_net_afp_recv(a, tmp, 16, 50, &got) != BUFFET_OK) continue;
        for (i = 0; i < got; i++) {
            if (is_test(tmp[i]) && have < 16) pk[have++] = tmp[i];
            else buffet_pkt_free(f.cache, tmp[i]);
        }
    }
    BT_CHECK(have == 8);
    buffet_net_afp_destroy(a);
    a = NULL;
    for (i = 0; i < have; i++) {
        BT_CHECK(frame_is(pk[i], 200, 50 + (uint32_t)i));
        buffet_pkt_free(f.cache, pk[i]);
    }
out:
    rig_close(&f, a, tx);
}

/* Frames sent through the transmit ring arrive byte-exact on the far side, single- and
   multi-segment packets alike; the packets are freed by the send. */
static void test_send(void) {
    fx f;
    buffet_net_afp *a;
    buffet_pkt *pk[64];
    int rx;
    uint32_t n = small ? 96 : 1024, s, got_frames = 0;   /* bursts of 32 */
    bool exact = true;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &rx, 2048, 4096, 0, 0, 0)) goto out;
    for (s = 0; s < n; s += 32) {
        size_t k, sent = 0, len = 60 + (s % 1400);
        for (k = 0; k < 32; k++) {
            unsigned char b[2048];
            pk[k] = buffet_pkt_alloc(f.cache, len);
            BT_CHECK(pk[k] != NULL);
            if (!pk[k]) goto out;
            frame_fill(b, len, s + (uint32_t)k);
            if (k % 2) {   /* two segments */
                buffet_pkt *tail = buffet_pkt_alloc(f.cache, len);
                memcpy(buffet_pkt_append(pk[k], 20), b, 20);
                memcpy(buffet_pkt_append(tail, len - 20), b + 20, len - 20);
                BT_CHECK(buffet_pkt_chain(pk[k], tail) == BUFFET_OK);
            } else {
                memcpy(buffet_pkt_append(pk[k], len), b, len);
            }
        }
        BT_CHECK(buffet_net_afp_send(a, pk, 32, &sent) == BUFFET_OK && sent == 32);
        for (k = sent; k < 32; k++) buffet_pkt_free(f.cache, pk[k]);
        for (k = 0; k < sent; k++) {
            unsigned char b[2048], want[2048];
            struct pollfd pf;
            ssize_t r;
            pf.fd = rx;
            pf.events = POLLIN;
            if (poll(&pf, 1, 5000) != 1) break;
            r = recv(rx, b, sizeof b, 0);
            frame_fill(want, len, s + (uint32_t)k);
            if (r != (ssize_t)len || memcmp(b, want, len) != 0) exact = false;
            got_frames++;
        }
    }
    BT_CHECK(got_frames == n && exact);
    BT_CHECK(buffet_net_afp_get_stats(a).tx_packets == n);
out:
    rig_close(&f, a, rx);
}

/* Bad input of every call. */
static void test_bad_input(void) {
    fx f;
    buffet_net_afp *a = NULL;
    buffet_net_afp_desc d;
    buffet_pkt *pk[2];
    size_t n = 7;
    ring_job j;
    fx_open(&f, 2048, 64, 256);
    memset(&d, 0, sizeof d);
    d.cache = f.cache;
    d.ifname = "lo";
    BT_CHECK(buffet_net_afp_create(NULL, &d) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_afp_create(&a, NULL) == BUFFET_ERR_INVALID && !a);
    d.ifname = "no-such-if0";
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID && !a);
    d.ifname = "lo";
    d.block_size = 5000;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    d.block_size = 8u << 20;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    d.block_size = 0;
    d.blocks = 1;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    d.blocks = 0;
    d.tx_frame_size = 100;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    d.tx_frame_size = 0;
    d.tx_frames = 3;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    d.cache = NULL;
    d.tx_frames = 0;
    BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_afp_recv(NULL, pk, 2, 0, &n) == BUFFET_ERR_INVALID && n == 0);
    BT_CHECK(buffet_net_afp_send(NULL, pk, 2, &n) == BUFFET_ERR_INVALID && n == 0);
    BT_CHECK(buffet_net_afp_fd(NULL) == -1);
    buffet_net_afp_destroy(NULL);
    BT_CHECK(buffet_net_afp_get_stats(NULL).rx_packets == 0);
    if (geteuid() != 0 || afp_why) {
        fx_close(&f);
        if (afp_why) BT_SKIP("afpacket", afp_why);
        BT_SKIP("netns", "not root: packet sockets need CAP_NET_RAW");
    }
    memset(&j, 0, sizeof j);
    j.d.cache = f.cache;
    j.d.flags = BUFFET_NET_AFP_NO_TX;
    j.ifname = "lo";
    BT_CHECK(ring_fn(&j) == 0 && j.r == BUFFET_OK);
    a = j.a;
    if (a) {
        buffet_pkt *p = buffet_pkt_alloc(f.cache, 64);
        BT_CHECK(buffet_net_afp_fd(a) >= 0);
        BT_CHECK(buffet_net_afp_recv(a, NULL, 2, 0, &n) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_afp_recv(a, pk, 2, 0, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_afp_recv(a, pk, 0, 0, &n) == BUFFET_OK && n == 0);
        pk[0] = p;
        BT_CHECK(buffet_net_afp_send(a, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);   /* no transmit ring */
        buffet_pkt_free(f.cache, p);
        buffet_net_afp_destroy(a);
    }
    j.d.flags = 0;
    j.d.tx_frame_size = 256;
    BT_CHECK(ring_fn(&j) == 0 && j.r == BUFFET_OK);
    a = j.a;
    if (a) {
        buffet_pkt *runt = buffet_pkt_alloc(f.cache, 64), *big = buffet_pkt_alloc(f.cache, 1000);
        if (runt && big) {
            memset(buffet_pkt_append(runt, 10), 0, 10);
            memset(buffet_pkt_append(big, 1000), 0, 1000);
            pk[0] = runt;
            pk[1] = big;
            BT_CHECK(buffet_net_afp_send(a, pk, 2, &n) == BUFFET_ERR_INVALID && n == 0);   /* shorter than a header */
            BT_CHECK(buffet_net_afp_send(a, pk + 1, 1, &n) == BUFFET_ERR_TOO_LARGE && n == 0);   /* above the frame */
            pk[0] = NULL;
            BT_CHECK(buffet_net_afp_send(a, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);
            {   /* a packet of another pool: refused whole, still the caller's */
                fx other;
                fx_open(&other, 2048, 16, 16);
                pk[0] = buffet_pkt_alloc(other.cache, 64);
                BT_CHECK(pk[0] != NULL);
                if (pk[0]) {
                    memset(buffet_pkt_append(pk[0], 60), 0, 60);
                    BT_CHECK(buffet_net_afp_send(a, pk, 1, &n) == BUFFET_ERR_INVALID && n == 0);
                    buffet_pkt_free(other.cache, pk[0]);
                }
                fx_close(&other);
            }
            BT_CHECK(buffet_net_afp_send(a, pk, 0, &n) == BUFFET_OK && n == 0);
        }
        if (runt) buffet_pkt_free(f.cache, runt);
        if (big) buffet_pkt_free(f.cache, big);
        BT_CHECK(buffet_net_afp_recv(a, pk, 2, 0, &n) == BUFFET_AGAIN || n > 0);
        while (n--) buffet_pkt_free(f.cache, pk[n]);
        buffet_net_afp_destroy(a);
    }
    fx_close(&f);
}

/* Without CAP_NET_RAW (a child that became nobody): BUFFET_ERR_UNSUPPORTED. */
static void test_unprivileged(void) {
    pid_t pid;
    int st = 0;
    if (geteuid() != 0) {
        fx f;
        buffet_net_afp *a = NULL;
        buffet_net_afp_desc d;
        fx_open(&f, 2048, 64, 64);
        memset(&d, 0, sizeof d);
        d.cache = f.cache;
        d.ifname = "lo";
        BT_CHECK(buffet_net_afp_create(&a, &d) == BUFFET_ERR_UNSUPPORTED && !a);
        fx_close(&f);
        return;
    }
    pid = fork();
    if (pid == 0) {
        fx f;
        buffet_net_afp *a = NULL;
        buffet_net_afp_desc d;
        buffet_result r;
        fx_open(&f, 2048, 64, 64);
        memset(&d, 0, sizeof d);
        d.cache = f.cache;
        d.ifname = "lo";
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        r = buffet_net_afp_create(&a, &d);
        fx_close(&f);
        _exit(r == BUFFET_ERR_UNSUPPORTED && !a && !bt_cur_failed ? 0 : 1);
    }
    BT_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    BT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The interface deleted while the ring runs: receive and send say CLOSED (ENODEV), packets
   received before stay good, destroy releases everything. Last: it takes the pair down. */
static void test_interface_gone(void) {
    fx f;
    buffet_net_afp *a;
    buffet_pkt *pk[8], *kept = NULL;
    size_t n = 0;
    int tx, k;
    char cmd[160];
    buffet_result r = BUFFET_OK;
    VETH_OR_SKIP();
    if (!rig_open(&f, &a, &tx, 2048, 256, 0, 0, 0)) goto out;
    BT_CHECK(raw_send(tx, 100, 1));
    for (k = 0; k < 40 && !kept; k++) {
        size_t i;
        if (buffet_net_afp_recv(a, pk, 8, 50, &n) != BUFFET_OK) continue;
        for (i = 0; i < n; i++) {
            if (!kept && is_test(pk[i])) kept = pk[i];
            else buffet_pkt_free(f.cache, pk[i]);
        }
    }
    BT_CHECK(kept != NULL);
    close(tx);
    tx = -1;
    snprintf(cmd, sizeof cmd, "ip -n %s link del %s", V.ns[1], V.dev[1]);
    BT_CHECK(nu_sh(cmd) == 0);
    for (k = 0; k < 50; k++) {
        r = buffet_net_afp_recv(a, pk, 8, 100, &n);
        while (r == BUFFET_OK && n) buffet_pkt_free(f.cache, pk[--n]);
        if (r != BUFFET_OK && r != BUFFET_AGAIN) break;
    }
    BT_CHECK(r == BUFFET_ERR_CLOSED && errno == ENODEV);
    BT_CHECK(buffet_net_afp_recv(a, pk, 8, 0, &n) == BUFFET_ERR_CLOSED && n == 0);
    pk[0] = buffet_pkt_alloc(f.cache, 64);
    if (pk[0]) {
        memset(buffet_pkt_append(pk[0], 60), 0, 60);
        BT_CHECK(buffet_net_afp_send(a, pk, 1, &n) == BUFFET_ERR_CLOSED && n == 0);
        buffet_pkt_free(f.cache, pk[0]);
    }
    if (kept) BT_CHECK(frame_is(kept, 100, 1));
out:
    if (tx >= 0) close(tx);
    buffet_net_afp_destroy(a);
    if (kept) buffet_pkt_free(f.cache, kept);
    fx_close(&f);
}

int main(void) {
    const char *vg = getenv("BUFFET_TEST_MODE");
    small = vg && (strcmp(vg, "valgrind") == 0 || strcmp(vg, "aarch64") == 0);
    probe();
    veth_why = nu_veth_make(&V, "bfap", "10.93.0", NULL);
    BT_RUN(test_bad_input);
    BT_RUN(test_unprivileged);
    BT_RUN(test_receive);
    BT_RUN(test_copy_mode);
    BT_RUN(test_vlan);
    BT_RUN(test_held_blocks);
    BT_RUN(test_destroy_held);
    BT_RUN(test_cross_thread_free);
    BT_RUN(test_send);
    BT_RUN(test_interface_gone);
    nu_veth_del(&V);
    return bt_finish("test_net_afpacket.c");
}
