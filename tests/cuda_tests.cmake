# The CUDA backend's tests, included from tests/CMakeLists.txt when the CUDA
# backend is built (ELASTIC_HAVE_CUDA).
#   test_cuda_ops     what only the CUDA backend has: probe, init and its
#                     errors, the op table (the nodes it takes, the kernels'
#                     limits, no training ops), transfers, GATHER's deferred
#                     index reports, inputs at any 4-byte offset. Without a
#                     usable GPU or driver it checks what needs none and
#                     skips the rest, visibly.
#   conformance_cuda  every op against the float64 reference with the suite's
#                     derived tolerances, then whole models
#                     (`elastic conformance --backends cuda`), as OpenCL's
#                     conformance_opencl. Without a usable GPU or driver the
#                     backend does not start ("cuda backend unavailable: ..."
#                     from its init) and ctest reports the test as skipped.
elastic_add_test(test_cuda_ops test_cuda_ops.c test_util.c)
# The backend's internal header (report slots) and the kernels' limits.
target_include_directories(test_cuda_ops PRIVATE ${PROJECT_SOURCE_DIR}/backends/cuda
                                                 ${PROJECT_SOURCE_DIR}/kernels_cu)

add_test(NAME conformance_cuda COMMAND elastic_cli conformance --backends cuda)
set_tests_properties(conformance_cuda PROPERTIES TIMEOUT 1200
                     SKIP_REGULAR_EXPRESSION "cuda backend unavailable")
