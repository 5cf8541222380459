/* quic_util.h - what buffet's QUIC tests and bench/bench_quic.c share: a certificate made with
   openssl, UDP sockets, and both ends of the test protocol that tests/quic_peer.py (aioquic)
   speaks too, driven by one loop over any number of endpoints.

   The protocol (ALPN "buffet-test"), one exchange per client-opened bidirectional stream:
     "PUT <n>\n" + n bytes of pattern(n) + FIN  ->  "<sha256 hex of what arrived>\n" + FIN
     "GET <n>\n" + FIN                           ->  pattern(n) + FIN
   pattern(n): the first n bytes of the endless repetition of a 65521-byte block (a prime, so
   that periods never line up with packets or buffers), block[j] = ((j * 31) ^ (j >> 8)) & 0xff.
   Both ends hash what they receive with SHA-256 and compare with the pattern's.

   Sent data is never copied: every chain sent is made of slices of a few buffers holding the
   block (of several kinds: heap, mmap, shared memory, packets), so the buffers' reference counts
   show that every slice was released once. Included after buffet_net.h with BUFFET_NET_QUIC 1. */
#ifndef QUIC_UTIL_H
#define QUIC_UTIL_H
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"

#define QU_BLOCK 65521u
#define QU_ALPN "buffet-test"
#define QU_AHEAD ((size_t)1 << 20)   /* pattern bytes kept queued ahead of the windows */
#define QU_KINDS 4

/* Where the tests' buffers come from (zero: the heap): a test sets a debug allocator here to
   see that every one of them is freed. */
static buffet_allocator qu_alloc;

/* The block in buffers of every kind; stream data is sliced out of them. */
typedef struct qu_src {
    buffet_buf *buf[QU_KINDS];
    buffet_pkt_cache *cache;
    buffet_pkt *pkts[(QU_BLOCK + 2047) / 2048];   /* the block again, in 2 KiB packets */
    size_t npkts;
} qu_src;

__attribute__((unused)) static unsigned char qu_byte(size_t j) { return (unsigned char)(((j * 31) ^ (j >> 8)) & 0xff); }

__attribute__((unused)) static void qu_pattern_hex(uint64_t n, char hex[65]) {
    static unsigned char block[QU_BLOCK];
    sha256 h;
    uint64_t done = 0;
    size_t j;
    for (j = 0; j < QU_BLOCK; j++) block[j] = qu_byte(j);
    sha256_init(&h);
    while (done < n) {
        size_t k = n - done < QU_BLOCK ? (size_t)(n - done) : QU_BLOCK;
        sha256_add(&h, block, k);
        done += k;
    }
    sha256_hex(&h, hex);
}

__attribute__((unused)) static bool qu_src_init(qu_src *s, buffet_pkt_cache *c) {
    size_t j, k;
    memset(s, 0, sizeof *s);
    s->cache = c;
    for (k = 0; k < QU_KINDS - 1; k++) {
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.kind = k == 0 ? BUFFET_BUF_HEAP : k == 1 ? BUFFET_BUF_MMAP : BUFFET_BUF_SHM;
        d.size = QU_BLOCK;
        d.allocator = qu_alloc;
        if (buffet_buf_create(&s->buf[k], &d) != BUFFET_OK) return false;
        for (j = 0; j < QU_BLOCK; j++) ((unsigned char *)s->buf[k]->data)[j] = qu_byte(j);
    }
    for (j = 0; j < QU_BLOCK; j += 2048) {
        size_t n = QU_BLOCK - j < 2048 ? QU_BLOCK - j : 2048, i;
        buffet_pkt *p = buffet_pkt_alloc(c, 2048);
        unsigned char *d = p ? (unsigned char *)buffet_pkt_append(p, n) : NULL;
        if (!d) return false;
        for (i = 0; i < n; i++) d[i] = qu_byte(j + i);
        s->pkts[s->npkts++] = p;
    }
    return true;
}

