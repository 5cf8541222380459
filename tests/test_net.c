/* test_net.c - the tests of buffet_net.h, streams: buffet_net_send_chain (whole chains, chains
   of mixed buffer kinds, more slices than one call takes, a socket that fills up, a peer that
   closed or reset, pipes and files, sendfile of shared-memory buffers), buffet_net_recv (heap
   buffers, packets, the tail room of the last buffer filled first, end of file, nothing to
   read, a failing allocator, an exhausted packet pool), buffet_net_take and _take_until (exact
   counts, delimiters across slices, limits, nothing copied), the fault layer (the same seed
   gives the same faults; every transfer stays byte-exact under it), and bad input everywhere
   (closed descriptors, descriptors of the wrong type, NULL and empty chains). The buffers'
   headers come from a debug allocator, so a leak fails the test. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
   Helpers */

/* The byte at stream position i of stream `seed`: every position tells where it came from. */
static unsigned char tn_byte(unsigned seed, size_t i) { return (unsigned char)((i * 131u + seed * 7u + (i >> 9)) & 0xff); }

typedef struct tn_env {
    buffet_debug *dbg;
    buffet_allocator a;
} tn_env;

static void tn_begin(tn_env *e) {
    buffet_debug_desc d;
    memset(&d, 0, sizeof d);
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&e->dbg, &d) == BUFFET_OK);
    e->a = buffet_debug_allocator(e->dbg);
}
static void tn_end(tn_env *e) {
    buffet_debug_stats st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(e->dbg, stderr);
    buffet_debug_destroy(e->dbg);
}

/* A buffer of `kind` holding bytes [from, from + n) of stream seed. */
static buffet_buf *tn_buf(tn_env *e, uint32_t kind, unsigned seed, size_t from, size_t n) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    size_t i;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.size = n;
    d.allocator = e->a;
    if (buffet_buf_create(&b, &d) != BUFFET_OK) return NULL;
    for (i = 0; i < n; i++) ((unsigned char *)b->data)[i] = tn_byte(seed, from + i);
    return b;
}

/* Append bytes [from, from + n) of stream seed to c as one slice of a fresh buffer (a few
   bytes of padding on each side, so slices start inside their buffers). */
static bool tn_append(tn_env *e, buffet_chain *c, uint32_t kind, unsigned seed, size_t from, size_t n) {
    buffet_buf *b = tn_buf(e, kind, seed, from - 3, n + 6);
    bool ok = b && buffet_chain_append(c, b, 3, n) == BUFFET_OK;
    buffet_buf_unref(b);
    return ok;
}

/* Does c hold bytes [from, from + len(c)) of stream seed? */
static bool tn_holds(const buffet_chain *c, unsigned seed, size_t from) {
    size_t i, j, at = from;
    for (i = 0; i < buffet_chain_count(c); i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        const unsigned char *p = (const unsigned char *)buffet_slice_data(s);
        for (j = 0; j < s->len; j++, at++)
            if (p[j] != tn_byte(seed, at)) {
                fprintf(stderr, "byte %zu: %u, not %u\n", at, p[j], tn_byte(seed, at));
                return false;
            }
    }
    return true;
}

static void tn_pair(int sv[2], bool nonblock) {
    BT_CHECK(socketpair(AF_UNIX, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0, sv) == 0);
}

/* Read everything from fd until end of file, checking it is stream seed from 0. Returns the
   bytes read, or (size_t)-1 at the first wrong byte. */
static size_t tn_drain_check(int fd, unsigned seed) {
    unsigned char tmp[65536];
    size_t at = 0;
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp), i;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return at;
        for (i = 0; i < r; i++, at++)
            if (tmp[i] != tn_byte(seed, at)) return (size_t)-1;
    }
}

typedef struct tn_reader { int fd; unsigned seed; size_t got; } tn_reader;
static void *tn_reader_main(void *arg) {
    tn_reader *r = (tn_reader *)arg;
    r->got = tn_drain_check(r->fd, r->seed);
    return NULL;
}

/* Send all of c (stream seed from 0, `total` bytes) over a blocking socket pair read by another
   thread: everything must go, in order, and c end empty. */
