/*
 * cmd_train.c - `elastic train`: placeholder until the command lands.
 */
#include "commands.h"

#include <stdio.h>

int elastic_cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("elastic: 'train' is not available in this build yet\n", stderr);
    return 2;
}
