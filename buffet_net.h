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

/* >>descriptors: shared-memory buffers passed between processes over UNIX sockets

   A chain whose slices all live in shared memory (BUFFET_BUF_SHM: buffers made with
   buffet_buf_create or received with buffet_buf_map_fd) goes to another process as descriptors
   and offsets, not bytes: each buffer's memfd once (SCM_RIGHTS), each slice as (buffer, offset,
   length). The receiver maps the same pages: what one side writes, the other reads, with no
   copy. The receiver trusts nothing it is told: every file must be sealed against shrinking,
   hold exactly the size the message names (bounded by the receiver's own limit), and every slice
   must lie inside its buffer; a message that fails any check is refused whole, and every
   descriptor it brought is closed.

   SOCKETS  AF_UNIX SOCK_SEQPACKET (preferred: connected, ordered, one message per call), or
   SOCK_DGRAM (a socketpair or a connected pair; several senders on one socket can interleave the
   parts of a split chain). SOCK_STREAM is refused: a stream may cut a message into pieces that
   arrive without the descriptors, which only the first piece carries.

   WIRE FORMAT (version 1, every field little-endian)
     header   16 bytes: u32 magic "BFDS" (0x53444642), u16 version 1, u16 flags (bit 0: MORE, the
              chain goes on in the next message), u16 buffers n (1..253), u16 reserved 0,
              u32 slices k (1..BUFFET_NET_FDS_SLICES_MAX)
     sizes    n x u64: the byte size of each buffer (its file's size), in the order of the
              descriptors of the message's one SCM_RIGHTS cmsg
     slices   k x 24 bytes: u32 buffer index (< n), u32 reserved 0, u64 offset, u64 length (> 0)
   A message holds at most 253 descriptors (SCM_MAX_FD) and BUFFET_NET_FDS_SLICES_MAX slices;
   a longer chain goes as several messages, all but the last flagged MORE, and is received as
   one chain.

   CREDENTIALS  buffet_net_passcred() on the receiving socket, before the sender sends, makes the
   kernel stamp every message with the sender's pid, uid and gid (SCM_CREDENTIALS, checked by the
   kernel), which buffet_net_recv_chain_fds reports; without it the socket's SO_PEERCRED is
   reported: the process that connected or made the socketpair, which after a fork may not be
   the one sending. */

BUFFET_EXTERN_C_BEGIN

#define BUFFET_NET_FDS_VERSION 1
#define BUFFET_NET_FDS_MAX 253            /* descriptors one message carries (Linux's SCM_MAX_FD) */
#define BUFFET_NET_FDS_SLICES_MAX 512     /* slices one message describes */

/* Where buffet_net_peer's credentials came from. */
typedef enum buffet_net_peer_source {
    BUFFET_NET_PEER_NONE = 0,      /* none could be had */
    BUFFET_NET_PEER_SOCKET = 1,    /* SO_PEERCRED: who connected (or made the socketpair) */
    BUFFET_NET_PEER_MESSAGE = 2    /* SCM_CREDENTIALS: who sent this message (buffet_net_passcred) */
} buffet_net_peer_source;

/* The credentials of the process at the other end, for an access check. */
typedef struct buffet_net_peer {
    int32_t pid;
    uint32_t uid, gid;
    uint32_t source;               /* buffet_net_peer_source */
} buffet_net_peer;

/* What buffet_net_recv_chain_fds accepts, and where it puts what it maps. NULL (or zero) means:
   heap buffer headers, buffers of any size the message names, up to 253 descriptors a message,
   only sealed files, silent. */
typedef struct buffet_net_fds_opts {
    buffet_allocator allocator;    /* headers of the mapped buffers; zero: the heap. It must keep
                                      blocks until freed and be thread-safe (buffet_buf_map_fd) */
    size_t max_size;               /* the largest buffer (file) accepted; 0: no limit but the
                                      address space */
    size_t max_fds;                /* descriptors accepted in one message, 1..253; 0: 253. Each
                                      costs a slot of RLIMIT_NOFILE while the message is taken */
    uint32_t flags;                /* BUFFET_BUF_UNSEALED (accept files the sender can still
                                      shrink: a shrink kills this process with SIGBUS),
                                      BUFFET_BUF_SECURE; others are refused */
    buffet_logger log;             /* why a message was refused; zero: silent */
} buffet_net_fds_opts;

