/*
 * elastic_train.h - part of the public C API of libelastic (included by elastic.h).
 */
#ifndef ELASTIC_TRAIN_H
#define ELASTIC_TRAIN_H

#include "elastic.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* ELASTIC_TRAIN_H */
