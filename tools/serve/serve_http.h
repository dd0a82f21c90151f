/*
 * serve_http.h - the HTTP side of `elastic serve`, on libmicrohttpd (its
 * internal thread pool with epoll): listening, connection limits, deadlines
 * for headers and bodies, reading request bodies under the size, time and
 * memory limits, handing complete requests to the routes (serve_routes.h),
 * suspending a connection while its request is parsed, computed or
 * rendered elsewhere and resuming it when done, sending responses, the
 * access log and the request metrics.
 *
 * An exchange is one request and its response. A route handler either
 * replies at once or suspends the exchange (serve_suspend, from the
 * handler) and has it resumed (serve_resume, from any thread) once its
 * reply is made; `finish`, when given, then runs on an HTTP thread first.
 * While suspended, the exchange belongs to whoever will resume it.
 */
#ifndef ELASTIC_SERVE_HTTP_H
#define ELASTIC_SERVE_HTTP_H

#include "serve_app.h"
#include "serve_pool.h"
#include "serve_request.h"

#include <stddef.h>

typedef struct serve_http serve_http;
typedef struct serve_exchange serve_exchange;

struct serve_exchange {
    serve_app *app;
    serve_http *http;
    struct MHD_Connection *connection;
    struct serve_conn *conn; /* its connection's deadlines (NULL: none) */
    const struct serve_route *route;
    char method[8];
    char path[128];
    char client[64];
    int loopback; /* the client is on 127.0.0.0/8 or ::1 */
    double started, last_chunk;

    char *body; /* request body, NUL-terminated */
    size_t body_len, body_cap, received;
    size_t charged; /* bytes of --max-body-memory held for the body */
    int too_large, too_slow, too_busy;

    /* the response */
    int status;
    char *response;
    size_t response_len;
    const char *content_type;
    const char *header_name[3];
    char header_value[3][96];
    int n_headers;
    int replied;

    /* a suspended request */
    int pending;
    void (*finish)(serve_exchange *x);
    void *ctx; /* the route's, freed with ctx_free */
    void (*ctx_free)(void *ctx);
    serve_job job; /* the route's work in the job pool */

    /* for the access log */
    int users;
    long long batch_id;
    int batch_users;
};

/* Replies with a body (malloc'd, taken over; NULL: out of memory, 500). */
void serve_reply(serve_exchange *x, int status, char *body, const char *content_type);
/* Replies {"error": {"code", "message"}}. */
void serve_reply_error(serve_exchange *x, const serve_error *err);
/* A response header (at most 3; value copied). */
void serve_reply_header(serve_exchange *x, const char *name, const char *value);
/* From a route handler: the reply comes later, after some thread calls
 * serve_resume(x); finish(x) (NULL: none) runs on an HTTP thread then. */
void serve_suspend(serve_exchange *x, void (*finish)(serve_exchange *x));
void serve_resume(serve_exchange *x);
/* Frees the request body (and its share of --max-body-memory) once it is
 * no longer needed (any thread that owns the exchange). */
void serve_release_body(serve_exchange *x);

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z (who may POST /admin/reload). */
struct sockaddr;
int serve_http_is_loopback(const struct sockaddr *address);

/* Binds options->listen and starts the threads; *port gets the bound port
 * (for port 0) and `bound` the address text. -1 with a message in err. */
int serve_http_start(serve_http **out, serve_app *app, char *bound, size_t bound_size, char *err,
                     size_t err_size);
/* Stops taking connections (each new one is closed as soon as accepted);
 * responses from now on close theirs. Any thread, any number of times. */
void serve_http_quiesce(serve_http *h);
/* Requests received and not yet answered. */
long serve_http_in_flight(serve_http *h);
/* Closes every connection and joins the threads (nothing may be suspended). */
void serve_http_stop(serve_http *h);

#endif
