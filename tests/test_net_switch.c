/* test_net_switch.c - examples/l2_switch.c on real traffic: three host namespaces, each joined by
   a veth pair to the switch's namespace, the switch (a forked child of this test, in that
   namespace) between the three, once with AF_PACKET ports and once with AF_XDP ports. ping
   between every pair and to an address nobody owns, an iperf3 TCP run, the MAC table, flooding
   of an unknown destination, then bad input: runts, frames above the transmit frame size (not
   with AF_XDP, which cannot receive them), a burst larger than the receive ring, an interface
   deleted under the running switch; with AF_XDP, that only floods were sent as copies. Every
   check reads the counters the switch writes; at the end the switch must exit 0 (no buffer left
   out of its pool). As root; skips without.
   The MAC table and the frame path are also checked alone, without root. */
#define L2_SWITCH_NO_MAIN
#include "../examples/l2_switch.c"
#include "bt.h"
#include "net_util.h"

#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the MAC table and the frame path alone ---- */

static uint64_t key_of(unsigned n, unsigned vid) { return (0x020000000000ull + n) << 12 | vid; }

static void test_mac_table(void) {
    l2sw *s = (l2sw *)calloc(1, sizeof *s);
    unsigned n, found = 0, cap = L2SW_TABLE / 4 * 3;
    BT_CHECK(s != NULL);
    if (!s) return;
    s->age_ms = 1000;
    for (n = 0; n < cap + 10; n++) l2sw_learn(s, key_of(n, n % 3), n % 4, n < cap / 2 ? 0 : 5000);
    BT_CHECK(s->entries == cap);
    BT_CHECK(s->learned == cap);
    BT_CHECK(s->table_full == 10);
    /* the same MAC on another VLAN is another entry */
    BT_CHECK(l2sw_find(s, key_of(1, 1)) != NULL && l2sw_find(s, key_of(1, 2)) == NULL);
    l2sw_learn(s, key_of(7, 7 % 3), 9, 5000);   /* a move */
    BT_CHECK(s->moved == 1 && l2sw_find(s, key_of(7, 1))->port == 9);
    /* ageing at t=5500: the first half (seen at 0, but 7 was seen again at 5000) goes */
    size_t aged = l2sw_sweep(s, -1, 5500);
    BT_CHECK(aged == cap / 2 - 1);
    for (n = 0; n < cap; n++) {
        l2sw_entry *e = l2sw_find(s, key_of(n, n % 3));
        bool want = n >= cap / 2 || n == 7;
        found += e != NULL;
        BT_CHECK((e != NULL) == want);
        if (e && n != 7) BT_CHECK(e->port == n % 4);
    }
    BT_CHECK(found == cap - aged && s->entries == found);
    /* a port going: exactly its entries */
    size_t on2 = 0;
    for (n = 0; n < L2SW_TABLE; n++) on2 += s->table[n].used && s->table[n].port == 2;
    BT_CHECK(l2sw_sweep(s, 2, 0) == on2);
    for (n = cap / 2; n < cap; n++) BT_CHECK((l2sw_find(s, key_of(n, n % 3)) != NULL) == (n % 4 != 2));
    free(s);
}

/* Frames through l2sw_frame with three ports that have no ring (nothing is sent: the queues are
   looked at, then freed). */
static buffet_pkt *frame(l2sw *s, const char *dst, const char *src, const unsigned char *tag, size_t tag_len,
                         size_t len) {
    buffet_pkt *p = buffet_pkt_alloc(s->cache, len);
    unsigned char *d = p ? (unsigned char *)buffet_pkt_append(p, len) : NULL;
    if (!d) return p;
    memset(d, 0, len);
    if (len >= 12) {
        memcpy(d, dst, 6);
        memcpy(d + 6, src, 6);
    }
    if (len >= 12 + tag_len) memcpy(d + 12, tag, tag_len);
    return p;
}

static void drain(l2sw *s, size_t *counts) {
    for (unsigned i = 0; i < s->nports; i++) {
        counts[i] = s->port[i].ntx;
        for (size_t k = 0; k < s->port[i].ntx; k++) buffet_pkt_free(s->cache, s->port[i].tx[k]);
        s->port[i].ntx = 0;
    }
}

