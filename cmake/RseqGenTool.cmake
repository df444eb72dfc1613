# Part of the RseqGen CMake package (see RseqGenConfig.cmake for the API):
# finds the rseq-gen of the Python environment this package is installed in.
include_guard(GLOBAL)

# <env>/lib/pythonX.Y/site-packages/rseq_gen -> <env>; also right for
# Debian's /usr/lib/python3/dist-packages and ~/.local/lib/pythonX.Y/site-packages.
function(_rseq_gen_env_bindir out)
  get_filename_component(_prefix "${RSEQ_GEN_PACKAGE_DIR}/../../../.." ABSOLUTE)
  set(${out} "${_prefix}/bin" PARENT_SCOPE)
endfunction()

set(RSEQ_GEN_EXECUTABLE "" CACHE FILEPATH
    "rseq-gen script to run instead of the one installed with this CMake package (same version)")

function(_rseq_gen_find_tool)
  _rseq_gen_env_bindir(_bindir)
  if(RSEQ_GEN_EXECUTABLE)
    set(_cmd "${RSEQ_GEN_EXECUTABLE}")
  elseif(EXISTS "${_bindir}/rseq-gen")
    set(_cmd "${_bindir}/rseq-gen")
  else()
    # No console script (e.g. installed with --no-compile scripts or a
    # broken script): the environment's interpreter still has the package.
    set(_cmd "")
    foreach(_py IN ITEMS python3 python)
      if(EXISTS "${_bindir}/${_py}")
        set(_cmd "${_bindir}/${_py}" -m rseq_gen)
        break()
      endif()
    endforeach()
  endif()
  if(NOT _cmd)
    message(FATAL_ERROR
      "RseqGen: cannot find the rseq-gen that belongs to this CMake package "
      "(${RSEQ_GEN_CMAKE_DIR}): there is no ${_bindir}/rseq-gen nor a python3 beside it. "
      "Install rseq-gen with pip into a regular environment (a venv, or the system or user "
      "site), or pass -DRSEQ_GEN_EXECUTABLE=/path/to/rseq-gen of the same version "
      "(${RSEQ_GEN_PACKAGE_VERSION}).")
  endif()

  # The same environment means the same version: a stale RseqGen_DIR or
  # RSEQ_GEN_EXECUTABLE pointing at another install is caught here. The
  # answer is kept until the command or either installation changes.
  list(GET _cmd 0 _exe)
  file(TIMESTAMP "${_exe}" _exe_time "%s" UTC)
  file(TIMESTAMP "${RSEQ_GEN_PACKAGE_DIR}/__init__.py" _pkg_time "%s" UTC)
  set(_key "${_cmd}|${_exe_time}|${_pkg_time}|${RSEQ_GEN_PACKAGE_VERSION}")
  if(_RSEQ_GEN_CHECKED STREQUAL _key AND RSEQ_GEN_COMMAND STREQUAL _cmd)
    return()
  endif()
  execute_process(
    COMMAND ${_cmd} --version
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    string(REPLACE ";" " " _shown "${_cmd}")
    message(FATAL_ERROR
      "RseqGen: '${_shown} --version' failed (exit ${_rc}):\n${_err}\n"
      "Reinstall rseq-gen in that environment (pip install --force-reinstall rseq-gen), or set RSEQ_GEN_EXECUTABLE to a working rseq-gen ${RSEQ_GEN_PACKAGE_VERSION}.")
  endif()
  string(REGEX REPLACE "^rseq-gen[ ]+" "" _version "${_out}")
  if(NOT _version STREQUAL RSEQ_GEN_PACKAGE_VERSION)
    string(REPLACE ";" " " _shown "${_cmd}")
    message(FATAL_ERROR
      "RseqGen: ${_shown} is version '${_version}', but this CMake package "
      "(${RSEQ_GEN_CMAKE_DIR}) belongs to rseq-gen ${RSEQ_GEN_PACKAGE_VERSION}. "
      "Point RseqGen_DIR at the output of that rseq-gen's --cmakedir, or set "
      "RSEQ_GEN_EXECUTABLE to the rseq-gen installed with this package.")
  endif()
  set(RSEQ_GEN_COMMAND "${_cmd}" CACHE INTERNAL "command line that runs rseq-gen")
  set(RSEQ_GEN_VERSION "${_version}" CACHE INTERNAL "version of RSEQ_GEN_COMMAND")
  set(_RSEQ_GEN_CHECKED "${_key}" CACHE INTERNAL "")
endfunction()
