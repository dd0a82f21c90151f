/*
 * serve_http.c - libmicrohttpd glue (see serve_http.h): one exchange per
 * request, created when its headers arrive and freed when MHD reports the
 * request completed; a record per connection for the deadlines; bodies
 * read under --max-body, --read-timeout-ms and --max-body-memory;
 * suspend/resume for requests handled off the HTTP threads.
 *
 * Deadlines (a sweeper thread closes a connection past its deadline; MHD's
 * --idle-timeout alone would let a client that sends a byte now and then
 * keep a connection forever):
 *   - headers: a new connection must deliver a request's headers within
 *     --read-timeout-ms; on a kept-alive connection, within --read-timeout-ms
 *     of its request line, and its request line within --idle-timeout +
 *     --read-timeout-ms of the previous response;
 *   - body: each piece of a body must follow the previous one (or the
 *     headers) within --read-timeout-ms, else the body is read to its end,
 *     discarded and answered 408; a body that stops for twice that is cut
 *     off. The pace, not the total time, is limited: a large body on a slow
 *     link is not refused while it keeps coming.
 * What a body over the limits gets: with a Content-Length over --max-body,
 * 413 at once (MHD then closes the connection); a chunked body that grows
 * over it is read to its end and discarded, then answered 413; one that
 * goes on past twice the limit is cut off. Routes that take no body have a
 * limit of 0. Bodies held at once (received and not yet parsed) are under
 * --max-body-memory: a body that does not fit gets 503 + Retry-After.
 */
#include "serve_http.h"
#include "serve_log.h"
#include "serve_routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What a connection's deadline waits for. */
enum { CONN_BUSY = 0, CONN_HEADERS = 1, CONN_BODY = 2 };

/* A connection from accept to close (MHD's socket context). */
typedef struct serve_conn serve_conn;
struct serve_conn {
    serve_conn *prev, *next; /* the registry, under conn_lock */
    MHD_socket fd;
    atomic_llong deadline_us; /* monotonic microseconds; 0: none (a request is handled) */
    atomic_int phase;         /* CONN_HEADERS or CONN_BODY: what the deadline is for */
    int served;               /* requests completed on it (its HTTP thread's) */
    int cut;                  /* shut down by the sweeper (under conn_lock) */
    int loopback;
    char client[64];
};

struct serve_http {
    serve_app *app;
    struct MHD_Daemon *daemon;
    atomic_long in_flight;
    atomic_int draining;     /* set by serve_http_quiesce: new connections are closed at accept */
    atomic_llong body_bytes; /* bodies held (--max-body-memory) */
    long long read_us, idle_us;

    /* the connections, for the sweeper */
    pthread_mutex_t conn_lock;
    pthread_cond_t sweep_cond;
    serve_conn *conns;
    pthread_t sweeper;
    int sweeper_started, sweep_quit;
};

static long long now_us(void)
{
    return (long long)(serve_now() * 1e6);
}

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

/* ---------------------------------------------------------------- connections */

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

/* The client's address as text, and whether it is loopback. */
static void describe_client(struct MHD_Connection *c, char *text, size_t size, int *loopback)
{
    snprintf(text, size, "?");
    *loopback = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    *loopback = serve_http_is_loopback(sa);
    const void *addr = sa->sa_family == AF_INET6
                           ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                           : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        inet_ntop(sa->sa_family, addr, text, (socklen_t)size);
}

static serve_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* What the connection waits for, and until when (0: nothing; it is busy). */
static void conn_wait(serve_conn *conn, int phase, long long deadline)
{
    if (!conn) return;
    atomic_store(&conn->phase, phase);
    atomic_store(&conn->deadline_us, deadline);
}

/* MHD's accept policy: while draining, a new connection is closed as soon as
 * it is accepted. This is how the server stops taking connections, rather
 * than MHD_quiesce_daemon: with a thread pool and epoll, libmicrohttpd 0.9.75
 * (daemon.c) has MHD_quiesce_daemon remove the listening socket from each
 * worker's epoll set while that worker's own loop may be removing it too (once
 * it sees the quiesce flag, or at its connection limit); the loser of the race
 * gets ENOENT and MHD_PANIC aborts the process (seen under load in the serve
 * test). The listening socket stays open until MHD stops. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    serve_http *h = cls;
    return atomic_load(&h->draining) ? MHD_NO : MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    serve_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        serve_conn *conn = calloc(1, sizeof *conn);
        *socket_context = conn;
        if (!conn) return; /* served without deadlines */
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn->fd = fd ? fd->connect_fd : MHD_INVALID_SOCKET;
        describe_client(c, conn->client, sizeof conn->client, &conn->loopback);
        atomic_init(&conn->phase, CONN_HEADERS);
        atomic_init(&conn->deadline_us, now_us() + h->read_us);
        pthread_mutex_lock(&h->conn_lock);
        conn->next = h->conns;
        if (h->conns) h->conns->prev = conn;
        h->conns = conn;
        pthread_mutex_unlock(&h->conn_lock);
        return;
    }
    /* Closed: MHD closes the socket only after this, so the sweeper, which
     * holds conn_lock, never shuts down a descriptor reused by another. */
    serve_conn *conn = *socket_context;
    *socket_context = NULL;
    if (!conn) return;
    pthread_mutex_lock(&h->conn_lock);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        h->conns = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    pthread_mutex_unlock(&h->conn_lock);
    free(conn);
}

