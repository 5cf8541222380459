/* test_stress_net.c - seeded concurrency stress of buffet_net.h with 2 and with 4 threads, each
   run once without and once with the fault layer (short calls, EAGAIN, EINTR at random). The
   threads share what real programs share: one packet pool (a cache per thread) feeding
   buffet_net_recv and buffet_net_udp_recv, one debug allocator under every buffer, header and
   slice array, and chains handed from thread to thread. Thread t
     produces  stream t (WRAP buffers whose release is counted, and packets) and sends it over
               link A (AF_UNIX stream, loopback TCP, AF_UNIX SEQPACKET or DGRAM, by seed) to t+1;
     receives  stream t-1 from link A into buffets and packets, takes random pieces off it
               (buffet_net_take) and hands them to stream t-1's relay mailbox (a chain under a
               mutex, buffet_chain_concat in, buffet_chain_concat out);
     relays    stream t-2 from its mailbox over link B to t+1;
     verifies  stream t-3 from link B, byte for byte;
     and sends UDP datagrams (packets, buffet_net_udp_send) to t+1 over loopback, receives t-1's
     (buffet_net_udp_recv), checks their sequence and bytes, and frees them here, or clones them
     and hands the clone (or the packet) to another thread that checks and frees it there;
     and sends stream t+100 with MSG_ZEROCOPY over loopback TCP to t+1, with a tracker only it
     uses (buffet_net_zc is "Thread: owned": never drained by another thread), t+1 checking it.
   At the end every byte sent has been verified where it ended, every WRAP buffer released
   exactly once, every packet back in the pool, and the debug allocator holds nothing.
   Operations per run: bt_stress_ops() / TS_DIVISOR (at least 2000) -- each operation here is one
   or two system calls on a socket and a few KiB of bytes written and checked (microseconds, not
   the nanoseconds of a pool operation), so the full 10^7 would take many minutes; divided by 500
   the gcc build runs in about 2 s, TSan in about 25 s, valgrind in about 15 s. Message sockets
   are read with a room above the largest message, so any BUFFET_ERR_TRUNCATED is a failure.
   BUFFET_STRESS_SEED picks the seed (printed). C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"
#include "bt.h"
#include "net_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TS_DIVISOR 500       /* a socket operation costs ~1000 pool operations: see above */
#define TS_MAX 4             /* threads */
#define TS_PBOX 256          /* packets a thread's packet mailbox holds */
#define TS_UDP_WINDOW 32     /* datagrams in flight per sender: loopback UDP drops when full */
#define TS_RELAY_MAX ((size_t)256 << 10)   /* mailbox bytes before the receiver waits */
#define TS_OUT_MAX ((size_t)64 << 10)      /* bytes a producer keeps queued */
#define TS_MSG_MAX 8192      /* largest send on a message socket: below every room a read has */

enum { TS_UNIX_STREAM, TS_TCP, TS_SEQPACKET, TS_DGRAM, TS_KINDS };
static const char *const ts_kind_name[TS_KINDS] = {"unix stream", "tcp", "seqpacket", "unix dgram"};

static uint64_t ts_seed;

