/* l2_switch.c - a learning Ethernet switch between N interfaces (2 to 16) on buffet packets.
   Each port is an AF_PACKET TPACKET_V3 ring (buffet_net_afp, promiscuous), or with -x afxdp an
   AF_XDP socket on the interface's queue 0 (buffet_net_xdp); one thread polls them all. Source
   addresses are learned per (MAC, VLAN) into an open-addressed table with ageing; a frame to a
   known address goes out of that one port, a frame to its own ingress port is filtered, and
   unknown unicast, broadcast and multicast are flooded to every other port as zero-copy clones
   (the last port gets the original). Received frames are packets over the ring's memory
   (AF_XDP: pool buffers the kernel wrote them into): nothing is copied until the transmit ring
   (AF_XDP sends a frame received alone as it is, and copies flooded ones, whose bytes clones
   share). A port whose interface goes down or away is closed for good and its addresses
   forgotten; the others keep switching.
   Statistics (the switch's counters, each port's ring counters, the pool's) go out as
   Prometheus text on SIGUSR1, once at start and at exit.

       l2_switch [-t seconds] [-s stats_file] [-a age_seconds] [-r ring_size]
                 [-x afpacket|afxdp] if1 if2 [...if16]

   -r: AF_PACKET, the receive ring's blocks of 64 KiB (2 to 65536, default 64); AF_XDP, the
   entries of each of a socket's four rings (a power of two, 64 to 16384, default 1024). AF_XDP
   ports take frames of up to 1792 bytes (a 2048-byte buffer less the kernel's headroom); their
   pool is made whole at start, about nports * (3 * ring_size + 128) buffers of 2 KiB.
   Needs root (CAP_NET_RAW; AF_XDP also CAP_NET_ADMIN and CAP_BPF) and interfaces that are up.
   Exit: 0, 1 (a port could not be opened, or a buffer did not come back to the pool), 2 (usage).
   Build: cc -std=c11 -O2 examples/l2_switch.c -o l2_switch -pthread */
#define BUFFET_NET_AFPACKET 1
#define BUFFET_NET_AFXDP 1
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define L2SW_MAX_PORTS 16
#define L2SW_BURST 128                      /* frames taken off a ring per loop turn: one call per
                                               port, so a busy port cannot starve the others, and
                                               the ring blocks its frames hold go back at the
                                               turn's sends before more are taken */
#define L2SW_TXQ 256                        /* frames queued per egress port before a send */
#define L2SW_TABLE_BITS 12
#define L2SW_TABLE (1u << L2SW_TABLE_BITS)  /* MAC table slots; filled to 3/4 at most */

typedef struct l2sw_entry {
    uint64_t key;       /* MAC << 12 | VLAN id */
    uint64_t seen_ms;   /* last frame from it (monotonic) */
    uint8_t port;
    bool used;
} l2sw_entry;

typedef struct l2sw_port {
    char name[IF_NAMESIZE];
    buffet_net_afp *afp;             /* AF_PACKET ports; NULL once the port went down */
    buffet_net_xdp *xdp;             /* AF_XDP ports; likewise */
    bool up;
    buffet_net_afp_stats afp_stats;  /* the socket's counters as last read (kept after it went) */
    buffet_net_xdp_stats xdp_stats;
    /* per ingress port */
    uint64_t rx_frames, forwarded, flooded, filtered, runts, rx_errors;
    /* per egress port */
    uint64_t tx_frames, too_large, tx_full, tx_errors, clone_failed, port_down;
    size_t ntx;
    buffet_pkt *tx[L2SW_TXQ];        /* frames to send at the end of this loop turn */
} l2sw_port;

typedef struct l2sw {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    unsigned nports;
    bool xdp;                        /* -x afxdp */
    uint64_t age_ms;
    uint64_t learned, moved, aged, flushed, table_full;
    size_t entries;
    l2sw_port port[L2SW_MAX_PORTS];
    l2sw_entry table[L2SW_TABLE];
} l2sw;

static volatile sig_atomic_t l2sw_stop, l2sw_dump;
/* For a program that includes this file (L2_SWITCH_NO_MAIN), such as bench/bench_rings.c: called
   as a run that went well ends, ports closed and read, the cache flushed (so the pool's counters
   are whole), the pool not yet gone: the switch's counters without parsing its statistics. */
