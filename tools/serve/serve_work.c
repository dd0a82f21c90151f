/* serve_work.c - allocating and freeing works (see serve_work.h). */
#include "serve_work.h"
#include "serve_model.h"

#include <stdlib.h>

serve_work *serve_work_new(void)
{
    return calloc(1, sizeof(serve_work));
}

void serve_work_free(serve_work *w)
{
    if (!w) return;
    free(w->items);
    free(w->offsets);
    free(w->candidates);
    free(w->cand_offsets);
    free(w->ids);
    free(w->scores);
    free(w->vectors);
    serve_model_release(w->model);
    free(w);
}