/* The request line of a request arrived: on a kept-alive connection its
 * headers now have --read-timeout-ms. (Returns the exchange, none yet.) */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
    serve_http *h = cls;
    (void)uri;
    serve_conn *conn = conn_of(c);
    if (conn && conn->served > 0) {
        long long d = now_us() + h->read_us;
        if (d < atomic_load(&conn->deadline_us)) atomic_store(&conn->deadline_us, d);
    }
    return NULL;
}

/* Closes the connections past their deadline, every few milliseconds. */
static void *sweeper_main(void *arg)
{
    serve_http *h = arg;
    serve_thread_name("serve-sweeper", -1);
    const serve_options *o = h->app->options;
    long long period = h->read_us / 8;
    if (period < 10000) period = 10000;
    if (period > 250000) period = 250000;
    pthread_mutex_lock(&h->conn_lock);
    while (!h->sweep_quit) {
        long long now = now_us();
        for (serve_conn *c = h->conns; c; c = c->next) {
            long long d = atomic_load(&c->deadline_us);
            if (!d || now <= d || c->cut || c->fd == MHD_INVALID_SOCKET) continue;
            c->cut = 1;
            int body = atomic_load(&c->phase) == CONN_BODY;
            /* MHD sees the end of the stream and closes the connection. */
            shutdown(c->fd, SHUT_RDWR);
            serve_metrics_cut_off(&h->app->metrics, body);
            if (body)
                serve_log("cut off a connection from %s: its body stopped for over %d ms "
                          "(twice --read-timeout-ms)",
                          c->client, 2 * o->read_timeout_ms);
            else
                serve_log("cut off a connection from %s: a request's headers did not arrive in "
                          "time (--read-timeout-ms %d)",
                          c->client, o->read_timeout_ms);
        }
        double until = 1e-6 * (double)(now_us() + period);
        struct timespec ts = {(time_t)until, (long)((until - (double)(time_t)until) * 1e9)};
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->sweep_cond, &h->conn_lock, &ts);
    }
    pthread_mutex_unlock(&h->conn_lock);
    return NULL;
}

/* ---------------------------------------------------------------- body memory */

/* Takes n bytes of --max-body-memory; -1 when they do not fit. */
static int budget_take(serve_http *h, size_t n)
{
    size_t limit = h->app->options->max_body_memory;
    long long cur = atomic_load(&h->body_bytes);
    do {
        if (limit && (size_t)cur + n > limit) return -1;
    } while (!atomic_compare_exchange_weak(&h->body_bytes, &cur, cur + (long long)n));
    return 0;
}

void serve_release_body(serve_exchange *x)
{
    free(x->body);
    x->body = NULL;
    x->body_len = x->body_cap = 0;
    if (x->charged) atomic_fetch_sub(&x->http->body_bytes, (long long)x->charged);
    x->charged = 0;
}

/* ---------------------------------------------------------------- exchanges */

static serve_exchange *exchange_new(serve_http *h, struct MHD_Connection *c, const char *url,
                                    const char *method)
{
    serve_exchange *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->app = h->app;
    x->http = h;
    x->connection = c;
    x->conn = conn_of(c);
    x->started = x->last_chunk = serve_now();
    snprintf(x->method, sizeof x->method, "%s", method);
    snprintf(x->path, sizeof x->path, "%s", url);
    /* both are logged: printable only */
    for (char *p = x->method; *p; p++)
        if (*p < 0x21 || *p > 0x7e) *p = '?';
    for (char *p = x->path; *p; p++)
        if (*p < 0x21 || *p > 0x7e) *p = '?';
    if (x->conn) {
        snprintf(x->client, sizeof x->client, "%s", x->conn->client);
        x->loopback = x->conn->loopback;
    } else
        describe_client(c, x->client, sizeof x->client, &x->loopback);
    return x;
}

static void exchange_free(serve_exchange *x)
{
    if (x->ctx_free) x->ctx_free(x->ctx);
    serve_release_body(x);
    free(x->response);
    free(x);
}