static void tn_send_to_reader(buffet_chain *c, unsigned flags, unsigned seed, size_t total) {
    int sv[2];
    size_t sent = 0;
    pthread_t t;
    tn_reader rd;
    tn_pair(sv, false);
    rd.fd = sv[1];
    rd.seed = seed;
    rd.got = 0;
    BT_CHECK(pthread_create(&t, NULL, tn_reader_main, &rd) == 0);
    BT_CHECK(buffet_net_send_chain(sv[0], c, flags, &sent) == BUFFET_OK);
    BT_CHECK(sent == total && buffet_chain_len(c) == 0 && buffet_chain_count(c) == 0);
    close(sv[0]);
    pthread_join(t, NULL);
    BT_CHECK(rd.got == total);
    close(sv[1]);
}

/* ---------------------------------------------------------------------------------------------
   Sending */

/* A chain of every buffer kind, more slices than one call takes (IOV_MAX), to a blocking
   socket read by another thread: everything goes, in order, and the chain ends empty. */
static void test_send_mixed_kinds(void) {
    static const uint32_t kinds[3] = {BUFFET_BUF_HEAP, BUFFET_BUF_MMAP, BUFFET_BUF_SHM};
    tn_env e;
    buffet_chain c;
    size_t at = 0, i, n = bt_mode("valgrind") ? 1500 : 3000;
    tn_begin(&e);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (i = 0; i < n; i++) {
        size_t len = 1 + (i * 37) % 700;
        BT_CHECK(tn_append(&e, &c, kinds[i % 3], 1, at, len));
        at += len;
    }
    BT_CHECK(buffet_chain_count(&c) == n && n > BUFFET_NET_IOV_MAX);
    tn_send_to_reader(&c, 0, 1, at);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* A non-blocking socket fills up: BUFFET_AGAIN, exactly the bytes taken are gone from the
   chain, and the rest goes out once the reader made room. */
static void test_send_again(void) {
    tn_env e;
    buffet_chain c;
    int sv[2];
    size_t total = (size_t)4 << 20, sent = 0, sum = 0, got = 0, i;
    unsigned char *tmp = (unsigned char *)malloc(1 << 16);
    buffet_result r;
    int rounds = 0;
    tn_begin(&e);
    tn_pair(sv, true);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (i = 0; i < total; i += 65536) BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 2, i, 65536));
    BT_CHECK(tn_holds(&c, 2, 0));
    r = buffet_net_send_chain(sv[0], &c, 0, &sent);
    BT_CHECK(r == BUFFET_AGAIN && sent > 0 && sent < total && buffet_chain_len(&c) == total - sent);
    BT_CHECK(tn_holds(&c, 2, sent));   /* positioned for the retry: the next byte is byte `sent` */
    sum = sent;
    while (buffet_chain_len(&c) > 0 && rounds++ < 100000) {
        ssize_t k = read(sv[1], tmp, 1 << 16);
        ssize_t j;
        if (k > 0) {
            for (j = 0; j < k; j++) BT_CHECK(tmp[j] == tn_byte(2, got + (size_t)j));
            got += (size_t)k;
        }
        r = buffet_net_send_chain(sv[0], &c, 0, &sent);
        BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
        sum += sent;
    }
    BT_CHECK(sum == total && buffet_chain_len(&c) == 0);
    close(sv[0]);
    for (;;) {
        ssize_t k = read(sv[1], tmp, 1 << 16), j;
        if (k <= 0) break;
        for (j = 0; j < k; j++)
            if (tmp[j] != tn_byte(2, got + (size_t)j)) { BT_CHECK(!"byte-exact"); break; }
        got += (size_t)k;
    }
    BT_CHECK(got == total);
    close(sv[1]);
    free(tmp);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* The peer closed, or reset: a clean BUFFET_ERR_CLOSED, no SIGPIPE, and the chain holds every
   byte not sent. */
static void test_send_peer_gone(void) {
    tn_env e;
    buffet_chain c;
    int sv[2];
    size_t sent = 1;
    tn_begin(&e);
    tn_pair(sv, false);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 3, 0, 1000));
    close(sv[1]);
    BT_CHECK(buffet_net_send_chain(sv[0], &c, 0, &sent) == BUFFET_ERR_CLOSED && errno == EPIPE);
    BT_CHECK(sent == 0 && buffet_chain_len(&c) == 1000 && tn_holds(&c, 3, 0));
    close(sv[0]);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* Pipes and files are not sockets: writev does the work. */
