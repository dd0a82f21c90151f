/* cpu_isa.c - picks the fast kernel table for the instruction sets this CPU
 * has: x86-64 by __builtin_cpu_supports, aarch64 by getauxval(AT_HWCAP);
 * other architectures (riscv64, s390x, ...) have the generic table only. */
#include "cpu_kernels.h"

#include <stddef.h>

#if defined(ELASTIC_CPU_AARCH64)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1) /* Linux arch/arm64 uapi hwcap.h */
#endif
#endif

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
    case ELASTIC_CPU_ISA_NEON: return NULL;
    }
    return NULL;
#elif defined(ELASTIC_CPU_AARCH64)
    /* Advanced SIMD (NEON, with fused multiply-add) is part of the armv8-a
     * baseline, but the kernel says so in AT_HWCAP: trust it, not the build. */
    int has_neon = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
    switch (isa) {
    case ELASTIC_CPU_ISA_BEST:
        return has_neon ? &elastic_cpu_kernels_neon : &elastic_cpu_kernels_generic;
    case ELASTIC_CPU_ISA_GENERIC: return &elastic_cpu_kernels_generic;
    case ELASTIC_CPU_ISA_NEON: return has_neon ? &elastic_cpu_kernels_neon : NULL;
    case ELASTIC_CPU_ISA_AVX2:
    case ELASTIC_CPU_ISA_AVX512: return NULL;
    }
    return NULL;
#else
    return isa == ELASTIC_CPU_ISA_BEST || isa == ELASTIC_CPU_ISA_GENERIC
               ? &elastic_cpu_kernels_generic
               : NULL;
#endif
}
