/* fuzz_net.c - libFuzzer target for buffet_net.h's streams. The input sets up a non-blocking
   UNIX stream socket pair and the fault layer (short calls, EAGAIN and EINTR at rates and a seed
   the input picks), then runs a sequence of operations: append bytes to the sending chain (heap,
   mmap, shared-memory and packet buffers, slices starting inside them, 0-length appends),
   send_chain (with and without MORE and SENDFILE), recv into heap buffers of a size the input
   picks or into packets, take n bytes and take up to a delimiter (with and without limits) off
   the receiving chain, consume, split, a failing allocator under the receive buffers, and bad
   input (NULL chains, a closed descriptor, a chain taken into itself). A plain model keeps the
   bytes written and not yet sent, the bytes read and not yet taken, and the bytes taken; after
   every step buffet's chains must hold exactly the model's bytes (every byte compared), the
   stream must arrive in order with nothing lost or doubled, and each result must be one the
   manual allows. At the end the socket is drained and the debug allocator under every buffer
   must hold nothing.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_net.c -o fuzz_net
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments. */
#define BUFFET_IMPLEMENTATION
#include "../../buffet_net.h"
#include "fuzz.h"

#include <sys/socket.h>
#include <unistd.h>

#define FN_MAX (1u << 20)   /* bytes the model follows at most in each place */
#define FN_STEPS 200

typedef struct fn {
    fz_in in;
    buffet_debug *dbg;
    buffet_allocator a;
    buffet_failing fail;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    buffet_net_faults faults;
    int sv[2];
    buffet_chain out, in_c, taken;   /* to send; received, not taken; taken */
    uint64_t next_byte;              /* the stream position of the next byte appended to out */
    uint64_t sent;                   /* stream bytes that left out (the kernel took them) */
    uint64_t received;               /* stream bytes that arrived in in_c */
    uint64_t taken_from;             /* the stream position of taken's first byte */
    uint8_t salt;
} fn;

/* Stream byte i: every byte says where in the stream it belongs. A delimiter byte (0x0a) comes
   now and then, so take_until finds one. */
static unsigned char fn_byte(const fn *S, uint64_t i) {
    uint64_t h = (i + S->salt) * 0x9E3779B97F4A7C15ull;
    return (h >> 59) == 3 ? 0x0a : (unsigned char)(h >> 40);
}

/* Do chain c's bytes equal stream bytes [from, from + len(c))? */
static bool fn_holds(const fn *S, const buffet_chain *c, uint64_t from) {
    size_t i, j;
    for (i = 0; i < buffet_chain_count(c); i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        const unsigned char *p = (const unsigned char *)buffet_slice_data(s);
        for (j = 0; j < s->len; j++, from++)
            if (p[j] != fn_byte(S, from)) return false;
    }
    return true;
}

static void fn_check(const fn *S) {
    FZ_CHECK(buffet_chain_len(&S->out) == S->next_byte - S->sent);
    FZ_CHECK(fn_holds(S, &S->out, S->sent));
    FZ_CHECK(S->taken_from + buffet_chain_len(&S->taken) + buffet_chain_len(&S->in_c) == S->received);
    FZ_CHECK(fn_holds(S, &S->taken, S->taken_from));
    FZ_CHECK(fn_holds(S, &S->in_c, S->taken_from + buffet_chain_len(&S->taken)));
    FZ_CHECK(S->received <= S->sent);
}

static void op_append(fn *S) {
    unsigned kind = fz_u8(&S->in) % 4;
    size_t n = fz_u16(&S->in) % 9000, pad = fz_u8(&S->in) % 16, i;
    if (buffet_chain_len(&S->out) + n > FN_MAX) return;
    if (kind == 3) {   /* a packet, by reference */
        buffet_pkt *p = buffet_pkt_alloc(S->cache, n);
        unsigned char *d = p ? (unsigned char *)buffet_pkt_append(p, n) : NULL;
        if (!p) return;   /* bigger than the class, or the pool is out: not the model's business */
        for (i = 0; d && i < n; i++) d[i] = fn_byte(S, S->next_byte + i);
        if (d && buffet_pkt_to_chain(p, &S->out) == BUFFET_OK) S->next_byte += n;
        buffet_pkt_free(S->cache, p);
    } else {
        buffet_buf_desc d;
        buffet_buf *b = NULL;
        memset(&d, 0, sizeof d);
        d.kind = kind == 0 ? BUFFET_BUF_HEAP : kind == 1 ? BUFFET_BUF_MMAP : BUFFET_BUF_SHM;
        d.size = n + pad + 1;
        d.allocator = S->a;
        FZ_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
        for (i = 0; i < n; i++) ((unsigned char *)b->data)[pad + i] = fn_byte(S, S->next_byte + i);
        FZ_CHECK(buffet_chain_append(&S->out, b, pad, n) == BUFFET_OK);   /* 0 bytes: adds nothing */
        S->next_byte += n;
        buffet_buf_unref(b);
    }
}

