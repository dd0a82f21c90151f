/* cpu_isa.c - picks the fast kernel table for the instruction sets this CPU has. */
#include "cpu_kernels.h"

#include <stddef.h>

const elastic_cpu_kernels *elastic_cpu_kernels_for(elastic_cpu_isa isa)
{
#if defined(ELASTIC_CPU_X86)
    __builtin_cpu_init();
    int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    switch (isa) {
    case ELASTIC_CPU_ISA_BEST:
        return has_avx512 ? &elastic_cpu_kernels_avx512
               : has_avx2 ? &elastic_cpu_kernels_avx2
                          : &elastic_cpu_kernels_generic;
    case ELASTIC_CPU_ISA_GENERIC: return &elastic_cpu_kernels_generic;
    case ELASTIC_CPU_ISA_AVX2: return has_avx2 ? &elastic_cpu_kernels_avx2 : NULL;
    case ELASTIC_CPU_ISA_AVX512: return has_avx512 ? &elastic_cpu_kernels_avx512 : NULL;
    }
    return NULL;
#else
    return isa == ELASTIC_CPU_ISA_BEST || isa == ELASTIC_CPU_ISA_GENERIC
               ? &elastic_cpu_kernels_generic
               : NULL;
#endif
}
