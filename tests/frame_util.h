/* frame_util.h - what the tests of buffet_net.h's frame rings (AF_PACKET, AF_XDP) share: a
   packet pool on a debug allocator that must end with nothing out, the far side's plain packet
   socket on a veth end, and test frames (broadcast, IEEE's local experimental type, a sequence
   number and a pattern of it). Included after buffet_net.h, bt.h and net_util.h (C11 and C++17). */
#ifndef FRAME_UTIL_H
#define FRAME_UTIL_H
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>

#define ETHERTYPE_TEST 0x88b5   /* no stack answers it */

/* ---- a debug allocator under a pool with a metadata area: class 0 of cls0 bytes, initial
   buffers made at create (initial == max: the class is one region), at most max ---- */
typedef struct fx {
    buffet_debug *dbg;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
} fx;

__attribute__((unused)) static void fx_open(fx *f, uint32_t cls0, size_t initial, size_t max) {
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    memset(f, 0, sizeof *f);
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&f->dbg, &dd) == BUFFET_OK);
    memset(&pd, 0, sizeof pd);
    pd.name = "afp";
    pd.class_sizes[0] = cls0;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = initial;
    pd.max = max;
    pd.no_huge_pages = true;
    pd.allocator = buffet_debug_allocator(f->dbg);
    pd.log.fn = buffet_log_silent;
    BT_CHECK(buffet_pkt_pool_create(&f->pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&f->cache, f->pool, 0) == BUFFET_OK);
}

__attribute__((unused)) static void fx_close(fx *f) {
    buffet_debug_stats st;
    BT_CHECK(nu_pool_in_use(f->pool, f->cache) == 0);
    buffet_pkt_cache_destroy(f->cache);
    buffet_pkt_pool_destroy(f->pool);
    st = buffet_debug_get_stats(f->dbg);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(f->dbg, stderr);
    buffet_debug_destroy(f->dbg);
}

/* ---- a plain packet socket on interface dev (a char *), taking test frames; made by
   nu_in_ns in the namespace of dev: -1 on failure ---- */
__attribute__((unused)) static int raw_fn(void *dev) {
    struct sockaddr_ll sll;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE_TEST));
    if (fd < 0) return -1;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETHERTYPE_TEST);
    sll.sll_ifindex = (int)if_nametoindex((const char *)dev);
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A test frame: broadcast destination, type ETHERTYPE_TEST, then seq (4 bytes, big-endian) and a
   pattern of it to len bytes. */
__attribute__((unused)) static size_t frame_fill(unsigned char *b, size_t len, uint32_t seq) {
    size_t i;
    memset(b, 0xff, 6);
    memcpy(b + 6, "\x02\x00\x00\x00\x00\x01", 6);
    b[12] = ETHERTYPE_TEST >> 8;
    b[13] = ETHERTYPE_TEST & 0xff;
    b[14] = (unsigned char)(seq >> 24);
    b[15] = (unsigned char)(seq >> 16);
    b[16] = (unsigned char)(seq >> 8);
    b[17] = (unsigned char)seq;
    for (i = 18; i < len; i++) b[i] = (unsigned char)(seq * 7u + i);
    return len;
}
/* Is p test frame seq of len bytes, exactly? */
__attribute__((unused)) static bool frame_is(buffet_pkt *p, size_t len, uint32_t seq) {
    unsigned char want[2048], tmp[2048];
    const void *got;
    if (p->pkt_len != len || len > sizeof want) return false;
    frame_fill(want, len, seq);
    got = buffet_pkt_read(p, 0, len, tmp);
    return got && memcmp(got, want, len) == 0;
}
__attribute__((unused)) static bool is_test(buffet_pkt *p) {
    unsigned char t[2];
    const unsigned char *b = p->pkt_len >= 14 ? (const unsigned char *)buffet_pkt_read(p, 12, 2, t) : NULL;
    return b && b[0] == (ETHERTYPE_TEST >> 8) && b[1] == (ETHERTYPE_TEST & 0xff);
}
__attribute__((unused)) static uint32_t frame_seq(buffet_pkt *p) {
    unsigned char t[4];
    const unsigned char *b = (const unsigned char *)buffet_pkt_read(p, 14, 4, t);
    return b ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3] : UINT32_MAX;
}

__attribute__((unused)) static bool raw_send(int fd, size_t len, uint32_t seq) {
    unsigned char b[9100];
    frame_fill(b, len, seq);
    return send(fd, b, len, 0) == (ssize_t)len;
}


/* A ring's receive (buffet_net_afp_recv, buffet_net_xdp_recv) behind one shape. */
typedef buffet_result (*fu_recv_fn)(void *ring, buffet_pkt **pkts, size_t max, int timeout_ms, size_t *got);

/* Receive until `want` test frames came (or 5 s of nothing), each checked to be seq first..,
   in order, of len bytes, with metadata, a packet of f's pool; other frames freed. kept: where
   the test frames go (NULL: freed). *exact: every check held. Returns the test frames seen. */
__attribute__((unused)) static uint32_t fu_recv_frames(fx *f, fu_recv_fn recv, void *ring, uint32_t first, uint32_t want,
                                                       size_t len, bool *exact, buffet_pkt **kept) {
    buffet_pkt *pk[64];
    uint32_t seen = 0;
    int idle = 0;
    *exact = true;
    while (seen < want && idle < 50) {
        size_t got = 0, i;
        buffet_result r = recv(ring, pk, 64, 100, &got);
        if (r == BUFFET_AGAIN) {
            idle++;
            continue;
        }
        if (r != BUFFET_OK) {
            *exact = false;
            break;
        }
        idle = 0;
        for (i = 0; i < got; i++) {
            if (is_test(pk[i]) && seen < want) {
                buffet_net_meta *m = buffet_net_meta_of(pk[i]);
                if (!frame_is(pk[i], len, first + seen) || !m || m->wire_len != len || m->ifindex == 0 ||
                    m->flags != 0 || pk[i]->pool != f->pool)
                    *exact = false;
                if (kept) {
                    kept[seen++] = pk[i];
                    continue;
                }
                seen++;
            }
            buffet_pkt_free(f->cache, pk[i]);
        }
    }
    return seen;
}
#endif