/* Send the slices of c as descriptors and offsets (one message per 253 buffers or
   BUFFET_NET_FDS_SLICES_MAX slices, the earlier ones flagged MORE), and consume from c the slices
   of every message the kernel took. Nothing is copied; the receiver maps the same pages. Every
   slice must be in a BUFFET_BUF_SHM buffer with a descriptor (checked before anything is sent).
   Returns: BUFFET_OK (c empty; an empty chain sends nothing), BUFFET_AGAIN (the socket's queue
   is full: c holds the slices not sent yet, call again when it is writable), BUFFET_ERR_CLOSED
   (the peer went: EPIPE, ECONNRESET, ECONNREFUSED), BUFFET_ERR_TOO_LARGE (EMSGSIZE: SO_SNDBUF
   below one message), BUFFET_ERR_SYSTEM (errno kept: ETOOMANYREFS when too many descriptors
   are in flight), BUFFET_ERR_INVALID (c NULL, a slice not in shared memory, fd < 0, closed, not
   an AF_UNIX SOCK_SEQPACKET or SOCK_DGRAM socket). Thread: owned (c). */
BUFFET_API buffet_result buffet_net_send_chain_fds(int fd, buffet_chain *c);

/* Send whole buffers bufs[0..n) as one chain (as buffet_net_send_chain_fds; a buffer named twice
   is sent once). *sent (may be NULL) gets the buffers sent: on BUFFET_AGAIN call again with
   bufs + *sent. Returns and errors: as buffet_net_send_chain_fds (bufs or one of them NULL:
   BUFFET_ERR_INVALID; n 0 sends nothing). Thread: safe (the buffers are only read). */
BUFFET_API buffet_result buffet_net_send_bufs(int fd, buffet_buf *const *bufs, size_t n, size_t *sent);

/* Receive a chain sent by buffet_net_send_chain_fds or _send_bufs: map every buffer
   (buffet_buf_map_fd: sealed, the size the message names, at most o->max_size) and append its
   slices to out, which then holds references to the mapped buffers. A chain sent in several
   messages is received whole: with a non-blocking socket the messages that came are appended
   and BUFFET_AGAIN says more is due (call again with the same out). *peer (may be NULL) gets the
   sender's credentials (see CREDENTIALS). Every received descriptor is closed before return
   (the buffers hold duplicates). After an error in the middle of a split chain, out keeps the
   parts that came: a peer that sends garbage is best disconnected. Returns: BUFFET_OK,
   BUFFET_AGAIN (nothing, or not the whole chain, yet), BUFFET_ERR_CLOSED (the peer closed: end
   of file), and for a message refused (all
   of it dropped, its descriptors closed, out unchanged by it, the socket still usable):
   BUFFET_ERR_INVALID (a malformed message: short, bad magic, a count 0 or too large, fewer or
   more descriptors than buffers, a descriptor that is no regular file or memfd; or bad
   arguments: out NULL, o->max_fds > 253, o->flags other than UNSEALED|SECURE, fd not an AF_UNIX
   SOCK_SEQPACKET or SOCK_DGRAM socket), BUFFET_ERR_UNSUPPORTED (another wire version),
   BUFFET_ERR_TRUNCATED (more descriptors than o->max_fds, or a message longer than any valid
   one), BUFFET_ERR_UNSAFE (a file not sealed against shrinking), BUFFET_ERR_TOO_LARGE (a
   buffer above o->max_size, or a file larger than the message says), BUFFET_ERR_RANGE (a file
   smaller than the message says, a slice past its buffer), BUFFET_ERR_SYSTEM, the allocator's
   reason. Each refusal is logged to o->log. Thread: owned (out). */
BUFFET_API buffet_result buffet_net_recv_chain_fds(int fd, buffet_chain *out, const buffet_net_fds_opts *o,
                                                   buffet_net_peer *peer);

/* Ask the kernel to stamp every message that arrives on fd from now on with its sender's
   credentials (SO_PASSCRED). Returns: BUFFET_OK, BUFFET_ERR_INVALID (fd < 0, closed, not a
   socket). Thread: safe. */