static void (*l2sw_at_end)(l2sw *s);
static void l2sw_on_stop(int sig) { (void)sig; l2sw_stop = 1; }
static void l2sw_on_usr1(int sig) { (void)sig; l2sw_dump = 1; }

static uint64_t l2sw_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static uint64_t l2sw_mac(const unsigned char *m) {
    uint64_t v = 0;
    for (int i = 0; i < 6; i++) v = v << 8 | m[i];
    return v;
}

/* ---- the MAC table: linear probing, deletion by backward shift (no tombstones, so lookups
   never slow down as entries age out) ---- */
static size_t l2sw_home(uint64_t key) { return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - L2SW_TABLE_BITS)); }

static l2sw_entry *l2sw_find(l2sw *s, uint64_t key) {
    for (size_t i = l2sw_home(key);; i = (i + 1) & (L2SW_TABLE - 1)) {
        if (!s->table[i].used) return NULL;
        if (s->table[i].key == key) return &s->table[i];
    }
}

static void l2sw_learn(l2sw *s, uint64_t key, unsigned port, uint64_t now) {
    size_t i = l2sw_home(key);
    for (; s->table[i].used; i = (i + 1) & (L2SW_TABLE - 1)) {
        l2sw_entry *e = &s->table[i];
        if (e->key != key) continue;
        if (e->port != port) {   /* the station moved (or a loop): the newest port wins */
            s->moved++;
            e->port = (uint8_t)port;
        }
        e->seen_ms = now;
        return;
    }
    if (s->entries >= L2SW_TABLE / 4 * 3) {   /* full: the frame is still switched, by flooding */
        s->table_full++;
        return;
    }
    s->table[i].key = key;
    s->table[i].seen_ms = now;
    s->table[i].port = (uint8_t)port;
    s->table[i].used = true;
    s->entries++;
    s->learned++;
}

static void l2sw_remove_at(l2sw *s, size_t hole) {
    size_t j = hole;
    for (;;) {
        j = (j + 1) & (L2SW_TABLE - 1);
        if (!s->table[j].used) break;
        size_t k = l2sw_home(s->table[j].key);
        /* an entry whose home lies cyclically in (hole, j] is still reachable where it is */
        if (hole <= j ? (hole < k && k <= j) : (hole < k || k <= j)) continue;
        s->table[hole] = s->table[j];
        hole = j;
    }
    s->table[hole].used = false;
    s->entries--;
}

/* Remove the entries of `port` (>= 0), or (port < 0) those not seen for the ageing time.
   Returns how many went. Entries shifted back into the slot just emptied are looked at again
   (the index stays); any shifted across the end were looked at already. */
