/* error.c - thread-local error messages and status names. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[1024];

elastic_status elastic_error(elastic_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return status;
}

void elastic_error_clear(void) { last_message[0] = '\0'; }

const char *elastic_last_error(void) { return last_message; }

const char *elastic_status_name(elastic_status status)
{
    switch (status) {
    case ELASTIC_OK: return "ELASTIC_OK";
    case ELASTIC_ERR_INVALID_ARG: return "ELASTIC_ERR_INVALID_ARG";
    case ELASTIC_ERR_OUT_OF_RANGE: return "ELASTIC_ERR_OUT_OF_RANGE";
    case ELASTIC_ERR_EMPTY_HISTORY: return "ELASTIC_ERR_EMPTY_HISTORY";
    case ELASTIC_ERR_SHAPE: return "ELASTIC_ERR_SHAPE";
    case ELASTIC_ERR_FORMAT: return "ELASTIC_ERR_FORMAT";
    case ELASTIC_ERR_IO: return "ELASTIC_ERR_IO";
    case ELASTIC_ERR_NO_MEMORY: return "ELASTIC_ERR_NO_MEMORY";
    case ELASTIC_ERR_UNSUPPORTED: return "ELASTIC_ERR_UNSUPPORTED";
    case ELASTIC_ERR_BACKEND: return "ELASTIC_ERR_BACKEND";
    case ELASTIC_ERR_INTERNAL: return "ELASTIC_ERR_INTERNAL";
    }
    return "ELASTIC_ERR_UNKNOWN";
}

const char *elastic_version(void) { return "0.1.0"; }
