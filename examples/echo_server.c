/* echo_server.c - an epoll TCP echo server whose connections read into packets of one buffet
   packet pool, take each line off the received bytes without copying (buffet_net_take_until) and
   send it back from those same packet buffers (buffet_net_send_chain), handling partial writes
   with EPOLLOUT. A client thread in the same program opens 8 connections, sends lines of random
   length in random bursts and checks every echoed byte. Exit 0: all echoed, byte-exact, every
   packet back in the pool. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CLIENTS 8
#define LINES 2000

typedef struct conn {
    int fd;
    buffet_chain in, out;   /* bytes read and not yet a whole line; lines waiting to go back */
    bool want_out;          /* registered for EPOLLOUT */
} conn;

static int port;
static size_t echoed_total;

/* The client side: every connection sends lines "<conn>:<line>:<padding>\n" in bursts, reads the
   echo and compares it with what it sent. Blocking sockets; the server is non-blocking. */
static void *client(void *arg) {
    int fds[CLIENTS], c;
    unsigned seed = 12345;
    size_t checked = 0;
    struct sockaddr_in a;
    (void)arg;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    for (c = 0; c < CLIENTS; c++) {
        fds[c] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[c] < 0 || connect(fds[c], (struct sockaddr *)&a, sizeof a) != 0) abort();
    }
    for (int line = 0; line < LINES; line += 10) {
        for (c = 0; c < CLIENTS; c++) {
            char burst[10 * 1100], back[sizeof burst];
            size_t len = 0, got = 0;
            for (int k = 0; k < 10; k++) {   /* ten lines in one write: the server sees them glued */
                seed = seed * 1103515245u + 12345u;
                int n = snprintf(burst + len, 64, "%d:%d:", c, line + k);
                size_t pad = (seed >> 16) % 1000;
                memset(burst + len + n, 'a' + (int)(seed % 26), pad);
                len += (size_t)n + pad;
                burst[len++] = '\n';
            }
            if (write(fds[c], burst, len) != (ssize_t)len) abort();
            while (got < len) {
                ssize_t r = read(fds[c], back + got, len - got);
                if (r <= 0) abort();
                got += (size_t)r;
            }
            if (memcmp(burst, back, len) != 0) {
                fprintf(stderr, "echo_server: connection %d, line %d: the echo differs\n", c, line);
                abort();
            }
            checked += len;
        }
    }
    for (c = 0; c < CLIENTS; c++) close(fds[c]);
    echoed_total = checked;
    return NULL;
}

/* Read what is there, move every whole line to `out`, send what `out` holds. false: the
   connection is finished (closed by the client, or an error). */
static bool serve(conn *k, buffet_net_source *src, int ep) {
    buffet_result r;
    while ((r = buffet_net_recv(k->fd, &k->in, src, 64 << 10, NULL)) == BUFFET_OK) {}
    if (r != BUFFET_AGAIN) return false;   /* BUFFET_ERR_CLOSED: the client is done */
    while (buffet_net_take_until(&k->in, "\n", 1, 4096, &k->out) == BUFFET_OK) {}
    r = buffet_net_send_chain(k->fd, &k->out, 0, NULL);
    if (r != BUFFET_OK && r != BUFFET_AGAIN) return false;
    if ((r == BUFFET_AGAIN) != k->want_out) {   /* ask for EPOLLOUT only while bytes wait */
        struct epoll_event ev;
        k->want_out = r == BUFFET_AGAIN;
        ev.events = EPOLLIN | (k->want_out ? EPOLLOUT : 0);
        ev.data.ptr = k;
        epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
    }
    return true;
}

int main(void) {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    buffet_net_source src;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    struct epoll_event ev, evs[16];
    pthread_t t;
    int lfd, ep, open_conns = 0, accepted = 0;
    if (buffet_pkt_pool_create(&pool, &(buffet_pkt_pool_desc){ .name = "echo", .class_sizes = { 2048 } }) != BUFFET_OK ||
        buffet_pkt_cache_create(&cache, pool, 0) != BUFFET_OK)
        return 1;
    memset(&src, 0, sizeof src);
    src.packets = cache;   /* every read lands in packets of the pool */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
        return 1;
    port = ntohs(a.sin_port);
    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;   /* NULL: the listening socket */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    if (pthread_create(&t, NULL, client, NULL) != 0) return 1;
    while (accepted < CLIENTS || open_conns > 0) {
        int n = epoll_wait(ep, evs, 16, 5000);
        if (n <= 0) return 1;   /* 5 s without an event: something hangs */
        for (int i = 0; i < n; i++) {
            conn *k = (conn *)evs[i].data.ptr;
            if (!k) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    k = (conn *)calloc(1, sizeof *k);
                    k->fd = fd;
                    buffet_chain_init(&k->in, (buffet_allocator){0});
                    buffet_chain_init(&k->out, (buffet_allocator){0});
                    ev.events = EPOLLIN;
                    ev.data.ptr = k;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                    accepted++;
                    open_conns++;
                }
            } else if (!serve(k, &src, ep)) {
                close(k->fd);
                buffet_chain_deinit(&k->in);
                buffet_chain_deinit(&k->out);
                free(k);
                open_conns--;
            }
        }
    }
    pthread_join(t, NULL);
    close(lfd);
    close(ep);
    buffet_pkt_cache_flush(cache);
    buffet_pkt_stats st = buffet_pkt_pool_get_stats(pool);
    printf("echo_server: %d connections x %d lines, %zu bytes echoed byte-exact from packet buffers "
           "(%llu packets taken, %zu in use at the end)\n", CLIENTS, LINES, echoed_total,
           (unsigned long long)st.cls[0].allocs, st.cls[0].in_use);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    return st.cls[0].in_use == 0 && echoed_total > 0 ? 0 : 1;
}
