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

   CONTENTS (search for the >>name)
     >>streams      chain send with exact partial writes (sendmsg over IOV_MAX iovecs a call,
                    writev for pipes and files, sendfile for shared-memory slices), receive into
                    buffet buffers or packets, take n bytes or up to a delimiter without copying
     >>datagrams    batched UDP (recvmmsg/sendmmsg) of packets with addresses, local address,
                    interface, ECN and timestamp in the packet's user area; GSO on send, GRO on
                    receive split back into packets sharing the buffer by reference
     >>zerocopy     MSG_ZEROCOPY sends whose buffers stay referenced until the kernel's
                    completion covering them is drained, then are released exactly once
     >>descriptors  shared-memory chains passed to another process as descriptors + offsets
                    (SCM_RIGHTS), checked and mapped by the receiver, with the sender's credentials
     >>faults       a seeded layer making calls short, EAGAIN or EINTR, for tests
     >>uring        (BUFFET_NET_URING 1) io_uring multishot receive into a provided-buffer ring
                    of packet pool buffers: each completion a packet, no copy; sends of chains
                    (SENDMSG, or SENDMSG_ZC whose notification releases the buffers once)
     >>afpacket     (BUFFET_NET_AFPACKET 1) AF_PACKET TPACKET_V3 rings on an interface: frames
                    received as packets over the ring's blocks, sends copied into its frames
     >>afxdp        (BUFFET_NET_AFXDP 1) AF_XDP on an interface queue: the UMEM is a packet pool
                    class's region, fill and completion rings driven from the pool's cache, the
                    redirect program loaded through bpf(2) (native mode, or generic)
     >>quic         (BUFFET_NET_QUIC 1) QUIC connections on ngtcp2 + GnuTLS: stream data sent from
                    chains with no copy (released as acknowledged), received into buffers of a
                    chain per stream, unreliable datagrams in packets; any event loop

   RESULTS
     BUFFET_OK             everything asked for was done
     BUFFET_AGAIN          the descriptor would block (EAGAIN): what moved is consumed or
                           appended, the rest is where it was; call again when it is ready
     BUFFET_ERR_CLOSED     the peer closed (end of file: errno 0) or reset the connection
                           (EPIPE, ECONNRESET: errno kept); nothing unsent is lost
     BUFFET_ERR_SYSTEM     another error of the system call (errno kept)
     BUFFET_ERR_INVALID    bad arguments, a descriptor that is closed (EBADF) or of a type that
                           cannot do it, device memory (no host address) in a chain, a message
                           from another process that is not well formed
     BUFFET_ERR_TRUNCATED  a datagram or message was larger than the room for it (reported with
                           its real size, never silently cut)
     BUFFET_ERR_TOO_LARGE, _RANGE, _UNSAFE   sizes, offsets or seals another process sent that
                           do not hold; a datagram above what the socket takes (EMSGSIZE)
     BUFFET_ERR_UNSUPPORTED, _EXHAUSTED      a kernel feature missing; kernel memory for
                           zerocopy completions full (drain, then send again)
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
     hold; they go when the slices go. A zerocopy tracker (buffet_net_zc_create / _destroy, owned
     by the thread sending on its socket) refuses to be destroyed while the kernel may still read
     buffers it holds: drain (buffet_net_zc_wait) before closing the socket.

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

/* >>streams */
/* Iovecs one sendmsg/readv call takes at most (Linux's IOV_MAX). */
#define BUFFET_NET_IOV_MAX 1024
/* Bytes buffet_net_send_chain asks one call to take at most. A blocking TCP send of 4 MiB in one
   call measured 6-17% slower over loopback (by the receiver's read size) than the same bytes in
   calls of 1 MiB; a call per MiB costs nothing next to copying it. Define it before including
   the header to change it. */
#ifndef BUFFET_NET_SEND_MAX
#define BUFFET_NET_SEND_MAX 1048576   /* 1 MiB */
#endif
#if BUFFET_NET_SEND_MAX < 1
#error "BUFFET_NET_SEND_MAX must be at least 1 byte"
#endif

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

/* Send the bytes of c: sendmsg over its slices (BUFFET_NET_IOV_MAX iovecs and
   BUFFET_NET_SEND_MAX bytes a call; writev when fd is not a socket), calls repeated until
   everything went out or the descriptor would block, then exactly the bytes the kernel took are
   consumed from c. flags: BUFFET_NET_*. *sent (may be NULL) gets the bytes sent by this call.
   Returns: BUFFET_OK (c is empty), BUFFET_AGAIN (c holds the bytes not taken yet),
   BUFFET_ERR_CLOSED (EPIPE, ECONNRESET: c holds the bytes not sent), BUFFET_ERR_SYSTEM,
   BUFFET_ERR_INVALID (c NULL, fd < 0 or closed, a slice without host memory). An empty chain
   sends nothing and returns BUFFET_OK. Thread: owned (c). */
BUFFET_API buffet_result buffet_net_send_chain(int fd, buffet_chain *c, unsigned flags, size_t *sent);

/* Read what fd has now, up to max bytes (0: one buffer's worth), with one readv into buffers
   from src (NULL: 16 KiB heap buffers) appended to c. The free room at the end of c's last
   buffer, when buffet_net_recv made it and nobody else holds it, is filled first, so small
   reads do not take a buffer each. *got (may be NULL) gets the bytes read. Returns: BUFFET_OK
   (*got > 0; 0 for an empty datagram on a SOCK_DGRAM socket), BUFFET_AGAIN (nothing to read
   yet), BUFFET_ERR_CLOSED (end of file, or reset: *got 0), BUFFET_ERR_TRUNCATED (a datagram or
   SEQPACKET message larger than the room of this read, max bytes: the part that fitted is
   appended, *got bytes, the rest is gone; give a max above the largest message),
   BUFFET_ERR_SYSTEM, BUFFET_ERR_INVALID, the allocator's or pool's reason when no buffer could
   be had (nothing read). c is unchanged unless bytes were read. Thread: owned (c). */
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

/* >>faults */
/* The fault layer's settings and counters. */
typedef struct buffet_net_faults {
    uint64_t seed;                /* the same seed, the same faults for the same calls */
    int fd;                       /* only this descriptor; -1: every descriptor */
    uint32_t short_per_million;   /* a call moves a random part (at least 1 byte) of what it could (streams, pipes, files: a datagram or message moves whole) */
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

/* >>zerocopy: MSG_ZEROCOPY sends and their completions

   With MSG_ZEROCOPY the kernel sends from the caller's pages instead of copying them, so the
   pages must not change or go until the kernel says it is done. It numbers each zerocopy call on
   a socket 0, 1, 2, ... (32 bits, wrapping) and later puts "calls lo..hi are done" on the
   socket's error queue, merging consecutive calls into one entry. A buffet_net_zc tracker keeps
   a reference on every buffer each call sent from, and drops it when that call's completion is
   read, so a chain can be consumed (and its buffers reused by others) right after the send:

       buffet_net_zc *zc;
       buffet_net_zc_desc d;  memset(&d, 0, sizeof d);
       buffet_net_zc_create(&zc, &d);
       buffet_net_send_chain_zc(fd, &c, zc, 0, NULL);   // c is consumed as with send_chain
       ...                                              // poll: POLLERR means completions
       buffet_net_zc_drain(fd, zc, NULL);               // releases the buffers of done calls
       buffet_net_zc_wait(fd, zc, 1000, NULL);          // before close: everything completed
       buffet_net_zc_destroy(zc);

   Loopback and veth always copy (the kernel reports it: `copied`); real NICs with scatter-gather
   do not. Zerocopy pays off for sends of about 10 KiB and more.
*/
BUFFET_EXTERN_C_BEGIN

typedef struct buffet_net_zc buffet_net_zc;

typedef struct buffet_net_zc_desc {
    buffet_allocator allocator;   /* the tracker and its two rings (they grow with the calls in
                                     flight); zero: the heap. Must keep blocks until freed */
    buffet_logger log;            /* why a send was refused (optmem limit, no zerocopy); zero: silent */
} buffet_net_zc_desc;

/* What one drain (or wait) did. */
typedef struct buffet_net_zc_drained {
    uint32_t completed;       /* calls completed: their references dropped */
    uint32_t copied;          /* of those, calls the kernel sent by copying after all
                                 (SO_EE_CODE_ZEROCOPY_COPIED; the kernel sets it per merged entry) */
    uint32_t notifications;   /* zerocopy entries read (one covers a merged range of calls) */
    uint32_t other;           /* other error-queue entries read and ignored (ICMP errors with
                                 IP_RECVERR, timestamps, truncated entries) */
} buffet_net_zc_drained;

/* A tracker's totals since creation. */
typedef struct buffet_net_zc_stats {
    uint64_t calls;           /* zerocopy calls the kernel numbered */
    uint64_t completed;       /* calls completed (references dropped) */
    uint64_t copied;          /* of those, calls reported as copied */
    uint64_t notifications;   /* zerocopy entries read */
    uint64_t other;           /* other error-queue entries ignored */
    uint64_t stale;           /* calls named by an entry but not in flight here (already
                                 completed, or sent by someone else on the socket): ignored */
    uint32_t in_flight;       /* calls not completed yet */
    uint32_t next_id;         /* the number the kernel gives the socket's next zerocopy call */
} buffet_net_zc_stats;

/* Create a tracker for the zerocopy sends of one socket (the first send binds it). Returns:
   BUFFET_OK and *out. Errors: BUFFET_ERR_INVALID (out or desc NULL), BUFFET_ERR_LIFETIME (an
   allocator whose blocks die with a frame or scope), the allocator's reason. Thread: safe. */
BUFFET_API buffet_result buffet_net_zc_create(buffet_net_zc **out, const buffet_net_zc_desc *desc);

/* Free the tracker. Refused while calls are in flight, since the kernel may still read their
   buffers: BUFFET_ERR_STATE, nothing changes (buffet_net_zc_wait first; and wait before
   closing the socket: a closed socket never reports its completions). NULL does nothing.
   Returns: BUFFET_OK. Thread: owned. */
BUFFET_API buffet_result buffet_net_zc_destroy(buffet_net_zc *zc);

/* As buffet_net_send_chain, with MSG_ZEROCOPY: every sendmsg the kernel numbers takes a
   reference on each buffer it sent bytes from (a partial send counts as a whole call), which
   the tracker keeps until that call completes; exactly the bytes the kernel took are consumed
   from c. The first call binds zc to fd and sets SO_ZEROCOPY on it. TCP (and any stream
   socket the kernel allows): like send_chain, calls repeat until c is empty or the socket
   would block. UDP: c goes out as one datagram (connected socket; never cut, not even by the
   fault layer). flags: BUFFET_NET_MORE. *sent (may be NULL) gets the bytes sent.
   Returns: BUFFET_OK (c empty), BUFFET_AGAIN (c holds the rest: poll POLLOUT; drain when POLLERR).
   Errors: BUFFET_ERR_EXHAUSTED (ENOBUFS: the socket's option memory, net.core.optmem_max, is
   full of notifications not read yet: drain and call again), BUFFET_ERR_UNSUPPORTED (no
   zerocopy here: SO_ZEROCOPY refused with EOPNOTSUPP (a UNIX socket) or ENOPROTOOPT (kernel
   before 4.14, qemu-user); logged), BUFFET_ERR_OVERFLOW (a buffer already
   holds BUFFET_BUF_REF_MAX references: that call is not made), BUFFET_ERR_TOO_LARGE (a
   datagram over the protocol's limit or over BUFFET_NET_IOV_MAX slices: nothing sent),
   BUFFET_ERR_CLOSED, BUFFET_ERR_SYSTEM (errno kept), BUFFET_ERR_INVALID (NULL, fd < 0 or
   closed, not a socket, another fd than the one zc is bound to, an unknown flag, a slice
   without host memory), the tracker allocator's reason. On every error c holds exactly the
   bytes not sent. A datagram refused after the kernel numbered it (a firewall drop) is found
   by reading the error queue at once, so the numbering stays right. An empty chain binds zc and
   returns BUFFET_OK. Thread: owned (c, zc). */
BUFFET_API buffet_result buffet_net_send_chain_zc(int fd, buffet_chain *c, buffet_net_zc *zc, unsigned flags,
                                                  size_t *sent);

/* Read every entry queued now on fd's error queue (recvmsg MSG_ERRQUEUE, never blocks) and
   drop the references of each call a zerocopy entry completes, once (wrapping numbers and
   merged ranges handled). *d (may be NULL) gets what this drain did. Returns: BUFFET_OK (at
   least one entry read), BUFFET_AGAIN (none queued: poll for POLLERR). Errors:
   BUFFET_ERR_INVALID (NULL, fd < 0 or closed, another fd than zc's), BUFFET_ERR_SYSTEM.
   Release callbacks of buffers run inside; they must not call into this tracker. The fault
   layer may fail a read with EINTR (retried) or EAGAIN. Thread: owned (zc). */
BUFFET_API buffet_result buffet_net_zc_drain(int fd, buffet_net_zc *zc, buffet_net_zc_drained *d);

/* Drain until no call is in flight, waiting for POLLERR between drains, at most timeout_ms
   milliseconds (< 0: no limit). *d (may be NULL) gets the sum of the drains. Returns:
   BUFFET_OK (nothing in flight), BUFFET_AGAIN (the time ran out; calls still in flight).
   Errors: as buffet_net_zc_drain. Thread: owned (zc). */
BUFFET_API buffet_result buffet_net_zc_wait(int fd, buffet_net_zc *zc, int timeout_ms, buffet_net_zc_drained *d);

/* The tracker's totals (zero for NULL). Thread: owned (zc). */
BUFFET_API buffet_net_zc_stats buffet_net_zc_get_stats(const buffet_net_zc *zc);

BUFFET_EXTERN_C_END

/* >>datagrams: batched UDP (recvmmsg/sendmmsg), GSO and GRO, per-packet network metadata.
   Fragment of buffet_net.h (declarations, then the implementation under BUFFET_IMPLEMENTATION).

   MODEL
     A received datagram is one buffet_pkt; its network metadata (peer, local address,
     interface, ECN, truncation, GRO segment size) lives in the packet's user area as a
     buffet_net_meta, so the pool must be made with .user_size >= sizeof(buffet_net_meta).
     The receive time goes into the packet's `timestamp` (CLOCK_REALTIME ns, from the kernel).
     Sending follows DPDK: what went out is freed through the cache, what did not stays the
     caller's, in order, at the end of the array. */

/* The public types name sockaddr_in/in6: these includes come before BUFFET_EXTERN_C_BEGIN (never
   inside it) when merged. */
#include <netinet/in.h>
#include <sys/socket.h>

BUFFET_EXTERN_C_BEGIN

/* An IPv4 or IPv6 address and port; `sa.sa_family` tells which (AF_UNSPEC: none). */
typedef union buffet_net_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} buffet_net_addr;

/* buffet_net_meta.flags */
enum {
    BUFFET_NET_META_TRUNC = 1u << 0,   /* received: the datagram was larger than the buffer and was
                                          cut (wire_len says how large it was) */
    BUFFET_NET_META_ECN = 1u << 1,     /* received: `ecn` came from the IP header; send: put `ecn`
                                          into the IP header of this datagram */
    BUFFET_NET_META_LOCAL = 1u << 2    /* received: `local` and `ifindex` are known (pktinfo) */
};

/* ECN codepoints (RFC 3168), the low two bits of the TOS / traffic class byte. */
enum { BUFFET_NET_ECN_NOT_ECT = 0, BUFFET_NET_ECN_ECT1 = 1, BUFFET_NET_ECN_ECT0 = 2, BUFFET_NET_ECN_CE = 3 };

/* The network metadata of a packet, in its user area (buffet_net_meta_of). */
typedef struct buffet_net_meta {
    buffet_net_addr peer;    /* received: the sender; send: the destination (AF_UNSPEC: the socket's
                                connected peer) */
    buffet_net_addr local;   /* received: the address the datagram was sent to (port 0); AF_UNSPEC
                                when unknown (no pktinfo: see buffet_net_udp_setup) */
    uint32_t ifindex;        /* received: the interface it came in on (0: unknown) */
    uint32_t wire_len;       /* received: the datagram's length (more than the packet's when TRUNC;
                                the coalesced length for a GRO datagram not split) */
    uint16_t seg_size;       /* received: the GRO segment size when the kernel coalesced (0: none) */
    uint8_t ecn;             /* BUFFET_NET_ECN_*: received (with META_ECN) or to send (with META_ECN) */
    uint8_t flags;           /* BUFFET_NET_META_* */
} buffet_net_meta;

/* Flags of buffet_net_udp_setup (bits apart from buffet_net_send_chain's). */
enum {
    BUFFET_NET_UDP_GRO = 1u << 8   /* the kernel may coalesce datagrams of one flow (UDP_GRO);
                                      buffet_net_udp_recv splits them again. Needs packets whose
                                      data room holds a coalesced datagram (up to 64 KiB),
                                      else it arrives truncated */
};

/* Most segments one GSO call sends, and most payload bytes it carries (kernel limits). */
#define BUFFET_NET_GSO_MAX_SEGS 64
#define BUFFET_NET_GSO_MAX_BYTES 65507   /* 65535 minus an IPv4 and a UDP header */

/* The network metadata in p's user area, or NULL (p NULL, or the pool's user area is smaller
   than buffet_net_meta). Thread: compatible. */
BUFFET_API buffet_net_meta *buffet_net_meta_of(buffet_pkt *p);

/* Turn on what the receive path reads: the local address and interface (IP_PKTINFO, and
   IPV6_RECVPKTINFO on IPv6 sockets), the ECN bits (IP_RECVTOS / IPV6_RECVTCLASS), receive
   timestamps (SO_TIMESTAMPNS); and, with BUFFET_NET_UDP_GRO, UDP_GRO. An IPv6 socket gets the
   IPv4 options too, for IPv4-mapped peers (unless it is IPV6_V6ONLY). Every option is tried;
   the result is the first failure's, the others are on. Errors: BUFFET_ERR_INVALID (fd closed,
   not a UDP socket, unknown flags), BUFFET_ERR_UNSUPPORTED (an option this kernel, or an
   emulator such as qemu-user, does not know: UDP_GRO before Linux 5.0, SO_TIMESTAMPNS under
   qemu 7), BUFFET_ERR_SYSTEM (errno kept). Thread: safe. */
BUFFET_API buffet_result buffet_net_udp_setup(int fd, unsigned flags);

/* Receive up to n datagrams (64 at most a call) with one recvmmsg into packets of class cls
   (-1: the largest) taken from c, stored in pkts[0..*got) in arrival order (got: required),
   each with its buffet_net_meta and timestamp. A 0-byte datagram is a packet of length 0. A
   GRO datagram (meta.seg_size) is split into one packet per segment, in order, sharing the
   received buffer (clones, no copy) while pkts has room; one that does not fit stays whole
   (its len above meta.seg_size: see buffet_net_udp_split). A blocking socket blocks for the
   first datagram only. Returns: BUFFET_OK (*got > 0); BUFFET_AGAIN (nothing waiting: nothing
   taken); BUFFET_ERR_TRUNCATED (*got packets received, at least one cut: META_TRUNC,
   wire_len); BUFFET_ERR_INVALID (NULL, fd closed or not UDP, cls out of range, c's pool has no
   room for the meta); the pool's or the clone class's reason when no packet could be had
   (nothing received) or a GRO split ran short (*got packets received; the last one still
   holds several segments); errors as buffet_net_recv. n 0: BUFFET_OK, nothing done. One
   getsockopt checks fd each call (a TCP socket would take recvmmsg silently).
   Thread: owned (c). */
BUFFET_API buffet_result buffet_net_udp_recv(int fd, buffet_pkt_cache *c, int cls, buffet_pkt **pkts, size_t n,
                                             size_t *got);

/* Cut p, which holds consecutive GRO segments of meta.seg_size bytes (the last may be
   shorter), into one packet per segment sharing its data: p becomes the first, clones the
   others, all in out[0..*made) in order (out[0] == p). At most max packets are made: then the
   last holds the rest. Returns: BUFFET_OK, BUFFET_ERR_INVALID (NULL, max 0, no meta, a chain
   of segments), the clone's reason (out[0..*made) still valid, the last holding the rest).
   Thread: owned (c). */
BUFFET_API buffet_result buffet_net_udp_split(buffet_pkt_cache *c, buffet_pkt *p, buffet_pkt **out, size_t max,
                                              size_t *made);

/* Send pkts[0..n) with sendmmsg, each one datagram (a multi-segment packet goes out as one,
   gathered), to its meta.peer (AF_UNSPEC: the connected peer), with its meta.ecn when
   META_ECN is set. The first *sent packets (sent: required) went out and are freed through c;
   pkts[*sent..n) stay the caller's, unchanged. Returns: BUFFET_OK (all sent), BUFFET_AGAIN
   (the socket would block), BUFFET_ERR_TOO_LARGE (pkts[*sent] is larger than a datagram may
   be), BUFFET_ERR_INVALID (NULL, a NULL packet or one of another pool, fd closed or not UDP, c's pool has no meta, a
   packet whose lengths do not add up or of more than BUFFET_NET_IOV_MAX segments: all checked
   before anything is sent), errors as buffet_net_send_chain (errno kept). n 0: BUFFET_OK.
   sendmmsg takes 64 datagrams a call; calls repeat until all went or one fails.
   Thread: owned (c). */
BUFFET_API buffet_result buffet_net_udp_send(int fd, buffet_pkt_cache *c, buffet_pkt **pkts, size_t n, size_t *sent);

/* UDP GSO: send data[0..len) as datagrams of seg_size bytes (the last may be shorter) with as
   few sendmsg calls as the kernel allows (UDP_SEGMENT; BUFFET_NET_GSO_MAX_SEGS segments and
   BUFFET_NET_GSO_MAX_BYTES a call), to to->peer (to NULL or AF_UNSPEC: the connected peer), ECN
   as in buffet_net_udp_send. *sent gets the bytes that went out (whole datagrams): on
   BUFFET_AGAIN call again with data + *sent. Returns: BUFFET_OK, BUFFET_AGAIN,
   BUFFET_ERR_INVALID (NULL data with len, seg_size 0 or above BUFFET_NET_GSO_MAX_BYTES, fd not
   UDP), BUFFET_ERR_TOO_LARGE (a segment above the path MTU: EMSGSIZE), BUFFET_ERR_UNSUPPORTED
   (no UDP GSO on this kernel or route: EINVAL or EIO for a call of several segments), errors
   as buffet_net_udp_send. len 0: BUFFET_OK. Thread: safe. */
BUFFET_API buffet_result buffet_net_udp_send_gso(int fd, const void *data, size_t len, size_t seg_size,
                                                 const buffet_net_meta *to, size_t *sent);
/* As buffet_net_udp_send_gso over the bytes of chain ch (no copy); what went out is consumed
   from ch. Errors as there, and BUFFET_ERR_INVALID for a slice without host memory. */
BUFFET_API buffet_result buffet_net_udp_send_gso_chain(int fd, buffet_chain *ch, size_t seg_size,
                                                       const buffet_net_meta *to, size_t *sent);
/* As buffet_net_udp_send_gso over bytes [off, pkt_len) of packet *p (every segment, no copy), to
   its meta's peer. When all went out *p is freed through c and set to NULL; otherwise it stays
   the caller's, unchanged: call again with off + *sent. Errors as there, and
   BUFFET_ERR_INVALID (no meta, lengths that do not add up, off > pkt_len). Thread: owned (c). */
BUFFET_API buffet_result buffet_net_udp_send_gso_pkt(int fd, buffet_pkt_cache *c, buffet_pkt **p, size_t off,
                                                     size_t seg_size, size_t *sent);

/* >>uring
   io_uring receive over a provided-buffer ring (IORING_REGISTER_PBUF_RING) filled with raw
   buffers of one class of a packet pool: the kernel picks a buffer for each receive of a
   multishot request (IORING_OP_RECV with IORING_RECV_MULTISHOT) and writes into it; each
   completion comes out as a buffet packet of that pool, no byte copied, freed like any other
   (from any thread). Buffers go back to the pool when their packet is freed; the ring takes
   fresh ones from the pool at every buffet_net_uring_wait, and a receive the kernel ended for
   want of buffers (-ENOBUFS) is armed again once some are in the ring. Opt-in: define
   BUFFET_NET_URING to 1 before including this header (with the implementation too); the rest of
   the header needs nothing of it. The ring is driven by raw system calls (io_uring_setup,
   io_uring_enter, io_uring_register), not liburing: the ABI is stable, and the family links
   nothing. Needs Linux 6.0 (multishot receive; provided-buffer rings came in 5.19); a kernel
   without io_uring, or with it disabled (sysctl kernel.io_uring_disabled, seccomp), gives
   BUFFET_ERR_UNSUPPORTED at create. A datagram socket is received with IORING_OP_RECVMSG: each
   buffer holds a small header and the sender's address before the datagram (the packet starts
   at the datagram; the address and real length go into its buffet_net_meta when the pool has a
   user area for it), an empty datagram is an empty packet and a datagram larger than the buffer
   is reported, not cut silently. The ring object itself is on the heap.

   Sends (buffet_net_uring_send) go through the same ring: a chain is moved into a send request,
   which the kernel sends from its slices (IORING_OP_SENDMSG, or IORING_OP_SENDMSG_ZC with
   BUFFET_NET_URING_ZEROCOPY); a send the kernel cut short is submitted again for the rest by the
   wait that takes its completion, and its end comes out of buffet_net_uring_wait as one event
   (op BUFFET_NET_URING_SEND) once the kernel has let go of every buffer: a zerocopy request
   gives two completions, its result and later its notification (IORING_CQE_F_NOTIF), and the
   event waits for the notification of every request the send made. The slices are released
   once, then: the buffers may be reused as soon as the event is out. */
#ifndef BUFFET_NET_URING
#define BUFFET_NET_URING 0
#endif
#if BUFFET_NET_URING
#define BUFFET_NET_URING_MAX_RECVS 64   /* receives armed on one ring at a time */
#define BUFFET_NET_URING_MAX_SENDS 64   /* sends in flight on one ring at a time */

/* Flags of buffet_net_uring_send. */
enum {
    BUFFET_NET_URING_ZEROCOPY = 1u << 0   /* IORING_OP_SENDMSG_ZC: the kernel sends from the
                                             buffers' pages instead of copying them (TCP, UDP;
                                             loopback copies anyway). Pays off from about 10 KiB */
};

/* What an event is the end or the data of (buffet_net_uring_event.op). */
enum {
    BUFFET_NET_URING_RECV = 0,   /* a receive's data or end (buffet_net_uring_recv) */
    BUFFET_NET_URING_SEND = 1    /* a send's end (buffet_net_uring_send) */
};

typedef struct buffet_net_uring buffet_net_uring;
typedef struct buffet_net_uring_desc {
    buffet_pkt_cache *cache;    /* the buffers' pool, and the thread the ring belongs to (the
                                   cache's owner); the packets received come from this cache */
    unsigned cls;               /* the data class whose buffers the ring holds */
    uint32_t buffers;           /* buffers the kernel may fill ahead: a power of two up to 32768;
                                   0: 64. A packet's buffer goes back to the pool when it is
                                   freed and the ring takes buffers at each wait, so size it for
                                   the datagrams in flight plus the events one wait takes (fewer:
                                   the receive starves, waits for buffers in the socket's queue,
                                   and is armed again). A packet freed on another thread goes to
                                   that thread's cache, where the ring cannot take it until the
                                   cache spills or is flushed: give such threads small caches,
                                   or flush them */
    uint32_t entries;           /* submission queue entries (a power of two up to 4096); 0: 64 */
    uint16_t group;             /* the buffer group id the ring is registered as */
} buffet_net_uring_desc;

/* What one completion delivered (buffet_net_uring_wait). */
typedef struct buffet_net_uring_event {
    uint64_t tag;               /* the receive's, as given to buffet_net_uring_recv */
    int fd;
    buffet_result result;       /* BUFFET_OK: pkt holds the bytes received (a datagram, maybe
                                   empty, or a piece of a stream); BUFFET_ERR_TRUNCATED: pkt
                                   holds the part of a datagram that fitted in the buffer (the
                                   rest is lost; its metadata says TRUNC and the real length);
                                   BUFFET_ERR_CLOSED: end of stream, the receive is over (pkt
                                   NULL); BUFFET_ERR_SYSTEM: the receive failed and is over
                                   (error: the errno, pkt NULL) */
    int error;
    buffet_pkt *pkt;            /* the caller's: freed with buffet_pkt_free (NULL for a send) */
    unsigned op;                /* BUFFET_NET_URING_RECV or _SEND: a receive and a send on one
                                   descriptor may share a tag, and both end with ERR_CLOSED */
    size_t bytes;               /* a send: the bytes the kernel took (all of the chain's when
                                   result is BUFFET_OK); a receive: the packet's length */
} buffet_net_uring_event;

typedef struct buffet_net_uring_stats {
    uint32_t in_ring;           /* buffers the kernel holds now */
    uint32_t receives;          /* receives armed now */
    uint64_t packets, bytes;    /* received so far */
    uint64_t starved;           /* receives the kernel ended for want of buffers (-ENOBUFS) */
    uint64_t rearmed;           /* receives armed again after that */
    uint64_t refill_failures;   /* times the pool had no buffer for the ring */
    uint32_t sends;             /* sends in flight now (their buffers still held) */
    uint64_t sends_done;        /* sends ended: one event each */
    uint64_t bytes_sent;
    uint64_t send_requests;     /* SENDMSG(_ZC) requests made: a send cut short, or of more than
                                   BUFFET_NET_IOV_MAX slices, makes more than one */
    uint64_t zc_notifications;  /* zerocopy notifications taken (one per SENDMSG_ZC request the
                                   kernel accepted) */
    uint64_t zc_fallbacks;      /* zerocopy sends the socket refused that went on as plain ones */
} buffet_net_uring_stats;

/* An io_uring instance with a provided-buffer ring of desc->buffers raw buffers of class
   desc->cls, taken from desc->cache. Errors: BUFFET_ERR_INVALID (NULL, no such class, buffers
   or entries not a power of two, buffers above 32768, entries above 4096),
   BUFFET_ERR_UNSUPPORTED (no io_uring, or disabled, or no provided-buffer rings), BUFFET_ERR_EXHAUSTED
   (the pool cannot fill the ring), BUFFET_ERR_NOMEM, BUFFET_ERR_SYSTEM (errno kept).
   Thread: owned (the cache's thread, from then on). */
BUFFET_API buffet_result buffet_net_uring_create(buffet_net_uring **out, const buffet_net_uring_desc *desc);
/* Cancel every receive and every send, wait until the kernel has let go of every buffer, give
   them back to the pool, release the sends' slices (once), and close the ring. Completions not
   taken yet are dropped (their packets freed), and the sends cancelled make no event (a part of
   one may have gone out). A receive the kernel has not ended 10 s after its cancel keeps the
   ring's buffers lent for good (never handed out again while the kernel may write into them);
   a send whose completions (zerocopy: notifications, which a peer that never acknowledges may
   hold back) have not all come by then keeps its slices referenced for good. Descriptors are
   the caller's: none is closed. NULL does nothing. Thread: owned. */
BUFFET_API void buffet_net_uring_destroy(buffet_net_uring *u);
/* Arm a multishot receive on socket fd (TCP, UDP, UNIX): every receive the kernel completes on
   it is an event with this tag, until the peer closes, an error ends it, or
   buffet_net_uring_cancel. Errors: BUFFET_ERR_INVALID (NULL, fd < 0, closed or no socket, fd
   already armed on this ring), BUFFET_ERR_EXHAUSTED (BUFFET_NET_URING_MAX_RECVS armed),
   BUFFET_ERR_SYSTEM. Thread: owned. */