static void test_send_pipe_and_file(void) {
    tn_env e;
    buffet_chain c;
    int p[2];
    size_t sent = 0;
    FILE *f = tmpfile();
    tn_begin(&e);
    BT_CHECK(pipe(p) == 0 && f != NULL);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 4, 0, 3000) && tn_append(&e, &c, BUFFET_BUF_MMAP, 4, 3000, 1000));
    BT_CHECK(buffet_net_send_chain(p[1], &c, 0, &sent) == BUFFET_OK && sent == 4000);
    close(p[1]);
    BT_CHECK(tn_drain_check(p[0], 4) == 4000);
    close(p[0]);
    if (f) {
        BT_CHECK(tn_append(&e, &c, BUFFET_BUF_SHM, 4, 0, 5000));
        BT_CHECK(buffet_net_send_chain(fileno(f), &c, BUFFET_NET_SENDFILE, &sent) == BUFFET_OK && sent == 5000);
        BT_CHECK(lseek(fileno(f), 0, SEEK_SET) == 0 && tn_drain_check(fileno(f), 4) == 5000);
        fclose(f);
    }
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* BUFFET_NET_SENDFILE: shared-memory slices go by sendfile, the others by sendmsg, in order. */
static void test_send_sendfile(void) {
    tn_env e;
    buffet_chain c;
    size_t at = 0, i;
    tn_begin(&e);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (i = 0; i < 40; i++) {
        size_t len = 1000 + i * 977;
        BT_CHECK(tn_append(&e, &c, i % 4 == 0 ? BUFFET_BUF_HEAP : BUFFET_BUF_SHM, 5, at, len));
        at += len;
    }
    tn_send_to_reader(&c, BUFFET_NET_SENDFILE | BUFFET_NET_MORE, 5, at);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Receiving */

/* Small reads fill the room left in the last buffer before taking another; end of file and
   nothing-to-read are told apart. */
static void test_recv_tail_room(void) {
    tn_env e;
    buffet_net_source src;
    buffet_chain c;
    int sv[2];
    size_t got = 0, i;
    unsigned char msg[100];
    tn_begin(&e);
    tn_pair(sv, true);
    memset(&src, 0, sizeof src);
    src.allocator = e.a;
    src.buf_size = 1000;
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_AGAIN && got == 0 && buffet_chain_len(&c) == 0);
    for (i = 0; i < 25; i++) {
        size_t j;
        for (j = 0; j < sizeof msg; j++) msg[j] = tn_byte(6, i * sizeof msg + j);
        BT_CHECK(write(sv[1], msg, sizeof msg) == (ssize_t)sizeof msg);
        BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == sizeof msg);
    }
    /* 2500 bytes in 1000-byte buffers: three slices, not 25 */
    BT_CHECK(buffet_chain_len(&c) == 2500 && buffet_chain_count(&c) == 3 && tn_holds(&c, 6, 0));
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count <= 2 * 3 + 1);   /* 3 headers and data, a slice array */
    close(sv[1]);
    errno = 5;
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_ERR_CLOSED && got == 0 && errno == 0);
    BT_CHECK(buffet_chain_len(&c) == 2500);
    close(sv[0]);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* A buffer someone else also holds is never written past its slice. */
