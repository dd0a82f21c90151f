/*
 * commands.h - the commands of the `elastic` program, declared from the
 * command table (commands.def): each takes argv starting at the command's
 * name and returns the exit status (0 ok, 1 failure, 2 bad usage).
 */
#ifndef ELASTIC_TOOLS_COMMANDS_H
#define ELASTIC_TOOLS_COMMANDS_H

#define ELASTIC_COMMAND(name, summary)                                                             \
    int cmd_##name(int argc, char **argv);                                                         \
    extern const char cmd_##name##_usage[];
#include "commands.def"
#undef ELASTIC_COMMAND

#endif
