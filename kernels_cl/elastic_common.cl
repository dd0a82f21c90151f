/* elastic_common.cl - definitions shared by every libelastic OpenCL kernel.
 * All tensors are passed as a buffer plus an element offset, so a tensor may
 * start at any 4-byte boundary (weights inside the model's parameter block). */
#ifdef ELASTIC_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t; /* accumulator of the memory scores: exact tie rules */
#else
typedef float acc_t;
#endif
#define ELASTIC_MAX_HEAD 256
#define ELASTIC_MAX_TOPT 64
