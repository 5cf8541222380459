/* quic_transfer.c - a file sent over QUIC without copying it. The sender maps the file and
   queues it on a stream as one slice of a WRAP buffer: ngtcp2 encrypts straight from the mapped
   pages, and the mapping goes (munmap) once the receiver has acknowledged the last byte. The
   receiver writes each stream's bytes to a file as they arrive (buffet_net_send_chain writes a
   chain to any descriptor). One poll loop drives either end.
     quic_transfer recv <port> <cert.pem> <key.pem> <out-file>   (more streams: out-file.1, ...)
     quic_transfer send <host> <port> <ca.pem> <file>
   With no arguments: a certificate made by openssl, 32 MiB of random bytes sent to a forked
   receiver over loopback, and both files compared. Exit 0: identical; 77: no openssl. */
// pkg-config: libngtcp2 libngtcp2_crypto_gnutls gnutls
#define BUFFET_IMPLEMENTATION
#define BUFFET_NET_QUIC 1
#include "../buffet_net.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ALPN "buffet-file"
#define MAX_FILES 16

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One turn of the loop: wait for the socket or the next timer, then let the connection work. */
static void pump(buffet_net_quic *q, int fd) {
    struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (buffet_net_quic_blocked(q) ? POLLOUT : 0))};
    (void)poll(&p, 1, buffet_net_quic_timeout_ms(q));
    if (p.revents & POLLIN) buffet_net_quic_on_readable(q);
    buffet_net_quic_on_timer(q);
}

/* Datagrams in and out travel in packets of 2 KiB, with room for their addresses. */
static buffet_pkt_cache *packet_cache(buffet_pkt_pool **pool) {
    buffet_pkt_pool_desc d = {.class_sizes = {2048}, .user_size = sizeof(buffet_net_meta)};
    buffet_pkt_cache *c = NULL;
    if (buffet_pkt_pool_create(pool, &d) != BUFFET_OK) return NULL;
    if (buffet_pkt_cache_create(&c, *pool, 0) != BUFFET_OK) buffet_pkt_pool_destroy(*pool);
    return c;
}

/* The receiver: a server on fd taking one connection, every stream a file. */
static int receive(int fd, const char *cert, const char *key, const char *out) {
    struct { int64_t id; int fd; uint64_t bytes; } files[MAX_FILES];
    size_t nfiles = 0, i, n;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache = packet_cache(&pool);
    buffet_net_quic *q = NULL;
    buffet_net_quic_event ev[32];
    bool closed = false, failed = false;
    if (!cache) return 1;
    buffet_net_quic_desc d = {.fd = fd, .flags = BUFFET_NET_QUIC_SERVER, .cache = cache, .alpn = ALPN,
                              .cert_file = cert, .key_file = key};
    if (buffet_net_quic_create(&q, &d) != BUFFET_OK) failed = closed = true;
    while (!closed) {
        pump(q, fd);
        while ((n = buffet_net_quic_events(q, ev, 32)) > 0) {
            for (i = 0; i < n; i++) {
                size_t f = 0;
                while (f < nfiles && files[f].id != ev[i].stream) f++;
                if (ev[i].type == BUFFET_NET_QUIC_EV_STREAM_OPENED && nfiles < MAX_FILES) {
                    char name[4096];
                    if (nfiles) snprintf(name, sizeof name, "%s.%zu", out, nfiles);
                    else snprintf(name, sizeof name, "%s", out);
                    files[nfiles].id = ev[i].stream;
                    files[nfiles].bytes = 0;
                    files[nfiles].fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                    if (files[nfiles++].fd < 0) failed = true;
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_READABLE && f < nfiles && files[f].fd >= 0) {
                    /* Take what has arrived (no copy) and write it out: one writev over the slices;
                       the buffers go back as the chain empties. */
                    buffet_chain c;
                    buffet_result r;
                    size_t got;
                    buffet_chain_init(&c, (buffet_allocator){0});
                    while ((r = buffet_net_quic_recv(q, ev[i].stream, &c, 0, &got)) == BUFFET_OK) {
                        files[f].bytes += got;
                        if (buffet_net_send_chain(files[f].fd, &c, 0, NULL) != BUFFET_OK) failed = true;
                    }
                    buffet_chain_deinit(&c);
                    if (r == BUFFET_ERR_CLOSED) {   /* the stream's end */
                        printf("recv: stream %lld: %llu bytes\n", (long long)ev[i].stream,
                               (unsigned long long)files[f].bytes);
                        close(files[f].fd);
                        files[f].fd = -1;
                    }
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_STREAM_CLOSED && ev[i].result != BUFFET_OK) {
                    failed = true;   /* reset by the sender */
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_CLOSED) {
                    closed = true;
                    failed |= ev[i].result != BUFFET_OK;
                }
            }
        }
    }
    for (i = 0; i < nfiles; i++) {
        if (files[i].fd >= 0) {   /* the connection ended before the stream did */
            close(files[i].fd);
            failed = true;
        }
    }
    buffet_net_quic_destroy(q);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    return failed ? 1 : 0;
}

