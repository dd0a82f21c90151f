# Turns OpenCL C files into a C source defining
#   const char *const elastic_cl_sources[]; const int elastic_cl_source_count;
# Run as: cmake -DOUTPUT=file.c -DSOURCES="a.cl|b.cl" -P embed_cl.cmake
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(body "/* Generated from kernels_cl/ by cmake/embed_cl.cmake: do not edit. */\n")
set(names "")
set(i 0)
foreach(src ${SOURCES})
  file(READ ${src} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char cl_${i}[] = {${bytes}0x00};\n")
  string(APPEND names "cl_${i}, ")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "extern const char *const elastic_cl_sources[];\n")
string(APPEND body "extern const int elastic_cl_source_count;\n")
string(APPEND body "const char *const elastic_cl_sources[] = {${names}};\n")
string(APPEND body "const int elastic_cl_source_count = ${i};\n")
file(WRITE ${OUTPUT} "${body}")