BUFFET_API buffet_result buffet_net_passcred(int fd);

/* The credentials of the process that connected fd's peer, or made the socketpair
   (SO_PEERCRED). Returns: BUFFET_OK and *peer (source BUFFET_NET_PEER_SOCKET),
   BUFFET_ERR_INVALID (peer NULL, fd < 0, closed, not a connected UNIX socket). Thread: safe. */
BUFFET_API buffet_result buffet_net_peer_of(int fd, buffet_net_peer *peer);

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

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFFET__NET_FDS_MAGIC 0x53444642u   /* "BFDS" as little-endian bytes */
#define BUFFET__NET_FDS_MORE 1u
#define BUFFET__NET_FDS_HEADER 16
#define BUFFET__NET_FDS_SLICE 24
#define BUFFET__NET_FDS_MSG_MAX \
    (BUFFET__NET_FDS_HEADER + 8 * BUFFET_NET_FDS_MAX + BUFFET__NET_FDS_SLICE * BUFFET_NET_FDS_SLICES_MAX)
/* Room for the credentials and the most descriptors one message can carry. */
#define BUFFET__NET_FDS_CTL (CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(BUFFET_NET_FDS_MAX * sizeof(int)))

/* The wire is little-endian whatever the host is: bytes are placed one by one. */
static void buffet__net_fds_put(unsigned char *p, uint64_t v, int bytes) {
    int i;
    for (i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t buffet__net_fds_get(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    int i;
    for (i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Is fd a socket that keeps a message and its descriptors together (AF_UNIX, SEQPACKET or
   DGRAM)? BUFFET_OK, or BUFFET_ERR_INVALID logged to lg. *type gets SO_TYPE. */
static buffet_result buffet__net_fds_socket(int fd, const buffet_logger *lg, const char *what, int *type) {
    int domain = -1;
    socklen_t n = sizeof *type;
    *type = -1;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &n) != 0 ||
        (n = sizeof domain, getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &n)) != 0) {
        BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "%s: fd %d: %s", what, fd,
                    fd < 0 ? "no file descriptor" : strerror(errno));
        return BUFFET_ERR_INVALID;
    }
    if (domain != AF_UNIX || (*type != SOCK_SEQPACKET && *type != SOCK_DGRAM)) {
        BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "%s: fd %d is not an AF_UNIX SOCK_SEQPACKET or SOCK_DGRAM socket (a stream can split a message "
                    "from its descriptors)", what, fd);
        return BUFFET_ERR_INVALID;
    }
    return BUFFET_OK;
}

/* >>descriptors: send */
/* Encode one message from the front of s[0..n): as many slices as fit the limits. Returns its
   length; *taken gets the slices it holds, fds[0..*nfds) the descriptors in header order. */
static size_t buffet__net_fds_encode(unsigned char *msg, const buffet_slice *s, size_t n, bool more_after,
                                     size_t *taken, int *fds, size_t *nfds) {
    const buffet_buf *bufs[BUFFET_NET_FDS_MAX];
    uint32_t idx[BUFFET_NET_FDS_SLICES_MAX];
    size_t nb = 0, k, j;
    unsigned char *p;
    for (k = 0; k < n && k < BUFFET_NET_FDS_SLICES_MAX; k++) {
        for (j = 0; j < nb && bufs[j] != s[k].buf; j++) {}
        if (j == nb) {   /* a buffer new to this message */
            if (nb == BUFFET_NET_FDS_MAX) break;
            bufs[nb++] = s[k].buf;
        }
        idx[k] = (uint32_t)j;
    }
    buffet__net_fds_put(msg, BUFFET__NET_FDS_MAGIC, 4);
    buffet__net_fds_put(msg + 4, BUFFET_NET_FDS_VERSION, 2);
    buffet__net_fds_put(msg + 6, k < n || more_after ? BUFFET__NET_FDS_MORE : 0, 2);
    buffet__net_fds_put(msg + 8, nb, 2);
    buffet__net_fds_put(msg + 10, 0, 2);
    buffet__net_fds_put(msg + 12, k, 4);
    p = msg + BUFFET__NET_FDS_HEADER;
    for (j = 0; j < nb; j++, p += 8) {
        buffet__net_fds_put(p, bufs[j]->size, 8);
        fds[j] = bufs[j]->fd;
    }
    for (j = 0; j < k; j++, p += BUFFET__NET_FDS_SLICE) {
        buffet__net_fds_put(p, idx[j], 4);
        buffet__net_fds_put(p + 4, 0, 4);
        buffet__net_fds_put(p + 8, s[j].off, 8);
        buffet__net_fds_put(p + 16, s[j].len, 8);
    }
    *taken = k;
    *nfds = nb;
    return (size_t)(p - msg);
}

