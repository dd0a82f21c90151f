# The OpenCL backend, included by the root CMakeLists.txt when OpenCL and
# CLBlast are found. The kernels in kernels_cl/ are embedded into the library
# as C strings at build time (cmake/embed_cl.cmake), in the order listed.
set(ELASTIC_CL_KERNELS
    kernels_cl/elastic_common.cl
    kernels_cl/elastic_gather.cl
    kernels_cl/elastic_add.cl
    kernels_cl/elastic_bias.cl
    kernels_cl/elastic_masked_mean.cl
    kernels_cl/elastic_layer_norm.cl
    kernels_cl/elastic_gelu.cl
    kernels_cl/elastic_attention.cl
    kernels_cl/elastic_attention_probs.cl
    kernels_cl/elastic_attention_mix.cl
    kernels_cl/elastic_pkm.cl
    kernels_cl/elastic_topk.cl
    kernels_cl/elastic_score_topk.cl
    kernels_cl/elastic_copy.cl)
set(ELASTIC_CL_EMBEDDED ${CMAKE_CURRENT_BINARY_DIR}/elastic_cl_sources.c)
list(TRANSFORM ELASTIC_CL_KERNELS PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE cl_paths)
string(REPLACE ";" "|" cl_joined "${cl_paths}") # one command-line argument
add_custom_command(
    OUTPUT ${ELASTIC_CL_EMBEDDED}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${ELASTIC_CL_EMBEDDED} -DSOURCES=${cl_joined}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_cl.cmake
    DEPENDS ${cl_paths} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_cl.cmake
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)

target_sources(elastic_objects PRIVATE
    backends/opencl/opencl_backend.c
    backends/opencl/opencl_program.c
    ${ELASTIC_CL_EMBEDDED})
target_include_directories(elastic_objects PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/backends/opencl)
target_compile_definitions(elastic_objects PUBLIC ELASTIC_HAVE_OPENCL_BACKEND=1)
find_package(Threads REQUIRED)
target_link_libraries(elastic_objects PUBLIC OpenCL::OpenCL clblast Threads::Threads)
