/* fuzz_l2sw.c - libFuzzer target for the frame path of examples/l2_switch.c: what a hostile host
   on any port can make the switch do. The input is a program of operations on a switch of 4
   ports: frames of 0 to 2047 bytes in on a port (addresses from a small set, so that stations
   are learned, looked up, moved and filtered, or any bytes; tags 802.1Q, 802.1ad with or without
   an inner tag, cut anywhere), time going on with ageing sweeps, ports going down and up. A model
   (a plain list of stations) decides each frame: runt, filtered, forwarded to one port, or
   flooded to every other port that is up; learning, moves, a full table. After each frame the
   ports that got it, the switch's counters and its table must be the model's, every station of
   the model must be found on its port, and every packet handed out must come back: the pool is
   empty when the input ends.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_l2sw.c -o fuzz_l2sw
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments. */
#define L2_SWITCH_NO_MAIN
#include "../../examples/l2_switch.c"
#include "fuzz.h"

#define NPORTS 4
#define MODEL_MAX (L2SW_TABLE / 4 * 3)   /* the switch's table fills to 3/4 */

typedef struct station {
    uint64_t key, seen;
    unsigned port;
} station;

static station model[MODEL_MAX];
static size_t nmodel;

static station *model_find(uint64_t key) {
    for (size_t i = 0; i < nmodel; i++)
        if (model[i].key == key) return &model[i];
    return NULL;
}
static void model_remove_if(int port, uint64_t now, uint64_t age) {
    for (size_t i = 0; i < nmodel;) {
        if (port >= 0 ? model[i].port == (unsigned)port : now - model[i].seen >= age) model[i] = model[--nmodel];
        else i++;
    }
}

