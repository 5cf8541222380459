/* buffet_net.h - buffet 0.1.0 - buffers meeting sockets

   Chains (buffet.h) and packets (buffet_packet.h) in and out of file descriptors the caller owns,
   blocking or not, from any loop (epoll, io_uring, libuv): no iovec loop, partial-write
   bookkeeping or delimiter scan to write by hand.

       #define BUFFET_IMPLEMENTATION
       #include "buffet_net.h"

       buffet_chain in, req;                        // bytes read, and one request taken off them
       buffet_chain_init(&in, (buffet_allocator){0});
       buffet_chain_init(&req, (buffet_allocator){0});
       size_t got;
       buffet_result r = buffet_net_recv(fd, &in, NULL, 0, &got);   // 16 KiB heap buffers
       if (buffet_net_take_until(&in, "\r\n\r\n", 4, 8192, &req) == BUFFET_OK)
           handle(&req);                            // the header, no byte copied
       r = buffet_net_send_chain(fd, &reply, 0, NULL);   // BUFFET_AGAIN: poll for POLLOUT, call again

   STATUS
     Streams (this file): chain send with exact partial writes (sendmsg, IOV_MAX iovecs a call,
     sendfile for shared-memory and file-backed buffers), receive into buffet buffers or packets,
     take-n-bytes and take-until-delimiter without copying, and a seeded fault layer for tests.
     Datagrams (recvmmsg/sendmmsg, GSO/GRO), MSG_ZEROCOPY, descriptor passing and io_uring come
     next (see README).

   RESULTS
     BUFFET_OK             everything asked for was done
     BUFFET_AGAIN          the descriptor would block (EAGAIN): what moved is consumed or
                           appended, the rest is where it was; call again when it is ready
     BUFFET_ERR_CLOSED     the peer closed (end of file: errno 0) or reset the connection
                           (EPIPE, ECONNRESET: errno kept); nothing unsent is lost
     BUFFET_ERR_SYSTEM     another error of the system call (errno kept)
     BUFFET_ERR_INVALID    bad arguments, a descriptor that is closed (EBADF) or of a type that
                           cannot do it, device memory (no host address) in a chain
     EINTR is retried inside; SIGPIPE is never raised by a socket (MSG_NOSIGNAL). A pipe raises
     it as any write to a pipe does: programs that write to pipes ignore it.

   FAULT LAYER
     buffet_net_faults_set() puts a seeded layer between these functions and the kernel that
     makes calls short, EAGAIN or EINTR at random, so every partial-I/O path runs for real in
     tests. The same seed gives the same faults for the same sequence of calls.

   THREAD SAFETY
     Every function is safe to call from any thread on its own chains; a chain belongs to one
     thread at a time (buffet.h). The fault layer is process-wide and thread-safe.

   LIFECYCLE
     Nothing here owns a descriptor. Received bytes live in buffers that the chain's slices
     hold; they go when the slices go.

   VERSION   buffet 0.1.0; needs buffet.h and buffet_packet.h from the same release.
*/
#ifndef BUFFET_NET_H_INCLUDED
#define BUFFET_NET_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif
#include "buffet_packet.h"

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_net.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

BUFFET_EXTERN_C_BEGIN

/* Iovecs one sendmsg/readv call takes at most (Linux's IOV_MAX). */
#define BUFFET_NET_IOV_MAX 1024

/* Flags of buffet_net_send_chain. */
enum {
    BUFFET_NET_MORE = 1u << 0,       /* more follows soon: the kernel may hold a partial segment
                                        (MSG_MORE; corking for a header sent before its body) */
    BUFFET_NET_SENDFILE = 1u << 1    /* slices of buffers backed by a file (SHM buffers, and
                                        buffers from buffet_buf_map_fd) go out with sendfile:
                                        the kernel reads the pages itself, no copy through user
                                        space */
};

/* Where buffet_net_recv takes the buffers it reads into. NULL (or zero) means heap buffers of
   16 KiB. */
typedef struct buffet_net_source {
    buffet_allocator allocator;   /* HEAP buffers (and their headers) from it; zero: the heap. It
                                     must keep blocks until freed (slices outlive any frame) */
    size_t buf_size;              /* bytes per buffer; 0: 16 KiB */
    buffet_pkt_cache *packets;    /* not NULL: read into packets of this cache's pool instead
                                     (the largest class; each joins the chain by reference) */
} buffet_net_source;

