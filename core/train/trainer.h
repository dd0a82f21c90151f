/*
 * trainer.h - what trainer_epoch.c needs from inside a trainer.
 */
#ifndef ELASTIC_CORE_TRAINER_H
#define ELASTIC_CORE_TRAINER_H

#include "elastic.h"

const elastic_train_options *elastic_trainer_options(const elastic_trainer *trainer);
const elastic_model *elastic_trainer_model(const elastic_trainer *trainer);
/* False for a trainer freed by elastic_trainer_free (while its memory is not reused). */
int elastic_trainer_live(const elastic_trainer *trainer);
void elastic_trainer_count_epoch(elastic_trainer *trainer);

#endif