BUFFET_API buffet_result buffet_net_uring_recv(buffet_net_uring *u, int fd, uint64_t tag);
/* Cancel the receive on fd: from now on it is not armed (fd may be armed again at once), and
   its end comes as no event; data the kernel had already taken off the socket still comes, as
   events of the next waits (it is nowhere else). Errors: BUFFET_ERR_INVALID (NULL, fd not
   armed), BUFFET_ERR_EXHAUSTED (the submission queue is full), BUFFET_ERR_SYSTEM. Thread: owned. */
BUFFET_API buffet_result buffet_net_uring_cancel(buffet_net_uring *u, int fd);
/* Refill the ring from the pool, re-arm starved receives, submit the rest of sends cut short,
   then take up to max completions as events, waiting up to timeout_ms for the first (0: not at
   all, -1: without limit). Returns: the events written (0 when none came in time, or only
   completions that make none, such as a cancel's, a send's short result or a zerocopy result
   whose notification has not come yet, or when a receive waits for the pool to have buffers or
   a send for room in the submission queue: then within 10 ms, whatever timeout_ms says; ev NULL
   or max 0: 0). Thread: owned. */
BUFFET_API size_t buffet_net_uring_wait(buffet_net_uring *u, buffet_net_uring_event *ev, size_t max, int timeout_ms);
/* Send the whole content of chain ch on socket fd through the ring, tagged tag. The chain is
   moved into the request: on BUFFET_OK ch is left empty (its allocator kept: reusable at once),
   the request owns the slices, and their buffers stay referenced until the kernel is done with
   them: the result of each request (plain), or its notification (zerocopy). Then the slices are
   released, exactly once, and one event (op BUFFET_NET_URING_SEND, this tag and fd, pkt NULL,
   bytes: what the kernel took) says the send is over and its buffers are free: result BUFFET_OK
   (every byte went), BUFFET_ERR_CLOSED (EPIPE, ECONNRESET, ENOTCONN), BUFFET_ERR_TOO_LARGE (a
   datagram over the protocol's limit, EMSGSIZE), BUFFET_ERR_EXHAUSTED (ENOBUFS),
   BUFFET_ERR_UNSUPPORTED (EOPNOTSUPP), BUFFET_ERR_INVALID, BUFFET_ERR_SYSTEM (error: the errno;
   bytes: what went before it). A stream socket (TCP, UNIX stream) takes the chain as a byte
   stream: BUFFET_NET_IOV_MAX slices a request, the rest after that request's result, and what a
   short result left is submitted again; sends on one stream socket go out one after the other in
   the order made (a send waits in the ring while an earlier one on its descriptor is not over).
   Any other socket (UDP connected, UNIX datagram, SEQPACKET) takes the chain as one datagram
   (empty: an empty datagram); datagram sends are not ordered among themselves when the socket's
   buffer is full. An empty chain on a stream sends nothing and its event says BUFFET_OK, 0 bytes.
   MSG_NOSIGNAL always. flags: 0 or BUFFET_NET_URING_ZEROCOPY (the kernel lets go of the pages
   when the bytes have left the socket's queues: TCP, once acknowledged, so a peer that stops
   reading holds back the buffers and the event); a socket that refuses zerocopy
   (EOPNOTSUPP or EINVAL before any byte went: a UNIX socket, a kernel before 6.1) is sent to
   plainly instead (stats zc_fallbacks). Errors (ch untouched): BUFFET_ERR_INVALID (NULL, fd < 0,
   closed or not a socket, an unknown flag, a slice without host memory), BUFFET_ERR_TOO_LARGE (a
   datagram of more than BUFFET_NET_IOV_MAX slices), BUFFET_ERR_EXHAUSTED
   (BUFFET_NET_URING_MAX_SENDS in flight, or the submission queue full: wait, then send again),
   BUFFET_ERR_NOMEM. The chain's slice array is freed through its allocator by a later wait or
   by destroy, on the ring's thread. Thread: owned (u, and ch until the call returns). */
BUFFET_API buffet_result buffet_net_uring_send(buffet_net_uring *u, int fd, buffet_chain *ch, uint64_t tag,
                                               unsigned flags);
/* Counters (a zeroed struct for NULL). Thread: owned. */
BUFFET_API buffet_net_uring_stats buffet_net_uring_get_stats(const buffet_net_uring *u);
#endif /* BUFFET_NET_URING */

/* >>afpacket
   AF_PACKET with TPACKET_V3 mapped rings on one network interface: every Ethernet frame the
   interface receives, and frames sent out of it, without a system call per frame. The receive
   ring is a row of blocks that the kernel fills with frames and hands over whole; each frame
   comes out as a buffet packet over its bytes in the block (an external packet: no copy), and
   the block goes back to the kernel when the last packet of it is freed, from any thread. A
   frame whose tail the block leaves no room for the packet's shared count (the last frame of a
   full block) is copied into the pool instead, as every frame is with BUFFET_NET_AFP_COPY (the
   caller owns pool buffers and the block goes back at once). A VLAN tag the kernel took off is
   put back, so the packet is the frame as it was on the wire. Sends copy each packet into a
   frame of the transmit ring and wake the kernel once for the lot. Needs CAP_NET_RAW and Linux
   4.11; opt-in: define BUFFET_NET_AFPACKET to 1 before including this header (with the
   implementation too). The kernel fills blocks strictly in turn, so one packet held keeps its
   block, and every frame after the blocks already full waits (or is dropped) until it is freed:
   a caller who keeps packets for long should take copies. */
#ifndef BUFFET_NET_AFPACKET
#define BUFFET_NET_AFPACKET 0
#endif
#if BUFFET_NET_AFPACKET
enum {
    BUFFET_NET_AFP_COPY = 1u << 0,      /* received frames are copied into the pool's classes */
    BUFFET_NET_AFP_PROMISC = 1u << 1,   /* the interface takes frames for every address */
    BUFFET_NET_AFP_NO_TX = 1u << 2      /* no transmit ring */
};

typedef struct buffet_net_afp buffet_net_afp;
typedef struct buffet_net_afp_desc {
    buffet_pkt_cache *cache;    /* the packets' pool, and the thread the rings belong to: frame
                                   headers come from its clone class, copies from its classes;
                                   metadata (buffet_net_meta) is written when its user area has
                                   room for it */
    const char *ifname;         /* the interface */
    unsigned flags;             /* BUFFET_NET_AFP_* */
    uint32_t block_size;        /* receive block bytes: a power of two from the page size to
                                   4 MiB; 0: 64 KiB */
    uint32_t blocks;            /* receive blocks, 2 to 65536; 0: 64 */
    uint32_t block_timeout_ms;  /* a block that has frames goes to the reader after this even when
                                   not full; 0: 1 ms */
    uint32_t tx_frames;         /* transmit frames, a power of two up to 65536; 0: 256 */
    uint32_t tx_frame_size;     /* bytes of a transmit frame (48 of them its header), a power of
                                   two from 128 to 65536; 0: 2048 */
} buffet_net_afp_desc;

typedef struct buffet_net_afp_stats {
    uint64_t rx_packets, rx_bytes;   /* frames received, and their bytes */
    uint64_t rx_copied;              /* of them, copied into the pool */
    uint64_t rx_truncated;           /* of them, cut to the block's room (META_TRUNC, wire_len) */
    uint64_t rx_lost;                /* frames dropped here: no packet header or buffer to be had */
    uint64_t kernel_drops;           /* frames the kernel dropped (ring full, or no block free) */
    uint64_t kernel_freezes;         /* times the kernel found every block held */
    uint32_t blocks_held;            /* blocks out of the kernel's hands now (packets not freed) */
    uint64_t tx_packets, tx_bytes;   /* frames handed to the kernel to send */
    uint64_t tx_rejected;            /* frames the kernel refused (malformed: too short, too long) */
} buffet_net_afp_stats;

/* A packet socket bound to desc->ifname taking every protocol, with a receive ring of
   desc->blocks blocks and a transmit ring (unless BUFFET_NET_AFP_NO_TX). Errors:
   BUFFET_ERR_INVALID (NULL, no interface by that name, sizes out of range),
   BUFFET_ERR_UNSUPPORTED (no CAP_NET_RAW: EPERM; no TPACKET_V3), BUFFET_ERR_NOMEM,
   BUFFET_ERR_SYSTEM (errno kept). Thread: owned (the cache's thread, from then on). */
BUFFET_API buffet_result buffet_net_afp_create(buffet_net_afp **out, const buffet_net_afp_desc *desc);
/* Close the socket. Blocks that packets still hold stay mapped until the last of those packets
   is freed (from any thread), then the rings go. NULL does nothing. Thread: owned. */
BUFFET_API void buffet_net_afp_destroy(buffet_net_afp *a);
/* The socket, for epoll (readable: a block is ready). Thread: compatible. */
BUFFET_API int buffet_net_afp_fd(const buffet_net_afp *a);
/* Up to max received frames into pkts[0..*got), waiting up to timeout_ms for a block (0: not at
   all, -1: without limit). The packets are the caller's (buffet_pkt_free, any thread). Returns:
   BUFFET_OK (*got > 0), BUFFET_AGAIN (nothing came in time; while packets hold the block next
   in turn nothing can come, and the wait is in 1 ms naps), BUFFET_ERR_CLOSED (the interface
   went down, errno ENETDOWN: call again once it is up; or it is gone, errno ENODEV, for good:
   destroy), BUFFET_ERR_INVALID (NULL), BUFFET_ERR_SYSTEM. Frames that could not become
   packets are counted in rx_lost, not returned. Thread: owned. */
BUFFET_API buffet_result buffet_net_afp_recv(buffet_net_afp *a, buffet_pkt **pkts, size_t max, int timeout_ms,
                                             size_t *got);
/* Copy pkts[0..n) (every segment) into free frames of the transmit ring and have the kernel send
   them. The first *sent packets went and are freed through the cache; pkts[*sent..n) stay the
   caller's, unchanged. Returns: BUFFET_OK (all sent), BUFFET_AGAIN (the ring is full: frames
   still being sent), BUFFET_ERR_TOO_LARGE (pkts[*sent] does not fit in a frame),
   BUFFET_ERR_CLOSED (the interface is down or gone: errno ENETDOWN, ENXIO or ENODEV),
   BUFFET_ERR_INVALID (NULL, no transmit ring, a NULL packet, one of another pool than the
   cache's, shorter than an Ethernet header or whose lengths do not add up),
   BUFFET_ERR_SYSTEM. n 0: BUFFET_OK. Thread: owned. */
BUFFET_API buffet_result buffet_net_afp_send(buffet_net_afp *a, buffet_pkt **pkts, size_t n, size_t *sent);
/* Counters (zeroes for NULL); the kernel's are read (and added up) on each call. Thread: owned. */
BUFFET_API buffet_net_afp_stats buffet_net_afp_get_stats(buffet_net_afp *a);
#endif /* BUFFET_NET_AFPACKET */

/* >>afxdp
   AF_XDP on one queue of an interface: a UMEM over the region of one packet pool class, so the
   kernel writes received frames straight into pool buffers, which come out as ordinary packets
   of the pool (freed from any thread, back to the pool, never to the ring directly); the fill
   ring is topped up from the cache's raw buffers at every receive, and completions give sent
   buffers back to the cache. A minimal XDP program (six instructions: redirect by queue into an
   XSKMAP, pass when no socket is there) is loaded and attached by this header itself through
   bpf(2), no libbpf: in native (driver) mode where the driver takes it, generic (skb) mode where
   not; the socket binds zero-copy where the driver can, copy mode where not, and the stats say
   which ran. Sends put an unshared one-segment packet of the class in the transmit ring as it is
   (no copy) and copy anything else into a buffer of the class. Needs root (CAP_NET_ADMIN,
   CAP_BPF, CAP_NET_RAW) and Linux 5.9 (bpf links for XDP). The class must live in one region
   (create the pool with initial = max for it, or at least no growth of that class) and have a
   data room of 2048 bytes or more: the UMEM is that region, registered with unaligned chunks,
   and a frame starts 256 bytes into its buffer (the kernel's XDP headroom). One buffet_net_xdp
   per interface: its program redirects the queue it was made for. Opt-in: define
   BUFFET_NET_AFXDP to 1 before including this header (with the implementation too). */
#ifndef BUFFET_NET_AFXDP
#define BUFFET_NET_AFXDP 0
#endif
#if BUFFET_NET_AFXDP
enum {
    BUFFET_NET_XDP_COPY = 1u << 0,      /* bind in copy mode even where the driver has zero-copy */
    BUFFET_NET_XDP_GENERIC = 1u << 1    /* attach the program in generic mode, without trying native */
};

typedef struct buffet_net_xdp buffet_net_xdp;
typedef struct buffet_net_xdp_desc {
    buffet_pkt_cache *cache;    /* the pool whose class is the UMEM, and the thread the socket
                                   belongs to; metadata (buffet_net_meta) is written when the
                                   pool's user area has room for it */
    unsigned cls;               /* that class */
    const char *ifname;         /* the interface */
    uint32_t queue;             /* its receive queue */
    uint32_t ring_size;         /* entries of each of the four rings: a power of two, 64 to 16384;
                                   0: 1024 */
    unsigned flags;             /* BUFFET_NET_XDP_* */
} buffet_net_xdp_desc;

typedef struct buffet_net_xdp_stats {
    uint64_t rx_packets, rx_bytes;     /* frames received */
    uint64_t tx_packets, tx_bytes;     /* frames put in the transmit ring */
    uint64_t tx_copied;                /* of them, copied into a buffer of the class first */
    uint64_t fill_failures;            /* times the pool had no buffer for the fill ring */
    uint64_t kernel_rx_dropped;        /* the kernel's XDP_STATISTICS, as of the last call */
    uint64_t kernel_rx_ring_full, kernel_fill_ring_empty, kernel_rx_invalid, kernel_tx_invalid;
    uint32_t in_kernel;                /* buffers the kernel holds (fill, receive, transmit rings) */
    bool native;                       /* the program runs in driver mode (else generic) */
    bool zerocopy;                     /* the socket is bound zero-copy (else copy mode) */
} buffet_net_xdp_stats;

/* An AF_XDP socket on desc->ifname's queue desc->queue, its UMEM the region of class desc->cls,
   its fill ring filled from the cache, and the redirect program attached. Errors:
   BUFFET_ERR_INVALID (NULL, no such interface or class, a class of several regions or a data
   room under 2048 bytes, ring_size out of range), BUFFET_ERR_UNSUPPORTED (no AF_XDP or bpf(2)
   here, not privileged, or the interface takes no XDP program in either mode),
   BUFFET_ERR_EXHAUSTED (the pool cannot fill the fill ring), BUFFET_ERR_NOMEM,
   BUFFET_ERR_SYSTEM (errno kept; EBUSY: another XDP program is on the interface).
   Thread: owned (the cache's thread, from then on). */
BUFFET_API buffet_result buffet_net_xdp_create(buffet_net_xdp **out, const buffet_net_xdp_desc *desc);
/* Detach the program, close the socket, and give every buffer the kernel held back to the pool
   (packets already received are the caller's and stay valid). NULL does nothing. Thread: owned. */
BUFFET_API void buffet_net_xdp_destroy(buffet_net_xdp *x);
/* The socket, for epoll (readable: frames received). The kernel signals nothing on it when the
   interface is deleted: the next buffet_net_xdp_recv says so, so a loop that waits on the
   descriptor alone should call receive now and then (a second apart, say). Thread: compatible. */
BUFFET_API int buffet_net_xdp_fd(const buffet_net_xdp *x);
/* Up to max received frames into pkts[0..*got), waiting up to timeout_ms for the first (0: not
   at all, -1: without limit). Tops the fill ring up first and takes completed sends back.
   Returns: BUFFET_OK (*got > 0), BUFFET_AGAIN (nothing came in time), BUFFET_ERR_CLOSED (the
   interface went down, errno ENETDOWN, or away, errno ENODEV), BUFFET_ERR_INVALID (NULL),
   BUFFET_ERR_SYSTEM. Thread: owned. */
BUFFET_API buffet_result buffet_net_xdp_recv(buffet_net_xdp *x, buffet_pkt **pkts, size_t max, int timeout_ms,
                                             size_t *got);
/* Put pkts[0..n) in the transmit ring and wake the kernel once. The first *sent went: the ring
   owns them (freed when their completion comes); pkts[*sent..n) stay the caller's, unchanged.
   Returns: BUFFET_OK (all), BUFFET_AGAIN (the ring is full, or the class has no buffer for a
   copy), BUFFET_ERR_TOO_LARGE (pkts[*sent] is longer than a frame of the class),
   BUFFET_ERR_CLOSED (the interface is down or gone), BUFFET_ERR_INVALID (NULL, a NULL packet,
   one of another pool than the cache's, shorter than an Ethernet header or whose lengths do not
   add up), BUFFET_ERR_SYSTEM.
   n 0: BUFFET_OK. Thread: owned. */
BUFFET_API buffet_result buffet_net_xdp_send(buffet_net_xdp *x, buffet_pkt **pkts, size_t n, size_t *sent);
/* Counters (zeroes for NULL); takes completed sends back and reads the kernel's counters.
   Thread: owned. */
BUFFET_API buffet_net_xdp_stats buffet_net_xdp_get_stats(buffet_net_xdp *x);
#endif /* BUFFET_NET_AFXDP */

/* >>quic
   QUIC connections (RFC 9000) over a UDP socket the caller owns, on ngtcp2 with its GnuTLS crypto
   backend: the protocol is ngtcp2's, buffet moves the bytes. Datagrams are received and sent in
   packets of a buffet packet pool (recvmmsg; GSO runs of equal-sized packets where the kernel has
   UDP_SEGMENT, else sendmmsg). Stream data is sent from chains with no copy into the stack: the
   slices stay queued on their stream, ngtcp2 encrypts straight from them (retransmissions read the
   same bytes), and each byte's slice is released once the peer has acknowledged it. Received
   stream data is copied once, out of the decrypted packet, into buffet buffers appended to the
   stream's chain; the application takes it at its own pace and the flow-control credit goes back
   as it takes. Unreliable datagrams (RFC 9221) go out of and come into packets.

   Opt-in: define BUFFET_NET_QUIC to 1 before including this header (with the implementation
   too), and link ngtcp2, its GnuTLS crypto library and GnuTLS
   (`pkg-config --libs libngtcp2 libngtcp2_crypto_gnutls gnutls`); the rest of the header needs
   none of them. Built against ngtcp2 0.12 (Debian 12), the API before 1.0.

   DRIVING IT (any loop: poll, epoll, io_uring, libuv)
       poll fd for POLLIN (and POLLOUT while buffet_net_quic_blocked), with the timeout of
       buffet_net_quic_timeout_ms; then buffet_net_quic_on_readable when readable, and
       buffet_net_quic_on_timer every time poll returns; then take buffet_net_quic_events and act
       on them (buffet_net_quic_recv, _send, _open). Sends write packets at once; receives return
       credit that goes out at the next on_timer (the timeout is 0 while something waits to go).
   One object is one connection: a client's, or a server's that takes the first client to
   arrive on its socket (datagrams from any other address are dropped, and counted). Everything
   on one object from one thread at a time; objects are independent. */
#ifndef BUFFET_NET_QUIC
#define BUFFET_NET_QUIC 0
#endif
#if BUFFET_NET_QUIC
typedef struct buffet_net_quic buffet_net_quic;

/* buffet_net_quic_desc.flags */
enum {
    BUFFET_NET_QUIC_SERVER = 1u << 0,     /* accept one connection (else: connect to desc.peer) */
    BUFFET_NET_QUIC_INSECURE = 1u << 1,   /* client: do not verify the server's certificate */
    BUFFET_NET_QUIC_NO_GSO = 1u << 2,     /* send with sendmmsg even where UDP GSO works */
    BUFFET_NET_QUIC_COUNT_LOSS = 1u << 3  /* count packets declared lost (stats.lost; costs a
                                             qlog line formatted per packet) */
};

typedef struct buffet_net_quic_desc {
    int fd;                       /* a UDP socket, bound, O_NONBLOCK; the caller's (not closed) */
    unsigned flags;               /* BUFFET_NET_QUIC_* */
    buffet_net_addr peer;         /* client: the server's address */
    buffet_pkt_cache *cache;      /* datagrams in and out: its pool needs a class of 1500 bytes
                                     or more and a user area for buffet_net_meta; the thread
                                     driving the connection owns it */
    const char *alpn;             /* the application protocol offered / required; NULL: "buffet" */
    const char *cert_file;        /* server: certificate chain (PEM) */
    const char *key_file;         /* server: its private key (PEM) */
    const char *ca_file;          /* client: trusted certificates (PEM); NULL: the system's */
    const char *server_name;      /* client: the name sent (SNI) and verified; NULL: "localhost" */
    uint32_t idle_timeout_ms;     /* 0: 30 s */
    uint32_t max_streams;         /* streams of each kind the peer may have open at once; 0: 100 */
    uint64_t stream_window;       /* bytes received on a stream and not taken yet; 0: 1 MiB
                                     (ngtcp2 grows it up to 16× while the application keeps up) */
    uint64_t conn_window;         /* the same for the whole connection; 0: 4 MiB (grows to 16×) */
    uint16_t max_datagram;        /* largest unreliable datagram frame taken; 0: none (RFC 9221
                                     off) */
    uint8_t reset_key[32];        /* server: the secret stateless-reset tokens derive from; all
                                     zero: a random one. A server restarted with the same key
                                     resets its old connections' clients at once */
    buffet_net_source rx;         /* where received stream bytes are copied (buffet_net_recv's
                                     sources; zero: 16 KiB heap buffers) */
} buffet_net_quic_desc;

/* buffet_net_quic_event.type */
enum {
    BUFFET_NET_QUIC_EV_CONNECTED = 1,   /* the handshake is complete: streams may be opened */
    BUFFET_NET_QUIC_EV_STREAM_OPENED,   /* the peer opened `stream` */
    BUFFET_NET_QUIC_EV_READABLE,        /* `stream` has bytes, its end or its reset to take */
    BUFFET_NET_QUIC_EV_WRITABLE,        /* `stream` may take more (a send returned AGAIN); -1: a
                                           stream may be opened (an open returned AGAIN) */
    BUFFET_NET_QUIC_EV_SENT,            /* every byte sent on `stream`, and its end, was
                                           acknowledged: the buffers are released */
    BUFFET_NET_QUIC_EV_STREAM_CLOSED,   /* `stream` is over in both directions (error: the peer's
                                           application code when it was reset, result
                                           BUFFET_ERR_CLOSED then) */
    BUFFET_NET_QUIC_EV_DATAGRAM,        /* pkt: an unreliable datagram, the caller's to free */
    BUFFET_NET_QUIC_EV_CLOSED           /* the connection is over: result, error, reason */
};

/* Why a connection ended (buffet_net_quic_event.reason). */
enum {
    BUFFET_NET_QUIC_CLOSE_LOCAL = 1,    /* buffet_net_quic_close, or an error found here (error:
                                           the transport code sent to the peer) */
    BUFFET_NET_QUIC_CLOSE_PEER,         /* the peer closed (error: its code) */
    BUFFET_NET_QUIC_CLOSE_IDLE,         /* nothing heard for the idle timeout */
    BUFFET_NET_QUIC_CLOSE_RESET,        /* a stateless reset from the peer */
    BUFFET_NET_QUIC_CLOSE_HANDSHAKE     /* TLS failed (error: 0x100 + the TLS alert, e.g. 0x12a
                                           bad certificate) */
};

typedef struct buffet_net_quic_event {
    unsigned type;                /* BUFFET_NET_QUIC_EV_* */
    int64_t stream;               /* the stream (-1: none) */
    buffet_result result;         /* CLOSED: BUFFET_OK when closed on purpose with code 0,
                                     BUFFET_ERR_CLOSED otherwise; STREAM_CLOSED: as said there */
    unsigned reason;              /* CLOSED: BUFFET_NET_QUIC_CLOSE_* */
    int app;                      /* CLOSED: 1 when error is an application code, 0 a transport
                                     one */
    uint64_t error;               /* the QUIC error code */
    buffet_pkt *pkt;              /* DATAGRAM: the datagram (its bytes, no metadata) */
} buffet_net_quic_event;

typedef struct buffet_net_quic_stats {
    uint64_t rx_datagrams, rx_bytes;   /* UDP datagrams taken off the socket, and their bytes */
    uint64_t rx_dropped;               /* of them, dropped: from another address, not QUIC, or
                                          refused by ngtcp2 (random bytes, a stale packet) */
    uint64_t tx_datagrams, tx_bytes;   /* UDP datagrams sent */
    uint64_t tx_calls;                 /* sendmsg / sendmmsg calls that sent them */
    uint64_t tx_discarded;             /* datagrams written but given up (the socket refused) */
    uint64_t stream_bytes_sent;        /* stream bytes handed to ngtcp2 the first time */
    uint64_t stream_bytes_acked;       /* stream bytes acknowledged (their slices released) */
    uint64_t stream_bytes_received;    /* in order, copied into buffers */
    uint64_t lost;                     /* packets declared lost (with BUFFET_NET_QUIC_COUNT_LOSS) */
    uint64_t pto;                      /* probe timeouts in a row now (ngtcp2's pto_count) */
    uint64_t dgrams_sent, dgrams_received, dgrams_dropped;   /* RFC 9221 datagrams */
    uint64_t rtt_ns, cwnd;             /* smoothed RTT and congestion window now */
    uint32_t streams;                  /* streams known now */
} buffet_net_quic_stats;

/* Make a connection over desc->fd. A client sends its first flight at once; a server waits for
   a client. Errors: BUFFET_ERR_INVALID (NULL, fd not a UDP socket, no peer for a client, no
   certificate or key for a server, a file that cannot be read or parsed: logged),
   BUFFET_ERR_UNSUPPORTED (the pool has no class of 1500 bytes or no room for the metadata),
   BUFFET_ERR_NOMEM. Thread: owned (the cache's thread). */
BUFFET_API buffet_result buffet_net_quic_create(buffet_net_quic **out, const buffet_net_quic_desc *desc);
/* Free the connection and release every buffer it holds (queued sends, received bytes not
   taken, events not taken); sends nothing (close first for a clean end). NULL does nothing. */
BUFFET_API void buffet_net_quic_destroy(buffet_net_quic *q);
/* Read every datagram waiting on the socket, hand them to ngtcp2, send what that calls for.
   Returns: BUFFET_OK, BUFFET_ERR_CLOSED (the connection is over: see its CLOSED event),
   BUFFET_ERR_SYSTEM / _NOMEM (the socket or the pool failed; the connection goes on). */
BUFFET_API buffet_result buffet_net_quic_on_readable(buffet_net_quic *q);
/* Handle what is due (retransmission, acknowledgement and idle timers, credit to return,
   datagrams the socket refused before), and send. Harmless when nothing is due. Returns: as
   buffet_net_quic_on_readable. */
BUFFET_API buffet_result buffet_net_quic_on_timer(buffet_net_quic *q);
/* Milliseconds until on_timer is due (0: now; -1: never: the connection is over). */
BUFFET_API int buffet_net_quic_timeout_ms(const buffet_net_quic *q);
/* Whether datagrams wait for the socket to take them (poll for POLLOUT, then on_timer). */
BUFFET_API bool buffet_net_quic_blocked(const buffet_net_quic *q);
/* Take up to max events, oldest first, into ev. Returns how many. */
BUFFET_API size_t buffet_net_quic_events(buffet_net_quic *q, buffet_net_quic_event *ev, size_t max);
/* Open a bidirectional stream; *stream gets its id. Returns: BUFFET_OK, BUFFET_AGAIN (the peer
   allows no more now: an EV_WRITABLE with stream -1 follows), BUFFET_ERR_STATE (before
   EV_CONNECTED, or after the end), BUFFET_ERR_INVALID, BUFFET_ERR_NOMEM. */
BUFFET_API buffet_result buffet_net_quic_open(buffet_net_quic *q, int64_t *stream);
/* Flags of buffet_net_quic_send. */
enum { BUFFET_NET_QUIC_FIN = 1u << 0 };   /* the stream ends after these bytes */
/* Move bytes from the front of c onto stream: as many as its and the connection's flow-control
   windows take now, no byte copied; *taken (may be NULL) gets how many. Packets go out at once.
   The bytes' slices are released as the peer acknowledges them. With BUFFET_NET_QUIC_FIN the
   stream ends once all of c has gone (c may be empty). Returns: BUFFET_OK (c is empty),
   BUFFET_AGAIN (the windows are full: the rest stays in c; EV_WRITABLE says when to call again),
   BUFFET_ERR_CLOSED (the peer reset the stream or asked us to stop, or the connection is over:
   c unchanged), BUFFET_ERR_STATE (the stream's end was already sent), BUFFET_ERR_INVALID (NULL,
   a stream that is not open or only receives, a slice without host memory), BUFFET_ERR_NOMEM. */
BUFFET_API buffet_result buffet_net_quic_send(buffet_net_quic *q, int64_t stream, buffet_chain *c, unsigned flags,
                                              size_t *taken);
/* Move up to max bytes (0: all there are) received on stream, in order, to the end of out (no
   copy); their flow-control credit goes back to the peer. *got (may be NULL) gets how many.
   Returns: BUFFET_OK (*got > 0), BUFFET_AGAIN (nothing yet), BUFFET_ERR_CLOSED (*got 0: the
   stream's end was reached, or the peer reset it: everything before is taken), BUFFET_ERR_INVALID
   (NULL, no such stream, one that only sends), the allocator's reason (out unchanged). */
BUFFET_API buffet_result buffet_net_quic_recv(buffet_net_quic *q, int64_t stream, buffet_chain *out, size_t max,
                                              size_t *got);
/* Abort stream in both directions with an application error code: what is queued is released,
   what is received and not taken is dropped. Returns: BUFFET_OK, BUFFET_ERR_INVALID (no such
   stream). */
BUFFET_API buffet_result buffet_net_quic_reset(buffet_net_quic *q, int64_t stream, uint64_t app_error);
/* Send *p's bytes as one unreliable datagram. On BUFFET_OK *p is freed and set to NULL; otherwise
   it stays the caller's. Returns: BUFFET_OK, BUFFET_AGAIN (congestion: try after the next
   on_timer), BUFFET_ERR_TOO_LARGE (above what the peer takes or a packet holds),
   BUFFET_ERR_UNSUPPORTED (the peer takes no datagrams), BUFFET_ERR_STATE (not connected),
   BUFFET_ERR_INVALID. */
BUFFET_API buffet_result buffet_net_quic_send_datagram(buffet_net_quic *q, buffet_pkt **p);
/* Close the connection with an application error code (0: no error): CONNECTION_CLOSE goes out,
   an EV_CLOSED (reason LOCAL) follows, and the object does nothing more but destroy. Returns:
   BUFFET_OK, BUFFET_ERR_STATE (already over), BUFFET_ERR_INVALID. */
BUFFET_API buffet_result buffet_net_quic_close(buffet_net_quic *q, uint64_t app_error);
/* Counters (zeroes for NULL). */
BUFFET_API buffet_net_quic_stats buffet_net_quic_get_stats(const buffet_net_quic *q);
#endif /* BUFFET_NET_QUIC */

BUFFET_EXTERN_C_END

#endif /* BUFFET_NET_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_NET_IMPL_INCLUDED)
#define BUFFET_NET_IMPL_INCLUDED

#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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
/* The fault layer for a call that moves bytes: a short call only on a stream socket, a pipe or a
   file; a datagram or message moves whole or not at all (the kernel never moves a part of one,
   so cutting it would lose or split it, which no real peer can see). */
static int buffet__net_fault_bytes(int fd, size_t *len) {
    size_t all = *len;
    int type = SOCK_STREAM, e = buffet__net_fault(fd, len);
    socklen_t tl = sizeof type;
    /* asked only when the fault layer cut: tests pay for the question, nobody else */
    if (*len < all && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type != SOCK_STREAM) *len = all;
    return e;
}

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
        size_t want = buffet_chain_len(c) < (size_t)BUFFET_NET_SEND_MAX ? buffet_chain_len(c) : (size_t)BUFFET_NET_SEND_MAX;
        int e = buffet__net_fault_bytes(fd, &want);
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

