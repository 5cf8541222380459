/* test_net_quic.c - buffet_net.h's QUIC connections (ngtcp2 + GnuTLS): both ends of the test
   protocol (tests/quic_util.h) over loopback, byte-exact and with every buffer released once;
   clean close, idle timeout, certificate mismatch, random datagrams, a peer that stops reading,
   unreliable datagrams, bad arguments. */
// pkg-config: libngtcp2 libngtcp2_crypto_gnutls gnutls
#define BUFFET_IMPLEMENTATION
#define BUFFET_NET_QUIC 1
#include "buffet_net.h"
#include "bt.h"
#include "quic_util.h"
#include "udp_relay.h"

typedef struct fx {
    buffet_debug *dbg;   /* every buffer of the test's and every received byte's: none may leak */
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    qu_src src;
    qu_cert cert;
    qu_ep cli, srv;
    buffet_net_addr ca, sa;
} fx;

static void fx_bytes(buffet_chain *c, const void *p, size_t n);

static size_t fx_in_use(fx *f) {
    buffet_pkt_stats s;
    size_t n = 0;
    unsigned i;
    buffet_pkt_cache_flush(f->cache);
    s = buffet_pkt_pool_get_stats(f->pool);
    for (i = 0; i <= s.nclasses; i++) n += s.cls[i].in_use;
    return n;
}

/* A pool, the pattern's buffers and a certificate; false (a skip) when openssl is missing. */
static bool fx_open(fx *f) {
    buffet_pkt_pool_desc pd;
    memset(f, 0, sizeof *f);
    memset(&pd, 0, sizeof pd);
    BT_CHECK(buffet_debug_create(&f->dbg, NULL) == BUFFET_OK);
    qu_alloc = buffet_debug_allocator(f->dbg);
    pd.class_sizes[0] = 2048;
    pd.class_sizes[1] = 16384;
    pd.user_size = (uint32_t)sizeof(buffet_net_meta);
    pd.initial = 512;
    pd.max = 1 << 15;
    BT_CHECK(buffet_pkt_pool_create(&f->pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&f->cache, f->pool, 0) == BUFFET_OK);
    BT_CHECK(qu_src_init(&f->src, f->cache));
    f->cli.fd = f->srv.fd = -1;
    return qu_cert_make(&f->cert, "localhost");
}

static void fx_close(fx *f) {
    buffet_net_quic_destroy(f->cli.q);
    buffet_net_quic_destroy(f->srv.q);
    if (f->cli.fd >= 0) close(f->cli.fd);
    if (f->srv.fd >= 0) close(f->srv.fd);
    BT_CHECK(qu_src_idle(&f->src));
    qu_src_free(&f->src);
    BT_CHECK(fx_in_use(f) == 0);
    buffet_pkt_cache_destroy(f->cache);
    buffet_pkt_pool_destroy(f->pool);
    qu_cert_remove(&f->cert);
    BT_CHECK(buffet_debug_report_leaks(f->dbg, stderr) == 0);
    BT_CHECK(buffet_debug_get_stats(f->dbg).double_frees == 0);
    buffet_debug_destroy(f->dbg);
    memset(&qu_alloc, 0, sizeof qu_alloc);
}

static void fx_desc(fx *f, buffet_net_quic_desc *d, bool server) {
    memset(d, 0, sizeof *d);
    d->fd = server ? f->srv.fd : f->cli.fd;
    d->flags = server ? BUFFET_NET_QUIC_SERVER : 0;
    d->cache = f->cache;
    d->rx.allocator = qu_alloc;
    d->alpn = QU_ALPN;
    d->cert_file = f->cert.cert;
    d->key_file = f->cert.key;
    d->ca_file = f->cert.cert;
    d->peer = f->sa;
}

/* Both ends made: the server first, then the client connecting to it. */
static bool fx_pair(fx *f, const char *ip, const buffet_net_quic_desc *sd, const buffet_net_quic_desc *cd) {
    buffet_net_quic_desc d;
    f->srv.fd = qu_udp(ip, 0, &f->sa);
    f->cli.fd = qu_udp(ip, 0, &f->ca);
    if (f->srv.fd < 0 || f->cli.fd < 0) return false;
    f->srv.server = true;
    f->srv.src = f->cli.src = &f->src;
    f->cli.max_open = 32;
    f->cli.small_size = 3000;
    if (sd) d = *sd;
    else fx_desc(f, &d, true);
    d.fd = f->srv.fd;
    if (buffet_net_quic_create(&f->srv.q, &d) != BUFFET_OK) return false;
    if (cd) d = *cd;
    else fx_desc(f, &d, false);
    d.fd = f->cli.fd;
    d.peer = f->sa;
    if (!cd && strchr(ip, ':')) d.server_name = ip;   /* an address, verified against the IP entry */
    return buffet_net_quic_create(&f->cli.q, &d) == BUFFET_OK;
}

static bool fx_client_done(void *u) {
    fx *f = (fx *)u;
    return (qu_client_done(&f->cli) && f->srv.open == 0) || f->cli.closed || f->srv.closed;
}
static bool fx_both_closed(void *u) {
    fx *f = (fx *)u;
    return f->cli.closed && f->srv.closed;
}

/* Close from the client with code 0 and run until both ends know. */
static void fx_finish(fx *f) {
    qu_ep *eps[2] = {&f->cli, &f->srv};
    if (!f->cli.closed) BT_CHECK(buffet_net_quic_close(f->cli.q, 0) == BUFFET_OK);
    qu_events(&f->cli);
    BT_CHECK(qu_run(eps, 2, 10000, fx_both_closed, f));
    BT_CHECK(f->cli.close_result == BUFFET_OK && f->cli.close_reason == BUFFET_NET_QUIC_CLOSE_LOCAL);
    BT_CHECK(f->srv.close_result == BUFFET_OK && f->srv.close_reason == BUFFET_NET_QUIC_CLOSE_PEER);
}

