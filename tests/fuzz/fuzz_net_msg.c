/* fuzz_net_msg.c - libFuzzer target for the two parsers of buffet_net.h that read what another
   process or the kernel hands over, which fuzz_net.c (a byte stream) does not reach.

   Descriptors: the input makes messages of the "BFDS" v1 wire format the way a hostile peer
   would: real descriptors attached with SCM_RIGHTS over an AF_UNIX SOCK_SEQPACKET or SOCK_DGRAM
   socketpair (sealed, shrinkable, unsealed, write-sealed and read-only memfds, empty ones, a
   temporary file, a pipe, a socket, a directory), then lies in them: magic, version, flags and
   reserved fields, buffer and slice counts, sizes, slice indexes, offsets and lengths (0, past
   the end, overflowing), the message cut short or made longer, longer than any valid one,
   descriptors missing, extra, swapped, the same file twice, more than max_fds; raw bytes too.
   Each message is taken by buffet__net_fds_recv_one or by buffet_net_recv_chain_fds (several
   messages flagged MORE, the sender closing between them), with options (max_size, max_fds,
   UNSEALED, SECURE) and a failing allocator under the headers and the chain. A model decodes the
   same bytes by the manual and says which result is due; a refusal must leave the output chain
   exactly as it was, an acceptance must append exactly the bytes the slices name, read back
   from the files, through a mapping shared with them.

   Control messages: cmsg sequences built from the input in a control buffer of exactly
   msg_controllen heap bytes (so ASan and valgrind see any read past it): pktinfo v4/v6, TOS,
   TCLASS, timestamps, UDP_GRO, unknown levels and types, short payloads, lengths that lie (0,
   below a header, past the buffer, near SIZE_MAX), buffers cut short or with trailing bytes.
   After buffet__net_read_cmsgs the meta is in range (ECN 0..3, only known flags, a local
   address only with META_LOCAL, GRO sizes only 1..65535) and, for well-formed sequences,
   exactly what the last control message of each kind said. GRO split: datagrams of 0..65000
   bytes cut at segment sizes of 0, 1, the length -1, +0, +1, dividing it or not, into at most
   max packets (also past what the clone class holds), directly and via buffet_net_udp_split:
   the pieces share the received buffer, lie end to end in order and their lengths sum to the
   datagram's.

   After every input: the process has exactly the descriptors it had (/proc/self/fd: none
   leaked, none closed twice: every close of our own descriptors must succeed), and the debug
   allocator under everything holds nothing.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_net_msg.c -o fuzz_net_msg
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments. */
#define BUFFET_IMPLEMENTATION
#include "../../buffet_net.h"
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FM_STEPS 24
#define FM_BUFS 4          /* buffers a generated message names */
#define FM_ATTACH 16       /* descriptors a message carries at most */
#define FM_OWN 48          /* descriptors one operation makes at most */
#define FM_MSG_ROOM (BUFFET__NET_FDS_MSG_MAX + 512)
#define FM_FILE_MAX 9000   /* bytes of a file */
#define FM_OUT_MAX (1u << 18)
#define FM_FDSET 4096

/* What a descriptor really is, whatever the message says. */
enum {
    K_SEALED,        /* memfd sealed against shrinking and growing: the good one */
    K_SHRINK_ONLY,   /* sealed against shrinking only: accepted */
    K_UNSEALED,      /* no seal: UNSAFE unless UNSEALED */
    K_WRITE_SEALED,  /* F_SEAL_WRITE: a shared writable mapping fails (SYSTEM) */
    K_READ_ONLY,     /* the memfd opened O_RDONLY: the mapping fails (SYSTEM) */
    K_EMPTY,         /* 0 bytes: INVALID */
    K_TMPFILE,       /* a regular file (no shrink seal): as K_UNSEALED */
    K_PIPE, K_SOCKET, K_DIR,   /* no regular file: INVALID */
    K_COUNT
};

typedef struct fm_file { int fd, kind; size_t size; unsigned char seed; } fm_file;

typedef struct fm_msg {
    unsigned char b[FM_MSG_ROOM];
    size_t len;
    fm_file att[FM_ATTACH];   /* what goes with it, in SCM_RIGHTS order */
    size_t natt;
    bool sent;
} fm_msg;

typedef struct fm {
    fz_in in;
    buffet_debug *dbg;
    buffet_allocator a;
    buffet_failing fail;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    int sv[2], type;
    bool passcred, closed;
    buffet_chain out;            /* what every accepted message appended, kept across operations */
    unsigned char *model;        /* out's bytes */
    size_t model_len;
    int own[FM_OWN];             /* descriptors this operation made: closed (exactly once) at its end */
    size_t nown;
    unsigned char seed;
    fm_msg msg[3];
    unsigned char scratch[FM_MSG_ROOM];
} fm;

/* ---------------------------------------------------------------------------------------------
   Descriptors of the process */

typedef struct fm_fdset { int n; int fd[FM_FDSET]; } fm_fdset;

static int fm_cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void fm_fds_now(fm_fdset *s) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    s->n = 0;
    FZ_CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d)) continue;
        FZ_CHECK(s->n < FM_FDSET);
        s->fd[s->n++] = fd;
    }
    closedir(d);
    qsort(s->fd, (size_t)s->n, sizeof s->fd[0], fm_cmp_int);
}

static int fm_keep(fm *S, int fd) {
    FZ_CHECK(fd >= 0 && S->nown < FM_OWN);
    S->own[S->nown++] = fd;
    return fd;
}

/* Every descriptor the operation made is still ours: a close that fails means buffet closed it. */
static void fm_close_own(fm *S) {
    size_t i;
    for (i = 0; i < S->nown; i++) FZ_CHECK(close(S->own[i]) == 0);
    S->nown = 0;
}

/* ---------------------------------------------------------------------------------------------
   Files */

static unsigned char fm_content(unsigned char seed, size_t i) { return (unsigned char)(seed * 7u + i * 131u + (i >> 8)); }

static bool fm_is_file(int kind) { return kind < K_PIPE; }

