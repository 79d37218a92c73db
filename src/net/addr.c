/* Socket addresses as people write them (addr.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/addr.h"

int
addr_parse(const char *text, struct sockaddr_storage *ss, char *why, size_t whylen)
{
	char host[ADDR_TEXT_MAX];
	const char *colon, *port_text;
	char *end;
	long port;
	size_t n;

	memset(ss, 0, sizeof *ss);
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':') {
			snprintf(why, whylen, "an IPv6 address is written [ADDRESS]:PORT");
			return -EINVAL;
		}
		n = (size_t)(close - text - 1);
		port_text = close + 2;
		text++;
	} else if ((colon = strrchr(text, ':')) == NULL || strchr(text, ':') != colon) {
		snprintf(why, whylen, "not ADDRESS:PORT (such as 127.0.0.1:9101)");
		return -EINVAL;
	} else {
		n = (size_t)(colon - text);
		port_text = colon + 1;
	}
	if (n == 0 || n >= sizeof host) {
		snprintf(why, whylen, "no address before the port");
		return -EINVAL;
	}
	memcpy(host, text, n);
	host[n] = '\0';
	errno = 0;
	port = strtol(port_text, &end, 10);
	if (*port_text == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535) {
		snprintf(why, whylen, "the port is not a number from 1 to 65535");
		return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	} else {
		snprintf(why, whylen, "'%s' is not an IP address (names are not looked up)", host);
		return -EINVAL;
	}
	return 0;
}

bool
addr_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		    (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

void
addr_text(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		snprintf(out, size, "%s:%u", ip, ntohs(s->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		snprintf(out, size, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		snprintf(out, size, "?");
	}
}

socklen_t
addr_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}