/* The body limit of the exchange's route: 0 for routes that take none. */
static size_t body_limit(const serve_exchange *x)
{
    return x->route->has_body ? x->app->options->limits.max_body : 0;
}

/* Appends upload data, or counts it as discarded past the limits.
 * Returns -1 to cut the connection off. */
static int take_body(serve_exchange *x, const char *data, size_t n)
{
    serve_http *h = x->http;
    const serve_options *o = x->app->options;
    double now = serve_now(), gap = now - x->last_chunk, limit = 1e-3 * o->read_timeout_ms;
    x->last_chunk = now;
    conn_wait(x->conn, CONN_BODY, now_us() + 2 * h->read_us);
    x->received += n;
    if (gap > 2 * limit) return -1; /* stalled (the sweeper may be closing it already) */
    if (gap > limit) x->too_slow = 1;
    size_t max = body_limit(x);
    if (x->body_len + n > max) x->too_large = 1;
    if (!x->too_slow && !x->too_large && !x->too_busy && x->body_len + n + 1 > x->body_cap) {
        /* a declared length was charged at the headers: allocated at once */
        size_t cap = x->body_cap ? x->body_cap : x->charged ? x->charged + 1 : 4096;
        while (cap < x->body_len + n + 1)
            cap *= 2;
        if (cap > max + 1) cap = max + 1;
        if (cap - 1 > x->charged) {
            if (budget_take(h, cap - 1 - x->charged))
                x->too_busy = 1;
            else
                x->charged = cap - 1;
        }
        char *b = x->too_busy ? NULL : realloc(x->body, cap);
        if (b) {
            x->body = b;
            x->body_cap = cap;
        } else if (!x->too_busy)
            x->too_large = 1; /* out of memory: answered 413, better than nothing */
    }
    if (x->too_slow || x->too_large || x->too_busy) {
        serve_release_body(x); /* read and discarded from now on */
        return x->received > 2 * o->limits.max_body ? -1 : 0;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return 0;
}

/* 503 with Retry-After: the bodies in flight hold --max-body-memory. */
static void reply_busy(serve_exchange *x)
{
    serve_error e;
    serve_error_set(&e, 503, "server_busy",
                    "request bodies being received or parsed hold the limit of %zu bytes "
                    "(--max-body-memory); retry later",
                    x->app->options->max_body_memory);
    serve_reply_error(x, &e);
    serve_reply_header(x, "Retry-After", "1");
}

/* 413: over the route's body limit. */
static void reply_too_large(serve_exchange *x, const char *what)
{
    serve_error e;
    if (!x->route->has_body)
        serve_error_set(&e, 413, "body_too_large", "%s %s takes no request body (%s)", x->method,
                        x->path, what);
    else
        serve_error_set(&e, 413, "body_too_large", "the body has %s; the limit is %zu (--max-body)",
                        what, x->app->options->limits.max_body);
    serve_reply_error(x, &e);
}

/* Paths under /admin/ from a loopback client, not through a proxy: behind a local
 * reverse proxy every client's connection comes from loopback, and such a
 * proxy says so in one of these headers. */
static int admin_refused(serve_exchange *x)
{
    static const char *const proxy_headers[] = {"Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"};
    serve_error e;
    if (!x->loopback)
        serve_error_set(&e, 403, "forbidden", "%s is accepted from loopback clients only", x->path);
    else {
        const char *found = NULL;
        for (size_t i = 0; i < sizeof proxy_headers / sizeof proxy_headers[0] && !found; i++)
            if (MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, proxy_headers[i]))
                found = proxy_headers[i];
        if (!found) return 0;
        serve_error_set(&e, 403, "forbidden",
                        "%s is refused through a proxy (the request has a %s header); ask it "
                        "from the server's own machine",
                        x->path, found);
    }
    serve_reply_error(x, &e);
    return 1;
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
    if (!strncmp(x->route->path, "/admin/", 7) && admin_refused(x)) return 1;
    const char *cl =
        MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (!errno && end != cl && n > body_limit(x)) {
            char what[48];
            snprintf(what, sizeof what, "%llu bytes", n);
            reply_too_large(x, what);
            return 1;
        }
        /* the declared body is charged now, allocated with its first piece */
        if (!errno && end != cl && n > 0) {
            if (budget_take(x->http, (size_t)n)) {
                reply_busy(x);
                return 1;
            }
            x->charged = (size_t)n;
        }
    }
    return 0;
}

/* The body is complete: the limits, then the route's handler. */
static void on_body(serve_exchange *x)
{
    const serve_options *o = x->app->options;
    if (x->too_large) {
        char what[64];
        snprintf(what, sizeof what, "over %zu bytes", body_limit(x));
        reply_too_large(x, what);
    } else if (x->too_slow) {
        serve_error e;
        serve_error_set(&e, 408, "request_timeout",
                        "the body stopped for over %d ms between two pieces (--read-timeout-ms)",
                        o->read_timeout_ms);
        serve_reply_error(x, &e);
    } else if (x->too_busy)
        reply_busy(x);
    else
        x->route->handle(x);
}

