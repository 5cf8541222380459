/* test_misuse_net.c - buffet_net.h used the way a careless user or a hostile peer would, where
   tests/test_net*.c do not already go: datagrams and SEQPACKET messages larger than the room of
   a read (reported as BUFFET_ERR_TRUNCATED with the part that fitted, never cut silently, not
   even by the fault layer), an empty datagram (not an end of file), a peer that resets a TCP
   connection under a read and a send, a chain used after buffet_chain_deinit, absurd sizes
   (SIZE_MAX buffers, counts and limits, offsets past the end), chains and packets of more than
   BUFFET_NET_IOV_MAX pieces where one datagram must carry them, descriptors of the wrong kind
   (listening sockets, pipes, files, -1, closed) for the calls the other tests leave out, a
   packet cache whose pool has no user area for buffet_net_meta (refused where the meta is
   needed, fine where it is not), and NULL pointers. Each must return the exact result and lose
   nothing: chains unchanged on error, every buffer released once, the debug allocator empty
   at the end. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#define BT_HUGE_IS_NULL
#include "bt.h"
#include "net_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
   Helpers */

typedef struct tm_env { buffet_debug *dbg; buffet_allocator a; unsigned created, released; } tm_env;

static void tm_begin(tm_env *e) {
    buffet_debug_desc d;
    memset(e, 0, sizeof *e);
    memset(&d, 0, sizeof d);
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&e->dbg, &d) == BUFFET_OK);
    e->a = buffet_debug_allocator(e->dbg);
}
static void tm_end(tm_env *e) {
    buffet_debug_stats st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(e->created == e->released);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(e->dbg, stderr);
    buffet_debug_destroy(e->dbg);
}

static void tm_release(void *user, void *data, size_t size) {
    tm_env *e = (tm_env *)user;
    buffet_free(e->a, data, size, 16, BUFFET_SITE);
    e->released++;
}

/* Append n bytes (value i & 0xff at i) to c in `pieces` slices of one counted WRAP buffer. */
static bool tm_fill(tm_env *e, buffet_chain *c, size_t n, size_t pieces) {
    unsigned char *p = (unsigned char *)buffet_alloc(e->a, n, 16, BUFFET_SITE);
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    size_t i, at = 0;
    bool ok = true;
    if (!p) return false;
    for (i = 0; i < n; i++) p[i] = (unsigned char)i;
    memset(&d, 0, sizeof d);
    d.kind = BUFFET_BUF_WRAP;
    d.size = n;
    d.allocator = e->a;
    d.wrap_data = p;
    d.release = tm_release;
    d.release_user = e;
    if (buffet_buf_create(&b, &d) != BUFFET_OK) {
        buffet_free(e->a, p, n, 16, BUFFET_SITE);
        return false;
    }
    e->created++;
    for (i = 0; i < pieces && ok; i++) {
        size_t k = i + 1 == pieces ? n - at : n / pieces;
        ok = buffet_chain_append(c, b, at, k) == BUFFET_OK;
        at += k;
    }
    buffet_buf_unref(b);
    return ok;
}

/* Does c hold bytes 0..len(c) of the tm_fill pattern, starting at pattern byte `from`? */
static bool tm_holds(const buffet_chain *c, size_t from) {
    size_t i, j;
    for (i = 0; i < buffet_chain_count(c); i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        for (j = 0; j < s->len; j++, from++)
            if (((const unsigned char *)buffet_slice_data(s))[j] != (unsigned char)from) return false;
    }
    return true;
}

static buffet_net_source tm_heap(tm_env *e, size_t buf_size) {
    buffet_net_source s;
    memset(&s, 0, sizeof s);
    s.allocator = e->a;
    s.buf_size = buf_size;
    return s;
}