static void test_recv_shared_tail_untouched(void) {
    tn_env e;
    buffet_net_source src;
    buffet_chain c, other;
    int sv[2];
    size_t got = 0;
    unsigned char *after;
    tn_begin(&e);
    tn_pair(sv, true);
    memset(&src, 0, sizeof src);
    src.allocator = e.a;
    src.buf_size = 4096;
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK && buffet_chain_init(&other, e.a) == BUFFET_OK);
    BT_CHECK(write(sv[1], "hello", 5) == 5);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == 5);
    /* another chain takes the whole buffer, bytes after the slice included */
    BT_CHECK(buffet_chain_append(&other, buffet_chain_at(&c, 0)->buf, 0, 4096) == BUFFET_OK);
    after = (unsigned char *)buffet_chain_at(&c, 0)->buf->data + 5;
    memset(after, 0xEE, 10);
    BT_CHECK(write(sv[1], "world", 5) == 5);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == 5);
    BT_CHECK(buffet_chain_count(&c) == 2 && after[0] == 0xEE && after[9] == 0xEE);
    {
        char s[11] = BT_ZERO;
        BT_CHECK(buffet_chain_copy_out(&c, 0, s, 10) == BUFFET_OK && memcmp(s, "helloworld", 10) == 0);
    }
    close(sv[0]);
    close(sv[1]);
    buffet_chain_deinit(&other);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* Reading into packets: each packet joins the chain by reference and goes back to its pool when
   the chain lets go; an exhausted pool reads nothing and says why. */
static void test_recv_packets(void) {
    tn_env e;
    buffet_pkt_pool_desc pd;
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *cache = NULL;
    buffet_net_source src;
    buffet_chain c;
    int sv[2];
    size_t got = 0, i, total = 0;
    unsigned char msg[3000];
    buffet_pkt *hold[8];
    tn_begin(&e);
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 256;
    pd.class_sizes[1] = 2048;
    pd.initial = 8;
    pd.max = 8;
    pd.no_huge_pages = true;
    pd.allocator = e.a;
    BT_CHECK(buffet_pkt_pool_create(&pool, &pd) == BUFFET_OK);
    BT_CHECK(pool && buffet_pkt_cache_create(&cache, pool, 4) == BUFFET_OK);
    if (!cache) return;
    tn_pair(sv, true);
    memset(&src, 0, sizeof src);
    src.packets = cache;
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (i = 0; i < sizeof msg; i++) msg[i] = tn_byte(7, i);
    BT_CHECK(write(sv[1], msg, sizeof msg) == (ssize_t)sizeof msg);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == 2048);   /* one packet's room */
    total += got;
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 65536, &got) == BUFFET_OK && got == sizeof msg - 2048);
    total += got;
    BT_CHECK(buffet_chain_len(&c) == total && total == sizeof msg && buffet_chain_count(&c) == 2 && tn_holds(&c, 7, 0));
    /* the other 6 packets taken: one more read gets nothing and says EXHAUSTED */
    for (i = 0; i < 6; i++) hold[i] = buffet_pkt_alloc_class(cache, 1);
    BT_CHECK(write(sv[1], msg, 10) == 10);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_ERR_EXHAUSTED && got == 0 && buffet_chain_len(&c) == total);
    for (i = 0; i < 6; i++) buffet_pkt_free(cache, hold[i]);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == 10);
    buffet_chain_deinit(&c);
    buffet_pkt_cache_flush(cache);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[1].in_use == 0);
    close(sv[0]);
    close(sv[1]);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    tn_end(&e);
}

/* An allocator that fails: nothing is read (the bytes stay in the socket), the reason is told. */
static void test_recv_failing_allocator(void) {
    tn_env e;
    buffet_failing f;
    buffet_net_source src;
    buffet_chain c;
    int sv[2];
    size_t got = 7;
    tn_begin(&e);
    memset(&f, 0, sizeof f);
    f.parent = e.a;
    f.fail_at = 1;
    f.fail_after = true;
    memset(&src, 0, sizeof src);
    src.allocator = buffet_failing_allocator(&f);
    tn_pair(sv, true);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    BT_CHECK(write(sv[1], "abc", 3) == 3);
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_ERR_NOMEM && got == 0 && buffet_chain_len(&c) == 0);
    f.fail_at = 0;
    f.fail_after = false;
    BT_CHECK(buffet_net_recv(sv[0], &c, &src, 0, &got) == BUFFET_OK && got == 3);
    close(sv[0]);
    close(sv[1]);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Taking requests off a chain */