static void unmap(void *user, void *data, size_t size) {
    (void)user;
    munmap(data, size);
}

/* The sender: a client on fd connecting to peer, the file on one stream. */
static int send_file(int fd, const buffet_net_addr *peer, const char *host, const char *ca, const char *path) {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache = packet_cache(&pool);
    buffet_net_quic *q = NULL;
    buffet_net_quic_event ev[32];
    buffet_chain c;
    struct stat st;
    int64_t stream = -1;
    size_t i, n;
    bool closed = false, failed = false, fin = false;
    double t0 = now_s();
    int file;
    if (!cache) return 1;
    file = open(path, O_RDONLY | O_CLOEXEC);
    buffet_chain_init(&c, (buffet_allocator){0});
    if (file < 0 || fstat(file, &st) != 0) {
        perror(path);
        failed = closed = true;
    } else if (st.st_size > 0) {
        /* The file's pages as a buffer; the chain holds the only reference from here on, and the
           stream releases it as the receiver acknowledges the bytes. */
        buffet_buf *b = NULL;
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, file, 0);
        buffet_buf_desc bd = {.kind = BUFFET_BUF_WRAP, .size = (size_t)st.st_size, .wrap_data = m, .release = unmap};
        if (m == MAP_FAILED || buffet_buf_create(&b, &bd) != BUFFET_OK ||
            buffet_chain_append(&c, b, 0, (size_t)st.st_size) != BUFFET_OK)
            failed = closed = true;
        if (b) buffet_buf_unref(b);
        else if (m != MAP_FAILED) munmap(m, (size_t)st.st_size);
    }
    if (file >= 0) close(file);
    buffet_net_quic_desc d = {.fd = fd, .peer = *peer, .cache = cache, .alpn = ALPN, .ca_file = ca, .server_name = host};
    if (!closed && buffet_net_quic_create(&q, &d) != BUFFET_OK) failed = closed = true;
    while (!closed) {
        pump(q, fd);
        while ((n = buffet_net_quic_events(q, ev, 32)) > 0) {
            for (i = 0; i < n; i++) {
                buffet_result r = BUFFET_AGAIN;
                if (ev[i].type == BUFFET_NET_QUIC_EV_CONNECTED) {
                    r = buffet_net_quic_open(q, &stream);
                    if (r == BUFFET_OK) r = buffet_net_quic_send(q, stream, &c, BUFFET_NET_QUIC_FIN, NULL);
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_WRITABLE && ev[i].stream == stream && stream >= 0 && !fin)
                    r = buffet_net_quic_send(q, stream, &c, BUFFET_NET_QUIC_FIN, NULL);   /* the rest of c */
                else if (ev[i].type == BUFFET_NET_QUIC_EV_SENT && ev[i].stream == stream)
                    buffet_net_quic_close(q, 0);   /* every byte acknowledged: the mapping is gone */
                else if (ev[i].type == BUFFET_NET_QUIC_EV_CLOSED) {
                    closed = true;
                    failed |= ev[i].result != BUFFET_OK || ev[i].reason != BUFFET_NET_QUIC_CLOSE_LOCAL;
                    if (failed) fprintf(stderr, "send: connection ended, reason %u error 0x%llx\n", ev[i].reason,
                                        (unsigned long long)ev[i].error);
                } else if (ev[i].type == BUFFET_NET_QUIC_EV_STREAM_CLOSED && ev[i].result != BUFFET_OK)
                    failed = true;
                if (r == BUFFET_OK) fin = true;
                else if (r != BUFFET_AGAIN) {
                    failed = true;
                    if (buffet_net_quic_close(q, 1) != BUFFET_OK) closed = true;
                }
            }
        }
    }
    if (!failed) {
        double s = now_s() - t0;
        printf("send: %lld bytes in %.3f s (%.1f MiB/s)\n", (long long)st.st_size, s,
               (double)st.st_size / (1 << 20) / (s > 0 ? s : 1e-9));
    }
    buffet_chain_deinit(&c);
    buffet_net_quic_destroy(q);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    return failed ? 1 : 0;
}