static void test_frame_path(void) {
    static const char A[7] = "\x02\0\0\0\0\x0a", B[7] = "\x02\0\0\0\0\x0b", BC[7] = "\xff\xff\xff\xff\xff\xff",
                      UNK[7] = "\x02\0\0\0\x99\x99", MC[7] = "\x01\0\x5e\0\0\x01";
    static const unsigned char ip4[2] = {0x08, 0x00}, q5[6] = {0x81, 0x00, 0x00, 0x05, 0x08, 0x00},
                               qinq_short[4] = {0x88, 0xa8, 0x00, 0x05};
    l2sw *s = (l2sw *)calloc(1, sizeof *s);
    buffet_pkt_pool_desc pd;
    size_t q[3];
    BT_CHECK(s != NULL);
    if (!s) return;
    memset(&pd, 0, sizeof pd);
    pd.name = "frame-path";
    pd.initial = 16;
    pd.no_huge_pages = true;
    BT_CHECK(buffet_pkt_pool_create(&s->pool, &pd) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&s->cache, s->pool, 0) == BUFFET_OK);
    s->nports = 3;
    s->age_ms = 300000;
    for (unsigned i = 0; i < 3; i++) {
        snprintf(s->port[i].name, sizeof s->port[i].name, "p%u", i + 1);
        s->port[i].up = true;
    }
    /* A on port 0 to unknown B: flooded to 1 and 2 (one clone, one original), A learned */
    l2sw_frame(s, 0, frame(s, B, A, ip4, 2, 60), 1);
    BT_CHECK(s->port[0].flooded == 1 && s->learned == 1);
    BT_CHECK(s->port[1].ntx == 1 && s->port[2].ntx == 1 && s->port[0].ntx == 0);
    if (s->port[1].ntx == 1 && s->port[2].ntx == 1) {
        BT_CHECK(buffet_pkt_data(s->port[1].tx[0]) == buffet_pkt_data(s->port[2].tx[0]));   /* shared bytes */
        BT_CHECK((s->port[1].tx[0]->flags & BUFFET_PKT_CLONE) != 0);
    }
    drain(s, q);
    /* B answers from port 1: to A, known, on port 0 only */
    l2sw_frame(s, 1, frame(s, A, B, ip4, 2, 60), 2);
    drain(s, q);
    BT_CHECK(q[0] == 1 && q[1] == 0 && q[2] == 0 && s->port[1].forwarded == 1);
    /* to A from port 0 itself: filtered */
    l2sw_frame(s, 0, frame(s, A, UNK, ip4, 2, 60), 3);
    drain(s, q);
    BT_CHECK(q[0] + q[1] + q[2] == 0 && s->port[0].filtered == 1);
    /* broadcast and multicast flood even when the sender is known; a multicast source is not learned */
    l2sw_frame(s, 1, frame(s, BC, B, ip4, 2, 60), 4);
    l2sw_frame(s, 1, frame(s, MC, MC, ip4, 2, 60), 4);
    drain(s, q);
    BT_CHECK(q[0] == 2 && q[1] == 0 && q[2] == 2 && s->learned == 3);   /* A, B, and UNK above */
    /* VLAN 5: A is unknown there, so flooded; A on VLAN 5 learned apart from VLAN 0 */
    l2sw_frame(s, 2, frame(s, B, A, q5, 6, 64), 5);
    drain(s, q);
    BT_CHECK(q[0] == 1 && q[1] == 1 && s->port[2].flooded == 1);
    BT_CHECK(l2sw_find(s, l2sw_mac((const unsigned char *)A) << 12 | 5)->port == 2);
    BT_CHECK(l2sw_find(s, l2sw_mac((const unsigned char *)A) << 12)->port == 0);
    /* runts: under 14 bytes; a 802.1Q tag with no room; an 802.1ad tag whose inner tag has none */
    l2sw_frame(s, 0, frame(s, B, A, ip4, 0, 10), 6);
    l2sw_frame(s, 0, frame(s, B, A, q5, 4, 16), 6);
    l2sw_frame(s, 0, frame(s, B, A, (const unsigned char *)"\x88\xa8\x00\x05\x81\x00", 6, 20), 6);
    l2sw_frame(s, 0, frame(s, B, A, qinq_short, 4, 17), 6);
    drain(s, q);
    BT_CHECK(s->port[0].runts == 4 && q[0] + q[1] + q[2] == 0);
    /* port 2 gone: floods go to port 1 alone, as the original */
    s->port[2].up = false;
    l2sw_frame(s, 0, frame(s, BC, A, ip4, 2, 60), 7);
    BT_CHECK(s->port[1].ntx == 1 && s->port[2].ntx == 0 && (s->port[1].tx[0]->flags & BUFFET_PKT_CLONE) == 0);
    drain(s, q);
    BT_CHECK(nu_pool_in_use(s->pool, s->cache) == 0);
    buffet_pkt_cache_destroy(s->cache);
    buffet_pkt_pool_destroy(s->pool);
    free(s);
}

static void test_usage(void) {
    char a0[] = "l2_switch", x[] = "-x", afxdp[] = "afxdp", i1[] = "nosuchif0", i2[] = "nosuchif1", t[] = "-t",
         bad[] = "x1";
    char *none[] = {a0, NULL};
    char bogus[] = "bogus", r[] = "-r", r100[] = "100";
    char *xdp[] = {a0, x, afxdp, i1, i2, NULL};
    char *badx[] = {a0, x, bogus, i1, i2, NULL};
    char *badring[] = {a0, x, afxdp, r, r100, i1, i2, NULL};   /* AF_XDP rings: powers of two */
    char *one[] = {a0, i1, NULL};
    char *badt[] = {a0, t, bad, i1, i2, NULL};
    char *gone[] = {a0, i1, i2, NULL};
    char *twice[] = {a0, i1, i2, i1, NULL};
    BT_CHECK(l2sw_main(1, none) == 0);
    BT_CHECK(l2sw_main(4, twice) == 2);   /* one interface as two ports */
    BT_CHECK(l2sw_main(5, xdp) == 1);   /* no such interfaces, and the pool made whole went back whole */
    BT_CHECK(l2sw_main(5, badx) == 2);
    BT_CHECK(l2sw_main(7, badring) == 2);
    BT_CHECK(l2sw_main(2, one) == 2);
    BT_CHECK(l2sw_main(5, badt) == 2);
    BT_CHECK(l2sw_main(3, gone) == 1);   /* no such interfaces: nothing opened, nothing leaked */
}

