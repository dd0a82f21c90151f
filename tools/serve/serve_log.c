/*
 * serve_log.c - the server's log lines (see serve_log.h): formatted into one
 * buffer and written with one call, so lines of different threads never mix;
 * and the names of its threads.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "serve_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void serve_log(const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ ", (int)(ts.tv_nsec / 1000000));
    va_list ap;
    va_start(ap, fmt);
    int got = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (got < 0) got = 0;
    n += (size_t)got < sizeof line - n - 1 ? (size_t)got : sizeof line - n - 2;
    line[n++] = '\n';
    fwrite(line, 1, n, stderr); /* stderr is unbuffered: one write per line */
}

void serve_thread_name(const char *name, int index)
{
#if defined(__linux__)
    char text[16]; /* the kernel keeps 15 characters */
    if (index >= 0)
        snprintf(text, sizeof text, "%s%d", name, index);
    else
        snprintf(text, sizeof text, "%s", name);
    pthread_setname_np(pthread_self(), text);
#else
    (void)name, (void)index;
#endif
}