static int fm_memfd(fm *S, size_t size, unsigned char seed, int seals) {
    int fd = memfd_create("fuzz_net_msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t i;
    FZ_CHECK(fd >= 0);
    fm_keep(S, fd);
    for (i = 0; i < size; i++) S->scratch[i] = fm_content(seed, i);
    FZ_CHECK(ftruncate(fd, (off_t)size) == 0);
    FZ_CHECK(size == 0 || pwrite(fd, S->scratch, size, 0) == (ssize_t)size);
    FZ_CHECK(seals == 0 || fcntl(fd, F_ADD_SEALS, seals) == 0);
    return fd;
}

static fm_file fm_make(fm *S, int kind, size_t size) {
    fm_file f;
    int p[2];
    f.kind = kind;
    f.size = kind == K_EMPTY || !fm_is_file(kind) ? 0 : size;
    f.seed = S->seed++;
    switch (kind) {
    case K_SEALED: f.fd = fm_memfd(S, f.size, f.seed, F_SEAL_SHRINK | F_SEAL_GROW); break;
    case K_SHRINK_ONLY: case K_EMPTY: f.fd = fm_memfd(S, f.size, f.seed, F_SEAL_SHRINK); break;
    case K_UNSEALED: f.fd = fm_memfd(S, f.size, f.seed, 0); break;
    case K_WRITE_SEALED: f.fd = fm_memfd(S, f.size, f.seed, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE); break;
    case K_READ_ONLY: {
        char path[64];
        int rw = fm_memfd(S, f.size, f.seed, F_SEAL_SHRINK), ro;
        snprintf(path, sizeof path, "/proc/self/fd/%d", rw);
        ro = open(path, O_RDONLY | O_CLOEXEC);
        if (ro < 0) { f.kind = K_SEALED; f.fd = rw; break; }   /* no /proc: an ordinary sealed memfd */
        f.fd = fm_keep(S, ro);
        break;
    }
    case K_TMPFILE: {
        size_t i;
        int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0) { f.kind = K_UNSEALED; f.fd = fm_memfd(S, f.size, f.seed, 0); break; }
        f.fd = fm_keep(S, fd);
        for (i = 0; i < f.size; i++) S->scratch[i] = fm_content(f.seed, i);
        FZ_CHECK(pwrite(fd, S->scratch, f.size, 0) == (ssize_t)f.size);
        break;
    }
    case K_PIPE:
        FZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
        f.fd = fm_keep(S, p[0]);
        fm_keep(S, p[1]);
        break;
    case K_SOCKET:
        FZ_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p) == 0);
        f.fd = fm_keep(S, p[0]);
        fm_keep(S, p[1]);
        break;
    default:
        f.fd = fm_keep(S, open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        break;
    }
    return f;
}

/* Mostly good files: the deep checks need messages that get that far. */
static int fm_pick_kind(fm *S) {
    unsigned k = fz_u8(&S->in);
    return k < 160 ? K_SEALED : (int)(k % K_COUNT);
}

/* ---------------------------------------------------------------------------------------------
   Messages */