/* ---- the network ---- */
#define HOSTS 3
#define NET "10.99.0"

static struct {
    pid_t owner;          /* the test process: children never clean up */
    bool made;
    char sw[32], host[HOSTS][32];
    pid_t child;          /* the switch, while it runs */
    char stats[128];
} net;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[1024];
    va_list ap;
    int rc;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    rc = system(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void net_del(void) {
    if (getpid() != net.owner) return;
    if (net.child > 0) {
        kill(net.child, SIGKILL);
        waitpid(net.child, NULL, 0);
        net.child = 0;
    }
    if (!net.made) return;
    net.made = false;
    for (int i = 0; i < HOSTS; i++) {   /* an iperf3 server left behind, by its pid */
        sh("ip netns pids %s 2>/dev/null | xargs -r kill -9 2>/dev/null", net.host[i]);
        sh("ip netns del %s 2>/dev/null", net.host[i]);
    }
    sh("ip netns del %s 2>/dev/null", net.sw);
    if (net.stats[0]) unlink(net.stats);
}

static const char *net_make(void) {
    if (geteuid() != 0) return "not root: cannot make network namespaces";
    if (sh("ip -V >/dev/null 2>&1") != 0) return "no `ip` (iproute2)";
    net.owner = getpid();
    snprintf(net.sw, sizeof net.sw, "l2sw%ds", (int)getpid());
    for (int i = 0; i < HOSTS; i++) snprintf(net.host[i], sizeof net.host[i], "l2sw%dh%d", (int)getpid(), i + 1);
    snprintf(net.stats, sizeof net.stats, "/tmp/l2sw-stats-%d.prom", (int)getpid());
    net.made = true;
    atexit(net_del);
    if (sh("ip netns add %s && ip -n %s link set lo up", net.sw, net.sw) != 0 ||
        sh("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
           net.sw) != 0)
        return "`ip netns` failed";
    for (int i = 0; i < HOSTS; i++)
        if (sh("ip netns add %s && ip -n %s link add p%d type veth peer name e%d netns %s && "
               "ip -n %s addr add " NET ".%d/24 dev e%d && ip -n %s link set e%d up && ip -n %s link set lo up && "
               "ip -n %s link set p%d up",
               net.host[i], net.sw, i + 1, i + 1, net.host[i], net.host[i], i + 1, i + 1, net.host[i], i + 1,
               net.host[i], net.sw, i + 1) != 0)
            return "`ip netns` / veth setup failed";
    /* "link set up" returns before the link watcher gave the ends a real qdisc (noop drops) */
    int tries = 0;
    while (tries++ < 500 &&
           sh("{ ip -n %s link; ip -n %s link; ip -n %s link; ip -n %s link; } | "
              "grep -q -e 'qdisc noop' -e 'state DOWN' -e 'NO-CARRIER'",
              net.sw, net.host[0], net.host[1], net.host[2]) == 0)
        usleep(10000);
    if (tries > 500) return "the veth pairs did not come up within 5 s";
    return NULL;
}

/* The MAC of host i's veth, as "02:..". */
static bool host_mac(int i, char *mac, unsigned char *bin) {
    char cmd[160];
    FILE *f;
    unsigned v[6];
    snprintf(cmd, sizeof cmd, "ip netns exec %s cat /sys/class/net/e%d/address", net.host[i], i + 1);
    f = popen(cmd, "r");
    if (!f) return false;
    bool ok = fgets(mac, 32, f) != NULL;
    pclose(f);
    if (!ok) return false;
    mac[strcspn(mac, "\n")] = '\0';
    if (sscanf(mac, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
    for (int k = 0; k < 6; k++) bin[k] = (unsigned char)v[k];
    return true;
}

static int ping(int from, const char *to) {
    return sh("ip netns exec %s ping -c 2 -i 0.2 -W 1 -q %s >/dev/null 2>&1", net.host[from], to);
}

/* ---- the switch, in a child in the switch's namespace ---- */
static bool switch_start(const char *mode, const char *ring) {
    char a0[] = "l2_switch", t[] = "-t", secs[] = "600", s[] = "-s", r[] = "-r", x[] = "-x", xmode[16],
         p1[] = "p1", p2[] = "p2", p3[] = "p3", nring[16];
    char *argv[] = {a0, t, secs, s, net.stats, r, nring, x, xmode, p1, p2, p3, NULL};
    snprintf(nring, sizeof nring, "%s", ring);
    snprintf(xmode, sizeof xmode, "%s", mode);
    unlink(net.stats);
    fflush(stdout);
    fflush(stderr);
    net.child = fork();
    if (net.child < 0) return false;
    if (net.child == 0) {
        char path[64];
        snprintf(path, sizeof path, "/run/netns/%s", net.sw);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        /* gone with the test, however it ends */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != net.owner) _exit(3);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(3);
        close(fd);
        exit(l2sw_main(12, argv));   /* exit: sanitizers and valgrind check the switch too */
    }
    for (int i = 0; i < 3000; i++) {   /* it writes its statistics once its ports are open */
        struct stat st;
        if (stat(net.stats, &st) == 0) return true;
        if (waitpid(net.child, NULL, WNOHANG) == net.child) {
            net.child = 0;
            return false;
        }
        usleep(10000);
    }
    return false;
}

/* The switch's statistics, fresh (SIGUSR1, then the file it renames into place). Caller frees. */
static char *switch_stats(void) {
    unlink(net.stats);
    if (net.child <= 0 || kill(net.child, SIGUSR1) != 0) return NULL;
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(net.stats, "r");
        if (f) {
            char *text = (char *)calloc(1, 1 << 20);
            size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
            fclose(f);
            (void)n;
            return text;
        }
        usleep(10000);
    }
    return NULL;
}

/* The value of the sample named exactly `name` (with its labels), or -1. */
static long long metric(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, name, n) == 0 && l[n] == ' ') return atoll(l + n + 1);
    return -1;
}
static long long port_metric(const char *text, const char *name, int port) {
    char full[128];
    snprintf(full, sizeof full, "%s{port=\"p%d\"}", name, port);
    return metric(text, full);
}
static int lines_starting(const char *text, const char *prefix) {
    int n = 0;
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) n += strncmp(l, prefix, strlen(prefix)) == 0;
    return n;
}

