# The CUDA backend, included by the root CMakeLists.txt when a CUDA compiler
# was found (ELASTIC_HAVE_CUDA). The kernels (kernels_cu/*.cu) are built by
# nvcc into an object library for sm_80 and sm_90 plus sm_90 PTX (which the
# driver compiles for newer GPUs), without relocatable device code, so no
# device-link step is needed and the C linker links the library as usual;
# the backend's C sources join elastic_objects, which also carries the CUDA
# runtime and cuBLAS to the final libraries and the tests.

set(ELASTIC_CUDA_ARCHITECTURES "80-real;90-real;90-virtual" CACHE STRING
    "GPU architectures of the CUDA kernels (CMake CUDA_ARCHITECTURES syntax)")

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# Targets that take in the kernel objects (libelastic, the programs, the
# tests) link as CUDA; CMake would then add the static CUDA runtime to them
# on top of the shared one linked below. Only the shared one, CUDA::cudart.
set(CMAKE_CUDA_RUNTIME_LIBRARY None)

set(ELASTIC_CUDA_KERNELS
    kernels_cu/elastic_gather.cu
    kernels_cu/elastic_add.cu
    kernels_cu/elastic_bias.cu
    kernels_cu/elastic_masked_mean.cu
    kernels_cu/elastic_layer_norm.cu
    kernels_cu/elastic_gelu.cu
    kernels_cu/elastic_attention.cu
    kernels_cu/elastic_attention_probs.cu
    kernels_cu/elastic_pkm.cu
    kernels_cu/elastic_topk.cu
    kernels_cu/elastic_copy.cu)

add_library(elastic_cuda_kernels OBJECT ${ELASTIC_CUDA_KERNELS})
set_target_properties(elastic_cuda_kernels PROPERTIES
    CUDA_ARCHITECTURES "${ELASTIC_CUDA_ARCHITECTURES}"
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_EXTENSIONS OFF
    CUDA_VISIBILITY_PRESET hidden
    POSITION_INDEPENDENT_CODE ON)
target_include_directories(elastic_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/kernels_cu)
# nvcc's own warnings and the host compiler's, all as errors when asked for.
set(ELASTIC_CUDA_WARNINGS -Xcompiler=-Wall,-Wextra)
if(ELASTIC_WERROR)
  list(APPEND ELASTIC_CUDA_WARNINGS -Werror=all-warnings -Xcompiler=-Werror)
endif()
target_compile_options(elastic_cuda_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${ELASTIC_CUDA_WARNINGS}>)

target_sources(elastic_objects PRIVATE
    backends/cuda/cuda_backend.c
    backends/cuda/cuda_ops.c)
# The kernel objects reach libelastic.so and libelastic.a through
# elastic_objects' link interface, which the root links into both: a target
# that links an OBJECT library directly takes in its objects. (Listing
# $<TARGET_OBJECTS:elastic_cuda_kernels> as sources of elastic_objects would
# not do: $<TARGET_OBJECTS:elastic_objects> leaves out external objects.)
target_link_libraries(elastic_objects PUBLIC elastic_cuda_kernels)
target_include_directories(elastic_objects PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/kernels_cu
                                                  ${CMAKE_CURRENT_SOURCE_DIR}/backends/cuda)
target_compile_definitions(elastic_objects PUBLIC ELASTIC_HAVE_CUDA_BACKEND=1)
target_link_libraries(elastic_objects PUBLIC CUDA::cudart CUDA::cublas)