/* A MAC address: one of a few (two stations, broadcast, multicast, zero), or six bytes. */
static void pick_mac(fz_in *in, unsigned char *m) {
    static const unsigned char set[6][6] = {{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3},
                                            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {1, 0, 0x5e, 0, 0, 1}, {0, 0, 0, 0, 0, 0}};
    uint8_t k = fz_u8(in);
    if (k % 8 < 6) {
        memcpy(m, set[k % 8], 6);
        return;
    }
    for (int i = 0; i < 6; i++) m[i] = fz_u8(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_in in = {data, size};
    l2sw *s = (l2sw *)calloc(1, sizeof *s);
    buffet_pkt_pool_desc pd;
    uint64_t now = 1, runts = 0, filtered = 0, forwarded = 0, flooded = 0, learned = 0, moved = 0, full = 0;
    int ops = 0;
    FZ_CHECK(s != NULL);
    memset(&pd, 0, sizeof pd);
    pd.name = "fuzz-l2sw";
    pd.class_sizes[0] = 256;
    pd.class_sizes[1] = 2048;
    pd.initial = 16;
    pd.no_huge_pages = true;
    pd.log.fn = buffet_log_silent;
    FZ_CHECK(buffet_pkt_pool_create(&s->pool, &pd) == BUFFET_OK);
    FZ_CHECK(buffet_pkt_cache_create(&s->cache, s->pool, 0) == BUFFET_OK);
    s->nports = NPORTS;
    s->age_ms = 1000;
    for (unsigned i = 0; i < NPORTS; i++) {
        snprintf(s->port[i].name, sizeof s->port[i].name, "f%u", i);
        s->port[i].up = true;
    }
    nmodel = 0;
    while (fz_more(&in) && ops++ < 4000) {
        uint8_t op = fz_u8(&in) % 8;
        if (op == 5) {   /* time goes on; stations not heard from for age_ms go */
            now += (uint64_t)fz_u16(&in) * 4;
            s->aged += l2sw_sweep(s, -1, now);
            model_remove_if(-1, now, s->age_ms);
        } else if (op == 6) {   /* a port goes down: what l2sw_port_down does to the table */
            unsigned p = fz_u8(&in) % NPORTS;
            s->port[p].up = false;
            s->flushed += l2sw_sweep(s, (int)p, 0);
            model_remove_if((int)p, 0, 0);
        } else if (op == 7) {
            s->port[fz_u8(&in) % NPORTS].up = true;
        } else {   /* a frame in on port `in_port` */
            unsigned in_port = fz_u8(&in) % NPORTS, got = 0, want = 0;
            size_t len = fz_u16(&in) % 2048, need = 14, before[NPORTS];
            unsigned char f[2048];
            uint16_t type;
            unsigned vid = 0;
            buffet_pkt *p;
            memset(f, 0, sizeof f);
            pick_mac(&in, f);
            pick_mac(&in, f + 6);
            switch (fz_u8(&in) % 4) {   /* tags: none, 802.1Q, 802.1ad with or without an inner one */
            case 1: memcpy(f + 12, "\x81\x00", 2); break;
            case 2: memcpy(f + 12, "\x88\xa8", 2); break;
            case 3: memcpy(f + 12, "\x88\xa8\x00\x07\x81\x00", 6); break;
            default: f[12] = fz_u8(&in); f[13] = fz_u8(&in); break;
            }
            if (f[12] == 0x81 || f[12] == 0x88) {
                f[14] = fz_u8(&in) & 0x1f;   /* VLAN ids 0..0x1fff & 0xfff: a few, to collide */
                f[15] = fz_u8(&in) % 4;
            }
            for (size_t i = 18; i < len && i < 64; i++) f[i] = fz_u8(&in);
            p = buffet_pkt_alloc(s->cache, len);
            FZ_CHECK(p != NULL);
            if (len) memcpy(buffet_pkt_append(p, len), f, len);
            for (unsigned i = 0; i < NPORTS; i++) before[i] = s->port[i].ntx;
            l2sw_frame(s, in_port, p, now);
            /* the model's decision */
            type = (uint16_t)(f[12] << 8 | f[13]);
            if (type == 0x8100 || type == 0x88a8) {
                need = 18;
                if (len >= 18) {
                    vid = ((unsigned)f[14] << 8 | f[15]) & 0xfffu;
                    if (type == 0x88a8 && f[16] == 0x81 && f[17] == 0x00) need = 22;
                }
            }
            if (len < 14 || len < need) {
                runts++;
            } else {
                uint64_t src = 0, dst = 0;
                station *d;
                for (int i = 0; i < 6; i++) {
                    dst = dst << 8 | f[i];
                    src = src << 8 | f[6 + i];
                }
                if (!(f[6] & 1) && src != 0) {
                    station *e = model_find(src << 12 | vid);
                    if (e) {
                        if (e->port != in_port) moved++;
                        e->port = in_port;
                        e->seen = now;
                    } else if (nmodel < MODEL_MAX) {
                        model[nmodel].key = src << 12 | vid;
                        model[nmodel].port = in_port;
                        model[nmodel++].seen = now;
                        learned++;
                    } else {
                        full++;
                    }
                }
                d = (f[0] & 1) ? NULL : model_find(dst << 12 | vid);
                if (d && d->port == in_port) {
                    filtered++;
                } else if (d && s->port[d->port].up) {
                    forwarded++;
                    want = 1u << d->port;
                } else {
                    flooded++;
                    for (unsigned i = 0; i < NPORTS; i++)
                        if (i != in_port && s->port[i].up) want |= 1u << i;
                }
            }
            /* what the switch did, then every queued packet freed (the sends) */
            for (unsigned i = 0; i < NPORTS; i++) {
                FZ_CHECK(s->port[i].ntx == before[i] || s->port[i].ntx == before[i] + 1);
                if (s->port[i].ntx == before[i] + 1) got |= 1u << i;
                for (size_t k = 0; k < s->port[i].ntx; k++) {
                    FZ_CHECK(s->port[i].tx[k]->pkt_len == len);
                    buffet_pkt_free(s->cache, s->port[i].tx[k]);
                }
                s->port[i].ntx = 0;
            }
            FZ_CHECK(got == want);
        }
        /* the switch's counters and table are the model's */
        {
            uint64_t r = 0, fl = 0, fw = 0, fd = 0;
            for (unsigned i = 0; i < NPORTS; i++) {
                r += s->port[i].runts;
                fl += s->port[i].filtered;
                fw += s->port[i].forwarded;
                fd += s->port[i].flooded;
            }
            FZ_CHECK(r == runts && fl == filtered && fw == forwarded && fd == flooded);
            FZ_CHECK(s->learned == learned && s->moved == moved && s->table_full == full);
            FZ_CHECK(s->entries == nmodel);
            for (size_t i = 0; i < nmodel; i++) {
                l2sw_entry *e = l2sw_find(s, model[i].key);
                FZ_CHECK(e != NULL && e->port == model[i].port && e->seen_ms == model[i].seen);
            }
        }
    }
    buffet_pkt_cache_flush(s->cache);
    {
        buffet_pkt_stats st = buffet_pkt_pool_get_stats(s->pool);
        size_t out = 0;
        for (unsigned k = 0; k <= st.nclasses; k++) out += st.cls[k].in_use;
        FZ_CHECK(out == 0);
    }
    buffet_pkt_cache_destroy(s->cache);
    buffet_pkt_pool_destroy(s->pool);
    free(s);
    return 0;
}
