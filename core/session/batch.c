/*
 * batch.c - history checks and the padded recency-order layout (batch.h).
 */
#include "session/batch.h"

#include "base/error.h"

elastic_status elastic_batch_check(int64_t num_items, const int32_t *items, const int64_t *offsets,
                                   int batch, int64_t *longest)
{
    if (!items || !offsets)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "histories: items or offsets is NULL");
    if (batch < 1) return elastic_error(ELASTIC_ERR_INVALID_ARG, "batch size %d < 1", batch);
    if (offsets[0] != 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "offsets[0] must be 0, got %lld",
                             (long long)offsets[0]);
    *longest = 0;
    for (int b = 0; b < batch; b++) {
        int64_t len = offsets[b + 1] - offsets[b];
        if (len < 0)
            return elastic_error(ELASTIC_ERR_INVALID_ARG, "offsets decrease at user %d", b);
        if (len == 0)
            return elastic_error(ELASTIC_ERR_EMPTY_HISTORY, "user %d has an empty history", b);
        for (int64_t i = offsets[b]; i < offsets[b + 1]; i++)
            if (items[i] < 1 || items[i] > num_items)
                return elastic_error(
                    ELASTIC_ERR_OUT_OF_RANGE, "user %d, item %lld: id %d outside 1..%lld", b,
                    (long long)(i - offsets[b]), (int)items[i], (long long)num_items);
        if (len > *longest) *longest = len;
    }
    return ELASTIC_OK;
}

void elastic_batch_pad(const int32_t *items, const int64_t *offsets, int batch, int64_t n,
                       int32_t *items_out, int32_t *lengths_out)
{
    for (int b = 0; b < batch; b++) {
        int64_t lb = offsets[b + 1] - offsets[b], nb = lb < n ? lb : n;
        const int32_t *h = items + offsets[b];
        for (int64_t r = 0; r < n; r++)
            items_out[b * n + r] = r < nb ? h[lb - 1 - r] : 0;
        lengths_out[b] = (int32_t)nb;
    }
}
