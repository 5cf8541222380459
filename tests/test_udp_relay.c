#include "udp_relay.h"
#include "bt.h"

/* test_udp_relay.c - the lossy relay the QUIC tests put between client and server: numbered
   datagrams through it one way, answers the other way; what arrives is what was sent, and what the
   relay says it did (lost, duplicated, reordered) is what the receiver saw. No sleeps: the test
   waits on the relay's published counts, with a deadline only so that nothing can hang. */

#include <stdint.h>

#define N_DGRAMS 2000
#define BATCH 20             /* datagrams sent before waiting for the relay to read them */
#define DEADLINE_S 60        /* only against a hang; a run takes well under a second natively */

static uint64_t now_s(void) { return ur_now_ns() / 1000000000u; }

/* Datagram `id`: a 4-byte id, then bytes derived from id and position; every 500th is the largest
   IPv4 UDP payload (65507), the others 4 to 1403 bytes. Answers are the same with `tag` 1. */
static size_t dg_len(unsigned id) { return id % 500 == 499 ? 65507 : 4 + (id * 37u) % 1400; }
static unsigned char dg_byte(unsigned id, unsigned tag, size_t j) {
    return (unsigned char)(id * 131u + tag * 77u + j * 7u + (j >> 8));
}
static size_t dg_fill(unsigned char *b, unsigned id, unsigned tag, size_t len) {
    size_t j;
    b[0] = (unsigned char)(id >> 24); b[1] = (unsigned char)(id >> 16);
    b[2] = (unsigned char)(id >> 8); b[3] = (unsigned char)id;
    for (j = 4; j < len; j++) b[j] = dg_byte(id, tag, j);
    return len;
}
/* the id of a datagram that is byte for byte one that was sent (answers: 60 bytes), else -1 */
static long dg_check(const unsigned char *b, size_t len, unsigned tag, unsigned n) {
    unsigned id;
    size_t j;
    if (len < 4) return -1;
    id = (unsigned)b[0] << 24 | (unsigned)b[1] << 16 | (unsigned)b[2] << 8 | b[3];
    if (id >= n || len != (tag ? 60 : dg_len(id))) return -1;
    for (j = 4; j < len; j++)
        if (b[j] != dg_byte(id, tag, j)) return -1;
    return (long)id;
}

static socklen_t sa_len(const struct sockaddr_storage *a) {
    return a->ss_family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6) : (socklen_t)sizeof(struct sockaddr_in);
}
static int sa_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    } else {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
    }
}