static void exchange(const char *ip, uint64_t big, unsigned small) {
    fx f;
    qu_ep *eps[2];
    buffet_net_quic_stats cs, ss;
    if (!fx_open(&f)) {
        fx_close(&f);
        BT_SKIP("openssl", "openssl could not make a certificate");
    }
    if (!fx_pair(&f, ip, NULL, NULL)) {
        fx_close(&f);
        BT_SKIP(strchr(ip, ':') ? "ipv6" : "ipv4", "no UDP socket on this address");
    }
    eps[0] = &f.cli;
    eps[1] = &f.srv;
    f.cli.put_n = big;
    f.cli.get_n = big;
    f.cli.small = small;
    BT_CHECK(qu_run(eps, 2, 120000, fx_client_done, &f));
    if (f.cli.closed || f.srv.closed)
        printf("  closed early: client reason %u error 0x%llx, server reason %u error 0x%llx\n", f.cli.close_reason,
               (unsigned long long)f.cli.close_error, f.srv.close_reason, (unsigned long long)f.srv.close_error);
    BT_CHECK(f.cli.failed == 0 && f.srv.failed == 0);
    BT_CHECK(f.cli.done == (big ? 2u : 0u) + small);
    BT_CHECK(f.srv.done == f.cli.done);
    cs = buffet_net_quic_get_stats(f.cli.q);
    ss = buffet_net_quic_get_stats(f.srv.q);
    printf("  %s: %u exchanges; client sent %llu datagrams in %llu calls, server %llu in %llu; acked %llu of %llu "
           "stream bytes\n",
           ip, f.cli.done, (unsigned long long)cs.tx_datagrams, (unsigned long long)cs.tx_calls,
           (unsigned long long)ss.tx_datagrams, (unsigned long long)ss.tx_calls, (unsigned long long)cs.stream_bytes_acked,
           (unsigned long long)cs.stream_bytes_sent);
    BT_CHECK(cs.stream_bytes_acked == cs.stream_bytes_sent);
    BT_CHECK(ss.stream_bytes_acked == ss.stream_bytes_sent);
    fx_finish(&f);
    fx_close(&f);
}

static void test_loopback_v4(void) { exchange("127.0.0.1", (uint64_t)8 << 20, 300); }
static void test_loopback_v6(void) { exchange("::1", (uint64_t)1 << 20, 20); }

/* Run until the client is connected (or something closed). */
static bool fx_connected(void *u) {
    fx *f = (fx *)u;
    return (f->cli.connected && f->srv.connected) || f->cli.closed || f->srv.closed;
}

#define FX_OPEN(f)                                                                 \
    do {                                                                           \
        if (!fx_open(&f)) {                                                        \
            fx_close(&f);                                                          \
            BT_SKIP("openssl", "openssl could not make a certificate");            \
        }                                                                          \
    } while (0)

/* Nothing heard for the idle timeout: both ends report IDLE, a failure (not a clean close). */
static void test_idle_timeout(void) {
    fx f;
    buffet_net_quic_desc sd, cd;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    FX_OPEN(f);
    fx_desc(&f, &sd, true);
    fx_desc(&f, &cd, false);
    sd.idle_timeout_ms = cd.idle_timeout_ms = 300;
    BT_CHECK(fx_pair(&f, "127.0.0.1", &sd, &cd));
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    BT_CHECK(qu_run(eps, 2, 10000, fx_both_closed, &f));
    BT_CHECK(f.cli.close_reason == BUFFET_NET_QUIC_CLOSE_IDLE && f.cli.close_result == BUFFET_ERR_CLOSED);
    BT_CHECK(f.srv.close_reason == BUFFET_NET_QUIC_CLOSE_IDLE && f.srv.close_result == BUFFET_ERR_CLOSED);
    BT_CHECK(buffet_net_quic_timeout_ms(f.cli.q) == -1);
    BT_CHECK(buffet_net_quic_on_timer(f.cli.q) == BUFFET_ERR_CLOSED);
    BT_CHECK(buffet_net_quic_close(f.cli.q, 0) == BUFFET_ERR_STATE);
    fx_close(&f);
}

/* A client that trusts another certificate, or names another server: the handshake fails on
   both ends with the TLS alert as the error, and nothing leaks. */
static void mismatch(bool other_ca) {
    fx f;
    qu_cert other;
    buffet_net_quic_desc cd;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    FX_OPEN(f);
    BT_CHECK(qu_cert_make(&other, "localhost"));
    fx_desc(&f, &cd, false);
    if (other_ca) cd.ca_file = other.cert;
    else cd.server_name = "elsewhere.example";
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, &cd));
    f.cli.put_n = 1 << 20;
    BT_CHECK(qu_run(eps, 2, 10000, fx_both_closed, &f));
    BT_CHECK(!f.cli.connected);
    BT_CHECK(f.cli.close_reason == BUFFET_NET_QUIC_CLOSE_HANDSHAKE && f.cli.close_result == BUFFET_ERR_CLOSED);
    BT_CHECK(f.cli.close_error > 0x100 && f.cli.close_error < 0x200);   /* 0x100 + the TLS alert */
    BT_CHECK(f.srv.close_reason == BUFFET_NET_QUIC_CLOSE_PEER && f.srv.close_error == f.cli.close_error);
    printf("  %s: closed with 0x%llx on both ends\n", other_ca ? "another CA" : "another name",
           (unsigned long long)f.cli.close_error);
    qu_cert_remove(&other);
    fx_close(&f);
}
static void test_certificate_other_ca(void) { mismatch(true); }
static void test_certificate_other_name(void) { mismatch(false); }

/* Random datagrams at the server: from a stranger before and during a connection, and from the
   client's own address in the middle of a transfer. Dropped and counted; the transfer is whole. */