/* A counter of the switch, re-read until it reaches `want` (at most 5 s): traffic the test
   sent is in flight until the switch has taken it. Returns the last value. */
static long long wait_port_metric(const char *name, int port, long long want) {
    long long v = -1;
    for (int i = 0; i < 50; i++) {
        char *t = switch_stats();
        v = t ? port_metric(t, name, port) : -1;
        free(t);
        if (v >= want) break;
        usleep(100000);
    }
    return v;
}

/* ---- raw frames in a host's namespace ---- */
typedef struct raw_job {
    int host;
} raw_job;
static int raw_fn(void *arg) {
    char ifname[16];
    int host = ((raw_job *)arg)->host;
    struct sockaddr_ll sl;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    snprintf(ifname, sizeof ifname, "e%d", host + 1);
    memset(&sl, 0, sizeof sl);
    sl.sll_family = AF_PACKET;
    sl.sll_protocol = htons(ETH_P_ALL);
    sl.sll_ifindex = (int)if_nametoindex(ifname);
    if (fd >= 0 && (sl.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sl, sizeof sl) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}
/* A packet socket on host i's veth (made in its namespace), for sending and capturing. */
static int raw_socket(int host) {
    raw_job j;
    j.host = host;
    return nu_in_ns(net.host[host], raw_fn, &j);
}

/* Sends n frames of len bytes: dst, src, then `type` (two bytes; more with `tail`) and zeros.
   Returns how many the kernel took. */
static int raw_send(int fd, const unsigned char *dst, const unsigned char *src, const unsigned char *type,
                    size_t type_len, size_t len, int n) {
    static unsigned char buf[9000];
    int ok = 0;
    memset(buf, 0, sizeof buf);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    memcpy(buf + 12, type, type_len);
    for (int i = 0; i < n; i++) ok += send(fd, buf, len, 0) == (ssize_t)len;
    return ok;
}

/* Frames to dst (with their length: any when len is 0) that came in on fd (outgoing ones, seen
   on the sender's own interface, are not counted), read until `want` came or 0.3 s pass
   without one (5 s at most). */
static int raw_count(int fd, const unsigned char *dst, size_t len, int want) {
    static unsigned char buf[65536];
    int n = 0;
    for (int idle = 0; idle < 3 && n < want;) {
        struct pollfd p;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 100) <= 0) {
            idle++;
            continue;
        }
        for (;;) {
            struct sockaddr_ll from;
            socklen_t fl = sizeof from;
            ssize_t got = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
            if (got < 0) break;
            if (from.sll_pkttype == PACKET_OUTGOING || got < 6 || memcmp(buf, dst, 6) != 0) continue;
            if (len == 0 || (size_t)got == len) n++;
        }
    }
    return n;
}
static void raw_drain(int fd) {
    static unsigned char buf[65536];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) {}
}

/* bytes iperf3 -J says the receiver got (0 when absent) */
static long long iperf_bytes(const char *path) {
    char *text = (char *)calloc(1, 1 << 20);
    FILE *f = fopen(path, "r");
    long long v = 0;
    if (f && text) {
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        const char *p = strstr(text, "\"sum_received\"");
        (void)n;
        p = p ? strstr(p, "\"bytes\":") : NULL;
        if (p) v = atoll(p + 8);
    }
    if (f) fclose(f);
    free(text);
    return v;
}