/* A non-blocking UDP socket on the loopback of `family`, port chosen by the kernel; -1 if none. */
static int udp_loopback(int family, struct sockaddr_storage *a) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), big = 4 << 20;
    socklen_t l = (socklen_t)sizeof *a;
    if (fd < 0) return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    memset(a, 0, sizeof *a);
    a->ss_family = (sa_family_t)family;
    if (family == AF_INET) ((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else ((struct sockaddr_in6 *)a)->sin6_addr = in6addr_loopback;
    if (bind(fd, (struct sockaddr *)a, sa_len(a)) != 0 || getsockname(fd, (struct sockaddr *)a, &l) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* What one run through the relay saw. */
typedef struct run {
    int family;
    ur_config cfg;
    unsigned n;
    unsigned char count[N_DGRAMS];   /* copies of each id the receiver got */
    unsigned long received, unique, inversions, bad, answers_sent, answers_got, answers_bad;
    unsigned long last_id_plus1;     /* 0: none yet */
    int from_relay_ok;               /* every datagram came from the relay's server side, not the sender */
    int answers_from_relay_ok;       /* every answer came from the relay's listening address */
    ur_stats s;
    int timed_out, skipped;
} run;

static unsigned char buf[65536];

/* Everything both sockets hold: the receiver checks and answers each datagram, the sender
   checks each answer. Returns how many datagrams it read. */
static unsigned long pump(run *t, int snd, int rcv, const struct sockaddr_storage *sender,
                          const struct sockaddr_storage *relay) {
    unsigned long got = 0;
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = (socklen_t)sizeof from;
        ssize_t n = recvfrom(rcv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        long id;
        if (n < 0) break;
        got++;
        t->received++;
        if (sa_same(&from, sender)) t->from_relay_ok = 0;
        id = dg_check(buf, (size_t)n, 0, t->n);
        if (id < 0) {
            t->bad++;
            continue;
        }
        if (t->count[id]++ == 0) t->unique++;
        if ((unsigned long)id + 1 < t->last_id_plus1) t->inversions++;
        t->last_id_plus1 = (unsigned long)id + 1;
        /* the answer goes to where the datagram came from: the relay */
        if (sendto(rcv, buf, dg_fill(buf, (unsigned)id, 1, 60), 0, (struct sockaddr *)&from, fl) == 60)
            t->answers_sent++;
    }
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = (socklen_t)sizeof from;
        ssize_t n = recvfrom(snd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) break;
        got++;
        t->answers_got++;
        if (!sa_same(&from, relay)) t->answers_from_relay_ok = 0;
        if (dg_check(buf, (size_t)n, 1, t->n) < 0) t->answers_bad++;
    }
    return got;
}

static void wait_readable(int a, int b) {
    struct pollfd pf[2];
    pf[0].fd = a;
    pf[1].fd = b;
    pf[0].events = pf[1].events = POLLIN;
    pf[0].revents = pf[1].revents = 0;
    (void)poll(pf, 2, 1);
}

/* Sends t->n datagrams through a relay (t->cfg) in batches, answers each arrival, and waits until
   the relay has read all and has nothing pending either way, and both sockets are empty. */
static void run_relay(run *t) {
    struct sockaddr_storage sa, ra, la;
    socklen_t ll = 0;
    int snd, rcv;
    ur_relay *r;
    unsigned id = 0;
    uint64_t deadline = now_s() + DEADLINE_S;
    t->from_relay_ok = t->answers_from_relay_ok = 1;
    rcv = udp_loopback(t->family, &ra);
    snd = udp_loopback(t->family, &sa);
    if (rcv < 0 || snd < 0) {
        t->skipped = 1;
        if (rcv >= 0) close(rcv);
        if (snd >= 0) close(snd);
        return;
    }
    r = ur_start((struct sockaddr *)&ra, sa_len(&ra), &t->cfg, &la, &ll);
    BT_CHECK(r != NULL);
    if (!r) {
        close(rcv);
        close(snd);
        return;
    }
    BT_CHECK(ll == sa_len(&ra) && la.ss_family == t->family);
    while (id < t->n && !t->timed_out) {
        unsigned end = id + BATCH < t->n ? id + BATCH : t->n;
        for (; id < end; id++) {
            size_t len = dg_fill(buf, id, 0, dg_len(id));
            while (sendto(snd, buf, len, 0, (struct sockaddr *)&la, ll) != (ssize_t)len) {
                BT_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
                if (errno != EAGAIN && errno != EWOULDBLOCK) break;
                pump(t, snd, rcv, &sa, &la);
                wait_readable(snd, rcv);
            }
        }
        /* the relay reads the batch before the next goes: no queue overflows anywhere */
        for (;;) {
            ur_stats p = ur_peek(r);
            pump(t, snd, rcv, &sa, &la);
            if (p.to_server.in + p.to_server.kernel_dropped >= id) break;
            if (now_s() > deadline) {
                t->timed_out = 1;
                break;
            }
            wait_readable(snd, rcv);
        }
    }
    /* the tail: the relay read everything both ways and holds nothing; what it sent before it said
       so is already in our sockets (loopback delivers within the send), and one more pump reads it */
    for (;;) {
        ur_stats p = ur_peek(r);
        if (p.to_server.in + p.to_server.kernel_dropped >= t->n &&
            p.to_client.in + p.to_client.kernel_dropped >= t->answers_sent && p.pending == 0 &&
            pump(t, snd, rcv, &sa, &la) == 0)
            break;
        if (now_s() > deadline) {
            t->timed_out = 1;
            break;
        }
        pump(t, snd, rcv, &sa, &la);
        wait_readable(snd, rcv);
    }
    t->s = ur_stop(r);
    pump(t, snd, rcv, &sa, &la);
    close(rcv);
    close(snd);
    BT_CHECK(!t->timed_out);
}

/* What holds for any configuration: everything that arrived was sent, from the relay's side, and
   the relay's counts add up, and match what the receiver and the sender saw. */
static void check_common(const run *t) {
    const ur_count *f = &t->s.to_server, *b = &t->s.to_client;
    unsigned i, twice = 0, over = 0;
    for (i = 0; i < t->n; i++) {
        twice += t->count[i] == 2;
        over += t->count[i] > 2;
    }
    BT_CHECK(t->bad == 0 && t->answers_bad == 0);
    BT_CHECK(t->from_relay_ok && t->answers_from_relay_ok);
    BT_CHECK(over == 0);
    /* the relay added no losses of its own: read all, sent all */
    BT_CHECK(f->kernel_dropped == 0 && b->kernel_dropped == 0);
    BT_CHECK(f->unsent == 0 && b->unsent == 0 && t->s.pending == 0);
    BT_CHECK(f->in == t->n);
    BT_CHECK(f->in + f->duplicated == f->out + f->dropped + f->unsent);
    BT_CHECK(b->in + b->duplicated == b->out + b->dropped + b->unsent);
    /* the missing ones are the ones it dropped, the doubles the ones it duplicated */
    BT_CHECK(t->received == f->out);
    BT_CHECK(t->unique == t->n - f->dropped);
    BT_CHECK(twice == f->duplicated);
    /* the way back */
    BT_CHECK(b->in == t->answers_sent);
    BT_CHECK(t->answers_got == b->out);
    BT_CHECK(t->answers_got > 0);
    BT_CHECK(t->s.in == f->in + b->in && t->s.out == f->out + b->out && t->s.dropped == f->dropped + b->dropped);
}

static void test_lossy(void) {
    static run t;
    memset(&t, 0, sizeof t);
    t.family = AF_INET;
    t.n = N_DGRAMS;
    t.cfg.seed = 42;
    t.cfg.loss = 0.02;
    t.cfg.dup = 0.02;
    t.cfg.reorder = 0.05;
    t.cfg.delay_ms = 2;
    run_relay(&t);
    if (t.skipped) BT_SKIP("loopback", "no IPv4 loopback socket");
    check_common(&t);
    printf("lossy: to server in %llu out %llu dropped %llu dup %llu reordered %llu delayed %llu; "
           "received %lu unique %lu inversions %lu; answers %lu sent, %lu got\n",
           (unsigned long long)t.s.to_server.in, (unsigned long long)t.s.to_server.out,
           (unsigned long long)t.s.to_server.dropped, (unsigned long long)t.s.to_server.duplicated,
           (unsigned long long)t.s.to_server.reordered, (unsigned long long)t.s.to_server.delayed, t.received,
           t.unique, t.inversions, t.answers_sent, t.answers_got);
    /* 2000 datagrams at these odds, seed 42: each fate happens (expected 40, 40, 100) */
    BT_CHECK(t.s.to_server.dropped > 0 && t.s.to_server.duplicated > 0 && t.s.to_server.reordered > 0);
    BT_CHECK(t.s.to_server.delayed > 0);
    BT_CHECK(t.inversions > 0);
    BT_CHECK(t.unique < t.n && t.received > t.unique);
    BT_CHECK(t.s.to_client.dropped > 0 && t.s.to_client.duplicated > 0);   /* answers fare alike */
}

static void test_clean(void) {
    static run t;
    unsigned i, all = 1;
    memset(&t, 0, sizeof t);
    t.family = AF_INET;
    t.n = N_DGRAMS;
    t.cfg.seed = 7;
    run_relay(&t);
    if (t.skipped) BT_SKIP("loopback", "no IPv4 loopback socket");
    check_common(&t);
    for (i = 0; i < t.n; i++) all &= t.count[i] == 1;
    BT_CHECK(all);
    BT_CHECK(t.received == t.n && t.inversions == 0);
    BT_CHECK(t.s.dropped == 0 && t.s.duplicated == 0 && t.s.reordered == 0 && t.s.delayed == 0);
    BT_CHECK(t.answers_got == t.n && t.s.to_client.out == t.n);
}

/* The same seed and the same datagrams: the same ones lost and doubled (timing plays no part in
   those); another seed, others. */
static void test_same_seed_same_fate(void) {
    static run a, b, c;
    run *all[3];
    unsigned i, k, same = 1, differ = 0;
    all[0] = &a; all[1] = &b; all[2] = &c;
    for (k = 0; k < 3; k++) {
        memset(all[k], 0, sizeof a);
        all[k]->family = AF_INET;
        all[k]->n = 500;
        all[k]->cfg.seed = k == 2 ? 1234 : 99;
        all[k]->cfg.loss = 0.1;
        all[k]->cfg.dup = 0.1;
        all[k]->cfg.reorder = 0.1;
        all[k]->cfg.delay_ms = 1;
        run_relay(all[k]);
        if (all[k]->skipped) BT_SKIP("loopback", "no IPv4 loopback socket");
        check_common(all[k]);
    }
    for (i = 0; i < a.n; i++) {
        same &= a.count[i] == b.count[i];
        differ |= a.count[i] != c.count[i];
    }
    BT_CHECK(same);
    BT_CHECK(differ);
    BT_CHECK(a.s.to_server.dropped == b.s.to_server.dropped && a.s.to_client.dropped == b.s.to_client.dropped);
}

static void test_ipv6(void) {
    static run t;
    memset(&t, 0, sizeof t);
    t.family = AF_INET6;
    t.n = 200;
    t.cfg.seed = 5;
    t.cfg.loss = 0.05;
    t.cfg.dup = 0.05;
    t.cfg.reorder = 0.05;
    t.cfg.delay_ms = 1;
    run_relay(&t);
    if (t.skipped) BT_SKIP("ipv6", "no IPv6 loopback socket");
    check_common(&t);
}

static int bound_by_hand(struct sockaddr_storage *a) {
    /* disconnecting would give up a port the kernel chose; one named in bind stays: so the port a
       first socket got is named by a second (both SO_REUSEADDR), and the first goes */
    int one = 1, t = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t l = (socklen_t)sizeof *a;
    int ok = t >= 0 && fd >= 0;
    memset(a, 0, sizeof *a);
    a->ss_family = AF_INET;
    ((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ok && setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
         bind(t, (struct sockaddr *)a, sa_len(a)) == 0 && getsockname(t, (struct sockaddr *)a, &l) == 0 &&
         bind(fd, (struct sockaddr *)a, sa_len(a)) == 0;
    if (t >= 0) close(t);
    if (!ok && fd >= 0) close(fd);
    return ok ? fd : -1;
}

/* No server behind the relay: the kernel refuses sends after an ICMP error, the relay counts
   those unsent, reads its socket's errors and goes on; when the server comes, it gets through.
   "No server" is a socket connected elsewhere: it keeps the port, but takes nothing from the
   relay, so the kernel answers port unreachable. */
static void test_no_server(void) {
    struct sockaddr_storage ga, sa, la;
    socklen_t ll = 0;
    int srv = bound_by_hand(&ga), snd = udp_loopback(AF_INET, &sa);
    ur_relay *r;
    ur_config c;
    ur_stats s;
    struct sockaddr un;
    unsigned i, ys = 0;
    char b = 0;
    uint64_t deadline = now_s() + DEADLINE_S;
    if (srv < 0 || snd < 0) {
        if (srv >= 0) close(srv);
        if (snd >= 0) close(snd);
        BT_SKIP("loopback", "no IPv4 loopback socket");
    }
    BT_CHECK(connect(srv, (struct sockaddr *)&sa, sa_len(&sa)) == 0);
    memset(&c, 0, sizeof c);
    r = ur_start((struct sockaddr *)&ga, sa_len(&ga), &c, &la, &ll);
    BT_CHECK(r != NULL);
    if (!r) {
        close(srv);
        close(snd);
        return;
    }
    for (i = 0; i < 20; i++) {
        BT_CHECK(sendto(snd, "x", 1, 0, (struct sockaddr *)&la, ll) == 1);
        /* one at a time, so that each ICMP error is back before the next send */
        for (;;) {
            s = ur_peek(r);
            if ((s.to_server.in > i && s.pending == 0) || now_s() > deadline) break;
            wait_readable(snd, snd);
        }
    }
    BT_CHECK(recv(srv, &b, 1, MSG_DONTWAIT) < 0);
    /* the server comes: it takes datagrams from anyone */
    memset(&un, 0, sizeof un);
    un.sa_family = AF_UNSPEC;
    BT_CHECK(connect(srv, &un, sizeof un) == 0);
    /* again until one gets through: an ICMP error still pending on the relay's socket refuses a send */
    for (;;) {
        ssize_t n;
        BT_CHECK(sendto(snd, "y", 1, 0, (struct sockaddr *)&la, ll) == 1);
        ys++;
        wait_readable(srv, srv);
        n = recv(srv, &b, 1, MSG_DONTWAIT);
        if (n >= 0 || now_s() > deadline) {
            BT_CHECK(n == 1 && b == 'y');
            break;
        }
    }
    do s = ur_peek(r);
    while ((s.to_server.in < 20 + ys || s.pending) && now_s() <= deadline && (wait_readable(srv, srv), 1));
    s = ur_stop(r);
    close(srv);
    close(snd);
    BT_CHECK(s.to_server.in == 20 + ys);
    BT_CHECK(s.to_server.out + s.to_server.unsent == 20 + ys && s.to_server.out >= 1);
    BT_CHECK(s.to_client.in == 0);
}

static void test_bad_config(void) {
    struct sockaddr_in s;
    ur_config c;
    ur_stats z;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    s.sin_family = AF_UNIX;
    BT_CHECK(ur_start((struct sockaddr *)&s, sizeof s, &c, NULL, NULL) == NULL && errno == EINVAL);
    s.sin_family = AF_INET;
    c.loss = 1.5;
    BT_CHECK(ur_start((struct sockaddr *)&s, sizeof s, &c, NULL, NULL) == NULL && errno == EINVAL);
    c.loss = 0;
    c.reorder = -0.1;
    BT_CHECK(ur_start((struct sockaddr *)&s, sizeof s, &c, NULL, NULL) == NULL && errno == EINVAL);
    z = ur_stop(NULL);
    BT_CHECK(z.in == 0 && z.out == 0);
}

int main(void) {
    BT_RUN(test_lossy);
    BT_RUN(test_clean);
    BT_RUN(test_same_seed_same_fate);
    BT_RUN(test_ipv6);
    BT_RUN(test_no_server);
    BT_RUN(test_bad_config);
    return bt_finish("test_udp_relay.c");
}
