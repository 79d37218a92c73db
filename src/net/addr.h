/*
 * Socket addresses as people write them: "127.0.0.1:9101", "[::1]:9101".
 * Literal addresses only: a route's address is used without a lookup.
 */
#ifndef SPILLWAY_ADDR_H
#define SPILLWAY_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#define ADDR_TEXT_MAX 64 /* "[v6]:port" and its NUL */

/* 0, or -EINVAL and what is wrong in why. */
int addr_parse(const char *text, struct sockaddr_storage *, char *why, size_t whylen);
/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
bool addr_loopback(const struct sockaddr *);
/* "IP:port", "[IP]:port". */
void addr_text(const struct sockaddr *, char *out, size_t size);
socklen_t addr_len(const struct sockaddr *);

#endif