/* Can this process make an AF_PACKET ring at all (on lo)? NULL, or why not: qemu-user passes
   no SOL_PACKET ring option to the kernel. */
static const char *afp_refused(void) {
    buffet_pkt_pool_desc pd;
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *cache = NULL;
    buffet_net_afp_desc d;
    buffet_net_afp *a = NULL;
    buffet_result r;
    memset(&pd, 0, sizeof pd);
    pd.initial = 8;
    pd.no_huge_pages = true;
    if (buffet_pkt_pool_create(&pool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&cache, pool, 0) != BUFFET_OK) {
        buffet_pkt_pool_destroy(pool);
        return "no packet pool";
    }
    memset(&d, 0, sizeof d);
    d.cache = cache;
    d.ifname = "lo";
    d.blocks = 2;
    d.block_size = 4096;
    r = buffet_net_afp_create(&a, &d);
    buffet_net_afp_destroy(a);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    return r == BUFFET_ERR_UNSUPPORTED ? "AF_PACKET TPACKET_V3 rings unsupported here (qemu-user, or no CAP_NET_RAW)" : NULL;
}

/* Can an AF_XDP socket be made on the switch's p1 (in its namespace)? NULL, or why not. */
typedef struct xdp_probe {
    buffet_pkt_cache *cache;
    buffet_result r;
    int err;
} xdp_probe;
static int xdp_probe_fn(void *arg) {
    xdp_probe *j = (xdp_probe *)arg;
    buffet_net_xdp_desc d;
    buffet_net_xdp *x = NULL;
    memset(&d, 0, sizeof d);
    d.cache = j->cache;
    d.ifname = "p1";
    d.ring_size = 64;
    j->r = buffet_net_xdp_create(&x, &d);
    j->err = errno;
    buffet_net_xdp_destroy(x);
    return 0;
}
static const char *xdp_refused(void) {
    static char why[160];
    buffet_pkt_pool_desc pd;
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *cache = NULL;
    xdp_probe j;
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 2048;
    pd.initial = pd.max = 512;
    pd.no_huge_pages = true;
    if (buffet_pkt_pool_create(&pool, &pd) != BUFFET_OK || buffet_pkt_cache_create(&cache, pool, 0) != BUFFET_OK) {
        buffet_pkt_pool_destroy(pool);
        return "no packet pool";
    }
    memset(&j, 0, sizeof j);
    j.cache = cache;
    if (nu_in_ns(net.sw, xdp_probe_fn, &j) != 0) j.r = BUFFET_ERR_SYSTEM;
    BT_CHECK(nu_pool_in_use(pool, cache) == 0);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    if (j.r != BUFFET_ERR_UNSUPPORTED) return NULL;   /* made, or failed another way: the switch will say */
    snprintf(why, sizeof why, "AF_XDP refused on a veth (%s): no AF_XDP or bpf(2) here, or not privileged",
             strerror(j.err));
    return why;
}

/* The switch's counters of its ports' sockets, by what they mean, for either kind. */
static long long sock_metric(const char *text, bool xdp, const char *what, int port) {
    if (!xdp) {
        char name[64];
        snprintf(name, sizeof name, "l2sw_afp_%s_total", what);
        return port_metric(text, name, port);
    }
    if (strcmp(what, "rx_packets") == 0) return port_metric(text, "l2sw_xdp_rx_packets_total", port);
    if (strcmp(what, "rx_lost") == 0) return port_metric(text, "l2sw_xdp_fill_failures_total", port);
    if (strcmp(what, "kernel_freezes") == 0) return port_metric(text, "l2sw_xdp_kernel_fill_ring_empty_total", port);
    if (strcmp(what, "kernel_drops") == 0)   /* no fill buffer (or too long), and receive ring full */
        return port_metric(text, "l2sw_xdp_kernel_rx_dropped_total", port) +
               port_metric(text, "l2sw_xdp_kernel_rx_ring_full_total", port);
    return -1;
}