/* readv into v[0..n) with the fault layer, EINTR retried: the bytes read, or -1 with errno. A
   socket is read with recvmsg, so that a datagram or message larger than the room is told
   (*trunc), never cut silently; and the fault layer never shortens the read of one (the kernel
   never does: the rest of the message would be lost). */
static ssize_t buffet__net_readv(int fd, const struct iovec *v, size_t n, bool *trunc) {
    bool plain = false;
    *trunc = false;
    for (;;) {
        struct iovec cut[BUFFET__NET_RX_BUFS + 1];
        size_t want = 0, i, k, w;
        ssize_t r;
        int e;
        for (i = 0; i < n; i++) want += v[i].iov_len;
        e = buffet__net_fault_bytes(fd, &want);
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
            r = -1;
            if (!plain) {
                struct msghdr m;
                memset(&m, 0, sizeof m);
                m.msg_iov = cut;
                m.msg_iovlen = k;
                r = recvmsg(fd, &m, 0);
                if (r >= 0) *trunc = (m.msg_flags & MSG_TRUNC) != 0;
                else if (errno == ENOTSOCK) plain = true;   /* a pipe or a file: readv */
            }
            if (plain) r = readv(fd, cut, (int)k);
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
    bool one = false, trunc = false;
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
    r = buffet__net_readv(fd, iov, niov, &trunc);
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
    if (r < 0) {
        res = e == ENOTCONN ? BUFFET_ERR_CLOSED : buffet__net_errno_result(e);
    } else if (r == 0) {
        int type = SOCK_STREAM;
        socklen_t tl = sizeof type;
        /* a datagram socket has no end of file: 0 bytes are an empty datagram, which any peer
           can send (a stream or SEQPACKET socket reads 0 only at its end) */
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM) res = BUFFET_ERR_CLOSED;
        e = 0;
    } else if (trunc) {
        res = BUFFET_ERR_TRUNCATED;
        e = EMSGSIZE;
    }
    errno = e;
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
    socklen_t n = sizeof cred, ln = sizeof(int);
    int listening = 0;
    if (!peer) return BUFFET_ERR_INVALID;
    memset(peer, 0, sizeof *peer);
    /* a listening socket has no peer: the kernel answers with the listener's own credentials */
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ln) != 0 || listening ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) != 0 || n != sizeof cred || cred.pid <= 0)
        return BUFFET_ERR_INVALID;
    peer->pid = (int32_t)cred.pid;
    peer->uid = cred.uid;
    peer->gid = cred.gid;
    peer->source = BUFFET_NET_PEER_SOCKET;
    return BUFFET_OK;
}

/* Older C libraries lack the names; the values are the kernel's ABI. */
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

/* One numbered call: its references are refs[first .. first + count) (ring positions). */
typedef struct buffet__net_zc_call {
    size_t first;
    uint32_t count;
    bool done;
} buffet__net_zc_call;

struct buffet_net_zc {
    buffet_allocator allocator;
    buffet_logger log;
    int fd;                       /* the socket, -1 until the first send */
    bool datagram;
    /* Calls [base, next) in kernel numbers are the window; calls[id & (ncap - 1)]. ncap is a
       power of two that divides 2^32, so the slot of a number survives its wrap. */
    uint32_t base, next, ncap, in_flight;
    buffet__net_zc_call *calls;
    /* References of the calls in the window, oldest first: refs[pos & (rcap - 1)] for pos in
       [rhead, rtail). Positions wrap with size_t, and rcap (a power of two) divides its range. */
    buffet_buf **refs;
    size_t rcap, rhead, rtail;
    buffet_net_zc_stats st;
};

BUFFET_API buffet_result buffet_net_zc_create(buffet_net_zc **out, const buffet_net_zc_desc *desc) {
    buffet_net_zc *zc;
    buffet_result r;
    if (out) *out = NULL;
    if (!out || !desc) return BUFFET_ERR_INVALID;
    /* The tracker and its rings are kept across many sends and drains. */
    r = buffet_allocator_check(desc->allocator, BUFFET_NEED_UNTIL_FREED, "zerocopy tracker", &desc->log);
    if (r != BUFFET_OK) return r;
    zc = BUFFET_NEW(desc->allocator, buffet_net_zc);
    if (!zc) {
        r = buffet_alloc_error(NULL);
        return r != BUFFET_OK ? r : BUFFET_ERR_NOMEM;
    }
    memset(zc, 0, sizeof *zc);
    zc->allocator = desc->allocator;
    zc->log = desc->log;
    zc->fd = -1;
    *out = zc;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_zc_destroy(buffet_net_zc *zc) {
    if (!zc) return BUFFET_OK;
    if (zc->in_flight) {
        BUFFET__LOG(&zc->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                    "zerocopy tracker destroyed with %u calls in flight: the kernel may still read their buffers "
                    "(buffet_net_zc_wait first)", (unsigned)zc->in_flight);
        return BUFFET_ERR_STATE;
    }
    buffet_free(zc->allocator, zc->calls, (size_t)zc->ncap * sizeof *zc->calls, BUFFET_ALIGNOF(buffet__net_zc_call),
                BUFFET_SITE);
    buffet_free(zc->allocator, zc->refs, zc->rcap * sizeof *zc->refs, BUFFET_ALIGNOF(buffet_buf *), BUFFET_SITE);
    BUFFET_DELETE(zc->allocator, buffet_net_zc, zc);
    return BUFFET_OK;
}

BUFFET_API buffet_net_zc_stats buffet_net_zc_get_stats(const buffet_net_zc *zc) {
    buffet_net_zc_stats s;
    memset(&s, 0, sizeof s);
    if (!zc) return s;
    s = zc->st;
    s.in_flight = zc->in_flight;
    s.next_id = zc->next;
    return s;
}

/* The reason of the allocation that just failed. */
static buffet_result buffet__net_zc_nomem(void) {
    buffet_result r = buffet_alloc_error(NULL);
    return r != BUFFET_OK ? r : BUFFET_ERR_NOMEM;
}

/* Room for one more call and n more references (the rings double; entries keep their
   positions). */
static buffet_result buffet__net_zc_reserve(buffet_net_zc *zc, size_t n) {
    if (zc->next - zc->base == zc->ncap) {
        uint32_t cap = zc->ncap ? zc->ncap * 2 : 64, id;
        buffet__net_zc_call *nc;
        if (zc->ncap >= (uint32_t)1 << 31) return BUFFET_ERR_EXHAUSTED;   /* 2^31 calls in flight */
        nc = BUFFET_NEW_ARRAY(zc->allocator, buffet__net_zc_call, cap);
        if (!nc) return buffet__net_zc_nomem();
        for (id = zc->base; id != zc->next; id++) nc[id & (cap - 1)] = zc->calls[id & (zc->ncap - 1)];
        buffet_free(zc->allocator, zc->calls, (size_t)zc->ncap * sizeof *zc->calls,
                    BUFFET_ALIGNOF(buffet__net_zc_call), BUFFET_SITE);
        zc->calls = nc;
        zc->ncap = cap;
    }
    while (zc->rcap - (zc->rtail - zc->rhead) < n) {
        size_t cap = zc->rcap ? zc->rcap * 2 : 256, pos;
        buffet_buf **nr;
        if (zc->rcap > SIZE_MAX / 2 / sizeof *nr) return BUFFET_ERR_OVERFLOW;
        nr = BUFFET_NEW_ARRAY(zc->allocator, buffet_buf *, cap);
        if (!nr) return buffet__net_zc_nomem();
        for (pos = zc->rhead; pos != zc->rtail; pos++) nr[pos & (cap - 1)] = zc->refs[pos & (zc->rcap - 1)];
        buffet_free(zc->allocator, zc->refs, zc->rcap * sizeof *zc->refs, BUFFET_ALIGNOF(buffet_buf *), BUFFET_SITE);
        zc->refs = nr;
        zc->rcap = cap;
    }
    return BUFFET_OK;
}

/* Drop references [from, to) of the ring (not yet committed to a call, or of a completed one). */
static void buffet__net_zc_unref(buffet_net_zc *zc, size_t from, size_t to) {
    for (; from != to; from++) buffet_buf_unref(zc->refs[from & (zc->rcap - 1)]);
}

/* Number the next call: it holds the references [rtail, rtail + count), taken by the caller. */
static void buffet__net_zc_commit(buffet_net_zc *zc, uint32_t count) {
    buffet__net_zc_call *k = &zc->calls[zc->next & (zc->ncap - 1)];
    k->first = zc->rtail;
    k->count = count;
    k->done = false;
    zc->rtail += count;
    zc->next++;
    zc->in_flight++;
    zc->st.calls++;
}

/* Calls base + [from, to) of the window completed: drop their references, once. Returns how
   many were still in flight. */
static uint64_t buffet__net_zc_done(buffet_net_zc *zc, uint32_t base, uint64_t from, uint64_t to) {
    uint64_t i, hit = 0;
    for (i = from; i < to; i++) {
        buffet__net_zc_call *k = &zc->calls[(base + (uint32_t)i) & (zc->ncap - 1)];
        if (k->done) continue;   /* a second entry for it: its references went already */
        k->done = true;
        zc->in_flight--;
        hit++;
        buffet__net_zc_unref(zc, k->first, k->first + k->count);
    }
    return hit;
}

/* Calls lo..hi (inclusive, wrapping) completed: drop the references of those in flight, once. */
static void buffet__net_zc_complete(buffet_net_zc *zc, uint32_t lo, uint32_t hi, bool copied,
                                    buffet_net_zc_drained *d) {
    uint64_t len = (uint64_t)(uint32_t)(hi - lo) + 1, hit = 0, wrap = (uint64_t)1 << 32;
    uint32_t base = zc->base, window = zc->next - zc->base, off = lo - zc->base;
    uint64_t end = (uint64_t)off + len;   /* the range is [off, end) from base, mod 2^32 */
    /* Only its part inside the window [0, window) can name calls of ours, whatever the kernel
       (or a second sender on the socket) says: at most two pieces, at most `window` steps. */
    if (off < window) hit += buffet__net_zc_done(zc, base, off, end < window ? end : window);
    if (end > wrap) {
        uint64_t stop = off < window ? off : window;
        hit += buffet__net_zc_done(zc, base, 0, end - wrap < stop ? end - wrap : stop);
    }
    zc->st.stale += len - hit;
    zc->st.completed += hit;
    zc->st.notifications++;
    if (copied) zc->st.copied += hit;
    if (d) {
        d->completed += (uint32_t)hit;
        d->notifications++;
        if (copied) d->copied += (uint32_t)hit;
    }
    /* the window starts at the oldest call not completed; the references before it are free */
    while (zc->base != zc->next && zc->calls[zc->base & (zc->ncap - 1)].done) zc->base++;
    zc->rhead = zc->base != zc->next ? zc->calls[zc->base & (zc->ncap - 1)].first : zc->rtail;
}

/* Read what the error queue holds now. faults: let the fault layer in. Returns OK when an entry
   was read, AGAIN when none was, else the error. */
static buffet_result buffet__net_zc_read(int fd, buffet_net_zc *zc, bool faults, buffet_net_zc_drained *d) {
    buffet_result res = BUFFET_AGAIN;
    for (;;) {
        /* an extended error and the offender's address (sockaddr_in6 at most) */
        union {
            char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in6))];
            struct cmsghdr align;
        } ctl;
        struct msghdr m;
        struct cmsghdr *cm;
        struct iovec v;
        char payload;
        bool zerocopy = false;
        size_t one = 1;
        int e = faults ? buffet__net_fault(fd, &one) : 0;
        ssize_t r;
        memset(&m, 0, sizeof m);
        /* Zerocopy entries carry no bytes (others are cut to one: MSG_TRUNC), but a read with no
           iovec at all never reaches the kernel under qemu-user, which answers 0 itself. */
        v.iov_base = &payload;
        v.iov_len = 1;
        m.msg_iov = &v;
        m.msg_iovlen = 1;
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        if (e) {
            errno = e;
            r = -1;
        } else {
            r = recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? res : buffet__net_errno_result(errno);
        }
        if (m.msg_controllen == 0) return res;   /* every entry carries a control message: not an error queue */
        res = BUFFET_OK;
        for (cm = CMSG_FIRSTHDR(&m); cm && !(m.msg_flags & MSG_CTRUNC); cm = CMSG_NXTHDR(&m, cm)) {
            struct sock_extended_err ee;
            if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                  (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)) ||
                cm->cmsg_len < CMSG_LEN(sizeof ee))
                continue;
            memcpy(&ee, CMSG_DATA(cm), sizeof ee);   /* CMSG_DATA need not be aligned for it */
            if (ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY || ee.ee_errno != 0) continue;
            zerocopy = true;
            buffet__net_zc_complete(zc, ee.ee_info, ee.ee_data, (ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED) != 0, d);
        }
        if (!zerocopy) {
            zc->st.other++;
            if (d) d->other++;
        }
    }
}

BUFFET_API buffet_result buffet_net_zc_drain(int fd, buffet_net_zc *zc, buffet_net_zc_drained *d) {
    if (d) memset(d, 0, sizeof *d);
    if (!zc || fd < 0 || (zc->fd >= 0 && fd != zc->fd)) return BUFFET_ERR_INVALID;
    return buffet__net_zc_read(fd, zc, true, d);
}

static int64_t buffet__net_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drain until no call is in flight, waiting for POLLERR between drains, at most timeout_ms
   milliseconds (< 0: no limit). *d (may be NULL) gets the sum of the drains. Returns:
   BUFFET_OK (nothing in flight), BUFFET_AGAIN (the time ran out; calls still in flight).
   Errors: as buffet_net_zc_drain. Thread: owned (zc). */
BUFFET_API buffet_result buffet_net_zc_wait(int fd, buffet_net_zc *zc, int timeout_ms, buffet_net_zc_drained *d) {
    int64_t end = buffet__net_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    buffet_net_zc_drained sum, one;
    bool ready = false;
    memset(&sum, 0, sizeof sum);
    if (d) *d = sum;
    if (!zc || fd < 0 || (zc->fd >= 0 && fd != zc->fd)) return BUFFET_ERR_INVALID;
    for (;;) {
        struct pollfd p;
        int64_t left;
        int n;
        buffet_result r = buffet_net_zc_drain(fd, zc, &one);
        sum.completed += one.completed;
        sum.copied += one.copied;
        sum.notifications += one.notifications;
        sum.other += one.other;
        if (d) *d = sum;
        if (r != BUFFET_OK && r != BUFFET_AGAIN) return r;
        if (zc->in_flight == 0) return BUFFET_OK;
        if (r == BUFFET_AGAIN && ready) {
            /* poll said ready but nothing was queued: POLLERR of a pending socket error, or
               POLLHUP of a closed peer, stays up; a millisecond's pause keeps this from spinning */
            struct timespec ms;
            ms.tv_sec = 0;
            ms.tv_nsec = 1000000;
            nanosleep(&ms, NULL);
        }
        left = timeout_ms < 0 ? 1000 : end - buffet__net_now_ms();
        if (left <= 0) return BUFFET_AGAIN;
        p.fd = fd;
        p.events = 0;   /* POLLERR is always reported */
        p.revents = 0;
        n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR) return buffet__net_errno_result(errno);
        ready = n > 0;
    }
}

/* Bind zc to fd: SO_ZEROCOPY on, and the socket's type. */
static buffet_result buffet__net_zc_bind(buffet_net_zc *zc, int fd) {
    int one = 1, type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return buffet__net_errno_result(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) < 0) {
        if (errno != EOPNOTSUPP && errno != ENOPROTOOPT) return buffet__net_errno_result(errno);
        BUFFET__LOG(&zc->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                    "fd %d cannot send with MSG_ZEROCOPY (SO_ZEROCOPY: %s): only TCP and UDP sockets can", fd,
                    errno == EOPNOTSUPP ? "EOPNOTSUPP" : "ENOPROTOOPT");
        return BUFFET_ERR_UNSUPPORTED;
    }
    zc->fd = fd;
    zc->datagram = type == SOCK_DGRAM;
    return BUFFET_OK;
}

/* A failed zerocopy sendmsg's errno as a result. */
static buffet_result buffet__net_zc_errno(int e) {
    if (e == ENOBUFS) return BUFFET_ERR_EXHAUSTED;   /* optmem_max: no room for a notification */
    if (e == EMSGSIZE) return BUFFET_ERR_TOO_LARGE;
    return buffet__net_errno_result(e);
}

/* sendmsg with MSG_ZEROCOPY of iov[0..n), the first n slices of c (whose bytes they are): the
   buffers are referenced before the call (so no failure can come after the kernel took pages)
   and those the kernel sent from stay with the call. Returns the bytes sent, or -1 with *res
   (BUFFET_OK: interrupted, call again). */
static ssize_t buffet__net_zc_sendmsg(int fd, buffet_net_zc *zc, const buffet_chain *c, struct iovec *iov, size_t n,
                                      unsigned flags, buffet_result *res) {
    struct msghdr m;
    size_t i, taken = 0, kept = 0, at = 0, from = zc->rtail;
    uint32_t id = zc->next;
    ssize_t r;
    int e;
    buffet_buf *prev = NULL;
    *res = buffet__net_zc_reserve(zc, n);
    if (*res != BUFFET_OK) return -1;
    for (i = 0; i < n; i++) {
        buffet_buf *b = buffet_chain_at(c, i)->buf;
        if (b == prev) continue;   /* one reference per run of slices of a buffer */
        if (!buffet_buf_ref(b)) {
            buffet__net_zc_unref(zc, from, from + taken);
            BUFFET__LOG(&zc->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW,
                        "zerocopy send refused: a buffer holds BUFFET_BUF_REF_MAX references");
            *res = BUFFET_ERR_OVERFLOW;
            return -1;
        }
        zc->refs[(from + taken++) & (zc->rcap - 1)] = b;
        prev = b;
    }
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = n;
    r = sendmsg(fd, &m, MSG_ZEROCOPY | MSG_NOSIGNAL | ((flags & BUFFET_NET_MORE) ? MSG_MORE : 0));
    e = errno;
    if (r < 0 && e == EINTR) {   /* interrupted before it moved anything: no number used */
        buffet__net_zc_unref(zc, from, from + taken);
        *res = BUFFET_OK;
        return -1;
    }
    if (r < 0 && zc->datagram && e != EAGAIN && e != EWOULDBLOCK) {
        /* A datagram can fail after the kernel built it (a firewall drop, a full device queue
           with IP_RECVERR): then its number is used and its completion is already queued,
           since the datagram was freed inside sendmsg. Number it tentatively, holding nothing,
           and read the queue: the number stays only if the kernel completed it. */
        buffet__net_zc_unref(zc, from, from + taken);
        buffet__net_zc_commit(zc, 0);
        buffet__net_zc_read(fd, zc, false, NULL);
        if (zc->next - zc->base > 0 && zc->next - 1 == id && !zc->calls[id & (zc->ncap - 1)].done) {
            zc->next--;   /* not used: the last call of the window goes again */
            zc->in_flight--;
            zc->st.calls--;
        }
        errno = e;
        *res = buffet__net_zc_errno(e);
        return -1;
    }
    if (r <= 0) {   /* no number used: a failed stream call moved nothing */
        buffet__net_zc_unref(zc, from, from + taken);
        if (r == 0) e = EIO;   /* bytes offered, none taken, no error: the socket lies */
        errno = e;
        *res = buffet__net_zc_errno(e);
        return -1;
    }
    /* keep the buffers whose bytes went (a partial call still holds them all until it completes) */
    for (i = 0, prev = NULL; i < n && at < (size_t)r; i++) {
        buffet_buf *b = buffet_chain_at(c, i)->buf;
        if (b != prev) kept++;
        prev = b;
        at += iov[i].iov_len;
    }
    buffet__net_zc_unref(zc, from + kept, from + taken);
    buffet__net_zc_commit(zc, (uint32_t)kept);
    return r;
}

BUFFET_API buffet_result buffet_net_send_chain_zc(int fd, buffet_chain *c, buffet_net_zc *zc, unsigned flags,
                                                  size_t *sent) {
    size_t total = 0;
    buffet_result res = BUFFET_OK;
    if (sent) *sent = 0;
    if (!c || !zc || fd < 0 || (flags & ~(unsigned)BUFFET_NET_MORE)) return BUFFET_ERR_INVALID;
    if (zc->fd != fd) {
        if (zc->fd >= 0) {
            BUFFET__LOG(&zc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                        "zerocopy tracker of fd %d used on fd %d: the kernel numbers calls per socket", zc->fd, fd);
            return BUFFET_ERR_INVALID;
        }
        res = buffet__net_zc_bind(zc, fd);
        if (res != BUFFET_OK) return res;
    }
    if (zc->datagram && buffet_chain_count(c) > BUFFET_NET_IOV_MAX) return BUFFET_ERR_TOO_LARGE;
    while (buffet_chain_len(c) > 0) {
        struct iovec iov[BUFFET_NET_IOV_MAX];
        size_t want = buffet_chain_len(c), n;
        int e = buffet__net_fault(fd, &want);
        ssize_t r;
        if (zc->datagram) want = buffet_chain_len(c);   /* a datagram is never cut */
        if (e == EINTR) continue;
        if (e) {
            res = buffet__net_errno_result(e);
            break;
        }
        n = buffet_chain_iovec(c, 0, want, iov, BUFFET_NET_IOV_MAX);
        if (n == 0 || (zc->datagram && n < buffet_chain_count(c))) {   /* a slice without host memory */
            res = BUFFET_ERR_INVALID;
            break;
        }
        r = buffet__net_zc_sendmsg(fd, zc, c, iov, n, flags, &res);
        if (r < 0) {
            if (res == BUFFET_OK) continue;   /* EINTR */
            if (res == BUFFET_ERR_EXHAUSTED)
                BUFFET__LOG(&zc->log, BUFFET_LOG_WARN, BUFFET_ERR_EXHAUSTED,
                            "MSG_ZEROCOPY on fd %d: ENOBUFS, the socket's option memory (net.core.optmem_max) "
                            "is full of completions not read: drain and send again", fd);
            break;
        }
        buffet_chain_consume(c, (size_t)r);
        total += (size_t)r;
        if (zc->datagram) break;
    }
    if (sent) *sent = total;
    return res;
}

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103   /* Linux 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104   /* Linux 5.0 */
#endif

#define BUFFET__NET_UDP_BATCH 64   /* messages a recvmmsg/sendmmsg call takes from us */
/* Room for every control message one datagram may carry: pktinfo (v4 or v6; both for a
   v4-mapped peer), TOS/TCLASS, the timestamp, the GRO size. */
#define BUFFET__NET_CMSG_ROOM 256

BUFFET_API buffet_net_meta *buffet_net_meta_of(buffet_pkt *p) {
    /* The pool's user size is buffet_packet.h's (both sit in buffet_net.h's translation unit). */
    return p && buffet_pkt_pool_user_size(p->pool) >= sizeof(buffet_net_meta) ? (buffet_net_meta *)buffet_pkt_user(p) : NULL;
}

static bool buffet__net_meta_ok(const buffet_pkt_cache *c) {
    return c && buffet_pkt_pool_user_size(c->pool) >= sizeof(buffet_net_meta);
}

/* Is fd a UDP socket? One call answers: only UDP (and UDP-Lite) sockets know SOL_UDP options;
   TCP, raw, ping and UNIX sockets, files and closed descriptors all fail it. */
static bool buffet__net_is_udp(int fd) {
    int v;
    socklen_t l = sizeof v;
    return fd >= 0 && getsockopt(fd, SOL_UDP, UDP_CORK, &v, &l) == 0;
}

static socklen_t buffet__net_addr_len(const buffet_net_addr *a) {
    return a->sa.sa_family == AF_INET ? (socklen_t)sizeof a->in4
         : a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : 0;
}

/* One option on; the result of the first failure is kept in *res (ENOPROTOOPT: this kernel, or
   an emulator, does not know the option). */
static void buffet__net_opt_on(int fd, int level, int name, buffet_result *res) {
    int v = 1;
    if (setsockopt(fd, level, name, &v, sizeof v) != 0 && *res == BUFFET_OK)
        *res = errno == ENOPROTOOPT ? BUFFET_ERR_UNSUPPORTED : buffet__net_errno_result(errno);
}

BUFFET_API buffet_result buffet_net_udp_setup(int fd, unsigned flags) {
    int family = 0, v6only = 0;
    socklen_t l = sizeof family;
    buffet_result res = BUFFET_OK;
    if ((flags & ~(unsigned)BUFFET_NET_UDP_GRO) || !buffet__net_is_udp(fd)) return BUFFET_ERR_INVALID;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &l) != 0) return buffet__net_errno_result(errno);
    /* Every option is tried even after one fails, so what the system has is on. */
    if (family == AF_INET6) {
        l = sizeof v6only;
        if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l) != 0) v6only = 0;
        buffet__net_opt_on(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &res);
        buffet__net_opt_on(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &res);
    }
    if (family == AF_INET || !v6only) {   /* IPv4 datagrams, or IPv4-mapped ones on an IPv6 socket */
        buffet__net_opt_on(fd, IPPROTO_IP, IP_PKTINFO, &res);
        buffet__net_opt_on(fd, IPPROTO_IP, IP_RECVTOS, &res);
    }
    buffet__net_opt_on(fd, SOL_SOCKET, SO_TIMESTAMPNS, &res);
    if (flags & BUFFET_NET_UDP_GRO) buffet__net_opt_on(fd, SOL_UDP, UDP_GRO, &res);
    return res;
}

/* The control messages of one received datagram into m (and the timestamp into p). */
static void buffet__net_read_cmsgs(struct msghdr *h, buffet_net_meta *m, buffet_pkt *p) {
    struct cmsghdr *cm;
    for (cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
        const unsigned char *d = CMSG_DATA(cm);
        size_t room = (size_t)((unsigned char *)h->msg_control + h->msg_controllen - (unsigned char *)cm);
        size_t dlen = cm->cmsg_len - CMSG_LEN(0);
        int v;
        /* CMSG_NXTHDR does not check the length of the message it returns: one below a header
           or past the buffer (never the kernel's) ends the walk unread. */
        if (cm->cmsg_len < CMSG_LEN(0) || cm->cmsg_len > room) break;
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO && dlen >= sizeof(struct in_pktinfo)) {
            struct in_pktinfo pi;
            memcpy(&pi, d, sizeof pi);   /* CMSG_DATA is not promised to be aligned for the struct */
            memset(&m->local, 0, sizeof m->local);
            m->local.in4.sin_family = AF_INET;
            m->local.in4.sin_addr = pi.ipi_addr;   /* the header's destination, not the route's */
            m->ifindex = (uint32_t)pi.ipi_ifindex;
            m->flags |= BUFFET_NET_META_LOCAL;
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
                   dlen >= sizeof(struct in6_pktinfo)) {
            struct in6_pktinfo pi;
            memcpy(&pi, d, sizeof pi);
            memset(&m->local, 0, sizeof m->local);
            m->local.in6.sin6_family = AF_INET6;
            m->local.in6.sin6_addr = pi.ipi6_addr;
            m->ifindex = pi.ipi6_ifindex;
            m->flags |= BUFFET_NET_META_LOCAL;
        } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TOS && dlen >= 1) {
            m->ecn = (uint8_t)(d[0] & 3);   /* IP_RECVTOS delivers one byte */
            m->flags |= BUFFET_NET_META_ECN;
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_TCLASS && dlen >= sizeof v) {
            memcpy(&v, d, sizeof v);
            m->ecn = (uint8_t)(v & 3);
            m->flags |= BUFFET_NET_META_ECN;
        } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS &&
                   dlen >= sizeof(struct timespec)) {
            struct timespec ts;
            memcpy(&ts, d, sizeof ts);
            p->timestamp = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        } else if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO && dlen >= sizeof v) {
            memcpy(&v, d, sizeof v);
            m->seg_size = v > 0 && v <= UINT16_MAX ? (uint16_t)v : 0;   /* the kernel's is 16 bits: else no size */
        }
    }
}

/* Cut p (one segment, GRO segments of `seg` bytes) into at most max packets in out[]; p is
   out[0]. Returns: BUFFET_OK or the clone's reason; *made packets are in out either way. */
