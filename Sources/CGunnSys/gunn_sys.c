#define _GNU_SOURCE
#include "gunn_sys.h"
#include <sys/socket.h>
#include <sys/prctl.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <unistd.h>
#include <string.h>

int gunn_peer_credentials(int fd, uid_t *uid, gid_t *gid, pid_t *pid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    if (len != sizeof(cred)) { errno = EINVAL; return -1; }
    *uid = cred.uid;
    *gid = cred.gid;
    *pid = cred.pid;
    return 0;
}

int gunn_set_parent_death_signal(int sig) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0);
}

int gunn_accept_nonblocking(int fd) {
    return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int gunn_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static volatile int gunn_termination_fd = -1;

static void gunn_termination_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (gunn_termination_fd >= 0) { ssize_t r = write(gunn_termination_fd, &b, 1); (void)r; }
    errno = saved;
}

int gunn_install_termination_pipe(int fd) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = gunn_termination_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    gunn_termination_fd = fd;
    if (sigaction(SIGTERM, &sa, 0) != 0) return -1;
    if (sigaction(SIGINT, &sa, 0) != 0) return -1;
    return 0;
}