/* Send the bytes of c: sendmsg over its slices (BUFFET_NET_IOV_MAX iovecs a call; writev when
   fd is not a socket), calls repeated until everything went out or the descriptor would block,
   then exactly the bytes the kernel took are consumed from c. flags: BUFFET_NET_*. *sent (may
   be NULL) gets the bytes sent by this call. Returns: BUFFET_OK (c is empty), BUFFET_AGAIN
   (c holds the bytes not taken yet), BUFFET_ERR_CLOSED (EPIPE, ECONNRESET: c holds the bytes
   not sent), BUFFET_ERR_SYSTEM, BUFFET_ERR_INVALID (c NULL, fd < 0 or closed, a slice without
   host memory). An empty chain sends nothing and returns BUFFET_OK. Thread: owned (c). */
BUFFET_API buffet_result buffet_net_send_chain(int fd, buffet_chain *c, unsigned flags, size_t *sent);

/* Read what fd has now, up to max bytes (0: one buffer's worth), with one readv into buffers
   from src (NULL: 16 KiB heap buffers) appended to c. The free room at the end of c's last
   buffer, when buffet_net_recv made it and nobody else holds it, is filled first, so small
   reads do not take a buffer each. *got (may be NULL) gets the bytes read. Returns: BUFFET_OK
   (*got > 0), BUFFET_AGAIN (nothing to read yet), BUFFET_ERR_CLOSED (end of file, or reset:
   *got 0), BUFFET_ERR_SYSTEM, BUFFET_ERR_INVALID, the allocator's or pool's reason when no
   buffer could be had (nothing read). c is unchanged unless bytes were read. Thread: owned (c). */
BUFFET_API buffet_result buffet_net_recv(int fd, buffet_chain *c, const buffet_net_source *src, size_t max,
                                         size_t *got);

/* Move exactly the first n bytes of c to the end of out, without copying a byte (a slice cut
   in two shares its buffer). Returns: BUFFET_OK; BUFFET_AGAIN when c holds fewer than n bytes
   (nothing moves: read more and call again); BUFFET_ERR_INVALID (NULL, or c == out); the
   allocator's reason (both unchanged). Thread: owned (both). */
BUFFET_API buffet_result buffet_net_take(buffet_chain *c, size_t n, buffet_chain *out);

/* Move the bytes of c up to and including the first occurrence of delim[0..dlen) to the end
   of out, without copying. Only the first max bytes are searched (0: no limit). Returns:
   BUFFET_OK; BUFFET_AGAIN when the delimiter is not there yet and c holds fewer than max bytes
   (nothing moves); BUFFET_ERR_TOO_LARGE when the first max bytes hold no delimiter (a request
   line or header too long: nothing moves); BUFFET_ERR_INVALID (NULL, dlen 0, c == out,
   device memory); the allocator's reason. Thread: owned (both). */
BUFFET_API buffet_result buffet_net_take_until(buffet_chain *c, const void *delim, size_t dlen, size_t max,
                                               buffet_chain *out);

/* The fault layer's settings and counters. */
typedef struct buffet_net_faults {
    uint64_t seed;                /* the same seed, the same faults for the same calls */
    int fd;                       /* only this descriptor; -1: every descriptor */
    uint32_t short_per_million;   /* a call moves a random part (at least 1 byte) of what it could */
    uint32_t again_per_million;   /* a call fails with EAGAIN, moving nothing */
    uint32_t intr_per_million;    /* a call fails with EINTR, moving nothing (below 1000000) */
    uint64_t calls;               /* atomic: calls that met the layer (each numbers one draw) */
    uint64_t shorts, agains, intrs;   /* atomic: faults made */
} buffet_net_faults;

/* Put f between buffet_net's system calls and the kernel (NULL: take the layer away). f must
   stay valid until it is taken away. Process-wide. Thread: safe. */
BUFFET_API void buffet_net_faults_set(buffet_net_faults *f);

BUFFET_EXTERN_C_END

#endif /* BUFFET_NET_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_NET_IMPL_INCLUDED)
#define BUFFET_NET_IMPL_INCLUDED

#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* >>faults */
static buffet_net_faults *buffet__net_faults;   /* atomic */

BUFFET_API void buffet_net_faults_set(buffet_net_faults *f) {
    /* Release: the settings written before this call are seen by the calls that find f. */
    BUFFET__STORE(&buffet__net_faults, f, BUFFET__RELEASE);
}