/* Send slices s[0..n) (already checked) as messages, the last flagged MORE when more_after;
   *done gets the slices of the messages the kernel took. */
static buffet_result buffet__net_fds_send(int fd, const buffet_slice *s, size_t n, bool more_after, size_t *done) {
    unsigned char msg[BUFFET__NET_FDS_MSG_MAX];
    union { struct cmsghdr align; unsigned char b[CMSG_SPACE(BUFFET_NET_FDS_MAX * sizeof(int))]; } ctl;
    int fds[BUFFET_NET_FDS_MAX];
    *done = 0;
    while (*done < n) {
        struct msghdr m;
        struct iovec v;
        struct cmsghdr *cm;
        size_t taken, nfds, none = 0;
        ssize_t r;
        int e;
        v.iov_base = msg;
        v.iov_len = buffet__net_fds_encode(msg, s + *done, n - *done, more_after, &taken, fds, &nfds);
        memset(&m, 0, sizeof m);
        memset(&ctl, 0, sizeof ctl);
        m.msg_iov = &v;
        m.msg_iovlen = 1;
        m.msg_control = ctl.b;
        m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
        do {   /* a datagram goes whole or not at all: the fault layer may fail it, never cut it */
            e = buffet__net_fault(fd, &none);
            if (e) {
                errno = e;
                r = -1;
            } else {
                r = sendmsg(fd, &m, MSG_NOSIGNAL);
            }
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno == EMSGSIZE) return BUFFET_ERR_TOO_LARGE;
            if (errno == ECONNREFUSED || errno == ENOTCONN) return BUFFET_ERR_CLOSED;
            return buffet__net_errno_result(errno);
        }
        if ((size_t)r != v.iov_len) {   /* a message socket never sends part of one */
            errno = EIO;
            return BUFFET_ERR_SYSTEM;
        }
        *done += taken;
    }
    return BUFFET_OK;
}

static bool buffet__net_fds_shareable(const buffet_buf *b) {
    return b && b->kind == BUFFET_BUF_SHM && b->fd >= 0 && b->size > 0;
}

BUFFET_API buffet_result buffet_net_send_chain_fds(int fd, buffet_chain *c) {
    size_t i, done = 0, bytes = 0;
    buffet_result r;
    int type;
    if (!c) return BUFFET_ERR_INVALID;
    for (i = 0; i < buffet_chain_count(c); i++)
        if (!buffet__net_fds_shareable(buffet_chain_at(c, i)->buf)) return BUFFET_ERR_INVALID;
    if ((r = buffet__net_fds_socket(fd, NULL, "send_chain_fds", &type)) != BUFFET_OK) return r;
    if (buffet_chain_count(c) == 0) return BUFFET_OK;
    r = buffet__net_fds_send(fd, buffet_chain_at(c, 0), buffet_chain_count(c), false, &done);
    for (i = 0; i < done; i++) bytes += buffet_chain_at(c, i)->len;
    buffet_chain_consume(c, bytes);   /* whole slices, so it cannot fail */
    return r;
}

BUFFET_API buffet_result buffet_net_send_bufs(int fd, buffet_buf *const *bufs, size_t n, size_t *sent) {
    buffet_slice s[BUFFET_NET_FDS_MAX];
    buffet_result r = BUFFET_OK;
    size_t i, at = 0;
    int type;
    if (sent) *sent = 0;
    if (!bufs && n > 0) return BUFFET_ERR_INVALID;
    for (i = 0; i < n; i++)
        if (!buffet__net_fds_shareable(bufs[i])) return BUFFET_ERR_INVALID;
    if ((r = buffet__net_fds_socket(fd, NULL, "send_bufs", &type)) != BUFFET_OK) return r;
    /* Whole buffers as slices that borrow the caller's references, a batch at a time; every
       batch but the last says MORE, so the receiver makes one chain of them all. */
    while (at < n && r == BUFFET_OK) {
        size_t k = n - at < BUFFET_NET_FDS_MAX ? n - at : BUFFET_NET_FDS_MAX, done;
        for (i = 0; i < k; i++) {
            s[i].buf = bufs[at + i];
            s[i].off = 0;
            s[i].len = bufs[at + i]->size;
        }
        r = buffet__net_fds_send(fd, s, k, at + k < n, &done);
        at += done;
    }
    if (sent) *sent = at;
    return r;
}