/* A pool of classes 256 and 2048 with a user area of `user` bytes, and a cache of it. */
static buffet_pkt_pool *tm_pool(tm_env *e, uint32_t user, buffet_pkt_cache **c) {
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *p = NULL;
    memset(&d, 0, sizeof d);
    d.class_sizes[0] = 256;
    d.class_sizes[1] = 2048;
    d.user_size = user;
    d.initial = 32;
    d.max = 2048;
    d.no_huge_pages = true;
    d.allocator = e->a;
    *c = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, &d) == BUFFET_OK);
    if (p) BT_CHECK(buffet_pkt_cache_create(c, p, 8) == BUFFET_OK);
    return p;
}
static void tm_pool_end(buffet_pkt_pool *p, buffet_pkt_cache *c) {
    buffet_pkt_stats st;
    unsigned k;
    buffet_pkt_cache_destroy(c);
    st = buffet_pkt_pool_get_stats(p);
    for (k = 0; k <= st.nclasses; k++) BT_CHECK(st.cls[k].in_use == 0);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0);
    buffet_pkt_pool_destroy(p);
}

/* Two UDP sockets on loopback, a connected to b. */
static bool tm_udp(int *a, int *b) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    *a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    *b = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (*a < 0 || *b < 0 || bind(*b, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(*b, (struct sockaddr *)&sa, &len) != 0 || connect(*a, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (*a >= 0) close(*a);
        if (*b >= 0) close(*b);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
   Messages larger than the read */

/* A 3000-byte message read with room for 1000 (max, a packet of 256 bytes, the tail room of
   the last buffer): the part that fitted is appended and BUFFET_ERR_TRUNCATED says the rest is
   gone -- never a silent BUFFET_OK. The next message is read whole. */
static void test_recv_message_too_large(void) {
    static const int types[2] = {SOCK_SEQPACKET, SOCK_DGRAM};
    tm_env e;
    buffet_pkt_cache *pc;
    buffet_pkt_pool *pool;
    int t, sv[2];
    tm_begin(&e);
    pool = tm_pool(&e, 0, &pc);
    for (t = 0; t < 2 && pc; t++) {
        buffet_chain c, out;
        buffet_net_source heap = tm_heap(&e, 4096), pkts;
        size_t got = 7, sent = 0;
        BT_CHECK(socketpair(AF_UNIX, types[t] | SOCK_NONBLOCK, 0, sv) == 0);
        buffet_chain_init(&c, e.a);
        buffet_chain_init(&out, e.a);
        memset(&pkts, 0, sizeof pkts);
        pkts.packets = pc;
        /* max cuts it */
        BT_CHECK(tm_fill(&e, &out, 3000, 3) && buffet_net_send_chain(sv[0], &out, 0, &sent) == BUFFET_OK && sent == 3000);
        BT_CHECK(buffet_net_recv(sv[1], &c, &heap, 1000, &got) == BUFFET_ERR_TRUNCATED && errno == EMSGSIZE);
        BT_CHECK(got == 1000 && buffet_chain_len(&c) == 1000 && tm_holds(&c, 0));
        /* max 0 with the tail room of the last buffer: 3096 bytes left there */
        BT_CHECK(tm_fill(&e, &out, 3097, 1) && buffet_net_send_chain(sv[0], &out, 0, &sent) == BUFFET_OK);
        BT_CHECK(buffet_net_recv(sv[1], &c, &heap, 0, &got) == BUFFET_ERR_TRUNCATED && got == 3096);
        BT_CHECK(buffet_chain_len(&c) == 4096 && buffet_chain_count(&c) == 1);
        buffet_chain_consume(&c, 1000);
        BT_CHECK(tm_holds(&c, 0));
        buffet_chain_deinit(&c);
        /* one packet's room (2048): the same */
        BT_CHECK(tm_fill(&e, &out, 2049, 2) && buffet_net_send_chain(sv[0], &out, 0, &sent) == BUFFET_OK);
        BT_CHECK(buffet_net_recv(sv[1], &c, &pkts, 0, &got) == BUFFET_ERR_TRUNCATED && got == 2048 && tm_holds(&c, 0));
        buffet_chain_deinit(&c);
        /* a room that holds it: whole, BUFFET_OK */
        BT_CHECK(tm_fill(&e, &out, 3000, 7) && buffet_net_send_chain(sv[0], &out, 0, &sent) == BUFFET_OK);
        BT_CHECK(buffet_net_recv(sv[1], &c, &pkts, 3000, &got) == BUFFET_OK && got == 3000 && tm_holds(&c, 0));
        BT_CHECK(buffet_net_recv(sv[1], &c, &pkts, 3000, &got) == BUFFET_AGAIN && got == 0 && buffet_chain_len(&c) == 3000);
        buffet_chain_deinit(&c);
        buffet_chain_deinit(&out);
        close(sv[0]);
        close(sv[1]);
    }
    if (pool) tm_pool_end(pool, pc);
    tm_end(&e);
}

/* The fault layer makes reads short, but never of a message: a short read of a datagram would
   lose its rest, which no kernel does. 200 messages under heavy faults all arrive whole. */
static void test_faults_never_cut_messages(void) {
    static const int types[2] = {SOCK_SEQPACKET, SOCK_DGRAM};
    tm_env e;
    buffet_net_faults f;
    int t, sv[2], i;
    tm_begin(&e);
    for (t = 0; t < 2; t++) {
        buffet_chain c, out;
        buffet_net_source heap = tm_heap(&e, 512);
        size_t got, sent;
        BT_CHECK(socketpair(AF_UNIX, types[t] | SOCK_NONBLOCK, 0, sv) == 0);
        buffet_chain_init(&c, e.a);
        buffet_chain_init(&out, e.a);
        memset(&f, 0, sizeof f);
        f.seed = 99;
        f.fd = sv[1];
        f.short_per_million = 900000;
        f.again_per_million = 50000;
        f.intr_per_million = 50000;
        buffet_net_faults_set(&f);
        for (i = 0; i < 200; i++) {
            buffet_result r;
            size_t n = 100 + (size_t)i * 13;
            BT_CHECK(tm_fill(&e, &out, n, 1 + (size_t)i % 5));
            BT_CHECK(buffet_net_send_chain(sv[0], &out, 0, &sent) == BUFFET_OK && sent == n);
            do r = buffet_net_recv(sv[1], &c, &heap, 8192, &got);
            while (r == BUFFET_AGAIN);
            BT_CHECK(r == BUFFET_OK && got == n);
            buffet_chain_consume(&c, buffet_chain_len(&c) - n);
            BT_CHECK(tm_holds(&c, 0));   /* the message, from its first byte */
            buffet_chain_deinit(&c);
        }
        buffet_net_faults_set(NULL);
        BT_CHECK(f.shorts > 0 && f.agains > 0 && f.intrs > 0);
        buffet_chain_deinit(&out);
        close(sv[0]);
        close(sv[1]);
    }
    tm_end(&e);
}

/* An empty datagram is no end of file: BUFFET_OK with 0 bytes, the socket still good. On a
   SEQPACKET socket 0 bytes are the end (a closed peer), as on a stream. UDP: the same through
   buffet_net_udp_recv (a packet of length 0). */
static void test_empty_datagram(void) {
    tm_env e;
    buffet_chain c;
    buffet_pkt_cache *pc;
    buffet_pkt_pool *pool;
    int sv[2], a, b;
    size_t got = 7;
    tm_begin(&e);
    buffet_chain_init(&c, e.a);
    BT_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0);
    BT_CHECK(send(sv[0], "", 0, 0) == 0 && send(sv[0], "x", 1, 0) == 1);
    BT_CHECK(buffet_net_recv(sv[1], &c, NULL, 0, &got) == BUFFET_OK && got == 0 && buffet_chain_len(&c) == 0);
    BT_CHECK(buffet_net_recv(sv[1], &c, NULL, 0, &got) == BUFFET_OK && got == 1 && buffet_chain_len(&c) == 1);
    BT_CHECK(buffet_net_recv(sv[1], &c, NULL, 0, &got) == BUFFET_AGAIN);
    close(sv[0]);
    close(sv[1]);
    BT_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) == 0);
    close(sv[0]);
    BT_CHECK(buffet_net_recv(sv[1], &c, NULL, 0, &got) == BUFFET_ERR_CLOSED && got == 0 && errno == 0);
    close(sv[1]);
    pool = tm_pool(&e, sizeof(buffet_net_meta), &pc);
    if (pc && tm_udp(&a, &b)) {
        buffet_pkt *p[4];
        BT_CHECK(send(a, "", 0, 0) == 0 && send(a, "yz", 2, 0) == 2);
        BT_CHECK(buffet_net_recv(b, &c, NULL, 0, &got) == BUFFET_OK && got == 0 && buffet_chain_len(&c) == 1);
        BT_CHECK(buffet_net_udp_recv(b, pc, -1, p, 4, &got) == BUFFET_OK && got == 1 && p[0]->len == 2);
        buffet_pkt_free(pc, p[0]);
        BT_CHECK(send(a, "", 0, 0) == 0);
        BT_CHECK(buffet_net_udp_recv(b, pc, -1, p, 4, &got) == BUFFET_OK && got == 1 && p[0]->len == 0 &&
                 buffet_net_meta_of(p[0])->wire_len == 0);
        buffet_pkt_free(pc, p[0]);
        close(a);
        close(b);
    }
    if (pool) tm_pool_end(pool, pc);
    buffet_chain_deinit(&c);
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Peers and descriptors */

/* The peer resets (SO_LINGER 0) with bytes unread: a read says CLOSED (ECONNRESET kept) and
   leaves the chain as it was; a send says CLOSED and keeps every byte not sent. */
static void test_peer_resets(void) {
    tm_env e;
    buffet_chain c, out;
    int tx, rx;
    struct linger lg;
    size_t got = 7, sent = 7;
    buffet_result r;
    tm_begin(&e);
    if (!nu_tcp_pair(&tx, &rx)) {
        tm_end(&e);
        BT_SKIP("tcp", "no TCP over loopback");
    }
    buffet_chain_init(&c, e.a);
    buffet_chain_init(&out, e.a);
    BT_CHECK(write(rx, "abc", 3) == 3);
    BT_CHECK(buffet_net_recv(tx, &c, NULL, 0, &got) == BUFFET_OK && got == 3);
    BT_CHECK(write(tx, "unread", 6) == 6);   /* unread bytes make close() a reset */
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(rx, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(rx);
    BT_CHECK(buffet_net_recv(tx, &c, NULL, 0, &got) == BUFFET_ERR_CLOSED && got == 0 && errno == ECONNRESET);
    BT_CHECK(buffet_chain_len(&c) == 3);
    BT_CHECK(tm_fill(&e, &out, 5000, 4));
    r = buffet_net_send_chain(tx, &out, 0, &sent);
    BT_CHECK(r == BUFFET_ERR_CLOSED && sent == 0 && buffet_chain_len(&out) == 5000 && tm_holds(&out, 0));
    close(tx);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&out);
    tm_end(&e);
}

/* A listening socket, a file opened read-only, a pipe's wrong end, a closed descriptor, -1:
   each call says BUFFET_ERR_INVALID or what the kernel said, and moves nothing. */
static void test_wrong_descriptors(void) {
    tm_env e;
    buffet_chain c;
    buffet_net_zc *zc = NULL;
    buffet_net_zc_desc zd;
    int lis = socket(AF_UNIX, SOCK_SEQPACKET, 0), file = open("/proc/self/exe", O_RDONLY), p[2], closed, i;
    size_t got = 7, sent = 7;
    tm_begin(&e);
    memset(&zd, 0, sizeof zd);
    zd.allocator = e.a;
    BT_CHECK(buffet_net_zc_create(&zc, &zd) == BUFFET_OK);
    BT_CHECK(pipe(p) == 0 && lis >= 0 && file >= 0);
    closed = dup(p[0]);
    close(closed);
    {
        struct sockaddr_un ua;
        memset(&ua, 0, sizeof ua);
        ua.sun_family = AF_UNIX;
        BT_CHECK(bind(lis, (struct sockaddr *)&ua, sizeof(sa_family_t)) == 0);   /* autobind: an abstract name */
        BT_CHECK(listen(lis, 1) == 0);
    }
    buffet_chain_init(&c, e.a);
    BT_CHECK(tm_fill(&e, &c, 100, 2));
    /* writing to a read-only file or to a pipe's read end: EBADF, INVALID */
    BT_CHECK(buffet_net_send_chain(file, &c, 0, &sent) == BUFFET_ERR_INVALID && sent == 0 && buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_send_chain(p[0], &c, 0, &sent) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_recv(p[1], &c, NULL, 0, &got) == BUFFET_ERR_INVALID && got == 0 && buffet_chain_len(&c) == 100);
    /* a listening socket has no peer */
    BT_CHECK(buffet_net_send_chain(lis, &c, 0, &sent) == BUFFET_ERR_SYSTEM && errno == ENOTCONN && buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_recv(lis, &c, NULL, 0, &got) == BUFFET_ERR_CLOSED && errno == ENOTCONN && buffet_chain_len(&c) == 100);
    /* calls the other tests do not give bad descriptors */
    {
        int bad[5];
        bad[0] = -1; bad[1] = closed; bad[2] = file; bad[3] = p[0]; bad[4] = lis;
        for (i = 0; i < 5; i++) {
            buffet_net_peer peer;
            BT_CHECK(buffet_net_udp_send_gso_chain(bad[i], &c, 10, NULL, &sent) == BUFFET_ERR_INVALID && sent == 0);
            BT_CHECK(buffet_net_udp_setup(bad[i], BUFFET_NET_UDP_GRO) == BUFFET_ERR_INVALID);
            /* a listening socket has no peer (the kernel would give the listener's own credentials) */
            BT_CHECK(buffet_net_peer_of(bad[i], &peer) == BUFFET_ERR_INVALID && peer.pid == 0);
            /* a tracker never bound: what reading the error queue says (a listening UNIX socket: ENOTCONN) */
            BT_CHECK(buffet_net_zc_wait(bad[i], zc, 0, NULL) == (bad[i] == lis ? BUFFET_ERR_SYSTEM : BUFFET_ERR_INVALID));
            /* a UNIX socket cannot do zerocopy; the others are no sockets at all */
            BT_CHECK(buffet_net_send_chain_zc(bad[i], &c, zc, 0, &sent) ==
                     (bad[i] == lis ? BUFFET_ERR_UNSUPPORTED : BUFFET_ERR_INVALID) && sent == 0);
        }
        BT_CHECK(buffet_chain_len(&c) == 100 && buffet_net_zc_get_stats(zc).calls == 0);
    }
    BT_CHECK(buffet_net_send_chain_fds(lis, &c) == BUFFET_ERR_INVALID);   /* not an SHM slice, not connected */
    {
        buffet_result r = buffet_net_recv_chain_fds(lis, &c, NULL, NULL);
        if (r != BUFFET_ERR_CLOSED) fprintf(stderr, "recv_chain_fds on a listening socket: %s\n", buffet_result_str(r));
        BT_CHECK(r == BUFFET_ERR_CLOSED && errno == ENOTCONN);   /* no peer: nothing will ever come */
    }
    BT_CHECK(buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
    buffet_chain_deinit(&c);
    close(lis);
    close(file);
    close(p[0]);
    close(p[1]);
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Chains, sizes, packets */

/* After buffet_chain_deinit a chain is empty and usable again: sends nothing, reads into it,
   takes from it; a second deinit is harmless. */
static void test_chain_after_deinit(void) {
    tm_env e;
    buffet_chain c, out;
    int sv[2];
    size_t got = 7, sent = 7;
    tm_begin(&e);
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    buffet_chain_init(&c, e.a);
    buffet_chain_init(&out, e.a);
    BT_CHECK(tm_fill(&e, &c, 50, 2));
    buffet_chain_deinit(&c);
    BT_CHECK(e.released == 1);
    BT_CHECK(buffet_net_send_chain(sv[0], &c, 0, &sent) == BUFFET_OK && sent == 0);
    BT_CHECK(buffet_net_take(&c, 1, &out) == BUFFET_AGAIN && buffet_net_take_until(&c, "x", 1, 0, &out) == BUFFET_AGAIN);
    BT_CHECK(write(sv[1], "hello", 5) == 5);
    BT_CHECK(buffet_net_recv(sv[0], &c, NULL, 0, &got) == BUFFET_OK && got == 5);
    BT_CHECK(buffet_net_take_until(&c, "ll", 2, 0, &out) == BUFFET_OK && buffet_chain_len(&out) == 4);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&out);
    close(sv[0]);
    close(sv[1]);
    tm_end(&e);
}

/* SIZE_MAX and sums that would wrap: refused or bounded, never a wrapped size. */
static void test_absurd_sizes(void) {
    tm_env e;
    buffet_chain c, out;
    buffet_net_source src;
    int sv[2];
    size_t got = 7, sent = 7;
    buffet_result r;
    tm_begin(&e);
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    buffet_chain_init(&c, e.a);
    buffet_chain_init(&out, e.a);
    BT_CHECK(write(sv[1], "0123456789", 10) == 10);
    /* a buffer of SIZE_MAX bytes cannot be had: nothing read, the bytes wait */
    src = tm_heap(&e, SIZE_MAX);
    r = buffet_net_recv(sv[0], &c, &src, 0, &got);
    if (r != BUFFET_ERR_OVERFLOW) fprintf(stderr, "SIZE_MAX buffer: %s\n", buffet_result_str(r));
    BT_CHECK(r == BUFFET_ERR_OVERFLOW && got == 0 && buffet_chain_len(&c) == 0);
    /* max SIZE_MAX: as many buffers as one read takes, no wrap in the room's sum */
    src = tm_heap(&e, 4);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, SIZE_MAX, &got) == BUFFET_OK && got == 10 && buffet_chain_len(&c) == 10);
    BT_CHECK(buffet_chain_count(&c) == 3);   /* the 64 buffers staged went back but three */
    /* take and take_until past everything */
    BT_CHECK(buffet_net_take(&c, SIZE_MAX, &out) == BUFFET_AGAIN && buffet_chain_len(&c) == 10);
    BT_CHECK(buffet_net_take_until(&c, "89", 2, SIZE_MAX, &out) == BUFFET_OK && buffet_chain_len(&out) == 10);
    BT_CHECK(buffet_net_take_until(&out, "0123456789", SIZE_MAX / 2, 0, &c) == BUFFET_AGAIN);
    BT_CHECK(buffet_net_take_until(&out, "89", 2, 9, &c) == BUFFET_ERR_TOO_LARGE && buffet_chain_len(&out) == 10);
    BT_CHECK(buffet_net_take_until(&out, "0123", 4, 3, &c) == BUFFET_ERR_TOO_LARGE);   /* max below the delimiter */
    /* GSO: segment sizes and offsets past every limit */
    {
        char d = 0;
        BT_CHECK(buffet_net_udp_send_gso(sv[0], &d, 1, SIZE_MAX, NULL, &sent) == BUFFET_ERR_INVALID && sent == 0);
        BT_CHECK(buffet_net_udp_send_gso_chain(sv[0], &out, SIZE_MAX, NULL, &sent) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_chain_len(&out) == 10);
    }
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&out);
    close(sv[0]);
    close(sv[1]);
    tm_end(&e);
}