static void test_take_and_take_until(void) {
    tn_env e;
    buffet_chain c, out;
    const char *parts[4] = {"GET / HT", "TP/1.1\r\nHost: x\r", "\n\r\nBODY", "more"};
    size_t i;
    char s[64];
    buffet_buf *b;
    tn_begin(&e);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK && buffet_chain_init(&out, e.a) == BUFFET_OK);
    BT_CHECK(buffet_net_take_until(&c, "\r\n\r\n", 4, 0, &out) == BUFFET_AGAIN);   /* empty */
    for (i = 0; i < 4; i++) {
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.size = strlen(parts[i]);
        d.allocator = e.a;
        BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
        memcpy(b->data, parts[i], d.size);
        BT_CHECK(buffet_chain_append(&c, b, 0, d.size) == BUFFET_OK);
        buffet_buf_unref(b);
        if (i == 1) BT_CHECK(buffet_net_take_until(&c, "\r\n\r\n", 4, 0, &out) == BUFFET_AGAIN && buffet_chain_len(&out) == 0);
    }
    /* a limit below the delimiter's end: too large, nothing moves */
    BT_CHECK(buffet_net_take_until(&c, "\r\n\r\n", 4, 20, &out) == BUFFET_ERR_TOO_LARGE && buffet_chain_len(&out) == 0);
    BT_CHECK(buffet_net_take_until(&c, "\r\n\r\n", 4, 64, &out) == BUFFET_OK);
    BT_CHECK(buffet_chain_len(&out) == 27 && buffet_chain_len(&c) == 8);
    memset(s, 0, sizeof s);
    BT_CHECK(buffet_chain_copy_out(&out, 0, s, 27) == BUFFET_OK && strcmp(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    /* nothing copied: out's last slice and c's first share one buffer */
    BT_CHECK(buffet_chain_at(&out, 2)->buf == buffet_chain_at(&c, 0)->buf);
    BT_CHECK(buffet_net_take(&c, 9, &out) == BUFFET_AGAIN && buffet_chain_len(&c) == 8);
    BT_CHECK(buffet_net_take(&c, 0, &out) == BUFFET_OK && buffet_chain_len(&out) == 27);
    BT_CHECK(buffet_net_take(&c, 6, &out) == BUFFET_OK && buffet_chain_len(&c) == 2 && buffet_chain_len(&out) == 33);
    memset(s, 0, sizeof s);
    BT_CHECK(buffet_chain_copy_out(&c, 0, s, 2) == BUFFET_OK && strcmp(s, "re") == 0);
    BT_CHECK(buffet_net_take(&c, 2, &out) == BUFFET_OK && buffet_chain_len(&c) == 0 && buffet_chain_len(&out) == 35);
    /* bad input */
    BT_CHECK(buffet_net_take(NULL, 1, &out) == BUFFET_ERR_INVALID && buffet_net_take(&out, 1, &out) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_take_until(&out, "", 0, 0, &c) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_take_until(&out, NULL, 1, 0, &c) == BUFFET_ERR_INVALID);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&out);
    tn_end(&e);
}

/* out cannot grow (its allocator fails): the take fails whole, both chains unchanged. */
static void test_take_all_or_nothing(void) {
    tn_env e;
    buffet_failing f;
    buffet_chain c, out;
    size_t n;
    tn_begin(&e);
    memset(&f, 0, sizeof f);
    f.parent = e.a;
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK && buffet_chain_init(&out, buffet_failing_allocator(&f)) == BUFFET_OK);
    BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 8, 0, 100) && tn_append(&e, &c, BUFFET_BUF_HEAP, 8, 100, 100));
    for (n = 1; n <= 4; n++) {
        buffet_result r;
        f.fail_at = f.allocs + n;
        r = buffet_net_take(&c, 150, &out);
        if (r == BUFFET_OK) break;
        BT_CHECK(r == BUFFET_ERR_NOMEM && buffet_chain_len(&c) == 200 && buffet_chain_len(&out) == 0 && tn_holds(&c, 8, 0));
    }
    BT_CHECK(buffet_chain_len(&c) == 50 && buffet_chain_len(&out) == 150 && tn_holds(&out, 8, 0) && tn_holds(&c, 8, 150));
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&out);
    tn_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   The fault layer */

/* Under short calls, EAGAIN and EINTR at random (seeded), a chain still arrives byte-exact both
   ways, and the same seed makes the same faults. */
