/*
 * cmd_init.c - `elastic init`: a model with random weights (spec section 5)
 * from a config given as key=value arguments and/or a config file.
 */
#include "cli_util.h"
#include "commands.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char cmd_init_usage[] =
    "usage: elastic init [--config FILE] [key=value ...] [--seed S] -o MODEL\n"
    "Creates a model with random weights (spec section 5). Config keys (spec\n"
    "section 1): model, num_items (required), max_len, hidden, heads, layers,\n"
    "experts, ffn, mem_subkeys, mem_key, mem_topk, ln_eps. FILE holds key=value\n"
    "lines ('#' starts a comment); arguments override it.\n"
    "  -c, --config FILE  config file\n"
    "  -s, --seed S       seed of the weights (default 1)\n"
    "  -o, --output MODEL where to write (required)\n"
    "  -h, --help         this text\n";

static int read_config_file(elastic_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512], where[600];
    int no = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        line[strcspn(line, "#\r\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!*p) continue;
        snprintf(where, sizeof where, "%s line %d", path, no);
        rc = cli_config_pair(c, p, where);
    }
    fclose(f);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"seed", required_argument, 0, 's'},
                                         {"output", required_argument, 0, 'o'},
                                         {0, 0, 0, 0}};
    elastic_config config;
    elastic_config_default(&config);
    const char *out = NULL;
    uint64_t seed = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "c:s:o:", opts, 0, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (read_config_file(&config, optarg)) return 1;
            break;
        case 's':
            if (cli_u64(optarg, "--seed", &seed)) return 2;
            break;
        case 'o': out = optarg; break;
        default: return cli_stop(c);
        }
    }
    for (int i = optind; i < argc; i++)
        if (cli_config_pair(&config, argv[i], "argument")) return 2;
    if (!out) return cli_usage_error("needs -o MODEL");
    elastic_model *model;
    elastic_status st = elastic_model_init_random(&model, &config, seed);
    if (st != ELASTIC_OK) return cli_fail(st, NULL);
    st = elastic_model_save(model, out);
    elastic_model_free(model);
    if (st != ELASTIC_OK) return cli_fail(st, out);
    return 0;
}