static size_t l2sw_sweep(l2sw *s, int port, uint64_t now) {
    size_t gone = 0;
    for (size_t i = 0; i < L2SW_TABLE;) {
        l2sw_entry *e = &s->table[i];
        if (e->used && (port >= 0 ? e->port == (unsigned)port : now - e->seen_ms >= s->age_ms)) {
            l2sw_remove_at(s, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}

/* ---- ports: the two kinds of socket behind one face ---- */
static buffet_result l2sw_port_open(l2sw *s, l2sw_port *o, uint32_t ring) {
    buffet_result r;
    if (s->xdp) {
        buffet_net_xdp_desc d;
        memset(&d, 0, sizeof d);
        d.cache = s->cache;
        d.cls = 0;   /* the pool's one data class (see l2sw_main) */
        d.ifname = o->name;
        d.ring_size = ring;
        r = buffet_net_xdp_create(&o->xdp, &d);
    } else {
        buffet_net_afp_desc d;
        memset(&d, 0, sizeof d);
        d.cache = s->cache;
        d.ifname = o->name;
        d.flags = BUFFET_NET_AFP_PROMISC;
        d.blocks = ring;
        r = buffet_net_afp_create(&o->afp, &d);
    }
    o->up = r == BUFFET_OK;
    return r;
}

static int l2sw_port_fd(const l2sw_port *o) {
    if (!o->up) return -1;
    return o->xdp ? buffet_net_xdp_fd(o->xdp) : buffet_net_afp_fd(o->afp);
}

static void l2sw_port_read_stats(l2sw_port *o) {
    if (o->xdp) o->xdp_stats = buffet_net_xdp_get_stats(o->xdp);
    else if (o->afp) o->afp_stats = buffet_net_afp_get_stats(o->afp);
}

/* Its counters read for the last time, then the socket closed. Packets it received that are
   still queued to other ports stay valid (AF_PACKET keeps their blocks mapped until they are
   freed; AF_XDP's are pool buffers). */
static void l2sw_port_close(l2sw_port *o) {
    l2sw_port_read_stats(o);
    buffet_net_xdp_destroy(o->xdp);
    buffet_net_afp_destroy(o->afp);
    o->xdp = NULL;
    o->afp = NULL;
    o->up = false;
}

static buffet_result l2sw_port_recv(l2sw_port *o, buffet_pkt **pk, size_t max, size_t *got) {
    return o->xdp ? buffet_net_xdp_recv(o->xdp, pk, max, 0, got) : buffet_net_afp_recv(o->afp, pk, max, 0, got);
}

static buffet_result l2sw_port_send(l2sw_port *o, buffet_pkt **pk, size_t n, size_t *sent) {
    return o->xdp ? buffet_net_xdp_send(o->xdp, pk, n, sent) : buffet_net_afp_send(o->afp, pk, n, sent);
}

static void l2sw_port_down(l2sw *s, unsigned i, const char *why) {
    l2sw_port *o = &s->port[i];
    for (size_t k = 0; k < o->ntx; k++) buffet_pkt_free(s->cache, o->tx[k]);
    o->ntx = 0;
    l2sw_port_close(o);
    o->port_down++;
    s->flushed += l2sw_sweep(s, (int)i, 0);
    fprintf(stderr, "l2_switch: port %s down (%s, %s): its MAC entries removed, switching on\n", o->name, why,
            strerror(errno));
}

static void l2sw_flush(l2sw *s, unsigned i) {
    l2sw_port *o = &s->port[i];
    size_t done = 0;
    bool closed = false;
    while (done < o->ntx) {
        size_t sent = 0;
        buffet_result r = l2sw_port_send(o, o->tx + done, o->ntx - done, &sent);
        o->tx_frames += sent;
        done += sent;
        if (r == BUFFET_OK) break;
        if (r == BUFFET_ERR_TOO_LARGE) {   /* larger than a transmit frame: that one is dropped */
            o->too_large++;
            buffet_pkt_free(s->cache, o->tx[done++]);
            continue;
        }
        /* a switch drops, it does not wait (AF_XDP: also when the class has no buffer for a copy) */
        if (r == BUFFET_AGAIN) o->tx_full += o->ntx - done;
        else if (r == BUFFET_ERR_CLOSED) closed = true;
        else o->tx_errors += o->ntx - done;
        for (; done < o->ntx; done++) buffet_pkt_free(s->cache, o->tx[done]);
    }
    o->ntx = 0;
    if (closed) l2sw_port_down(s, i, "send");
}

static void l2sw_enqueue(l2sw *s, unsigned i, buffet_pkt *p) {
    l2sw_port *o = &s->port[i];
    if (o->ntx == L2SW_TXQ) l2sw_flush(s, i);
    if (!o->up) {
        buffet_pkt_free(s->cache, p);
        return;
    }
    o->tx[o->ntx++] = p;
}

/* One received frame: learn its source, then forward, flood or drop it. VLAN-aware with trunk
   semantics: every port carries every VLAN, the tag (802.1Q 0x8100, or 802.1ad 0x88a8 with an
   optional inner 0x8100) stays on the frame as received, and addresses are learned and looked
   up per outer VLAN id (untagged: 0), so no port needs VLAN configuration. */
static void l2sw_frame(l2sw *s, unsigned in, buffet_pkt *p, uint64_t now) {
    l2sw_port *ip = &s->port[in];
    unsigned char tmp[22];
    const unsigned char *h;
    size_t need = 14;
    uint16_t type;
    unsigned vid = 0;
    ip->rx_frames++;
    h = p->pkt_len >= 14 ? (const unsigned char *)buffet_pkt_read(p, 0, 14, tmp) : NULL;
    if (h) {
        type = (uint16_t)(h[12] << 8 | h[13]);
        if (type == 0x8100 || type == 0x88a8) need = 18;
        if (need == 18 && p->pkt_len >= 18 && (h = (const unsigned char *)buffet_pkt_read(p, 0, 18, tmp)) != NULL) {
            vid = (unsigned)(h[14] << 8 | h[15]) & 0xfffu;
            if (type == 0x88a8 && h[16] == 0x81 && h[17] == 0x00) need = 22;   /* an inner C-tag */
        }
    }
    if (!h || p->pkt_len < need) {   /* shorter than its headers say: nothing to switch on */
        ip->runts++;
        buffet_pkt_free(s->cache, p);
        return;
    }
    uint64_t dst = l2sw_mac(h), src = l2sw_mac(h + 6);
    if (!(h[6] & 1) && src != 0) l2sw_learn(s, src << 12 | vid, in, now);
    l2sw_entry *e = (h[0] & 1) ? NULL : l2sw_find(s, dst << 12 | vid);
    if (e && e->port == in) {   /* the destination is on the segment it came from */
        ip->filtered++;
        buffet_pkt_free(s->cache, p);
        return;
    }
    if (e && s->port[e->port].up) {
        ip->forwarded++;
        l2sw_enqueue(s, e->port, p);
        return;
    }
    unsigned to[L2SW_MAX_PORTS], n = 0;
    for (unsigned j = 0; j < s->nports; j++)
        if (j != in && s->port[j].up) to[n++] = j;
    ip->flooded++;
    if (n == 0) {
        buffet_pkt_free(s->cache, p);
        return;
    }
    for (unsigned k = 0; k + 1 < n; k++) {
        buffet_pkt *c = buffet_pkt_clone(s->cache, p);   /* own header, the ring's bytes */
        if (!c) {
            s->port[to[k]].clone_failed++;
            continue;
        }
        l2sw_enqueue(s, to[k], c);
    }
    l2sw_enqueue(s, to[n - 1], p);
}

static void l2sw_rx(l2sw *s, unsigned i, uint64_t now) {
    buffet_pkt *pk[L2SW_BURST];
    size_t got = 0;
    buffet_result r = l2sw_port_recv(&s->port[i], pk, L2SW_BURST, &got);
    if (r == BUFFET_ERR_CLOSED) l2sw_port_down(s, i, "receive");
    else if (r != BUFFET_OK && r != BUFFET_AGAIN) s->port[i].rx_errors++;
    for (size_t k = 0; k < got; k++) l2sw_frame(s, i, pk[k], now);
}

/* ---- statistics ---- */
#define L2SW_PORT_COUNTER(field, help) { "l2sw_" #field "_total", help, offsetof(l2sw_port, field) }
/* A counter of the statistics: its name, help, and where its uint64_t is. */
typedef struct l2sw_counter {
    const char *name, *help;
    size_t off;
} l2sw_counter;

static const l2sw_counter l2sw_port_counters[] = {
    L2SW_PORT_COUNTER(rx_frames, "Frames received on the port."),
    L2SW_PORT_COUNTER(forwarded, "Frames received on the port sent to the one port their destination was learned on."),
    L2SW_PORT_COUNTER(flooded, "Frames received on the port flooded to every other port (unknown, broadcast, multicast)."),
    L2SW_PORT_COUNTER(filtered, "Frames received on the port whose destination is on that same port (dropped)."),
    L2SW_PORT_COUNTER(runts, "Frames received on the port shorter than their Ethernet and VLAN headers (dropped)."),
    L2SW_PORT_COUNTER(rx_errors, "Receive calls on the port that failed."),
    L2SW_PORT_COUNTER(tx_frames, "Frames sent out of the port."),
    L2SW_PORT_COUNTER(too_large, "Frames for the port larger than its transmit frames (dropped)."),
    L2SW_PORT_COUNTER(tx_full, "Frames for the port dropped because its transmit ring was full (AF_XDP: or no buffer for a copy)."),
    L2SW_PORT_COUNTER(tx_errors, "Frames for the port dropped on another send error."),
    L2SW_PORT_COUNTER(clone_failed, "Flooded copies for the port dropped for want of a packet header."),
    L2SW_PORT_COUNTER(port_down, "Times the port's interface went away (its ring closed, its MAC entries removed)."),
};
#define L2SW_AFP_COUNTER(field, help) { "l2sw_afp_" #field "_total", help, offsetof(buffet_net_afp_stats, field) }
static const l2sw_counter l2sw_afp_counters[] = {
    L2SW_AFP_COUNTER(rx_packets, "Frames the port's ring received."),
    L2SW_AFP_COUNTER(rx_bytes, "Bytes of the frames the port's ring received."),
    L2SW_AFP_COUNTER(rx_copied, "Received frames copied into the pool."),
    L2SW_AFP_COUNTER(rx_truncated, "Received frames cut to the ring block's room."),
    L2SW_AFP_COUNTER(rx_lost, "Received frames dropped for want of a packet header or buffer."),
    L2SW_AFP_COUNTER(kernel_drops, "Frames the kernel dropped with the port's ring full."),
    L2SW_AFP_COUNTER(kernel_freezes, "Times the kernel found every block of the port's ring held."),
    L2SW_AFP_COUNTER(tx_packets, "Frames handed to the kernel to send out of the port."),
    L2SW_AFP_COUNTER(tx_bytes, "Bytes of the frames handed to the kernel to send."),
    L2SW_AFP_COUNTER(tx_rejected, "Frames the kernel refused to send."),
};

#define L2SW_XDP_COUNTER(field, help) { "l2sw_xdp_" #field "_total", help, offsetof(buffet_net_xdp_stats, field) }
static const l2sw_counter l2sw_xdp_counters[] = {
    L2SW_XDP_COUNTER(rx_packets, "Frames the port's AF_XDP socket received."),
    L2SW_XDP_COUNTER(rx_bytes, "Bytes of the frames the port's socket received."),
    L2SW_XDP_COUNTER(tx_packets, "Frames put in the port's transmit ring."),
    L2SW_XDP_COUNTER(tx_bytes, "Bytes of the frames put in the transmit ring."),
    L2SW_XDP_COUNTER(tx_copied, "Frames sent as copies (flooded ones, whose bytes clones share)."),
    L2SW_XDP_COUNTER(fill_failures, "Times the pool had no buffer for the port's fill ring."),
    L2SW_XDP_COUNTER(kernel_rx_dropped, "Frames the kernel dropped for the port's socket (no fill buffer, or too long)."),
    L2SW_XDP_COUNTER(kernel_rx_ring_full, "Frames the kernel dropped with the port's receive ring full."),
    L2SW_XDP_COUNTER(kernel_fill_ring_empty, "Times the kernel found the port's fill ring empty."),
    L2SW_XDP_COUNTER(kernel_rx_invalid, "Invalid descriptors the kernel met in the port's fill ring."),
    L2SW_XDP_COUNTER(kernel_tx_invalid, "Invalid descriptors the kernel met in the port's transmit ring."),
};

/* Counters n of table c, one line per port: each at c[m].off into the port's struct at `at`. */
static void l2sw_print_counters(const l2sw *s, FILE *f, const l2sw_counter *c, size_t n, size_t at) {
    for (size_t m = 0; m < n; m++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", c[m].name, c[m].help, c[m].name);
        for (unsigned i = 0; i < s->nports; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&s->port[i] + at + c[m].off, sizeof v);
            fprintf(f, "%s{port=\"%s\"} %llu\n", c[m].name, s->port[i].name, (unsigned long long)v);
        }
    }
}

static void l2sw_print(l2sw *s, FILE *f) {
    size_t m, n;
    unsigned i;
    for (i = 0; i < s->nports; i++)
        if (s->port[i].up) l2sw_port_read_stats(&s->port[i]);
    l2sw_print_counters(s, f, l2sw_port_counters, sizeof l2sw_port_counters / sizeof l2sw_port_counters[0], 0);
    fprintf(f, "# HELP l2sw_port_up Whether the port is switching (1) or went down (0).\n# TYPE l2sw_port_up gauge\n");
    for (i = 0; i < s->nports; i++) fprintf(f, "l2sw_port_up{port=\"%s\"} %d\n", s->port[i].name, s->port[i].up ? 1 : 0);
    if (!s->xdp)
        l2sw_print_counters(s, f, l2sw_afp_counters, sizeof l2sw_afp_counters / sizeof l2sw_afp_counters[0],
                            offsetof(l2sw_port, afp_stats));
    if (!s->xdp) {
        fprintf(f, "# HELP l2sw_afp_blocks_held Ring blocks held by packets not freed yet.\n"
                   "# TYPE l2sw_afp_blocks_held gauge\n");
        for (i = 0; i < s->nports; i++)
            fprintf(f, "l2sw_afp_blocks_held{port=\"%s\"} %u\n", s->port[i].name, (unsigned)s->port[i].afp_stats.blocks_held);
    }
    if (s->xdp)
        l2sw_print_counters(s, f, l2sw_xdp_counters, sizeof l2sw_xdp_counters / sizeof l2sw_xdp_counters[0],
                            offsetof(l2sw_port, xdp_stats));
    if (s->xdp) {
        static const char *const gauges[3][2] = {
            {"l2sw_xdp_in_kernel", "Buffers the kernel holds in the port's rings."},
            {"l2sw_xdp_native", "Whether the port's XDP program runs in driver mode (1) or generic (0)."},
            {"l2sw_xdp_zerocopy", "Whether the port's socket is bound zero-copy (1) or in copy mode (0)."}};
        for (m = 0; m < 3; m++) {
            fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", gauges[m][0], gauges[m][1], gauges[m][0]);
            for (i = 0; i < s->nports; i++) {
                const buffet_net_xdp_stats *x = &s->port[i].xdp_stats;
                unsigned v = m == 0 ? (unsigned)x->in_kernel : m == 1 ? (unsigned)x->native : (unsigned)x->zerocopy;
                fprintf(f, "%s{port=\"%s\"} %u\n", gauges[m][0], s->port[i].name, v);
            }
        }
    }
    fprintf(f,
            "# HELP l2sw_learned_total MAC addresses learned.\n# TYPE l2sw_learned_total counter\n"
            "l2sw_learned_total %llu\n"
            "# HELP l2sw_moved_total Learned addresses seen again on another port.\n# TYPE l2sw_moved_total counter\n"
            "l2sw_moved_total %llu\n"
            "# HELP l2sw_aged_total Addresses removed for not being seen within the ageing time.\n"
            "# TYPE l2sw_aged_total counter\nl2sw_aged_total %llu\n"
            "# HELP l2sw_flushed_total Addresses removed because their port went down.\n"
            "# TYPE l2sw_flushed_total counter\nl2sw_flushed_total %llu\n"
            "# HELP l2sw_table_full_total Addresses not learned because the table was full.\n"
            "# TYPE l2sw_table_full_total counter\nl2sw_table_full_total %llu\n"
            "# HELP l2sw_table_entries Addresses in the MAC table.\n# TYPE l2sw_table_entries gauge\n"
            "l2sw_table_entries %zu\n",
            (unsigned long long)s->learned, (unsigned long long)s->moved, (unsigned long long)s->aged,
            (unsigned long long)s->flushed, (unsigned long long)s->table_full, s->entries);
    fprintf(f, "# HELP l2sw_mac A learned address: its VLAN and port.\n# TYPE l2sw_mac gauge\n");
    for (n = 0; n < L2SW_TABLE; n++) {
        const l2sw_entry *e = &s->table[n];
        if (!e->used) continue;
        uint64_t mac = e->key >> 12;
        fprintf(f, "l2sw_mac{mac=\"%02x:%02x:%02x:%02x:%02x:%02x\",vlan=\"%u\",port=\"%s\"} 1\n",
                (unsigned)(mac >> 40 & 0xff), (unsigned)(mac >> 32 & 0xff), (unsigned)(mac >> 24 & 0xff),
                (unsigned)(mac >> 16 & 0xff), (unsigned)(mac >> 8 & 0xff), (unsigned)(mac & 0xff),
                (unsigned)(e->key & 0xfff), s->port[e->port].name);
    }
    n = buffet_pkt_pool_stats_prometheus(s->pool, NULL, 0);
    char *text = (char *)malloc(n + 1);
    if (text) {
        buffet_pkt_pool_stats_prometheus(s->pool, text, n + 1);
        fputs(text, f);
        free(text);
    }
}

/* To path (whole: written beside it, then renamed over it, so a reader never sees half), or
   stdout when path is NULL. */
static void l2sw_write_stats(l2sw *s, const char *path) {
    char tmp[4096];
    FILE *f;
    if (!path) {
        l2sw_print(s, stdout);
        fflush(stdout);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "l2_switch: %s: %s\n", tmp, strerror(errno));
        return;
    }
    l2sw_print(s, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) fprintf(stderr, "l2_switch: %s: %s\n", path, strerror(errno));
}

static int l2sw_usage(FILE *f, int rc) {
    fprintf(f, "usage: l2_switch [-t seconds] [-s stats_file] [-a age_seconds] [-r ring_size] "
               "[-x afpacket|afxdp] if1 if2 [...if%d]\n", L2SW_MAX_PORTS);
    if (rc == 0)
        fprintf(f, "a learning Ethernet switch between the interfaces named: it needs root (CAP_NET_RAW; AF_XDP also "
                   "CAP_NET_ADMIN and CAP_BPF) and 2 to %d network interfaces that are up (nothing to switch without "
                   "them)\n-r: AF_PACKET receive blocks (2 to 65536), AF_XDP ring entries (a power of two, 64 to 16384)\n",
                L2SW_MAX_PORTS);
    return rc;
}

static bool l2sw_number(const char *text, unsigned long lo, unsigned long hi, unsigned long *out) {
    char *end;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *out >= lo && *out <= hi;
}

/* The switch from its command line: main, or a test or bench that includes this file with
   L2_SWITCH_NO_MAIN (a fuzzer of the frame path calls none of it). */
__attribute__((unused)) static int l2sw_main(int argc, char **argv) {
    unsigned long seconds = 0, age = 300, ring = 0;
    bool xdp = false;
    const char *stats = NULL;
    int opt, rc = 0;
    if (argc <= 1) return l2sw_usage(stdout, 0);
    optind = 1;
    while ((opt = getopt(argc, argv, "t:s:a:r:x:h")) != -1) {
        switch (opt) {
        case 't': if (!l2sw_number(optarg, 0, 100000000ul, &seconds)) return l2sw_usage(stderr, 2); break;
        case 'a': if (!l2sw_number(optarg, 1, 100000000ul, &age)) return l2sw_usage(stderr, 2); break;
        case 'r': if (!l2sw_number(optarg, 2, 65536, &ring)) return l2sw_usage(stderr, 2); break;
        case 's': stats = optarg; break;
        case 'x':
            if (strcmp(optarg, "afxdp") != 0 && strcmp(optarg, "afpacket") != 0) return l2sw_usage(stderr, 2);
            xdp = strcmp(optarg, "afxdp") == 0;
            break;
        case 'h': return l2sw_usage(stdout, 0);
        default: return l2sw_usage(stderr, 2);
        }
    }
    if (argc - optind < 2 || argc - optind > L2SW_MAX_PORTS) return l2sw_usage(stderr, 2);
    if (xdp && ring && (ring < 64 || ring > 16384 || (ring & (ring - 1)))) return l2sw_usage(stderr, 2);
    for (int a = optind; a < argc; a++) {
        if (strlen(argv[a]) >= IF_NAMESIZE) {
            fprintf(stderr, "l2_switch: %s: not an interface name\n", argv[a]);
            return 2;
        }
        for (int b = optind; b < a; b++)
            if (strcmp(argv[a], argv[b]) == 0) {   /* two ports on one segment: every frame looped back */
                fprintf(stderr, "l2_switch: %s: named twice\n", argv[a]);
                return 2;
            }
    }

    l2sw *s = (l2sw *)calloc(1, sizeof *s);
    if (!s) return 1;
    s->age_ms = (uint64_t)age * 1000u;
    s->xdp = xdp;
    buffet_pkt_pool_desc pd;
    memset(&pd, 0, sizeof pd);
    pd.name = "l2sw";
    pd.no_huge_pages = true;   /* AF_XDP: the class must be one region, and a huge page pool splits it */
    if (xdp) {
        /* The UMEM is the region of the one data class, so the class is made whole now and never
           grows: per port, the kernel's fill and receive rings (each full at worst) and the
           sends whose completions have not come (a ring's worth at most), plus a burst taken off
           it; then the cache's and some spare. Copies of flooded frames come from it too, within
           the sends counted. Frames are received into it and the clone class gives the floods'
           headers: no other class. */
        size_t per = 3 * (ring ? ring : 1024) + L2SW_BURST;
        pd.class_sizes[0] = 2048;
        pd.initial = pd.max = (size_t)(argc - optind) * per + 2 * BUFFET_PKT_CACHE_MAX;
    } else {
        /* Frames are the rings' memory; the pool gives packet headers, clones, and copies of the
           frames a full block leaves no room behind (up to jumbo size). */
        pd.class_sizes[0] = 256;
        pd.class_sizes[1] = 2048;
        pd.class_sizes[2] = 9216;
        pd.initial = 128;
        pd.max = 16384;
    }
    buffet_result r = buffet_pkt_pool_create(&s->pool, &pd);
    /* The largest cache: a loop turn takes up to L2SW_BURST headers per port before any goes
       back at the sends, and the default (64) would refill and spill through the pool's lock
       every half burst (bench_rings section 3 saw 1 refill in 65 allocations). */
    if (r == BUFFET_OK) r = buffet_pkt_cache_create(&s->cache, s->pool, BUFFET_PKT_CACHE_MAX);
    if (r != BUFFET_OK) {
        fprintf(stderr, "l2_switch: packet pool: %s\n", buffet_result_str(r));
        buffet_pkt_pool_destroy(s->pool);
        free(s);
        return 1;
    }
    struct pollfd fds[L2SW_MAX_PORTS];
    for (int a = optind; a < argc && rc == 0; a++) {
        l2sw_port *o = &s->port[s->nports];
        snprintf(o->name, sizeof o->name, "%s", argv[a]);
        r = l2sw_port_open(s, o, (uint32_t)ring);
        if (r != BUFFET_OK) {
            fprintf(stderr, "l2_switch: %s: %s (%s)\n", o->name, buffet_result_str(r), strerror(errno));
            rc = 1;
            break;
        }
        fds[s->nports].fd = l2sw_port_fd(o);
        fds[s->nports].events = POLLIN;
        s->nports++;
    }

    struct sigaction sa, old_int, old_term, old_usr1;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = l2sw_on_stop;   /* no SA_RESTART: poll returns at once */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = l2sw_on_usr1;
    sigaction(SIGUSR1, &sa, &old_usr1);
    l2sw_stop = l2sw_dump = 0;

    uint64_t start = l2sw_now_ms(), last_age = start;
    if (rc == 0) l2sw_write_stats(s, stats);   /* once at start: a supervisor sees it is running */
    while (rc == 0 && !l2sw_stop) {
        uint64_t now = l2sw_now_ms();
        int wait_ms = 100;
        if (seconds && now - start >= seconds * 1000u) break;
        if (seconds && start + seconds * 1000u - now < 100u) wait_ms = (int)(start + seconds * 1000u - now);
        for (unsigned i = 0; i < s->nports; i++) fds[i].fd = l2sw_port_fd(&s->port[i]);
        int ready = poll(fds, s->nports, wait_ms);
        if (ready < 0 && errno != EINTR) {
            fprintf(stderr, "l2_switch: poll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        now = l2sw_now_ms();
        for (unsigned i = 0; ready > 0 && i < s->nports; i++)
            if (s->port[i].up && fds[i].revents) l2sw_rx(s, i, now);
        for (unsigned i = 0; i < s->nports; i++)
            if (s->port[i].ntx) l2sw_flush(s, i);
        if (now - last_age >= 1000u) {
            s->aged += l2sw_sweep(s, -1, now);
            last_age = now;
            /* An AF_XDP socket whose interface went away says so only to a receive (its poll
               stays silent): each is asked once a second. */
            for (unsigned i = 0; s->xdp && i < s->nports; i++)
                if (s->port[i].up) l2sw_rx(s, i, now);
            for (unsigned i = 0; i < s->nports; i++)
                if (s->port[i].ntx) l2sw_flush(s, i);
        }
        if (l2sw_dump) {
            l2sw_dump = 0;
            l2sw_write_stats(s, stats);
        }
    }

    for (unsigned i = 0; i < s->nports; i++) {
        l2sw_port *o = &s->port[i];
        for (size_t k = 0; k < o->ntx; k++) buffet_pkt_free(s->cache, o->tx[k]);
        o->ntx = 0;
        if (o->up) l2sw_port_close(o);
    }
    buffet_pkt_cache_flush(s->cache);   /* so the pool's in-use counts below are the leaks */
    if (rc == 0 && l2sw_at_end) l2sw_at_end(s);
    if (rc == 0) l2sw_write_stats(s, stats);
    buffet_pkt_cache_destroy(s->cache);
    buffet_pkt_stats ps = buffet_pkt_pool_get_stats(s->pool);
    size_t out = 0;
    for (unsigned k = 0; k <= ps.nclasses; k++) out += ps.cls[k].in_use;
    if (out) {
        buffet_pkt_pool_report_leaks(s->pool, stderr);
        rc = 1;
    }
    buffet_pkt_pool_destroy(s->pool);
    free(s);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    return rc;
}

#ifndef L2_SWITCH_NO_MAIN
int main(int argc, char **argv) { return l2sw_main(argc, argv); }
#endif
