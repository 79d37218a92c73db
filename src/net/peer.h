/*
 * Who is at the other end of a loopback TCP connection: the uid that owns
 * the peer's socket, asked of the kernel (sock_diag), so a route can refuse
 * another user's processes as a Unix socket's permissions would.
 */
#ifndef SPILLWAY_PEER_H
#define SPILLWAY_PEER_H

#include <sys/socket.h>
#include <sys/types.h>

/*
 * peer: the connection's remote end, local: ours (getpeername, getsockname).
 * 0 and *uid, or -ENOENT (no such socket here: not a local peer), -ENOTSUP
 * (no sock_diag on this system) or another -errno.
 */
int peer_uid(const struct sockaddr *peer, const struct sockaddr *local, uid_t *uid);

#endif