static void test_random_datagrams(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_net_addr xa;
    unsigned char junk[1400];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int stranger, i;
    size_t k;
    FX_OPEN(f);
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    stranger = qu_udp("127.0.0.1", 0, &xa);
    BT_CHECK(stranger >= 0);
    for (i = 0; i < 300; i++) {
        size_t n = 1 + (size_t)(x % sizeof junk);
        for (k = 0; k < n; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[k] = (unsigned char)x;
        }
        if (i % 3 == 0) junk[0] |= 0xc0;   /* a long header: an Initial to parse */
        (void)sendto(i % 2 ? stranger : f.cli.fd, junk, n, 0, &f.sa.sa, sizeof f.sa.in4);
        if (i == 100) {   /* now the connection, and more junk during it */
            f.cli.put_n = f.cli.get_n = 1 << 20;
            f.cli.small = 20;
            BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
        }
        if (i > 100 && i % 20 == 0) {
            uint64_t until = qu_ms() + 20;
            while (qu_ms() < until && !fx_client_done(&f)) {
                struct pollfd pf[2] = {{f.cli.fd, POLLIN, 0}, {f.srv.fd, POLLIN, 0}};
                (void)poll(pf, 2, 2);
                buffet_net_quic_on_readable(f.cli.q);
                buffet_net_quic_on_timer(f.cli.q);
                qu_events(&f.cli);
                buffet_net_quic_on_readable(f.srv.q);
                buffet_net_quic_on_timer(f.srv.q);
                qu_events(&f.srv);
            }
        }
    }
    BT_CHECK(qu_run(eps, 2, 60000, fx_client_done, &f));
    BT_CHECK(!f.cli.closed && !f.srv.closed && f.cli.failed == 0 && f.srv.failed == 0 && f.cli.done == 22);
    BT_CHECK(buffet_net_quic_on_readable(f.srv.q) == BUFFET_OK);   /* the last of the junk */
    printf("  server dropped %llu datagrams\n", (unsigned long long)buffet_net_quic_get_stats(f.srv.q).rx_dropped);
    BT_CHECK(buffet_net_quic_get_stats(f.srv.q).rx_dropped >= 150);
    close(stranger);
    fx_finish(&f);
    fx_close(&f);
}

/* A server that never reads: the client's send stops at the windows (BUFFET_AGAIN, the rest kept
   in its chain), nothing is lost or leaked when the client gives up and closes. */
static bool fx_never(void *u) {
    (void)u;
    return false;
}
static void test_peer_stops_reading(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_net_quic_stats cs;
    qu_xfer *x;
    FX_OPEN(f);
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    f.srv.stop_reading = true;
    f.cli.put_n = 64 << 20;
    (void)qu_run(eps, 2, 1500, fx_never, &f);
    cs = buffet_net_quic_get_stats(f.cli.q);
    x = f.cli.x;
    BT_CHECK(x && !x->fin_queued && buffet_chain_len(&x->out) > 0);
    BT_CHECK(cs.stream_bytes_sent <= ((uint64_t)1 << 20) + 64);   /* the stream window, and the head */
    printf("  sent %llu of 64 MiB before the window closed\n", (unsigned long long)cs.stream_bytes_sent);
    fx_finish(&f);
    while (f.cli.x) qu_xfer_end(&f.cli, f.cli.x, true);
    while (f.srv.x) qu_xfer_end(&f.srv, f.srv.x, true);
    fx_close(&f);

    /* ...and one that never reads the many streams a client opens: the streams it holds stay
       within its limit (100), however many the client would open */
    FX_OPEN(f);
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    f.srv.stop_reading = true;
    f.cli.small = 500;
    f.cli.max_open = 1000;
    (void)qu_run(eps, 2, 1500, fx_never, &f);
    printf("  the client could open %u of 500 streams; the server holds %u\n", f.cli.small_started,
           buffet_net_quic_get_stats(f.srv.q).streams);
    BT_CHECK(f.cli.small_started == 100 && buffet_net_quic_get_stats(f.srv.q).streams == 100);
    fx_finish(&f);
    while (f.cli.x) qu_xfer_end(&f.cli, f.cli.x, true);
    while (f.srv.x) qu_xfer_end(&f.srv, f.srv.x, true);
    fx_close(&f);
}

/* A client that aborts a stream in the middle of a PUT: the server's read ends with
   BUFFET_ERR_CLOSED, the stream closes with the client's code, what either side held is released,
   and the connection goes on (the next exchange is whole). */
static void test_stream_reset(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_chain c;
    int64_t id;
    FX_OPEN(f);
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    buffet_chain_init(&c, qu_alloc);
    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_OK);
    fx_bytes(&c, "PUT 4000000\n", 12);
    BT_CHECK(qu_src_add(&f.src, &c, 0, 600000));
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, 0, NULL) == BUFFET_OK);
    (void)qu_run(eps, 2, 300, fx_never, &f);
    BT_CHECK(f.srv.open == 1 && f.srv.x && f.srv.x->got > 0);
    BT_CHECK(buffet_net_quic_reset(f.cli.q, id, 7) == BUFFET_OK);
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, 0, NULL) == BUFFET_ERR_INVALID);
    (void)qu_run(eps, 2, 500, fx_never, &f);
    BT_CHECK(f.srv.failed == 1 && f.srv.open == 0);   /* its STREAM_CLOSED came with code 7 */
    f.srv.failed = 0;
    f.cli.small = 3;
    BT_CHECK(qu_run(eps, 2, 10000, fx_client_done, &f));
    BT_CHECK(f.cli.done == 3 && f.cli.failed == 0 && f.srv.failed == 0);
    buffet_chain_deinit(&c);
    fx_finish(&f);
    fx_close(&f);
}

/* RFC 9221 datagrams both ways, from and into packets; too large ones and a peer that takes
   none are refused without losing the packet. */
static void test_datagrams(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_net_quic_desc sd, cd;
    buffet_net_quic_event ev[64];
    unsigned sent = 0, got = 0, i;
    size_t n, j;
    buffet_pkt *p;
    uint64_t until;
    FX_OPEN(f);
    fx_desc(&f, &sd, true);
    fx_desc(&f, &cd, false);
    sd.max_datagram = cd.max_datagram = 1200;
    BT_CHECK(fx_pair(&f, "127.0.0.1", &sd, &cd));
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    for (i = 0; i < 50; i++) {
        p = buffet_pkt_alloc(f.cache, 1000);
        memset(buffet_pkt_append(p, 100 + i * 10), (int)i, 100 + i * 10);
        if (buffet_net_quic_send_datagram(f.cli.q, &p) == BUFFET_OK) {
            BT_CHECK(p == NULL);
            sent++;
        } else {
            buffet_pkt_free(f.cache, p);
        }
    }
    p = buffet_pkt_alloc(f.cache, 1400);
    buffet_pkt_append(p, 1300);
    BT_CHECK(buffet_net_quic_send_datagram(f.cli.q, &p) == BUFFET_ERR_TOO_LARGE && p != NULL);
    buffet_pkt_free(f.cache, p);
    until = qu_ms() + 2000;
    while (qu_ms() < until && got < sent) {
        struct pollfd pf = {f.srv.fd, POLLIN, 0};
        (void)poll(&pf, 1, 10);
        buffet_net_quic_on_readable(f.srv.q);
        buffet_net_quic_on_timer(f.cli.q);
        while ((n = buffet_net_quic_events(f.srv.q, ev, 64)) > 0)
            for (j = 0; j < n; j++)
                if (ev[j].type == BUFFET_NET_QUIC_EV_DATAGRAM) {
                    unsigned char *d = (unsigned char *)buffet_pkt_data(ev[j].pkt);
                    size_t len = ev[j].pkt->pkt_len, k = (len - 100) / 10;
                    bool same = len >= 100 && (len - 100) % 10 == 0;
                    for (i = 0; same && i < len; i++) same = d[i] == (unsigned char)k;
                    BT_CHECK(same);
                    got++;
                    buffet_pkt_free(f.cache, ev[j].pkt);
                }
    }
    printf("  %u of %u datagrams arrived whole\n", got, sent);
    BT_CHECK(sent > 0 && got > 0 && got <= sent);
    fx_finish(&f);
    fx_close(&f);

    /* a peer that takes no datagrams */
    FX_OPEN(f);
    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    p = buffet_pkt_alloc(f.cache, 100);
    buffet_pkt_append(p, 10);
    BT_CHECK(buffet_net_quic_send_datagram(f.cli.q, &p) == BUFFET_ERR_UNSUPPORTED && p != NULL);
    buffet_pkt_free(f.cache, p);
    fx_finish(&f);
    fx_close(&f);
}

