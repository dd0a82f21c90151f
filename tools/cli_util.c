/*
 * cli_util.c - the helpers every command of the command-line programs uses:
 * messages, value parsers, the clock, option parsing and the run options
 * (see cli_util.h).
 */
#include "cli_util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static const char *cli_program = "elastic", *cli_command_name, *cli_usage_text = "";

void cli_begin(const char *program, const char *command, const char *usage)
{
    cli_program = program;
    cli_command_name = command;
    cli_usage_text = usage ? usage : "";
}

static void vmessage(const char *fmt, va_list ap) CLI_PRINTF(1, 0);

static void vmessage(const char *fmt, va_list ap)
{
    if (cli_command_name)
        fprintf(stderr, "%s: %s: ", cli_program, cli_command_name);
    else
        fprintf(stderr, "%s: ", cli_program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

int cli_fail(elastic_status st, const char *what)
{
    if (what)
        cli_error("%s: %s (%s)", what, elastic_last_error(), elastic_status_name(st));
    else
        cli_error("%s (%s)", elastic_last_error(), elastic_status_name(st));
    return 1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fputs(cli_usage_text, stderr);
    return 2;
}

int cli_help(void)
{
    fputs(cli_usage_text, stdout);
    return 0;
}

/* ---------------------------------------------------------------- numbers */

/* The one integer reader: an optional sign and decimal digits, nothing else.
 * Returns -1 for anything else or a magnitude over ULLONG_MAX. */
static int read_integer(const char *s, int *negative, unsigned long long *magnitude)
{
    const char *p = s;
    *negative = 0;
    if (*p == '-' || *p == '+') *negative = *p++ == '-';
    if (!isdigit((unsigned char)*p)) return -1;
    unsigned long long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *magnitude = v;
    return 0;
}

int cli_int(const char *s, const char *what, long long lo, long long hi, long long *out)
{
    int negative;
    unsigned long long m;
    long long v = 0;
    int ok = read_integer(s, &negative, &m) == 0;
    if (ok && !negative && m <= (unsigned long long)LLONG_MAX)
        v = (long long)m;
    else if (ok && negative && m <= (unsigned long long)LLONG_MAX)
        v = -(long long)m;
    else if (ok && negative && m == (unsigned long long)LLONG_MAX + 1)
        v = LLONG_MIN;
    else
        ok = 0;
    if (!ok || v < lo || v > hi) {
        if (hi == LLONG_MAX)
            cli_error("%s must be an integer >= %lld, got '%s'", what, lo, s);
        else
            cli_error("%s must be an integer in %lld..%lld, got '%s'", what, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_u64(const char *s, const char *what, uint64_t *out)
{
    int negative;
    unsigned long long m;
    if (read_integer(s, &negative, &m) || (negative && m) || m > UINT64_MAX) {
        cli_error("%s must be an integer in 0..%llu, got '%s'", what,
                  (unsigned long long)UINT64_MAX, s);
        return -1;
    }
    *out = (uint64_t)m;
    return 0;
}

int cli_number(const char *s, const char *what, double lo, double hi, int lo_open, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int ok = end != s && !*end && !errno && !isspace((unsigned char)*s) && isfinite(v) &&
             (lo_open ? v > lo : v >= lo) && v <= hi;
    if (!ok) {
        if (hi == INFINITY)
            cli_error("%s must be a number %s %g, got '%s'", what, lo_open ? ">" : ">=", lo, s);
        else
            cli_error("%s must be a number in %s%g, %g], got '%s'", what, lo_open ? "(" : "[", lo,
                      hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- options */

enum { OPT_DEVICE = 1000, OPT_THREADS, OPT_FALLBACK, OPT_BACKEND_OPTIONS, OPT_REFERENCE };

/* The run options: these rows and run_option() below are the only place
 * that knows them. */
static const struct run_row {
    unsigned flag;
    struct option option;
} run_rows[] = {
    {CLI_RUN_BACKEND, {"backend", required_argument, 0, 'b'}},
    {CLI_RUN_DEVICE, {"device", required_argument, 0, OPT_DEVICE}},
    {CLI_RUN_THREADS, {"threads", required_argument, 0, OPT_THREADS}},
    {CLI_RUN_FALLBACK, {"allow-fallback", no_argument, 0, OPT_FALLBACK}},
    {CLI_RUN_BACKEND_OPTIONS, {"backend-options", required_argument, 0, OPT_BACKEND_OPTIONS}},
    {CLI_RUN_REFERENCE, {"reference", no_argument, 0, OPT_REFERENCE}},
};
#define RUN_ROWS (int)(sizeof run_rows / sizeof run_rows[0])

void cli_run_defaults(elastic_session_options *session)
{
    elastic_session_options_default(session);
    session->backend = "cpu";
}

/* Applies run option c; 1 when c is not one, 0 when applied, -1 on error. */
static int run_option(int c, const char *arg, elastic_session_options *so)
{
    long long v;
    switch (c) {
    case 'b': so->backend = arg; return 0;
    case OPT_DEVICE:
        if (cli_int(arg, "--device", 0, 1 << 20, &v)) return -1;
        so->device = (int)v;
        return 0;
    case OPT_THREADS:
        if (cli_int(arg, "--threads", 0, 4096, &v)) return -1;
        so->num_threads = (int)v;
        return 0;
    case OPT_FALLBACK: so->allow_cpu_fallback = 1; return 0;
    case OPT_BACKEND_OPTIONS: so->backend_options = arg; return 0;
    case OPT_REFERENCE: so->backend_options = "cpu.isa=reference"; return 0;
    default: return 1;
    }
}

/* Reports the option that getopt_long just rejected ('?'), as the user wrote it. */
static void report_rejected(char **argv, const struct option *all)
{
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;
    if (!arg || strncmp(arg, "--", 2)) {
        if (optopt > 0 && optopt < 256 && isprint(optopt))
            cli_usage_error("unknown option '-%c'", optopt);
        else
            cli_usage_error("unknown option '%s'", arg ? arg : "?");
        return;
    }
    size_t len = strcspn(arg + 2, "=");
    const struct option *match = NULL;
    char names[256] = "";
    int matches = 0;
    for (const struct option *o = all; o->name; o++) {
        if (strncmp(o->name, arg + 2, len)) continue;
        if (strlen(o->name) == len) { /* exact: the only candidate */
            match = o;
            matches = 1;
            break;
        }
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s--%s", matches ? ", " : "", o->name);
        match = o;
        matches++;
    }
    if (matches > 1)
        cli_usage_error("ambiguous option '%.*s' (%s)", (int)len + 2, arg, names);
    else if (matches == 1 && match->has_arg == no_argument && arg[2 + len] == '=')
        cli_usage_error("option '--%s' takes no value", match->name);
    else
        cli_usage_error("unknown option '%.*s'", (int)len + 2, arg);
}

/* The option whose value is missing (':'), as the user wrote it. */
static void report_missing(char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;
    if (arg && !strncmp(arg, "--", 2))
        cli_usage_error("option '%.*s' needs a value", (int)strcspn(arg, "="), arg);
    else
        cli_usage_error("option '-%c' needs a value", optopt > 0 && optopt < 256 ? optopt : '?');
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *options,
               unsigned run, elastic_session_options *session)
{
    static char **current;
    static struct option all[64];
    static char shorts[64];
    static unsigned current_run;
    if (argv != current) { /* a new command line: the merged tables */
        int n = 0;
        for (const struct option *o = options; o && o->name && n < 48; o++)
            all[n++] = *o;
        for (int i = 0; i < RUN_ROWS; i++)
            if (run & run_rows[i].flag) all[n++] = run_rows[i].option;
        all[n++] = (struct option){"help", no_argument, 0, 'h'};
        all[n] = (struct option){0, 0, 0, 0};
        snprintf(shorts, sizeof shorts, ":%s%sh", shortopts ? shortopts : "",
                 run & CLI_RUN_BACKEND ? "b:" : "");
        current = argv;
        current_run = run;
        optind = 1;
        opterr = 0;
    }
    for (;;) {
        int c = getopt_long(argc, argv, shorts, all, NULL);
        switch (c) {
        case 'h': cli_help(); return CLI_HELP;
        case ':': report_missing(argv); return CLI_BAD;
        case '?': report_rejected(argv, all); return CLI_BAD;
        default: break;
        }
        if (c == -1 || !session || (c == 'b' && !(current_run & CLI_RUN_BACKEND))) return c;
        int r = run_option(c, optarg, session);
        if (r < 0) return CLI_BAD;
        if (r > 0) return c;
    }
}

int cli_stop(int c)
{
    if (c == CLI_HELP) return 0;
    if (c != CLI_BAD) cli_usage_error("unexpected option code %d", c);
    return 2;
}

/* ---------------------------------------------------------------- shared values */

int cli_data_format(const char *s, elastic_data_format *out)
{
    static const struct {
        const char *name;
        elastic_data_format format;
    } formats[] = {{"auto", ELASTIC_DATA_FORMAT_AUTO},
                   {"pairs", ELASTIC_DATA_FORMAT_PAIRS},
                   {"movielens", ELASTIC_DATA_FORMAT_MOVIELENS},
                   {"csv", ELASTIC_DATA_FORMAT_CSV},
                   {"sequences", ELASTIC_DATA_FORMAT_SEQUENCES},
                   {"recbole", ELASTIC_DATA_FORMAT_RECBOLE}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(s, formats[i].name)) {
            *out = formats[i].format;
            return 0;
        }
    cli_error("--format must be auto, pairs, movielens, csv, sequences or recbole, got '%s'", s);
    return -1;
}

int cli_config_pair(elastic_config *config, const char *pair, const char *where)
{
    char key[64];
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair || (size_t)(eq - pair) >= sizeof key) {
        cli_error("%s: expected key=value, got '%s'", where, pair);
        return -1;
    }
    memcpy(key, pair, (size_t)(eq - pair));
    key[eq - pair] = '\0';
    if (elastic_config_set(config, key, eq + 1) != ELASTIC_OK) {
        cli_error("%s: %s", where, elastic_last_error());
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- sessions */

int cli_open_session(const char *model_path, const elastic_session_options *options,
                     elastic_model **model, elastic_session **session)
{
    elastic_status st = elastic_model_load(model, model_path);
    if (st != ELASTIC_OK) return cli_fail(st, model_path);
    st = elastic_session_init(session, *model, options);
    if (st != ELASTIC_OK) {
        elastic_model_free(*model);
        *model = NULL;
        return cli_fail(st, "session");
    }
    return 0;
}

void cli_report_fallback(const elastic_session *session)
{
    elastic_run_stats stats;
    if (elastic_session_last_stats(session, &stats) == ELASTIC_OK && stats.fallback_nodes > 0)
        cli_error("note: %d of %d nodes fell back to the CPU (see `elastic plan`)",
                  stats.fallback_nodes, stats.nodes);
}

static long long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

long long cli_rss_reset(void)
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    if (fclose(f) != 0 || !ok) return -1;
    long long rss = status_kib("VmRSS");
    return rss < 0 ? -1 : rss * 1024;
}

long long cli_rss_peak(void)
{
    long long hwm = status_kib("VmHWM");
    return hwm < 0 ? -1 : hwm * 1024;
}
