/*
 * cmd_bench.c - `elastic bench`: placeholder until the command lands.
 */
#include "commands.h"

#include <stdio.h>

int elastic_cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("elastic: 'bench' is not available in this build yet\n", stderr);
    return 2;
}
