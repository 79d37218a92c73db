/*
 * The sockets an httpd serves, bound here and handed to it (httpd.h): TCP on
 * an address, non-blocking; a Unix socket made 0600, replacing the file a
 * dead server left but never a live one's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/httpd.h"
#include "util/xmalloc.h"

int
httpd_bind(const char *host, int port, char **cause)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, family = strchr(host, ':') != NULL ? AF_INET6 : AF_INET;

	memset(&ss, 0, sizeof ss);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			goto bad_host;
		len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad_host;
		len = sizeof *sin6;
	}
	if ((fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		int error = errno; /* before xasprintf, which may change it */

		*cause = xasprintf("cannot create a socket: %s", strerror(error));
		return -error;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, len) == -1) {
		int error = errno;

		*cause = xasprintf("cannot listen on %s:%d: %s", host, port, strerror(error));
		close(fd);
		return -error;
	}
	return fd;
bad_host:
	*cause = xasprintf("'%s' is not an IP address", host);
	return -EINVAL;
}

int
httpd_bind_unix(const char *path, char **cause)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int fd, error;

	if (strlen(path) >= sizeof sun.sun_path) {
		*cause = xasprintf("the socket path %s is too long (at most %zu bytes)", path,
		    sizeof sun.sun_path - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		error = errno;
		*cause = xasprintf("cannot create a socket: %s", strerror(error));
		return -error;
	}
	/* A socket file left by a daemon that died is replaced; a live daemon's is not. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN) {
			*cause = xasprintf("%s: another daemon answers there", path);
			close(fd);
			return -EADDRINUSE;
		}
		close(fd);
		unlink(path);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
			*cause = xasprintf("cannot create a socket: %s", strerror(errno));
			return -errno;
		}
	}
	old = umask(0177); /* created 0600: no window where others could connect */
	error = bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ? 0 : errno;
	umask(old);
	if (error != 0) {
		*cause = xasprintf("cannot listen on %s: %s", path, strerror(error));
		close(fd);
		return -error;
	}
	return fd;
}
