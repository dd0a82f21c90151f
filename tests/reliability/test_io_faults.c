/*
 * test_io_faults.c - I/O faults on every file the library writes: a model
 * (elastic_model_save), a trainer checkpoint (elastic_trainer_save_state)
 * and a pairs log (elastic_dataset_save_pairs), each
 *   - on a full disk: the temporary file is a link to /dev/full (ENOSPC
 *     from the kernel, no root or tmpfs needed);
 *   - cut short: RLIMIT_FSIZE below the file's size with SIGXFSZ ignored
 *     (a real short write, EFBIG);
 *   - into a read-only directory (chmod 0555; as root, which ignores the
 *     mode, a directory of the read-only /sys instead);
 *   - onto a path that is a directory (the final rename fails).
 * Each must fail with ELASTIC_ERR_IO and a message naming the path, leave
 * the previous file byte for byte, and leave no temporary file behind; a
 * save that succeeds replaces the file. (docs/reliability.md)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elastic.h"

static int bad, cases;
static char dir[256];
static elastic_model *model, *other;
static elastic_trainer *trainer;
static elastic_dataset *dataset;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            bad++;                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

typedef elastic_status (*writer)(const char *path, int variant);

/* variant 0 writes `model` (or the trainer state, or the log); variant 1
 * writes something else, so that a replaced file is told from the old. */
static elastic_status write_model(const char *path, int variant)
{
    return elastic_model_save(variant ? other : model, path);
}
static elastic_status write_state(const char *path, int variant)
{
    if (variant) {
        int32_t items[] = {1, 2, 3};
        int64_t offsets[] = {0, 3};
        int32_t target = 4;
        elastic_status st = elastic_trainer_step(trainer, items, offsets, &target, 1, NULL);
        if (st != ELASTIC_OK) return st;
    }
    return elastic_trainer_save_state(trainer, path);
}
static elastic_status write_log(const char *path, int variant)
{
    (void)variant;
    return elastic_dataset_save_pairs(dataset, path);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return NULL; /* none, or a directory */
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(size > 0 ? (size_t)size : 1);
    *n = b ? fread(b, 1, (size_t)size, f) : 0;
    fclose(f);
    return b;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Runs one fault: the previous file at `path` (if any) must survive. */
static void expect_fault(const char *what, const char *name, writer w, const char *path,
                         int must_exist)
{
    cases++;
    size_t n0 = 0, n1 = 0;
    unsigned char *before = slurp(path, &n0);
    CHECK(!must_exist || before, "%s %s: no previous file", name, what);
    elastic_status st = w(path, 1);
    const char *msg = elastic_last_error();
    CHECK(st == ELASTIC_ERR_IO, "%s %s: status %s, expected ELASTIC_ERR_IO (%s)", name, what,
          elastic_status_name(st), msg);
    CHECK(strstr(msg, path) != NULL, "%s %s: the message does not name %s: %s", name, what, path,
          msg);
    unsigned char *after = slurp(path, &n1);
    CHECK((!before && !after) || (before && after && n0 == n1 && !memcmp(before, after, n0)),
          "%s %s: the previous file changed", name, what);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!exists(tmp), "%s %s: %s left behind", name, what, tmp);
    printf("ok   %-14s %-34s %s\n", name, what, msg);
    free(before);
    free(after);
}

static void run_writer(const char *name, writer w, const char *file, size_t fsize_limit)
{
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(w(path, 0) == ELASTIC_OK, "%s: first save: %s", name, elastic_last_error());

    /* A full disk: the temporary file is /dev/full. */
    if (symlink("/dev/full", tmp) == 0) expect_fault("full disk (/dev/full)", name, w, path, 1);
    else CHECK(0, "symlink: %s", strerror(errno));
    remove(tmp);

    /* A short write: the file-size limit cuts it (EFBIG). */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = old;
    lim.rlim_cur = fsize_limit;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        expect_fault("short write (RLIMIT_FSIZE)", name, w, path, 1);
        setrlimit(RLIMIT_FSIZE, &old);
    } else {
        CHECK(0, "setrlimit: %s", strerror(errno));
    }
    signal(SIGXFSZ, prev);

    /* A read-only directory. */
    char ro[512], ro_path[600];
    snprintf(ro, sizeof ro, "%s/ro-%s", dir, file);
    mkdir(ro, 0755);
    snprintf(ro_path, sizeof ro_path, "%s/%s", ro, file);
    CHECK(w(ro_path, 0) == ELASTIC_OK, "%s: save into %s: %s", name, ro, elastic_last_error());
    chmod(ro, 0555);
    if (access(ro, W_OK) != 0) {
        expect_fault("read-only directory", name, w, ro_path, 1);
    } else { /* root: the mode is not enforced; /sys is a read-only file system */
        snprintf(ro_path, sizeof ro_path, "/sys/elastic-io-fault-%s", file);
        expect_fault("read-only directory (/sys)", name, w, ro_path, 0);
    }
    chmod(ro, 0755);

    /* The final rename fails: the path is a directory. */
    char as_dir[512];
    snprintf(as_dir, sizeof as_dir, "%s/dir-%s", dir, file);
    mkdir(as_dir, 0755);
    expect_fault("rename onto a directory", name, w, as_dir, 0);
    rmdir(as_dir);

    /* A save that works replaces the file, with no temporary left. */
    size_t n0 = 0, n1 = 0;
    unsigned char *before = slurp(path, &n0);
    cases++;
    CHECK(w(path, 1) == ELASTIC_OK, "%s: save: %s", name, elastic_last_error());
    unsigned char *after = slurp(path, &n1);
    if (w != write_log) /* the log is the same data: same bytes */
        CHECK(before && after && (n0 != n1 || memcmp(before, after, n0)),
              "%s: a successful save did not replace the file", name);
    CHECK(!exists(tmp), "%s: %s left behind", name, tmp);
    free(before);
    free(after);
    char rm[1200];
    snprintf(rm, sizeof rm, "%s/%s", ro, file);
    remove(rm);
    rmdir(ro);
    remove(path);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/elastic-io-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 50;
    c.max_len = 8;
    c.hidden = 16;
    c.layers = 1;
    c.experts = 2;
    c.mem_subkeys = 4;
    c.mem_topk = 2;
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.session.backend = "cpu";
    o.session.num_threads = 1;
    elastic_synth_options so;
    elastic_synth_options_default(&so);
    so.users = 50;
    so.items = 50;
    if (elastic_config_validate(&c) != ELASTIC_OK ||
        elastic_model_init_random(&model, &c, 1) != ELASTIC_OK ||
        elastic_model_init_random(&other, &c, 2) != ELASTIC_OK ||
        elastic_trainer_init(&trainer, model, &o) != ELASTIC_OK ||
        elastic_dataset_synth(&dataset, &so) != ELASTIC_OK) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }
    /* Limits well below each file's size (a model here is ~100 KB). */
    run_writer("model save", write_model, "model.st", 4096);
    run_writer("state save", write_state, "model.st.ckpt.state", 4096);
    run_writer("log save", write_log, "log.txt", 1024);
    elastic_trainer_free(trainer);
    elastic_model_free(model);
    elastic_model_free(other);
    elastic_dataset_free(dataset);
    rmdir(dir);
    printf("%d fault cases, %d failed checks\n", cases, bad);
    return bad ? 1 : 0;
}