static void op_send(fn *S) {
    unsigned flags = fz_u8(&S->in) & 3;
    size_t before = buffet_chain_len(&S->out), sent = 99;
    buffet_result r = buffet_net_send_chain(S->sv[0], &S->out, flags, &sent);
    FZ_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
    FZ_CHECK(sent <= before && buffet_chain_len(&S->out) == before - sent);
    FZ_CHECK(r != BUFFET_OK || buffet_chain_len(&S->out) == 0);
    S->sent += sent;
}

static void op_recv(fn *S) {
    buffet_net_source src;
    size_t max = fz_u16(&S->in) % 20000, got = 99, before = buffet_chain_len(&S->in_c);
    unsigned how = fz_u8(&S->in) % 4;
    buffet_result r;
    memset(&src, 0, sizeof src);
    src.allocator = how == 2 ? buffet_failing_allocator(&S->fail) : S->a;
    src.buf_size = how == 0 ? 0 : 1 + fz_u16(&S->in) % 5000;
    src.packets = how == 3 ? S->cache : NULL;
    if (how == 2) {
        S->fail.fail_at = S->fail.allocs + 1 + fz_u8(&S->in) % 4;
        S->fail.fail_after = fz_u8(&S->in) & 1;
    }
    r = buffet_net_recv(S->sv[1], &S->in_c, how == 0 && (fz_u8(&S->in) & 1) ? NULL : &src, max, &got);
    S->fail.fail_at = 0;
    /* OK with bytes; AGAIN with none; an allocator or an exhausted pool: nothing, or bytes read
       but the rest not kept -- which must not happen silently: this model has no lost bytes */
    FZ_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN || r == BUFFET_ERR_NOMEM || r == BUFFET_ERR_EXHAUSTED);
    FZ_CHECK((r == BUFFET_OK) == (got > 0));
    FZ_CHECK(buffet_chain_len(&S->in_c) == before + got);
    FZ_CHECK(max == 0 || got <= max);
    S->received += got;
}

static void op_take(fn *S) {
    size_t n = fz_u16(&S->in) % 12000, before = buffet_chain_len(&S->in_c), tb = buffet_chain_len(&S->taken);
    buffet_result r = buffet_net_take(&S->in_c, n, &S->taken);
    FZ_CHECK(r == (n <= before ? BUFFET_OK : BUFFET_AGAIN));
    FZ_CHECK(buffet_chain_len(&S->taken) == tb + (r == BUFFET_OK ? n : 0));
}

static void op_take_until(fn *S) {
    static const unsigned char delims[3][2] = {{0x0a, 0}, {0x0a, 0x0a}, {0, 1}};
    unsigned which = fz_u8(&S->in) % 3;
    size_t dlen = which == 0 ? 1 : 2, max = fz_u8(&S->in) & 1 ? 0 : fz_u16(&S->in) % 9000;
    size_t before = buffet_chain_len(&S->in_c), tb = buffet_chain_len(&S->taken), pos = 0;
    buffet_result want, r;
    /* the model: where the delimiter first ends in in_c's bytes */
    bool found = buffet_chain_find(&S->in_c, 0, delims[which], dlen, &pos) == BUFFET_OK;
    if (found && (max == 0 || pos + dlen <= max)) want = BUFFET_OK;
    else want = max != 0 && before >= max ? BUFFET_ERR_TOO_LARGE : BUFFET_AGAIN;
    r = buffet_net_take_until(&S->in_c, delims[which], dlen, max, &S->taken);
    FZ_CHECK(r == want);
    FZ_CHECK(buffet_chain_len(&S->taken) == tb + (r == BUFFET_OK ? pos + dlen : 0));
    if (r == BUFFET_OK) {   /* the taken part ends with the delimiter */
        unsigned char tail[2];
        FZ_CHECK(buffet_chain_copy_out(&S->taken, buffet_chain_len(&S->taken) - dlen, tail, dlen) == BUFFET_OK);
        FZ_CHECK(memcmp(tail, delims[which], dlen) == 0);
    }
}

