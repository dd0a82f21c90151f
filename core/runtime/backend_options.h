/*
 * backend_options.h - backend-specific settings as data: the session
 * options' `backend_options` text ("backend.key=value,..."; elastic.h lists
 * the keys), and the size check of the options struct itself.
 */
#ifndef ELASTIC_CORE_BACKEND_OPTIONS_H
#define ELASTIC_CORE_BACKEND_OPTIONS_H

#include <stddef.h>

#include "elastic.h"

/* Copies the caller's options into *dst after checking struct_size (so a
 * struct of another layout is refused, not overrun) and the form of
 * backend_options (pairs, known backend names). */
elastic_status elastic_session_options_read(elastic_session_options *dst,
                                            const elastic_session_options *src);

/* The value of "backend.key" in text (NULL text: none): *found is 1 and the
 * value is copied into value[size], or *found is 0. A value too long for
 * value[] is an error. The last pair wins when a key repeats. */
elastic_status elastic_backend_option(const char *text, const char *backend, const char *key,
                                      char *value, size_t size, int *found);

/* Fails, naming it, on a key of `backend` that is not in `known` (a
 * NULL-terminated list). */
elastic_status elastic_backend_options_check(const char *text, const char *backend,
                                             const char *const *known);

#endif
