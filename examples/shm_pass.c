/* shm_pass.c - two processes, one piece of memory. The parent puts a message in a sealed memfd
   buffer and sends two slices of it over a UNIX socket as descriptors and offsets (no byte
   copied); the forked child maps them, checks who sent them (credentials stamped by the kernel),
   and turns the text to upper case in place. The parent then reads the child's change in its own
   buffer: the same pages. Exit 0: it did. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_net.h"

#include <ctype.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(int fd, pid_t parent) {
    buffet_chain got;
    buffet_net_peer peer;
    size_t i, j, n = 0;
    buffet_chain_init(&got, (buffet_allocator){0});
    if (buffet_net_recv_chain_fds(fd, &got, NULL, &peer) != BUFFET_OK) return 1;
    if (peer.pid != parent || peer.uid != getuid()) return 2;   /* only our parent may write to us */
    for (i = 0; i < buffet_chain_count(&got); i++) {             /* upper-case, in the shared pages */
        const buffet_slice *s = buffet_chain_at(&got, i);
        char *p = buffet_slice_data(s);
        for (j = 0; j < s->len; j++, n++) p[j] = (char)toupper((unsigned char)p[j]);
    }
    printf("child %d: mapped %zu slices (%zu bytes) from pid %d, uid %u; upper-cased them in place\n", (int)getpid(),
           buffet_chain_count(&got), n, (int)peer.pid, (unsigned)peer.uid);
    fflush(stdout);
    buffet_chain_deinit(&got);
    return send(fd, &n, sizeof n, 0) == (ssize_t)sizeof n ? 0 : 3;
}

int main(void) {
    static const char text[] = "hello from the parent -- shared, not copied";
    buffet_buf *shm;
    buffet_chain c;
    int sv[2], status;
    size_t done = 0;
    pid_t pid;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return 1;
    buffet_net_passcred(sv[1]);   /* the child's end: the kernel stamps each message with its sender */
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        _exit(child(sv[1], getppid()));
    }
    close(sv[1]);
    if (buffet_buf_create(&shm, &(buffet_buf_desc){.kind = BUFFET_BUF_SHM, .size = 4096, .name = "shm_pass"}) != BUFFET_OK)
        return 1;
    memcpy(shm->data, text, sizeof text);
    buffet_chain_init(&c, (buffet_allocator){0});
    buffet_chain_append(&c, shm, 0, 5);                     /* "hello" */
    buffet_chain_append(&c, shm, 22, sizeof text - 1 - 22); /* "-- shared, not copied" */
    printf("parent %d: sent memfd %d as %zu slices: \"%s\"\n", (int)getpid(), shm->fd, buffet_chain_count(&c), text);
    fflush(stdout);
    if (buffet_net_send_chain_fds(sv[0], &c) != BUFFET_OK || recv(sv[0], &done, sizeof done, 0) != (ssize_t)sizeof done ||
        waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;
    printf("parent %d: its own buffer now reads \"%s\"\n", (int)getpid(), (const char *)shm->data);
    status = strncmp((const char *)shm->data, "HELLO", 5) == 0 && done == 5 + sizeof text - 1 - 22 ? 0 : 1;
    buffet_chain_deinit(&c);
    buffet_buf_unref(shm);
    close(sv[0]);
    return status;
}
