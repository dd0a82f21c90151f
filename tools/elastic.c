/*
 * elastic.c - the `elastic` command line program: finds the command in the
 * table (commands.def) and runs it. Each command lives in tools/cmd_<name>.c;
 * what they share is in cli_util.c.
 *
 *   elastic COMMAND [options]        elastic COMMAND --help, elastic --help
 *
 * Errors go to stderr; exit status 0 ok, 1 failure, 2 bad usage.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
#define ELASTIC_COMMAND(name, summary) {#name, cmd_##name, summary, cmd_##name##_usage},
#include "commands.def"
#undef ELASTIC_COMMAND
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_usage(FILE *out)
{
    fputs("usage: elastic COMMAND [options]   (elastic COMMAND --help for more)\n", out);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fputs("  --version    the library's version\n", out);
}

static const cli_command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        if (argc > 2) { /* elastic help COMMAND */
            const cli_command *cmd = find_command(argv[2]);
            if (cmd) {
                fputs(cmd->usage, stdout);
                return 0;
            }
            fprintf(stderr, "elastic: unknown command '%s'\n", argv[2]);
            print_usage(stderr);
            return 2;
        }
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("elastic %s\n", elastic_version());
        return 0;
    }
    const cli_command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "elastic: unknown command '%s'\n", name);
        print_usage(stderr);
        return 2;
    }
    cli_begin("elastic", cmd->name, cmd->usage);
    return cmd->run(argc - 1, argv + 1);
}