/* A non-blocking UDP socket bound to port (0: any) on the family of a, or -1. */
static int udp_socket(int family, int port) {
    buffet_net_addr a = {0};
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), big = 4 << 20;
    a.sa.sa_family = (sa_family_t)family;
    if (family == AF_INET6) a.in6.sin6_port = htons((uint16_t)port);
    else a.in4.sin_port = htons((uint16_t)port);
    if (fd < 0) return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);   /* bursts at loopback speed */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (bind(fd, &a.sa, family == AF_INET6 ? sizeof a.in6 : sizeof a.in4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_to(const char *host, const char *port, const char *ca, const char *path) {
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai;
    buffet_net_addr peer = {0};
    int fd, rc;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "send: cannot resolve %s\n", host);
        return 1;
    }
    memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
    fd = udp_socket(ai->ai_family, 0);
    freeaddrinfo(ai);
    if (fd < 0) return 1;
    rc = send_file(fd, &peer, host, ca, path);
    close(fd);
    return rc;
}

static bool same_bytes(const char *a, const char *b) {
    static char x[65536], y[65536];
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    size_t n = 1, m;
    bool same = f && g;
    while (same && n) {
        n = fread(x, 1, sizeof x, f);
        m = fread(y, 1, sizeof y, g);
        same = n == m && memcmp(x, y, n) == 0;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* No arguments: a certificate, a file of random bytes, a receiver forked, the file sent to it. */
static int round_trip(const char *dir) {
    char cmd[1024], in[64], out[64], cert[64], key[64], port[16];
    size_t size = (size_t)32 << 20, i;
    uint32_t seed = 1, *data;
    buffet_net_addr a = {0};
    socklen_t len = sizeof a.in4;
    double t0;
    int fd, status = 1, sent;
    FILE *f;
    pid_t pid;
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0) {
        printf("quic_transfer: skipped: openssl could not make a certificate\n");
        return 77;
    }
    if (!(data = (uint32_t *)malloc(size)) || !(f = fopen(in, "wb"))) return 1;
    for (i = 0; i < size / 4; i++) data[i] = seed = seed * 1664525u + 1013904223u;
    i = fwrite(data, 1, size, f);
    free(data);
    if (fclose(f) != 0 || i != size) return 1;
    /* The receiver's socket is bound before the fork, so the sender knows its port. */
    if ((fd = udp_socket(AF_INET, 0)) < 0 || getsockname(fd, &a.sa, &len) != 0) return 1;
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.in4.sin_port));
    fflush(stdout);
    t0 = now_s();
    if ((pid = fork()) == 0) {
        status = receive(fd, cert, key, out);
        fflush(stdout);
        _exit(status);
    }
    close(fd);
    if (pid < 0) return 1;
    sent = send_to("127.0.0.1", port, cert, in);
    if (sent != 0) kill(pid, SIGKILL);   /* the receiver would wait for its idle timeout */
    if (waitpid(pid, &status, 0) != pid || sent != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        !same_bytes(in, out))
        return 1;
    printf("quic_transfer: %zu bytes sent and received in %.3f s, identical\n", size, now_s() - t0);
    return 0;
}

static int demo(void) {
    char dir[] = "/tmp/quic_transfer-XXXXXX";
    static const char *const names[] = {"cert.pem", "key.pem", "in", "out"};
    char path[64];
    size_t i;
    int rc;
    if (!mkdtemp(dir)) return 1;
    rc = round_trip(dir);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    if (rc == 1) printf("quic_transfer: FAILED\n");
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 1) return demo();
    if (argc == 6 && strcmp(argv[1], "recv") == 0) {
        int rc, fd = udp_socket(AF_INET6, atoi(argv[2]));   /* dual-stack: v4 clients too */
        if (fd < 0) fd = udp_socket(AF_INET, atoi(argv[2]));
        if (fd < 0) return 1;
        rc = receive(fd, argv[3], argv[4], argv[5]);
        close(fd);
        return rc;
    }
    if (argc == 6 && strcmp(argv[1], "send") == 0) return send_to(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: %s recv <port> <cert.pem> <key.pem> <out-file>\n"
                    "       %s send <host> <port> <ca.pem> <file>\n"
                    "       %s            (a round trip over loopback)\n", argv[0], argv[0], argv[0]);
    return 2;
}
