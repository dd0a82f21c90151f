/*
 * serve_log.h - the server's log: one line per event on stderr, each line
 * whole (never interleaved between threads) and stamped with UTC time,
 *   2025-01-31T12:00:00.123Z listening on 127.0.0.1:8080
 */
#ifndef ELASTIC_SERVE_LOG_H
#define ELASTIC_SERVE_LOG_H

#if defined(__GNUC__)
#define SERVE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SERVE_PRINTF(f, a)
#endif

void serve_log(const char *fmt, ...) SERVE_PRINTF(1, 2);

/* Names the calling thread name + index (index < 0: name alone), as top -H,
 * perf and debuggers show it: "serve-worker0", "serve-reaper", ... (Linux
 * only; elsewhere nothing). */
void serve_thread_name(const char *name, int index);

#endif
