/*
 * cmd_eval.c - `elastic eval`: placeholder until the command lands.
 */
#include "commands.h"

#include <stdio.h>

int elastic_cmd_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("elastic: 'eval' is not available in this build yet\n", stderr);
    return 2;
}
