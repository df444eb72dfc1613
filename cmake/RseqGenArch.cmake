# Part of the RseqGen CMake package (see RseqGenConfig.cmake for the API):
# maps the target processor to an rseq-gen architecture name.
include_guard(GLOBAL)

# CMAKE_SYSTEM_PROCESSOR is the *target* processor: the host's uname -m in a
# native build, whatever the toolchain file says in a cross build. Its
# spelling varies (x86_64/AMD64, i686/i386, aarch64/arm64), so match the
# lower-cased value against each architecture's machine names (from
# rseq_gen.arches, via RseqGenTables.cmake) plus a few CMake spellings.
function(_rseq_gen_default_arch out)
  set(_proc "${CMAKE_SYSTEM_PROCESSOR}")
  if(NOT _proc)
    set(_proc "${CMAKE_HOST_SYSTEM_PROCESSOR}")
  endif()
  string(TOLOWER "${_proc}" _proc)
  if(_proc MATCHES "^(x64|em64t|intel64)$")
    set(_proc "x86_64")
  elseif(_proc MATCHES "^(x86|i[3-6]86pc)$")
    set(_proc "i686")
  elseif(_proc MATCHES "^(armv8|armv8l|arm64e|aarch64_be)$" AND CMAKE_SIZEOF_VOID_P EQUAL 8)
    set(_proc "aarch64")
  endif()
  set(_found "")
  foreach(_arch IN LISTS RSEQ_GEN_ARCHES)
    if(_proc IN_LIST RSEQ_GEN_ARCH_${_arch}_NAMES)
      set(_found "${_arch}")
      break()
    endif()
  endforeach()
  # A 64-bit processor name with a 32-bit compiler (-m32 without a
  # toolchain file): use the 32-bit architecture of the same family.
  if(_found STREQUAL "x86_64" AND CMAKE_SIZEOF_VOID_P EQUAL 4 AND "i386" IN_LIST RSEQ_GEN_ARCHES)
    set(_found "i386")
  endif()
  if(NOT _found)
    message(FATAL_ERROR
      "RseqGen: target processor '${CMAKE_SYSTEM_PROCESSOR}' is not an architecture "
      "rseq-gen ${RSEQ_GEN_VERSION} knows (${RSEQ_GEN_ARCHES}); pass ARCH <name> explicitly "
      "or set CMAKE_SYSTEM_PROCESSOR in the toolchain file.")
  endif()
  set(${out} "${_found}" PARENT_SCOPE)
endfunction()