static void test_switch(bool xdp) {
    static const unsigned char UNKNOWN[6] = {0x02, 0, 0, 0, 0x99, 0x99}, BURST_DST[6] = {0x02, 0, 0, 0, 0x99, 0x98};
    static const unsigned char EXP[2] = {0x88, 0xb5}, QINQ_NO_INNER[6] = {0x88, 0xa8, 0x00, 0x05, 0x81, 0x00};
    char mac[HOSTS][32], line[160], ip[32], iperf_json[160];
    unsigned char macb[HOSTS][6];
    int fd[HOSTS] = {-1, -1, -1}, st = 0;
    const char *why;
    char *t;
    long long v, rx_before, drops_before;

    if (!xdp && geteuid() == 0 && (why = afp_refused()) != NULL) BT_SKIP("afpacket", why);
    if ((why = net_make()) != NULL) BT_SKIP("netns", why);
    if (xdp && (why = xdp_refused()) != NULL) {
        net_del();
        BT_SKIP("afxdp", why);
    }
    if (sh("ping -V >/dev/null 2>&1") != 0) BT_SKIP("switch_tools", "no ping");
    if (sh("iperf3 -v >/dev/null 2>&1") != 0) BT_SKIP("switch_tools", "no iperf3");
    if (sh("ethtool --version >/dev/null 2>&1") != 0) BT_SKIP("switch_tools", "no ethtool");
    /* with offloads, the hosts' TCP hands the veth 64 KiB GSO frames with checksums left to
       do: frames no switch can forward */
    for (int i = 0; i < HOSTS; i++) {
        BT_CHECK(sh("ip netns exec %s ethtool -K e%d tx off tso off gso off >/dev/null 2>&1", net.host[i], i + 1) == 0);
        BT_CHECK(host_mac(i, mac[i], macb[i]));
    }
    /* AF_PACKET: a receive ring of 16 blocks of 64 KiB (about 960 full-size frames); AF_XDP:
       rings of 256 (fill and receive: 512 frames at most). The burst below is larger. */
    if (!switch_start(xdp ? "afxdp" : "afpacket", xdp ? "256" : "16")) {
        BT_CHECK(!"the switch did not start");
        return;
    }

    /* ping between every pair, and not to an address nobody owns */
    for (int a = 0; a < HOSTS; a++)
        for (int b = 0; b < HOSTS; b++) {
            if (a == b) continue;
            snprintf(ip, sizeof ip, NET ".%d", b + 1);
            int rc = ping(a, ip);
            if (rc != 0) fprintf(stderr, "ping h%d -> h%d: %d\n", a + 1, b + 1, rc);
            BT_CHECK(rc == 0);
        }
    BT_CHECK(ping(0, NET ".9") != 0);

    /* iperf3 TCP h1 -> h2 through the switch */
    snprintf(iperf_json, sizeof iperf_json, "/tmp/l2sw-iperf-%d.json", (int)getpid());
    BT_CHECK(sh("ip netns exec %s iperf3 -s -1 -D -B " NET ".2 -p 5201 >/dev/null 2>&1", net.host[1]) == 0);
    int rc = -1;
    for (int tries = 0; tries < 20 && rc != 0; tries++) {   /* the daemon listens a moment after it forks */
        if (tries) usleep(200000);
        rc = sh("ip netns exec %s iperf3 -c " NET ".2 -p 5201 -t 2 -J > %s 2>/dev/null", net.host[0], iperf_json);
    }
    long long moved = iperf_bytes(iperf_json);
    printf("iperf3: rc %d, %lld bytes received\n", rc, moved);
    if (moved <= 0 && (t = switch_stats()) != NULL) {   /* where the frames went */
        printf("iperf3 moved nothing: p1 received %lld, kernel drops %lld, rx_lost %lld; tx_full p2 %lld\n",
               sock_metric(t, xdp, "rx_packets", 1), sock_metric(t, xdp, "kernel_drops", 1),
               sock_metric(t, xdp, "rx_lost", 1), port_metric(t, "l2sw_tx_full_total", 2));
        free(t);
    }
    BT_CHECK(rc == 0 && moved > 0);
    unlink(iperf_json);

    /* exactly the three hosts' MACs, each on its port */
    t = switch_stats();
    BT_CHECK(t != NULL);
    if (t) {
        BT_CHECK(lines_starting(t, "l2sw_mac{") == HOSTS);
        for (int i = 0; i < HOSTS; i++) {
            snprintf(line, sizeof line, "l2sw_mac{mac=\"%s\",vlan=\"0\",port=\"p%d\"}", mac[i], i + 1);
            BT_CHECK(metric(t, line) == 1);
        }
        BT_CHECK(metric(t, "l2sw_learned_total") == HOSTS && metric(t, "l2sw_table_entries") == HOSTS);
        BT_CHECK(metric(t, "l2sw_moved_total") == 0);
        printf("after ping+iperf3: rx p1 %lld p2 %lld p3 %lld, forwarded p1 %lld, flooded p1 %lld, filtered %lld\n",
               port_metric(t, "l2sw_rx_frames_total", 1), port_metric(t, "l2sw_rx_frames_total", 2),
               port_metric(t, "l2sw_rx_frames_total", 3), port_metric(t, "l2sw_forwarded_total", 1),
               port_metric(t, "l2sw_flooded_total", 1), port_metric(t, "l2sw_filtered_total", 1));
    }
    free(t);

    /* a frame to an unknown MAC reaches the two other hosts, not its sender */
    for (int i = 0; i < HOSTS; i++) {
        fd[i] = raw_socket(i);
        BT_CHECK(fd[i] >= 0);
    }
    if (fd[0] < 0 || fd[1] < 0 || fd[2] < 0) goto out;
    for (int i = 0; i < HOSTS; i++) raw_drain(fd[i]);
    BT_CHECK(raw_send(fd[0], UNKNOWN, macb[0], EXP, 2, 64, 5) == 5);
    {
        int got2 = raw_count(fd[1], UNKNOWN, 64, 5), got3 = raw_count(fd[2], UNKNOWN, 64, 5);
        int got1 = raw_count(fd[0], UNKNOWN, 0, 1);
        printf("flood of 5 to an unknown MAC: h2 got %d, h3 %d, h1 %d\n", got2, got3, got1);
        BT_CHECK(got2 == 5 && got3 == 5 && got1 == 0);
    }

    /* runts: under 14 bytes the sender's kernel refuses them (Ethernet's minimum header), and
       802.1Q frames under 20 bytes die in the switch port's own VLAN untagging; what reaches
       the switch short of its headers is an 802.1ad frame whose inner tag has no room */
    {
        int short_sent = raw_send(fd[0], UNKNOWN, macb[0], EXP, 2, 10, 1);
        int sent = raw_send(fd[0], UNKNOWN, macb[0], QINQ_NO_INNER, 6, 20, 5);
        BT_CHECK(sent == 5);
        v = wait_port_metric("l2sw_runts_total", 1, 5);
        printf("runts: 10-byte frame taken by the kernel: %d; 20-byte QinQ sent %d; switch counted %lld runts\n",
               short_sent, sent, v);
        BT_CHECK(v >= 5 && v <= 5 + short_sent);
        BT_CHECK(raw_count(fd[1], UNKNOWN, 20, 1) == 0);   /* none forwarded */
    }

    /* frames above the transmit frame size (2048 bytes with its header): counted, dropped. An
       AF_XDP port never receives one (a frame must fit its 2048-byte buffer after the kernel's
       256 bytes of headroom): there the kernel drops them at p1's socket, and counts them, or
       (native XDP on a veth) refuses the larger MTU, so no such frame can come. */
    if (!xdp) {
        BT_CHECK(sh("ip -n %s link set e1 mtu 9000 && ip -n %s link set p1 mtu 9000", net.host[0], net.sw) == 0);
        BT_CHECK(raw_send(fd[0], macb[1], macb[0], EXP, 2, 4000, 3) == 3);
        v = wait_port_metric("l2sw_too_large_total", 2, 3);
        printf("too large: 3 frames of 4000 bytes to h2; too_large on p2 %lld\n", v);
        BT_CHECK(v == 3);
        BT_CHECK(raw_count(fd[1], macb[1], 4000, 1) == 0);
    } else if (sh("ip -n %s link set e1 mtu 9000 2>/dev/null", net.host[0]) != 0) {
        printf("too large: e1 refuses an MTU of 9000 while its peer p1 has a native XDP program: no such frame can come\n");
    } else {
        BT_CHECK(sh("ip -n %s link set p1 mtu 9000", net.sw) == 0);
        t = switch_stats();
        drops_before = t ? sock_metric(t, true, "kernel_drops", 1) : -1;
        free(t);
        BT_CHECK(raw_send(fd[0], macb[1], macb[0], EXP, 2, 4000, 3) == 3);
        BT_CHECK(raw_count(fd[1], macb[1], 4000, 1) == 0);
        t = switch_stats();
        v = t ? sock_metric(t, true, "kernel_drops", 1) - drops_before : -1;
        printf("too large: 3 frames of 4000 bytes to h2; the kernel dropped %lld at p1's socket; too_large on p2 %lld\n",
               v, t ? port_metric(t, "l2sw_too_large_total", 2) : -1);
        BT_CHECK(v == 3 && port_metric(t, "l2sw_too_large_total", 2) == 0);
        free(t);
    }

    /* a burst larger than the ring, while the switch is stopped: the kernel drops what does not
       fit and says so; the switch takes the rest and goes on */
    t = switch_stats();
    rx_before = t ? sock_metric(t, xdp, "rx_packets", 1) : -1;
    drops_before = t ? sock_metric(t, xdp, "kernel_drops", 1) : -1;
    free(t);
    BT_CHECK(kill(net.child, SIGSTOP) == 0 && waitpid(net.child, &st, WUNTRACED) == net.child && WIFSTOPPED(st));
    {
        int sent = raw_send(fd[0], BURST_DST, macb[0], EXP, 2, 1000, 8000);
        BT_CHECK(kill(net.child, SIGCONT) == 0);
        BT_CHECK(ping(0, NET ".2") == 0);
        t = switch_stats();
        BT_CHECK(t != NULL);
        if (t) {
            long long rx = sock_metric(t, xdp, "rx_packets", 1) - rx_before;
            long long drops = sock_metric(t, xdp, "kernel_drops", 1) - drops_before;
            printf("burst: sent %d, switch p1 received %lld, kernel dropped %lld, freezes %lld; "
                   "tx_full p2 %lld p3 %lld, rx_lost %lld\n",
                   sent, rx, drops, sock_metric(t, xdp, "kernel_freezes", 1),
                   port_metric(t, "l2sw_tx_full_total", 2), port_metric(t, "l2sw_tx_full_total", 3),
                   sock_metric(t, xdp, "rx_lost", 1));
            BT_CHECK(sent == 8000);
            BT_CHECK(drops > 0 && rx > 0 && rx < sent);
            BT_CHECK(rx + drops >= sent);   /* every frame of the burst taken or counted as dropped */
        }
        free(t);
    }
    for (int i = 0; i < HOSTS; i++) raw_drain(fd[i]);

    /* h3's interface deleted under the switch: p3 goes with it; h1 and h2 still talk */
    close(fd[2]);
    fd[2] = -1;
    BT_CHECK(sh("ip -n %s link del e3", net.host[2]) == 0);
    v = wait_port_metric("l2sw_port_down_total", 3, 1);
    BT_CHECK(v == 1);
    BT_CHECK(ping(0, NET ".2") == 0 && ping(1, NET ".1") == 0);
    t = switch_stats();
    if (t) {
        BT_CHECK(port_metric(t, "l2sw_port_up", 3) == 0 && port_metric(t, "l2sw_port_up", 1) == 1);
        BT_CHECK(lines_starting(t, "l2sw_mac{") == 2);
        snprintf(line, sizeof line, "l2sw_mac{mac=\"%s\"", mac[2]);
        BT_CHECK(strstr(t, line) == NULL);
        BT_CHECK(metric(t, "l2sw_flushed_total") >= 1);
    }
    free(t);

out:
    for (int i = 0; i < HOSTS; i++)
        if (fd[i] >= 0) close(fd[i]);
    /* SIGTERM: it ends, writes its last statistics, and exits 0 only with every buffer back */
    BT_CHECK(kill(net.child, SIGTERM) == 0);
    BT_CHECK(waitpid(net.child, &st, 0) == net.child);
    net.child = 0;
    BT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    FILE *f = fopen(net.stats, "r");
    t = (char *)calloc(1, 1 << 20);
    BT_CHECK(f != NULL && t != NULL);
    if (f && t) {
        size_t n = fread(t, 1, (1 << 20) - 1, f);
        (void)n;
        BT_CHECK(lines_starting(t, "buffet_pkt_buffers_in_use{") > 0);
        for (const char *l = t; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
            if (strncmp(l, "buffet_pkt_buffers_in_use{", 26) == 0) BT_CHECK(atoll(strchr(l, ' ') + 1) == 0);
        for (int i = 1; !xdp && i <= HOSTS; i++) BT_CHECK(port_metric(t, "l2sw_afp_blocks_held", i) == 0);
        if (xdp) {   /* the mode each port ran in: a veth takes native XDP, and binds in copy mode */
            printf("AF_XDP ports: native p1 %lld p2 %lld; zero-copy p1 %lld p2 %lld\n",
                   port_metric(t, "l2sw_xdp_native", 1), port_metric(t, "l2sw_xdp_native", 2),
                   port_metric(t, "l2sw_xdp_zerocopy", 1), port_metric(t, "l2sw_xdp_zerocopy", 2));
            BT_CHECK(port_metric(t, "l2sw_xdp_native", 1) >= 0 && port_metric(t, "l2sw_xdp_zerocopy", 1) >= 0);
            /* a frame forwarded alone goes out of its buffer as it is; only floods (whose bytes
               clones share) are copied, so p2's copies are some of what p1 and p3 flooded */
            long long copied = port_metric(t, "l2sw_xdp_tx_copied_total", 2);
            printf("AF_XDP p2: %lld frames sent, %lld of them copies; p1 and p3 flooded %lld\n",
                   port_metric(t, "l2sw_xdp_tx_packets_total", 2), copied,
                   port_metric(t, "l2sw_flooded_total", 1) + port_metric(t, "l2sw_flooded_total", 3));
            BT_CHECK(copied > 0);
            BT_CHECK(copied <= port_metric(t, "l2sw_flooded_total", 1) + port_metric(t, "l2sw_flooded_total", 3));
            BT_CHECK(port_metric(t, "l2sw_xdp_tx_packets_total", 2) > 1000);   /* iperf3's, forwarded */
        }
        printf("at exit: rx p1 %lld p2 %lld p3 %lld; tx p1 %lld p2 %lld p3 %lld; runts %lld, too_large %lld, "
               "port_down p3 %lld, learned %lld, flushed %lld\n",
               port_metric(t, "l2sw_rx_frames_total", 1), port_metric(t, "l2sw_rx_frames_total", 2),
               port_metric(t, "l2sw_rx_frames_total", 3), port_metric(t, "l2sw_tx_frames_total", 1),
               port_metric(t, "l2sw_tx_frames_total", 2), port_metric(t, "l2sw_tx_frames_total", 3),
               port_metric(t, "l2sw_runts_total", 1), port_metric(t, "l2sw_too_large_total", 2),
               port_metric(t, "l2sw_port_down_total", 3), metric(t, "l2sw_learned_total"),
               metric(t, "l2sw_flushed_total"));
    }
    if (f) fclose(f);
    free(t);
    net_del();
}

static void test_switch_afpacket(void) { test_switch(false); }
static void test_switch_afxdp(void) { test_switch(true); }

int main(void) {
    BT_RUN(test_mac_table);
    BT_RUN(test_frame_path);
    BT_RUN(test_usage);
    BT_RUN(test_switch_afpacket);
    BT_RUN(test_switch_afxdp);
    return bt_finish("test_net_switch.c");
}