static buffet_result buffet__net_split(buffet_pkt_cache *c, buffet_pkt *p, size_t seg, buffet_pkt **out, size_t max,
                                       size_t *made) {
    size_t total = p->len, k = 1, at;
    buffet_pkt *last = p;
    out[0] = p;
    *made = 1;
    if (seg == 0 || total <= seg || max < 2) return BUFFET_OK;
    /* p's view shrinks to the first segment; each clone then gets its own view of the buffer
       (data_off and len are per header): no byte is copied. */
    p->len = p->pkt_len = (uint32_t)seg;
    for (at = seg; at < total && k < max; at += seg, k++) {
        buffet_pkt *q = buffet_pkt_clone(c, p);
        size_t left = total - at;
        if (!q) {
            buffet_result why = buffet_alloc_error(NULL);
            /* the last packet made keeps the rest, so nothing is lost */
            last->len = last->pkt_len = (uint32_t)(total - (size_t)(last->data_off - p->data_off));
            *made = k;
            return why != BUFFET_OK ? why : BUFFET_ERR_NOMEM;
        }
        /* the last clone that fits keeps every byte from here on */
        q->data_off = (uint16_t)(p->data_off + at);
        q->len = q->pkt_len = (uint32_t)(k + 1 == max ? left : (left < seg ? left : seg));
        out[k] = q;
        last = q;
    }
    *made = k;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_udp_split(buffet_pkt_cache *c, buffet_pkt *p, buffet_pkt **out, size_t max,
                                              size_t *made) {
    buffet_net_meta *m = buffet_net_meta_of(p);
    if (made) *made = 0;
    if (!c || !p || !out || !made || max == 0 || !m || p->next || p->nb_segs != 1 || p->len != p->pkt_len ||
        (uint64_t)p->data_off + p->len > p->buf_len)
        return BUFFET_ERR_INVALID;
    return buffet__net_split(c, p, m->seg_size, out, max, made);
}

BUFFET_API buffet_result buffet_net_udp_recv(int fd, buffet_pkt_cache *c, int cls, buffet_pkt **pkts, size_t n,
                                             size_t *got) {
    struct mmsghdr msgs[BUFFET__NET_UDP_BATCH];
    struct iovec iov[BUFFET__NET_UDP_BATCH];
    /* unsigned long: cmsg buffers aligned as CMSG_* expect */
    unsigned long ctl[BUFFET__NET_UDP_BATCH][BUFFET__NET_CMSG_ROOM / sizeof(unsigned long)];
    buffet_pkt *mine[BUFFET__NET_UDP_BATCH];
    size_t out = 0, want, have, i;
    buffet_result res = BUFFET_OK;
    bool truncated = false;
    int r = -1, e;
    if (got) *got = 0;
    if (!pkts || !got || !buffet__net_meta_ok(c) || c->nclasses == 0 || cls < -1 || cls >= (int)c->nclasses)
        return BUFFET_ERR_INVALID;
    if (!buffet__net_is_udp(fd)) return BUFFET_ERR_INVALID;
    if (n == 0) return BUFFET_OK;
    if (cls < 0) cls = (int)c->nclasses - 1;
    want = n < BUFFET__NET_UDP_BATCH ? n : BUFFET__NET_UDP_BATCH;
    /* Packets first: the kernel gives a datagram once, so its buffer must be there before. */
    for (have = 0; have < want; have++) {
        mine[have] = buffet_pkt_alloc_class(c, (unsigned)cls);
        if (!mine[have]) break;
    }
    if (have == 0) {
        res = buffet_alloc_error(NULL);
        return res != BUFFET_OK ? res : BUFFET_ERR_NOMEM;
    }
    memset(msgs, 0, have * sizeof msgs[0]);
    for (i = 0; i < have; i++) {
        buffet_net_meta *m = (buffet_net_meta *)buffet_pkt_user(mine[i]);
        iov[i].iov_base = buffet_pkt_data(mine[i]);
        iov[i].iov_len = buffet_pkt_tailroom(mine[i]);
        msgs[i].msg_hdr.msg_name = &m->peer;
        msgs[i].msg_hdr.msg_namelen = sizeof m->peer;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = ctl[i];
        msgs[i].msg_hdr.msg_controllen = sizeof ctl[i];
    }
    for (;;) {
        size_t ask = have;
        e = buffet__net_fault(fd, &ask);   /* a short call takes fewer datagrams */
        if (e) {
            errno = e;
            r = -1;
        } else {
            /* MSG_TRUNC: msg_len is the datagram's real length, so a cut one is told with its size.
               MSG_WAITFORONE: block (on a blocking socket) for the first datagram only. */
            r = recvmmsg(fd, msgs, (unsigned)ask, MSG_TRUNC | MSG_WAITFORONE, NULL);
        }
        if (r >= 0 || errno != EINTR) break;
    }
    if (r <= 0) {
        res = r == 0 ? BUFFET_AGAIN : buffet__net_errno_result(errno);
        for (i = 0; i < have; i++) buffet_pkt_free(c, mine[i]);
        return res;
    }
    for (i = 0; i < have; i++) {
        buffet_pkt *p = mine[i];
        buffet_net_meta *m;
        size_t room = iov[i].iov_len, len, made, cut, j;
        buffet_result split;
        if (i >= (size_t)r) {
            buffet_pkt_free(c, p);
            continue;
        }
        m = (buffet_net_meta *)buffet_pkt_user(p);
        len = msgs[i].msg_len;
        /* the kernel wrote the peer; the rest of the meta starts clean */
        if (msgs[i].msg_hdr.msg_namelen < sizeof m->peer)
            memset((char *)&m->peer + msgs[i].msg_hdr.msg_namelen, 0, sizeof m->peer - msgs[i].msg_hdr.msg_namelen);
        memset((char *)m + sizeof m->peer, 0, sizeof *m - sizeof m->peer);
        m->wire_len = (uint32_t)len;
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len > room) {
            m->flags |= BUFFET_NET_META_TRUNC;
            truncated = true;
            len = room;
        }
        p->len = p->pkt_len = (uint32_t)len;
        buffet__net_read_cmsgs(&msgs[i].msg_hdr, m, p);
        if (res != BUFFET_OK) {   /* a split ran short: no more clones; the rest stay whole */
            pkts[out++] = p;
            continue;
        }
        /* Room for this datagram's segments: the slots left after the datagrams still to come. */
        cut = m->wire_len - len;
        split = buffet__net_split(c, p, m->seg_size, pkts + out, n - out - ((size_t)r - 1 - i), &made);
        if (split != BUFFET_OK) res = split;
        if (made > 1) {
            /* each piece is a datagram of its own (the clones copied the whole's meta): only the
               last can have been cut */
            for (j = 0; j < made; j++) {
                buffet_net_meta *mj = (buffet_net_meta *)buffet_pkt_user(pkts[out + j]);
                mj->wire_len = pkts[out + j]->len + (j + 1 == made ? (uint32_t)cut : 0u);
                if (j + 1 < made) mj->flags &= (uint8_t)~BUFFET_NET_META_TRUNC;
            }
        }
        out += made;
    }
    *got = out;
    if (res != BUFFET_OK) return res;
    return truncated ? BUFFET_ERR_TRUNCATED : BUFFET_OK;
}

/* A control message of an int (IP_TOS, IPV6_TCLASS) or a uint16_t (UDP_SEGMENT) at *at. */
static struct cmsghdr *buffet__net_put_cmsg(struct msghdr *h, struct cmsghdr *at, int level, int type,
                                            const void *v, size_t len) {
    memset(at, 0, CMSG_SPACE(len));   /* the padding too: the kernel copies it in */
    at->cmsg_level = level;
    at->cmsg_type = type;
    at->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(at), v, len);
    h->msg_controllen += CMSG_SPACE(len);
    return (struct cmsghdr *)((unsigned char *)at + CMSG_SPACE(len));
}

/* The family an ECN cmsg is written for: the destination's, or the socket's when connected
   (asked once per call, *family 0 until then). An IPv4-mapped destination takes IP_TOS. */
static int buffet__net_ecn_family(int fd, const buffet_net_addr *to, int *family) {
    if (to && to->sa.sa_family == AF_INET6)
        return IN6_IS_ADDR_V4MAPPED(&to->in6.sin6_addr) ? AF_INET : AF_INET6;
    if (to && to->sa.sa_family == AF_INET) return AF_INET;
    if (*family == 0) {
        socklen_t l = sizeof *family;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, family, &l) != 0) *family = AF_INET;
    }
    return *family;
}

/* Address and control messages of one datagram (ECN, and GSO when seg > 0) into h. */
static void buffet__net_fill_msg(int fd, struct msghdr *h, const buffet_net_meta *to, void *ctl, size_t seg,
                                 int *family) {
    struct cmsghdr *cm = (struct cmsghdr *)ctl;
    socklen_t alen = to ? buffet__net_addr_len(&to->peer) : 0;
    h->msg_name = alen ? (void *)&to->peer : NULL;
    h->msg_namelen = alen;
    h->msg_control = ctl;
    h->msg_controllen = 0;
    if (to && (to->flags & BUFFET_NET_META_ECN)) {
        int v = to->ecn & 3;
        if (buffet__net_ecn_family(fd, &to->peer, family) == AF_INET6)
            cm = buffet__net_put_cmsg(h, cm, IPPROTO_IPV6, IPV6_TCLASS, &v, sizeof v);
        else
            cm = buffet__net_put_cmsg(h, cm, IPPROTO_IP, IP_TOS, &v, sizeof v);
    }
    if (seg) {
        uint16_t s = (uint16_t)seg;
        buffet__net_put_cmsg(h, cm, SOL_UDP, UDP_SEGMENT, &s, sizeof s);
    }
    if (h->msg_controllen == 0) h->msg_control = NULL;
}

/* errno of a failed datagram send as a result: a datagram too large has its own code. */
static buffet_result buffet__net_dgram_errno(int e) {
    return e == EMSGSIZE ? BUFFET_ERR_TOO_LARGE : buffet__net_errno_result(e);
}

/* Does packet p describe itself truly (segments adding up, inside their rooms, few enough)? */
static bool buffet__net_pkt_sane(const buffet_pkt *p) {
    const buffet_pkt *s;
    uint64_t sum = 0;
    size_t segs = 0;
    for (s = p; s; s = s->next) {
        if ((uint64_t)s->data_off + s->len > s->buf_len || ++segs > BUFFET_NET_IOV_MAX) return false;
        sum += s->len;
    }
    return sum == p->pkt_len && segs == p->nb_segs;
}

BUFFET_API buffet_result buffet_net_udp_send(int fd, buffet_pkt_cache *c, buffet_pkt **pkts, size_t n, size_t *sent) {
    struct mmsghdr msgs[BUFFET__NET_UDP_BATCH];
    struct iovec iov[BUFFET_NET_IOV_MAX];
    unsigned long ctl[BUFFET__NET_UDP_BATCH][64 / sizeof(unsigned long)];
    size_t done = 0, i;
    int family = 0;
    if (sent) *sent = 0;
    if (!pkts || !sent || !buffet__net_meta_ok(c) || !buffet__net_is_udp(fd)) return BUFFET_ERR_INVALID;
    /* All checked before anything goes: a bad packet in the middle must not leave half a batch
       sent and freed. */
    for (i = 0; i < n; i++)
        if (!pkts[i] || pkts[i]->pool != c->pool || !buffet__net_pkt_sane(pkts[i])) return BUFFET_ERR_INVALID;
    while (done < n) {
        size_t m = 0, used = 0, ask;
        int r, e;
        /* one call's messages: as many packets as BUFFET__NET_UDP_BATCH and the iovecs allow */
        memset(msgs, 0, sizeof msgs);
        while (done + m < n && m < BUFFET__NET_UDP_BATCH && used + pkts[done + m]->nb_segs <= BUFFET_NET_IOV_MAX) {
            buffet_pkt *p = pkts[done + m], *s;
            struct msghdr *h = &msgs[m].msg_hdr;
            h->msg_iov = &iov[used];
            for (s = p; s; s = s->next) {
                iov[used].iov_base = buffet_pkt_data(s);
                iov[used++].iov_len = s->len;
            }
            h->msg_iovlen = p->nb_segs;
            buffet__net_fill_msg(fd, h, (const buffet_net_meta *)buffet_pkt_user(p), ctl[m], 0, &family);
            m++;
        }
        ask = m;
        e = buffet__net_fault(fd, &ask);   /* a short call sends fewer datagrams */
        if (e) {
            errno = e;
            r = -1;
        } else {
            r = sendmmsg(fd, msgs, (unsigned)ask, MSG_NOSIGNAL);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            *sent = done;
            return buffet__net_dgram_errno(errno);
        }
        /* What went out is the kernel's now: freed here, so the caller keeps only the rest. */
        buffet_pkt_free_bulk(c, pkts + done, (size_t)r);
        done += (size_t)r;
        *sent = done;
        /* A short count with no error: the next call tells why (the error sendmmsg held back, or
           EAGAIN), or sends the rest. */
    }
    return BUFFET_OK;
}

/* Where GSO bytes come from: a flat buffer, a chain, or a packet's segments. */
typedef struct buffet__net_gso_src {
    const unsigned char *flat;
    const buffet_chain *chain;
    const buffet_pkt *pkt;
    size_t base;   /* the packet's first byte to send */
} buffet__net_gso_src;

/* Iovecs for bytes [off, off + len) of src, at most max; returns how many, *covered the bytes
   they hold (less than len when the iovecs ran out or memory has no host address). */
static size_t buffet__net_gso_iov(const buffet__net_gso_src *src, size_t off, size_t len, struct iovec *iov,
                                  size_t max, size_t *covered) {
    size_t n = 0, i, got = 0;
    if (src->flat) {
        iov[0].iov_base = (void *)(src->flat + off);
        iov[0].iov_len = len;
        *covered = len;
        return 1;
    }
    if (src->chain) {
        n = buffet_chain_iovec(src->chain, off, len, iov, max);
        for (i = 0; i < n; i++) got += iov[i].iov_len;
    } else {
        const buffet_pkt *s;
        off += src->base;
        for (s = src->pkt; s && n < max && got < len; s = s->next) {
            size_t k;
            if (off >= s->len) {
                off -= s->len;
                continue;
            }
            k = s->len - off < len - got ? s->len - off : len - got;
            iov[n].iov_base = (unsigned char *)buffet_pkt_data(s) + off;
            iov[n++].iov_len = k;
            got += k;
            off = 0;
        }
    }
    *covered = got;
    return n;
}

static buffet_result buffet__net_gso(int fd, const buffet__net_gso_src *src, size_t len, size_t seg_size,
                                     const buffet_net_meta *to, size_t *sent) {
    struct iovec iov[BUFFET_NET_IOV_MAX];
    unsigned long ctl[64 / sizeof(unsigned long)];
    struct msghdr h;
    size_t done = 0, per_call, segs;
    int family = 0;
    if (seg_size == 0 || seg_size > BUFFET_NET_GSO_MAX_BYTES || !buffet__net_is_udp(fd)) return BUFFET_ERR_INVALID;
    segs = BUFFET_NET_GSO_MAX_BYTES / seg_size;
    if (segs > BUFFET_NET_GSO_MAX_SEGS) segs = BUFFET_NET_GSO_MAX_SEGS;
    per_call = segs * seg_size;
    while (done < len) {
        size_t want = len - done < per_call ? len - done : per_call, covered, niov, ask;
        ssize_t r;
        int e;
        niov = buffet__net_gso_iov(src, done, want, iov, BUFFET_NET_IOV_MAX, &covered);
        if (covered < want) {
            /* iovecs ran out: send the whole segments they hold (none: memory without a host
               address, or one segment spread over more than BUFFET_NET_IOV_MAX pieces) */
            want = covered - covered % seg_size;
            if (want == 0) return BUFFET_ERR_INVALID;
            niov = buffet__net_gso_iov(src, done, want, iov, BUFFET_NET_IOV_MAX, &covered);
        }
        memset(&h, 0, sizeof h);
        h.msg_iov = iov;
        h.msg_iovlen = niov;
        /* one datagram needs no GSO (and an old kernel would refuse the cmsg for nothing) */
        buffet__net_fill_msg(fd, &h, to, ctl, want > seg_size ? seg_size : 0, &family);
        ask = want;
        e = buffet__net_fault(fd, &ask);
        if (e) {
            errno = e;
            r = -1;
        } else {
            r = sendmsg(fd, &h, MSG_NOSIGNAL);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            /* EIO: the route cannot segment (xfrm); EINVAL with valid arguments: no GSO or segments
               above the MTU */
            return errno == EIO || (errno == EINVAL && want > seg_size) ? BUFFET_ERR_UNSUPPORTED
                                                                          : buffet__net_dgram_errno(errno);
        }
        done += (size_t)r;   /* a datagram socket takes a whole call or nothing */
        *sent = done;
    }
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_udp_send_gso(int fd, const void *data, size_t len, size_t seg_size,
                                                 const buffet_net_meta *to, size_t *sent) {
    buffet__net_gso_src src;
    if (sent) *sent = 0;
    if (!sent || (!data && len)) return BUFFET_ERR_INVALID;
    memset(&src, 0, sizeof src);
    src.flat = (const unsigned char *)data;
    return buffet__net_gso(fd, &src, len, seg_size, to, sent);
}

BUFFET_API buffet_result buffet_net_udp_send_gso_chain(int fd, buffet_chain *ch, size_t seg_size,
                                                       const buffet_net_meta *to, size_t *sent) {
    buffet__net_gso_src src;
    buffet_result r;
    if (sent) *sent = 0;
    if (!sent || !ch) return BUFFET_ERR_INVALID;
    memset(&src, 0, sizeof src);
    src.chain = ch;
    r = buffet__net_gso(fd, &src, buffet_chain_len(ch), seg_size, to, sent);
    buffet_chain_consume(ch, *sent);
    return r;
}

BUFFET_API buffet_result buffet_net_udp_send_gso_pkt(int fd, buffet_pkt_cache *c, buffet_pkt **p, size_t off,
                                                     size_t seg_size, size_t *sent) {
    buffet__net_gso_src src;
    buffet_result r;
    if (sent) *sent = 0;
    if (!sent || !p || !*p || !buffet__net_meta_ok(c) || (*p)->pool != c->pool || !buffet__net_pkt_sane(*p) ||
        off > (*p)->pkt_len)
        return BUFFET_ERR_INVALID;
    memset(&src, 0, sizeof src);
    src.pkt = *p;
    src.base = off;
    r = buffet__net_gso(fd, &src, (*p)->pkt_len - off, seg_size, (const buffet_net_meta *)buffet_pkt_user(*p), sent);
    if (r == BUFFET_OK) {
        buffet_pkt_free(c, *p);
        *p = NULL;
    }
    return r;
}

/* >>uring */
#if BUFFET_NET_URING
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* A receive's state in its slot. */
enum { BUFFET__UR_FREE, BUFFET__UR_ARMED, BUFFET__UR_STARVED, BUFFET__UR_CANCELLING };
/* user_data of the cancel requests: no receive's (those are slot + 1, with a generation above). */
#define BUFFET__UR_CANCEL_DATA 0u

typedef struct buffet__net_urecv {
    int fd;
    uint8_t state;
    bool dgram;                   /* a datagram socket: IORING_OP_RECVMSG, for the sender's address,
                                   truncation and empty datagrams (a 0-byte RECV ends a multishot) */
    uint32_t gen;                 /* in the user_data, so that a stale completion is known */
    uint64_t tag;
    struct msghdr msg;            /* RECVMSG's: the room for the name in each buffer */
} buffet__net_urecv;

/* Where a RECVMSG multishot puts the datagram in its buffer: after its header and the name. */
#define BUFFET__UR_DGRAM_HDR (sizeof(struct io_uring_recvmsg_out) + sizeof(struct sockaddr_in6))

/* Zerocopy sendmsg and its notification came with Linux 6.1: older headers lack the names. */
#ifdef IORING_CQE_F_NOTIF
#define BUFFET__UR_OP_SENDMSG_ZC IORING_OP_SENDMSG_ZC
#else
#define BUFFET__UR_OP_SENDMSG_ZC 48
#define IORING_CQE_F_NOTIF (1U << 3)
#endif

/* user_data of a send's requests: this bit and the slot in the low word, the generation above
   (receives' low words are slot + 1, far below it; cancels' are 0). */
#define BUFFET__UR_SEND_BIT 0x80000000u

/* A send's state in its slot. */
enum {
    BUFFET__US_FREE,
    BUFFET__US_BEHIND,     /* not submitted yet: an earlier send on its stream is not over */
    BUFFET__US_QUEUED,     /* to submit (again) at the next wait: the submission queue was full */
    BUFFET__US_INFLIGHT,   /* a request in the kernel, its result not taken yet */
    BUFFET__US_ENDED       /* no request left; notifications may still be owed */
};

typedef struct buffet__net_usend {
    buffet_chain ch;              /* the bytes, moved in from the caller; released once, at the end */
    struct iovec *iov;            /* the request's iovecs (the kernel reads them at submission) */
    size_t niov;                  /* room in iov */
    struct msghdr msg;
    size_t total, done;           /* bytes of the send, and those the kernel took */
    size_t consumed;              /* of done, those consumed from ch already (plain sends only) */
    uint64_t tag, seq;            /* seq: the order sends were made, for a stream's queue */
    int fd;
    int error;
    int32_t notifs;               /* zerocopy notifications owed: up at a result with F_MORE, down at
                                     a notification (the order of the two is not promised) */
    uint32_t gen;
    buffet_result res;
    uint8_t state;
    bool zc;                      /* requests go as SENDMSG_ZC */
    bool held;                    /* a zerocopy request was made: nothing is consumed before the end */
    bool dgram;                   /* not a stream: one request, one datagram */
} buffet__net_usend;

struct buffet_net_uring {
    buffet_pkt_cache *cache;
    unsigned cls;
    uint16_t group;
    int fd;
    /* the submission and completion rings, as mapped */
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    struct io_uring_sqe *sqes;
    unsigned *sq_head, *sq_tail, *sq_array, *cq_head, *cq_tail;
    unsigned sq_mask, sq_entries, cq_mask, sq_local, unsubmitted;
    struct io_uring_cqe *cqes;
    /* the provided-buffer ring: entries br[tail & mask] are filled by us, consumed by the kernel.
       Not struct io_uring_buf_ring: its bufs member is a flexible array that g++ places 8 bytes
       further than the kernel reads it (an empty struct is 1 byte in C++). */
    struct io_uring_buf *br;
    size_t br_len;
    uint32_t nbufs;
    uint16_t br_tail;
    buffet_pkt **slots;           /* by buffer id: the raw buffer the kernel holds, or NULL */
    uint16_t *free_ids;           /* buffer ids with no buffer in the ring */
    uint32_t nfree;
    buffet__net_urecv recvs[BUFFET_NET_URING_MAX_RECVS];
    int64_t retry_ms;             /* the pool had no buffer: not asked again before then */
    int64_t backoff_ms;           /* and the wait before that, doubled at each miss */
    uint32_t cancelling;          /* receives cancelled whose last completion has not come */
    buffet__net_usend sends[BUFFET_NET_URING_MAX_SENDS];
    uint64_t send_seq;
    bool closing;                 /* destroy: sends end where they are, nothing is submitted again */
    buffet_net_uring_stats st;
};

static int buffet__ur_enter(int fd, unsigned submit, unsigned min, unsigned flags, void *arg, size_t argsz) {
    return (int)syscall(__NR_io_uring_enter, fd, submit, min, flags, arg, argsz);
}

/* Hand the prepared submissions to the kernel (EINTR retried; EAGAIN/EBUSY: tried next time). */
static buffet_result buffet__ur_submit(buffet_net_uring *u) {
    __atomic_store_n(u->sq_tail, u->sq_local, __ATOMIC_RELEASE);
    while (u->unsubmitted) {
        int n = buffet__ur_enter(u->fd, u->unsubmitted, 0, 0, NULL, 0);
        if (n >= 0) {
            u->unsubmitted -= (unsigned)n < u->unsubmitted ? (unsigned)n : u->unsubmitted;
            if (n == 0) break;
        } else if (errno != EINTR) {
            return errno == EAGAIN || errno == EBUSY ? BUFFET_OK : BUFFET_ERR_SYSTEM;
        }
    }
    return BUFFET_OK;
}

/* A zeroed submission entry, or NULL when the queue is full even after submitting. */
static struct io_uring_sqe *buffet__ur_sqe(buffet_net_uring *u) {
    struct io_uring_sqe *e;
    unsigned idx;
    if (u->sq_local - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE) >= u->sq_entries) {
        (void)buffet__ur_submit(u);
        if (u->sq_local - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE) >= u->sq_entries) return NULL;
    }
    idx = u->sq_local & u->sq_mask;
    e = &u->sqes[idx];
    memset(e, 0, sizeof *e);
    u->sq_array[idx] = idx;
    u->sq_local++;
    u->unsubmitted++;
    return e;
}

/* Put raw buffers of the class into the ring's empty places: those the cache holds, and when it
   holds none, one from the pool, which tops the cache up from its shared store on the way. A pool
   with none left logs that the class is at its max: it is asked again after 1 ms, then after
   twice as long each time it still has none (up to a second), not at every wait. all: create,
   which fills the whole ring or fails. */
static void buffet__ur_refill(buffet_net_uring *u, bool all) {
    buffet_pkt_cache *c = u->cache;
    buffet_pkt *got[64];
    uint32_t mask = u->nbufs - 1;
    bool added = false;
    while (u->nfree) {
        size_t want = u->nfree < 64 ? u->nfree : 64, cached = c->cls[u->cls].count, n, i;
        if (want > cached) want = cached ? cached : 1;
        if (!cached && !all && buffet__net_now_ms() < u->retry_ms) break;
        n = buffet_pkt_alloc_bulk_raw(c, u->cls, got, want);
        if (n == 0) {
            u->st.refill_failures++;
            u->backoff_ms = u->backoff_ms ? (u->backoff_ms < 512 ? u->backoff_ms * 2 : 1000) : 1;
            u->retry_ms = buffet__net_now_ms() + u->backoff_ms;
            break;
        }
        u->backoff_ms = 0;
        for (i = 0; i < n; i++) {
            uint16_t id = u->free_ids[--u->nfree];
            struct io_uring_buf *b = &u->br[(uint16_t)(u->br_tail + i) & mask];
            /* field by field: the first entry's last bytes (resv) are the ring's tail */
            b->addr = (uint64_t)(uintptr_t)(buffet_pkt_raw_buf(c, got[i]) + c->headroom);
            b->len = got[i]->buf_len - c->headroom;
            b->bid = id;
            u->slots[id] = got[i];
        }
        u->br_tail = (uint16_t)(u->br_tail + n);
        u->st.in_ring += (uint32_t)n;
        added = true;
    }
    if (added) __atomic_store_n(&u->br[0].resv, u->br_tail, __ATOMIC_RELEASE);
}

/* Arm (again) the multishot receive of slot i. */
static buffet_result buffet__ur_arm(buffet_net_uring *u, uint32_t i) {
    struct io_uring_sqe *e = buffet__ur_sqe(u);
    buffet__net_urecv *r = &u->recvs[i];
    if (!e) return BUFFET_ERR_EXHAUSTED;
    r->gen++;
    e->opcode = IORING_OP_RECV;
    e->fd = r->fd;
    e->ioprio = IORING_RECV_MULTISHOT;
    e->flags = IOSQE_BUFFER_SELECT;
    e->buf_group = u->group;
    if (r->dgram) {
        memset(&r->msg, 0, sizeof r->msg);
        r->msg.msg_namelen = sizeof(struct sockaddr_in6);
        e->opcode = IORING_OP_RECVMSG;
        e->addr = (uint64_t)(uintptr_t)&r->msg;
        e->len = 1;
        e->msg_flags = MSG_TRUNC;   /* the datagram's real length, not the part that fitted */
    }
    e->user_data = (uint64_t)r->gen << 32 | (i + 1);
    r->state = BUFFET__UR_ARMED;
    return buffet__ur_submit(u);
}

/* A buffer the kernel handed back without data for anyone: to the pool. */
static void buffet__ur_drop(buffet_net_uring *u, buffet_pkt *p) {
    buffet_pkt_free_bulk_raw(u->cache, &p, 1);
}

/* ---- sends ---- */

/* The errno that ended a send, as its event's result. */
static buffet_result buffet__us_result(int e) {
    if (e == ENOTCONN) return BUFFET_ERR_CLOSED;   /* as the receive says it */
    if (e == EOPNOTSUPP) return BUFFET_ERR_UNSUPPORTED;
    return buffet__net_zc_errno(e);   /* ENOBUFS, EMSGSIZE; then as every other send */
}

/* Fill e with send j's next request: the bytes the kernel has not taken, up to
   BUFFET_NET_IOV_MAX slices. The msghdr and iovecs stay in the slot until the result (a kernel
   reads them when it takes the entry, but no promise is needed that it does). */
static void buffet__us_prep(buffet_net_uring *u, uint32_t j, struct io_uring_sqe *e) {
    buffet__net_usend *s = &u->sends[j];
    size_t n = buffet_chain_iovec(&s->ch, s->done - s->consumed, SIZE_MAX, s->iov, s->niov);
    memset(&s->msg, 0, sizeof s->msg);
    s->msg.msg_iov = n ? s->iov : NULL;
    s->msg.msg_iovlen = n;
    s->gen++;
    e->opcode = (uint8_t)(s->zc ? (unsigned)BUFFET__UR_OP_SENDMSG_ZC : (unsigned)IORING_OP_SENDMSG);
    e->fd = s->fd;
    e->addr = (uint64_t)(uintptr_t)&s->msg;
    e->len = 1;
    e->msg_flags = MSG_NOSIGNAL;
    e->user_data = (uint64_t)s->gen << 32 | BUFFET__UR_SEND_BIT | j;
    if (s->zc) s->held = true;
    s->state = BUFFET__US_INFLIGHT;
    u->st.send_requests++;
}

/* Submit send j's next request now, or at the next wait when the queue is full. */
static void buffet__us_submit(buffet_net_uring *u, uint32_t j) {
    struct io_uring_sqe *e = buffet__ur_sqe(u);
    if (!e) {
        u->sends[j].state = BUFFET__US_QUEUED;
        return;
    }
    buffet__us_prep(u, j, e);
    (void)buffet__ur_submit(u);   /* an enter refused now leaves the entry queued: the next one takes it */
}

/* Send j has no request left: the oldest send waiting behind it on its stream goes now. */
static void buffet__us_ended(buffet_net_uring *u, uint32_t j) {
    buffet__net_usend *s = &u->sends[j];
    uint32_t k, next = BUFFET_NET_URING_MAX_SENDS;
    s->state = BUFFET__US_ENDED;
    if (s->dgram || u->closing) return;
    for (k = 0; k < BUFFET_NET_URING_MAX_SENDS; k++) {
        const buffet__net_usend *o = &u->sends[k];
        if (o->state == BUFFET__US_BEHIND && o->fd == s->fd &&
            (next == BUFFET_NET_URING_MAX_SENDS || o->seq < u->sends[next].seq))
            next = k;
    }
    if (next < BUFFET_NET_URING_MAX_SENDS) buffet__us_submit(u, next);
}

/* Send j is over once it has no request left and no notification owed: then (and only then)
   its slices are released and its event made. Returns 1 when it made the event. */
static int buffet__us_release(buffet_net_uring *u, uint32_t j, buffet_net_uring_event *ev) {
    buffet_allocator heap = buffet_heap();
    buffet__net_usend *s = &u->sends[j];
    if (s->state != BUFFET__US_ENDED || s->notifs > 0) return 0;
    memset(ev, 0, sizeof *ev);
    ev->tag = s->tag;
    ev->fd = s->fd;
    ev->op = BUFFET_NET_URING_SEND;
    ev->result = s->res;
    ev->error = s->error;
    ev->bytes = s->done;
    buffet_chain_deinit(&s->ch);
    BUFFET_DELETE_ARRAY(heap, struct iovec, s->iov, s->niov);
    s->iov = NULL;
    s->state = BUFFET__US_FREE;
    u->st.sends--;
    u->st.sends_done++;
    return 1;
}

/* A completion of a send's request: its result, or (zerocopy) its notification that the kernel
   let go of the pages. Returns 1 when the send is over and made its event at *ev. */
static int buffet__us_complete(buffet_net_uring *u, const struct io_uring_cqe *cqe, buffet_net_uring_event *ev) {
    uint32_t j = (uint32_t)cqe->user_data & ~BUFFET__UR_SEND_BIT;
    buffet__net_usend *s;
    bool more = false;
    int res = cqe->res;
    if (j >= BUFFET_NET_URING_MAX_SENDS || u->sends[j].state == BUFFET__US_FREE) return 0;
    s = &u->sends[j];
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        s->notifs--;
        u->st.zc_notifications++;
        return buffet__us_release(u, j, ev);
    }
    if ((uint32_t)(cqe->user_data >> 32) != s->gen || s->state != BUFFET__US_INFLIGHT) return 0;
    /* F_MORE: the kernel took the request's pages and will say when it lets go of them */
    if (cqe->flags & IORING_CQE_F_MORE) s->notifs++;
    if (res >= 0) {
        size_t k = (size_t)res < s->total - s->done ? (size_t)res : s->total - s->done;
        s->done += k;
        u->st.bytes_sent += k;
        if (!s->held) {   /* copied by the kernel: those slices can go now */
            buffet_chain_consume(&s->ch, k);
            s->consumed += k;
        }
        if (s->dgram || s->done == s->total) {
            s->res = BUFFET_OK;   /* a datagram is one request whatever it says */
        } else if (res == 0) {    /* bytes offered, none taken, no error: never ends otherwise */
            s->error = EIO;
            s->res = BUFFET_ERR_SYSTEM;
        } else {
            more = true;          /* cut short, or the next BUFFET_NET_IOV_MAX slices */
        }
    } else if (res == -EINTR || res == -EAGAIN) {
        more = true;
    } else if (s->zc && s->done == 0 && (res == -EOPNOTSUPP || res == -EINVAL)) {
        /* zerocopy refused before a byte went (a UNIX socket, a kernel before 6.1): plain */
        s->zc = false;
        u->st.zc_fallbacks++;
        more = true;
    } else {
        s->error = -res;
        s->res = buffet__us_result(-res);
    }
    if (more && !u->closing) {
        buffet__us_submit(u, j);
        return 0;
    }
    if (more) {   /* destroy: what is left is not sent */
        s->error = ECANCELED;
        s->res = BUFFET_ERR_SYSTEM;
    }
    buffet__us_ended(u, j);
    return buffet__us_release(u, j, ev);
}

