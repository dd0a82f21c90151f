/*
 * serve_http.c - libmicrohttpd glue (see serve_http.h): one exchange per
 * request, created when its headers arrive and freed when MHD reports the
 * request completed; bodies read under --max-body and --read-timeout-ms;
 * suspend/resume for requests that wait for a worker or a reload.
 *
 * What a body over the limits gets: with a Content-Length over --max-body,
 * 413 at once (MHD then closes the connection); a chunked body that grows
 * over it, or one that arrives slower than --read-timeout-ms, is read to
 * its end and discarded, then answered 413 or 408; one that goes on past
 * 16 times the size limit or twice the time limit is cut off.
 */
#include "serve_http.h"
#include "serve_log.h"
#include "serve_routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct serve_http {
    serve_app *app;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced; /* the listening socket after quiesce, closed at stop */
    atomic_long in_flight;
    atomic_int draining;
};

/* ---------------------------------------------------------------- replies */

void serve_reply(serve_exchange *x, int status, char *body, const char *content_type)
{
    free(x->response);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";
        status = 500;
        body = strdup(oom);
        content_type = "application/json";
    }
    x->status = status;
    x->response = body;
    x->response_len = body ? strlen(body) : 0;
    x->content_type = content_type;
}

void serve_reply_error(serve_exchange *x, const serve_error *err)
{
    serve_reply(x, err->status, serve_error_render(err), "application/json");
}

void serve_reply_header(serve_exchange *x, const char *name, const char *value)
{
    if (x->n_headers >= 3) return;
    x->header_name[x->n_headers] = name;
    snprintf(x->header_value[x->n_headers], sizeof x->header_value[0], "%s", value);
    x->n_headers++;
}

void serve_suspend(serve_exchange *x, void (*finish)(serve_exchange *x))
{
    x->pending = 1;
    x->finish = finish;
    MHD_suspend_connection(x->connection);
}

void serve_resume(serve_exchange *x)
{
    MHD_resume_connection(x->connection);
}

/* Hands the response to MHD. */
static enum MHD_Result send_reply(serve_http *h, serve_exchange *x)
{
    if (!x->response) {
        serve_error e;
        serve_error_set(&e, 500, "internal", "no response was made for this request");
        serve_reply_error(x, &e);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(x->response_len, x->response, MHD_RESPMEM_MUST_FREE);
    if (!r) return MHD_NO;
    x->response = NULL; /* MHD frees it */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, x->content_type);
    for (int i = 0; i < x->n_headers; i++)
        MHD_add_response_header(r, x->header_name[i], x->header_value[i]);
    if (atomic_load(&h->draining)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(x->connection, (unsigned)x->status, r);
    MHD_destroy_response(r);
    x->replied = ok == MHD_YES;
    return ok;
}

/* ---------------------------------------------------------------- exchanges */

int serve_http_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

static serve_exchange *exchange_new(serve_http *h, struct MHD_Connection *c, const char *url,
                                    const char *method)
{
    serve_exchange *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->app = h->app;
    x->connection = c;
    x->started = serve_now();
    snprintf(x->method, sizeof x->method, "%s", method);
    snprintf(x->path, sizeof x->path, "%s", url);
    for (char *p = x->path; *p; p++) /* the path is logged: printable only */
        if (*p < 0x21 || *p > 0x7e) *p = '?';
    snprintf(x->client, sizeof x->client, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        x->loopback = serve_http_is_loopback(sa);
        const void *addr = sa->sa_family == AF_INET6
                               ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                               : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
        if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
            inet_ntop(sa->sa_family, addr, x->client, sizeof x->client);
    }
    return x;
}

static void exchange_free(serve_exchange *x)
{
    if (x->ctx_free) x->ctx_free(x->ctx);
    free(x->body);
    free(x->response);
    free(x);
}

/* Appends upload data, or counts it as discarded past the limits.
 * Returns -1 to cut the connection off. */
static int take_body(serve_exchange *x, const char *data, size_t n)
{
    const serve_options *o = x->app->options;
    double elapsed = serve_now() - x->started, limit = 1e-3 * o->read_timeout_ms;
    if (elapsed > limit) x->too_slow = 1;
    if (x->body_len + n > o->limits.max_body) x->too_large = 1;
    if (x->too_slow || x->too_large) {
        x->discarded += n;
        return x->discarded / 16 > o->limits.max_body || elapsed > 2 * limit ? -1 : 0;
    }
    if (x->body_len + n + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        while (cap < x->body_len + n + 1)
            cap *= 2;
        if (cap > o->limits.max_body + 1) cap = o->limits.max_body + 1;
        char *b = realloc(x->body, cap);
        if (!b) {
            x->too_large = 1; /* answered 413: better than nothing */
            return 0;
        }
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return 0;
}

/* The headers arrived: the route, and refusals that need no body. Returns
 * 1 when a reply is ready. */
static int on_headers(serve_exchange *x, const char *method, const char *url)
{
    int status;
    char allow[64];
    x->route = serve_route_find(method, url, &status, allow, sizeof allow);
    if (!x->route) {
        serve_error e;
        if (status == 405)
            serve_error_set(&e, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                            x->method, x->path, allow);
        else
            serve_error_set(&e, 404, "not_found",
                            "no endpoint %s (see GET /v1/model, POST /v1/recommend)", x->path);
        serve_reply_error(x, &e);
        if (status == 405) serve_reply_header(x, MHD_HTTP_HEADER_ALLOW, allow);
        return 1;
    }
    const char *cl =
        MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const serve_limits *lim = &x->app->options->limits;
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (!errno && end != cl && n > lim->max_body) {
            serve_error e;
            serve_error_set(&e, 413, "body_too_large",
                            "the body has %llu bytes; the limit is %zu (--max-body)", n,
                            lim->max_body);
            serve_reply_error(x, &e);
            return 1;
        }
    }
    return 0;
}

/* The body is complete: the limits, then the route's handler. */
static void on_body(serve_exchange *x)
{
    const serve_options *o = x->app->options;
    if (x->too_large) {
        serve_error e;
        serve_error_set(&e, 413, "body_too_large",
                        "the body has over %zu bytes; the limit is %zu (--max-body)",
                        o->limits.max_body, o->limits.max_body);
        serve_reply_error(x, &e);
    } else if (x->too_slow) {
        serve_error e;
        serve_error_set(&e, 408, "request_timeout",
                        "the body took over %d ms to arrive (--read-timeout-ms)",
                        o->read_timeout_ms);
        serve_reply_error(x, &e);
    } else
        x->route->handle(x);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    serve_http *h = cls;
    serve_exchange *x = *con_cls;
    if (!x) { /* the headers */
        if (!(x = exchange_new(h, c, url, method))) return MHD_NO;
        *con_cls = x;
        atomic_fetch_add(&h->in_flight, 1);
        serve_metrics_in_flight(&h->app->metrics, 1);
        if (on_headers(x, method, url)) return send_reply(h, x);
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        int cut = take_body(x, upload_data, *upload_size);
        *upload_size = 0;
        return cut ? MHD_NO : MHD_YES;
    }
    if (x->pending) { /* resumed */
        x->pending = 0;
        x->finish(x);
        return send_reply(h, x);
    }
    on_body(x);
    return x->pending ? MHD_YES : send_reply(h, x);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    serve_http *h = cls;
    serve_exchange *x = *con_cls;
    if (!x) return;
    *con_cls = NULL;
    serve_app *app = h->app;
    double seconds = serve_now() - x->started;
    if (x->replied) {
        /* By path: a known path with a wrong method counts under its path. */
        serve_metrics_request(&app->metrics, serve_metrics_endpoint(&app->metrics, x->path),
                              x->status, seconds);
    } else
        serve_metrics_aborted(&app->metrics);
    if (app->options->access_log) {
        char batch[48] = "-";
        if (x->batch_id) snprintf(batch, sizeof batch, "%lld/%d", x->batch_id, x->batch_users);
        char status[16] = "aborted";
        if (x->replied) snprintf(status, sizeof status, "%d", x->status);
        serve_log("access %s %s %s status=%s users=%d latency_ms=%.3f batch=%s", x->client,
                  x->method, x->path, status, x->users, seconds * 1e3, batch);
    }
    serve_metrics_in_flight(&app->metrics, -1);
    exchange_free(x);
    atomic_fetch_sub(&h->in_flight, 1);
}

/* ---------------------------------------------------------------- daemon */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    serve_log("libmicrohttpd: %s", msg);
}

