# The CUDA backend's tests, included from tests/CMakeLists.txt when the CUDA
# backend is built (ELASTIC_HAVE_CUDA). test_cuda_ops compares every op with
# the float64 reference on device 0; on a machine without a usable GPU or
# driver it checks what it can (probe, init, supports_op) and skips, visibly,
# the comparisons.
elastic_add_test(test_cuda_ops test_cuda_ops.c test_util.c)