/* >>descriptors: receive */
/* Close fds[0..n). */
static void buffet__net_fds_close(const int *fds, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) close(fds[i]);
}

/* Check a received message msg[0..len) carrying fds[0..nfds), map its buffers and append its
   slices to out (all or nothing). *more gets its MORE flag. The caller closes the fds. */
static buffet_result buffet__net_fds_take(const unsigned char *msg, size_t len, const int *fds, size_t nfds,
                                          const buffet_net_fds_opts *o, buffet_chain *out, bool *more) {
    const buffet_logger *lg = &o->log;
    buffet_buf *bufs[BUFFET_NET_FDS_MAX];
    const unsigned char *sizes = msg + BUFFET__NET_FDS_HEADER, *sl;
    size_t nb, k, i, mapped = 0;
    uint64_t version, flags;
    buffet_chain part;
    buffet_result r = BUFFET_OK;
    *more = false;
    if (len < BUFFET__NET_FDS_HEADER || buffet__net_fds_get(msg, 4) != BUFFET__NET_FDS_MAGIC) {
        BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "recv_chain_fds: a %zu-byte message without the header "
                    "of buffet_net_send_chain_fds (%zu descriptors closed)", len, nfds);
        return BUFFET_ERR_INVALID;
    }
    version = buffet__net_fds_get(msg + 4, 2);
    flags = buffet__net_fds_get(msg + 6, 2);
    nb = (size_t)buffet__net_fds_get(msg + 8, 2);
    k = (size_t)buffet__net_fds_get(msg + 12, 4);
    if (version != BUFFET_NET_FDS_VERSION) {
        BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED, "recv_chain_fds: wire version %u, this reader knows %u",
                    (unsigned)version, (unsigned)BUFFET_NET_FDS_VERSION);
        return BUFFET_ERR_UNSUPPORTED;
    }
    if ((flags & ~(uint64_t)BUFFET__NET_FDS_MORE) || buffet__net_fds_get(msg + 10, 2) || nb == 0 || k == 0 ||
        nb > BUFFET_NET_FDS_MAX || k > BUFFET_NET_FDS_SLICES_MAX ||
        len != BUFFET__NET_FDS_HEADER + 8 * nb + BUFFET__NET_FDS_SLICE * k || nfds != nb) {
        BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "recv_chain_fds: malformed message: %zu bytes, flags 0x%x, %zu buffers, %zu slices, %zu descriptors",
                    len, (unsigned)flags, nb, k, nfds);
        return BUFFET_ERR_INVALID;
    }
    /* Every number is the sender's word: all of them are checked before anything is mapped. */
    for (i = 0; i < nb; i++) {
        uint64_t size = buffet__net_fds_get(sizes + 8 * i, 8);
        if (size == 0) {
            BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "recv_chain_fds: buffer %zu of 0 bytes", i);
            return BUFFET_ERR_INVALID;
        }
        if (size > SIZE_MAX || (o->max_size && size > o->max_size)) {
            BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_TOO_LARGE, "recv_chain_fds: buffer %zu of %llu bytes (at most %zu "
                        "accepted)", i, (unsigned long long)size, o->max_size ? o->max_size : SIZE_MAX);
            return BUFFET_ERR_TOO_LARGE;
        }
    }
    for (i = 0, sl = sizes + 8 * nb; i < k; i++, sl += BUFFET__NET_FDS_SLICE) {
        uint64_t b = buffet__net_fds_get(sl, 4), off = buffet__net_fds_get(sl + 8, 8), n = buffet__net_fds_get(sl + 16, 8);
        if (b >= nb || buffet__net_fds_get(sl + 4, 4) || n == 0) {
            BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "recv_chain_fds: slice %zu names buffer %llu of %zu, "
                        "length %llu", i, (unsigned long long)b, nb, (unsigned long long)n);
            return BUFFET_ERR_INVALID;
        }
        if (off > buffet__net_fds_get(sizes + 8 * b, 8) || n > buffet__net_fds_get(sizes + 8 * b, 8) - off) {
            BUFFET__LOG(lg, BUFFET_LOG_ERROR, BUFFET_ERR_RANGE, "recv_chain_fds: slice %zu (%llu bytes at %llu) lies past "
                        "the end of its %llu-byte buffer", i, (unsigned long long)n, (unsigned long long)off,
                        (unsigned long long)buffet__net_fds_get(sizes + 8 * b, 8));
            return BUFFET_ERR_RANGE;
        }
    }
    /* The file must hold exactly the size named: a larger one is refused by map_fd (desc.size
       bounds it), a smaller one here. */
    for (; mapped < nb && r == BUFFET_OK; mapped++) {
        buffet_buf_desc d;
        memset(&d, 0, sizeof d);
        d.size = (size_t)buffet__net_fds_get(sizes + 8 * mapped, 8);
        d.flags = o->flags;
        d.allocator = o->allocator;
        d.log = o->log;
        r = buffet_buf_map_fd(&bufs[mapped], fds[mapped], &d);
        if (r != BUFFET_OK) break;
        if (bufs[mapped]->size != d.size) {
            r = BUFFET_ERR_RANGE;
            BUFFET__LOG(lg, BUFFET_LOG_ERROR, r, "recv_chain_fds: buffer %zu: the message says %zu bytes, its file holds %zu",
                        mapped, d.size, bufs[mapped]->size);
        }
    }
    /* All or nothing: the slices go to a chain of their own, moved to out in one step. */
    memset(&part, 0, sizeof part);
    part.allocator = out->allocator;   /* borrowed: it passed its check when out was made */
    for (i = 0, sl = sizes + 8 * nb; i < k && r == BUFFET_OK; i++, sl += BUFFET__NET_FDS_SLICE)
        r = buffet_chain_append(&part, bufs[buffet__net_fds_get(sl, 4)], (size_t)buffet__net_fds_get(sl + 8, 8),
                                (size_t)buffet__net_fds_get(sl + 16, 8));
    if (r == BUFFET_OK) r = buffet_chain_concat(out, &part);
    buffet_chain_deinit(&part);
    for (i = 0; i < mapped; i++) buffet_buf_unref(bufs[i]);   /* the chain holds what it needs */
    *more = r == BUFFET_OK && (flags & BUFFET__NET_FDS_MORE);
    return r;
}

