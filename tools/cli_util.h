/*
 * cli_util.h - what the command-line programs share: the command-table row,
 * one error printer, one integer parser and one number parser (range checks,
 * clear messages), one monotonic clock, one option parser (getopt_long with
 * the program's own messages and --help) and the run options every command
 * that runs a model takes (--backend --device --threads --allow-fallback),
 * parsed into elastic_session_options in one place.
 *
 * Exit statuses of every command: 0 ok, 1 failure, 2 bad usage.
 */
#ifndef ELASTIC_TOOLS_CLI_UTIL_H
#define ELASTIC_TOOLS_CLI_UTIL_H

#include "elastic.h"

#include <getopt.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* A row of the command table (tools/commands.def). */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
    const char *summary;               /* one line for `elastic --help` */
    const char *usage;                 /* `elastic NAME --help` */
} cli_command;

/* Names the program and the command for messages and --help (command NULL:
 * a program without commands). */
void cli_begin(const char *program, const char *command, const char *usage);

/* "elastic: <command>: <message>" on stderr. */
void cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* "elastic: <command>: <what>: <last error> (<status name>)"; returns 1.
 * what may be NULL. */
int cli_fail(elastic_status st, const char *what);
/* cli_error, then the command's usage on stderr; returns 2. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* The command's usage on stdout; returns 0. */
int cli_help(void);

/* Parsers of option values: 0, or -1 after printing "<what> must be ...,
 * got '<s>'". cli_int takes a decimal integer in lo..hi; cli_u64 one in
 * 0..UINT64_MAX (seeds); cli_number a finite number in [lo, hi], or in
 * (lo, hi] when lo_open. */
int cli_int(const char *s, const char *what, long long lo, long long hi, long long *out);
int cli_u64(const char *s, const char *what, uint64_t *out);
int cli_number(const char *s, const char *what, double lo, double hi, int lo_open, double *out);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* The run options a command takes (cli_getopt's `run`). */
enum {
    CLI_RUN_BACKEND = 1,         /* -b, --backend B */
    CLI_RUN_DEVICE = 2,          /* --device D */
    CLI_RUN_THREADS = 4,         /* --threads T */
    CLI_RUN_FALLBACK = 8,        /* --allow-fallback */
    CLI_RUN_REFERENCE = 16,      /* --reference: --backend-options cpu.isa=reference */
    CLI_RUN_BACKEND_OPTIONS = 32 /* --backend-options TEXT (backend.key=value,...) */
};
#define CLI_RUN                                                                                    \
    (CLI_RUN_BACKEND | CLI_RUN_DEVICE | CLI_RUN_THREADS | CLI_RUN_FALLBACK |                       \
     CLI_RUN_BACKEND_OPTIONS)

/* Their lines for usage texts. */
#define CLI_USAGE_BACKEND "  -b, --backend B       cpu, opencl, cuda or auto (default cpu)\n"
#define CLI_USAGE_DEVICE_THREADS_FALLBACK                                                          \
    "      --device D        device index within the backend (default 0)\n"                        \
    "      --threads T       CPU threads (default: all)\n"                                         \
    "      --allow-fallback  run ops the backend lacks on the CPU (reported)\n"                    \
    "      --backend-options TEXT  backend.key=value,... (README: cpu.isa, opencl.device, ...)\n"
#define CLI_USAGE_RUN CLI_USAGE_BACKEND CLI_USAGE_DEVICE_THREADS_FALLBACK
#define CLI_USAGE_REFERENCE                                                                        \
    "      --reference       CPU backend: the scalar float64 reference kernels\n"

/* The session options of the commands before their options: the library's
 * defaults on the CPU backend. */
void cli_run_defaults(elastic_session_options *session);

/* getopt_long for a command: `options` (ended by a zero row; codes 'b', 'h'
 * and 1000 and up are taken) plus --help and the run options in `run`, which
 * it parses into *session itself. Returns the next option of the command's
 * own, -1 at the end (optind is then the first operand), or CLI_HELP (the
 * usage was printed on stdout) or CLI_BAD (a message was printed on stderr)
 * for cli_stop. Starts over for each new argv. */
enum { CLI_HELP = -2, CLI_BAD = -3 };
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *options,
               unsigned run, elastic_session_options *session);
/* The exit status for what cli_getopt returned that a command does not
 * handle: 0 after --help, 2 otherwise (an unknown code prints the usage). */
int cli_stop(int c);

/* Values the data commands share: --format auto|pairs|movielens|csv. */
int cli_data_format(const char *s, elastic_data_format *out);
/* One `key=value` of a model config; `where` names its origin in messages. */
int cli_config_pair(elastic_config *config, const char *pair, const char *where);

/* Loads a model and opens a session on it; prints errors (returns 1). */
int cli_open_session(const char *model_path, const elastic_session_options *options,
                     elastic_model **model, elastic_session **session);
/* "note: N of M nodes fell back to the CPU" after a run that had any. */
void cli_report_fallback(const elastic_session *session);

/* Peak-RSS probe (Linux >= 4.0): cli_rss_reset resets the process's
 * high-water mark to its current RSS and returns that RSS in bytes;
 * cli_rss_peak returns the high-water mark in bytes. -1 when unavailable. */
long long cli_rss_reset(void);
long long cli_rss_peak(void);

#endif
