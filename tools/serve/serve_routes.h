/*
 * serve_routes.h - the endpoints of `elastic serve`: the route table
 * {method, path, handler} and one handler per route.
 *
 *   POST /v1/recommend     top-K items (or ranked candidates) per user
 *   POST /v1/user_vectors  the user vectors hu
 *   GET  /v1/model         config, parameters, backend, plan, checksum, load time
 *   GET  /healthz          alive
 *   GET  /readyz           200 once loaded and warmed up, 503 while loading or draining
 *   GET  /metrics          Prometheus text
 *   POST /admin/reload     reload the model file (loopback clients only)
 *
 * GET routes answer HEAD too.
 */
#ifndef ELASTIC_SERVE_ROUTES_H
#define ELASTIC_SERVE_ROUTES_H

#include "serve_http.h"

#include <stddef.h>

typedef struct serve_route {
    const char *method; /* "GET" or "POST" */
    const char *path;
    int has_body; /* reads a request body */
    void (*handle)(serve_exchange *x);
} serve_route;

/* The route of a request; NULL with *status 404 (no such path) or 405 (the
 * path exists: `allow` gets its methods). */
const serve_route *serve_route_find(const char *method, const char *path, int *status, char *allow,
                                    size_t allow_size);

/* The paths, as metrics labels (returns how many). */
int serve_route_paths(const char **paths, int max);

#endif