/* Every slice released: each buffer is held by us alone again. */
__attribute__((unused)) static bool qu_src_idle(const qu_src *s) {
    size_t k;
    for (k = 0; k < QU_KINDS - 1; k++)
        if (buffet_buf_refcount(s->buf[k]) != 1) return false;
    for (k = 0; k < s->npkts; k++)
        if (s->pkts[k]->refcnt != 1) return false;
    return true;
}

__attribute__((unused)) static void qu_src_free(qu_src *s) {
    size_t k;
    for (k = 0; k < QU_KINDS - 1; k++) buffet_buf_unref(s->buf[k]);
    for (k = 0; k < s->npkts; k++) buffet_pkt_free(s->cache, s->pkts[k]);
    memset(s, 0, sizeof *s);
}

/* Append pattern bytes [off, off + n) to c as slices, the kind of buffer changing every block. */
__attribute__((unused)) static bool qu_src_add(qu_src *s, buffet_chain *c, uint64_t off, size_t n) {
    while (n) {
        uint64_t blk = off / QU_BLOCK;
        size_t at = (size_t)(off % QU_BLOCK), k = QU_BLOCK - at < n ? QU_BLOCK - at : n;
        unsigned kind = (unsigned)(blk % QU_KINDS);
        if (kind < QU_KINDS - 1) {
            if (buffet_chain_append(c, s->buf[kind], at, k) != BUFFET_OK) return false;
        } else {   /* from the packets: no farther than the end of the one holding `at` */
            buffet_pkt *p = s->pkts[at / 2048];
            size_t in = at % 2048;
            buffet_chain one;
            if (k > p->len - in) k = p->len - in;
            buffet_chain_init(&one, c->allocator);
            if (buffet_pkt_to_chain(p, &one) != BUFFET_OK) return false;
            buffet_chain_consume(&one, in);
            buffet_chain_trim(&one, buffet_chain_len(&one) - k);
            if (buffet_chain_concat(c, &one) != BUFFET_OK) {
                buffet_chain_deinit(&one);
                return false;
            }
            buffet_chain_deinit(&one);
        }
        off += k;
        n -= k;
    }
    return true;
}

/* A certificate for localhost / 127.0.0.1 / ::1 and its key, made by openssl in a fresh
   directory; false when openssl is missing. */
typedef struct qu_cert { char dir[64], cert[96], key[96]; } qu_cert;
__attribute__((unused)) static bool qu_cert_make(qu_cert *c, const char *cn) {
    char cmd[768];
    snprintf(c->dir, sizeof c->dir, "/tmp/buffet-quic-XXXXXX");
    if (!mkdtemp(c->dir)) return false;
    snprintf(c->cert, sizeof c->cert, "%s/cert.pem", c->dir);
    snprintf(c->key, sizeof c->key, "%s/key.pem", c->dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s "
             "-subj /CN=%s -addext subjectAltName=DNS:%s,IP:127.0.0.1,IP:::1 -days 2 >/dev/null 2>&1",
             c->key, c->cert, cn, cn);
    return system(cmd) == 0;
}
__attribute__((unused)) static void qu_cert_remove(qu_cert *c) {
    unlink(c->cert);
    unlink(c->key);
    rmdir(c->dir);
}

/* A non-blocking UDP socket bound to ip, port chosen by the kernel (port 0) or given; *a gets its
   address. -1 on failure. */
