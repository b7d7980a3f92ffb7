/* Simulated storage latency for the reader benchmarks (bench/scale_bench.py): an LD_PRELOAD shim that sleeps
 * SLOW_OPEN_MS milliseconds in every open() / openat() (and their 64-bit names) of a path that starts with
 * SLOW_OPEN_PREFIX, then opens it as libc does. A cold read from network storage costs about this per file; the
 * reader hides it only by having many files in flight. Processes started by a preloaded process (DALI's spawned
 * reader workers) inherit LD_PRELOAD and the two variables.
 *
 *   cc -O2 -shared -fPIC bench/slow_open.c -o slow_open.so -ldl
 *   LD_PRELOAD=$PWD/slow_open.so SLOW_OPEN_PREFIX=/data/train SLOW_OPEN_MS=10 python ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void delay_if_under_prefix(const char *path) {
    const char *prefix = getenv("SLOW_OPEN_PREFIX");
    const char *ms = getenv("SLOW_OPEN_MS");
    if (!path || !prefix || !ms || !*prefix || strncmp(path, prefix, strlen(prefix)) != 0) return;
    long total_us = (long)(atof(ms) * 1000.0);
    struct timespec t = {total_us / 1000000, (total_us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0) {}  /* restart after a signal with the time left */
}

/* O_CREAT and O_TMPFILE carry a mode argument */
static mode_t mode_of(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

#define WRAP_OPEN(name)                                                          \
    int name(const char *path, int flags, ...) {                                 \
        static int (*real)(const char *, int, ...);                              \
        if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \
        va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap); \
        delay_if_under_prefix(path);                                             \
        return real(path, flags, mode);                                          \
    }

#define WRAP_OPENAT(name)                                                        \
    int name(int dirfd, const char *path, int flags, ...) {                      \
        static int (*real)(int, const char *, int, ...);                         \
        if (!real) real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, #name); \
        va_list ap; va_start(ap, flags); mode_t mode = mode_of(flags, ap); va_end(ap); \
        delay_if_under_prefix(path);                                             \
        return real(dirfd, path, flags, mode);                                   \
    }

WRAP_OPEN(open)
WRAP_OPEN(open64)
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)