/* A restarted server with the same reset key answers the old client's packets with a stateless
   reset: the client ends at once (RESET), not after its idle timeout. */
static bool fx_cli_closed(void *u) { return ((fx *)u)->cli.closed; }
static void test_stateless_reset(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_net_quic_desc sd;
    int64_t id;
    buffet_chain c;
    buffet_allocator heap;
    FX_OPEN(f);
    fx_desc(&f, &sd, true);
    memset(sd.reset_key, 7, sizeof sd.reset_key);
    BT_CHECK(fx_pair(&f, "127.0.0.1", &sd, NULL));
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    BT_CHECK(qu_run(eps, 2, 300, fx_never, &f) == false);   /* let the handshake settle */
    buffet_net_quic_destroy(f.srv.q);   /* the server "crashes" and restarts on its port */
    close(f.srv.fd);
    memset(&f.srv, 0, sizeof f.srv);
    f.srv.server = true;
    f.srv.fd = -1;
    sd.fd = qu_udp("127.0.0.1", ntohs(f.sa.in4.sin_port), &f.sa);
    BT_CHECK(sd.fd >= 0);
    f.srv.fd = sd.fd;
    f.srv.src = &f.src;
    BT_CHECK(buffet_net_quic_create(&f.srv.q, &sd) == BUFFET_OK);
    memset(&heap, 0, sizeof heap);
    buffet_chain_init(&c, heap);
    BT_CHECK(qu_src_add(&f.src, &c, 0, 4000));
    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_OK);
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, BUFFET_NET_QUIC_FIN, NULL) == BUFFET_OK);
    buffet_chain_deinit(&c);
    BT_CHECK(qu_run(eps, 2, 5000, fx_cli_closed, &f));
    BT_CHECK(f.cli.close_reason == BUFFET_NET_QUIC_CLOSE_RESET && f.cli.close_result == BUFFET_ERR_CLOSED);
    fx_close(&f);
}

/* The transfer sizes: 64 MiB each way in make test's gcc C11 build (and under ASan, 16 MiB of it
   through the lossy relay); 4 MiB in the other three builds of make test (the same code,
   compiled otherwise) and where the build is 10-50 times slower (TSan, valgrind). */
static uint64_t big_size(bool lossy) {
#if defined(__clang__) || defined(__cplusplus)
    (void)lossy;
    return (uint64_t)4 << 20;
#else
    if (bt_mode("valgrind") || bt_mode("tsan")) return (uint64_t)4 << 20;
    return bt_mode("asan") && lossy ? (uint64_t)16 << 20 : (uint64_t)64 << 20;
#endif
}

/* A lossy relay in front of the server at f->sa (2% loss, 2% duplicates, 5% reordering, delays up
   to 2 ms that keep order), seeded; *at gets its address. */
static ur_relay *fx_relay(fx *f, const char *seed, buffet_net_addr *at) {
    ur_config rc;
    struct sockaddr_storage ls;
    socklen_t ll = sizeof ls;
    ur_relay *r;
    memset(&rc, 0, sizeof rc);
    memset(&ls, 0, sizeof ls);
    rc.seed = strtoull(seed, NULL, 0);
    rc.loss = 0.02;
    rc.dup = 0.02;
    rc.reorder = 0.05;
    rc.delay_ms = 2;
    rc.keep_order = 1;
    r = ur_start(&f->sa.sa, sizeof f->sa.in4, &rc, &ls, &ll);
    BT_CHECK(r != NULL);
    memset(at, 0, sizeof *at);
    memcpy(at, &ls, sizeof at->in4);
    printf("  through the relay: seed %s, loss 2%%, duplicates 2%%, reordering 5%%, delay up to 2 ms in order\n", seed);
    return r;
}

/* Our client against aioquic's server: PUT and GET of 64 MiB and 300 small exchanges, each end
   checking the SHA-256 of what it received; the server's exit status says its checks held. */