static void test_faults_byte_exact(void) {
    tn_env e;
    buffet_net_faults f;
    buffet_net_source src;
    buffet_chain c, in;
    int sv[2];
    size_t total = bt_mode("valgrind") ? (size_t)256 << 10 : (size_t)4 << 20, i, sent, got, moved = 0;
    int run;
    tn_begin(&e);
    memset(&src, 0, sizeof src);
    src.allocator = e.a;
    src.buf_size = 3000;
    for (run = 0; run < 2; run++) {
        tn_pair(sv, true);
        BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK && buffet_chain_init(&in, e.a) == BUFFET_OK);
        for (i = 0; i < total; i += 50000) BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 9, i, total - i < 50000 ? total - i : 50000));
        memset(&f, 0, sizeof f);
        f.seed = 42 + (uint64_t)run;
        f.fd = -1;
        f.short_per_million = 500000;
        f.again_per_million = 200000;
        f.intr_per_million = 200000;
        buffet_net_faults_set(&f);
        moved = 0;
        while (buffet_chain_len(&in) < total) {
            buffet_result r = buffet_net_send_chain(sv[0], &c, 0, &sent);
            BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
            r = buffet_net_recv(sv[1], &in, &src, 7000, &got);
            BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
            if (r != BUFFET_OK && r != BUFFET_AGAIN) break;
            moved += got;
        }
        buffet_net_faults_set(NULL);
        BT_CHECK(moved == total && buffet_chain_len(&c) == 0 && tn_holds(&in, 9, 0));
        BT_CHECK(f.shorts > 0 && f.agains > 0 && f.intrs > 0);
        buffet_chain_deinit(&c);
        buffet_chain_deinit(&in);
        close(sv[0]);
        close(sv[1]);
    }
    tn_end(&e);
}

/* The same seed and the same calls make the same faults: a descriptor that takes everything
   (/dev/null) sees the same counts twice, and another seed other counts. */
static void test_faults_repeat(void) {
    tn_env e;
    buffet_net_faults f;
    uint64_t seen[3][4];
    uint64_t seeds[3] = {7, 7, 8};
    int k, i, fd = open("/dev/null", O_WRONLY);
    buffet_chain c;
    tn_begin(&e);
    BT_CHECK(fd >= 0 && buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (k = 0; k < 3; k++) {
        memset(&f, 0, sizeof f);
        f.seed = seeds[k];
        f.fd = fd;
        f.short_per_million = 300000;
        f.again_per_million = 100000;
        f.intr_per_million = 100000;
        buffet_net_faults_set(&f);
        for (i = 0; i < 500; i++) {
            size_t sent;
            BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 11, 0, 1000));
            while (buffet_net_send_chain(fd, &c, 0, &sent) == BUFFET_AGAIN) {}
            BT_CHECK(buffet_chain_len(&c) == 0);
        }
        buffet_net_faults_set(NULL);
        seen[k][0] = f.calls;
        seen[k][1] = f.shorts;
        seen[k][2] = f.agains;
        seen[k][3] = f.intrs;
    }
    BT_CHECK(memcmp(seen[0], seen[1], sizeof seen[0]) == 0 && memcmp(seen[0], seen[2], sizeof seen[0]) != 0);
    BT_CHECK(seen[0][1] > 0 && seen[0][2] > 0 && seen[0][3] > 0);
    close(fd);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* A chain larger than BUFFET_NET_SEND_MAX goes out in calls of at most that many bytes, all of
   it: counted by the fault layer (armed, making no faults), which sees every call. */
static void test_send_call_cap(void) {
    tn_env e;
    buffet_net_faults f;
    buffet_chain c;
    size_t sent = 0, total = 3 * (size_t)BUFFET_NET_SEND_MAX + 12345, at;
    int fd = open("/dev/null", O_WRONLY);
    tn_begin(&e);
    BT_CHECK(fd >= 0 && buffet_chain_init(&c, e.a) == BUFFET_OK);
    for (at = 0; at < total; at += 65536) BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 5, at, total - at < 65536 ? total - at : 65536));
    memset(&f, 0, sizeof f);
    f.fd = fd;
    buffet_net_faults_set(&f);
    BT_CHECK(buffet_net_send_chain(fd, &c, 0, &sent) == BUFFET_OK);
    buffet_net_faults_set(NULL);
    BT_CHECK(sent == total && buffet_chain_len(&c) == 0);
    BT_CHECK(f.calls == 4 && f.shorts == 0);
    close(fd);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Bad input */

