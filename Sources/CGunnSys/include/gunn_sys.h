#ifndef GUNN_SYS_H
#define GUNN_SYS_H
#include <sys/types.h>

/// The uid, gid and pid of the process at the other end of a Unix socket (SO_PEERCRED).
/// Returns 0, or -1 with errno set.
int gunn_peer_credentials(int fd, uid_t *uid, gid_t *gid, pid_t *pid);

/// prctl(PR_SET_PDEATHSIG, sig): prctl is variadic and cannot be called from Swift.
int gunn_set_parent_death_signal(int sig);

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC (needs _GNU_SOURCE, which Swift's Glibc lacks).
int gunn_accept_nonblocking(int fd);

/// A non-blocking, close-on-exec eventfd for waking a poll loop.
int gunn_eventfd(void);

/// Installs SIGTERM and SIGINT handlers that write the signal number (one byte) to `fd`
/// (async-signal-safe), so a thread can wait for termination by reading the other end of a pipe.
int gunn_install_termination_pipe(int fd);

#endif
