/*
 * commands.h - the subcommands of the `elastic` program that live in their
 * own source files (tools/cmd_*.c). Each takes argv starting at the command
 * name and returns the process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef ELASTIC_TOOLS_COMMANDS_H
#define ELASTIC_TOOLS_COMMANDS_H

int elastic_cmd_synth(int argc, char **argv);
int elastic_cmd_train(int argc, char **argv);
int elastic_cmd_eval(int argc, char **argv);
int elastic_cmd_bench(int argc, char **argv);

#endif
