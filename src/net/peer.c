/*
 * The owner of a loopback connection's other socket (peer.h): one exact
 * lookup through NETLINK_SOCK_DIAG, the socket named by its four-tuple as
 * the peer sees it (its address and port as source, ours as destination).
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "net/peer.h"

#ifdef __linux__
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

/* The address and port of an AF_INET/AF_INET6 sockaddr, as inet_diag wants them. */
static void
put(const struct sockaddr *sa, __be16 *port, __be32 addr[4])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;

		*port = s->sin_port;
		addr[0] = s->sin_addr.s_addr;
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;

		*port = s->sin6_port;
		memcpy(addr, &s->sin6_addr, 16);
	}
}

int
peer_uid(const struct sockaddr *peer, const struct sockaddr *local, uid_t *uid)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req;
	union {
		struct nlmsghdr nh;
		char bytes[8192];
	} ans;
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	ssize_t n;
	int fd, error = -ENOENT;

	if (peer->sa_family != local->sa_family ||
	    (peer->sa_family != AF_INET && peer->sa_family != AF_INET6))
		return -EAFNOSUPPORT;
	memset(&req, 0, sizeof req);
	req.nh.nlmsg_len = sizeof req;
	req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = (__u8)peer->sa_family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0U;
	req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	put(peer, &req.r.id.idiag_sport, req.r.id.idiag_src);
	put(local, &req.r.id.idiag_dport, req.r.id.idiag_dst);
	if ((fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) == -1)
		return errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT ? -ENOTSUP : -errno;
	if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&nl, sizeof nl) != sizeof req) {
		error = -errno;
		goto out;
	}
	if ((n = recv(fd, &ans, sizeof ans, 0)) < 0) {
		error = -errno;
		goto out;
	}
	for (struct nlmsghdr *h = &ans.nh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			error = e->error != 0 ? e->error : -ENOENT;
			break;
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			*uid = m->idiag_uid;
			error = 0;
			break;
		}
	}
out:
	close(fd);
	return error;
}
#else
int
peer_uid(const struct sockaddr *peer, const struct sockaddr *local, uid_t *uid)
{
	return -ENOTSUP;
}
#endif