static uint64_t ts_rand(uint64_t *s) {   /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* The byte at position i of stream s: a swapped, lost or repeated piece shows anywhere. */
static unsigned char ts_byte(uint64_t s, uint64_t i) {
    uint64_t x = ((s + 1) << 52) ^ i;
    x *= 0x9E3779B97F4A7C15ull;
    return (unsigned char)(x >> 56);
}

/* ---------------------------------------------------------------------------------------------
   Shared state */

typedef struct ts_pmsg { buffet_pkt *p; uint64_t stream, seq; } ts_pmsg;

typedef struct ts_flow {            /* stream f: produced by thread f */
    int a_tx, a_rx, b_tx, b_rx, a_kind, b_kind;   /* A: f -> f+1; B: f+2 -> f+3 */
    int z_tx, z_rx;                 /* zerocopy TCP f -> f+1, or -1 */
    int u_fd;                       /* thread f's UDP socket (sends to f+1, receives from f-1) */
    buffet_net_addr u_addr;
    pthread_mutex_t mu;             /* the relay mailbox of stream f */
    buffet_chain box;
    size_t box_len;                 /* atomic mirror of buffet_chain_len(&box), for backpressure */
    uint64_t produced, verified;    /* atomic: stream bytes */
    uint64_t zc_produced, zc_verified;   /* atomic */
    uint32_t zc_in_flight;          /* atomic: the owner publishes its tracker's count */
    uint64_t u_sent, u_acked;       /* atomic: datagrams sent by f, received by f+1 */
    int done;                       /* atomic: thread f produces no more */
    pthread_mutex_t pmu;            /* thread f's packet mailbox */
    ts_pmsg pbox[TS_PBOX];
    unsigned pn;
} ts_flow;

typedef struct ts_run {
    unsigned n;
    unsigned long ops;
    buffet_debug *dbg;
    buffet_allocator a;
    buffet_pkt_pool *pool;
    ts_flow f[TS_MAX];
    bool zc;
    uint64_t created, released;     /* atomic: WRAP buffers */
    uint64_t bad_bytes, bad_results, bad_seq, exhausted, clones, handed, stuck;   /* atomic */
    uint64_t bytes, datagrams;      /* atomic: totals verified */
} ts_run;

static void ts_count(uint64_t *c) { __atomic_fetch_add(c, 1, __ATOMIC_RELAXED); }   /* relaxed: counters */

static void ts_bad(ts_run *R, const char *what, buffet_result r) {
    /* once per kind of surprise is enough to read */
    if (__atomic_fetch_add(&R->bad_results, 1, __ATOMIC_RELAXED) < 5)
        fprintf(stderr, "unexpected %s: %s (errno %d)\n", what, buffet_result_str(r), errno);
}

/* WRAP buffers: data from the shared debug allocator; the release is counted (once each). */
static void ts_release(void *user, void *data, size_t size) {
    ts_run *R = (ts_run *)user;
    buffet_free(R->a, data, size, 16, BUFFET_SITE);
    ts_count(&R->released);
}

/* Append bytes [from, from + n) of stream s to c: a WRAP buffer (two slices of it when it can),
   a heap buffer, or a packet of the pool. */
static bool ts_append(ts_run *R, buffet_pkt_cache *pc, buffet_chain *c, uint64_t s, uint64_t from, size_t n,
                      uint64_t r) {
    size_t i;
    if (r % 3 == 0) {
        unsigned char *d = (unsigned char *)buffet_alloc(R->a, n + 4, 16, BUFFET_SITE);
        buffet_buf_desc bd;
        buffet_buf *b = NULL;
        bool ok;
        if (!d) return false;
        for (i = 0; i < n; i++) d[2 + i] = ts_byte(s, from + i);
        memset(&bd, 0, sizeof bd);
        bd.kind = BUFFET_BUF_WRAP;
        bd.size = n + 4;
        bd.allocator = R->a;
        bd.wrap_data = d;
        bd.release = ts_release;
        bd.release_user = R;
        if (buffet_buf_create(&b, &bd) != BUFFET_OK) {
            buffet_free(R->a, d, n + 4, 16, BUFFET_SITE);
            return false;
        }
        ts_count(&R->created);
        ok = buffet_chain_append(c, b, 2, n / 2) == BUFFET_OK && buffet_chain_append(c, b, 2 + n / 2, n - n / 2) == BUFFET_OK;
        buffet_buf_unref(b);
        return ok;
    }
    if (r % 3 == 1 || n > 2048) {
        buffet_buf_desc bd;
        buffet_buf *b = NULL;
        bool ok;
        memset(&bd, 0, sizeof bd);
        bd.size = n;
        bd.allocator = R->a;
        if (buffet_buf_create(&b, &bd) != BUFFET_OK) return false;
        for (i = 0; i < n; i++) ((unsigned char *)b->data)[i] = ts_byte(s, from + i);
        ok = buffet_chain_append(c, b, 0, n) == BUFFET_OK;
        buffet_buf_unref(b);
        return ok;
    } else {
        buffet_pkt *p = buffet_pkt_alloc(pc, n);
        unsigned char *d;
        bool ok;
        if (!p) return false;
        d = (unsigned char *)buffet_pkt_append(p, n);
        for (i = 0; i < n; i++) d[i] = ts_byte(s, from + i);
        ok = buffet_pkt_to_chain(p, c) == BUFFET_OK;
        buffet_pkt_free(pc, p);   /* the chain's slice holds it now */
        return ok;
    }
}

/* Does c hold bytes [from, from + len(c)) of stream s? */
static bool ts_holds(const buffet_chain *c, uint64_t s, uint64_t from) {
    size_t i, j;
    for (i = 0; i < buffet_chain_count(c); i++) {
        const buffet_slice *sl = buffet_chain_at(c, i);
        const unsigned char *p = (const unsigned char *)buffet_slice_data(sl);
        for (j = 0; j < sl->len; j++, from++)
            if (p[j] != ts_byte(s, from)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
   One thread */

typedef struct ts_thread {
    ts_run *R;
    unsigned id;
    uint64_t rng;
    buffet_pkt_cache *pc;
    buffet_chain out, in1, fwd, stage, in2, zout, zin;
    uint64_t out_pos, in2_pos, zin_pos, zout_pos;
    buffet_net_zc *zc;
    buffet_pkt *upend[8];           /* datagrams built, not sent yet (their seqs are taken) */
    size_t nupend;
    uint64_t useq, uexpect;
} ts_thread;

/* A read into c from fd: heap buffers of a random size, or packets; a random limit (on a
   message socket, kind >= TS_SEQPACKET, above the largest message: a smaller room would cut it,
   BUFFET_ERR_TRUNCATED). */
static buffet_result ts_recv(ts_thread *T, int fd, int kind, buffet_chain *c, size_t *got) {
    static const size_t sizes[4] = {512, 3000, 16384, 65536};
    buffet_net_source src;
    uint64_t r = ts_rand(&T->rng);
    size_t max = (r >> 8) % 3 == 0 && kind < TS_SEQPACKET ? 0 : TS_MSG_MAX + (size_t)(r >> 16) % 30000;
    buffet_result res;
    memset(&src, 0, sizeof src);
    src.allocator = T->R->a;
    src.buf_size = sizes[(r >> 4) % 4];
    if (r & 1) src.packets = T->pc;
    res = buffet_net_recv(fd, c, &src, max, got);
    if (res == BUFFET_ERR_EXHAUSTED) {   /* the pool at its max: no byte read, nothing lost */
        ts_count(&T->R->exhausted);
        res = BUFFET_AGAIN;
    }
    if (res != BUFFET_OK && res != BUFFET_AGAIN) ts_bad(T->R, "recv", res);
    return res;
}

static void ts_send(ts_thread *T, int fd, buffet_chain *c, unsigned flags) {
    size_t before = buffet_chain_len(c), sent = 0;
    buffet_result r = buffet_net_send_chain(fd, c, flags, &sent);
    if (r != BUFFET_OK && r != BUFFET_AGAIN) ts_bad(T->R, "send_chain", r);
    if (buffet_chain_len(c) + sent != before) ts_bad(T->R, "send_chain count", r);
}

/* Produce: the next bytes of stream t into out (message sockets: at most TS_MSG_MAX a send). */
static void ts_produce(ts_thread *T, uint64_t r) {
    ts_flow *F = &T->R->f[T->id];
    size_t cap = F->a_kind >= TS_SEQPACKET ? TS_MSG_MAX : TS_OUT_MAX;
    size_t n = 1 + (size_t)(r >> 20) % 2500;
    if (buffet_chain_len(&T->out) + n > cap) return;
    if (!ts_append(T->R, T->pc, &T->out, T->id, T->out_pos, n, r >> 40)) {
        ts_bad(T->R, "append", BUFFET_ERR_NOMEM);
        return;
    }
    T->out_pos += n;
    __atomic_store_n(&F->produced, T->out_pos, __ATOMIC_RELEASE);   /* release: read by the finish check */
}

/* Receive stream t-1 from link A and hand a random front of it to that stream's relay mailbox. */
static void ts_receive_and_hand(ts_thread *T, uint64_t r) {
    ts_flow *F = &T->R->f[(T->id + T->R->n - 1) % T->R->n];
    size_t got = 0, n;
    buffet_chain piece;
    buffet_result res;
    if (__atomic_load_n(&F->box_len, __ATOMIC_RELAXED) < TS_RELAY_MAX) ts_recv(T, F->a_rx, F->a_kind, &T->in1, &got);
    if (buffet_chain_len(&T->in1) == 0) return;
    n = 1 + (size_t)(r >> 24) % buffet_chain_len(&T->in1);
    buffet_chain_init(&piece, T->R->a);
    res = buffet_net_take(&T->in1, n, &piece);
    if (res != BUFFET_OK || buffet_chain_len(&piece) != n) ts_bad(T->R, "take", res);
    pthread_mutex_lock(&F->mu);
    res = buffet_chain_concat(&F->box, &piece);
    __atomic_store_n(&F->box_len, buffet_chain_len(&F->box), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&F->mu);
    if (res != BUFFET_OK) ts_bad(T->R, "concat", res);
    buffet_chain_deinit(&piece);
}

/* Relay stream t-2: what its mailbox holds goes on over link B, a piece at a time. */
static void ts_relay(ts_thread *T, uint64_t r) {
    ts_flow *F = &T->R->f[(T->id + 2 * T->R->n - 2) % T->R->n];
    buffet_result res;
    pthread_mutex_lock(&F->mu);
    res = buffet_chain_concat(&T->fwd, &F->box);
    __atomic_store_n(&F->box_len, buffet_chain_len(&F->box), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&F->mu);
    if (res != BUFFET_OK) ts_bad(T->R, "concat", res);
    if (buffet_chain_len(&T->stage) == 0 && buffet_chain_len(&T->fwd) > 0) {
        size_t n = 1 + (size_t)(r >> 24) % TS_MSG_MAX;
        if (n > buffet_chain_len(&T->fwd)) n = buffet_chain_len(&T->fwd);
        res = buffet_net_take(&T->fwd, n, &T->stage);
        if (res != BUFFET_OK) ts_bad(T->R, "take", res);
    }
    if (buffet_chain_len(&T->stage) > 0) ts_send(T, F->b_tx, &T->stage, 0);
}

/* Verify stream t-3 from link B: checked in place, then dropped (whole, or a taken front). */
static void ts_verify(ts_thread *T, uint64_t r) {
    ts_flow *F = &T->R->f[(T->id + 3 * T->R->n - 3) % T->R->n];
    size_t got = 0, len;
    ts_recv(T, F->b_rx, F->b_kind, &T->in2, &got);
    len = buffet_chain_len(&T->in2);
    if (len == 0) return;
    if (!ts_holds(&T->in2, (uint64_t)(F - T->R->f), T->in2_pos)) ts_count(&T->R->bad_bytes);
    if ((r >> 30) & 1) {
        buffet_chain front;
        buffet_chain_init(&front, T->R->a);
        len = 1 + (size_t)(r >> 32) % len;
        if (buffet_net_take(&T->in2, len, &front) != BUFFET_OK) ts_bad(T->R, "take", BUFFET_ERR_INVALID);
        buffet_chain_deinit(&front);
    } else {
        buffet_chain_consume(&T->in2, len);
    }
    T->in2_pos += len;
    __atomic_fetch_add(&T->R->bytes, len, __ATOMIC_RELAXED);
    __atomic_store_n(&F->verified, T->in2_pos, __ATOMIC_RELEASE);   /* release: read by the finish check */
}

/* UDP: datagrams of stream t+50 (8-byte sequence number, then pattern) to thread t+1. */
static void ts_udp_send(ts_thread *T, uint64_t r, bool produce) {
    ts_flow *F = &T->R->f[T->id], *to = &T->R->f[(T->id + 1) % T->R->n];
    size_t want = produce ? 1 + (size_t)(r >> 8) % 8 : 0, sent = 0, i;
    uint64_t acked = __atomic_load_n(&F->u_acked, __ATOMIC_ACQUIRE);
    buffet_result res;
    while (T->nupend < want && T->useq - acked < TS_UDP_WINDOW) {
        size_t len = 8 + (size_t)(ts_rand(&T->rng) % 1400);
        buffet_pkt *p = buffet_pkt_alloc(T->pc, len);
        unsigned char *d;
        buffet_net_meta *m;
        if (!p) {
            ts_count(&T->R->exhausted);
            break;
        }
        d = (unsigned char *)buffet_pkt_append(p, len);
        memcpy(d, &T->useq, 8);
        for (i = 8; i < len; i++) d[i] = ts_byte(50 + T->id, T->useq * 4096 + i);
        m = buffet_net_meta_of(p);
        memset(m, 0, sizeof *m);
        m->peer = to->u_addr;
        T->upend[T->nupend++] = p;
        T->useq++;
    }
    if (T->nupend == 0) return;
    res = buffet_net_udp_send(F->u_fd, T->pc, T->upend, T->nupend, &sent);
    if (res != BUFFET_OK && res != BUFFET_AGAIN) ts_bad(T->R, "udp_send", res);
    /* the first `sent` went (and were freed); the rest stay ours, in order */
    memmove(T->upend, T->upend + sent, (T->nupend - sent) * sizeof T->upend[0]);
    T->nupend -= sent;
    __atomic_fetch_add(&F->u_sent, sent, __ATOMIC_RELEASE);   /* release: read by the finish check */
}

/* A received datagram's bytes and sequence: stream s, number seq. */
static bool ts_dgram_ok(buffet_pkt *p, uint64_t s, uint64_t seq) {
    const unsigned char *d = (const unsigned char *)buffet_pkt_data(p);
    uint64_t got;
    size_t i;
    if (p->len < 8) return false;
    memcpy(&got, d, 8);
    if (got != seq) return false;
    for (i = 8; i < p->len; i++)
        if (d[i] != ts_byte(s, seq * 4096 + i)) return false;
    return true;
}

/* Hand packet p (stream s, number seq) to thread `to`, which checks and frees it; false: full. */
static bool ts_hand(ts_run *R, unsigned to, buffet_pkt *p, uint64_t s, uint64_t seq) {
    ts_flow *F = &R->f[to];
    bool ok;
    pthread_mutex_lock(&F->pmu);
    ok = F->pn < TS_PBOX;
    if (ok) {
        F->pbox[F->pn].p = p;
        F->pbox[F->pn].stream = s;
        F->pbox[F->pn++].seq = seq;
    }
    pthread_mutex_unlock(&F->pmu);
    if (ok) ts_count(&R->handed);
    return ok;
}

static void ts_take_handed(ts_run *R, unsigned id, buffet_pkt_cache *pc) {
    ts_flow *F = &R->f[id];
    ts_pmsg m[TS_PBOX];
    unsigned n, i;
    pthread_mutex_lock(&F->pmu);
    n = F->pn;
    memcpy(m, F->pbox, n * sizeof m[0]);
    F->pn = 0;
    pthread_mutex_unlock(&F->pmu);
    for (i = 0; i < n; i++) {
        if (!ts_dgram_ok(m[i].p, m[i].stream, m[i].seq)) ts_count(&R->bad_bytes);
        if (pc) buffet_pkt_free(pc, m[i].p);
        else buffet_pkt_free_shared(m[i].p);
    }
}

static void ts_udp_recv(ts_thread *T) {
    unsigned from = (T->id + T->R->n - 1) % T->R->n;
    ts_flow *F = &T->R->f[T->id], *src = &T->R->f[from];
    buffet_pkt *pk[16];
    size_t got = 0, i;
    buffet_result res = buffet_net_udp_recv(F->u_fd, T->pc, -1, pk, 1 + (size_t)(ts_rand(&T->rng) % 16), &got);
    if (res == BUFFET_ERR_EXHAUSTED) {
        ts_count(&T->R->exhausted);
        return;
    }
    if (res != BUFFET_OK && res != BUFFET_AGAIN) ts_bad(T->R, "udp_recv", res);
    for (i = 0; i < got; i++) {
        buffet_pkt *p = pk[i];
        uint64_t r = ts_rand(&T->rng), seq = T->uexpect++;
        unsigned other = (T->id + 1 + (unsigned)(r >> 8) % (T->R->n - 1)) % T->R->n;
        if (!ts_dgram_ok(p, 50 + from, seq)) ts_count(&T->R->bad_seq);
        if (r % 3 == 0) {                           /* a clone goes to another thread */
            buffet_pkt *q = buffet_pkt_clone(T->pc, p);
            if (q) {
                ts_count(&T->R->clones);
                if (!ts_hand(T->R, other, q, 50 + from, seq)) buffet_pkt_free(T->pc, q);
            }
            buffet_pkt_free(T->pc, p);
        } else if (r % 3 == 1) {                    /* the packet itself goes */
            if (!ts_hand(T->R, other, p, 50 + from, seq)) buffet_pkt_free(T->pc, p);
        } else {
            buffet_pkt_free(T->pc, p);
        }
    }
    __atomic_fetch_add(&T->R->datagrams, got, __ATOMIC_RELAXED);
    __atomic_fetch_add(&src->u_acked, got, __ATOMIC_RELEASE);   /* release: the sender's window */
}

/* Zerocopy: stream 100+t over this thread's own tracker; it alone sends and drains. */
static void ts_zc_send(ts_thread *T, uint64_t r, bool produce) {
    ts_flow *F = &T->R->f[T->id];
    buffet_result res;
    size_t sent = 0, before;
    if (!T->zc) return;
    if (produce && buffet_chain_len(&T->zout) < TS_OUT_MAX &&
        T->zout_pos - __atomic_load_n(&F->zc_verified, __ATOMIC_RELAXED) < ((uint64_t)1 << 20)) {
        size_t n = 1 + (size_t)(r >> 20) % 4000;
        /* WRAP buffers only: their releases are counted, so a reference the tracker dropped
           twice, or never, shows */
        if (ts_append(T->R, T->pc, &T->zout, 100 + T->id, T->zout_pos, n, 0)) {
            T->zout_pos += n;
            __atomic_store_n(&F->zc_produced, T->zout_pos, __ATOMIC_RELEASE);
        }
    }
    before = buffet_chain_len(&T->zout);
    if (before) {
        res = buffet_net_send_chain_zc(F->z_tx, &T->zout, T->zc, 0, &sent);
        if (res != BUFFET_OK && res != BUFFET_AGAIN && res != BUFFET_ERR_EXHAUSTED) ts_bad(T->R, "send_chain_zc", res);
        if (buffet_chain_len(&T->zout) + sent != before) ts_bad(T->R, "send_chain_zc count", res);
    }
    if ((r >> 50) % 4 == 0 || !produce) {
        res = buffet_net_zc_drain(F->z_tx, T->zc, NULL);
        if (res != BUFFET_OK && res != BUFFET_AGAIN) ts_bad(T->R, "zc_drain", res);
    }
    __atomic_store_n(&F->zc_in_flight, buffet_net_zc_get_stats(T->zc).in_flight, __ATOMIC_RELEASE);
}

static void ts_zc_recv(ts_thread *T) {
    ts_flow *F = &T->R->f[(T->id + T->R->n - 1) % T->R->n];
    size_t got = 0, len;
    if (F->z_rx < 0) return;
    ts_recv(T, F->z_rx, TS_TCP, &T->zin, &got);
    len = buffet_chain_len(&T->zin);
    if (len == 0) return;
    if (!ts_holds(&T->zin, 100 + (uint64_t)(F - T->R->f), T->zin_pos)) ts_count(&T->R->bad_bytes);
    buffet_chain_consume(&T->zin, len);
    T->zin_pos += len;
    __atomic_store_n(&F->zc_verified, T->zin_pos, __ATOMIC_RELEASE);
}

/* Has every byte and datagram of every stream arrived where it ends, and every zerocopy call
   completed? Acquire: pairs with the owners' releases. */
static bool ts_all_done(ts_run *R) {
    unsigned i;
    for (i = 0; i < R->n; i++) {
        ts_flow *F = &R->f[i];
        if (!__atomic_load_n(&F->done, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&F->verified, __ATOMIC_ACQUIRE) != __atomic_load_n(&F->produced, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&F->zc_verified, __ATOMIC_ACQUIRE) != __atomic_load_n(&F->zc_produced, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&F->zc_in_flight, __ATOMIC_ACQUIRE) != 0 ||
            __atomic_load_n(&F->u_acked, __ATOMIC_ACQUIRE) != __atomic_load_n(&F->u_sent, __ATOMIC_ACQUIRE))
            return false;
    }
    return true;
}

static void ts_step(ts_thread *T, bool produce) {
    uint64_t r = ts_rand(&T->rng);
    unsigned what = (unsigned)(r % 100);
    ts_flow *F = &T->R->f[T->id];
    if ((r >> 60) == 0) sched_yield();
    if (what < 12) {
        if (produce) ts_produce(T, r);
    } else if (what < 25) {
        if (buffet_chain_len(&T->out)) ts_send(T, F->a_tx, &T->out, (r >> 9) & 1 ? BUFFET_NET_MORE : 0);
    } else if (what < 40) {
        ts_receive_and_hand(T, r);
    } else if (what < 52) {
        ts_relay(T, r);
    } else if (what < 65) {
        ts_verify(T, r);
    } else if (what < 74) {
        ts_udp_send(T, r, produce);
    } else if (what < 84) {
        ts_udp_recv(T);
    } else if (what < 90) {
        ts_zc_send(T, r, produce);
    } else if (what < 95) {
        ts_zc_recv(T);
    } else if (what < 99) {
        ts_take_handed(T->R, T->id, T->pc);
    } else {
        buffet_pkt_cache_flush(T->pc);
    }
}

static void *ts_thread_main(void *arg) {
    ts_thread *T = (ts_thread *)arg;
    ts_run *R = T->R;
    ts_flow *F = &R->f[T->id];
    unsigned long op;
    time_t start;
    buffet_chain *chains[7];
    unsigned i;
    buffet_net_zc_desc zd;
    chains[0] = &T->out; chains[1] = &T->in1; chains[2] = &T->fwd; chains[3] = &T->stage;
    chains[4] = &T->in2; chains[5] = &T->zout; chains[6] = &T->zin;
    for (i = 0; i < 7; i++) buffet_chain_init(chains[i], R->a);
    BT_CHECK(buffet_pkt_cache_create(&T->pc, R->pool, 1 + (uint32_t)(ts_rand(&T->rng) % 64)) == BUFFET_OK);
    memset(&zd, 0, sizeof zd);
    zd.allocator = R->a;
    if (F->z_tx >= 0) BT_CHECK(buffet_net_zc_create(&T->zc, &zd) == BUFFET_OK);
    for (op = 0; op < R->ops; op++) ts_step(T, true);
    /* The rest goes through: every role keeps working, producing nothing new, until every
       stream arrived (a stalled pipeline is a failure after 20 s). */
    __atomic_store_n(&F->done, 1, __ATOMIC_RELEASE);
    start = time(NULL);
    while (!ts_all_done(R)) {
        if (time(NULL) - start > 20) {
            ts_count(&R->stuck);
            fprintf(stderr, "thread %u stuck: out %zu in1 %zu fwd %zu stage %zu in2 %zu box %zu\n", T->id,
                    buffet_chain_len(&T->out), buffet_chain_len(&T->in1), buffet_chain_len(&T->fwd),
                    buffet_chain_len(&T->stage), buffet_chain_len(&T->in2), F->box_len);
            break;
        }
        ts_step(T, false);
        if (buffet_chain_len(&T->out)) ts_send(T, F->a_tx, &T->out, 0);   /* MORE must not hold the last bytes */
        if (T->nupend) ts_udp_send(T, 0, false);
        if (T->zc) ts_zc_send(T, 0, false);
    }
    ts_take_handed(R, T->id, T->pc);
    for (i = 0; i < 7; i++) {
        if (buffet_chain_len(chains[i]) && !__atomic_load_n(&R->stuck, __ATOMIC_RELAXED)) ts_bad(R, "chain left over", BUFFET_OK);
        buffet_chain_deinit(chains[i]);
    }
    for (i = 0; i < T->nupend; i++) buffet_pkt_free(T->pc, T->upend[i]);
    if (T->zc) {
        buffet_result r = buffet_net_zc_wait(F->z_tx, T->zc, 5000, NULL);
        BT_CHECK(r == BUFFET_OK);
        BT_CHECK(buffet_net_zc_destroy(T->zc) == BUFFET_OK);
    }
    buffet_pkt_cache_destroy(T->pc);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
   Set-up */

static void ts_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* A connected loopback TCP pair, both ends non-blocking. */
static bool ts_tcp(int *tx, int *rx) {
    int one = 1;
    if (!nu_tcp_pair(tx, rx)) return false;
    setsockopt(*tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ts_nonblock(*tx);
    ts_nonblock(*rx);
    return true;
}

static bool ts_link(int kind, int *tx, int *rx) {
    int sv[2], type = kind == TS_SEQPACKET ? SOCK_SEQPACKET : kind == TS_DGRAM ? SOCK_DGRAM : SOCK_STREAM;
    if (kind == TS_TCP) return ts_tcp(tx, rx);
    if (socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, sv) != 0) return false;
    *tx = sv[0];
    *rx = sv[1];
    return true;
}

static bool ts_zc_ok(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static void ts_run_once(unsigned n, bool faults) {
    ts_run *R = (ts_run *)calloc(1, sizeof(ts_run));
    ts_thread *T = (ts_thread *)calloc(TS_MAX, sizeof(ts_thread));
    pthread_t tid[TS_MAX];
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    buffet_pkt_stats st;
    buffet_debug_stats ds;
    buffet_net_faults fl;
    unsigned i, k;
    bool ok = true;
    uint64_t rng = ts_seed * 0x9E3779B97F4A7C15ull + n * 2 + faults;
    BT_CHECK(R && T);
    if (!R || !T) return;
    R->n = n;
    unsigned long total = (unsigned long)(bt_stress_ops() / TS_DIVISOR);
    if (total < 2000) total = 2000;   /* valgrind: still hundreds of rounds a thread */
    R->ops = total / n;
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;
    dd.quarantine_count = 16;
    BT_CHECK(buffet_debug_create(&R->dbg, &dd) == BUFFET_OK);
    R->a = buffet_debug_allocator(R->dbg);
    memset(&pd, 0, sizeof pd);
    pd.name = "stress net";
    pd.class_sizes[0] = 256;
    pd.class_sizes[1] = 2048;
    pd.user_size = sizeof(buffet_net_meta);
    pd.initial = 64;
    pd.grow = 64;
    pd.max = 8192;
    pd.no_huge_pages = true;
    pd.allocator = R->a;
    BT_CHECK(buffet_pkt_pool_create(&R->pool, &pd) == BUFFET_OK);
    R->zc = ts_zc_ok();
    for (i = 0; i < n && ok; i++) {
        ts_flow *F = &R->f[i];
        socklen_t len = sizeof F->u_addr;
        int big = 1 << 20;
        struct sockaddr_in sa;
        F->a_kind = (int)((ts_rand(&rng) >> 8) % TS_KINDS);
        F->b_kind = (int)((ts_rand(&rng) >> 8) % TS_KINDS);
        F->z_tx = F->z_rx = -1;
        ok = ts_link(F->a_kind, &F->a_tx, &F->a_rx) && ts_link(F->b_kind, &F->b_tx, &F->b_rx);
        if (ok && R->zc && !ts_tcp(&F->z_tx, &F->z_rx)) R->zc = false;
        F->u_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = ok && F->u_fd >= 0 && bind(F->u_fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
             getsockname(F->u_fd, &F->u_addr.sa, &len) == 0;
        if (ok) setsockopt(F->u_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        pthread_mutex_init(&F->mu, NULL);
        pthread_mutex_init(&F->pmu, NULL);
        buffet_chain_init(&F->box, R->a);
        printf("  stream %u: A %s, B %s%s\n", i, ts_kind_name[F->a_kind], ts_kind_name[F->b_kind],
               F->z_tx >= 0 ? ", zerocopy tcp" : "");
    }
    BT_CHECK(ok);
    if (!ok) return;   /* no loopback: nothing to test (the other net tests say so) */
    memset(&fl, 0, sizeof fl);
    fl.seed = ts_seed + n;
    fl.fd = -1;
    fl.short_per_million = 300000;
    fl.again_per_million = 100000;
    fl.intr_per_million = 100000;
    if (faults) buffet_net_faults_set(&fl);
    for (i = 0; i < n; i++) {
        T[i].R = R;
        T[i].id = i;
        T[i].rng = ts_seed * 0xD1B54A32D192ED03ull + i * 77 + n + faults;
        BT_CHECK(pthread_create(&tid[i], NULL, ts_thread_main, &T[i]) == 0);
    }
    for (i = 0; i < n; i++) pthread_join(tid[i], NULL);
    buffet_net_faults_set(NULL);
    for (i = 0; i < n; i++) {
        ts_flow *F = &R->f[i];
        int fds[7];
        ts_take_handed(R, i, NULL);
        BT_CHECK(buffet_chain_len(&F->box) == 0);
        buffet_chain_deinit(&F->box);
        pthread_mutex_destroy(&F->mu);
        pthread_mutex_destroy(&F->pmu);
        fds[0] = F->a_tx; fds[1] = F->a_rx; fds[2] = F->b_tx; fds[3] = F->b_rx; fds[4] = F->z_tx; fds[5] = F->z_rx;
        fds[6] = F->u_fd;
        for (k = 0; k < 7; k++)
            if (fds[k] >= 0) close(fds[k]);
        BT_CHECK(F->verified == F->produced && F->zc_verified == F->zc_produced && F->u_acked == F->u_sent);
    }
    BT_CHECK(R->stuck == 0 && R->bad_bytes == 0 && R->bad_seq == 0 && R->bad_results == 0);
    BT_CHECK(R->created == R->released);   /* every WRAP buffer released exactly once */
    st = buffet_pkt_pool_get_stats(R->pool);
    for (k = 0; k <= st.nclasses; k++) BT_CHECK(st.cls[k].in_use == 0 && st.cls[k].allocs == st.cls[k].frees);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    BT_CHECK(buffet_pkt_pool_report_leaks(R->pool, NULL) == 0);
    if (faults) BT_CHECK(fl.shorts > 0 && fl.agains > 0 && fl.intrs > 0);
    printf("stress net, %u threads, faults %s: %lu operations a thread, %llu stream bytes and %llu datagrams "
           "verified, %llu packets handed over (%llu clones), %llu WRAP buffers released, %llu pool-full waits, "
           "zerocopy %s, seed %llu\n", n, faults ? "on" : "off", R->ops, (unsigned long long)R->bytes,
           (unsigned long long)R->datagrams, (unsigned long long)R->handed, (unsigned long long)R->clones,
           (unsigned long long)R->released, (unsigned long long)R->exhausted, R->zc ? "on" : "off (not here)",
           (unsigned long long)ts_seed);
    if (R->stuck)
        for (i = 0; i < n; i++)
            fprintf(stderr, "stream %u: produced %llu verified %llu, zc %llu/%llu in flight %u, udp %llu/%llu\n", i,
                    (unsigned long long)R->f[i].produced, (unsigned long long)R->f[i].verified,
                    (unsigned long long)R->f[i].zc_produced, (unsigned long long)R->f[i].zc_verified,
                    R->f[i].zc_in_flight, (unsigned long long)R->f[i].u_sent, (unsigned long long)R->f[i].u_acked);
    buffet_pkt_pool_destroy(R->pool);
    ds = buffet_debug_get_stats(R->dbg);
    BT_CHECK(ds.live_count == 0 && ds.double_frees == 0 && ds.foreign_frees == 0 && ds.corruptions == 0);
    if (ds.live_count) buffet_debug_report_leaks(R->dbg, stderr);
    buffet_debug_destroy(R->dbg);
    free(T);
    free(R);
}

static void test_stress_net_2(void) { ts_run_once(2, false); }
static void test_stress_net_2_faults(void) { ts_run_once(2, true); }
static void test_stress_net_4(void) { ts_run_once(4, false); }
static void test_stress_net_4_faults(void) { ts_run_once(4, true); }

int main(void) {
    const char *s = getenv("BUFFET_STRESS_SEED");
    ts_seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    if (ts_seed == 0) ts_seed = 1;
    printf("stress seed %llu (BUFFET_STRESS_SEED=%llu repeats it), %llu operations per run (bt_stress_ops() / %d)\n",
           (unsigned long long)ts_seed, (unsigned long long)ts_seed, (unsigned long long)(bt_stress_ops() / TS_DIVISOR),
           TS_DIVISOR);
    BT_RUN(test_stress_net_2);
    BT_RUN(test_stress_net_2_faults);
    BT_RUN(test_stress_net_4);
    BT_RUN(test_stress_net_4_faults);
    return bt_finish("test_stress_net.c");
}
