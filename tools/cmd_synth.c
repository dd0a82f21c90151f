/*
 * cmd_synth.c - `elastic synth`: placeholder until the command lands.
 */
#include "commands.h"

#include <stdio.h>

int elastic_cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("elastic: 'synth' is not available in this build yet\n", stderr);
    return 2;
}