/* "ADDR:PORT" or "[V6ADDR]:PORT" into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                        size_t err_size)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (colon && *s == '[' && hl >= 2 && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || hl == 0 || hl >= sizeof host || !colon[1] || *end || port < 0 || port > 65535) {
        snprintf(err, err_size, "--listen wants ADDR:PORT (e.g. 127.0.0.1:8080, [::1]:0), got '%s'",
                 s);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc || !res) {
        snprintf(err, err_size, "--listen %s: %s", s, rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int serve_http_start(serve_http **out, serve_app *app, char *bound, size_t bound_size, char *err,
                     size_t err_size)
{
    *out = NULL;
    const serve_options *o = app->options;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_listen(o->listen, &ss, &sl, err, err_size)) return -1;
    serve_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, err_size, "out of memory (http)");
        return -1;
    }
    h->app = app;
    h->quiesced = MHD_INVALID_SOCKET;
    atomic_init(&h->in_flight, 0);
    atomic_init(&h->draining, 0);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                                 mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->http_threads,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, err_size, "cannot listen on %s (in use, or not an address of this machine?)",
                 o->listen);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : 0;
    char addr[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
        snprintf(bound, bound_size, "[%s]:%u", addr, port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
        snprintf(bound, bound_size, "%s:%u", addr, port);
    }
    *out = h;
    return 0;
}

void serve_http_quiesce(serve_http *h)
{
    atomic_store(&h->draining, 1);
    if (h->quiesced != MHD_INVALID_SOCKET) return;
    h->quiesced = MHD_quiesce_daemon(h->daemon);
    /* The socket stays open until MHD stops (its threads may still hold it),
     * but shut down: connections not yet accepted are refused or reset now
     * instead of waiting in the backlog for the drain to end (Linux). */
    if (h->quiesced != MHD_INVALID_SOCKET) shutdown(h->quiesced, SHUT_RDWR);
}

long serve_http_in_flight(serve_http *h)
{
    return atomic_load(&h->in_flight);
}

void serve_http_stop(serve_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->daemon);
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    free(h);
}