/* One datagram cannot carry more than BUFFET_NET_IOV_MAX pieces: a zerocopy UDP send of 1025
   slices and a packet of 1025 segments are refused before anything goes, and stay whole; a
   stream send of the same chain goes in several calls. */
static void test_more_than_iov_max(void) {
    tm_env e;
    buffet_chain c;
    buffet_pkt_cache *pc;
    buffet_pkt_pool *pool;
    int a, b, sv[2];
    size_t sent = 7, i;
    unsigned char tmp[4096];
    tm_begin(&e);
    buffet_chain_init(&c, e.a);
    {
        /* every other byte of one buffer: slices that do not touch stay apart */
        buffet_chain all;
        buffet_chain_init(&all, e.a);
        BT_CHECK(tm_fill(&e, &all, 2 * (BUFFET_NET_IOV_MAX + 1), 1));
        for (i = 0; i <= BUFFET_NET_IOV_MAX; i++)
            BT_CHECK(buffet_chain_append(&c, buffet_chain_at(&all, 0)->buf, 2 * i, 1) == BUFFET_OK);
        buffet_chain_deinit(&all);
    }
    BT_CHECK(buffet_chain_count(&c) == BUFFET_NET_IOV_MAX + 1);
    pool = tm_pool(&e, sizeof(buffet_net_meta), &pc);
    if (pc && tm_udp(&a, &b)) {
        buffet_net_zc *zc = NULL;
        buffet_net_zc_desc zd;
        buffet_pkt *head = NULL, *seg;
        buffet_result r;
        memset(&zd, 0, sizeof zd);
        zd.allocator = e.a;
        BT_CHECK(buffet_net_zc_create(&zc, &zd) == BUFFET_OK);
        r = buffet_net_send_chain_zc(a, &c, zc, 0, &sent);
        BT_CHECK(r == BUFFET_ERR_TOO_LARGE || r == BUFFET_ERR_UNSUPPORTED);   /* UNSUPPORTED: no zerocopy here */
        BT_CHECK(sent == 0 && buffet_chain_len(&c) == BUFFET_NET_IOV_MAX + 1 && buffet_net_zc_get_stats(zc).calls == 0);
        BT_CHECK(buffet_net_zc_destroy(zc) == BUFFET_OK);
        for (i = 0; i <= BUFFET_NET_IOV_MAX; i++) {
            seg = buffet_pkt_alloc(pc, 1);
            BT_CHECK(seg != NULL);
            if (!seg) break;
            *(unsigned char *)buffet_pkt_append(seg, 1) = (unsigned char)i;
            if (!head) {
                head = seg;
                memset(buffet_net_meta_of(head), 0, sizeof(buffet_net_meta));
            } else {
                BT_CHECK(buffet_pkt_chain(head, seg) == BUFFET_OK);
            }
        }
        BT_CHECK(head && head->nb_segs == BUFFET_NET_IOV_MAX + 1);
        BT_CHECK(buffet_net_udp_send(a, pc, &head, 1, &sent) == BUFFET_ERR_INVALID && sent == 0);
        BT_CHECK(buffet_net_udp_send_gso_pkt(a, pc, &head, 0, 100, &sent) == BUFFET_ERR_INVALID && head != NULL);
        BT_CHECK(recv(b, tmp, sizeof tmp, MSG_DONTWAIT) < 0);   /* nothing went */
        buffet_pkt_free(pc, head);
        close(a);
        close(b);
    }
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    BT_CHECK(buffet_net_send_chain(sv[0], &c, 0, &sent) == BUFFET_OK && sent == BUFFET_NET_IOV_MAX + 1);
    BT_CHECK(recv(sv[1], tmp, sizeof tmp, MSG_DONTWAIT) == BUFFET_NET_IOV_MAX + 1);
    close(sv[0]);
    close(sv[1]);
    if (pool) tm_pool_end(pool, pc);
    buffet_chain_deinit(&c);
    tm_end(&e);
}