static void interop_client(const char *relay_seed) {
    fx f;
    qu_ep *eps[1];
    buffet_net_quic_desc d;
    char out[8192] = "", port[16], *at;
    /* Through the lossy relay our one CONNECTION_CLOSE may be dropped: the server then accepts an
       idle timeout (10 s there) once every exchange has passed its checks. */
    const char *args[] = {"server", "--host", "127.0.0.1", "--port", "0", "--cert", NULL, "--key", NULL,
                          NULL, NULL, NULL, NULL};
    pid_t pid;
    int pfd, st;
    uint64_t until;
    ur_relay *relay = NULL;
    if (!qu_have_aioquic()) BT_SKIP("aioquic", "python3 cannot import aioquic (make deps)");
    FX_OPEN(f);
    args[6] = f.cert.cert;
    args[8] = f.cert.key;
    if (relay_seed) {
        args[9] = "--lossy";
        args[10] = "--idle";
        args[11] = "10";
    }
    pid = qu_spawn(args, &pfd);
    BT_CHECK(pid > 0);
    until = qu_ms() + 20000;
    while (!(at = strstr(out, "listening ")) || !strchr(at, '\n')) {
        struct pollfd pf = {pfd, POLLIN, 0};
        if (!qu_drain(pfd, out, sizeof out) || qu_ms() > until) break;
        (void)poll(&pf, 1, 100);
    }
    BT_CHECK(at != NULL);
    if (!at) {
        qu_reap(pid, pfd, out, sizeof out, 1000);
        fx_close(&f);
        return;
    }
    snprintf(port, sizeof port, "%d", atoi(at + 10));
    f.cli.fd = qu_udp("127.0.0.1", 0, &f.ca);
    f.srv.fd = -1;
    memset(&f.sa, 0, sizeof f.sa);
    f.sa.in4.sin_family = AF_INET;
    f.sa.in4.sin_port = htons((uint16_t)atoi(port));
    f.sa.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fx_desc(&f, &d, false);
    d.flags |= BUFFET_NET_QUIC_COUNT_LOSS;
    if (relay_seed) {
        buffet_net_addr ra;
        relay = fx_relay(&f, relay_seed, &ra);
        d.peer = ra;
    }
    d.fd = f.cli.fd;
    f.cli.src = &f.src;
    f.cli.max_open = 32;
    f.cli.small_size = 3000;
    f.cli.put_n = f.cli.get_n = big_size(relay_seed != NULL);
    f.cli.small = 300;
    BT_CHECK(buffet_net_quic_create(&f.cli.q, &d) == BUFFET_OK);
    eps[0] = &f.cli;
    BT_CHECK(qu_run(eps, 1, 300000, fx_client_done, &f));
    BT_CHECK(!f.cli.closed && f.cli.failed == 0 && f.cli.done == 302);
    if (!f.cli.closed) BT_CHECK(buffet_net_quic_close(f.cli.q, 0) == BUFFET_OK);
    qu_events(&f.cli);
    {
        buffet_net_quic_stats cs = buffet_net_quic_get_stats(f.cli.q);
        printf("  client: %u exchanges ok; %llu datagrams out, %llu in; %llu packets declared lost\n", f.cli.done,
               (unsigned long long)cs.tx_datagrams, (unsigned long long)cs.rx_datagrams, (unsigned long long)cs.lost);
    }
    st = qu_reap(pid, pfd, out, sizeof out, 60000);
    BT_CHECK(st == 0);   /* aioquic's server found every stream whole */
    if (relay) {
        ur_stats rs = ur_stop(relay);
        printf("  relay: %llu datagrams in, %llu dropped, %llu duplicated, %llu reordered\n", (unsigned long long)rs.in,
               (unsigned long long)rs.dropped, (unsigned long long)rs.duplicated, (unsigned long long)rs.reordered);
        BT_CHECK(rs.dropped > 0 && rs.duplicated > 0);
    }
    fx_close(&f);
}
static void test_aioquic_server(void) { interop_client(NULL); }
static void test_aioquic_server_lossy(void) { interop_client("0x5eed"); }

/* aioquic's client against our server: the same exchanges; the client's exit status says its
   checks held, our server checks what it received. */