/* The fault for the next call on fd that could move *len bytes: 0 (none; *len may be cut to a
   short call's size), EAGAIN or EINTR. */
static int buffet__net_fault(int fd, size_t *len) {
    buffet_net_faults *f = BUFFET__LOAD(&buffet__net_faults, BUFFET__ACQUIRE);   /* pairs with faults_set */
    uint64_t n, h;
    uint32_t pick;
    if (!f || (f->fd >= 0 && f->fd != fd)) return 0;
    /* Relaxed: the counters number the draws and count faults; nothing is published by them. */
    n = BUFFET__FETCH_ADD(&f->calls, 1, BUFFET__RELAXED) + 1;
    h = buffet__draw(f->seed, n);
    pick = (uint32_t)(h % 1000000u);
    if (pick < f->intr_per_million) {
        BUFFET__FETCH_ADD(&f->intrs, 1, BUFFET__RELAXED);   /* relaxed: a counter */
        return EINTR;
    }
    pick -= f->intr_per_million;
    if (pick < f->again_per_million) {
        BUFFET__FETCH_ADD(&f->agains, 1, BUFFET__RELAXED);   /* relaxed: a counter */
        return EAGAIN;
    }
    if (*len > 1 && (uint32_t)((h >> 32) % 1000000u) < f->short_per_million) {
        BUFFET__FETCH_ADD(&f->shorts, 1, BUFFET__RELAXED);   /* relaxed: a counter */
        *len = 1 + (size_t)(buffet__draw(f->seed ^ 0x5bd1e995u, n) % (*len - 1));
    }
    return 0;
}

/* errno of a failed call as a result: AGAIN, CLOSED, INVALID or SYSTEM. */
static buffet_result buffet__net_errno_result(int e) {
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return BUFFET_AGAIN;
    case EPIPE: case ECONNRESET: return BUFFET_ERR_CLOSED;
    case EBADF: case ENOTSOCK: case EINVAL: case EFAULT: return BUFFET_ERR_INVALID;
    default: return BUFFET_ERR_SYSTEM;
    }
}

/* >>streams */
/* Does slice s go out through sendfile (its buffer's file holds its bytes at their offset)? */
static bool buffet__net_by_file(const buffet_slice *s, unsigned flags) {
    return (flags & BUFFET_NET_SENDFILE) && s->buf->fd >= 0 && (s->buf->kind == BUFFET_BUF_SHM);
}

/* One call moving up to `want` bytes from the front of c; the bytes moved, or -1 with errno. */
static ssize_t buffet__net_send_once(int fd, const buffet_chain *c, unsigned flags, size_t want, bool *plain) {
    const buffet_slice *first = buffet_chain_at(c, 0);
    struct iovec iov[BUFFET_NET_IOV_MAX];
    struct msghdr m;
    size_t i, run = 0, n;
    ssize_t r;
    if (buffet__net_by_file(first, flags)) {
        off_t off = (off_t)first->off;
        return sendfile(fd, first->buf->fd, &off, want < first->len ? want : first->len);
    }
    /* the slices up to the next one that goes by file */
    for (i = 0; i < buffet_chain_count(c) && run < want; i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        if (buffet__net_by_file(s, flags)) break;
        run += s->len;
    }
    n = buffet_chain_iovec(c, 0, run < want ? run : want, iov, BUFFET_NET_IOV_MAX);
    if (n == 0) {   /* the first slice has no host memory */
        errno = EFAULT;
        return -1;
    }
    if (!*plain) {
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = n;
        r = sendmsg(fd, &m, MSG_NOSIGNAL | ((flags & BUFFET_NET_MORE) ? MSG_MORE : 0));
        if (r >= 0 || errno != ENOTSOCK) return r;
        *plain = true;   /* a pipe or a file: writev from now on */
    }
    return writev(fd, iov, (int)n);
}