__attribute__((unused)) static int qu_udp(const char *ip, int port, buffet_net_addr *a) {
    socklen_t len = sizeof *a;
    int fd, big = 4 << 20;
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons((uint16_t)port);
    } else {
        a->in6.sin6_family = AF_INET6;
        a->in6.sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, ip, &a->in6.sin6_addr) != 1) return -1;
    }
    fd = socket(a->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (bind(fd, &a->sa, a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in4) != 0 ||
        getsockname(fd, &a->sa, &len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* >>the protocol's ends */
enum { QU_PUT = 1, QU_GET, QU_SERVED };

typedef struct qu_xfer {
    int64_t id;
    int kind;                 /* QU_PUT / QU_GET (client), QU_SERVED (server) */
    uint64_t n;               /* payload bytes */
    uint64_t queued;          /* pattern bytes put into `out` so far */
    uint64_t got;             /* payload bytes received */
    buffet_chain out;         /* queued, not taken by the stream yet */
    buffet_chain in;          /* received, not parsed yet */
    sha256 h;
    bool head_done, fin_queued, ended, ok, count_only;
    int server_req;           /* QU_PUT / QU_GET as the server read it */
    struct qu_xfer *next;
} qu_xfer;

typedef struct qu_ep {
    buffet_net_quic *q;
    int fd;
    bool server;
    qu_src *src;
    qu_xfer *x;                        /* exchanges in progress */
    /* client plan */
    uint64_t put_n, get_n;
    unsigned small, small_size, small_started, max_open;
    bool big_started;
    /* results */
    unsigned done, failed, open;
    bool connected, closed, close_sent;
    buffet_result close_result;
    unsigned close_reason;
    uint64_t close_error;
    bool stop_reading;                 /* a server that never reads (a peer that stops reading) */
    bool count_only;                   /* a benchmark's server: bytes counted, not hashed */
    bool copy_send;                    /* a benchmark's client: the pattern copied into flat
                                          buffers before it is sent (what code without chains does) */
    bool verbose;
} qu_ep;

__attribute__((unused)) static qu_xfer *qu_xfer_of(qu_ep *e, int64_t id) {
    qu_xfer *x;
    for (x = e->x; x; x = x->next)
        if (x->id == id) return x;
    return NULL;
}

__attribute__((unused)) static qu_xfer *qu_xfer_new(qu_ep *e, int64_t id, int kind, uint64_t n) {
    qu_xfer *x = (qu_xfer *)calloc(1, sizeof *x);
    x->id = id;
    x->kind = kind;
    x->n = n;
    buffet_chain_init(&x->out, qu_alloc);
    buffet_chain_init(&x->in, qu_alloc);
    sha256_init(&x->h);
    x->next = e->x;
    e->x = x;
    e->open++;
    return x;
}

__attribute__((unused)) static void qu_xfer_end(qu_ep *e, qu_xfer *x, bool ok) {
    qu_xfer **pp;
    for (pp = &e->x; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    if (ok) e->done++;
    else e->failed++;
    if (!ok || e->verbose)
        printf("  %s stream %lld %s %llu: %s\n", e->server ? "server" : "client", (long long)x->id,
               x->kind == QU_PUT ? "PUT" : x->kind == QU_GET ? "GET" : x->server_req == QU_PUT ? "PUT(served)" : "GET(served)",
               (unsigned long long)x->n, ok ? "ok" : "FAILED");
    e->open--;
    buffet_chain_deinit(&x->out);
    buffet_chain_deinit(&x->in);
    free(x);
}

/* Queue what the stream may send next: the head, then pattern bytes, then the end. */
__attribute__((unused)) static bool qu_push(qu_ep *e, qu_xfer *x, uint64_t total) {
    buffet_result r;
    while (!x->fin_queued) {
        while (x->queued < total && buffet_chain_len(&x->out) < QU_AHEAD) {
            size_t k = total - x->queued < QU_AHEAD ? (size_t)(total - x->queued) : QU_AHEAD;
            if (e->copy_send) {   /* the same bytes, copied into one flat buffer per 64 KiB */
                buffet_chain tmp;
                buffet_buf_desc d;
                buffet_buf *b = NULL;
                bool ok;
                if (k > 65536) k = 65536;
                memset(&d, 0, sizeof d);
                d.size = k;
                d.allocator = qu_alloc;
                buffet_chain_init(&tmp, qu_alloc);
                ok = qu_src_add(e->src, &tmp, x->queued, k) && buffet_buf_create(&b, &d) == BUFFET_OK &&
                     buffet_chain_copy_out(&tmp, 0, b->data, k) == BUFFET_OK && buffet_chain_append(&x->out, b, 0, k) == BUFFET_OK;
                buffet_chain_deinit(&tmp);
                buffet_buf_unref(b);
                if (!ok) return false;
            } else if (!qu_src_add(e->src, &x->out, x->queued, k)) {
                return false;
            }
            x->queued += k;
        }
        r = buffet_net_quic_send(e->q, x->id, &x->out, x->queued == total ? BUFFET_NET_QUIC_FIN : 0, NULL);
        if (r == BUFFET_AGAIN) return true;
        if (r != BUFFET_OK) return false;
        if (x->queued == total) x->fin_queued = true;
    }
    return true;
}

/* Send a line (copied: it is tiny), then maybe the end. */
__attribute__((unused)) static bool qu_line(qu_ep *e, qu_xfer *x, const char *line, bool fin) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    buffet_result r;
    size_t n = strlen(line);
    memset(&d, 0, sizeof d);
    d.size = n;
    d.allocator = qu_alloc;
    if (buffet_buf_create(&b, &d) != BUFFET_OK) return false;
    memcpy(b->data, line, n);
    r = buffet_chain_append(&x->out, b, 0, n);
    buffet_buf_unref(b);
    if (r != BUFFET_OK) return false;
    r = buffet_net_quic_send(e->q, x->id, &x->out, fin ? BUFFET_NET_QUIC_FIN : 0, NULL);
    if (r == BUFFET_OK && fin) x->fin_queued = true;
    return r == BUFFET_OK || r == BUFFET_AGAIN;
}

__attribute__((unused)) static void qu_hash_chain(qu_xfer *x, buffet_chain *c) {
    size_t i;
    for (i = 0; i < buffet_chain_count(c) && !x->count_only; i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        sha256_add(&x->h, buffet_slice_data(s), s->len);
    }
    x->got += buffet_chain_len(c);
}

/* A client's next exchanges, as many as may be open at once. */
__attribute__((unused)) static void qu_client_start(qu_ep *e) {
    while (e->connected && !e->closed) {
        int64_t id;
        int kind;
        uint64_t n;
        qu_xfer *x;
        char line[64];
        if (!e->big_started && (e->put_n || e->get_n)) {
            kind = e->put_n ? QU_PUT : QU_GET;
            n = e->put_n ? e->put_n : e->get_n;
        } else if (e->small_started < e->small && e->open < e->max_open) {
            kind = e->small_started % 2 ? QU_GET : QU_PUT;
            n = 1 + ((uint64_t)e->small_started * 977u) % e->small_size;
        } else {
            return;
        }
        if (buffet_net_quic_open(e->q, &id) != BUFFET_OK) return;
        if (!e->big_started && (e->put_n || e->get_n)) {
            if (kind == QU_PUT && e->get_n) {   /* the GET next, on its own stream */
                e->put_n = 0;
            } else {
                e->put_n = 0;
                e->get_n = 0;
                e->big_started = true;
            }
        } else {
            e->small_started++;
        }
        x = qu_xfer_new(e, id, kind, n);
        snprintf(line, sizeof line, "%s %llu\n", kind == QU_PUT ? "PUT" : "GET", (unsigned long long)n);
        if (!qu_line(e, x, line, kind == QU_GET) || (kind == QU_PUT && !qu_push(e, x, n))) {
            qu_xfer_end(e, x, false);
        }
    }
}

/* Bytes arrived on x: parse, hash, answer. */
__attribute__((unused)) static void qu_readable(qu_ep *e, qu_xfer *x) {
    buffet_chain got;
    buffet_result r;
    if (e->stop_reading) return;
    buffet_chain_init(&got, qu_alloc);
    while ((r = buffet_net_quic_recv(e->q, x->id, &got, 0, NULL)) == BUFFET_OK) {
        buffet_chain_concat(&x->in, &got);
        if (!x->head_done && (e->server || x->kind == QU_PUT)) {
            buffet_chain line;
            char text[80];
            unsigned long long n = 0;
            buffet_chain_init(&line, qu_alloc);
            if (buffet_net_take_until(&x->in, "\n", 1, 70, &line) != BUFFET_OK) {
                buffet_chain_deinit(&line);
                if (buffet_chain_len(&x->in) >= 70) break;
                continue;
            }
            memset(text, 0, sizeof text);
            buffet_chain_copy_out(&line, 0, text, buffet_chain_len(&line));
            buffet_chain_deinit(&line);
            x->head_done = true;
            if (e->server) {
                x->count_only = e->count_only;
                if (sscanf(text, "PUT %llu", &n) == 1) x->server_req = QU_PUT;
                else if (sscanf(text, "GET %llu", &n) == 1) x->server_req = QU_GET;
                x->n = n;
            } else {
                x->ok = strlen(text) == 65;   /* the PUT's answer: compared at the end */
                memcpy(text + 64, "", 1);
                if (e->count_only) {
                    x->ok = strtoull(text, NULL, 10) == x->n;
                } else {
                    char want[65];
                    qu_pattern_hex(x->n, want);
                    x->ok = x->ok && strcmp(text, want) == 0;
                }
            }
        }
        if (x->head_done || (!e->server && x->kind == QU_GET)) {
            qu_hash_chain(x, &x->in);
            buffet_chain_deinit(&x->in);
            buffet_chain_init(&x->in, qu_alloc);
        }
    }
    buffet_chain_deinit(&got);
    if (r != BUFFET_ERR_CLOSED) return;
    /* the peer's end: check, answer */
    if (e->server) {
        char want[65], hex[65], line[80];
        bool ok = x->server_req && (x->server_req == QU_GET || x->got == x->n);
        if (x->server_req == QU_PUT && x->count_only) {   /* a benchmark: the count is the answer */
            snprintf(line, sizeof line, "%llu\n", (unsigned long long)x->got);
            ok = qu_line(e, x, line, true) && ok;
        } else if (x->server_req == QU_PUT) {
            sha256_hex(&x->h, hex);
            qu_pattern_hex(x->n, want);
            ok = ok && strcmp(hex, want) == 0;
            snprintf(line, sizeof line, "%s\n", hex);
            ok = qu_line(e, x, line, true) && ok;
        } else if (x->server_req == QU_GET) {
            ok = qu_push(e, x, x->n) && ok;
        } else {
            ok = qu_line(e, x, "ERR bad request\n", true) && false;
        }
        x->ok = ok;
        x->ended = true;
        if (!ok) qu_xfer_end(e, x, false);
    } else {
        bool ok = x->head_done || x->kind == QU_GET;
        if (x->kind == QU_GET) {
            char want[65], hex[65];
            sha256_hex(&x->h, hex);
            qu_pattern_hex(x->n, want);
            ok = x->got == x->n && strcmp(hex, want) == 0;
        } else {
            ok = ok && x->ok;
        }
        x->ended = true;
        x->ok = ok;
        if (x->fin_queued || !ok) qu_xfer_end(e, x, ok);
    }
}

/* Take the endpoint's events and act on them. */
__attribute__((unused)) static void qu_events(qu_ep *e) {
    buffet_net_quic_event ev[64];
    size_t n, i;
    while ((n = buffet_net_quic_events(e->q, ev, 64)) > 0) {
        for (i = 0; i < n; i++) {
            qu_xfer *x = ev[i].stream >= 0 ? qu_xfer_of(e, ev[i].stream) : NULL;
            switch (ev[i].type) {
            case BUFFET_NET_QUIC_EV_CONNECTED:
                e->connected = true;
                break;
            case BUFFET_NET_QUIC_EV_STREAM_OPENED:
                if (e->server) qu_xfer_new(e, ev[i].stream, QU_SERVED, 0);
                break;
            case BUFFET_NET_QUIC_EV_READABLE:
                if (x) qu_readable(e, x);
                break;
            case BUFFET_NET_QUIC_EV_WRITABLE:
                if (x && !x->fin_queued) {
                    if (x->kind == QU_PUT || x->server_req == QU_GET) qu_push(e, x, x->n);
                    else buffet_net_quic_send(e->q, x->id, &x->out, x->ended || e->server ? BUFFET_NET_QUIC_FIN : 0, NULL);
                }
                break;
            case BUFFET_NET_QUIC_EV_SENT:
                if (x && x->ended) qu_xfer_end(e, x, x->ok);
                break;
            case BUFFET_NET_QUIC_EV_STREAM_CLOSED:
                if (x && ev[i].result != BUFFET_OK) qu_xfer_end(e, x, false);
                break;
            case BUFFET_NET_QUIC_EV_DATAGRAM:
                buffet_pkt_free(e->src->cache, ev[i].pkt);
                break;
            case BUFFET_NET_QUIC_EV_CLOSED:
                e->closed = true;
                e->close_result = ev[i].result;
                e->close_reason = ev[i].reason;
                e->close_error = ev[i].error;
                break;
            default:
                break;
            }
        }
    }
    if (!e->server) qu_client_start(e);
}

/* Whether a client has done all it planned. */
__attribute__((unused)) static bool qu_client_done(const qu_ep *e) {
    return e->put_n == 0 && e->get_n == 0 && e->small_started == e->small && e->open == 0;
}

__attribute__((unused)) static uint64_t qu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Drive the endpoints until done(user) or the deadline (ms from now). Returns done's verdict. */
__attribute__((unused)) static bool qu_run(qu_ep **eps, size_t n, unsigned ms, bool (*done)(void *), void *user) {
    uint64_t end = qu_ms() + ms;
    size_t i;
    while (!done(user)) {
        struct pollfd pf[8];
        int timeout = 100;
        if (qu_ms() > end) return false;
        for (i = 0; i < n; i++) {
            int t = eps[i]->closed ? -1 : buffet_net_quic_timeout_ms(eps[i]->q);
            pf[i].fd = eps[i]->fd;
            pf[i].events = (short)(POLLIN | (buffet_net_quic_blocked(eps[i]->q) ? POLLOUT : 0));
            pf[i].revents = 0;
            if (t >= 0 && t < timeout) timeout = t;
        }
        (void)poll(pf, (nfds_t)n, timeout);
        for (i = 0; i < n; i++) {
            if (eps[i]->closed) continue;
            if (pf[i].revents & POLLIN) buffet_net_quic_on_readable(eps[i]->q);
            buffet_net_quic_on_timer(eps[i]->q);
            qu_events(eps[i]);
        }
    }
    return true;
}
/* >>the independent peer: tests/quic_peer.py (aioquic) */
extern char **environ;

/* Whether python3 can import aioquic. */
__attribute__((unused)) static bool qu_have_aioquic(void) {
    return system("python3 -c 'import aioquic' >/dev/null 2>&1") == 0;
}

/* Start argv[0] (found on PATH) with argv; *out reads its standard output (non-blocking).
   Returns the pid, or -1. */
__attribute__((unused)) static pid_t qu_spawnv(const char *const *argv, int *out) {
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;
    int p[2];
    if (pipe(p) != 0) return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    *out = p[0];
    return pid;
}

/* Start python3 -u tests/quic_peer.py with args, as qu_spawnv. */
__attribute__((unused)) static pid_t qu_spawn(const char *const *args, int *out) {
    const char *argv[32];
    int n = 0;
    argv[n++] = "python3";
    argv[n++] = "-u";
    argv[n++] = "tests/quic_peer.py";
    while (*args && n < 31) argv[n++] = *args++;
    argv[n] = NULL;
    return qu_spawnv(argv, out);
}

/* Append what the peer has printed to buf (NUL-terminated, cap bytes); false at end of file. */
__attribute__((unused)) static bool qu_drain(int fd, char *buf, size_t cap) {
    size_t len = strlen(buf);
    for (;;) {
        char tmp[512];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r == 0) return false;
        if (r < 0) return true;
        fwrite(tmp, 1, (size_t)r, stdout);   /* the peer's lines go to the test's output */
        if (len + (size_t)r < cap) {
            memcpy(buf + len, tmp, (size_t)r);
            len += (size_t)r;
            buf[len] = '\0';
        }
    }
}

/* Wait for the peer to end (at most ms), killing it past that; its exit status, or -1. */
__attribute__((unused)) static int qu_reap(pid_t pid, int fd, char *buf, size_t cap, unsigned ms) {
    uint64_t end = qu_ms() + ms;
    int st = 0;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        bool open = qu_drain(fd, buf, cap);
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            qu_drain(fd, buf, cap);
            close(fd);
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        if (qu_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            close(fd);
            return -1;
        }
        (void)poll(&pf, open ? 1 : 0, 50);
    }
}
#endif /* QUIC_UTIL_H */