/* A cache whose pool has no room for buffet_net_meta: refused by everything that needs the
   meta, with nothing taken from the pool; buffet_net_recv, which does not need it, reads into
   its packets. */
static void test_cache_without_user_area(void) {
    tm_env e;
    buffet_pkt_cache *pc;
    buffet_pkt_pool *pool;
    buffet_chain c;
    buffet_net_source src;
    int a, b;
    size_t got = 7, sent = 7;
    tm_begin(&e);
    buffet_chain_init(&c, e.a);
    pool = tm_pool(&e, sizeof(buffet_net_meta) - 1, &pc);
    if (pc && tm_udp(&a, &b)) {
        buffet_pkt *p = buffet_pkt_alloc(pc, 10), *arr[2];
        size_t made = 7;
        BT_CHECK(p && buffet_net_meta_of(p) == NULL);
        buffet_pkt_append(p, 10);
        BT_CHECK(send(a, "datagram", 8, 0) == 8);
        BT_CHECK(buffet_net_udp_recv(b, pc, -1, arr, 2, &got) == BUFFET_ERR_INVALID && got == 0);
        BT_CHECK(buffet_net_udp_send(a, pc, &p, 1, &sent) == BUFFET_ERR_INVALID && sent == 0);
        BT_CHECK(buffet_net_udp_split(pc, p, arr, 2, &made) == BUFFET_ERR_INVALID && made == 0);
        BT_CHECK(buffet_net_udp_send_gso_pkt(a, pc, &p, 0, 5, &sent) == BUFFET_ERR_INVALID && p != NULL);
        buffet_pkt_free(pc, p);
        memset(&src, 0, sizeof src);
        src.packets = pc;
        BT_CHECK(buffet_net_recv(b, &c, &src, 0, &got) == BUFFET_OK && got == 8 && buffet_chain_len(&c) == 8);
        buffet_chain_deinit(&c);
        close(a);
        close(b);
    }
    if (pool) tm_pool_end(pool, pc);
    tm_end(&e);
}