/* Take one completion. Returns 1 when it made an event at *ev. */
static int buffet__ur_complete(buffet_net_uring *u, const struct io_uring_cqe *cqe, buffet_net_uring_event *ev) {
    uint64_t data = cqe->user_data;
    uint32_t i = (uint32_t)data - 1;
    buffet__net_urecv *r;
    buffet_pkt *p = NULL;
    if ((uint32_t)data & BUFFET__UR_SEND_BIT) return buffet__us_complete(u, cqe, ev);
    if (data == BUFFET__UR_CANCEL_DATA || i >= BUFFET_NET_URING_MAX_RECVS) return 0;   /* a cancel's own result */
    r = &u->recvs[i];
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (id < u->nbufs && u->slots[id]) {
            p = u->slots[id];
            u->slots[id] = NULL;
            u->free_ids[u->nfree++] = (uint16_t)id;
            u->st.in_ring--;
        }
    }
    if ((uint32_t)(data >> 32) != r->gen || r->state == BUFFET__UR_FREE) {   /* no arming of ours */
        if (p) buffet__ur_drop(u, p);
        return 0;
    }
    memset(ev, 0, sizeof *ev);
    ev->tag = r->tag;
    ev->fd = r->fd;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        /* the kernel ended this request: after a cancel (quietly); for want of buffers, or by
           the multishot's own limits with data still coming (armed again by the next wait);
           at the end of the stream or on an error (an event, and the receive is over) */
        if (r->state == BUFFET__UR_CANCELLING) {
            r->state = BUFFET__UR_FREE;
            u->cancelling--;
        } else if (cqe->res == -ENOBUFS || cqe->res > 0) {
            r->state = BUFFET__UR_STARVED;
            if (cqe->res < 0) u->st.starved++;
        } else {
            r->state = BUFFET__UR_FREE;
            u->st.receives--;
            if (p) buffet__ur_drop(u, p);
            ev->result = cqe->res == 0 ? BUFFET_ERR_CLOSED : BUFFET_ERR_SYSTEM;
            ev->error = cqe->res < 0 ? -cqe->res : 0;
            return 1;
        }
    }
    if (!p) return 0;
    if (cqe->res <= 0 || (uint32_t)cqe->res > p->buf_len - u->cache->headroom ||
        (r->dgram && (size_t)cqe->res < BUFFET__UR_DGRAM_HDR)) {   /* no data, or not where we said */
        buffet__ur_drop(u, p);
        return 0;
    }
    /* the kernel wrote res bytes where the ring said: the buffer becomes a packet holding them
       (data taken off the socket before a cancel comes out too: it is nowhere else) */
    {
        unsigned char *at = buffet_pkt_raw_buf(u->cache, p) + u->cache->headroom;
        size_t len = (size_t)cqe->res;
        ev->result = BUFFET_OK;
        BUFFET__VG_DEFINED(at, len);
        buffet_pkt_init_raw(u->cache, p);
        if (r->dgram) {
            /* header, name, then the datagram: the packet starts at the datagram, its sender and
               real length go into the metadata when the pool has room for it */
            struct io_uring_recvmsg_out out;
            buffet_net_meta *m = buffet_net_meta_of(p);
            memcpy(&out, at, sizeof out);
            len -= BUFFET__UR_DGRAM_HDR;
            p->data_off = (uint16_t)(p->data_off + BUFFET__UR_DGRAM_HDR);
            if (m) {
                memset(m, 0, sizeof *m);
                memcpy(&m->peer, at + sizeof out, out.namelen < sizeof m->peer ? out.namelen : sizeof m->peer);
                m->wire_len = out.payloadlen;
            }
            if ((out.flags & MSG_TRUNC) || out.payloadlen > len) {   /* never cut silently */
                if (m) m->flags |= BUFFET_NET_META_TRUNC;
                ev->result = BUFFET_ERR_TRUNCATED;
            }
        }
        if (len) (void)buffet_pkt_append(p, len);
        ev->bytes = len;
        u->st.packets++;
        u->st.bytes += len;
    }
    ev->pkt = p;
    return 1;
}

/* Completions into ev[0..max) (or only consumed, with ev NULL). Returns the events made. */
static size_t buffet__ur_reap(buffet_net_uring *u, buffet_net_uring_event *ev, size_t max) {
    size_t n = 0;
    unsigned head = *u->cq_head;
    while (n < max || !ev) {
        buffet_net_uring_event scratch;
        if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE)) break;
        n += (size_t)buffet__ur_complete(u, &u->cqes[head & u->cq_mask], ev ? &ev[n] : &scratch);
        if (!ev && n) {   /* draining at destroy: the caller wants no packet */
            if (scratch.pkt) buffet_pkt_free(u->cache, scratch.pkt);
            n = 0;
        }
        __atomic_store_n(u->cq_head, ++head, __ATOMIC_RELEASE);
    }
    return n;
}

/* Wait for a completion up to timeout_ms (-1: no limit); it also runs the kernel's deferred work. */
static void buffet__ur_await(buffet_net_uring *u, int timeout_ms) {
    if (timeout_ms < 0) {
        if (buffet__ur_enter(u->fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0 && errno != EINTR) return;
    } else {
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg;
        memset(&arg, 0, sizeof arg);
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        arg.ts = (uint64_t)(uintptr_t)&ts;
        (void)buffet__ur_enter(u->fd, 0, timeout_ms ? 1 : 0, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                               sizeof arg);
    }
}

/* Unmap and close what create made (any part of it). */
static void buffet__ur_release(buffet_net_uring *u) {
    buffet_allocator heap = buffet_heap();
    if (u->fd >= 0) close(u->fd);
    if (u->br) munmap(u->br, u->br_len);
    if (u->sqes) munmap(u->sqes, u->sqes_len);
    if (u->cq_map && u->cq_map != u->sq_map) munmap(u->cq_map, u->cq_map_len);
    if (u->sq_map) munmap(u->sq_map, u->sq_map_len);
    if (u->slots) BUFFET_DELETE_ARRAY(heap, buffet_pkt *, u->slots, u->nbufs);
    if (u->free_ids) BUFFET_DELETE_ARRAY(heap, uint16_t, u->free_ids, u->nbufs);
    BUFFET_DELETE(heap, buffet_net_uring, u);
}

static buffet_result buffet__ur_sys(int e) {
    /* ENOSYS: no io_uring; EPERM: kernel.io_uring_disabled, or a seccomp filter */
    return e == ENOSYS || e == EPERM ? BUFFET_ERR_UNSUPPORTED : e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
}

BUFFET_API buffet_result buffet_net_uring_create(buffet_net_uring **out, const buffet_net_uring_desc *desc) {
    buffet_allocator heap = buffet_heap();
    struct io_uring_params prm;
    struct io_uring_buf_reg reg;
    buffet_net_uring *u;
    uint32_t nbufs, entries, i;
    long page = sysconf(_SC_PAGESIZE);
    buffet_result r;
    if (out) *out = NULL;
    if (!out || !desc || !desc->cache || desc->cls >= desc->cache->nclasses) return BUFFET_ERR_INVALID;
    nbufs = desc->buffers ? desc->buffers : 64;
    entries = desc->entries ? desc->entries : 64;
    if ((nbufs & (nbufs - 1)) || nbufs > 32768 || (entries & (entries - 1)) || entries > 4096) return BUFFET_ERR_INVALID;
    u = BUFFET_NEW(heap, buffet_net_uring);
    if (!u) return BUFFET_ERR_NOMEM;
    memset(u, 0, sizeof *u);
    u->cache = desc->cache;
    u->cls = desc->cls;
    u->group = desc->group;
    u->nbufs = nbufs;
    u->fd = -1;
    u->slots = BUFFET_NEW_ARRAY(heap, buffet_pkt *, nbufs);
    u->free_ids = BUFFET_NEW_ARRAY(heap, uint16_t, nbufs);
    if (!u->slots || !u->free_ids) {
        buffet__ur_release(u);
        return BUFFET_ERR_NOMEM;
    }
    for (i = 0; i < nbufs; i++) {
        u->slots[i] = NULL;
        u->free_ids[i] = (uint16_t)(nbufs - 1 - i);
    }
    u->nfree = nbufs;
    memset(&prm, 0, sizeof prm);
    /* room for a completion per buffer and per receive's end, so that none waits in the
       kernel's overflow list */
    prm.flags = IORING_SETUP_CQSIZE;
    /* and per send: its result, its notification and a cancel at destroy */
    prm.cq_entries = nbufs + 2 * BUFFET_NET_URING_MAX_RECVS + 3 * BUFFET_NET_URING_MAX_SENDS;
    if (prm.cq_entries < 2 * entries) prm.cq_entries = 2 * entries;
    u->fd = (int)syscall(__NR_io_uring_setup, entries, &prm);
    if (u->fd < 0) {
        r = buffet__ur_sys(errno);
        buffet__ur_release(u);
        return r;
    }
    u->sq_map_len = prm.sq_off.array + prm.sq_entries * sizeof(unsigned);
    u->cq_map_len = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
    if (prm.features & IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_map_len > u->sq_map_len) u->sq_map_len = u->cq_map_len;
        u->cq_map_len = u->sq_map_len;
    }
    u->sq_map = mmap(NULL, u->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED) u->sq_map = NULL;
    u->cq_map = !u->sq_map ? NULL
                : (prm.features & IORING_FEAT_SINGLE_MMAP)
                    ? u->sq_map
                    : mmap(NULL, u->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_CQ_RING);
    if (u->cq_map == MAP_FAILED) u->cq_map = NULL;
    u->sqes_len = prm.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = (struct io_uring_sqe *)mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                                          IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED) u->sqes = NULL;
    /* the buffer ring: page-aligned memory of nbufs entries that the kernel reads */
    u->br_len = ((size_t)nbufs * sizeof(struct io_uring_buf) + (size_t)page - 1) & ~((size_t)page - 1);
    u->br = (struct io_uring_buf *)mmap(NULL, u->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->br == MAP_FAILED) u->br = NULL;
    if (!u->sq_map || !u->cq_map || !u->sqes || !u->br) {
        r = buffet__ur_sys(errno);
        buffet__ur_release(u);
        return r;
    }
    u->sq_head = (unsigned *)((char *)u->sq_map + prm.sq_off.head);
    u->sq_tail = (unsigned *)((char *)u->sq_map + prm.sq_off.tail);
    u->sq_array = (unsigned *)((char *)u->sq_map + prm.sq_off.array);
    u->sq_mask = *(unsigned *)((char *)u->sq_map + prm.sq_off.ring_mask);
    u->sq_entries = prm.sq_entries;
    u->sq_local = *u->sq_tail;
    u->cq_head = (unsigned *)((char *)u->cq_map + prm.cq_off.head);
    u->cq_tail = (unsigned *)((char *)u->cq_map + prm.cq_off.tail);
    u->cq_mask = *(unsigned *)((char *)u->cq_map + prm.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)((char *)u->cq_map + prm.cq_off.cqes);
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = nbufs;
    reg.bgid = desc->group;
    if (syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_PBUF_RING, &reg, 1) != 0) {
        /* EINVAL: a kernel before provided-buffer rings (5.19) */
        r = errno == EINVAL ? BUFFET_ERR_UNSUPPORTED : buffet__ur_sys(errno);
        buffet__ur_release(u);
        return r;
    }
    buffet__ur_refill(u, true);
    if (u->nfree) {   /* the pool could not fill the ring: give back what it did give */
        buffet_net_uring_destroy(u);
        return BUFFET_ERR_EXHAUSTED;
    }
    *out = u;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_uring_recv(buffet_net_uring *u, int fd, uint64_t tag) {
    uint32_t i, slot = BUFFET_NET_URING_MAX_RECVS;
    int type = 0;
    socklen_t tl = sizeof type;
    if (!u || fd < 0) return BUFFET_ERR_INVALID;
    for (i = 0; i < BUFFET_NET_URING_MAX_RECVS; i++) {
        buffet__net_urecv *r = &u->recvs[i];
        if ((r->state == BUFFET__UR_ARMED || r->state == BUFFET__UR_STARVED) && r->fd == fd) return BUFFET_ERR_INVALID;
        if (r->state == BUFFET__UR_FREE && slot == BUFFET_NET_URING_MAX_RECVS) slot = i;
    }
    if (slot == BUFFET_NET_URING_MAX_RECVS) return BUFFET_ERR_EXHAUSTED;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0) return buffet__net_errno_result(errno);   /* closed, no socket */
    u->recvs[slot].fd = fd;
    u->recvs[slot].tag = tag;
    u->recvs[slot].dgram = type == SOCK_DGRAM;
    if (buffet__ur_arm(u, slot) != BUFFET_OK) {
        u->recvs[slot].state = BUFFET__UR_FREE;
        return BUFFET_ERR_SYSTEM;
    }
    u->st.receives++;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_uring_send(buffet_net_uring *u, int fd, buffet_chain *ch, uint64_t tag,
                                               unsigned flags) {
    buffet_allocator heap = buffet_heap(), keep;
    buffet__net_usend *s;
    struct io_uring_sqe *e = NULL;
    uint32_t i, j = BUFFET_NET_URING_MAX_SENDS;
    size_t n, niov;
    int type = 0;
    socklen_t tl = sizeof type;
    bool behind = false;
    if (!u || !ch || fd < 0 || (flags & ~(unsigned)BUFFET_NET_URING_ZEROCOPY)) return BUFFET_ERR_INVALID;
    n = buffet_chain_count(ch);
    for (i = 0; i < n; i++)
        if (!buffet_chain_at(ch, i)->buf->data) return BUFFET_ERR_INVALID;   /* device memory */
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0) return buffet__net_errno_result(errno);   /* closed, no socket */
    if (type != SOCK_STREAM && n > BUFFET_NET_IOV_MAX) return BUFFET_ERR_TOO_LARGE;   /* one datagram, one request */
    for (i = 0; i < BUFFET_NET_URING_MAX_SENDS; i++) {
        const buffet__net_usend *o = &u->sends[i];
        if (o->state == BUFFET__US_FREE) {
            if (j == BUFFET_NET_URING_MAX_SENDS) j = i;
        } else if (type == SOCK_STREAM && o->fd == fd && o->state != BUFFET__US_ENDED) {
            behind = true;   /* its bytes would interleave with ours: it goes first */
        }
    }
    if (j == BUFFET_NET_URING_MAX_SENDS) return BUFFET_ERR_EXHAUSTED;
    s = &u->sends[j];
    niov = n == 0 ? 1 : n < BUFFET_NET_IOV_MAX ? n : BUFFET_NET_IOV_MAX;
    s->iov = BUFFET_NEW_ARRAY(heap, struct iovec, niov);
    if (!s->iov) return BUFFET_ERR_NOMEM;
    if (!behind && (e = buffet__ur_sqe(u)) == NULL) {   /* the last thing that can fail */
        BUFFET_DELETE_ARRAY(heap, struct iovec, s->iov, niov);
        s->iov = NULL;
        return BUFFET_ERR_EXHAUSTED;
    }
    /* the chain moves into the request (array, slices and pin as they are); the caller's starts
       again empty, with its allocator */
    s->ch = *ch;
    keep = ch->allocator;
    memset(ch, 0, sizeof *ch);
    ch->allocator = keep;
    s->niov = niov;
    s->total = buffet_chain_len(&s->ch);
    s->done = s->consumed = 0;
    s->tag = tag;
    s->seq = u->send_seq++;
    s->fd = fd;
    s->error = 0;
    s->notifs = 0;
    s->res = BUFFET_OK;
    s->zc = (flags & BUFFET_NET_URING_ZEROCOPY) != 0;
    s->held = false;
    s->dgram = type != SOCK_STREAM;
    u->st.sends++;
    if (behind) {
        s->state = BUFFET__US_BEHIND;
        return BUFFET_OK;
    }
    buffet__us_prep(u, j, e);
    (void)buffet__ur_submit(u);   /* an enter refused now leaves the entry queued: the next one takes it */
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_uring_cancel(buffet_net_uring *u, int fd) {
    uint32_t i;
    if (!u || fd < 0) return BUFFET_ERR_INVALID;
    for (i = 0; i < BUFFET_NET_URING_MAX_RECVS; i++) {
        buffet__net_urecv *r = &u->recvs[i];
        if (r->fd != fd || (r->state != BUFFET__UR_ARMED && r->state != BUFFET__UR_STARVED)) continue;
        if (r->state == BUFFET__UR_STARVED) {   /* nothing in the kernel to cancel */
            r->state = BUFFET__UR_FREE;
            u->st.receives--;
            return BUFFET_OK;
        }
        {
            struct io_uring_sqe *e = buffet__ur_sqe(u);
            if (!e) return BUFFET_ERR_EXHAUSTED;
            e->opcode = IORING_OP_ASYNC_CANCEL;
            e->addr = (uint64_t)r->gen << 32 | (i + 1);
            e->user_data = BUFFET__UR_CANCEL_DATA;
            r->state = BUFFET__UR_CANCELLING;
            u->st.receives--;
            u->cancelling++;
            return buffet__ur_submit(u);
        }
    }
    return BUFFET_ERR_INVALID;
}

/* Refill the ring, then arm again the receives it starved, while it has buffers. Returns whether
   a receive still waits for some (the pool had none). */
static bool buffet__ur_prime(buffet_net_uring *u) {
    uint32_t i;
    bool waiting = false;
    buffet__ur_refill(u, false);
    for (i = 0; i < BUFFET_NET_URING_MAX_RECVS; i++) {
        if (u->recvs[i].state != BUFFET__UR_STARVED) continue;
        if (u->st.in_ring && buffet__ur_arm(u, i) == BUFFET_OK) u->st.rearmed++;
        else waiting = true;
    }
    /* sends whose next request found the submission queue full, and entries an enter refused */
    for (i = 0; i < BUFFET_NET_URING_MAX_SENDS; i++) {
        if (u->sends[i].state != BUFFET__US_QUEUED) continue;
        buffet__us_submit(u, i);
        if (u->sends[i].state == BUFFET__US_QUEUED) waiting = true;
    }
    if (u->unsubmitted) (void)buffet__ur_submit(u);
    return waiting;
}

BUFFET_API size_t buffet_net_uring_wait(buffet_net_uring *u, buffet_net_uring_event *ev, size_t max, int timeout_ms) {
    size_t n;
    if (!u || !ev || max == 0) return 0;
    (void)buffet__ur_prime(u);
    n = buffet__ur_reap(u, ev, max);
    if (n == 0 && timeout_ms != 0) {
        /* a receive this reap found starved is armed before the wait, not after it (else the
           wait could be for data that no armed receive takes); one still short of buffers has
           the pool looked at again within 10 ms */
        if (buffet__ur_prime(u) && (timeout_ms < 0 || timeout_ms > 10)) timeout_ms = 10;
        buffet__ur_await(u, timeout_ms);
        n = buffet__ur_reap(u, ev, max);
    }
    return n;
}

BUFFET_API void buffet_net_uring_destroy(buffet_net_uring *u) {
    struct io_uring_buf_reg reg;
    uint32_t i, tries;
    if (!u) return;
    for (i = 0; i < BUFFET_NET_URING_MAX_RECVS; i++)
        if (u->recvs[i].state == BUFFET__UR_ARMED || u->recvs[i].state == BUFFET__UR_STARVED)
            (void)buffet_net_uring_cancel(u, u->recvs[i].fd);
    /* sends: those not in the kernel end here; those in it are cancelled, and end at their result
       (and, zerocopy, their notifications), in the reaps below */
    u->closing = true;
    for (i = 0; i < BUFFET_NET_URING_MAX_SENDS; i++) {
        buffet__net_usend *s = &u->sends[i];
        if (s->state == BUFFET__US_BEHIND || s->state == BUFFET__US_QUEUED) {
            buffet_net_uring_event scratch;
            s->error = ECANCELED;
            s->res = BUFFET_ERR_SYSTEM;
            buffet__us_ended(u, i);
            (void)buffet__us_release(u, i, &scratch);
        } else if (s->state == BUFFET__US_INFLIGHT) {
            struct io_uring_sqe *e = buffet__ur_sqe(u);
            if (!e) continue;   /* not cancelled: waited for all the same */
            e->opcode = IORING_OP_ASYNC_CANCEL;
            e->addr = (uint64_t)s->gen << 32 | BUFFET__UR_SEND_BIT | i;
            e->user_data = BUFFET__UR_CANCEL_DATA;
        }
    }
    if (u->unsubmitted) (void)buffet__ur_submit(u);
    /* every request's last completion comes before a buffer may go back: until then the kernel
       may write into it, or read from it (bounded: a kernel that never answers leaves them lent,
       not reused, and a send's slices referenced) */
    for (tries = 0; (u->cancelling || u->st.sends) && tries < 100; tries++) {
        buffet__ur_reap(u, NULL, 0);
        if (u->cancelling || u->st.sends) buffet__ur_await(u, 100);
    }
    buffet__ur_reap(u, NULL, 0);
    for (i = 0; i < BUFFET_NET_URING_MAX_RECVS; i++)   /* a cancel that could not be submitted */
        if (u->recvs[i].state == BUFFET__UR_ARMED) u->cancelling++;
    memset(&reg, 0, sizeof reg);
    reg.bgid = u->group;
    if (u->cancelling == 0 && syscall(__NR_io_uring_register, u->fd, IORING_UNREGISTER_PBUF_RING, &reg, 1) == 0) {
        for (i = 0; i < u->nbufs; i++)
            if (u->slots[i]) buffet__ur_drop(u, u->slots[i]);
    }
    buffet__ur_release(u);
}

BUFFET_API buffet_net_uring_stats buffet_net_uring_get_stats(const buffet_net_uring *u) {
    buffet_net_uring_stats s;
    if (u) return u->st;
    memset(&s, 0, sizeof s);
    return s;
}
#endif /* BUFFET_NET_URING */

/* >>afpacket */
#if BUFFET_NET_AFPACKET
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

/* Where a transmit frame's bytes start: after its header (TPACKET_ALIGN(sizeof tpacket3_hdr)). */
#define BUFFET__AFP_TX_DATA 48u
/* A received frame becomes an external packet over [data - 4, data + len + tail): 4 bytes to put
   a VLAN tag back, and after the data the shared count buffet_pkt_attach_external keeps there
   (32 bytes, 8-aligned). That tail lies in the next frame's header, read before it is written. */
#define BUFFET__AFP_HEAD 4u
#define BUFFET__AFP_TAIL 40u

struct buffet_net_afp {
    buffet_pkt_cache *cache;
    int fd;
    unsigned flags;
    uint32_t ifindex, mtu;
    bool gone;                     /* the interface was deleted: every call says so */
    unsigned char *map;            /* the receive ring's blocks, then the transmit ring's frames */
    size_t map_len;
    uint32_t block_size, nblocks, rd;   /* rd: the next block to read */
    uint8_t *busy;                 /* atomic, by block: taken by the reader and not yet returned */
    uint32_t *block_refs;          /* atomic, by block: packets of it alive, +1 while being read */
    uint32_t refs;                 /* atomic: 1 for the owner, 1 per busy block */
    /* the block being read: frames left, the next one, and its header (saved before the tail of
       the frame before it was written over it) */
    int64_t cur;
    uint32_t left;
    unsigned char *fp;
    struct tpacket3_hdr hdr;
    unsigned char *tx;
    uint32_t tx_frame_size, tx_frames, tx_head;
    buffet_net_afp_stats st;
};

static void buffet__afp_release(buffet_net_afp *a) {
    buffet_allocator heap = buffet_heap();
    if (a->fd >= 0) close(a->fd);
    if (a->map) munmap(a->map, a->map_len);
    if (a->busy) BUFFET_DELETE_ARRAY(heap, uint8_t, a->busy, a->nblocks);
    if (a->block_refs) BUFFET_DELETE_ARRAY(heap, uint32_t, a->block_refs, a->nblocks);
    BUFFET_DELETE(heap, buffet_net_afp, a);
}

static void buffet__afp_unref(buffet_net_afp *a) {
    if (BUFFET__FETCH_SUB(&a->refs, 1u, BUFFET__ACQ_REL) == 1) {
        a->fd = -1;   /* closed by destroy */
        buffet__afp_release(a);
    }
}

/* Drop one reference on block k; the last gives the block back to the kernel, then to the
   reader (busy cleared after the status, so that the reader never sees a returned block's old
   TP_STATUS_USER as new frames). */
static void buffet__afp_put_block(buffet_net_afp *a, uint32_t k) {
    struct tpacket_block_desc *bd = (struct tpacket_block_desc *)(a->map + (size_t)k * a->block_size);
    if (BUFFET__FETCH_SUB(&a->block_refs[k], 1u, BUFFET__ACQ_REL) != 1) return;
    BUFFET__STORE(&bd->hdr.bh1.block_status, (uint32_t)TP_STATUS_KERNEL, BUFFET__RELEASE);
    BUFFET__STORE(&a->busy[k], (uint8_t)0, BUFFET__RELEASE);
    buffet__afp_unref(a);
}

/* The last packet over a frame was freed (any thread). */
static void buffet__afp_frame_free(void *opaque, void *mem) {
    buffet_net_afp *a = (buffet_net_afp *)opaque;
    buffet__afp_put_block(a, (uint32_t)((size_t)((unsigned char *)mem - a->map) / a->block_size));
}

/* The interface's name into ifr, asked in the socket's network namespace (if_indextoname asks
   in the calling thread's). false: no interface has the index now. */
static bool buffet__afp_ifname(const buffet_net_afp *a, struct ifreq *ifr) {
    memset(ifr, 0, sizeof *ifr);
    ifr->ifr_ifindex = (int)a->ifindex;
    return ioctl(a->fd, SIOCGIFNAME, ifr) == 0;
}

/* The interface's MTU (0 when it cannot be read). */
static uint32_t buffet__afp_mtu(const buffet_net_afp *a) {
    struct ifreq ifr;
    if (!buffet__afp_ifname(a, &ifr) || ioctl(a->fd, SIOCGIFMTU, &ifr) != 0) return 0;
    return (uint32_t)ifr.ifr_mtu;
}

static bool buffet__afp_pow2(uint32_t v, uint32_t lo, uint32_t hi) { return v >= lo && v <= hi && !(v & (v - 1)); }

BUFFET_API buffet_result buffet_net_afp_create(buffet_net_afp **out, const buffet_net_afp_desc *desc) {
    buffet_allocator heap = buffet_heap();
    struct tpacket_req3 rx, tx;
    struct sockaddr_ll sll;
    buffet_net_afp *a;
    uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE), bs, nb, tov, tfs, tfn, tbs, i;
    int v = TPACKET_V3, one = 1, e;
    if (out) *out = NULL;
    if (!out || !desc || !desc->cache || !desc->ifname) return BUFFET_ERR_INVALID;
    bs = desc->block_size ? desc->block_size : 65536;
    nb = desc->blocks ? desc->blocks : 64;
    tov = desc->block_timeout_ms ? desc->block_timeout_ms : 1;
    tfs = desc->tx_frame_size ? desc->tx_frame_size : 2048;
    tfn = desc->tx_frames ? desc->tx_frames : 256;
    if (!buffet__afp_pow2(bs, page, 4u << 20) || nb < 2 || nb > 65536 || !buffet__afp_pow2(tfs, 128, 65536) ||
        !buffet__afp_pow2(tfn, 1, 65536) || tov > 60000)
        return BUFFET_ERR_INVALID;
    i = if_nametoindex(desc->ifname);
    if (i == 0) return BUFFET_ERR_INVALID;
    a = BUFFET_NEW(heap, buffet_net_afp);
    if (!a) return BUFFET_ERR_NOMEM;
    memset(a, 0, sizeof *a);
    a->cache = desc->cache;
    a->flags = desc->flags;
    a->ifindex = i;
    a->block_size = bs;
    a->nblocks = nb;
    a->cur = -1;
    a->refs = 1;
    a->busy = BUFFET_NEW_ARRAY(heap, uint8_t, nb);
    a->block_refs = BUFFET_NEW_ARRAY(heap, uint32_t, nb);
    /* protocol 0: no frame comes in before the bind names the interface (with ETH_P_ALL here,
       frames of every interface would land in the ring first) */
    a->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (!a->busy || !a->block_refs || a->fd < 0) {
        e = a->fd < 0 ? errno : ENOMEM;
        buffet__afp_release(a);
        return e == EPERM || e == EACCES || e == EAFNOSUPPORT ? BUFFET_ERR_UNSUPPORTED
               : e == ENOMEM                                  ? BUFFET_ERR_NOMEM
                                                              : BUFFET_ERR_SYSTEM;
    }
    memset(a->busy, 0, nb);
    memset(a->block_refs, 0, (size_t)nb * sizeof *a->block_refs);
    memset(&rx, 0, sizeof rx);
    rx.tp_block_size = bs;
    rx.tp_block_nr = nb;
    /* the largest frame the kernel writes whole; a frame's packet holds 64 KiB at most */
    rx.tp_frame_size = bs < 65536 ? bs : 65536;
    rx.tp_frame_nr = (bs / rx.tp_frame_size) * nb;
    rx.tp_retire_blk_tov = tov;
    memset(&tx, 0, sizeof tx);
    tbs = tfs > page ? tfs : page;
    tfn = tfn > tbs / tfs ? tfn : tbs / tfs;   /* whole blocks */
    tx.tp_block_size = tbs;
    tx.tp_frame_size = tfs;
    tx.tp_block_nr = tfn / (tbs / tfs);
    tx.tp_frame_nr = tfn;
    if (setsockopt(a->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) != 0) {
        buffet__afp_release(a);
        return BUFFET_ERR_UNSUPPORTED;
    }
    /* our own sends are not frames received (Linux 4.20; before, they are skipped by type) */
    (void)setsockopt(a->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    /* a frame the kernel refuses to send is skipped, not left blocking the ring's head */
    (void)setsockopt(a->fd, SOL_PACKET, PACKET_LOSS, &one, sizeof one);
    if (setsockopt(a->fd, SOL_PACKET, PACKET_RX_RING, &rx, sizeof rx) != 0 ||
        (!(a->flags & BUFFET_NET_AFP_NO_TX) && setsockopt(a->fd, SOL_PACKET, PACKET_TX_RING, &tx, sizeof tx) != 0)) {
        e = errno;
        buffet__afp_release(a);
        return e == ENOMEM ? BUFFET_ERR_NOMEM : e == EINVAL ? BUFFET_ERR_UNSUPPORTED : BUFFET_ERR_SYSTEM;
    }
    a->map_len = (size_t)bs * nb + (a->flags & BUFFET_NET_AFP_NO_TX ? 0 : (size_t)tbs * tx.tp_block_nr);
    a->map = (unsigned char *)mmap(NULL, a->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd, 0);
    if (a->map == MAP_FAILED) {
        a->map = NULL;
        e = errno;
        buffet__afp_release(a);
        return e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
    }
    if (!(a->flags & BUFFET_NET_AFP_NO_TX)) {
        a->tx = a->map + (size_t)bs * nb;
        a->tx_frame_size = tfs;
        a->tx_frames = tfn;
    }
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)a->ifindex;
    if (bind(a->fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        e = errno;
        buffet__afp_release(a);
        return e == ENODEV ? BUFFET_ERR_INVALID : BUFFET_ERR_SYSTEM;
    }
    if (a->flags & BUFFET_NET_AFP_PROMISC) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof mr);
        mr.mr_ifindex = (int)a->ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(a->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) != 0) {
            buffet__afp_release(a);
            return BUFFET_ERR_SYSTEM;
        }
    }
    a->mtu = buffet__afp_mtu(a);
    *out = a;
    return BUFFET_OK;
}

BUFFET_API void buffet_net_afp_destroy(buffet_net_afp *a) {
    if (!a) return;
    if (a->cur >= 0) buffet__afp_put_block(a, (uint32_t)a->cur);   /* the frames not read are dropped */
    a->cur = -1;
    /* The mapping outlives the socket: its pages stay until munmap, which the last packet's
       free does when blocks are still held. */
    close(a->fd);
    a->fd = -1;
    buffet__afp_unref(a);
}

BUFFET_API int buffet_net_afp_fd(const buffet_net_afp *a) { return a ? a->fd : -1; }

/* Frame bytes [data, data + len) copied into a packet of the smallest class that holds them
   (cut to the largest class), or NULL (counted as lost). */