/* Receive one message into out; *more gets its MORE flag. */
static buffet_result buffet__net_fds_recv_one(int fd, int type, buffet_chain *out, const buffet_net_fds_opts *o,
                                              buffet_net_peer *peer, bool *more) {
    unsigned char msg[BUFFET__NET_FDS_MSG_MAX];
    union { struct cmsghdr align; unsigned char b[BUFFET__NET_FDS_CTL]; } ctl;
    int fds[BUFFET__NET_FDS_CTL / sizeof(int)];
    size_t nfds = 0, max_fds = o->max_fds ? o->max_fds : BUFFET_NET_FDS_MAX, none = 0;
    struct msghdr m;
    struct iovec v;
    struct cmsghdr *cm;
    struct ucred cred;
    bool has_cred = false;
    buffet_result r;
    ssize_t got;
    int e;
    *more = false;
    v.iov_base = msg;
    v.iov_len = sizeof msg;
    memset(&m, 0, sizeof m);
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    /* Room for max_fds descriptors: the kernel closes any beyond it and says MSG_CTRUNC. */
    m.msg_controllen = CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(max_fds * sizeof(int));
    do {
        e = buffet__net_fault(fd, &none);
        if (e) {
            errno = e;
            got = -1;
        } else {
            got = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        }
    } while (got < 0 && errno == EINTR);
    if (got < 0) return errno == ENOTCONN ? BUFFET_ERR_CLOSED : buffet__net_errno_result(errno);
    for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_len < CMSG_LEN(0)) continue;
        if (cm->cmsg_type == SCM_RIGHTS) {
            size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + nfds, CMSG_DATA(cm), n * sizeof(int));   /* fds holds the whole control buffer */
            nfds += n;
        } else if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len >= CMSG_LEN(sizeof cred)) {
            memcpy(&cred, CMSG_DATA(cm), sizeof cred);
            has_cred = true;
        }
    }
    if (got == 0 && nfds == 0 && type == SOCK_SEQPACKET && !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        errno = 0;   /* a sequenced-packet socket reads 0 bytes only at end of file */
        return BUFFET_ERR_CLOSED;
    }
    if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds > max_fds) {
        r = BUFFET_ERR_TRUNCATED;
        BUFFET__LOG(&o->log, BUFFET_LOG_ERROR, r, "recv_chain_fds: message refused: %s (%zu descriptors came, %zu "
                    "accepted)", (m.msg_flags & MSG_TRUNC) ? "longer than any valid message" : "more descriptors than max_fds",
                    nfds, max_fds);
    } else if (has_cred && peer && peer->source == BUFFET_NET_PEER_MESSAGE &&
               (peer->pid != (int32_t)cred.pid || peer->uid != cred.uid || peer->gid != cred.gid)) {
        /* The parts of one chain come from one sender, or they are not one chain. */
        r = BUFFET_ERR_INVALID;
        BUFFET__LOG(&o->log, BUFFET_LOG_ERROR, r, "recv_chain_fds: the parts of one chain came from pid %d and pid %d",
                    (int)peer->pid, (int)cred.pid);
    } else {
        r = buffet__net_fds_take(msg, (size_t)got, fds, nfds, o, out, more);
    }
    buffet__net_fds_close(fds, nfds);   /* the mapped buffers hold duplicates */
    if (r == BUFFET_OK && peer) {
        if (has_cred) {
            peer->pid = (int32_t)cred.pid;
            peer->uid = cred.uid;
            peer->gid = cred.gid;
            peer->source = BUFFET_NET_PEER_MESSAGE;
        } else if (peer->source == BUFFET_NET_PEER_NONE) {
            buffet_net_peer_of(fd, peer);
        }
    }
    return r;
}

