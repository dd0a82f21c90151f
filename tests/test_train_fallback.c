/*
 * test_train_fallback.c - training on a backend without gradient ops (OpenCL
 * here): refused unless CPU fallback is allowed, then reported node by node,
 * with the same loss as on the CPU. A separate program because it loads the
 * OpenCL driver (PoCL), whose threads upset LeakSanitizer's exit-time scan in
 * sanitized builds; see tests/CMakeLists.txt.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "elastic.h"
#include "test_util.h"

/* A backend without gradient ops: refused unless fallback is allowed, and
 * then every gradient node that fell back is counted. */
static void test_fallback_reported(void **state)
{
    (void)state;
    elastic_backend_info info = {0};
    int have_opencl = 0;
    for (int i = 0; i < elastic_backend_count(); i++)
        if (elastic_backend_get_info(i, &info) == ELASTIC_OK && !strcmp(info.name, "opencl") &&
            info.available)
            have_opencl = 1;
    if (!have_opencl) {
        printf("SKIP fallback check: no OpenCL device\n");
        return;
    }
    elastic_model *m = tu_small_model("elastic", 2);
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.session.backend = "opencl";
    elastic_trainer *tr = NULL;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    tu_batch b;
    tu_make_batch(&b, tu_seed(), 0);
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, NULL),
                     ELASTIC_ERR_UNSUPPORTED);
    printf("refused: %s\n", elastic_last_error());
    assert_non_null(strstr(elastic_last_error(), "fallback"));
    elastic_trainer_free(tr);

    o.session.allow_cpu_fallback = 1;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    double on_cl, on_cpu;
    assert_int_equal(elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &on_cl, NULL),
                     ELASTIC_OK);
    assert_true(elastic_trainer_fallback_nodes(tr) > 0);
    elastic_trainer_free(tr);
    tr = tu_trainer(m, 0.0f, 0);
    assert_int_equal(elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &on_cpu, NULL),
                     ELASTIC_OK);
    assert_int_equal(elastic_trainer_fallback_nodes(tr), 0);
    assert_true(fabs(on_cl - on_cpu) <= 1e-5 * fabs(on_cpu));
    elastic_trainer_free(tr);
    elastic_model_free(m);
}

int main(void)
{
    printf("seed %llu\n", (unsigned long long)tu_seed());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