static buffet_pkt *buffet__afp_copy(buffet_net_afp *a, const unsigned char *data, size_t len) {
    buffet_pkt_cache *c = a->cache;
    int k = buffet_pkt_pool_class(c->pool, len);
    buffet_pkt *p = k >= 0 ? buffet_pkt_alloc(c, len) : buffet_pkt_alloc_class(c, c->nclasses - 1);
    void *d;
    if (!p) return NULL;
    if (len > buffet_pkt_tailroom(p)) len = buffet_pkt_tailroom(p);
    d = buffet_pkt_append(p, len);
    if (len) memcpy(d, data, len);
    a->st.rx_copied++;
    return p;
}

/* Frame h (at fp) as a packet, or NULL (lost, or a frame we sent: skipped). next: the next
   frame of the block, whose header the tail of this one's packet may cover. */
static buffet_pkt *buffet__afp_frame(buffet_net_afp *a, const struct tpacket3_hdr *h, unsigned char *fp,
                                     unsigned char *next) {
    const struct sockaddr_ll *sll = (const struct sockaddr_ll *)(fp + BUFFET__AFP_TX_DATA);
    unsigned char *data = fp + h->tp_mac, *end = a->map + ((size_t)(fp - a->map) / a->block_size + 1) * a->block_size;
    bool vlan = (h->tp_status & TP_STATUS_VLAN_VALID) != 0;
    size_t len = h->tp_snaplen, wire = h->tp_len;
    buffet_pkt *p = NULL;
    buffet_net_meta *m;
    if (sll->sll_pkttype == PACKET_OUTGOING) return NULL;
    if (vlan && len >= 12 && h->tp_mac >= BUFFET__AFP_HEAD + BUFFET__AFP_TX_DATA + sizeof *sll) {
        /* the tag back in its place after the two addresses, as it was on the wire */
        uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ? h->hv1.tp_vlan_tpid : (uint16_t)ETH_P_8021Q;
        uint16_t be[2];
        be[0] = htons(tpid);
        be[1] = htons(h->hv1.tp_vlan_tci);
        memmove(data - 4, data, 12);
        data -= 4;
        memcpy(data + 12, be, 4);
        len += 4;
        wire += 4;
    }
    if (!(a->flags & BUFFET_NET_AFP_COPY) && data + len + BUFFET__AFP_TAIL <= end &&
        (!next || data + len + BUFFET__AFP_TAIL <= next + sizeof *h)) {
        p = buffet_pkt_attach_external(a->cache, data - BUFFET__AFP_HEAD, BUFFET__AFP_HEAD + len + BUFFET__AFP_TAIL,
                                       buffet__afp_frame_free, a);
        if (p) {
            BUFFET__FETCH_ADD(&a->block_refs[a->cur], 1u, BUFFET__RELAXED);
            (void)buffet_pkt_append(p, BUFFET__AFP_HEAD + len);
            (void)buffet_pkt_adj(p, BUFFET__AFP_HEAD);
        }
    }
    if (!p) p = buffet__afp_copy(a, data, len);
    if (!p) {
        a->st.rx_lost++;
        return NULL;
    }
    if ((m = buffet_net_meta_of(p)) != NULL) {
        memset(m, 0, sizeof *m);
        m->ifindex = a->ifindex;
        m->wire_len = (uint32_t)wire;
        if (p->pkt_len < wire) m->flags = BUFFET_NET_META_TRUNC;
    }
    if (p->pkt_len < wire) a->st.rx_truncated++;
    a->st.rx_packets++;
    a->st.rx_bytes += p->pkt_len;
    return p;
}

/* Frames of ready blocks into pkts[0..max): how many. */
static size_t buffet__afp_take(buffet_net_afp *a, buffet_pkt **pkts, size_t max) {
    size_t n = 0;
    while (n < max) {
        unsigned char *fp, *next;
        struct tpacket3_hdr h;
        buffet_pkt *p;
        if (a->cur < 0) {
            uint32_t k = a->rd;
            struct tpacket_block_desc *bd = (struct tpacket_block_desc *)(a->map + (size_t)k * a->block_size);
            if (BUFFET__LOAD(&a->busy[k], BUFFET__ACQUIRE) ||
                !(BUFFET__LOAD(&bd->hdr.bh1.block_status, BUFFET__ACQUIRE) & TP_STATUS_USER))
                break;
            BUFFET__STORE(&a->busy[k], (uint8_t)1, BUFFET__RELAXED);
            BUFFET__STORE(&a->block_refs[k], 1u, BUFFET__RELAXED);   /* the reader's, until its last frame is read */
            BUFFET__FETCH_ADD(&a->refs, 1u, BUFFET__RELAXED);
            a->cur = k;
            a->rd = (k + 1) % a->nblocks;
            a->left = bd->hdr.bh1.num_pkts;
            a->fp = (unsigned char *)bd + bd->hdr.bh1.offset_to_first_pkt;
            if (a->left) memcpy(&a->hdr, a->fp, sizeof a->hdr);
        }
        if (a->left == 0) {
            uint32_t k = (uint32_t)a->cur;
            a->cur = -1;
            buffet__afp_put_block(a, k);
            continue;
        }
        h = a->hdr;
        fp = a->fp;
        next = --a->left ? fp + h.tp_next_offset : NULL;
        if (next) memcpy(&a->hdr, next, sizeof a->hdr);
        a->fp = next;
        p = buffet__afp_frame(a, &h, fp, next);
        if (p) pkts[n++] = p;
    }
    return n;
}

/* The socket's pending error as a result: the interface down (ENETDOWN), or gone for good. */
static buffet_result buffet__afp_error(buffet_net_afp *a) {
    struct ifreq ifr;
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0) e = errno;
    if (!buffet__afp_ifname(a, &ifr) && (errno == ENODEV || errno == ENXIO)) a->gone = true;
    if (a->gone) {
        errno = ENODEV;
        return BUFFET_ERR_CLOSED;
    }
    if (e == 0) return BUFFET_AGAIN;
    errno = e;
    return e == ENETDOWN || e == ENXIO || e == ENODEV ? BUFFET_ERR_CLOSED : BUFFET_ERR_SYSTEM;
}

BUFFET_API buffet_result buffet_net_afp_recv(buffet_net_afp *a, buffet_pkt **pkts, size_t max, int timeout_ms,
                                             size_t *got) {
    int64_t end = buffet__net_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    if (got) *got = 0;
    if (!a || !got || (!pkts && max)) return BUFFET_ERR_INVALID;
    if (max == 0) return BUFFET_OK;
    for (;;) {
        struct pollfd pf;
        int64_t left;
        int r;
        if ((*got = buffet__afp_take(a, pkts, max)) > 0) return BUFFET_OK;
        if (a->gone) return buffet__afp_error(a);
        left = timeout_ms < 0 ? 1000 : end - buffet__net_now_ms();
        pf.fd = a->fd;
        pf.events = POLLIN;
        pf.revents = 0;
        r = poll(&pf, 1, left <= 0 ? 0 : left > 1000 ? 1000 : (int)left);
        if (r < 0 && errno != EINTR) return buffet__net_errno_result(errno);
        if (r > 0 && (pf.revents & (POLLERR | POLLHUP | POLLNVAL))) {
            buffet_result e = buffet__afp_error(a);
            if (e != BUFFET_AGAIN) return e;
        }
        if (left <= 0) return BUFFET_AGAIN;
        if (r > 0 && BUFFET__LOAD(&a->busy[a->rd], BUFFET__ACQUIRE)) {
            /* the ready block is one that packets still hold, so poll says readable at once:
               nothing can come before they are freed (maybe on another thread), so nap */
            struct timespec ms;
            ms.tv_sec = 0;
            ms.tv_nsec = 1000000;
            nanosleep(&ms, NULL);
        }
    }
}

/* Wake the kernel to send the frames requested. Returns BUFFET_OK, or what stops sends. */
static buffet_result buffet__afp_kick(buffet_net_afp *a) {
    int e;
    if (send(a->fd, NULL, 0, MSG_DONTWAIT) >= 0 || errno == EAGAIN || errno == ENOBUFS) return BUFFET_OK;
    e = errno;
    if (e != ENETDOWN && e != ENXIO && e != ENODEV) return buffet__net_errno_result(e);
    (void)buffet__afp_error(a);
    errno = a->gone ? ENODEV : e;
    return BUFFET_ERR_CLOSED;
}

BUFFET_API buffet_result buffet_net_afp_send(buffet_net_afp *a, buffet_pkt **pkts, size_t n, size_t *sent) {
    buffet_result res = BUFFET_OK;
    size_t done = 0;
    bool kicked = false;
    if (sent) *sent = 0;
    if (!a || !sent || (!pkts && n) || !a->tx) return BUFFET_ERR_INVALID;
    if (a->gone) return buffet__afp_error(a);
    while (done < n) {
        buffet_pkt *p = pkts[done];
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)(a->tx + (size_t)a->tx_head * a->tx_frame_size);
        unsigned char *d = (unsigned char *)h + BUFFET__AFP_TX_DATA;
        const buffet_pkt *s;
        uint32_t st;
        if (!p || p->pool != a->cache->pool || !buffet__net_pkt_sane(p) || p->pkt_len < ETH_HLEN) {
            res = BUFFET_ERR_INVALID;
            break;
        }
        /* the kernel drops what is above the MTU (and a tag), so that is refused here; the MTU
           is read again before refusing, as it may have grown */
        if (p->pkt_len > a->tx_frame_size - BUFFET__AFP_TX_DATA ||
            (p->pkt_len > a->mtu + ETH_HLEN + 4 && p->pkt_len > (a->mtu = buffet__afp_mtu(a)) + ETH_HLEN + 4)) {
            res = BUFFET_ERR_TOO_LARGE;
            break;
        }
        st = BUFFET__LOAD(&h->tp_status, BUFFET__ACQUIRE);
        if (st != TP_STATUS_AVAILABLE && !kicked) {   /* sent frames come back as the kernel's sends finish */
            kicked = true;
            if ((res = buffet__afp_kick(a)) != BUFFET_OK) break;
            st = BUFFET__LOAD(&h->tp_status, BUFFET__ACQUIRE);
        }
        if (st != TP_STATUS_AVAILABLE) {
            res = BUFFET_AGAIN;
            break;
        }
        for (s = p; s; s = s->next) {
            memcpy(d, s->buf + s->data_off, s->len);
            d += s->len;
        }
        h->tp_len = p->pkt_len;
        h->tp_snaplen = p->pkt_len;
        h->tp_next_offset = 0;
        BUFFET__STORE(&h->tp_status, (uint32_t)TP_STATUS_SEND_REQUEST, BUFFET__RELEASE);
        a->tx_head = (a->tx_head + 1) % a->tx_frames;
        a->st.tx_packets++;
        a->st.tx_bytes += p->pkt_len;
        buffet_pkt_free(a->cache, p);
        done++;
    }
    *sent = done;
    if (done && res != BUFFET_ERR_CLOSED) {
        buffet_result k = buffet__afp_kick(a);
        if (k != BUFFET_OK) return k;
    }
    return res;
}

BUFFET_API buffet_net_afp_stats buffet_net_afp_get_stats(buffet_net_afp *a) {
    buffet_net_afp_stats s;
    struct tpacket_stats_v3 k;
    socklen_t l = sizeof k;
    uint32_t i, held = 0;
    memset(&s, 0, sizeof s);
    if (!a) return s;
    memset(&k, 0, sizeof k);
    /* the kernel's counters reset when read: added up here */
    if (a->fd >= 0 && getsockopt(a->fd, SOL_PACKET, PACKET_STATISTICS, &k, &l) == 0) {
        a->st.kernel_drops += k.tp_drops;
        a->st.kernel_freezes += k.tp_freeze_q_cnt;
    }
    for (i = 0; i < a->nblocks; i++) held += BUFFET__LOAD(&a->busy[i], BUFFET__ACQUIRE) != 0;
    a->st.blocks_held = held;
    return a->st;
}
#endif /* BUFFET_NET_AFPACKET */

/* >>afxdp */
#if BUFFET_NET_AFXDP
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif
/* Where the kernel puts a frame in a chunk: after its XDP headroom (XDP_PACKET_HEADROOM). */
#define BUFFET__XDP_HEADROOM 256u

/* One of the four rings as mapped: we produce into fill and tx, consume from rx and completion. */
typedef struct buffet__xdp_ring {
    uint32_t *producer, *consumer, *flags;
    void *descs;
    uint32_t mask, local;          /* local: our producer (fill, tx) or consumer (rx, completion) */
    void *map;
    size_t map_len;
} buffet__xdp_ring;

/* A buffer's state, by its index in the class's region. */
enum { BUFFET__XDP_OURS, BUFFET__XDP_FILL, BUFFET__XDP_TX_PKT, BUFFET__XDP_TX_RAW };

struct buffet_net_xdp {
    buffet_pkt_cache *cache;
    unsigned cls;
    int fd, ctl, map_fd, prog_fd, link_fd;
    uint32_t ifindex, size;
    bool gone;
    unsigned char *base;           /* the UMEM: the class's region, page-aligned */
    uint64_t lo, stride, n;        /* the class's buffers: header i at lo + i * stride, i < n */
    uint32_t chunk;
    uint8_t *state;                /* BUFFET__XDP_*, by buffer */
    uint32_t tx_out;               /* sends whose completion has not come */
    buffet__xdp_ring fill, comp, rx, tx;
    buffet_net_xdp_stats st;
};

static long buffet__bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

static struct bpf_insn buffet__bpf_insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    struct bpf_insn i;
    memset(&i, 0, sizeof i);
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

/* The program: return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS), so a queue
   without a socket in the map goes on to the stack. */
static int buffet__xdp_prog(int map_fd) {
    static const char license[] = "MIT";
    struct bpf_insn prog[6];
    union bpf_attr a;
    prog[0] = buffet__bpf_insn(BPF_LDX | BPF_W | BPF_MEM, 2, 1, (int16_t)offsetof(struct xdp_md, rx_queue_index), 0);
    prog[1] = buffet__bpf_insn(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd);
    prog[2] = buffet__bpf_insn(0, 0, 0, 0, 0);   /* the upper half of the 64-bit immediate */
    prog[3] = buffet__bpf_insn(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS);
    prog[4] = buffet__bpf_insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map);
    prog[5] = buffet__bpf_insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.insn_cnt = 6;
    a.insns = (uint64_t)(uintptr_t)prog;
    a.license = (uint64_t)(uintptr_t)license;
    a.expected_attach_type = BPF_XDP;
    return (int)buffet__bpf(BPF_PROG_LOAD, &a);
}

/* Map ring r of `entries` entries of esize bytes at pgoff, as the kernel's offsets o say. */
static bool buffet__xdp_map(buffet_net_xdp *x, buffet__xdp_ring *r, const struct xdp_ring_offset *o, size_t esize,
                            uint64_t pgoff) {
    unsigned char *m;
    r->map_len = (size_t)o->desc + (size_t)x->size * esize;
    m = (unsigned char *)mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, x->fd, (off_t)pgoff);
    if (m == MAP_FAILED) return false;
    r->map = m;
    r->producer = (uint32_t *)(m + o->producer);
    r->consumer = (uint32_t *)(m + o->consumer);
    r->flags = (uint32_t *)(m + o->flags);
    r->descs = m + o->desc;
    r->mask = x->size - 1;
    return true;
}

/* The buffer index of the header at h, or n when h is not one of the class's region. */
static uint64_t buffet__xdp_index(const buffet_net_xdp *x, const void *h) {
    uint64_t a = (uint64_t)(uintptr_t)h;
    if (a < x->lo || (a - x->lo) % x->stride || (a - x->lo) / x->stride >= x->n) return x->n;
    return (a - x->lo) / x->stride;
}

/* The header of the buffer holding UMEM address addr (unaligned: offset in the top 16 bits). */
static uint64_t buffet__xdp_index_of_addr(const buffet_net_xdp *x, uint64_t addr, unsigned char **data) {
    uint64_t at = (addr & XSK_UNALIGNED_BUF_ADDR_MASK) + (addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT);
    uint64_t abs = (uint64_t)(uintptr_t)x->base + at, i;
    *data = x->base + at;
    if (abs < x->lo) return x->n;
    i = (abs - x->lo) / x->stride;
    return i < x->n ? i : x->n;
}

static buffet_pkt *buffet__xdp_hdr(const buffet_net_xdp *x, uint64_t i) {
    return (buffet_pkt *)(uintptr_t)(x->lo + i * x->stride);
}

/* Put raw buffers of the class into the fill ring's free places. */
static void buffet__xdp_refill(buffet_net_xdp *x) {
    buffet__xdp_ring *r = &x->fill;
    uint32_t room = x->size - (r->local - BUFFET__LOAD(r->consumer, BUFFET__ACQUIRE));
    uint32_t added = 0;
    while (room) {
        buffet_pkt *got[64];
        size_t want = room < 64 ? room : 64, k, n = buffet_pkt_alloc_bulk_raw(x->cache, x->cls, got, want);
        if (n == 0 && want > 1) n = buffet_pkt_alloc_bulk_raw(x->cache, x->cls, got, 1);
        if (n == 0) {
            x->st.fill_failures++;
            break;
        }
        for (k = 0; k < n; k++) {
            uint64_t i = buffet__xdp_index(x, got[k]);
            if (i == x->n) {   /* of another region: no UMEM address (the class grew) */
                buffet_pkt_free_bulk_raw(x->cache, &got[k], 1);
                continue;
            }
            x->state[i] = BUFFET__XDP_FILL;
            x->st.in_kernel++;
            ((uint64_t *)r->descs)[r->local++ & r->mask] = (uint64_t)(buffet_pkt_raw_buf(x->cache, got[k]) - x->base);
            added++;
        }
        room -= (uint32_t)n;
        if (added == 0) break;
    }
    if (added) BUFFET__STORE(r->producer, r->local, BUFFET__RELEASE);
}

/* Take completed sends back: packets freed, copies' buffers given back. */
static void buffet__xdp_complete(buffet_net_xdp *x) {
    buffet__xdp_ring *r = &x->comp;
    uint32_t end = BUFFET__LOAD(r->producer, BUFFET__ACQUIRE);
    if (end == r->local) return;
    for (; r->local != end; r->local++) {
        unsigned char *data;
        uint64_t i = buffet__xdp_index_of_addr(x, ((const uint64_t *)r->descs)[r->local & r->mask], &data);
        buffet_pkt *h;
        if (i == x->n || (x->state[i] != BUFFET__XDP_TX_PKT && x->state[i] != BUFFET__XDP_TX_RAW)) continue;
        h = buffet__xdp_hdr(x, i);
        if (x->state[i] == BUFFET__XDP_TX_PKT) buffet_pkt_free(x->cache, h);
        else buffet_pkt_free_bulk_raw(x->cache, &h, 1);
        x->state[i] = BUFFET__XDP_OURS;
        x->st.in_kernel--;
        x->tx_out--;
    }
    BUFFET__STORE(r->consumer, r->local, BUFFET__RELEASE);
}

/* The interface is down or gone (for good): CLOSED with errno ENETDOWN or ENODEV. */
static buffet_result buffet__xdp_closed(buffet_net_xdp *x, int e) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_ifindex = (int)x->ifindex;
    if (x->gone || (ioctl(x->ctl, SIOCGIFNAME, &ifr) != 0 && (errno == ENODEV || errno == ENXIO))) x->gone = true;
    errno = x->gone ? ENODEV : e;
    return BUFFET_ERR_CLOSED;
}

/* Wake the kernel to send what the transmit ring holds: in copy mode each call sends a batch,
   so it is called until the ring is empty or the kernel says it cannot go on now. */
static buffet_result buffet__xdp_kick(buffet_net_xdp *x) {
    uint32_t tries;
    for (tries = 0; tries <= x->size / 16; tries++) {
        if (BUFFET__LOAD(x->tx.consumer, BUFFET__ACQUIRE) == x->tx.local) return BUFFET_OK;
        if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0) continue;
        if (errno == EAGAIN || errno == EINTR) continue;
        if (errno == EBUSY || errno == ENOBUFS) return BUFFET_OK;   /* the device is full: later */
        if (errno == ENETDOWN || errno == ENXIO || errno == ENODEV) return buffet__xdp_closed(x, errno);
        return buffet__net_errno_result(errno);
    }
    return BUFFET_OK;
}

static void buffet__xdp_release(buffet_net_xdp *x) {
    buffet_allocator heap = buffet_heap();
    buffet__xdp_ring *rings[4];
    uint64_t i;
    unsigned k;
    rings[0] = &x->fill;
    rings[1] = &x->comp;
    rings[2] = &x->rx;
    rings[3] = &x->tx;
    if (x->link_fd >= 0) close(x->link_fd);   /* the program comes off the interface */
    if (x->prog_fd >= 0) close(x->prog_fd);
    if (x->map_fd >= 0) close(x->map_fd);
    if (x->fd >= 0) close(x->fd);             /* after this the kernel writes into no buffer */
    if (x->ctl >= 0) close(x->ctl);
    for (k = 0; k < 4; k++)
        if (rings[k]->map) munmap(rings[k]->map, rings[k]->map_len);
    for (i = 0; x->state && i < x->n; i++) {
        buffet_pkt *h = buffet__xdp_hdr(x, i);
        if (x->state[i] == BUFFET__XDP_TX_PKT) buffet_pkt_free(x->cache, h);
        else if (x->state[i] != BUFFET__XDP_OURS) buffet_pkt_free_bulk_raw(x->cache, &h, 1);
    }
    if (x->state) BUFFET_DELETE_ARRAY(heap, uint8_t, x->state, (size_t)x->n);
    BUFFET_DELETE(heap, buffet_net_xdp, x);
}

static buffet_result buffet__xdp_sys(int e) {
    /* ENOPROTOOPT: SOL_XDP unknown (qemu-user passes it to no kernel) */
    if (e == EPERM || e == EACCES || e == ENOSYS || e == EAFNOSUPPORT || e == EOPNOTSUPP || e == ENOPROTOOPT)
        return BUFFET_ERR_UNSUPPORTED;
    return e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
}

BUFFET_API buffet_result buffet_net_xdp_create(buffet_net_xdp **out, const buffet_net_xdp_desc *desc) {
    buffet_allocator heap = buffet_heap();
    const buffet__pkt_class *k;
    struct xdp_umem_reg reg;
    struct xdp_mmap_offsets off;
    struct sockaddr_xdp sx;
    struct xdp_options opt;
    union bpf_attr a;
    socklen_t ol = sizeof off;
    buffet_net_xdp *x;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), end;
    uint32_t size, key, mode;
    int value, e, tries;
    if (out) *out = NULL;
    if (!out || !desc || !desc->cache || !desc->ifname || desc->cls >= desc->cache->nclasses) return BUFFET_ERR_INVALID;
    size = desc->ring_size ? desc->ring_size : 1024;
    if (size < 64 || size > 16384 || (size & (size - 1))) return BUFFET_ERR_INVALID;
    k = &desc->cache->pool->cls[desc->cls];
    /* the UMEM is one region: every buffer of the class in it, and room for a frame */
    if (k->n == 0 || k->created != k->n || k->created != k->max || k->buf_len < 2048) return BUFFET_ERR_INVALID;
    if (if_nametoindex(desc->ifname) == 0) return BUFFET_ERR_INVALID;
    x = BUFFET_NEW(heap, buffet_net_xdp);
    if (!x) return BUFFET_ERR_NOMEM;
    memset(x, 0, sizeof *x);
    x->fd = x->ctl = x->map_fd = x->prog_fd = x->link_fd = -1;
    x->cache = desc->cache;
    x->cls = desc->cls;
    x->size = size;
    x->ifindex = if_nametoindex(desc->ifname);
    x->lo = k->lo;
    x->stride = k->stride;
    x->n = k->n;
    x->base = (unsigned char *)(uintptr_t)(x->lo & ~(page - 1));
    x->chunk = k->buf_len < page ? k->buf_len : (uint32_t)page;
    x->state = BUFFET_NEW_ARRAY(heap, uint8_t, (size_t)x->n);
    if (!x->state) {
        buffet__xdp_release(x);
        return BUFFET_ERR_NOMEM;
    }
    memset(x->state, 0, (size_t)x->n);
    x->ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (x->fd < 0 || x->ctl < 0) {
        e = errno;
        buffet__xdp_release(x);
        return buffet__xdp_sys(e);
    }
    end = x->lo + x->n * x->stride;
    memset(&reg, 0, sizeof reg);
    reg.addr = (uint64_t)(uintptr_t)x->base;
    reg.len = (end - (uint64_t)(uintptr_t)x->base + page - 1) & ~(page - 1);
    reg.chunk_size = x->chunk;
    reg.flags = XDP_UMEM_UNALIGNED_CHUNK_FLAG;   /* chunks where the pool's buffers are */
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) != 0 ||
        setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &size, sizeof size) != 0 ||
        setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &size, sizeof size) != 0 ||
        setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &size, sizeof size) != 0 ||
        setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &size, sizeof size) != 0 ||
        getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) != 0 ||
        !buffet__xdp_map(x, &x->fill, &off.fr, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING) ||
        !buffet__xdp_map(x, &x->comp, &off.cr, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING) ||
        !buffet__xdp_map(x, &x->rx, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING) ||
        !buffet__xdp_map(x, &x->tx, &off.tx, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)) {
        e = errno;
        buffet__xdp_release(x);
        return buffet__xdp_sys(e);
    }
    buffet__xdp_refill(x);
    if (x->st.in_kernel == 0) {
        buffet__xdp_release(x);
        return BUFFET_ERR_EXHAUSTED;
    }
    memset(&sx, 0, sizeof sx);
    sx.sxdp_family = AF_XDP;
    sx.sxdp_ifindex = x->ifindex;
    sx.sxdp_queue_id = desc->queue;
    /* neither COPY nor ZEROCOPY: the kernel binds zero-copy where the driver can, copy where not */
    sx.sxdp_flags = (uint16_t)(XDP_USE_NEED_WAKEUP | (desc->flags & BUFFET_NET_XDP_COPY ? XDP_COPY : 0));
    /* a socket closed on this queue lets go of it a little later (the kernel releases its UMEM
       in a work item): EBUSY is tried again for a second before it is taken as another owner */
    for (tries = 0; bind(x->fd, (struct sockaddr *)&sx, sizeof sx) != 0; tries++) {
        struct timespec ms;
        e = errno;
        if (e != EBUSY || tries == 100) {
            buffet__xdp_release(x);
            return e == ENODEV || e == EINVAL ? BUFFET_ERR_INVALID : buffet__xdp_sys(e);
        }
        ms.tv_sec = 0;
        ms.tv_nsec = 10000000;
        nanosleep(&ms, NULL);
    }
    ol = sizeof opt;
    if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opt, &ol) == 0) x->st.zerocopy = (opt.flags & XDP_OPTIONS_ZEROCOPY) != 0;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = desc->queue + 1;
    x->map_fd = (int)buffet__bpf(BPF_MAP_CREATE, &a);
    if (x->map_fd >= 0) {
        key = desc->queue;
        value = x->fd;
        memset(&a, 0, sizeof a);
        a.map_fd = (uint32_t)x->map_fd;
        a.key = (uint64_t)(uintptr_t)&key;
        a.value = (uint64_t)(uintptr_t)&value;
        a.flags = BPF_ANY;
        if (buffet__bpf(BPF_MAP_UPDATE_ELEM, &a) == 0) x->prog_fd = buffet__xdp_prog(x->map_fd);
    }
    if (x->prog_fd < 0) {
        e = errno;
        buffet__xdp_release(x);
        return buffet__xdp_sys(e);
    }
    /* native where the driver takes programs, generic (every interface) where not */
    for (mode = desc->flags & BUFFET_NET_XDP_GENERIC ? 1u : 0u; mode < 2 && x->link_fd < 0; mode++) {
        memset(&a, 0, sizeof a);
        a.link_create.prog_fd = (uint32_t)x->prog_fd;
        a.link_create.target_ifindex = x->ifindex;
        a.link_create.attach_type = BPF_XDP;
        a.link_create.flags = mode == 0 ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
        x->link_fd = (int)buffet__bpf(BPF_LINK_CREATE, &a);
        if (x->link_fd >= 0) x->st.native = mode == 0;
        else if (errno == EBUSY || errno == EEXIST) break;   /* another program is there: not ours to replace */
    }
    if (x->link_fd < 0) {
        e = errno;
        buffet__xdp_release(x);
        return e == EBUSY || e == EEXIST ? BUFFET_ERR_SYSTEM : buffet__xdp_sys(e);
    }
    *out = x;
    return BUFFET_OK;
}

BUFFET_API void buffet_net_xdp_destroy(buffet_net_xdp *x) {
    int tries;
    if (!x) return;
    /* sends in flight read their buffers until their completion: wait for those (1 s at most) */
    for (tries = 0; x->tx_out && tries < 100; tries++) {
        struct timespec ms;
        if (buffet__xdp_kick(x) == BUFFET_ERR_CLOSED) break;
        buffet__xdp_complete(x);
        if (!x->tx_out) break;
        ms.tv_sec = 0;
        ms.tv_nsec = 10000000;
        nanosleep(&ms, NULL);
    }
    buffet__xdp_release(x);
}

BUFFET_API int buffet_net_xdp_fd(const buffet_net_xdp *x) { return x ? x->fd : -1; }

/* Received frames into pkts[0..max): how many. */
static size_t buffet__xdp_take(buffet_net_xdp *x, buffet_pkt **pkts, size_t max) {
    buffet__xdp_ring *r = &x->rx;
    uint32_t end = BUFFET__LOAD(r->producer, BUFFET__ACQUIRE);
    size_t n = 0;
    for (; r->local != end && n < max; r->local++) {
        const struct xdp_desc *d = &((const struct xdp_desc *)r->descs)[r->local & r->mask];
        unsigned char *data, *buf;
        uint64_t i = buffet__xdp_index_of_addr(x, d->addr, &data);
        buffet_pkt *h;
        buffet_net_meta *m;
        if (i == x->n || x->state[i] != BUFFET__XDP_FILL) continue;   /* not a buffer we gave it */
        h = buffet__xdp_hdr(x, i);
        buf = buffet_pkt_raw_buf(x->cache, h);
        x->state[i] = BUFFET__XDP_OURS;
        x->st.in_kernel--;
        if (data < buf || (size_t)(data - buf) + d->len > x->chunk) {   /* not where the chunk is */
            buffet_pkt_free_bulk_raw(x->cache, &h, 1);
            continue;
        }
        BUFFET__VG_DEFINED(data, d->len);
        buffet_pkt_init_raw(x->cache, h);
        h->data_off = (uint16_t)(data - buf);
        (void)buffet_pkt_append(h, d->len);
        if ((m = buffet_net_meta_of(h)) != NULL) {
            memset(m, 0, sizeof *m);
            m->ifindex = x->ifindex;
            m->wire_len = d->len;
        }
        x->st.rx_packets++;
        x->st.rx_bytes += d->len;
        pkts[n++] = h;
    }
    BUFFET__STORE(r->consumer, r->local, BUFFET__RELEASE);
    return n;
}

