/* net_util.h - what buffet's network tests and bench/bench_net.c share: TCP over loopback, and two
   network namespaces joined by a veth pair, with sockets made inside either. Included after
   buffet_net.h (C11 and C++17). The namespaces are the program's own, named after its pid, and
   deleted at exit; they are made with iproute2's `ip`, as root. */
#ifndef NET_UTIL_H
#define NET_UTIL_H
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Buffers of pool p out of its caches and store, cache c flushed first: 0 when every packet came
   back (a test's last check). */
__attribute__((unused)) static size_t nu_pool_in_use(buffet_pkt_pool *p, buffet_pkt_cache *c) {
    buffet_pkt_stats s;
    size_t n = 0;
    unsigned i;
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(p);
    for (i = 0; i <= s.nclasses; i++) n += s.cls[i].in_use;
    return n;
}

/* socklen of a's family */
__attribute__((unused)) static socklen_t nu_addr_len(const buffet_net_addr *a) {
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : (socklen_t)sizeof a->in4;
}

/* a for ip (IPv4 or IPv6 text) and port; false when ip is neither. */
__attribute__((unused)) static bool nu_addr(buffet_net_addr *a, const char *ip, int port) {
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons((uint16_t)port);
        return true;
    }
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons((uint16_t)port);
    return inet_pton(AF_INET6, ip, &a->in6.sin6_addr) == 1;
}

/* A TCP listener on ip, port chosen by the kernel; *a gets its address. -1 on failure. */
__attribute__((unused)) static int nu_tcp_listen(const char *ip, buffet_net_addr *a) {
    socklen_t len = sizeof *a;
    int fd;
    if (!nu_addr(a, ip, 0)) return -1;
    fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, &a->sa, nu_addr_len(a)) != 0 || listen(fd, 16) != 0 || getsockname(fd, &a->sa, &len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A TCP socket connected (blocking) to a. -1 on failure. */
__attribute__((unused)) static int nu_tcp_connect(const buffet_net_addr *a) {
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, &a->sa, nu_addr_len(a)) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* A connected TCP pair over 127.0.0.1: *tx and *rx (both blocking). false on failure. */
__attribute__((unused)) static bool nu_tcp_pair(int *tx, int *rx) {
    buffet_net_addr a;
    int l = nu_tcp_listen("127.0.0.1", &a);
    *tx = l >= 0 ? nu_tcp_connect(&a) : -1;
    *rx = *tx >= 0 ? accept(l, NULL, NULL) : -1;
    if (l >= 0) close(l);
    if (*rx >= 0) return true;
    if (*tx >= 0) close(*tx);
    *tx = -1;
    return false;
}

/* ---- two network namespaces joined by a veth pair ---- */

typedef struct nu_veth {
    char ns[2][32];    /* the namespaces: side 0 and side 1 */
    char dev[2][16];   /* the veth ends, dev[i] in ns[i] */
    bool made;
} nu_veth;

static nu_veth *nu_veth_live;   /* the pair to delete at exit */

__attribute__((unused)) static int nu_sh(const char *cmd) {
    int rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

/* Deletes v's namespaces (the veth pair goes with them). Safe to call twice. */
__attribute__((unused)) static void nu_veth_del(nu_veth *v) {
    char cmd[160];
    if (!v || !v->made) return;
    v->made = false;
    snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", v->ns[0], v->ns[1]);
    nu_sh(cmd);
    if (nu_veth_live == v) nu_veth_live = NULL;
}
__attribute__((unused)) static void nu_veth_at_exit(void) { nu_veth_del(nu_veth_live); }

/* Makes namespaces <tag><pid>a and b joined by a veth pair: v4net.1 on side 0 and v4net.2 on side 1
   (/24), and with v6net also v6net::1 and ::2 (/64, no duplicate-address wait); lo up on both.
   Returns NULL, or why it could not (the caller skips with it). One pair at a time. */
__attribute__((unused)) static const char *nu_veth_make(nu_veth *v, const char *tag, const char *v4net, const char *v6net) {
    char cmd[1024];
    int i, n;
    memset(v, 0, sizeof *v);
    if (geteuid() != 0) return "not root: cannot make network namespaces";
    if (nu_sh("ip -V >/dev/null 2>&1") != 0) return "no `ip` (iproute2)";
    for (i = 0; i < 2; i++) {
        snprintf(v->ns[i], sizeof v->ns[i], "%s%d%c", tag, (int)getpid(), 'a' + i);
        snprintf(v->dev[i], sizeof v->dev[i], "%.4s%d%c", tag, (int)getpid() % 1000000, 'a' + i);
    }
    v->made = true;
    if (!nu_veth_live) atexit(nu_veth_at_exit);
    nu_veth_live = v;
    n = snprintf(cmd, sizeof cmd,
                 "ip netns add %s && ip netns add %s && ip -n %s link add %s type veth peer name %s netns %s",
                 v->ns[0], v->ns[1], v->ns[0], v->dev[0], v->dev[1], v->ns[1]);
    for (i = 0; i < 2 && n > 0 && (size_t)n < sizeof cmd; i++) {
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " && ip -n %s addr add %s.%d/24 dev %s", v->ns[i], v4net, i + 1,
                      v->dev[i]);
        if (v6net && (size_t)n < sizeof cmd)
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, " && ip -n %s addr add %s::%d/64 dev %s nodad", v->ns[i],
                          v6net, i + 1, v->dev[i]);
        if ((size_t)n < sizeof cmd)
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, " && ip -n %s link set %s up && ip -n %s link set lo up",
                          v->ns[i], v->dev[i], v->ns[i]);
    }
    if (n <= 0 || (size_t)n >= sizeof cmd || nu_sh(cmd) != 0) {
        nu_veth_del(v);
        return "`ip netns` / veth setup failed";
    }
    /* "link set up" returns before the kernel's link watcher has given the ends their queueing
       discipline: until then each end has "noop", which drops whatever is sent. Wait (at most
       5 s) until both ends are up with a real one, or the first datagrams vanish. */
    snprintf(cmd, sizeof cmd,
             "{ ip -n %s link show dev %s; ip -n %s link show dev %s; } | "
             "grep -q -e 'qdisc noop' -e 'state DOWN' -e 'NO-CARRIER'",
             v->ns[0], v->dev[0], v->ns[1], v->dev[1]);
    for (i = 0; i < 500 && nu_sh(cmd) == 0; i++) usleep(10000);
    if (i == 500) {
        nu_veth_del(v);
        return "the veth pair did not come up within 5 s";
    }
    return NULL;
}