static void interop_server(const char *relay_seed) {
    fx f;
    buffet_net_quic_desc d;
    char out[16384] = "", port[16], big[24];
    const char *args[] = {"client", "--host", "127.0.0.1", "--port", NULL, "--ca", NULL, "--put", NULL, "--get", NULL,
                          "--small", "300", NULL};
    pid_t pid;
    int pfd, st;
    ur_relay *relay = NULL;
    if (!qu_have_aioquic()) BT_SKIP("aioquic", "python3 cannot import aioquic (make deps)");
    FX_OPEN(f);
    f.srv.fd = qu_udp("127.0.0.1", 0, &f.sa);
    f.srv.server = true;
    f.srv.src = &f.src;
    fx_desc(&f, &d, true);
    d.fd = f.srv.fd;
    d.flags |= BUFFET_NET_QUIC_COUNT_LOSS;
    d.max_streams = 1000;
    if (relay_seed) d.idle_timeout_ms = 10000;   /* the end when the lossy path loses the client's close (below) */
    BT_CHECK(buffet_net_quic_create(&f.srv.q, &d) == BUFFET_OK);
    snprintf(port, sizeof port, "%d", ntohs(f.sa.in4.sin_port));
    if (relay_seed) {
        buffet_net_addr ra;
        relay = fx_relay(&f, relay_seed, &ra);
        snprintf(port, sizeof port, "%d", ntohs(ra.in4.sin_port));
    }
    snprintf(big, sizeof big, "%llu", (unsigned long long)big_size(relay_seed != NULL));
    args[4] = port;
    args[6] = f.cert.cert;
    args[8] = big;
    args[10] = big;
    pid = qu_spawn(args, &pfd);
    BT_CHECK(pid > 0);
    {   /* our server runs until aioquic's client has closed the connection. The client exits
           right after sending its close, which the relay may still hold back (delay) or drop
           (QUIC sends a CONNECTION_CLOSE once): after the exit the server goes on until the close
           arrives, or, on the lossy path, until its idle timeout ends the connection */
        uint64_t end = qu_ms() + 300000, gone = 0;
        while (!f.srv.closed && qu_ms() < end && !(gone && qu_ms() > gone + (relay ? 3 * (uint64_t)d.idle_timeout_ms : 2000))) {
            struct pollfd pf[2] = {{f.srv.fd, POLLIN, 0}, {pid > 0 ? pfd : -1, POLLIN, 0}};
            int t = buffet_net_quic_timeout_ms(f.srv.q);
            (void)poll(pf, 2, t < 0 || t > 100 ? 100 : t);
            if (pf[0].revents & POLLIN) buffet_net_quic_on_readable(f.srv.q);
            buffet_net_quic_on_timer(f.srv.q);
            qu_events(&f.srv);
            if (pid > 0 && !qu_drain(pfd, out, sizeof out) && waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                gone = qu_ms();
            }
        }
    }
    st = pid > 0 ? qu_reap(pid, pfd, out, sizeof out, 60000) : (close(pfd), WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    BT_CHECK(st == 0);
    printf("  server: %u exchanges ok, %u failed; closed %s (reason %u, error 0x%llx); %llu packets declared lost\n",
           f.srv.done, f.srv.failed, f.srv.closed ? "yes" : "no", f.srv.close_reason, (unsigned long long)f.srv.close_error,
           (unsigned long long)buffet_net_quic_get_stats(f.srv.q).lost);
    {   /* aioquic closes once it has our last answer, perhaps before its acknowledgement came:
           an exchange whose answer was all sent counts as done */
        qu_xfer *x;
        for (x = f.srv.x; x; x = x->next)
            if (x->ended && x->ok && x->fin_queued) f.srv.done++;
    }
    BT_CHECK(f.srv.failed == 0 && f.srv.done == 302);
    BT_CHECK(f.srv.closed && ((f.srv.close_result == BUFFET_OK && f.srv.close_reason == BUFFET_NET_QUIC_CLOSE_PEER) ||
                              (relay && f.srv.close_reason == BUFFET_NET_QUIC_CLOSE_IDLE)));
    if (relay) {
        ur_stats rs = ur_stop(relay);
        printf("  relay: %llu datagrams in, %llu dropped, %llu duplicated, %llu reordered\n", (unsigned long long)rs.in,
               (unsigned long long)rs.dropped, (unsigned long long)rs.duplicated, (unsigned long long)rs.reordered);
    }
    while (f.srv.x) qu_xfer_end(&f.srv, f.srv.x, f.srv.x->ended && f.srv.x->ok);   /* counted above */
    fx_close(&f);
}
static void test_aioquic_client(void) { interop_server(NULL); }
static void test_aioquic_client_lossy(void) { interop_server("0xfeed"); }

/* >>Debian's ngtcp2 examples (gtlsserver, gtlsclient): they speak HTTP/3, so these tests speak
   just enough of it by hand (a request or response of one HEADERS frame of static-table QPACK
   lines, then DATA frames), on the streams of our connections. */
static size_t h3_varint(unsigned char *p, uint64_t v) {
    if (v < 64) { p[0] = (unsigned char)v; return 1; }
    if (v < 16384) { p[0] = (unsigned char)(0x40 | (v >> 8)); p[1] = (unsigned char)v; return 2; }
    p[0] = (unsigned char)(0x80 | (v >> 24)); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}
static bool h3_get_varint(const unsigned char *p, size_t len, size_t *at, uint64_t *v) {
    size_t n, i;
    if (*at >= len) return false;
    n = (size_t)1 << (p[*at] >> 6);
    if (*at + n > len) return false;
    *v = p[*at] & 0x3f;
    for (i = 1; i < n; i++) *v = (*v << 8) | p[*at + i];
    *at += n;
    return true;
}
/* The payload of the DATA frames in an HTTP/3 message (headers skipped); false if malformed. */
static bool h3_body(const unsigned char *p, size_t len, unsigned char *body, size_t cap, size_t *blen) {
    size_t at = 0;
    *blen = 0;
    while (at < len) {
        uint64_t type, flen;
        if (!h3_get_varint(p, len, &at, &type) || !h3_get_varint(p, len, &at, &flen) || at + flen > len) return false;
        if (type == 0) {
            if (*blen + flen > cap) return false;
            memcpy(body + *blen, p + at, (size_t)flen);
            *blen += (size_t)flen;
        }
        at += (size_t)flen;
    }
    return true;
}
static bool fx_have(const char *prog) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}
/* A chain holding a copy of p[0..n) (a line, a frame: test data, not payload). */
static void fx_bytes(buffet_chain *c, const void *p, size_t n) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    memset(&d, 0, sizeof d);
    d.size = n;
    d.allocator = qu_alloc;
    if (buffet_buf_create(&b, &d) != BUFFET_OK) return;
    memcpy(b->data, p, n);
    BT_CHECK(buffet_chain_append(c, b, 0, n) == BUFFET_OK);
    buffet_buf_unref(b);
}

#define H3_BODY 200000

/* Our client against Debian's gtlsserver: GET a file of its htdocs over HTTP/3; the body is the
   file's bytes. */