static void fm_put(unsigned char *p, uint64_t v, int bytes) {
    int i;
    for (i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t fm_get(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    int i;
    for (i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A lie about a number: near it, 0, or at the ends of its type. */
static uint64_t fm_lie(fm *S, uint64_t v, uint64_t type_max) {
    switch (fz_u8(&S->in) % 8) {
    case 0: return 0;
    case 1: return v + 1;
    case 2: return v - 1;
    case 3: return type_max;
    case 4: return type_max - fz_u8(&S->in);
    case 5: return v + 4096;
    case 6: return v * 2;
    default: return fz_u64(&S->in) & type_max;
    }
}

static void fm_attach_extra(fm *S, fm_msg *M, int kind) {
    if (M->natt < FM_ATTACH) M->att[M->natt++] = fm_make(S, kind, 1 + fz_u16(&S->in) % FM_FILE_MAX);
}

static void fm_mutate(fm *S, fm_msg *M) {
    size_t nb = (size_t)fm_get(M->b + 8, 2), k = (size_t)fm_get(M->b + 12, 4), i, j;
    /* where the slices are (by the counts the message was made with, before any lie) */
    size_t slices = BUFFET__NET_FDS_HEADER + 8 * (nb <= FM_BUFS ? nb : 0);
    switch (fz_u8(&S->in) % 16) {
    case 0: M->b[fz_u8(&S->in) % 4] ^= (unsigned char)(1 + fz_u8(&S->in) % 255); break;
    case 1: fm_put(M->b + 4, fm_lie(S, 1, 0xffff), 2); break;
    case 2: fm_put(M->b + 6, fm_get(M->b + 6, 2) | (1u << (1 + fz_u8(&S->in) % 15)), 2); break;
    case 3: fm_put(M->b + 10, 1 + fz_u8(&S->in), 2); break;
    case 4: fm_put(M->b + 8, fm_lie(S, nb, 0xffff), 2); break;
    case 5: fm_put(M->b + 12, fm_lie(S, k, 0xffffffffu), 4); break;
    case 6: if (M->len) M->len -= 1 + fz_u16(&S->in) % M->len; break;   /* cut: even below the header */
    case 7: {   /* trailing bytes */
        size_t n = 1 + fz_u8(&S->in) % 48;
        for (i = 0; i < n && M->len < FM_MSG_ROOM; i++) M->b[M->len++] = fz_u8(&S->in);
        break;
    }
    case 8: if (M->natt) M->natt--; break;   /* a descriptor missing (still ours: closed at the end) */
    case 9: fm_attach_extra(S, M, fm_pick_kind(S)); break;
    case 10:   /* a size that is not the file's */
        if (nb > 0 && nb <= FM_BUFS) {
            i = fz_u8(&S->in) % nb;
            fm_put(M->b + BUFFET__NET_FDS_HEADER + 8 * i, fm_lie(S, fm_get(M->b + BUFFET__NET_FDS_HEADER + 8 * i, 8), UINT64_MAX), 8);
        }
        break;
    case 11:   /* a slice that lies */
        if (k > 0 && k <= 64 && nb <= FM_BUFS && slices + 24 * k <= M->len) {
            unsigned char *s = M->b + slices + 24 * (fz_u8(&S->in) % k);
            switch (fz_u8(&S->in) % 4) {
            case 0: fm_put(s, fm_lie(S, fm_get(s, 4), 0xffffffffu), 4); break;
            case 1: fm_put(s + 4, 1 + fz_u8(&S->in), 4); break;
            case 2: fm_put(s + 8, fm_lie(S, fm_get(s + 8, 8), UINT64_MAX), 8); break;
            default: fm_put(s + 16, fm_lie(S, fm_get(s + 16, 8), UINT64_MAX), 8); break;
            }
        }
        break;
    case 12: {   /* longer than any valid message */
        size_t to = BUFFET__NET_FDS_MSG_MAX + 1 + fz_u8(&S->in);
        if (to > M->len) {
            memset(M->b + M->len, 0, to - M->len);
            M->len = to;
        }
        break;
    }
    case 13: {   /* more descriptors than a small max_fds takes */
        size_t n = 1 + fz_u8(&S->in) % 8;
        for (i = 0; i < n; i++) fm_attach_extra(S, M, K_SEALED);
        break;
    }
    case 14:   /* the descriptors in another order than the sizes */
        if (M->natt >= 2) {
            fm_file t;
            i = fz_u8(&S->in) % M->natt;
            j = fz_u8(&S->in) % M->natt;
            t = M->att[i];
            M->att[i] = M->att[j];
            M->att[j] = t;
        }
        break;
    default:   /* one file under two descriptors */
        if (M->natt >= 2) {
            i = fz_u8(&S->in) % M->natt;
            j = fz_u8(&S->in) % M->natt;
            M->att[j] = M->att[i];
            M->att[j].fd = fm_keep(S, fcntl(M->att[i].fd, F_DUPFD_CLOEXEC, 0));
        }
        break;
    }
}

/* A message the way buffet_net_send_chain_fds makes it, then (often) lied in. */
static void fm_gen(fm *S, fm_msg *M, bool more) {
    size_t nb = 1 + fz_u8(&S->in) % FM_BUFS, k = 1 + fz_u8(&S->in) % 6, i, n;
    unsigned char *p = M->b + BUFFET__NET_FDS_HEADER;
    M->natt = 0;
    for (i = 0; i < nb; i++) {
        size_t size = fz_u8(&S->in) & 1 ? 4096 * (1 + fz_u8(&S->in) % 2) : 1 + fz_u16(&S->in) % FM_FILE_MAX;
        M->att[M->natt++] = fm_make(S, fm_pick_kind(S), size);
        /* the size the sender names: the file's (an empty one or no file: some size) */
        fm_put(p, M->att[i].size ? M->att[i].size : size, 8);
        p += 8;
    }
    for (i = 0; i < k; i++, p += BUFFET__NET_FDS_SLICE) {
        size_t b = fz_u8(&S->in) % nb, size = (size_t)fm_get(M->b + BUFFET__NET_FDS_HEADER + 8 * b, 8);
        size_t off = fz_u16(&S->in) % size;
        fm_put(p, b, 4);
        fm_put(p + 4, 0, 4);
        fm_put(p + 8, off, 8);
        fm_put(p + 16, 1 + fz_u16(&S->in) % (size - off), 8);
    }
    fm_put(M->b, BUFFET__NET_FDS_MAGIC, 4);
    fm_put(M->b + 4, BUFFET_NET_FDS_VERSION, 2);
    fm_put(M->b + 6, more ? BUFFET__NET_FDS_MORE : 0, 2);
    fm_put(M->b + 8, nb, 2);
    fm_put(M->b + 10, 0, 2);
    fm_put(M->b + 12, k, 4);
    M->len = (size_t)(p - M->b);
    n = fz_u8(&S->in);
    n = n < 140 ? 0 : 1 + n % 3;
    while (n--) fm_mutate(S, M);
}

/* Raw bytes from the input, with a few good descriptors; often with a right magic and version
   so that the field checks behind them are reached. */
static void fm_raw(fm *S, fm_msg *M) {
    size_t n = fz_u8(&S->in), i, nfds = fz_u8(&S->in) % 3;
    unsigned how = fz_u8(&S->in);
    for (i = 0; i < n; i++) M->b[i] = fz_u8(&S->in);
    M->len = n;
    if ((how & 1) && n >= 6) {
        fm_put(M->b, BUFFET__NET_FDS_MAGIC, 4);
        fm_put(M->b + 4, BUFFET_NET_FDS_VERSION, 2);
    }
    M->natt = 0;
    for (i = 0; i < nfds; i++) fm_attach_extra(S, M, K_SEALED);
}

/* Send M; pid not 0: with SCM_CREDENTIALS claiming that sender (root may name any live
   process). Returns whether the claim went; M->sent says whether M did. */
static bool fm_send(fm *S, fm_msg *M, pid_t pid) {
    union {
        struct cmsghdr align;
        unsigned char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(FM_ATTACH * sizeof(int))];
    } ctl;
    struct msghdr m;
    struct iovec v;
    struct cmsghdr *cm = NULL;
    size_t i;
    memset(&m, 0, sizeof m);
    memset(&ctl, 0, sizeof ctl);
    v.iov_base = M->b;
    v.iov_len = M->len;
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    if (pid) {
        struct ucred cred;
        cred.pid = pid;
        cred.uid = getuid();
        cred.gid = getgid();
        m.msg_controllen = CMSG_SPACE(sizeof cred);
        cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_CREDENTIALS;
        cm->cmsg_len = CMSG_LEN(sizeof cred);
        memcpy(CMSG_DATA(cm), &cred, sizeof cred);
    }
    if (M->natt) {
        m.msg_controllen += CMSG_SPACE(M->natt * sizeof(int));
        cm = cm ? CMSG_NXTHDR(&m, cm) : CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(M->natt * sizeof(int));
        for (i = 0; i < M->natt; i++) memcpy(CMSG_DATA(cm) + i * sizeof(int), &M->att[i].fd, sizeof(int));
    }
    if (!m.msg_controllen) m.msg_control = NULL;
    M->sent = !S->closed && sendmsg(S->sv[0], &m, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)M->len;
    if (!M->sent && pid && (errno == EPERM || errno == ESRCH)) return fm_send(S, M, 0);   /* not allowed to claim */
    return pid != 0 && M->sent;
}

/* ---------------------------------------------------------------------------------------------
   The model: the manual's checks, in the manual's order, on the bytes that were sent */

static buffet_result fm_map_expect(const fm_file *f, uint64_t named, uint32_t flags) {
    if (!fm_is_file(f->kind) || f->size == 0) return BUFFET_ERR_INVALID;
    if (f->size > named) return BUFFET_ERR_TOO_LARGE;
    if ((f->kind == K_UNSEALED || f->kind == K_TMPFILE) && !(flags & BUFFET_BUF_UNSEALED)) return BUFFET_ERR_UNSAFE;
    if (f->kind == K_WRITE_SEALED || f->kind == K_READ_ONLY) return BUFFET_ERR_SYSTEM;   /* no shared writable map */
    if (f->size < named) return BUFFET_ERR_RANGE;
    return BUFFET_OK;
}

/* What receiving M must give; on BUFFET_OK its bytes go to the model and *more its flag. */
static buffet_result fm_expect(fm *S, const fm_msg *M, const buffet_net_fds_opts *o, bool foreign, bool *more) {
    const unsigned char *b = M->b, *sizes = b + BUFFET__NET_FDS_HEADER, *sl;
    size_t max_fds = o->max_fds ? o->max_fds : BUFFET_NET_FDS_MAX, nb, k, i, j;
    uint64_t flags;
    buffet_result r;
    *more = false;
    if (!M->sent) return S->closed && S->type == SOCK_SEQPACKET ? BUFFET_ERR_CLOSED : BUFFET_AGAIN;
    if (M->len > BUFFET__NET_FDS_MSG_MAX || M->natt > max_fds) return BUFFET_ERR_TRUNCATED;
    if (M->len == 0 && M->natt == 0 && S->type == SOCK_SEQPACKET) return BUFFET_ERR_CLOSED;   /* reads as end of file */
    if (foreign) return BUFFET_ERR_INVALID;   /* a part of the chain from another sender */
    if (M->len < BUFFET__NET_FDS_HEADER || fm_get(b, 4) != BUFFET__NET_FDS_MAGIC) return BUFFET_ERR_INVALID;
    if (fm_get(b + 4, 2) != 1) return BUFFET_ERR_UNSUPPORTED;
    flags = fm_get(b + 6, 2);
    nb = (size_t)fm_get(b + 8, 2);
    k = (size_t)fm_get(b + 12, 4);
    if ((flags & ~(uint64_t)1) || fm_get(b + 10, 2) || nb == 0 || k == 0 || nb > 253 || k > 512 ||
        M->len != 16 + 8 * nb + 24 * k || M->natt != nb)
        return BUFFET_ERR_INVALID;
    for (i = 0; i < nb; i++) {
        uint64_t size = fm_get(sizes + 8 * i, 8);
        if (size == 0) return BUFFET_ERR_INVALID;
        if (o->max_size && size > o->max_size) return BUFFET_ERR_TOO_LARGE;
    }
    for (i = 0, sl = sizes + 8 * nb; i < k; i++, sl += 24) {
        uint64_t bi = fm_get(sl, 4), off = fm_get(sl + 8, 8), n = fm_get(sl + 16, 8);
        if (bi >= nb || fm_get(sl + 4, 4) || n == 0) return BUFFET_ERR_INVALID;
        if (off > fm_get(sizes + 8 * bi, 8) || n > fm_get(sizes + 8 * bi, 8) - off) return BUFFET_ERR_RANGE;
    }
    for (i = 0; i < nb; i++)
        if ((r = fm_map_expect(&M->att[i], fm_get(sizes + 8 * i, 8), o->flags)) != BUFFET_OK) return r;
    for (i = 0, sl = sizes + 8 * nb; i < k; i++, sl += 24) {
        const fm_file *f = &M->att[fm_get(sl, 4)];
        size_t off = (size_t)fm_get(sl + 8, 8), n = (size_t)fm_get(sl + 16, 8);
        S->model = (unsigned char *)realloc(S->model, S->model_len + n);
        FZ_CHECK(S->model != NULL);
        for (j = 0; j < n; j++) S->model[S->model_len + j] = fm_content(f->seed, off + j);
        S->model_len += n;
    }
    *more = (flags & 1) != 0;
    return BUFFET_OK;
}

/* out holds exactly the model's bytes; every slice is a whole shared mapping of a sealed file. */
static void fm_check_out(fm *S) {
    size_t i, at = 0;
    FZ_CHECK(buffet_chain_len(&S->out) == S->model_len);
    for (i = 0; i < buffet_chain_count(&S->out); i++) {
        const buffet_slice *s = buffet_chain_at(&S->out, i);
        FZ_CHECK(s->buf->kind == BUFFET_BUF_SHM && s->buf->fd >= 0 && s->off + s->len <= s->buf->size);
        FZ_CHECK(memcmp(buffet_slice_data(s), S->model + at, s->len) == 0);
        at += s->len;
    }
}

/* What a refusal must not touch. */
typedef struct fm_snap { size_t len, count; buffet_slice *s; } fm_snap;

static fm_snap fm_snap_take(const buffet_chain *c) {
    fm_snap n;
    size_t i;
    n.len = buffet_chain_len(c);
    n.count = buffet_chain_count(c);
    n.s = (buffet_slice *)malloc((n.count + 1) * sizeof *n.s);
    FZ_CHECK(n.s != NULL);
    for (i = 0; i < n.count; i++) n.s[i] = *buffet_chain_at(c, i);
    return n;
}

/* c holds the snapshot unchanged (refused), or the snapshot then new slices (accepted). */
static void fm_snap_check(const fm_snap *n, const buffet_chain *c, bool grown) {
    size_t i;
    FZ_CHECK(grown ? buffet_chain_count(c) > n->count && buffet_chain_len(c) > n->len
                   : buffet_chain_count(c) == n->count && buffet_chain_len(c) == n->len);
    for (i = 0; i < n->count; i++) {
        const buffet_slice *s = buffet_chain_at(c, i);
        FZ_CHECK(s->buf == n->s[i].buf && s->off == n->s[i].off && s->len == n->s[i].len);
    }
}

/* The receiver's mapping is the sender's file, not a copy: a byte written through one is read
   through the other. */
static void fm_check_shared(const buffet_chain *c, size_t from, const fm_msg *M) {
    const buffet_slice *s = buffet_chain_at(c, from);
    unsigned char *p, old, seen = 0;
    size_t i;
    bool found = false;
    if (!s) return;
    p = (unsigned char *)buffet_slice_data(s);
    old = *p;
    *p = (unsigned char)(old ^ 0x5a);
    for (i = 0; i < M->natt && !found; i++)
        if (pread(M->att[i].fd, &seen, 1, (off_t)s->off) == 1 && seen == *p) {
            /* this file's byte followed ours; make sure it was not a coincidence */
            *p = (unsigned char)(old ^ 0xa5);
            found = pread(M->att[i].fd, &seen, 1, (off_t)s->off) == 1 && seen == *p;
            *p = (unsigned char)(old ^ 0x5a);
        }
    *p = old;
    FZ_CHECK(found);
}

/* Drain what a refusal or a stopped chain left queued, closing every descriptor that came. */
static void fm_drain(fm *S) {
    int i;
    for (i = 0; i < 8; i++) {
        union { struct cmsghdr align; unsigned char b[BUFFET__NET_FDS_CTL + 256]; } ctl;
        struct msghdr m;
        struct iovec v;
        struct cmsghdr *cm;
        ssize_t r;
        memset(&m, 0, sizeof m);
        v.iov_base = S->scratch;
        v.iov_len = sizeof S->scratch;
        m.msg_iov = &v;
        m.msg_iovlen = 1;
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof ctl.b;
        r = recvmsg(S->sv[1], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (r < 0) break;
        for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int), j;
                for (j = 0; j < n; j++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + j * sizeof(int), sizeof fd);
                    FZ_CHECK(close(fd) == 0);
                }
            }
        if (r == 0 && S->closed) break;
    }
}

static void fm_pair(fm *S) {
    FZ_CHECK(socketpair(AF_UNIX, S->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, S->sv) == 0);
    if (S->passcred) FZ_CHECK(buffet_net_passcred(S->sv[1]) == BUFFET_OK);
    S->closed = false;
}

static buffet_net_fds_opts fm_opts(fm *S) {
    buffet_net_fds_opts o;
    unsigned sel = fz_u8(&S->in);
    memset(&o, 0, sizeof o);
    o.allocator = buffet_failing_allocator(&S->fail);
    if ((sel & 3) == 2) o.max_fds = 1 + fz_u8(&S->in) % 4;
    if ((sel & 3) == 3) o.max_fds = 1 + fz_u8(&S->in) % 253;
    if ((sel & 12) == 4) o.max_size = 1 + fz_u16(&S->in);
    if (sel & 16) o.flags |= BUFFET_BUF_UNSEALED;
    if ((sel & 0xe0) == 0xe0) o.flags |= BUFFET_BUF_SECURE;
    return o;
}

/* Allocation failures under the headers and the chain, now and then. */
static void fm_arm(fm *S) {
    unsigned k = fz_u8(&S->in);
    S->fail.fail_at = k < 200 ? 0 : S->fail.allocs + 1 + k % 6;
    S->fail.fail_after = (k & 1) != 0;
}

/* Was r what the model wants, allowing for the failures injected and for mlock's limit? */
static bool fm_result_ok(fm *S, buffet_result r, buffet_result want, uint64_t failures_before, uint32_t flags) {
    if (r == want) return true;
    if (r == BUFFET_ERR_NOMEM && S->fail.failures > failures_before) return true;
    return r == BUFFET_ERR_NOMEM && (flags & BUFFET_BUF_SECURE);   /* mlock past RLIMIT_MEMLOCK */
}

static void fm_peer_check(const fm *S, const buffet_net_peer *peer) {
    FZ_CHECK(peer->pid == (int32_t)getpid() && peer->uid == (uint32_t)getuid());
    FZ_CHECK(peer->source == (uint32_t)(S->passcred ? BUFFET_NET_PEER_MESSAGE : BUFFET_NET_PEER_SOCKET));
}

/* ---------------------------------------------------------------------------------------------
   Operations */

/* One message, taken by recv_one or by the public call. */
static void op_fds_one(fm *S, bool raw) {
    fm_msg *M = &S->msg[0];
    buffet_net_fds_opts o;
    buffet_net_peer peer;
    buffet_result want, r;
    bool more = false, want_more, public_call, grown;
    buffet_net_faults faults;
    size_t model_before = S->model_len, count_before = buffet_chain_count(&S->out);
    uint64_t failures;
    fm_snap snap;
    if (raw) fm_raw(S, M);
    else fm_gen(S, M, fz_u8(&S->in) < 64);
    o = fm_opts(S);
    public_call = fz_u8(&S->in) & 1;
    fm_send(S, M, 0);
    if (public_call && (fz_u8(&S->in) & 3) == 0) {
        /* bad arguments are refused before anything is read: the message stays queued */
        buffet_net_fds_opts bad = o;
        bad.max_fds = BUFFET_NET_FDS_MAX + 1;
        FZ_CHECK(buffet_net_recv_chain_fds(S->sv[1], &S->out, &bad, NULL) == BUFFET_ERR_INVALID);
        bad = o;
        bad.flags |= BUFFET_BUF_HUGETLB;
        FZ_CHECK(buffet_net_recv_chain_fds(S->sv[1], &S->out, &bad, NULL) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_net_recv_chain_fds(S->sv[1], NULL, &o, NULL) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_net_recv_chain_fds(S->sv[0] + 100000, &S->out, &o, NULL) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_net_recv_chain_fds(fm_make(S, K_SEALED, 1).fd, &S->out, &o, NULL) == BUFFET_ERR_INVALID);
    }
    want = fm_expect(S, M, &o, false, &want_more);
    snap = fm_snap_take(&S->out);
    failures = S->fail.failures;
    fm_arm(S);
    memset(&peer, 0, sizeof peer);
    memset(&faults, 0, sizeof faults);
    faults.fd = S->sv[1];
    faults.seed = fz_u8(&S->in);
    faults.intr_per_million = faults.seed & 1 ? 600000 : 0;   /* retried inside */
    faults.again_per_million = faults.seed & 2 ? 300000 : 0;
    buffet_net_faults_set(&faults);
    if (public_call) {
        /* no options: the defaults (nothing in o that the defaults lack) */
        bool plain = o.max_fds == 0 && o.max_size == 0 && o.flags == 0 && (fz_u8(&S->in) & 1);
        r = buffet_net_recv_chain_fds(S->sv[1], &S->out, plain ? NULL : &o, &peer);
    } else {
        r = buffet__net_fds_recv_one(S->sv[1], S->type, &S->out, &o, fz_u8(&S->in) & 1 ? &peer : NULL, &more);
    }
    buffet_net_faults_set(NULL);
    S->fail.fail_at = 0;
    grown = buffet_chain_count(&S->out) > snap.count;
    /* a message flagged MORE wants another: none is queued */
    if (public_call && r == BUFFET_AGAIN && want == BUFFET_OK && want_more && grown) r = BUFFET_OK, more = true;
    /* the fault layer's EAGAIN: nothing read, the message still queued */
    if (r == BUFFET_AGAIN && faults.agains > 0 && !grown) want = BUFFET_AGAIN;
    if (!fm_result_ok(S, r, want, failures, o.flags)) {
        fprintf(stderr, "fuzz_net_msg: got %s, the model wants %s\n", buffet_result_str(r), buffet_result_str(want));
        FZ_CHECK(r == want);
    }
    if (r != BUFFET_OK) S->model_len = model_before;   /* refused: nothing of it may be in out */
    fm_snap_check(&snap, &S->out, r == BUFFET_OK);
    free(snap.s);
    if (r == BUFFET_OK) {
        FZ_CHECK(more == want_more);
        if (public_call) fm_peer_check(S, &peer);
        fm_check_shared(&S->out, count_before, M);
    }
    fm_check_out(S);
    fm_drain(S);
}

/* A chain of one to three messages, all but (usually) the last flagged MORE, taken by one call. */
static void op_fds_chain(fm *S) {
    size_t n = 1 + fz_u8(&S->in) % 3, i, model_before = S->model_len;
    buffet_net_fds_opts o;
    buffet_net_peer peer;
    buffet_result want = BUFFET_AGAIN, r;
    bool close_after = (fz_u8(&S->in) & 7) == 0, foreign[3] = {false, false, false};
    uint64_t failures;
    for (i = 0; i < n; i++) {
        bool more = i + 1 < n;
        /* a later part claiming another sender (the kernel tells the receiver only with passcred) */
        bool claim = i > 0 && (fz_u8(&S->in) & 7) == 0;
        if ((fz_u8(&S->in) & 15) == 0) more = !more;
        fm_gen(S, &S->msg[i], more);
        foreign[i] = fm_send(S, &S->msg[i], claim ? getppid() : 0) && S->passcred;
    }
    if (close_after) {
        FZ_CHECK(close(S->sv[0]) == 0);
        S->closed = true;
    }
    o = fm_opts(S);
    /* the model: messages in order until one is refused or one ends the chain */
    for (i = 0; i < n; i++) {
        bool more;
        size_t before = S->model_len;
        want = fm_expect(S, &S->msg[i], &o, foreign[i], &more);
        if (want != BUFFET_OK) {
            S->model_len = before;
            break;
        }
        if (!more) break;
        want = i + 1 < n ? BUFFET_OK : close_after && S->type == SOCK_SEQPACKET ? BUFFET_ERR_CLOSED : BUFFET_AGAIN;
    }
    failures = S->fail.failures;
    fm_arm(S);
    r = buffet_net_recv_chain_fds(S->sv[1], &S->out, &o, &peer);
    S->fail.fail_at = 0;
    if (r == BUFFET_ERR_NOMEM && S->fail.failures > failures) {
        /* a failure part-way: out keeps whole messages that came before it, so the model cannot
           say which; it takes buffet's word for out's length and checks the bytes */
        FZ_CHECK(buffet_chain_len(&S->out) >= model_before && buffet_chain_len(&S->out) <= S->model_len);
        S->model_len = buffet_chain_len(&S->out);
    } else if (!(close_after && S->type == SOCK_DGRAM && want == BUFFET_AGAIN && r == BUFFET_ERR_CLOSED)) {
        if (!fm_result_ok(S, r, want, failures, o.flags)) {
            fprintf(stderr, "fuzz_net_msg: chain got %s, the model wants %s\n", buffet_result_str(r), buffet_result_str(want));
            FZ_CHECK(r == want);
        }
        if (r == BUFFET_ERR_NOMEM) S->model_len = buffet_chain_len(&S->out);   /* mlock's limit part-way */
    }
    if (r == BUFFET_OK) fm_peer_check(S, &peer);
    fm_check_out(S);
    fm_drain(S);
    if (S->closed) {
        FZ_CHECK(close(S->sv[1]) == 0);
        fm_pair(S);
    }
}

/* ---------------------------------------------------------------------------------------------
   Control messages */

#define FM_CTL 512

typedef struct fm_cmsg { int level, type; size_t dlen; unsigned char data[48]; } fm_cmsg;

static void fm_cmsg_pick(fm *S, fm_cmsg *c) {
    static const int levels[5] = {IPPROTO_IP, IPPROTO_IPV6, SOL_SOCKET, SOL_UDP, 0};
    unsigned what = fz_u8(&S->in) % 8;
    size_t i;
    int v;
    switch (what) {
    case 0: c->level = IPPROTO_IP; c->type = IP_PKTINFO; c->dlen = sizeof(struct in_pktinfo); break;
    case 1: c->level = IPPROTO_IPV6; c->type = IPV6_PKTINFO; c->dlen = sizeof(struct in6_pktinfo); break;
    case 2: c->level = IPPROTO_IP; c->type = IP_TOS; c->dlen = 1; break;
    case 3: c->level = IPPROTO_IPV6; c->type = IPV6_TCLASS; c->dlen = sizeof(int); break;
    case 4: c->level = SOL_SOCKET; c->type = SCM_TIMESTAMPNS; c->dlen = sizeof(struct timespec); break;
    case 5: case 6: c->level = SOL_UDP; c->type = UDP_GRO; c->dlen = sizeof(int); break;
    default:   /* a level and a type nobody asked for, or a known level with another type */
        c->level = levels[fz_u8(&S->in) % 5];
        if (c->level == 0) c->level = (int)fz_u16(&S->in);
        c->type = fz_u8(&S->in);
        c->dlen = fz_u8(&S->in) % 41;
        break;
    }
    if ((fz_u8(&S->in) & 7) == 0 && c->dlen) c->dlen = fz_u8(&S->in) % c->dlen;   /* a short payload */
    for (i = 0; i < c->dlen; i++) c->data[i] = fz_u8(&S->in);
    if (c->level == SOL_UDP && c->type == UDP_GRO && c->dlen >= sizeof v) {
        static const int sizes[8] = {0, 1, 2, 1200, 65535, 65536, -1, 70000};
        unsigned k = fz_u8(&S->in);
        v = k < 128 ? sizes[k % 8] : (int)fz_u32(&S->in);
        memcpy(c->data, &v, sizeof v);
    }
}

static void op_cmsgs(fm *S) {
    union { struct cmsghdr align; unsigned char b[FM_CTL]; } ctl;
    fm_cmsg list[8];
    size_t n = fz_u8(&S->in) % 8, at = 0, i, controllen;
    bool clean = true;
    struct msghdr h;
    unsigned char *mem, peer_bytes[sizeof(buffet_net_addr)];
    buffet_pkt *p = buffet_pkt_alloc(S->cache, 64);
    buffet_net_meta *m, want;
    uint64_t want_ts = 12345;
    unsigned mode;
    FZ_CHECK(p != NULL && (m = buffet_net_meta_of(p)) != NULL);
    memset(&ctl, 0, sizeof ctl);
    for (i = 0; i < n; i++) {
        struct cmsghdr *cm;
        unsigned lie;
        fm_cmsg_pick(S, &list[i]);
        if (at + CMSG_SPACE(list[i].dlen) > sizeof ctl.b) break;
        cm = (struct cmsghdr *)(void *)(ctl.b + at);
        cm->cmsg_level = list[i].level;
        cm->cmsg_type = list[i].type;
        cm->cmsg_len = CMSG_LEN(list[i].dlen);
        memcpy(CMSG_DATA(cm), list[i].data, list[i].dlen);
        lie = fz_u8(&S->in);
        if (lie < 40) {   /* a length that lies */
            static const size_t lens[8] = {0, 1, sizeof(struct cmsghdr) - 1, sizeof(struct cmsghdr), 1000, SIZE_MAX,
                                           SIZE_MAX - 6, (size_t)1 << 40};
            cm->cmsg_len = lie < 32 ? lens[lie % 8] : CMSG_LEN(list[i].dlen) + 1 + fz_u8(&S->in);
            clean = false;
        }
        at += CMSG_SPACE(list[i].dlen);
    }
    n = i;
    mode = fz_u8(&S->in) % 8;
    controllen = at;
    if (mode == 5) controllen = at - fz_u16(&S->in) % (at + 1);                 /* cut short */
    if (mode == 6) controllen = fz_u8(&S->in) % (sizeof(struct cmsghdr) + 1);   /* not even a header */
    if (mode == 7) controllen = at + fz_u16(&S->in) % (sizeof ctl.b - at + 1);   /* zero bytes after */
    if (controllen != at) clean = false;
    /* exactly controllen heap bytes: a read past them is ASan's and valgrind's to see */
    mem = (unsigned char *)malloc(controllen ? controllen : 1);
    FZ_CHECK(mem != NULL);
    memcpy(mem, ctl.b, controllen);
    memset(&h, 0, sizeof h);
    h.msg_control = mem;
    h.msg_controllen = controllen;
    /* as buffet_net_udp_recv leaves it: the peer written, the rest clean */
    memset(m, 0, sizeof *m);
    memset(&m->peer, 0xab, sizeof m->peer);
    memcpy(peer_bytes, &m->peer, sizeof peer_bytes);
    p->timestamp = 12345;
    buffet__net_read_cmsgs(&h, m, p);
    free(mem);

    /* in range, whatever the control buffer said */
    FZ_CHECK(memcmp(&m->peer, peer_bytes, sizeof peer_bytes) == 0 && m->wire_len == 0);
    FZ_CHECK((m->flags & ~(BUFFET_NET_META_LOCAL | BUFFET_NET_META_ECN)) == 0);
    FZ_CHECK(m->ecn <= 3 && (m->ecn == 0 || (m->flags & BUFFET_NET_META_ECN)));
    if (m->flags & BUFFET_NET_META_LOCAL) {
        FZ_CHECK(m->local.sa.sa_family == AF_INET || m->local.sa.sa_family == AF_INET6);
        if (m->local.sa.sa_family == AF_INET) FZ_CHECK(m->local.in4.sin_port == 0);
        else FZ_CHECK(m->local.in6.sin6_port == 0 && m->local.in6.sin6_flowinfo == 0 && m->local.in6.sin6_scope_id == 0);
    } else {
        buffet_net_addr zero;
        memset(&zero, 0, sizeof zero);
        FZ_CHECK(memcmp(&m->local, &zero, sizeof zero) == 0 && m->ifindex == 0);
    }

    /* well formed: exactly what the last message of each kind said */
    if (clean) {
        memset(&want, 0, sizeof want);
        memcpy(&want.peer, peer_bytes, sizeof peer_bytes);
        for (i = 0; i < n; i++) {
            const fm_cmsg *c = &list[i];
            int v;
            if (c->level == IPPROTO_IP && c->type == IP_PKTINFO && c->dlen >= sizeof(struct in_pktinfo)) {
                struct in_pktinfo pi;
                memcpy(&pi, c->data, sizeof pi);
                memset(&want.local, 0, sizeof want.local);
                want.local.in4.sin_family = AF_INET;
                want.local.in4.sin_addr = pi.ipi_addr;
                want.ifindex = (uint32_t)pi.ipi_ifindex;
                want.flags |= BUFFET_NET_META_LOCAL;
            } else if (c->level == IPPROTO_IPV6 && c->type == IPV6_PKTINFO && c->dlen >= sizeof(struct in6_pktinfo)) {
                struct in6_pktinfo pi;
                memcpy(&pi, c->data, sizeof pi);
                memset(&want.local, 0, sizeof want.local);
                want.local.in6.sin6_family = AF_INET6;
                want.local.in6.sin6_addr = pi.ipi6_addr;
                want.ifindex = pi.ipi6_ifindex;
                want.flags |= BUFFET_NET_META_LOCAL;
            } else if (c->level == IPPROTO_IP && c->type == IP_TOS && c->dlen >= 1) {
                want.ecn = (uint8_t)(c->data[0] & 3);
                want.flags |= BUFFET_NET_META_ECN;
            } else if (c->level == IPPROTO_IPV6 && c->type == IPV6_TCLASS && c->dlen >= sizeof v) {
                memcpy(&v, c->data, sizeof v);
                want.ecn = (uint8_t)(v & 3);
                want.flags |= BUFFET_NET_META_ECN;
            } else if (c->level == SOL_SOCKET && c->type == SCM_TIMESTAMPNS && c->dlen >= sizeof(struct timespec)) {
                struct timespec ts;
                memcpy(&ts, c->data, sizeof ts);
                want_ts = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            } else if (c->level == SOL_UDP && c->type == UDP_GRO && c->dlen >= sizeof v) {
                memcpy(&v, c->data, sizeof v);
                /* the kernel's gso_size is 16 bits: anything else is no segment size */
                want.seg_size = v > 0 && v <= 65535 ? (uint16_t)v : 0;
            }
        }
        FZ_CHECK(memcmp(&m->local, &want.local, sizeof want.local) == 0);
        FZ_CHECK(m->ifindex == want.ifindex && m->seg_size == want.seg_size && m->ecn == want.ecn &&
                 m->flags == want.flags && p->timestamp == want_ts);
    }
    buffet_pkt_free(S->cache, p);
}

/* ---------------------------------------------------------------------------------------------
   GRO split */

static void op_split(fm *S) {
    buffet_pkt *out[96], *p;
    unsigned cls = fz_u8(&S->in) % 3, sel = fz_u8(&S->in) % 8;
    size_t L, seg, max, made = 0, want, j, sum = 0, room;
    bool via_public = fz_u8(&S->in) & 1;
    unsigned char *base;
    buffet_result r;
    p = buffet_pkt_alloc_class(S->cache, cls);
    if (!p) return;
    room = buffet_pkt_tailroom(p);
    L = cls == 0 ? fz_u8(&S->in) % (room + 1) : fz_u16(&S->in) % (room + 1);
    base = (unsigned char *)buffet_pkt_append(p, L);
    FZ_CHECK(base != NULL || L == 0);
    base = (unsigned char *)buffet_pkt_data(p);
    for (j = 0; j < L; j++) base[j] = fm_content(S->seed, j);
    switch (sel) {
    case 0: seg = 0; break;
    case 1: seg = 1; break;
    case 2: seg = L ? L - 1 : 0; break;
    case 3: seg = L; break;
    case 4: seg = L + 1; break;
    case 5: seg = L / (2 + fz_u8(&S->in) % 9); break;   /* divides it, or not */
    case 6: seg = 1 + fz_u16(&S->in) % (L + 1); break;
    default: seg = fz_u16(&S->in); break;
    }
    max = fz_u8(&S->in) % 97;
    if (via_public) {
        buffet_net_meta *m = buffet_net_meta_of(p);
        FZ_CHECK(m != NULL);
        memset(m, 0, sizeof *m);
        m->seg_size = (uint16_t)seg;
        m->wire_len = (uint32_t)L;
        if ((fz_u8(&S->in) & 3) == 0) {   /* refused, nothing touched */
            buffet_pkt *q = buffet_pkt_alloc_class(S->cache, 0);
            made = 7;
            FZ_CHECK(buffet_net_udp_split(NULL, p, out, 4, &made) == BUFFET_ERR_INVALID && made == 0);
            FZ_CHECK(buffet_net_udp_split(S->cache, NULL, out, 4, &made) == BUFFET_ERR_INVALID && made == 0);
            FZ_CHECK(buffet_net_udp_split(S->cache, p, NULL, 4, &made) == BUFFET_ERR_INVALID && made == 0);
            FZ_CHECK(buffet_net_udp_split(S->cache, p, out, 4, NULL) == BUFFET_ERR_INVALID);
            if (q && buffet_pkt_append(q, 1) && buffet_pkt_chain(p, q) == BUFFET_OK) {
                /* a chain of segments is no received datagram */
                FZ_CHECK(buffet_net_udp_split(S->cache, p, out, 4, &made) == BUFFET_ERR_INVALID && made == 0);
                FZ_CHECK(p->len == L && p->pkt_len == L + 1);
                buffet_pkt_free(S->cache, p);
                return;
            }
            if (q) buffet_pkt_free(S->cache, q);
            FZ_CHECK(p->len == L && p->pkt_len == L);
        }
        r = buffet_net_udp_split(S->cache, p, out, max, &made);
        if (max == 0) {
            FZ_CHECK(r == BUFFET_ERR_INVALID && made == 0);
            buffet_pkt_free(S->cache, p);
            return;
        }
    } else {
        if (max == 0) max = 1;   /* the receive path never asks for less */
        r = buffet__net_split(S->cache, p, seg, out, max, &made);
    }
    want = seg == 0 || L <= seg || max < 2 ? 1 : (L + seg - 1) / seg < max ? (L + seg - 1) / seg : max;
    FZ_CHECK(made >= 1 && made <= max && out[0] == p);
    if (r == BUFFET_OK) FZ_CHECK(made == want);
    else FZ_CHECK((r == BUFFET_ERR_EXHAUSTED || r == BUFFET_ERR_NOMEM) && made < want);
    /* the pieces lie end to end in the one received buffer, in order */
    for (j = 0; j < made; j++) {
        buffet_pkt *q = out[j];
        unsigned char *d = (unsigned char *)buffet_pkt_data(q);
        FZ_CHECK(q->buf == p->buf && q->next == NULL && q->nb_segs == 1 && q->len == q->pkt_len);
        FZ_CHECK(d == base + j * seg && (uint64_t)q->data_off + q->len <= q->buf_len);
        FZ_CHECK(j + 1 == made ? q->len == L - j * (made > 1 ? seg : 0) : q->len == seg);
        FZ_CHECK(q->len == 0 || (d[0] == fm_content(S->seed, j * seg) && d[q->len - 1] == fm_content(S->seed, j * seg + q->len - 1)));
        if (via_public) FZ_CHECK(buffet_net_meta_of(q)->seg_size == (uint16_t)seg);
        sum += q->len;
    }
    FZ_CHECK(sum == L);
    for (j = 0; j < made; j++) buffet_pkt_free(S->cache, out[j]);
}

/* ---------------------------------------------------------------------------------------------
   The run */

#ifdef __cplusplus
extern "C"
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fm_fdset before, after;
    fm *S = (fm *)calloc(1, sizeof *S);
    buffet_debug_desc dd;
    buffet_pkt_pool_desc pd;
    buffet_debug_stats st;
    int steps = 0;
    unsigned first;
    FZ_CHECK(S != NULL);
    fm_fds_now(&before);
    S->in.p = data;
    S->in.n = size;
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;
    FZ_CHECK(buffet_debug_create(&S->dbg, &dd) == BUFFET_OK);
    S->a = buffet_debug_allocator(S->dbg);
    S->fail.parent = S->a;
    memset(&pd, 0, sizeof pd);
    pd.class_sizes[0] = 512;
    pd.class_sizes[1] = 9000;
    pd.class_sizes[2] = 65000;
    pd.headroom = 128;
    pd.user_size = sizeof(buffet_net_meta);
    pd.initial = 2;
    pd.max = 24;   /* a split into more pieces runs out of clones */
    pd.no_huge_pages = true;
    pd.allocator = S->a;
    pd.log.fn = buffet_log_silent;
    FZ_CHECK(buffet_pkt_pool_create(&S->pool, &pd) == BUFFET_OK);
    FZ_CHECK(buffet_pkt_cache_create(&S->cache, S->pool, 4) == BUFFET_OK);
    FZ_CHECK(buffet_chain_init(&S->out, buffet_failing_allocator(&S->fail)) == BUFFET_OK);
    first = fz_u8(&S->in);
    S->type = first & 1 ? SOCK_DGRAM : SOCK_SEQPACKET;
    S->passcred = (first & 2) != 0;
    S->seed = fz_u8(&S->in);
    fm_pair(S);
    while (fz_more(&S->in) && steps++ < FM_STEPS) {
        switch (fz_u8(&S->in) % 8) {
        case 0: case 1: op_fds_one(S, false); break;
        case 2: op_fds_one(S, true); break;
        case 3: op_fds_chain(S); break;
        case 4: case 5: op_cmsgs(S); break;
        default: op_split(S); break;
        }
        fm_close_own(S);
        if (buffet_chain_len(&S->out) > FM_OUT_MAX) {   /* bounded: start over */
            buffet_chain_deinit(&S->out);
            FZ_CHECK(buffet_chain_init(&S->out, buffet_failing_allocator(&S->fail)) == BUFFET_OK);
            S->model_len = 0;
        }
    }
    fm_close_own(S);
    FZ_CHECK(close(S->sv[0]) == 0 || S->closed);
    FZ_CHECK(close(S->sv[1]) == 0);
    buffet_chain_deinit(&S->out);
    buffet_pkt_cache_destroy(S->cache);
    FZ_CHECK(buffet_pkt_pool_report_leaks(S->pool, NULL) == 0);
    buffet_pkt_pool_destroy(S->pool);
    st = buffet_debug_get_stats(S->dbg);
    FZ_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    buffet_debug_destroy(S->dbg);
    free(S->model);
    free(S);
    /* every descriptor received was closed, every one of ours closed once */
    fm_fds_now(&after);
    FZ_CHECK(after.n == before.n && memcmp(after.fd, before.fd, (size_t)before.n * sizeof before.fd[0]) == 0);
    return 0;
}
