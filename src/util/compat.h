/* Compiler attributes used across the tree. */
#ifndef SPILLWAY_COMPAT_H
#define SPILLWAY_COMPAT_H

#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN         __attribute__((noreturn))
#define UNUSED           __attribute__((unused))
#define nitems(a)        (sizeof(a) / sizeof((a)[0]))

#endif