/* The client closed its side of the connection (or reset it). */
static int client_gone(const serve_exchange *x)
{
    if (!x->conn || x->conn->fd == MHD_INVALID_SOCKET) return 0;
    char c;
    ssize_t n = recv(x->conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
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
        /* the body, if any, must start coming */
        conn_wait(x->conn, CONN_BODY, now_us() + 2 * h->read_us);
        if (on_headers(x, method, url)) {
            conn_wait(x->conn, CONN_BUSY, 0);
            return send_reply(h, x);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        int cut = take_body(x, upload_data, *upload_size);
        *upload_size = 0;
        return cut ? MHD_NO : MHD_YES;
    }
    conn_wait(x->conn, CONN_BUSY, 0);
    if (x->pending) { /* resumed */
        x->pending = 0;
        if (x->finish) x->finish(x);
        /* A client that closed its side while the request was handled has
         * gone (as nginx's 499): the connection is shut down, the reply
         * fails, and the request counts as aborted. */
        if (client_gone(x) && x->conn) shutdown(x->conn->fd, SHUT_RDWR);
        return send_reply(h, x);
    }
    on_body(x);
    return x->pending ? MHD_YES : send_reply(h, x);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    serve_http *h = cls;
    serve_exchange *x = *con_cls;
    if (!x) return;
    *con_cls = NULL;
    serve_app *app = h->app;
    double seconds = serve_now() - x->started;
    /* A response queued but not delivered (the client hung up while it was
     * computed or sent) counts as aborted, not by its status. */
    int answered = x->replied && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (answered) {
        /* By path: a known path with a wrong method counts under its path. */
        serve_metrics_request(&app->metrics, serve_metrics_endpoint(&app->metrics, x->path),
                              x->status, seconds);
    } else
        serve_metrics_aborted(&app->metrics);
    if (app->options->access_log) {
        char batch[48] = "-";
        if (x->batch_id) snprintf(batch, sizeof batch, "%lld/%d", x->batch_id, x->batch_users);
        char status[16] = "aborted";
        if (answered) snprintf(status, sizeof status, "%d", x->status);
        serve_log("access %s %s %s status=%s users=%d latency_ms=%.3f batch=%s", x->client,
                  x->method, x->path, status, x->users, seconds * 1e3, batch);
    }
    /* A kept-alive connection waits for its next request. */
    if (x->conn) {
        x->conn->served++;
        conn_wait(x->conn, CONN_HEADERS, now_us() + h->idle_us + h->read_us);
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
    h->read_us = 1000ll * o->read_timeout_ms;
    h->idle_us = 1000000ll * o->idle_timeout_s;
    atomic_init(&h->in_flight, 0);
    atomic_init(&h->draining, 0);
    atomic_init(&h->body_bytes, 0);
    pthread_mutex_init(&h->conn_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->sweep_cond, &attr);
    pthread_condattr_destroy(&attr);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
        /* [::] takes IPv4 clients too (as ::ffff:a.b.c.d) */
        if (IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
            flags |= MHD_USE_DUAL_STACK;
    }
    h->daemon = MHD_start_daemon(
        flags, 0, on_accept, h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)o->http_threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->idle_timeout_s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        h, MHD_OPTION_END);
    int rc = h->daemon ? pthread_create(&h->sweeper, NULL, sweeper_main, h) : -1;
    if (rc) {
        if (h->daemon)
            snprintf(err, err_size, "cannot start the sweeper thread: %s", strerror(rc));
        else
            snprintf(err, err_size,
                     "cannot listen on %s (in use, or not an address of this machine?)", o->listen);
        h->sweeper_started = 0;
        serve_http_stop(h);
        return -1;
    }
    h->sweeper_started = 1;
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
    atomic_store(&h->draining, 1); /* on_accept closes what comes now */
}

long serve_http_in_flight(serve_http *h)
{
    return atomic_load(&h->in_flight);
}

void serve_http_stop(serve_http *h)
{
    if (!h) return;
    if (h->sweeper_started) {
        pthread_mutex_lock(&h->conn_lock);
        h->sweep_quit = 1;
        pthread_cond_broadcast(&h->sweep_cond);
        pthread_mutex_unlock(&h->conn_lock);
        pthread_join(h->sweeper, NULL);
    }
    if (h->daemon) MHD_stop_daemon(h->daemon); /* closes every connection */
    pthread_cond_destroy(&h->sweep_cond);
    pthread_mutex_destroy(&h->conn_lock);
    free(h);
}