/* The taken bytes are handled: dropped from the front. */
static void op_consume_taken(fn *S) {
    size_t n = buffet_chain_len(&S->taken), k = fz_u16(&S->in) % (n + 1);
    FZ_CHECK(buffet_chain_consume(&S->taken, k) == BUFFET_OK);
    S->taken_from += k;
}

static void op_bad(fn *S) {
    size_t x = 5;
    int closed = dup(S->sv[0]);
    close(closed);
    FZ_CHECK(buffet_net_send_chain(S->sv[0], NULL, 0, &x) == BUFFET_ERR_INVALID && x == 0);
    FZ_CHECK(buffet_net_recv(S->sv[1], NULL, NULL, 0, &x) == BUFFET_ERR_INVALID && x == 0);
    FZ_CHECK(buffet_net_take(&S->in_c, 1, &S->in_c) == BUFFET_ERR_INVALID);
    FZ_CHECK(buffet_net_take_until(&S->in_c, "\n", 0, 0, &S->taken) == BUFFET_ERR_INVALID);
    if (buffet_chain_len(&S->out) > 0) {
        size_t before = buffet_chain_len(&S->out);
        buffet_net_faults_set(NULL);   /* EBADF must come from the kernel, not from the layer */
        FZ_CHECK(buffet_net_send_chain(closed, &S->out, 0, &x) == BUFFET_ERR_INVALID && buffet_chain_len(&S->out) == before);
        buffet_net_faults_set(&S->faults);
    }
}

#ifdef __cplusplus
extern "C"
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fn *S = (fn *)calloc(1, sizeof *S);
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    int steps = 0;
    FZ_CHECK(S != NULL);
    S->in.p = data;
    S->in.n = size;
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;
    FZ_CHECK(buffet_debug_create(&S->dbg, &dd) == BUFFET_OK);
    S->a = buffet_debug_allocator(S->dbg);
    S->fail.parent = S->a;
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 512;
    pd.class_sizes[1] = 4096;
    pd.initial = 16;
    pd.max = 64;
    pd.no_huge_pages = true;
    pd.allocator = S->a;
    FZ_CHECK(buffet_pkt_pool_create(&S->pool, &pd) == BUFFET_OK);
    FZ_CHECK(buffet_pkt_cache_create(&S->cache, S->pool, 8) == BUFFET_OK);
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, S->sv) == 0);
    FZ_CHECK(buffet_chain_init(&S->out, S->a) == BUFFET_OK && buffet_chain_init(&S->in_c, S->a) == BUFFET_OK &&
             buffet_chain_init(&S->taken, S->a) == BUFFET_OK);
    S->salt = fz_u8(&S->in);
    S->faults.seed = fz_u64(&S->in);
    S->faults.fd = -1;
    S->faults.short_per_million = (uint32_t)fz_u8(&S->in) * 3900u;
    S->faults.again_per_million = (uint32_t)fz_u8(&S->in) * 1500u;
    S->faults.intr_per_million = (uint32_t)fz_u8(&S->in) * 1500u;
    buffet_net_faults_set(&S->faults);
    while (fz_more(&S->in) && steps++ < FN_STEPS) {
        switch (fz_u8(&S->in) % 9) {
        case 0: case 1: op_append(S); break;
        case 2: case 3: op_send(S); break;
        case 4: case 5: op_recv(S); break;
        case 6: op_take(S); break;
        case 7: op_take_until(S); break;
        default: if (fz_u8(&S->in) & 1) op_consume_taken(S); else op_bad(S); break;
        }
        fn_check(S);
    }
    /* everything that left must arrive: drain without faults */
    buffet_net_faults_set(NULL);
    while (S->received < S->sent) {
        size_t got = 0;
        buffet_result r = buffet_net_recv(S->sv[1], &S->in_c, NULL, 1 << 20, &got);
        FZ_CHECK(r == BUFFET_OK);
        S->received += got;
    }
    fn_check(S);
    close(S->sv[0]);
    close(S->sv[1]);
    buffet_chain_deinit(&S->out);
    buffet_chain_deinit(&S->in_c);
    buffet_chain_deinit(&S->taken);
    buffet_pkt_cache_destroy(S->cache);
    buffet_pkt_pool_destroy(S->pool);
    FZ_CHECK(buffet_debug_get_stats(S->dbg).live_count == 0);
    buffet_debug_destroy(S->dbg);
    free(S);
    return 0;
}
