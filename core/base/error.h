/*
 * error.h - the thread-local error message behind elastic_last_error().
 *
 * Every failing internal function sets the message with elastic_error() and
 * returns the status it was given, so callers can write
 *     return elastic_error(ELASTIC_ERR_SHAPE, "linear: in %d != %d", a, b);
 */
#ifndef ELASTIC_CORE_ERROR_H
#define ELASTIC_CORE_ERROR_H

#include "elastic.h"

#if defined(__GNUC__)
#define ELASTIC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ELASTIC_PRINTF(f, a)
#endif

/* Sets the thread's message and returns status. */
elastic_status elastic_error(elastic_status status, const char *fmt, ...) ELASTIC_PRINTF(2, 3);

/* Clears the thread's message (at the start of every public call). */
void elastic_error_clear(void);

/* Returns a status unchanged; used to propagate: ELASTIC_TRY(f(x)); */
#define ELASTIC_TRY(expr)                                                                \
    do {                                                                                 \
        elastic_status try_status_ = (expr);                                             \
        if (try_status_ != ELASTIC_OK) return try_status_;                               \
    } while (0)

#endif
