# Installs the CMake config package into the wheel, next to the Python
# package: <site-packages>/rseq_gen/share/cmake/RseqGen/. Included by the
# top-level CMakeLists.txt when scikit-build-core builds the wheel.
#
# The package is arch independent (it builds nothing), so the version file
# says so; find_package(RseqGen) then works for 32- and 64-bit consumers alike.

include(CMakePackageConfigHelpers)

# Keep in sync with CMAKE_SUBDIR in toolkit/rseq_gen/cmakedir.py.
set(RSEQ_GEN_CMAKECONFIG_DIR "${RSEQ_GEN_PKG}/share/cmake/RseqGen")
set(_rseq_gen_cmake_src "${CMAKE_CURRENT_LIST_DIR}")
set(_rseq_gen_cmake_out "${CMAKE_CURRENT_BINARY_DIR}/rseq_gen_cmake")

# The protocol and architecture tables come from the Python package itself
# (rseq_gen.protocols, rseq_gen.arches, rseq_gen.settings), so the CMake side
# can check arguments and map CMAKE_SYSTEM_PROCESSOR without a second copy.
# scikit-build-core passes Python_EXECUTABLE; a plain cmake run finds one.
if(NOT Python_EXECUTABLE)
  find_package(Python COMPONENTS Interpreter REQUIRED)
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" "${_rseq_gen_cmake_src}/write_tables.py"
          "${CMAKE_CURRENT_SOURCE_DIR}/toolkit" "${_rseq_gen_cmake_out}/RseqGenTables.cmake"
  RESULT_VARIABLE _rseq_gen_rc
  OUTPUT_VARIABLE _rseq_gen_out
  ERROR_VARIABLE _rseq_gen_out)
if(NOT _rseq_gen_rc EQUAL 0)
  message(FATAL_ERROR "rseq-gen: could not write RseqGenTables.cmake:\n${_rseq_gen_out}")
endif()
file(STRINGS "${_rseq_gen_cmake_out}/RseqGenTables.cmake" _rseq_gen_version_line
     REGEX "^set\\(RSEQ_GEN_PACKAGE_VERSION ")
string(REGEX REPLACE "^set\\(RSEQ_GEN_PACKAGE_VERSION \"([^\"]*)\".*" "\\1"
       RSEQ_GEN_PYTHON_VERSION "${_rseq_gen_version_line}")

# Path from the config directory to the Python package (relocatable).
set(RSEQ_GEN_PACKAGE_DIR "${RSEQ_GEN_PKG}")
configure_package_config_file(
  "${_rseq_gen_cmake_src}/RseqGenConfig.cmake.in"
  "${_rseq_gen_cmake_out}/RseqGenConfig.cmake"
  INSTALL_DESTINATION "${RSEQ_GEN_CMAKECONFIG_DIR}"
  PATH_VARS RSEQ_GEN_PACKAGE_DIR)
write_basic_package_version_file(
  "${_rseq_gen_cmake_out}/RseqGenConfigVersion.cmake"
  VERSION "${RSEQ_GEN_PYTHON_VERSION}"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)

install(
  FILES
    "${_rseq_gen_cmake_out}/RseqGenConfig.cmake"
    "${_rseq_gen_cmake_out}/RseqGenConfigVersion.cmake"
    "${_rseq_gen_cmake_out}/RseqGenTables.cmake"
    "${_rseq_gen_cmake_src}/RseqGenTool.cmake"
    "${_rseq_gen_cmake_src}/RseqGenArch.cmake"
    "${_rseq_gen_cmake_src}/RseqGenGenerate.cmake"
    "${_rseq_gen_cmake_src}/RseqGenVerify.cmake"
  DESTINATION "${RSEQ_GEN_CMAKECONFIG_DIR}")