BUFFET_API buffet_result buffet_net_send_chain(int fd, buffet_chain *c, unsigned flags, size_t *sent) {
    size_t total = 0;
    bool plain = false;
    buffet_result res = BUFFET_OK;
    if (sent) *sent = 0;
    if (!c || fd < 0) return BUFFET_ERR_INVALID;
    while (buffet_chain_len(c) > 0) {
        size_t want = buffet_chain_len(c);
        int e = buffet__net_fault(fd, &want);
        ssize_t r;
        if (e) {
            r = -1;
            errno = e;
        } else {
            r = buffet__net_send_once(fd, c, flags, want, &plain);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            res = buffet__net_errno_result(errno);
            break;
        }
        if (r == 0) {   /* a sendfile past the file's end: the buffer lies about its size */
            errno = EIO;
            res = BUFFET_ERR_SYSTEM;
            break;
        }
        buffet_chain_consume(c, (size_t)r);
        total += (size_t)r;
    }
    if (sent) *sent = total;
    return res;
}

#define BUFFET__NET_RX_BUFS 64   /* fresh buffers one read may fill */

/* The tag of the heap buffers buffet_net_recv makes (in buf->user), whose free tail room a
   later read may fill. */
static const char buffet__net_rx_tag = 'r';

/* The free room after c's last slice that a read may fill, or NULL: only in a buffer this file
   made whose only reference is that slice (so no byte after it belongs to anyone). */
static buffet_slice *buffet__net_tail(buffet_chain *c) {
    buffet_slice *s;
    if (buffet_chain_count(c) == 0) return NULL;
    s = &c->slices[c->head + c->count - 1];
    if (s->buf->user != (void *)&buffet__net_rx_tag || buffet_buf_refcount(s->buf) != 1 || s->off + s->len >= s->buf->size)
        return NULL;
    return s;
}

/* Stage one fresh buffer at the end of c for a read: a packet of the largest class (joining c by
   reference), or a heap buffer of `size` bytes tagged as buffet_net_recv's own; its room goes
   into v. Staged before the read, so that no byte read can be lost for want of memory. */
static buffet_result buffet__net_stage(buffet_chain *c, const buffet_net_source *src, size_t size, struct iovec *v) {
    buffet_result r;
    if (src->packets) {
        buffet_pkt *p = buffet_pkt_alloc_class(src->packets, src->packets->nclasses - 1);
        size_t room = p ? buffet_pkt_tailroom(p) : 0;
        if (!p) return buffet_alloc_error(NULL);
        v->iov_base = buffet_pkt_append(p, room);
        v->iov_len = room;
        r = buffet_pkt_to_chain(p, c);
        buffet_pkt_free(src->packets, p);   /* the chain's slice holds it now */
    } else {
        buffet_buf_desc d;
        buffet_buf *b = NULL;
        memset(&d, 0, sizeof d);
        d.kind = BUFFET_BUF_HEAP;
        d.size = size;
        d.allocator = src->allocator;
        r = buffet_buf_create(&b, &d);
        if (r != BUFFET_OK) return r;
        b->user = (void *)&buffet__net_rx_tag;
        v->iov_base = b->data;
        v->iov_len = size;
        r = buffet_chain_append(c, b, 0, size);
        buffet_buf_unref(b);
    }
    return r;
}

/* readv into v[0..n) with the fault layer, EINTR retried: the bytes read, or -1 with errno. */
static ssize_t buffet__net_readv(int fd, const struct iovec *v, size_t n) {
    for (;;) {
        struct iovec cut[BUFFET__NET_RX_BUFS + 1];
        size_t want = 0, i, k, w;
        ssize_t r;
        int e;
        for (i = 0; i < n; i++) want += v[i].iov_len;
        e = buffet__net_fault(fd, &want);
        if (e) {
            errno = e;
            r = -1;
        } else {
            /* a short call (the fault layer) reads into the first `want` bytes only */
            for (k = 0, w = want; k < n && w > 0; k++) {
                cut[k] = v[k];
                if (cut[k].iov_len > w) cut[k].iov_len = w;
                w -= cut[k].iov_len;
            }
            r = readv(fd, cut, (int)k);
        }
        if (r >= 0 || errno != EINTR) return r;
    }
}