static void test_ngtcp2_server(void) {
    fx f;
    buffet_net_quic_desc d;
    buffet_net_quic_event ev[32];
    char dir[96], path[128], port[16], out[4096] = "";
    const char *argv[] = {"gtlsserver", "-q", "-d", dir, "127.0.0.1", port, NULL, NULL, NULL};
    static unsigned char file[H3_BODY], got[H3_BODY + 4096], body[H3_BODY];
    unsigned char req[256];
    size_t n = 0, i, glen = 0, blen = 0;
    buffet_chain c;
    buffet_net_addr tmp;
    int64_t id = -1;
    bool ended = false;
    pid_t pid;
    int pfd, probe;
    uint64_t end;
    FILE *fp;
    if (!fx_have("gtlsserver")) BT_SKIP("ngtcp2_examples", "gtlsserver not installed (make deps: ngtcp2-server)");
    FX_OPEN(f);
    snprintf(dir, sizeof dir, "%s/htdocs", f.cert.dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/index.html", dir);
    for (i = 0; i < H3_BODY; i++) file[i] = qu_byte(i);
    fp = fopen(path, "wb");
    BT_CHECK(fp && fwrite(file, 1, H3_BODY, fp) == H3_BODY);
    if (fp) fclose(fp);
    probe = qu_udp("127.0.0.1", 0, &tmp);   /* a free port for it */
    snprintf(port, sizeof port, "%d", ntohs(tmp.in4.sin_port));
    close(probe);
    argv[6] = f.cert.key;
    argv[7] = f.cert.cert;
    pid = qu_spawnv(argv, &pfd);
    BT_CHECK(pid > 0);
    usleep(300000);
    f.cli.fd = qu_udp("127.0.0.1", 0, &f.ca);
    f.sa = tmp;
    fx_desc(&f, &d, false);
    d.fd = f.cli.fd;
    d.alpn = "h3";
    BT_CHECK(buffet_net_quic_create(&f.cli.q, &d) == BUFFET_OK);
    buffet_chain_init(&c, qu_alloc);
    end = qu_ms() + 20000;
    while (!ended && !f.cli.closed && qu_ms() < end) {
        struct pollfd pf = {f.cli.fd, POLLIN, 0};
        int t = buffet_net_quic_timeout_ms(f.cli.q);
        size_t k;
        (void)poll(&pf, 1, t < 0 || t > 50 ? 50 : t);
        if (pf.revents & POLLIN) buffet_net_quic_on_readable(f.cli.q);
        buffet_net_quic_on_timer(f.cli.q);
        qu_drain(pfd, out, sizeof out);
        while ((k = buffet_net_quic_events(f.cli.q, ev, 32)) > 0)
            for (i = 0; i < k; i++) {
                if (ev[i].type == BUFFET_NET_QUIC_EV_CONNECTED) {
                    /* GET /index.html: QPACK prefix 0 0; :method GET, :scheme https (static 17,
                       23); :authority localhost, :path /index.html (names 0 and 1, values literal) */
                    static const unsigned char hdr[] = {0, 0, 0xd1, 0xd7, 0x50, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
                                                        0x51, 11, '/', 'i', 'n', 'd', 'e', 'x', '.', 'h', 't', 'm', 'l'};
                    n = 0;
                    req[n++] = 0x01;
                    n += h3_varint(req + n, sizeof hdr);
                    memcpy(req + n, hdr, sizeof hdr);
                    n += sizeof hdr;
                    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_OK);
                    fx_bytes(&c, req, n);
                    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, BUFFET_NET_QUIC_FIN, NULL) == BUFFET_OK);
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_READABLE) {
                    buffet_result r;
                    while ((r = buffet_net_quic_recv(f.cli.q, ev[i].stream, &c, 0, NULL)) == BUFFET_OK) {
                        if (ev[i].stream == id && glen + buffet_chain_len(&c) <= sizeof got) {
                            buffet_chain_copy_out(&c, 0, got + glen, buffet_chain_len(&c));
                            glen += buffet_chain_len(&c);
                        }
                        buffet_chain_consume(&c, buffet_chain_len(&c));
                    }
                    if (r == BUFFET_ERR_CLOSED && ev[i].stream == id) ended = true;
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_CLOSED) {
                    f.cli.closed = true;
                    printf("  closed: reason %u error 0x%llx\n", ev[i].reason, (unsigned long long)ev[i].error);
                }
            }
    }
    BT_CHECK(ended);
    BT_CHECK(h3_body(got, glen, body, sizeof body, &blen));
    BT_CHECK(blen == H3_BODY && memcmp(body, file, H3_BODY) == 0);
    printf("  gtlsserver answered GET /index.html with %zu bytes on stream %lld: %s\n", blen, (long long)id,
           blen == H3_BODY && memcmp(body, file, H3_BODY) == 0 ? "the file, byte for byte" : "NOT the file");
    if (!f.cli.closed) BT_CHECK(buffet_net_quic_close(f.cli.q, 0x100) == BUFFET_OK);   /* H3_NO_ERROR */
    buffet_chain_deinit(&c);
    kill(pid, SIGTERM);
    qu_reap(pid, pfd, out, sizeof out, 5000);
    unlink(path);
    rmdir(dir);
    fx_close(&f);
}

/* Debian's gtlsclient against our server: it GETs /file over HTTP/3 and saves the body; our
   server answers with HEADERS (:status 200) and DATA frames sent from chains. */
static void test_ngtcp2_client(void) {
    fx f;
    buffet_net_quic_desc d;
    buffet_net_quic_event ev[32];
    char port[16], dl[96], saved[128], out[8192] = "";
    const char *argv[] = {"gtlsclient", "-q", "--exit-on-all-streams-close", "--download", dl, "127.0.0.1", port,
                          NULL, NULL};
    static unsigned char file[H3_BODY];
    unsigned char frame[16];
    buffet_chain c, in;
    size_t i, k, n;
    pid_t pid;
    int pfd, st = -1;
    bool answered = false;
    uint64_t end;
    FILE *fp;
    if (!fx_have("gtlsclient")) BT_SKIP("ngtcp2_examples", "gtlsclient not installed (make deps: ngtcp2-client)");
    FX_OPEN(f);
    f.srv.fd = qu_udp("127.0.0.1", 0, &f.sa);
    fx_desc(&f, &d, true);
    d.fd = f.srv.fd;
    d.alpn = "h3";
    BT_CHECK(buffet_net_quic_create(&f.srv.q, &d) == BUFFET_OK);
    snprintf(port, sizeof port, "%d", ntohs(f.sa.in4.sin_port));
    snprintf(dl, sizeof dl, "%s/dl", f.cert.dir);
    mkdir(dl, 0700);
    argv[7] = "https://localhost/file";
    pid = qu_spawnv(argv, &pfd);
    BT_CHECK(pid > 0);
    buffet_chain_init(&c, qu_alloc);
    buffet_chain_init(&in, qu_alloc);
    end = qu_ms() + 20000;
    while (pid > 0 && qu_ms() < end) {
        struct pollfd pf = {f.srv.fd, POLLIN, 0};
        int t = f.srv.closed ? 50 : buffet_net_quic_timeout_ms(f.srv.q);
        (void)poll(&pf, 1, t < 0 || t > 50 ? 50 : t);
        if (!f.srv.closed) {
            if (pf.revents & POLLIN) buffet_net_quic_on_readable(f.srv.q);
            buffet_net_quic_on_timer(f.srv.q);
        }
        while ((k = buffet_net_quic_events(f.srv.q, ev, 32)) > 0)
            for (i = 0; i < k; i++) {
                if (ev[i].type == BUFFET_NET_QUIC_EV_READABLE) {
                    buffet_result r;
                    while ((r = buffet_net_quic_recv(f.srv.q, ev[i].stream, &in, 0, NULL)) == BUFFET_OK)
                        buffet_chain_consume(&in, buffet_chain_len(&in));
                    if (r == BUFFET_ERR_CLOSED && (ev[i].stream & 3) == 0 && !answered) {
                        /* HEADERS: QPACK prefix 0 0, :status 200 (static 25); then the body in one
                           DATA frame: its header, then slices of the pattern's buffers */
                        static const unsigned char hdr[] = {0x01, 3, 0, 0, 0xd9};
                        fx_bytes(&c, hdr, sizeof hdr);
                        frame[0] = 0;
                        n = 1 + h3_varint(frame + 1, H3_BODY);
                        fx_bytes(&c, frame, n);
                        BT_CHECK(qu_src_add(&f.src, &c, 0, H3_BODY));
                        r = buffet_net_quic_send(f.srv.q, ev[i].stream, &c, BUFFET_NET_QUIC_FIN, NULL);
                        BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
                        answered = true;
                    }
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_WRITABLE && ev[i].stream >= 0 && buffet_chain_len(&c)) {
                    buffet_net_quic_send(f.srv.q, ev[i].stream, &c, BUFFET_NET_QUIC_FIN, NULL);
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_CLOSED) {
                    f.srv.closed = true;
                    printf("  closed by gtlsclient: reason %u error 0x%llx\n", ev[i].reason, (unsigned long long)ev[i].error);
                }
            }
        qu_drain(pfd, out, sizeof out);
        if (waitpid(pid, &st, WNOHANG) == pid) {
            close(pfd);
            pid = -1;
        }
    }
    if (pid > 0) st = qu_reap(pid, pfd, out, sizeof out, 1000) << 8;
    BT_CHECK(answered);
    BT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(saved, sizeof saved, "%s/file", dl);
    fp = fopen(saved, "rb");
    n = fp ? fread(file, 1, sizeof file, fp) : 0;
    if (fp) fclose(fp);
    for (i = 0; i < n && file[i] == qu_byte(i % QU_BLOCK); i++) {
    }
    printf("  gtlsclient saved %zu bytes: %s\n", n, n == H3_BODY && i == n ? "our body, byte for byte" : "NOT our body");
    BT_CHECK(n == H3_BODY && i == n);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&in);
    unlink(saved);
    rmdir(dl);
    fx_close(&f);
}