BUFFET_API buffet_result buffet_net_xdp_recv(buffet_net_xdp *x, buffet_pkt **pkts, size_t max, int timeout_ms,
                                             size_t *got) {
    int64_t end = buffet__net_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    bool idle = false;   /* the last poll ran out with nothing */
    if (got) *got = 0;
    if (!x || !got || (!pkts && max)) return BUFFET_ERR_INVALID;
    if (max == 0) return BUFFET_OK;
    for (;;) {
        struct pollfd pf;
        int64_t left;
        int r;
        buffet__xdp_complete(x);
        buffet__xdp_refill(x);
        /* a zero-copy driver that ran out of fill entries waits to be told there are more */
        if (BUFFET__LOAD(x->fill.flags, BUFFET__ACQUIRE) & XDP_RING_NEED_WAKEUP)
            (void)recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        if ((*got = buffet__xdp_take(x, pkts, max)) > 0) return BUFFET_OK;
        if (x->gone) return buffet__xdp_closed(x, ENODEV);
        left = timeout_ms < 0 ? 1000 : end - buffet__net_now_ms();
        if (left <= 0 || idle) {
            /* the kernel unbinds the socket when its interface is unregistered and says so only
               in the socket's error (its poll then reports nothing at all): asked whenever a
               call is about to come back empty, and after each second of waiting */
            int e = 0;
            socklen_t l = sizeof e;
            if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0) return buffet__net_errno_result(errno);
            if (e == ENETDOWN || e == ENXIO || e == ENODEV) {
                x->gone = true;
                return buffet__xdp_closed(x, ENODEV);
            }
            if (e) {
                errno = e;
                return BUFFET_ERR_SYSTEM;
            }
            if (left <= 0) return BUFFET_AGAIN;
        }
        pf.fd = x->fd;
        pf.events = POLLIN;
        pf.revents = 0;
        r = poll(&pf, 1, left > 1000 ? 1000 : (int)left);
        if (r < 0 && errno != EINTR) return buffet__net_errno_result(errno);
        idle = r == 0;
    }
}

BUFFET_API buffet_result buffet_net_xdp_send(buffet_net_xdp *x, buffet_pkt **pkts, size_t n, size_t *sent) {
    buffet__xdp_ring *r;
    buffet_result res = BUFFET_OK;
    size_t done = 0;
    if (sent) *sent = 0;
    if (!x || !sent || (!pkts && n)) return BUFFET_ERR_INVALID;
    if (x->gone) return buffet__xdp_closed(x, ENODEV);
    r = &x->tx;
    buffet__xdp_complete(x);
    while (done < n) {
        buffet_pkt *p = pkts[done], *h = NULL;
        struct xdp_desc *d;
        uint64_t i;
        if (!p || p->pool != x->cache->pool || !buffet__net_pkt_sane(p) || p->pkt_len < ETH_HLEN) {
            res = BUFFET_ERR_INVALID;
            break;
        }
        if (p->pkt_len > x->chunk - BUFFET__XDP_HEADROOM) {
            res = BUFFET_ERR_TOO_LARGE;
            break;
        }
        /* a full ring, or as many sends out as the completion ring has room for */
        if (r->local - BUFFET__LOAD(r->consumer, BUFFET__ACQUIRE) >= x->size || x->tx_out >= x->size) {
            res = BUFFET_AGAIN;
            break;
        }
        d = &((struct xdp_desc *)r->descs)[r->local & r->mask];
        i = buffet__xdp_index(x, p);
        if (p->nb_segs == 1 && p->pool == x->cache->pool && p->flags == 0 && i < x->n &&
            x->state[i] == BUFFET__XDP_OURS && BUFFET__LOAD(&p->refcnt, BUFFET__ACQUIRE) == 1) {
            /* the packet's own buffer is in the UMEM and no one else holds it: sent as it is */
            d->addr = (uint64_t)(p->buf + p->data_off - x->base);
            d->len = p->len;
            x->state[i] = BUFFET__XDP_TX_PKT;
        } else {
            const buffet_pkt *s;
            unsigned char *to;
            if (buffet_pkt_alloc_bulk_raw(x->cache, x->cls, &h, 1) != 1 || (i = buffet__xdp_index(x, h)) == x->n) {
                if (h) buffet_pkt_free_bulk_raw(x->cache, &h, 1);
                res = BUFFET_AGAIN;
                break;
            }
            to = buffet_pkt_raw_buf(x->cache, h) + BUFFET__XDP_HEADROOM;
            d->addr = (uint64_t)(to - x->base);
            d->len = p->pkt_len;
            for (s = p; s; s = s->next) {
                memcpy(to, s->buf + s->data_off, s->len);
                to += s->len;
            }
            x->state[i] = BUFFET__XDP_TX_RAW;
            x->st.tx_copied++;
        }
        d->options = 0;
        r->local++;
        x->st.in_kernel++;
        x->tx_out++;
        x->st.tx_packets++;
        x->st.tx_bytes += p->pkt_len;
        if (h) buffet_pkt_free(x->cache, p);   /* copied: the caller's packet is done with */
        done++;
    }
    *sent = done;
    if (done) {
        buffet_result k;
        BUFFET__STORE(r->producer, r->local, BUFFET__RELEASE);
        k = buffet__xdp_kick(x);
        if (k != BUFFET_OK) return k;
    }
    return res;
}

BUFFET_API buffet_net_xdp_stats buffet_net_xdp_get_stats(buffet_net_xdp *x) {
    buffet_net_xdp_stats s;
    struct xdp_statistics k;
    socklen_t l = sizeof k;
    memset(&s, 0, sizeof s);
    if (!x) return s;
    buffet__xdp_complete(x);
    memset(&k, 0, sizeof k);
    if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &k, &l) == 0) {
        x->st.kernel_rx_dropped = k.rx_dropped;
        x->st.kernel_rx_invalid = k.rx_invalid_descs;
        x->st.kernel_tx_invalid = k.tx_invalid_descs;
        x->st.kernel_rx_ring_full = k.rx_ring_full;
        x->st.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs;
    }
    return x->st;
}
#endif /* BUFFET_NET_AFXDP */

/* >>quic */
#if BUFFET_NET_QUIC
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#define BUFFET__QUIC_BATCH 64     /* datagrams written before they go to the kernel */
#define BUFFET__QUIC_CIDLEN 18
#define BUFFET__QUIC_PAYLOAD 1452 /* UDP payload of a packet: an Ethernet MTU less IPv6 and UDP */
#define BUFFET__QUIC_VECS 16      /* slices offered to ngtcp2 per stream frame */

typedef struct buffet__quic_stream {
    int64_t id;
    buffet_chain tx;              /* bytes [tx_base, tx_end) of the stream: written up to tx_off, the
                                     rest not yet; released from the front as acknowledged */
    buffet_chain rx;              /* received in order, not taken */
    uint64_t tx_base, tx_off, tx_end;
    uint64_t rx_error;
    bool fin_queued, fin_written, sent_told;
    bool rx_fin, rx_reset, end_taken, stopped, gone, app_reset;
    bool in_wq, want_write, readable_told;
    struct buffet__quic_stream *next, *prev;   /* every stream */
    struct buffet__quic_stream *wnext;         /* the write queue, or the blocked list */
} buffet__quic_stream;

struct buffet_net_quic {
    ngtcp2_conn *conn;
    ngtcp2_crypto_conn_ref ref;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    int fd;
    unsigned flags;
    bool server, connected, over, gso, reset_seen, dirty, want_open;
    buffet_net_addr local, peer;
    buffet_pkt_cache *cache;
    unsigned cls;                 /* the class datagrams are written into */
    buffet_net_source rx_src;
    uint8_t reset_key[32];
    char alpn[64];
    ngtcp2_settings settings;     /* kept for a server's connection, made at the first client */
    ngtcp2_transport_params params;
    buffet__quic_stream *streams, *last, *wq, *wq_tail, *blocked;
    uint64_t unsent;              /* bytes queued on every stream, not written yet */
    uint64_t dgram_id;
    buffet_net_quic_event *ev;    /* a ring: ev_n events from ev_head, ev_cap slots */
    size_t ev_head, ev_n, ev_cap;
    buffet_pkt *pend[2 * BUFFET__QUIC_BATCH];   /* datagrams (GSO runs) the socket has not taken */
    size_t pend_head, pend_n, pend_off;
    buffet_net_quic_stats st;
};

static ngtcp2_tstamp buffet__quic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (ngtcp2_tstamp)t.tv_sec * NGTCP2_SECONDS + (ngtcp2_tstamp)t.tv_nsec;
}

static socklen_t buffet__quic_addrlen(const buffet_net_addr *a) {
    return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->in6 : (socklen_t)sizeof a->in4;
}

static bool buffet__quic_same_addr(const buffet_net_addr *a, const buffet_net_addr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return false;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_port == b->in4.sin_port && a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port && memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

static void buffet__quic_path(buffet_net_quic *q, ngtcp2_path *path) {
    memset(path, 0, sizeof *path);
    path->local.addr = (ngtcp2_sockaddr *)&q->local.sa;
    path->local.addrlen = buffet__quic_addrlen(&q->local);
    path->remote.addr = (ngtcp2_sockaddr *)&q->peer.sa;
    path->remote.addrlen = buffet__quic_addrlen(&q->peer);
}

/* Events go into a ring that grows: an event is never dropped for want of room (NOMEM aside). */
static buffet_net_quic_event *buffet__quic_event(buffet_net_quic *q, unsigned type, int64_t stream,
                                                 buffet_result result, uint64_t error, buffet_pkt *pkt) {
    buffet_net_quic_event *e;
    if (q->ev_n == q->ev_cap) {
        size_t cap = q->ev_cap ? q->ev_cap * 2 : 64, i;
        buffet_net_quic_event *n = (buffet_net_quic_event *)malloc(cap * sizeof *n);
        if (!n) {
            if (pkt) buffet_pkt_free(q->cache, pkt);
            return NULL;
        }
        for (i = 0; i < q->ev_n; i++) n[i] = q->ev[(q->ev_head + i) % q->ev_cap];
        free(q->ev);
        q->ev = n;
        q->ev_cap = cap;
        q->ev_head = 0;
    }
    e = &q->ev[(q->ev_head + q->ev_n++) % q->ev_cap];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->stream = stream;
    e->result = result;
    e->error = error;
    e->pkt = pkt;
    return e;
}

static bool buffet__quic_local(const buffet_net_quic *q, int64_t id) { return (int)(id & 1) == (q->server ? 1 : 0); }
static bool buffet__quic_can_send(const buffet_net_quic *q, int64_t id) {
    return !(id & 2) || buffet__quic_local(q, id);
}
static bool buffet__quic_can_recv(const buffet_net_quic *q, int64_t id) {
    return !(id & 2) || !buffet__quic_local(q, id);
}

static buffet__quic_stream *buffet__quic_find(buffet_net_quic *q, int64_t id) {
    buffet__quic_stream *s;
    if (q->last && q->last->id == id) return q->last;
    for (s = q->streams; s; s = s->next)
        if (s->id == id) return q->last = s;
    return NULL;
}

static buffet__quic_stream *buffet__quic_stream_new(buffet_net_quic *q, int64_t id) {
    buffet__quic_stream *s = (buffet__quic_stream *)calloc(1, sizeof *s);
    buffet_allocator heap;
    if (!s) return NULL;
    memset(&heap, 0, sizeof heap);
    s->id = id;
    buffet_chain_init(&s->tx, heap);
    buffet_chain_init(&s->rx, heap);
    s->next = q->streams;
    if (q->streams) q->streams->prev = s;
    q->streams = s;
    q->st.streams++;
    return s;
}

/* Take s off the write queue or the blocked list, wherever it is. */
static void buffet__quic_unqueue(buffet_net_quic *q, buffet__quic_stream *s) {
    buffet__quic_stream **pp, *prev = NULL;
    if (!s->in_wq) return;
    for (pp = &q->wq; *pp; prev = *pp, pp = &(*pp)->wnext)
        if (*pp == s) {
            *pp = s->wnext;
            if (q->wq_tail == s) q->wq_tail = prev;
            s->wnext = NULL;
            s->in_wq = false;
            return;
        }
    for (pp = &q->blocked; *pp; pp = &(*pp)->wnext)
        if (*pp == s) {
            *pp = s->wnext;
            s->wnext = NULL;
            s->in_wq = false;
            return;
        }
}

static void buffet__quic_enqueue(buffet_net_quic *q, buffet__quic_stream *s) {
    if (s->in_wq) return;
    s->in_wq = true;
    s->wnext = NULL;
    if (q->wq_tail) q->wq_tail->wnext = s;
    else q->wq = s;
    q->wq_tail = s;
}

/* ngtcp2 leaves the peer's stream limit to the application: one more of id's kind may be opened
   once we have forgotten id, so that a peer cannot pile up streams nobody reads. */
static void buffet__quic_more_streams(buffet_net_quic *q, int64_t id) {
    if (!q->conn || q->over) return;
    if (id & 2) ngtcp2_conn_extend_max_streams_uni(q->conn, 1);
    else ngtcp2_conn_extend_max_streams_bidi(q->conn, 1);
    q->dirty = true;
}

static void buffet__quic_stream_free(buffet_net_quic *q, buffet__quic_stream *s) {
    if (!buffet__quic_local(q, s->id)) buffet__quic_more_streams(q, s->id);
    buffet__quic_unqueue(q, s);
    if (s->prev) s->prev->next = s->next;
    else q->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    if (q->last == s) q->last = NULL;
    q->unsent -= s->tx_end - s->tx_off;
    buffet_chain_deinit(&s->tx);
    buffet_chain_deinit(&s->rx);
    q->st.streams--;
    free(s);
}

/* A stream is forgotten once ngtcp2 has closed it and the application is done reading it. */
static void buffet__quic_maybe_free(buffet_net_quic *q, buffet__quic_stream *s) {
    if (s->gone && (s->end_taken || s->app_reset || !buffet__quic_can_recv(q, s->id))) buffet__quic_stream_free(q, s);
}

/* The end of the connection, told once. */
static void buffet__quic_over(buffet_net_quic *q, unsigned reason, int app, uint64_t error, bool deliberate) {
    buffet_net_quic_event *e;
    if (q->over) return;
    q->over = true;
    e = buffet__quic_event(q, BUFFET_NET_QUIC_EV_CLOSED, -1, deliberate && error == 0 ? BUFFET_OK : BUFFET_ERR_CLOSED,
                           error, NULL);
    if (e) {
        e->reason = reason;
        e->app = app;
    }
}

/* >>quic: sending datagrams */
static bool buffet__quic_seg_equal(const buffet_pkt *p, uint32_t len) {
    for (; p; p = p->next)
        if (p->next && p->len != len) return false;
    return true;
}

/* Give the socket what waits in pend, oldest first: GSO runs with one sendmsg each, single
   datagrams in sendmmsg batches. Returns BUFFET_AGAIN when the socket would block (what is left
   stays, in order). A datagram the socket refuses for good is dropped and counted: QUIC's loss
   recovery sends its frames again. */
static buffet_result buffet__quic_drain(buffet_net_quic *q) {
    while (q->pend_n) {
        buffet_pkt **slot = &q->pend[q->pend_head];
        buffet_pkt *p = *slot;
        size_t sent = 0, n, k;
        uint32_t lens[2 * BUFFET__QUIC_BATCH];
        buffet_result r;
        if (p->nb_segs > 1 || q->pend_off) {
            uint32_t segs = p->nb_segs, seg = p->len;
            r = buffet_net_udp_send_gso_pkt(q->fd, q->cache, slot, q->pend_off, seg, &sent);
            q->st.tx_calls++;
            if (r == BUFFET_OK) {
                q->st.tx_datagrams += (p->pkt_len - q->pend_off + seg - 1) / seg;
                q->st.tx_bytes += p->pkt_len - q->pend_off;
                q->pend_off = 0;
                q->pend_head = (q->pend_head + 1) % (2 * BUFFET__QUIC_BATCH);
                q->pend_n--;
                continue;
            }
            q->st.tx_datagrams += sent / seg;
            q->st.tx_bytes += sent;
            if (r == BUFFET_AGAIN) {
                q->pend_off += sent;
                return BUFFET_AGAIN;
            }
            if (r == BUFFET_ERR_UNSUPPORTED) q->gso = false;
            q->st.tx_discarded += segs;
            buffet_pkt_free(q->cache, *slot);
            q->pend_off = 0;
            q->pend_head = (q->pend_head + 1) % (2 * BUFFET__QUIC_BATCH);
            q->pend_n--;
            continue;
        }
        /* single datagrams: as many as lie in a row in the ring */
        for (n = 1; n < q->pend_n && q->pend_head + n < 2 * BUFFET__QUIC_BATCH; n++)
            if (q->pend[q->pend_head + n]->nb_segs > 1) break;
        for (k = 0; k < n; k++) lens[k] = slot[k]->pkt_len;
        r = buffet_net_udp_send(q->fd, q->cache, slot, n, &sent);
        q->st.tx_calls++;
        q->st.tx_datagrams += sent;
        for (k = 0; k < sent; k++) q->st.tx_bytes += lens[k];
        q->pend_head = (q->pend_head + sent) % (2 * BUFFET__QUIC_BATCH);
        q->pend_n -= sent;
        if (r == BUFFET_OK) continue;
        if (r == BUFFET_AGAIN) return BUFFET_AGAIN;
        q->st.tx_discarded++;   /* refused for good (EMSGSIZE, an error the route gave) */
        buffet_pkt_free(q->cache, q->pend[q->pend_head]);
        q->pend_head = (q->pend_head + 1) % (2 * BUFFET__QUIC_BATCH);
        q->pend_n--;
    }
    return BUFFET_OK;
}

/* Queue pkts[0..n) (one datagram each, in order) behind what waits, GSO runs made of equal
   sizes, and give the socket what it takes. */
static buffet_result buffet__quic_queue(buffet_net_quic *q, buffet_pkt **pkts, size_t n) {
    size_t i = 0, j;
    while (i < n) {
        buffet_pkt *head = pkts[i];
        j = i + 1;
        if (q->gso) {
            uint32_t seg = head->len;
            while (j < n && j - i < BUFFET_NET_GSO_MAX_SEGS && (j - i + 1) * (size_t)seg <= BUFFET_NET_GSO_MAX_BYTES &&
                   pkts[j - 1]->len == seg && pkts[j]->len <= seg && buffet__quic_seg_equal(head, seg) &&
                   buffet_pkt_chain(head, pkts[j]) == BUFFET_OK)
                j++;
        }
        if (q->pend_n == 2 * BUFFET__QUIC_BATCH) {   /* the kernel is far behind: let go */
            for (; i < n; i++) {
                q->st.tx_discarded++;
                buffet_pkt_free(q->cache, pkts[i]);
            }
            break;
        }
        q->pend[(q->pend_head + q->pend_n++) % (2 * BUFFET__QUIC_BATCH)] = head;
        i = j;
    }
    return buffet__quic_drain(q);
}

/* A packet for one datagram: *dest gets room for `room` bytes (the caller trims to the length). */
static buffet_pkt *buffet__quic_pkt(buffet_net_quic *q, const ngtcp2_pkt_info *pi, uint8_t **dest, size_t room) {
    buffet_pkt *p = buffet_pkt_alloc_class(q->cache, q->cls);
    buffet_net_meta *m;
    if (!p) return NULL;
    *dest = (uint8_t *)buffet_pkt_append(p, room);
    if (!*dest) {
        buffet_pkt_free(q->cache, p);
        return NULL;
    }
    m = buffet_net_meta_of(p);
    memset(m, 0, sizeof *m);
    m->peer = q->peer;
    if (pi && pi->ecn) {
        m->ecn = pi->ecn;
        m->flags = BUFFET_NET_META_ECN;
    }
    return p;
}

/* Close the connection from here with ccerr: CONNECTION_CLOSE goes out once. */
static buffet_result buffet__quic_close_with(buffet_net_quic *q, const ngtcp2_connection_close_error *cc, unsigned reason) {
    ngtcp2_path path;
    ngtcp2_pkt_info pi;
    uint8_t *dest;
    buffet_pkt *p;
    ngtcp2_ssize nw;
    if (q->over) return BUFFET_ERR_CLOSED;
    if (q->conn && !ngtcp2_conn_is_in_closing_period(q->conn) && !ngtcp2_conn_is_in_draining_period(q->conn)) {
        buffet__quic_path(q, &path);
        memset(&pi, 0, sizeof pi);
        p = buffet__quic_pkt(q, NULL, &dest, BUFFET__QUIC_PAYLOAD);
        if (p) {
            nw = ngtcp2_conn_write_connection_close(q->conn, &path, &pi, dest, BUFFET__QUIC_PAYLOAD, cc, buffet__quic_now());
            if (nw > 0) {
                buffet_pkt_trim(p, BUFFET__QUIC_PAYLOAD - (size_t)nw);
                buffet__quic_queue(q, &p, 1);
            } else {
                buffet_pkt_free(q->cache, p);
            }
        }
    }
    buffet__quic_over(q, reason, cc->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION, cc->error_code,
                      reason == BUFFET_NET_QUIC_CLOSE_LOCAL && cc->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION);
    return BUFFET_ERR_CLOSED;
}

/* An error from ngtcp2 that ends the connection: closed with the matching transport error. */
static buffet_result buffet__quic_fail(buffet_net_quic *q, int liberr) {
    ngtcp2_connection_close_error cc;
    ngtcp2_connection_close_error_default(&cc);
    if (liberr == NGTCP2_ERR_CRYPTO) {
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, ngtcp2_conn_get_tls_alert(q->conn), NULL, 0);
        return buffet__quic_close_with(q, &cc, BUFFET_NET_QUIC_CLOSE_HANDSHAKE);
    }
    if (liberr == NGTCP2_ERR_NOMEM) {
        buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_LOCAL, 0, NGTCP2_INTERNAL_ERROR, false);
        return BUFFET_ERR_NOMEM;
    }
    ngtcp2_connection_close_error_set_transport_error_liberr(&cc, liberr, NULL, 0);
    return buffet__quic_close_with(q, &cc, BUFFET_NET_QUIC_CLOSE_LOCAL);
}

static void buffet__quic_wrote(buffet_net_quic *q, buffet__quic_stream *s, ngtcp2_ssize n, bool fin) {
    if (!s || n < 0) return;
    s->tx_off += (uint64_t)n;
    q->unsent -= (uint64_t)n;
    q->st.stream_bytes_sent += (uint64_t)n;
    if (fin && s->tx_off == s->tx_end) s->fin_written = true;
    if (s->tx_off == s->tx_end && (!s->fin_queued || s->fin_written)) buffet__quic_unqueue(q, s);
}

/* The stream just written goes to the back of the write queue: streams share packets in turn. */
static void buffet__quic_rotate(buffet_net_quic *q, buffet__quic_stream *s) {
    if (!s || !s->in_wq || q->wq != s || !s->wnext) return;
    q->wq = s->wnext;
    s->wnext = NULL;
    q->wq_tail->wnext = s;
    q->wq_tail = s;
}

/* Write what ngtcp2 has to send (stream data round robin over the write queue, acknowledgements,
   retransmissions, control frames) into packets, BUFFET__QUIC_BATCH at a time, and send them. */
static buffet_result buffet__quic_flush(buffet_net_quic *q) {
    ngtcp2_tstamp ts;
    ngtcp2_path path;
    bool done = false;
    if (!q->conn || q->over) return q->over ? BUFFET_ERR_CLOSED : BUFFET_OK;
    q->dirty = false;
    if (buffet__quic_drain(q) == BUFFET_AGAIN) return BUFFET_OK;
    while (q->blocked) {   /* a window may have opened since: try them again */
        buffet__quic_stream *s = q->blocked;
        q->blocked = s->wnext;
        s->in_wq = false;
        buffet__quic_enqueue(q, s);
    }
    ts = buffet__quic_now();
    buffet__quic_path(q, &path);
    while (!done) {
        buffet_pkt *pkts[BUFFET__QUIC_BATCH];
        size_t n = 0, limit, room = ngtcp2_conn_get_path_max_tx_udp_payload_size(q->conn);
        limit = ngtcp2_conn_get_send_quantum(q->conn) / room;
        if (limit < 1) limit = 1;
        if (limit > BUFFET__QUIC_BATCH) limit = BUFFET__QUIC_BATCH;
        while (n < limit) {
            ngtcp2_pkt_info pi;
            uint8_t *dest;
            ngtcp2_ssize nw;
            buffet_pkt *p = buffet__quic_pkt(q, NULL, &dest, room);
            if (!p) {
                done = true;
                break;
            }
            for (;;) {
                buffet__quic_stream *s = q->wq;
                ngtcp2_vec vec[BUFFET__QUIC_VECS];
                struct iovec iov[BUFFET__QUIC_VECS];
                size_t cnt = 0, i, avail = 0;
                ngtcp2_ssize nd = -1;
                uint32_t fl = NGTCP2_WRITE_STREAM_FLAG_MORE;
                bool fin = false;
                if (s) {
                    cnt = buffet_chain_iovec(&s->tx, (size_t)(s->tx_off - s->tx_base), SIZE_MAX, iov, BUFFET__QUIC_VECS);
                    for (i = 0; i < cnt; i++) {
                        vec[i].base = (uint8_t *)iov[i].iov_base;
                        vec[i].len = iov[i].iov_len;
                        avail += iov[i].iov_len;
                    }
                    fin = s->fin_queued && s->tx_off + avail == s->tx_end;
                    if (fin) fl |= NGTCP2_WRITE_STREAM_FLAG_FIN;
                }
                memset(&pi, 0, sizeof pi);
                nw = ngtcp2_conn_writev_stream(q->conn, &path, &pi, dest, room, &nd, fl, s ? s->id : -1, vec, cnt, ts);
                if (nw == NGTCP2_ERR_WRITE_MORE) {
                    buffet__quic_wrote(q, s, nd, fin);
                    buffet__quic_rotate(q, s);
                    continue;
                }
                if (nw == NGTCP2_ERR_STREAM_DATA_BLOCKED && s) {
                    buffet__quic_unqueue(q, s);
                    s->in_wq = true;
                    s->wnext = q->blocked;
                    q->blocked = s;
                    continue;
                }
                if ((nw == NGTCP2_ERR_STREAM_SHUT_WR || nw == NGTCP2_ERR_STREAM_NOT_FOUND) && s) {
                    buffet__quic_unqueue(q, s);
                    continue;
                }
                if (nw < 0) {
                    buffet_pkt_free(q->cache, p);
                    if (n) buffet__quic_queue(q, pkts, n);
                    return buffet__quic_fail(q, (int)nw);
                }
                buffet__quic_wrote(q, s, nd, fin);
                if (nd > 0) buffet__quic_rotate(q, s);
                if (nw == 0) {
                    buffet_pkt_free(q->cache, p);
                    done = true;
                } else {
                    buffet_pkt_trim(p, room - (size_t)nw);
                    if (pi.ecn) {
                        buffet_net_meta *m = buffet_net_meta_of(p);
                        m->ecn = pi.ecn;
                        m->flags = BUFFET_NET_META_ECN;
                    }
                    pkts[n++] = p;
                }
                break;
            }
            if (done) break;
        }
        if (n && buffet__quic_queue(q, pkts, n) == BUFFET_AGAIN) done = true;
        ngtcp2_conn_update_pkt_tx_time(q->conn, ts);
        if (n < limit) done = true;
    }
    return BUFFET_OK;
}

/* >>quic: callbacks from ngtcp2 */
static buffet_net_quic *buffet__quic_of(void *user) { return (buffet_net_quic *)user; }

static void buffet__quic_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
    (void)ctx;
    if (gnutls_rnd(GNUTLS_RND_RANDOM, dest, len) != 0) memset(dest, 0, len);
}

static int buffet__quic_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *user) {
    buffet_net_quic *q = buffet__quic_of(user);
    (void)conn;
    if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    if (ngtcp2_crypto_generate_stateless_reset_token(token, q->reset_key, sizeof q->reset_key, cid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int buffet__quic_handshake_done(ngtcp2_conn *conn, void *user) {
    buffet_net_quic *q = buffet__quic_of(user);
    (void)conn;
    q->connected = true;
    buffet__quic_event(q, BUFFET_NET_QUIC_EV_CONNECTED, -1, BUFFET_OK, 0, NULL);
    return 0;
}

static int buffet__quic_stream_open(ngtcp2_conn *conn, int64_t id, void *user) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = buffet__quic_stream_new(q, id);
    if (!s) return NGTCP2_ERR_CALLBACK_FAILURE;
    ngtcp2_conn_set_stream_user_data(conn, id, s);
    buffet__quic_event(q, BUFFET_NET_QUIC_EV_STREAM_OPENED, id, BUFFET_OK, 0, NULL);
    return 0;
}

static void buffet__quic_readable(buffet_net_quic *q, buffet__quic_stream *s) {
    if (s->readable_told) return;
    s->readable_told = true;
    buffet__quic_event(q, BUFFET_NET_QUIC_EV_READABLE, s->id, BUFFET_OK, 0, NULL);
}

/* Copy received bytes to the end of s->rx: into the room left in its last buffer, then into
   fresh ones from the connection's source. */
static buffet_result buffet__quic_rx_copy(buffet_net_quic *q, buffet__quic_stream *s, const uint8_t *data, size_t len) {
    size_t size = q->rx_src.buf_size ? q->rx_src.buf_size : (size_t)16 << 10;
    while (len) {
        buffet_slice *t = q->rx_src.packets ? NULL : buffet__net_tail(&s->rx);
        size_t k;
        if (t) {
            k = t->buf->size - t->off - t->len;
            if (k > len) k = len;
            memcpy((unsigned char *)t->buf->data + t->off + t->len, data, k);
            t->len += k;
            s->rx.len += k;
        } else {
            struct iovec v;
            buffet_result r = buffet__net_stage(&s->rx, &q->rx_src, size, &v);
            if (r != BUFFET_OK) return r;
            k = v.iov_len < len ? v.iov_len : len;
            memcpy(v.iov_base, data, k);
            buffet_chain_trim(&s->rx, v.iov_len - k);
        }
        data += k;
        len -= k;
    }
    return BUFFET_OK;
}

static int buffet__quic_recv_stream(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset,
                                    const uint8_t *data, size_t len, void *user, void *sud) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = (buffet__quic_stream *)sud;
    (void)conn;
    (void)offset;
    if (!s) s = buffet__quic_find(q, id);
    if (!s) return NGTCP2_ERR_CALLBACK_FAILURE;
    if (s->app_reset) return 0;
    if (len && buffet__quic_rx_copy(q, s, data, len) != BUFFET_OK) return NGTCP2_ERR_CALLBACK_FAILURE;
    q->st.stream_bytes_received += len;
    if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) s->rx_fin = true;
    buffet__quic_readable(q, s);
    return 0;
}

static int buffet__quic_acked(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t len, void *user, void *sud) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = (buffet__quic_stream *)sud;
    uint64_t end = offset + len, n;
    (void)conn;
    (void)id;
    if (!s) return 0;
    if (end > s->tx_base) {   /* acknowledged in order: release the slices below `end` */
        n = end - s->tx_base;
        if (n > s->tx.len) n = s->tx.len;
        buffet_chain_consume(&s->tx, (size_t)n);
        s->tx_base += n;
        q->st.stream_bytes_acked += n;
    }
    if (s->fin_written && !s->sent_told && s->tx_base == s->tx_end) {
        s->sent_told = true;
        buffet__quic_event(q, BUFFET_NET_QUIC_EV_SENT, s->id, BUFFET_OK, 0, NULL);
    }
    return 0;
}

static int buffet__quic_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t app_error, void *user,
                                     void *sud) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = (buffet__quic_stream *)sud;
    bool err = (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) && app_error != 0;
    (void)conn;
    if (!s) {
        if (!buffet__quic_local(q, id)) buffet__quic_more_streams(q, id);
        return 0;
    }
    s->gone = true;
    buffet__quic_unqueue(q, s);
    q->unsent -= s->tx_end - s->tx_off;
    s->tx_off = s->tx_end;
    buffet_chain_deinit(&s->tx);   /* acknowledged, or given up by a reset: ngtcp2 reads none of it again */
    buffet__quic_event(q, BUFFET_NET_QUIC_EV_STREAM_CLOSED, id, err ? BUFFET_ERR_CLOSED : BUFFET_OK, err ? app_error : 0,
                       NULL);
    if (!s->rx_fin && !s->app_reset && buffet__quic_can_recv(q, id)) {
        s->rx_reset = true;
        if (!s->rx_error) s->rx_error = app_error;
        buffet__quic_readable(q, s);
    }
    buffet__quic_maybe_free(q, s);
    return 0;
}