BUFFET_API buffet_result buffet_net_recv(int fd, buffet_chain *c, const buffet_net_source *src, size_t max,
                                         size_t *got) {
    buffet_net_source heap_default;
    struct iovec iov[BUFFET__NET_RX_BUFS + 1];
    buffet_slice *tail;
    size_t size, room = 0, staged = 0, niov = 0, left, read_n, tail_at = 0;
    buffet_result res = BUFFET_OK, why = BUFFET_OK;
    bool one = false;
    ssize_t r;
    int e;
    if (got) *got = 0;
    if (!c || fd < 0) return BUFFET_ERR_INVALID;
    if (!src) {
        memset(&heap_default, 0, sizeof heap_default);
        src = &heap_default;
    }
    if (src->packets && src->packets->nclasses == 0) return BUFFET_ERR_INVALID;
    size = src->buf_size ? src->buf_size : (size_t)16 << 10;
    tail = src->packets ? NULL : buffet__net_tail(c);
    if (tail) {
        tail_at = buffet_chain_count(c) - 1;   /* staging may move the slice array: keep the index */
        room = tail->buf->size - tail->off - tail->len;
        if (max && room > max) room = max;
        iov[niov].iov_base = (unsigned char *)tail->buf->data + tail->off + tail->len;
        iov[niov++].iov_len = room;
    }
    /* fresh buffers for the rest of max (0: the tail's room, or else one whole buffer) */
    if (max == 0) {
        one = room == 0;
        max = one ? SIZE_MAX : room;
    }
    for (left = max - room; left > 0 && niov < (one ? 1u : BUFFET__NET_RX_BUFS + (tail ? 1u : 0u)); niov++) {
        why = buffet__net_stage(c, src, size, &iov[niov]);
        if (why != BUFFET_OK) break;
        staged += iov[niov].iov_len;
        if (iov[niov].iov_len > left) iov[niov].iov_len = left;
        left -= iov[niov].iov_len;
    }
    if (niov == 0) return why != BUFFET_OK ? why : BUFFET_ERR_NOMEM;
    r = buffet__net_readv(fd, iov, niov);
    e = errno;
    read_n = r > 0 ? (size_t)r : 0;
    if (got) *got = read_n;
    if (tail) {
        size_t k = read_n < room ? read_n : room;
        /* The slice is its buffer's only holder (see buffet__net_tail): growing it over bytes
           nobody else can see keeps every invariant of the chain. */
        tail = &c->slices[c->head + tail_at];
        tail->len += k;
        c->len += k;
        read_n -= k;
    }
    buffet_chain_trim(c, staged - read_n);   /* the staged room the read did not fill */
    if (r < 0) res = e == ENOTCONN ? BUFFET_ERR_CLOSED : buffet__net_errno_result(e);
    else if (r == 0) res = BUFFET_ERR_CLOSED;
    errno = r == 0 ? 0 : e;
    return res;
}

BUFFET_API buffet_result buffet_net_take(buffet_chain *c, size_t n, buffet_chain *out) {
    buffet_chain front;
    buffet_result r = BUFFET_OK;
    size_t i, left = n;
    if (!c || !out || c == out) return BUFFET_ERR_INVALID;
    if (buffet_chain_len(c) < n) return BUFFET_AGAIN;
    if (n == 0) return BUFFET_OK;
    /* All or nothing: the front is gathered in a chain of its own (a reference per slice), moved
       to out in one step, and only then consumed from c, which cannot fail. */
    memset(&front, 0, sizeof front);
    front.allocator = c->allocator;   /* borrowed: it passed its check when c was made */
    for (i = 0; left > 0 && r == BUFFET_OK; i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        size_t k = s->len < left ? s->len : left;
        r = buffet_chain_append(&front, s->buf, s->off, k);
        left -= k;
    }
    if (r == BUFFET_OK) r = buffet_chain_concat(out, &front);
    if (r == BUFFET_OK) buffet_chain_consume(c, n);
    buffet_chain_deinit(&front);
    return r;
}

BUFFET_API buffet_result buffet_net_take_until(buffet_chain *c, const void *delim, size_t dlen, size_t max,
                                               buffet_chain *out) {
    size_t pos, len;
    buffet_result r;
    if (!c || !out || !delim || dlen == 0 || c == out) return BUFFET_ERR_INVALID;
    len = buffet_chain_len(c);
    r = buffet_chain_find(c, 0, delim, dlen, &pos);
    if (r == BUFFET_OK && (max == 0 || pos + dlen <= max)) return buffet_net_take(c, pos + dlen, out);
    if (r != BUFFET_OK && r != BUFFET_ERR_NOT_FOUND) return r;
    return max != 0 && len >= max ? BUFFET_ERR_TOO_LARGE : BUFFET_AGAIN;
}

#endif /* BUFFET_IMPLEMENTATION */

/* buffet_net.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