static void test_bad_input(void) {
    tn_env e;
    buffet_chain c;
    int sv[2], ep, closed;
    size_t sent = 9, got = 9;
    tn_begin(&e);
    BT_CHECK(buffet_chain_init(&c, e.a) == BUFFET_OK);
    tn_pair(sv, true);
    /* NULL chain, negative fd */
    BT_CHECK(buffet_net_send_chain(sv[0], NULL, 0, &sent) == BUFFET_ERR_INVALID && sent == 0);
    BT_CHECK(buffet_net_send_chain(-1, &c, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_recv(sv[0], NULL, NULL, 0, &got) == BUFFET_ERR_INVALID && got == 0);
    BT_CHECK(buffet_net_recv(-1, &c, NULL, 0, NULL) == BUFFET_ERR_INVALID);
    /* an empty chain sends nothing */
    BT_CHECK(buffet_net_send_chain(sv[0], &c, 0, &sent) == BUFFET_OK && sent == 0);
    /* a closed descriptor */
    closed = dup(sv[0]);
    close(closed);
    BT_CHECK(tn_append(&e, &c, BUFFET_BUF_HEAP, 10, 0, 100));
    BT_CHECK(buffet_net_send_chain(closed, &c, 0, &sent) == BUFFET_ERR_INVALID && errno == EBADF && buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_recv(closed, &c, NULL, 0, &got) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == 100);
    /* a descriptor of the wrong type: an epoll instance can neither be written nor read */
    ep = epoll_create1(0);
    BT_CHECK(ep >= 0);
    BT_CHECK(buffet_net_send_chain(ep, &c, 0, &sent) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == 100);
    BT_CHECK(buffet_net_recv(ep, &c, NULL, 0, &got) == BUFFET_ERR_INVALID && buffet_chain_len(&c) == 100);
    close(ep);
    /* a listening socket is not connected */
    {
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        BT_CHECK(l >= 0);
        BT_CHECK(buffet_net_send_chain(l, &c, 0, &sent) != BUFFET_OK && buffet_chain_len(&c) == 100);
        BT_CHECK(buffet_net_recv(l, &c, NULL, 0, &got) != BUFFET_OK && buffet_chain_len(&c) == 100);
        close(l);
    }
    /* device memory (no host address) in the chain */
    {
        buffet_buf dev;
        buffet_chain d;
        memset(&dev, 0, sizeof dev);
        dev.size = 64;
        dev.refcount = 1;
        dev.fd = -1;
        BT_CHECK(buffet_chain_init(&d, e.a) == BUFFET_OK);
        BT_CHECK(buffet_chain_append(&d, &dev, 0, 64) == BUFFET_OK);
        BT_CHECK(buffet_net_send_chain(sv[0], &d, 0, &sent) == BUFFET_ERR_INVALID && sent == 0 && buffet_chain_len(&d) == 64);
        buffet_chain_deinit(&d);   /* back to the one reference of its own: never destroyed */
        BT_CHECK(dev.refcount == 1);
    }
    close(sv[0]);
    close(sv[1]);
    buffet_chain_deinit(&c);
    tn_end(&e);
}

int main(void) {
    BT_RUN(test_send_mixed_kinds);
    BT_RUN(test_send_again);
    BT_RUN(test_send_peer_gone);
    BT_RUN(test_send_pipe_and_file);
    BT_RUN(test_send_sendfile);
    BT_RUN(test_recv_tail_room);
    BT_RUN(test_recv_shared_tail_untouched);
    BT_RUN(test_recv_packets);
    BT_RUN(test_recv_failing_allocator);
    BT_RUN(test_take_and_take_until);
    BT_RUN(test_take_all_or_nothing);
    BT_RUN(test_faults_byte_exact);
    BT_RUN(test_faults_repeat);
    BT_RUN(test_send_call_cap);
    BT_RUN(test_bad_input);
    return bt_finish("test_net.c");
}