/* Careless callers: every call with NULL, wrong descriptors, unknown streams, calls in the
   wrong state; each a clear result, nothing taken. */
static void test_bad_arguments(void) {
    fx f;
    qu_ep *eps[2] = {&f.cli, &f.srv};
    buffet_net_quic_desc d;
    buffet_net_quic *q = (buffet_net_quic *)1;
    buffet_chain c;
    buffet_allocator heap;
    buffet_net_quic_event ev[4];
    int64_t id;
    int tcp;
    size_t taken = 7;
    FX_OPEN(f);
    memset(&heap, 0, sizeof heap);
    buffet_chain_init(&c, heap);
    BT_CHECK(buffet_net_quic_create(NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_create(&q, NULL) == BUFFET_ERR_INVALID && q == NULL);
    f.srv.fd = qu_udp("127.0.0.1", 0, &f.sa);
    fx_desc(&f, &d, true);
    d.fd = -1;
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    tcp = socket(AF_INET, SOCK_STREAM, 0);
    d.fd = tcp;
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    close(tcp);
    d.fd = f.srv.fd;
    d.cert_file = NULL;
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    d.cert_file = "/nonexistent/cert.pem";
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    d.cert_file = f.cert.key;   /* a key where the certificate should be */
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    fx_desc(&f, &d, false);
    d.fd = f.srv.fd;
    memset(&d.peer, 0, sizeof d.peer);
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    fx_desc(&f, &d, false);
    d.fd = f.srv.fd;
    d.ca_file = "/nonexistent/ca.pem";
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    d.ca_file = f.cert.cert;
    d.alpn = "";
    BT_CHECK(buffet_net_quic_create(&q, &d) == BUFFET_ERR_INVALID);
    close(f.srv.fd);
    f.srv.fd = -1;

    BT_CHECK(buffet_net_quic_on_readable(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_on_timer(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_timeout_ms(NULL) == -1);
    BT_CHECK(!buffet_net_quic_blocked(NULL));
    BT_CHECK(buffet_net_quic_events(NULL, ev, 4) == 0);
    BT_CHECK(buffet_net_quic_open(NULL, &id) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_send(NULL, 0, &c, 0, &taken) == BUFFET_ERR_INVALID && taken == 0);
    BT_CHECK(buffet_net_quic_recv(NULL, 0, &c, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_reset(NULL, 0, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_send_datagram(NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_close(NULL, 0) == BUFFET_ERR_INVALID);
    buffet_net_quic_destroy(NULL);

    BT_CHECK(fx_pair(&f, "127.0.0.1", NULL, NULL));
    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_ERR_STATE);   /* not connected yet */
    BT_CHECK(qu_run(eps, 2, 5000, fx_connected, &f) && f.cli.connected);
    BT_CHECK(buffet_net_quic_send(f.cli.q, 4, &c, 0, NULL) == BUFFET_ERR_INVALID);   /* never opened */
    BT_CHECK(buffet_net_quic_recv(f.cli.q, 4, &c, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_reset(f.cli.q, 4, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_OK);
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, NULL, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, 0x80, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_recv(f.cli.q, id, NULL, 0, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_net_quic_recv(f.cli.q, id, &c, 0, NULL) == BUFFET_AGAIN);
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, 0, NULL) == BUFFET_OK);   /* zero bytes: fine */
    BT_CHECK(qu_src_add(&f.src, &c, 0, 100));
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, BUFFET_NET_QUIC_FIN, &taken) == BUFFET_OK && taken == 100);
    BT_CHECK(qu_src_add(&f.src, &c, 0, 100));
    BT_CHECK(buffet_net_quic_send(f.cli.q, id, &c, 0, NULL) == BUFFET_ERR_STATE && buffet_chain_len(&c) == 100);
    buffet_chain_deinit(&c);
    BT_CHECK(buffet_net_quic_reset(f.cli.q, id, 5) == BUFFET_OK);
    BT_CHECK(buffet_net_quic_reset(f.cli.q, id, 5) == BUFFET_ERR_INVALID);
    fx_finish(&f);
    BT_CHECK(buffet_net_quic_close(f.cli.q, 0) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_net_quic_open(f.cli.q, &id) == BUFFET_ERR_STATE);
    while (f.srv.x) qu_xfer_end(&f.srv, f.srv.x, true);
    fx_close(&f);
}

int main(void) {
    BT_RUN(test_loopback_v4);
    BT_RUN(test_loopback_v6);
    BT_RUN(test_idle_timeout);
    BT_RUN(test_certificate_other_ca);
    BT_RUN(test_certificate_other_name);
    BT_RUN(test_random_datagrams);
    BT_RUN(test_peer_stops_reading);
    BT_RUN(test_stream_reset);
    BT_RUN(test_datagrams);
    BT_RUN(test_stateless_reset);
    BT_RUN(test_bad_arguments);
    BT_RUN(test_ngtcp2_server);
    BT_RUN(test_ngtcp2_client);
    BT_RUN(test_aioquic_server);
    BT_RUN(test_aioquic_client);
    BT_RUN(test_aioquic_server_lossy);
    BT_RUN(test_aioquic_client_lossy);
    return bt_finish("test_net_quic");
}