BUFFET_API buffet_result buffet_net_recv_chain_fds(int fd, buffet_chain *out, const buffet_net_fds_opts *o,
                                                   buffet_net_peer *peer) {
    buffet_net_fds_opts none;
    buffet_result r;
    bool more = true;
    int type;
    if (peer) memset(peer, 0, sizeof *peer);
    if (!o) {
        memset(&none, 0, sizeof none);
        o = &none;
    }
    if (!out || o->max_fds > BUFFET_NET_FDS_MAX || (o->flags & ~(uint32_t)(BUFFET_BUF_UNSEALED | BUFFET_BUF_SECURE))) {
        BUFFET__LOG(&o->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "recv_chain_fds: %s",
                    !out ? "out is NULL" : o->max_fds > BUFFET_NET_FDS_MAX ? "max_fds above 253" : "flags other than UNSEALED, SECURE");
        return BUFFET_ERR_INVALID;
    }
    if ((r = buffet__net_fds_socket(fd, &o->log, "recv_chain_fds", &type)) != BUFFET_OK) return r;
    while (more && r == BUFFET_OK) r = buffet__net_fds_recv_one(fd, type, out, o, peer, &more);
    return r;
}

BUFFET_API buffet_result buffet_net_passcred(int fd) {
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) return BUFFET_ERR_INVALID;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_peer_of(int fd, buffet_net_peer *peer) {
    struct ucred cred;
    socklen_t n = sizeof cred;
    if (!peer) return BUFFET_ERR_INVALID;
    memset(peer, 0, sizeof *peer);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) != 0 || n != sizeof cred || cred.pid <= 0)
        return BUFFET_ERR_INVALID;
    peer->pid = (int32_t)cred.pid;
    peer->uid = cred.uid;
    peer->gid = cred.gid;
    peer->source = BUFFET_NET_PEER_SOCKET;
    return BUFFET_OK;
}

#endif /* BUFFET_IMPLEMENTATION */

/* buffet_net.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