/* NULL where a pointer is required, for the calls the other tests leave out. */
static void test_null_pointers(void) {
    tm_env e;
    buffet_chain c;
    buffet_pkt_cache *pc;
    buffet_pkt_pool *pool;
    buffet_pkt *arr[2];
    size_t made = 7, sent = 7;
    int sv[2];
    tm_begin(&e);
    buffet_chain_init(&c, e.a);
    pool = tm_pool(&e, sizeof(buffet_net_meta), &pc);
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    BT_CHECK(buffet_net_take(&c, 0, NULL) == BUFFET_ERR_INVALID && buffet_net_take_until(NULL, "a", 1, 0, &c) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_take_until(&c, "a", 1, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_take_until(&c, "a", 1, 0, &c) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_udp_send_gso_chain(sv[0], &c, 10, NULL, NULL) == BUFFET_ERR_INVALID);
    if (pc) {
        buffet_pkt *p = buffet_pkt_alloc(pc, 10);
        buffet_pkt_append(p, 10);
        BT_CHECK(buffet_net_udp_split(pc, p, NULL, 2, &made) == BUFFET_ERR_INVALID && made == 0);
        BT_CHECK(buffet_net_udp_split(pc, p, arr, 2, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_udp_split(pc, p, arr, 0, &made) == BUFFET_ERR_INVALID && made == 0);
        BT_CHECK(buffet_net_udp_send_gso_pkt(sv[0], pc, &p, 0, 5, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_net_udp_send(sv[0], pc, &p, 1, NULL) == BUFFET_ERR_INVALID && p->refcnt == 1);
        buffet_pkt_free(pc, p);
    }
    {
        buffet_net_zc_stats s = buffet_net_zc_get_stats(NULL);
        BT_CHECK(s.calls == 0 && s.in_flight == 0);
        BT_CHECK(buffet_net_zc_wait(sv[0], NULL, 0, NULL) == BUFFET_ERR_INVALID);
    }
    BT_CHECK(buffet_net_send_bufs(sv[0], NULL, 0, &sent) == BUFFET_ERR_INVALID && sent == 0);   /* a stream socket */
    buffet_net_faults_set(NULL);   /* taking away a layer that is not there */
    close(sv[0]);
    close(sv[1]);
    if (pool) tm_pool_end(pool, pc);
    buffet_chain_deinit(&c);
    tm_end(&e);
}

int main(void) {
    BT_RUN(test_recv_message_too_large);
    BT_RUN(test_faults_never_cut_messages);
    BT_RUN(test_empty_datagram);
    BT_RUN(test_peer_resets);
    BT_RUN(test_wrong_descriptors);
    BT_RUN(test_chain_after_deinit);
    BT_RUN(test_absurd_sizes);
    BT_RUN(test_more_than_iov_max);
    BT_RUN(test_cache_without_user_area);
    BT_RUN(test_null_pointers);
    return bt_finish("test_misuse_net.c");
}