typedef struct nu_ns_call {
    const char *ns;
    int (*fn)(void *);
    void *arg;
    int result;
} nu_ns_call;

__attribute__((unused)) static void *nu_ns_thread(void *arg) {
    nu_ns_call *c = (nu_ns_call *)arg;
    char path[64];
    int fd;
    snprintf(path, sizeof path, "/run/netns/%s", c->ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && setns(fd, CLONE_NEWNET) == 0) c->result = c->fn(c->arg);
    if (fd >= 0) close(fd);
    return NULL;
}

/* fn(arg) run in a thread that joined namespace ns, so that the sockets it makes live there
   (whichever thread uses them later) while this thread stays where it is. fn's result, or -1
   when ns cannot be joined. */
__attribute__((unused)) static int nu_in_ns(const char *ns, int (*fn)(void *), void *arg) {
    nu_ns_call c;
    pthread_t t;
    c.ns = ns;
    c.fn = fn;
    c.arg = arg;
    c.result = -1;
    if (pthread_create(&t, NULL, nu_ns_thread, &c) != 0) return -1;
    pthread_join(t, NULL);
    return c.result;
}

/* nu_tcp_listen and nu_tcp_connect inside a namespace: */
typedef struct nu_tcp_job {
    const char *ip;     /* listen: the address to listen on */
    buffet_net_addr a;  /* listen: written; connect: the peer */
} nu_tcp_job;
__attribute__((unused)) static int nu_listen_fn(void *arg) { return nu_tcp_listen(((nu_tcp_job *)arg)->ip, &((nu_tcp_job *)arg)->a); }
__attribute__((unused)) static int nu_connect_fn(void *arg) { return nu_tcp_connect(&((nu_tcp_job *)arg)->a); }

/* A connected TCP pair across v: *tx made in side 0 (the sender), *rx accepted in side 1 on
   rx_ip. Both blocking. false on failure. */
__attribute__((unused)) static bool nu_veth_tcp_pair(const nu_veth *v, const char *rx_ip, int *tx, int *rx) {
    nu_tcp_job j;
    int l;
    memset(&j, 0, sizeof j);
    j.ip = rx_ip;
    l = nu_in_ns(v->ns[1], nu_listen_fn, &j);
    *tx = l >= 0 ? nu_in_ns(v->ns[0], nu_connect_fn, &j) : -1;
    *rx = *tx >= 0 ? accept(l, NULL, NULL) : -1;
    if (l >= 0) close(l);
    if (*rx >= 0) return true;
    if (*tx >= 0) close(*tx);
    *tx = -1;
    return false;
}

#endif