static int buffet__quic_stream_reset(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t app_error, void *user,
                                     void *sud) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = (buffet__quic_stream *)sud;
    (void)conn;
    (void)id;
    (void)final_size;
    if (!s) return 0;
    s->rx_reset = true;
    s->rx_error = app_error;
    buffet__quic_readable(q, s);
    return 0;
}

static int buffet__quic_stop_sending(ngtcp2_conn *conn, int64_t id, uint64_t app_error, void *user, void *sud) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet__quic_stream *s = (buffet__quic_stream *)sud;
    (void)id;
    (void)app_error;
    if (!s) return 0;
    s->stopped = true;
    buffet__quic_unqueue(q, s);
    ngtcp2_conn_shutdown_stream_write(conn, s->id, app_error);
    return 0;
}

static int buffet__quic_streams_more(ngtcp2_conn *conn, uint64_t max, void *user) {
    buffet_net_quic *q = buffet__quic_of(user);
    (void)conn;
    (void)max;
    if (q->want_open) {
        q->want_open = false;
        buffet__quic_event(q, BUFFET_NET_QUIC_EV_WRITABLE, -1, BUFFET_OK, 0, NULL);
    }
    return 0;
}

static int buffet__quic_recv_dgram(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t len, void *user) {
    buffet_net_quic *q = buffet__quic_of(user);
    buffet_pkt *p = buffet_pkt_alloc(q->cache, len);
    void *dst = p ? (len ? buffet_pkt_append(p, len) : buffet_pkt_data(p)) : NULL;
    (void)conn;
    (void)flags;
    if (!dst) {
        if (p) buffet_pkt_free(q->cache, p);
        q->st.dgrams_dropped++;
        return 0;
    }
    if (len) memcpy(dst, data, len);
    q->st.dgrams_received++;
    buffet__quic_event(q, BUFFET_NET_QUIC_EV_DATAGRAM, -1, BUFFET_OK, 0, p);
    return 0;
}

static int buffet__quic_stateless_reset(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr, void *user) {
    (void)conn;
    (void)sr;
    buffet__quic_of(user)->reset_seen = true;
    return 0;
}

/* qlog is written only to count the packets ngtcp2 declares lost. */
static void buffet__quic_qlog(void *user, uint32_t flags, const void *data, size_t len) {
    buffet_net_quic *q = buffet__quic_of(user);
    static const char what[] = "packet_lost";
    const char *d = (const char *)data, *end = d + len;
    (void)flags;
    while ((size_t)(end - d) >= sizeof what - 1) {
        const char *hit = (const char *)memchr(d, 'p', (size_t)(end - d) - (sizeof what - 2));
        if (!hit) break;
        if (memcmp(hit, what, sizeof what - 1) == 0) q->st.lost++;
        d = hit + 1;
    }
}

static ngtcp2_conn *buffet__quic_get_conn(ngtcp2_crypto_conn_ref *ref) {
    return ((buffet_net_quic *)ref->user_data)->conn;
}

static void buffet__quic_callbacks(ngtcp2_callbacks *cb, bool server) {
    memset(cb, 0, sizeof *cb);
    if (server) {
        cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    } else {
        cb->client_initial = ngtcp2_crypto_client_initial_cb;
        cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    }
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->update_key = ngtcp2_crypto_update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = buffet__quic_rand;
    cb->get_new_connection_id = buffet__quic_new_cid;
    cb->handshake_completed = buffet__quic_handshake_done;
    cb->stream_open = buffet__quic_stream_open;
    cb->recv_stream_data = buffet__quic_recv_stream;
    cb->acked_stream_data_offset = buffet__quic_acked;
    cb->stream_close = buffet__quic_stream_close;
    cb->stream_reset = buffet__quic_stream_reset;
    cb->stream_stop_sending = buffet__quic_stop_sending;
    cb->extend_max_local_streams_bidi = buffet__quic_streams_more;
    cb->recv_datagram = buffet__quic_recv_dgram;
    cb->recv_stateless_reset = buffet__quic_stateless_reset;
}

/* >>quic: TLS */
/* A TLS session for the next connection (a server makes one again when a client's first packet
   turns out to be no QUIC). */
static buffet_result buffet__quic_session(buffet_net_quic *q, const char *server_name) {
    /* TLS 1.3 only, the AEADs QUIC defines, no middlebox compatibility records */
    static const char prio[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
                               "+CHACHA20-POLY1305:+AES-128-CCM:%DISABLE_TLS13_COMPAT_MODE";
    gnutls_datum_t alpn;
    if (q->tls) gnutls_deinit(q->tls);
    if (gnutls_init(&q->tls, (q->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
        q->tls = NULL;
        return BUFFET_ERR_NOMEM;
    }
    if (gnutls_priority_set_direct(q->tls, prio, NULL) != 0 ||
        (q->server ? ngtcp2_crypto_gnutls_configure_server_session(q->tls)
                   : ngtcp2_crypto_gnutls_configure_client_session(q->tls)) != 0 ||
        gnutls_credentials_set(q->tls, GNUTLS_CRD_CERTIFICATE, q->cred) != 0)
        return BUFFET_ERR_UNSUPPORTED;
    gnutls_session_set_ptr(q->tls, &q->ref);
    alpn.data = (unsigned char *)q->alpn;
    alpn.size = (unsigned)strlen(q->alpn);
    if (gnutls_alpn_set_protocols(q->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0) return BUFFET_ERR_INVALID;
    if (!q->server) {
        const char *name = server_name ? server_name : "localhost";
        unsigned char ip[16];
        /* SNI carries host names only (RFC 6066): an address is verified against the certificate's
           IP entries, not sent */
        bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
        if (!literal && gnutls_server_name_set(q->tls, GNUTLS_NAME_DNS, name, strlen(name)) != 0) return BUFFET_ERR_INVALID;
        if (!(q->flags & BUFFET_NET_QUIC_INSECURE)) gnutls_session_set_verify_cert(q->tls, name, 0);
    }
    return BUFFET_OK;
}

/* The credentials (a server's certificate and key, a client's trusted certificates), then the
   first session. */
static buffet_result buffet__quic_tls(buffet_net_quic *q, const buffet_net_quic_desc *d) {
    int rv;
    if (gnutls_certificate_allocate_credentials(&q->cred) != 0) return BUFFET_ERR_NOMEM;
    if (q->server) {
        rv = gnutls_certificate_set_x509_key_file(q->cred, d->cert_file, d->key_file, GNUTLS_X509_FMT_PEM);
        if (rv < 0) {
            BUFFET__LOG(NULL, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "quic: certificate %s / key %s: %s", d->cert_file,
                        d->key_file, gnutls_strerror(rv));
            return BUFFET_ERR_INVALID;
        }
    } else if (!(q->flags & BUFFET_NET_QUIC_INSECURE)) {
        rv = d->ca_file ? gnutls_certificate_set_x509_trust_file(q->cred, d->ca_file, GNUTLS_X509_FMT_PEM)
                        : gnutls_certificate_set_x509_system_trust(q->cred);
        if (rv <= 0) {
            BUFFET__LOG(NULL, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "quic: trusted certificates %s: %s",
                        d->ca_file ? d->ca_file : "(the system's)", rv < 0 ? gnutls_strerror(rv) : "none found");
            return BUFFET_ERR_INVALID;
        }
    }
    return buffet__quic_session(q, d->server_name);
}

/* >>quic: the public functions */
static buffet_result buffet__quic_conn(buffet_net_quic *q, const ngtcp2_cid *dcid, const ngtcp2_cid *odcid,
                                       uint32_t version) {
    ngtcp2_callbacks cb;
    ngtcp2_cid scid;
    ngtcp2_path path;
    ngtcp2_transport_params params = q->params;
    int rv;
    scid.datalen = BUFFET__QUIC_CIDLEN;
    buffet__quic_rand(scid.data, scid.datalen, NULL);
    buffet__quic_callbacks(&cb, q->server);
    buffet__quic_path(q, &path);
    q->settings.initial_ts = buffet__quic_now();
    if (q->server) {
        params.original_dcid = *odcid;
        params.stateless_reset_token_present = 1;
        if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, q->reset_key,
                                                         sizeof q->reset_key, &scid) != 0)
            return BUFFET_ERR_UNSUPPORTED;
        q->settings.qlog.odcid = *odcid;
        rv = ngtcp2_conn_server_new(&q->conn, dcid, &scid, &path, version, &cb, &q->settings, &params, NULL, q);
    } else {
        q->settings.qlog.odcid = *dcid;
        rv = ngtcp2_conn_client_new(&q->conn, dcid, &scid, &path, version, &cb, &q->settings, &params, NULL, q);
    }
    if (rv != 0) {
        q->conn = NULL;
        return rv == NGTCP2_ERR_NOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_INVALID;
    }
    ngtcp2_conn_set_tls_native_handle(q->conn, q->tls);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_create(buffet_net_quic **out, const buffet_net_quic_desc *d) {
    buffet_net_quic *q;
    buffet_result r;
    socklen_t len;
    int type = 0, cls, v = 0;
    size_t i;
    bool zero = true;
    if (out) *out = NULL;
    if (!out || !d || d->fd < 0 || !d->cache) return BUFFET_ERR_INVALID;
    len = sizeof type;
    if (getsockopt(d->fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM) return BUFFET_ERR_INVALID;
    if ((d->flags & BUFFET_NET_QUIC_SERVER) ? (!d->cert_file || !d->key_file)
                                            : (d->peer.sa.sa_family != AF_INET && d->peer.sa.sa_family != AF_INET6))
        return BUFFET_ERR_INVALID;
    if (d->alpn && (!d->alpn[0] || strlen(d->alpn) >= sizeof q->alpn)) return BUFFET_ERR_INVALID;
    if (buffet_pkt_pool_user_size(d->cache->pool) < sizeof(buffet_net_meta)) return BUFFET_ERR_UNSUPPORTED;
    cls = buffet_pkt_pool_class(d->cache->pool, BUFFET__QUIC_PAYLOAD);
    if (cls < 0) return BUFFET_ERR_UNSUPPORTED;
    q = (buffet_net_quic *)calloc(1, sizeof *q);
    if (!q) return BUFFET_ERR_NOMEM;
    q->fd = d->fd;
    q->flags = d->flags;
    q->server = (d->flags & BUFFET_NET_QUIC_SERVER) != 0;
    q->cache = d->cache;
    q->cls = (unsigned)cls;
    q->rx_src = d->rx;
    q->ref.get_conn = buffet__quic_get_conn;
    q->ref.user_data = q;
    snprintf(q->alpn, sizeof q->alpn, "%s", d->alpn ? d->alpn : "buffet");
    for (i = 0; i < sizeof d->reset_key; i++) zero = zero && d->reset_key[i] == 0;
    if (zero) buffet__quic_rand(q->reset_key, sizeof q->reset_key, NULL);
    else memcpy(q->reset_key, d->reset_key, sizeof q->reset_key);
    len = sizeof q->local;
    if (getsockname(d->fd, &q->local.sa, &len) != 0) {
        free(q);
        return BUFFET_ERR_INVALID;
    }
    /* UDP GSO where the kernel has it (a getsockopt of UDP_SEGMENT answers then) */
    len = sizeof v;
    q->gso = !(d->flags & BUFFET_NET_QUIC_NO_GSO) && getsockopt(d->fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
    buffet_net_udp_setup(d->fd, 0);   /* ECN and the local address: best effort */

    ngtcp2_settings_default(&q->settings);
    q->settings.max_stream_window = 16 * (d->stream_window ? d->stream_window : (uint64_t)1 << 20);
    q->settings.max_window = 16 * (d->conn_window ? d->conn_window : (uint64_t)4 << 20);
    q->settings.max_tx_udp_payload_size = BUFFET__QUIC_PAYLOAD;
    if (d->flags & BUFFET_NET_QUIC_COUNT_LOSS) q->settings.qlog.write = buffet__quic_qlog;
    ngtcp2_transport_params_default(&q->params);
    q->params.initial_max_stream_data_bidi_local = d->stream_window ? d->stream_window : (uint64_t)1 << 20;
    q->params.initial_max_stream_data_bidi_remote = q->params.initial_max_stream_data_bidi_local;
    q->params.initial_max_stream_data_uni = q->params.initial_max_stream_data_bidi_local;
    q->params.initial_max_data = d->conn_window ? d->conn_window : (uint64_t)4 << 20;
    q->params.initial_max_streams_bidi = d->max_streams ? d->max_streams : 100;
    q->params.initial_max_streams_uni = q->params.initial_max_streams_bidi;
    q->params.max_idle_timeout = (uint64_t)(d->idle_timeout_ms ? d->idle_timeout_ms : 30000) * NGTCP2_MILLISECONDS;
    q->params.max_datagram_frame_size = d->max_datagram;
    q->params.active_connection_id_limit = 4;

    r = buffet__quic_tls(q, d);
    if (r == BUFFET_OK && !q->server) {
        ngtcp2_cid dcid;
        q->peer = d->peer;
        dcid.datalen = BUFFET__QUIC_CIDLEN;
        buffet__quic_rand(dcid.data, dcid.datalen, NULL);
        r = buffet__quic_conn(q, &dcid, NULL, NGTCP2_PROTO_VER_V1);
        if (r == BUFFET_OK) {
            r = buffet__quic_flush(q);
            if (r == BUFFET_ERR_CLOSED) r = BUFFET_ERR_INVALID;
        }
    }
    if (r != BUFFET_OK) {
        buffet_net_quic_destroy(q);
        return r;
    }
    *out = q;
    return BUFFET_OK;
}

BUFFET_API void buffet_net_quic_destroy(buffet_net_quic *q) {
    size_t i;
    if (!q) return;
    if (q->conn) ngtcp2_conn_del(q->conn);   /* first: it may call back about streams */
    q->conn = NULL;
    while (q->streams) buffet__quic_stream_free(q, q->streams);
    for (i = 0; i < q->pend_n; i++) buffet_pkt_free(q->cache, q->pend[(q->pend_head + i) % (2 * BUFFET__QUIC_BATCH)]);
    for (i = 0; i < q->ev_n; i++) {
        buffet_net_quic_event *e = &q->ev[(q->ev_head + i) % q->ev_cap];
        if (e->pkt) buffet_pkt_free(q->cache, e->pkt);
    }
    free(q->ev);
    if (q->tls) gnutls_deinit(q->tls);
    if (q->cred) gnutls_certificate_free_credentials(q->cred);
    free(q);
}

/* A server's first client: a valid Initial makes the connection; anything else is dropped (a
   short-header packet for a connection this server does not know gets a stateless reset, so that
   the client of an earlier server on this port with the same key learns at once). */
static bool buffet__quic_accept(buffet_net_quic *q, const buffet_net_meta *m, const uint8_t *data, size_t len) {
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0) {
        ngtcp2_version_cid vc;
        if (len > 41 && !(data[0] & 0x80) && ngtcp2_pkt_decode_version_cid(&vc, data, len, BUFFET__QUIC_CIDLEN) == 0) {
            ngtcp2_cid cid;
            uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[32], *dest;
            buffet_pkt *p;
            ngtcp2_ssize nw;
            ngtcp2_cid_init(&cid, vc.dcid, vc.dcidlen);
            p = buffet__quic_pkt(q, NULL, &dest, BUFFET__QUIC_PAYLOAD);
            if (p && ngtcp2_crypto_generate_stateless_reset_token(token, q->reset_key, sizeof q->reset_key, &cid) == 0) {
                buffet__quic_rand(rnd, sizeof rnd, NULL);
                /* smaller than what came, so that two endpoints cannot loop */
                nw = ngtcp2_pkt_write_stateless_reset(dest, len - 1, token, rnd, len - 1 - 16 < sizeof rnd ? len - 1 - 16 : sizeof rnd);
                if (nw > 0) {
                    buffet_pkt_trim(p, BUFFET__QUIC_PAYLOAD - (size_t)nw);
                    buffet_net_meta_of(p)->peer = m->peer;
                    buffet__quic_queue(q, &p, 1);
                    p = NULL;
                }
            }
            if (p) buffet_pkt_free(q->cache, p);
        }
        return false;
    }
    q->peer = m->peer;
    if (buffet__quic_conn(q, &hd.scid, &hd.dcid, hd.version) != BUFFET_OK) {
        memset(&q->peer, 0, sizeof q->peer);
        return false;
    }
    return true;
}

/* One datagram into ngtcp2. */
static buffet_result buffet__quic_input(buffet_net_quic *q, buffet_pkt *p, ngtcp2_tstamp ts) {
    buffet_net_meta *m = buffet_net_meta_of(p);
    ngtcp2_path path;
    ngtcp2_pkt_info pi;
    const uint8_t *data;
    bool first = false;
    int rv;
    q->st.rx_datagrams++;
    q->st.rx_bytes += p->pkt_len;
    if (p->nb_segs != 1 || (m->flags & BUFFET_NET_META_TRUNC) ||
        (q->conn ? !buffet__quic_same_addr(&m->peer, &q->peer) : !q->server)) {
        q->st.rx_dropped++;
        return BUFFET_OK;
    }
    data = (const uint8_t *)buffet_pkt_data(p);
    if (!q->conn) {
        if (!buffet__quic_accept(q, m, data, p->len)) {
            q->st.rx_dropped++;
            return BUFFET_OK;
        }
        first = true;
    }
    buffet__quic_path(q, &path);
    memset(&pi, 0, sizeof pi);
    if (m->flags & BUFFET_NET_META_ECN) pi.ecn = m->ecn;
    rv = ngtcp2_conn_read_pkt(q->conn, &path, &pi, data, p->len, ts);
    if (rv == 0) return BUFFET_OK;
    if (first && rv != NGTCP2_ERR_CRYPTO) {   /* it looked like an Initial but was none: wait for a client */
        ngtcp2_conn_del(q->conn);
        q->conn = NULL;
        memset(&q->peer, 0, sizeof q->peer);
        q->st.rx_dropped++;
        return buffet__quic_session(q, NULL);
    }
    if (rv == NGTCP2_ERR_DRAINING) {   /* the peer closed, or reset */
        ngtcp2_connection_close_error cc;
        ngtcp2_conn_get_connection_close_error(q->conn, &cc);
        if (q->reset_seen) buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_RESET, 0, 0, false);
        else
            buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_PEER, cc.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION,
                              cc.error_code, true);
        return BUFFET_ERR_CLOSED;
    }
    if (rv == NGTCP2_ERR_CLOSING) return BUFFET_ERR_CLOSED;
    if (rv == NGTCP2_ERR_DROP_CONN) {
        buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_LOCAL, 0, 0, false);
        return BUFFET_ERR_CLOSED;
    }
    if (rv == NGTCP2_ERR_DISCARD_PKT) {
        q->st.rx_dropped++;
        return BUFFET_OK;
    }
    return buffet__quic_fail(q, rv);
}

/* After input: streams that wait for window, told when there is some. */
static void buffet__quic_tell_writable(buffet_net_quic *q) {
    buffet__quic_stream *s;
    uint64_t conn_left;
    if (!q->conn || q->over) return;
    conn_left = ngtcp2_conn_get_max_data_left(q->conn);
    if (conn_left <= q->unsent) return;
    for (s = q->streams; s; s = s->next) {
        uint64_t left, unsent;
        if (!s->want_write) continue;
        left = ngtcp2_conn_get_max_stream_data_left(q->conn, s->id);
        unsent = s->tx_end - s->tx_off;
        if (left > unsent) {
            s->want_write = false;
            buffet__quic_event(q, BUFFET_NET_QUIC_EV_WRITABLE, s->id, BUFFET_OK, 0, NULL);
        }
    }
}

BUFFET_API buffet_result buffet_net_quic_on_readable(buffet_net_quic *q) {
    buffet_pkt *pkts[64];
    buffet_result r = BUFFET_OK, end = BUFFET_OK;
    if (!q) return BUFFET_ERR_INVALID;
    if (q->over) return BUFFET_ERR_CLOSED;
    for (;;) {
        size_t got = 0, i;
        ngtcp2_tstamp ts;
        r = buffet_net_udp_recv(q->fd, q->cache, -1, pkts, 64, &got);
        if (r == BUFFET_ERR_TRUNCATED) r = BUFFET_OK;
        ts = buffet__quic_now();
        for (i = 0; i < got; i++) {
            if (end == BUFFET_OK && !q->over) end = buffet__quic_input(q, pkts[i], ts);
            buffet_pkt_free(q->cache, pkts[i]);
        }
        if (r != BUFFET_OK || got < 64 || q->over) break;
    }
    if (q->over) return end == BUFFET_ERR_NOMEM ? end : BUFFET_ERR_CLOSED;
    buffet__quic_tell_writable(q);
    end = buffet__quic_flush(q);
    if (end != BUFFET_OK) return end;
    return r == BUFFET_AGAIN ? BUFFET_OK : r;
}

BUFFET_API buffet_result buffet_net_quic_on_timer(buffet_net_quic *q) {
    int rv;
    if (!q) return BUFFET_ERR_INVALID;
    if (q->over) return BUFFET_ERR_CLOSED;
    if (!q->conn) return BUFFET_OK;
    if (ngtcp2_conn_get_expiry(q->conn) <= buffet__quic_now()) {
        rv = ngtcp2_conn_handle_expiry(q->conn, buffet__quic_now());
        if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
            buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_IDLE, 0, 0, false);
            return BUFFET_ERR_CLOSED;
        }
        if (rv != 0) return buffet__quic_fail(q, rv);
    }
    buffet__quic_tell_writable(q);
    return buffet__quic_flush(q);
}

BUFFET_API int buffet_net_quic_timeout_ms(const buffet_net_quic *q) {
    ngtcp2_tstamp exp, now;
    if (!q || q->over) return -1;
    if (!q->conn) return q->pend_n ? 0 : -1;
    if (q->dirty) return 0;
    exp = ngtcp2_conn_get_expiry(q->conn);
    if (exp == UINT64_MAX) return -1;
    now = buffet__quic_now();
    if (exp <= now) return 0;
    exp = (exp - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    return exp > INT32_MAX ? INT32_MAX : (int)exp;
}

BUFFET_API bool buffet_net_quic_blocked(const buffet_net_quic *q) { return q && q->pend_n > 0; }

BUFFET_API size_t buffet_net_quic_events(buffet_net_quic *q, buffet_net_quic_event *ev, size_t max) {
    size_t n = 0;
    if (!q || !ev) return 0;
    while (n < max && q->ev_n) {
        buffet_net_quic_event *e = &q->ev[q->ev_head];
        if (e->type == BUFFET_NET_QUIC_EV_READABLE) {
            buffet__quic_stream *s = buffet__quic_find(q, e->stream);
            if (s) s->readable_told = false;
        }
        ev[n++] = *e;
        q->ev_head = (q->ev_head + 1) % q->ev_cap;
        q->ev_n--;
    }
    return n;
}

BUFFET_API buffet_result buffet_net_quic_open(buffet_net_quic *q, int64_t *stream) {
    buffet__quic_stream *s;
    int64_t id;
    int rv;
    if (!q || !stream) return BUFFET_ERR_INVALID;
    if (!q->connected || q->over) return BUFFET_ERR_STATE;
    rv = ngtcp2_conn_open_bidi_stream(q->conn, &id, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
        q->want_open = true;
        return BUFFET_AGAIN;
    }
    if (rv != 0) return rv == NGTCP2_ERR_NOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_STATE;
    s = buffet__quic_stream_new(q, id);
    if (!s) {
        ngtcp2_conn_shutdown_stream(q->conn, id, 0);
        return BUFFET_ERR_NOMEM;
    }
    ngtcp2_conn_set_stream_user_data(q->conn, id, s);
    *stream = id;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_send(buffet_net_quic *q, int64_t stream, buffet_chain *c, unsigned flags,
                                              size_t *taken) {
    buffet__quic_stream *s;
    uint64_t left, conn_left, n;
    size_t i;
    buffet_result r;
    if (taken) *taken = 0;
    if (!q || !c || (flags & ~(unsigned)BUFFET_NET_QUIC_FIN)) return BUFFET_ERR_INVALID;
    if (q->over) return BUFFET_ERR_CLOSED;
    s = buffet__quic_find(q, stream);
    if (!s || !buffet__quic_can_send(q, stream) || s->app_reset) return BUFFET_ERR_INVALID;
    if (s->stopped || s->gone) return BUFFET_ERR_CLOSED;
    if (s->fin_queued) return BUFFET_ERR_STATE;
    for (i = 0; i < buffet_chain_count(c); i++)
        if (!buffet_slice_data(buffet_chain_at(c, i))) return BUFFET_ERR_INVALID;
    left = ngtcp2_conn_get_max_stream_data_left(q->conn, stream);
    conn_left = ngtcp2_conn_get_max_data_left(q->conn);
    left = left > s->tx_end - s->tx_off ? left - (s->tx_end - s->tx_off) : 0;
    conn_left = conn_left > q->unsent ? conn_left - q->unsent : 0;
    n = c->len;
    if (n > left) n = left;
    if (n > conn_left) n = conn_left;
    if (n == c->len) {
        r = buffet_chain_concat(&s->tx, c);
    } else if (n) {
        buffet_chain rest;
        buffet_chain_init(&rest, c->allocator);
        r = buffet_chain_split(c, (size_t)n, &rest);
        if (r == BUFFET_OK) {
            r = buffet_chain_concat(&s->tx, c);
            buffet_chain_concat(c, &rest);   /* the rest back: c's array had room for all of it */
        }
        buffet_chain_deinit(&rest);
    } else {
        r = BUFFET_OK;
    }
    if (r != BUFFET_OK) return r;
    s->tx_end += n;
    q->unsent += n;
    if (taken) *taken = (size_t)n;
    if ((flags & BUFFET_NET_QUIC_FIN) && c->len == 0) s->fin_queued = true;
    if (s->tx_end > s->tx_off || (s->fin_queued && !s->fin_written)) buffet__quic_enqueue(q, s);
    if (c->len) s->want_write = true;
    r = buffet__quic_flush(q);
    if (r != BUFFET_OK) return r;
    return c->len ? BUFFET_AGAIN : BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_recv(buffet_net_quic *q, int64_t stream, buffet_chain *out, size_t max,
                                              size_t *got) {
    buffet__quic_stream *s;
    buffet_result r;
    size_t n;
    if (got) *got = 0;
    if (!q || !out) return BUFFET_ERR_INVALID;
    s = buffet__quic_find(q, stream);
    if (!s || !buffet__quic_can_recv(q, stream) || s->app_reset) return BUFFET_ERR_INVALID;
    n = s->rx.len;
    if (n == 0) {
        if (!s->rx_fin && !s->rx_reset) return q->over ? BUFFET_ERR_CLOSED : BUFFET_AGAIN;
        s->end_taken = true;
        buffet__quic_maybe_free(q, s);
        return BUFFET_ERR_CLOSED;
    }
    if (max && max < n) n = max;
    if (n == s->rx.len) {
        r = buffet_chain_concat(out, &s->rx);
    } else {
        buffet_chain rest;
        buffet_chain_init(&rest, s->rx.allocator);
        r = buffet_chain_split(&s->rx, n, &rest);
        if (r == BUFFET_OK) {
            r = buffet_chain_concat(out, &s->rx);
            buffet_chain_concat(&s->rx, &rest);   /* what was not taken (or, on failure, all) stays */
        }
        buffet_chain_deinit(&rest);
    }
    if (r != BUFFET_OK) return r;
    if (got) *got = n;
    if (q->conn && !q->over) {
        if (!s->gone) ngtcp2_conn_extend_max_stream_offset(q->conn, stream, n);
        ngtcp2_conn_extend_max_offset(q->conn, n);
        q->dirty = true;
    }
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_reset(buffet_net_quic *q, int64_t stream, uint64_t app_error) {
    buffet__quic_stream *s;
    if (!q) return BUFFET_ERR_INVALID;
    s = buffet__quic_find(q, stream);
    if (!s || s->app_reset) return BUFFET_ERR_INVALID;
    s->app_reset = true;
    buffet__quic_unqueue(q, s);
    buffet_chain_deinit(&s->rx);
    if (q->conn && !q->over && !s->gone) {
        ngtcp2_conn_shutdown_stream(q->conn, stream, app_error);
        q->dirty = true;
    }
    buffet__quic_maybe_free(q, s);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_send_datagram(buffet_net_quic *q, buffet_pkt **pp) {
    ngtcp2_vec vec[BUFFET__QUIC_VECS];
    ngtcp2_pkt_info pi;
    ngtcp2_path path;
    const ngtcp2_transport_params *rp;
    buffet_pkt *p, *seg, *out;
    uint8_t *dest;
    size_t n = 0, room;
    ngtcp2_ssize nw;
    int accepted = 0;
    if (!q || !pp || !*pp) return BUFFET_ERR_INVALID;
    p = *pp;
    if (q->over) return BUFFET_ERR_CLOSED;
    if (!q->connected) return BUFFET_ERR_STATE;
    rp = ngtcp2_conn_get_remote_transport_params(q->conn);
    if (!rp || rp->max_datagram_frame_size == 0) return BUFFET_ERR_UNSUPPORTED;
    for (seg = p; seg; seg = seg->next) {
        if (n == BUFFET__QUIC_VECS) return BUFFET_ERR_TOO_LARGE;
        vec[n].base = (uint8_t *)buffet_pkt_data(seg);
        vec[n++].len = seg->len;
    }
    if (buffet__quic_drain(q) == BUFFET_AGAIN) return BUFFET_AGAIN;
    room = ngtcp2_conn_get_path_max_tx_udp_payload_size(q->conn);
    memset(&pi, 0, sizeof pi);
    out = buffet__quic_pkt(q, NULL, &dest, room);
    if (!out) return buffet_alloc_error(NULL);
    buffet__quic_path(q, &path);
    nw = ngtcp2_conn_writev_datagram(q->conn, &path, &pi, dest, room, &accepted, NGTCP2_DATAGRAM_FLAG_NONE, q->dgram_id++,
                                     vec, n, buffet__quic_now());
    if (nw <= 0) {
        buffet_pkt_free(q->cache, out);
        if (nw == 0) return BUFFET_AGAIN;
        if (nw == NGTCP2_ERR_INVALID_ARGUMENT) return BUFFET_ERR_TOO_LARGE;
        if (nw == NGTCP2_ERR_INVALID_STATE) return BUFFET_ERR_UNSUPPORTED;
        return buffet__quic_fail(q, (int)nw);
    }
    buffet_pkt_trim(out, room - (size_t)nw);
    buffet__quic_queue(q, &out, 1);
    if (!accepted) return BUFFET_AGAIN;
    q->st.dgrams_sent++;
    buffet_pkt_free(q->cache, p);
    *pp = NULL;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_net_quic_close(buffet_net_quic *q, uint64_t app_error) {
    ngtcp2_connection_close_error cc;
    if (!q) return BUFFET_ERR_INVALID;
    if (q->over) return BUFFET_ERR_STATE;
    ngtcp2_connection_close_error_default(&cc);
    ngtcp2_connection_close_error_set_application_error(&cc, app_error, NULL, 0);
    if (!q->conn) {   /* a server no client reached */
        buffet__quic_over(q, BUFFET_NET_QUIC_CLOSE_LOCAL, 1, app_error, true);
        return BUFFET_OK;
    }
    buffet__quic_close_with(q, &cc, BUFFET_NET_QUIC_CLOSE_LOCAL);
    return BUFFET_OK;
}

BUFFET_API buffet_net_quic_stats buffet_net_quic_get_stats(const buffet_net_quic *q) {
    buffet_net_quic_stats s;
    memset(&s, 0, sizeof s);
    if (!q) return s;
    s = q->st;
    if (q->conn) {
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(q->conn, &cs);
        s.rtt_ns = cs.smoothed_rtt;
        s.cwnd = cs.cwnd;
        s.pto = cs.pto_count;
    }
    return s;
}
#endif /* BUFFET_NET_QUIC */

#endif /* BUFFET_IMPLEMENTATION */

/* buffet_net.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
