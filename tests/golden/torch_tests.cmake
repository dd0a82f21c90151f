# tests/golden/torch_tests.cmake - ctest entry `golden_torch` for the PyTorch port
# (tests/golden/test_torch.py): libelastic.torch (python/libelastic/torch.py) against the
# NumPy float64 reference, and model files across torch, the reference and the C library
# (through the Python package).
# The test exits 77 and prints "SKIP: torch not importable" when torch is missing;
# ctest reports that as skipped, not failed.  Included from tests/golden/CMakeLists.txt
# after the Python 3 interpreter has been found and golden_env set.

if(ELASTIC_SANITIZE)
  # A sanitized libelastic.so would need the ASan runtime preloaded into Python, and
  # torch is not built for that: in a sanitized build the C checks are left out
  # (the normal build runs them) and torch runs in a plain interpreter.
  add_test(NAME golden_torch
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_torch.py)
  set_tests_properties(golden_torch PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
else()
  add_test(NAME golden_torch
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_torch.py
                   --lib $<TARGET_FILE:elastic>)
  set_tests_properties(golden_torch PROPERTIES ENVIRONMENT "${golden_env}")
endif()
set_tests_properties(golden_torch PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
