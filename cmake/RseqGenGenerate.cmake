# Part of the RseqGen CMake package (see RseqGenConfig.cmake for the API):
# rseq_gen_add_library and rseq_gen_target_sources.
include_guard(GLOBAL)

# Functions keep the policies in force where they are defined: CMP0116 NEW
# (depfile paths relative to the binary dir, transformed for Ninja) whatever
# the calling project's cmake_minimum_required says.
cmake_policy(VERSION 3.20...4.2)

# <where> names the call in every message: "rseq_gen_add_library(mylib)".
function(_rseq_gen_check_choice where what value choices)
  if(NOT value IN_LIST choices)
    string(REPLACE ";" ", " _choices "${choices}")
    message(FATAL_ERROR "RseqGen: ${where}: ${what} '${value}' is not one of: ${_choices}")
  endif()
endfunction()

# The prefix rules of `rseq-gen generate --prefix` (RSEQ_GEN_PREFIX_RULE_*,
# written from rseq_gen.settings.PREFIX_RULES), checked at configure time.
function(_rseq_gen_check_prefix where what prefix)
  math(EXPR _last "${RSEQ_GEN_PREFIX_RULE_COUNT} - 1")
  foreach(_i RANGE ${_last})
    if(prefix MATCHES "${RSEQ_GEN_PREFIX_RULE_${_i}_REGEX}")
      set(_matches 1)
    else()
      set(_matches 0)
    endif()
    if(NOT _matches EQUAL RSEQ_GEN_PREFIX_RULE_${_i}_MUST_MATCH)
      message(FATAL_ERROR "RseqGen: ${where}: ${what} '${prefix}' ${RSEQ_GEN_PREFIX_RULE_${_i}_PROBLEM}")
    endif()
  endforeach()
endfunction()

# Writes <file> only when the concatenated arguments differ from what it holds, so its
# timestamp moves exactly when an option changes (the build depends on it).
function(_rseq_gen_write_if_changed file)
  string(CONCAT content ${ARGN})
  if(EXISTS "${file}")
    file(READ "${file}" _old)
    if(_old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${file}" "${content}")
endfunction()

# LINKER:-z,nodelete for the SHARED/MODULE targets that get an owning
# protocol's code, directly or through a STATIC/OBJECT/INTERFACE library.
function(_rseq_gen_add_nodelete target type)
  if(type STREQUAL "SHARED_LIBRARY" OR type STREQUAL "MODULE_LIBRARY")
    set_property(TARGET ${target} APPEND PROPERTY LINK_OPTIONS "LINKER:-z,nodelete")
  elseif(type MATCHES "^(STATIC|OBJECT|INTERFACE)_LIBRARY$")
    set(_is_dso "$<OR:$<STREQUAL:$<TARGET_PROPERTY:TYPE>,SHARED_LIBRARY>,$<STREQUAL:$<TARGET_PROPERTY:TYPE>,MODULE_LIBRARY>>")
    set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_OPTIONS "$<${_is_dso}:LINKER:-z,nodelete>")
  endif()
endfunction()

# An executable exports the protocol's shared symbols (__rseq_abi, ...) so a
# module it dlopen's later binds to the executable's copy instead of its own.
function(_rseq_gen_add_executable_flags target type protocol)
  string(REPLACE "-" "_" _p "${protocol}")
  foreach(_flag IN LISTS RSEQ_GEN_PROTOCOL_${_p}_EXECUTABLE_LINK_FLAGS)
    if(_flag MATCHES "^-Wl,(.*)$")
      set(_flag "LINKER:${CMAKE_MATCH_1}")
    endif()
    if(type STREQUAL "EXECUTABLE")
      set_property(TARGET ${target} APPEND PROPERTY LINK_OPTIONS "${_flag}")
    elseif(type MATCHES "^(STATIC|OBJECT|INTERFACE)_LIBRARY$")
      set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_OPTIONS
                   "$<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:${_flag}>")
    endif()
  endforeach()
endfunction()

# Threads::Threads through properties, not target_link_libraries: this works
# whatever signature (plain or keyword) the project uses for the target.
function(_rseq_gen_link_threads target type)
  if(NOT TARGET Threads::Threads)
    find_package(Threads REQUIRED)
  endif()
  if(type STREQUAL "INTERFACE_LIBRARY")
    set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads)
    return()
  endif()
  set_property(TARGET ${target} APPEND PROPERTY LINK_LIBRARIES Threads::Threads)
  if(type MATCHES "^(STATIC|OBJECT)_LIBRARY$")
    set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES "$<LINK_ONLY:Threads::Threads>")
  endif()
endfunction()

# The shared part of both public functions: one generator command per
# (target, prefix), attached to <target>.
function(_rseq_gen_attach function target scope)
  set(_where "${function}(${target})")
  cmake_parse_arguments(PARSE_ARGV 3 ARG "DLOPEN_SAFE" "PROTOCOL;PREFIX;TLS_MODEL;REGISTRATION;VISIBILITY;OUTPUT_DIR" "ARCH")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "RseqGen: ${_where}: unexpected arguments: ${ARG_UNPARSED_ARGUMENTS} "
                        "(it takes PROTOCOL, PREFIX, ARCH, TLS_MODEL, REGISTRATION, VISIBILITY, OUTPUT_DIR, "
                        "DLOPEN_SAFE)")
  endif()
  foreach(_kw IN ITEMS PROTOCOL PREFIX TLS_MODEL REGISTRATION VISIBILITY OUTPUT_DIR ARCH)
    if(_kw IN_LIST ARG_KEYWORDS_MISSING_VALUES)
      message(FATAL_ERROR "RseqGen: ${_where}: ${_kw} needs a value")
    endif()
  endforeach()

  if(NOT ARG_PROTOCOL)
    set(ARG_PROTOCOL "${RSEQ_GEN_DEFAULT_PROTOCOL}")
  endif()
  _rseq_gen_check_choice("${_where}" "PROTOCOL" "${ARG_PROTOCOL}" "${RSEQ_GEN_PROTOCOLS}")
  if(NOT ARG_TLS_MODEL)
    set(ARG_TLS_MODEL "auto")
  endif()
  _rseq_gen_check_choice("${_where}" "TLS_MODEL" "${ARG_TLS_MODEL}" "${RSEQ_GEN_TLS_MODELS}")
  if(NOT ARG_REGISTRATION)
    set(ARG_REGISTRATION "${RSEQ_GEN_DEFAULT_REGISTRATION}")
  endif()
  _rseq_gen_check_choice("${_where}" "REGISTRATION" "${ARG_REGISTRATION}" "${RSEQ_GEN_REGISTRATIONS}")
  if(NOT ARG_VISIBILITY)
    set(ARG_VISIBILITY "${RSEQ_GEN_DEFAULT_VISIBILITY}")
  endif()
  _rseq_gen_check_choice("${_where}" "VISIBILITY" "${ARG_VISIBILITY}" "${RSEQ_GEN_VISIBILITIES}")
  if(ARG_PREFIX)
    _rseq_gen_check_prefix("${_where}" "PREFIX" "${ARG_PREFIX}")
  else()
    string(MAKE_C_IDENTIFIER "${target}" ARG_PREFIX)
    _rseq_gen_check_prefix("${_where}" "PREFIX (from the target name; pass PREFIX)" "${ARG_PREFIX}")
  endif()
  if(NOT ARG_ARCH)
    _rseq_gen_default_arch(ARG_ARCH)
  endif()
  string(REPLACE "," ";" ARG_ARCH "${ARG_ARCH}")
  foreach(_arch IN LISTS ARG_ARCH)
    _rseq_gen_check_choice("${_where}" "ARCH" "${_arch}" "${RSEQ_GEN_ARCHES}")
  endforeach()
  list(REMOVE_DUPLICATES ARG_ARCH)
  string(REPLACE ";" "," _arches "${ARG_ARCH}")

  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/rseq_gen/${target}")
  elseif(NOT IS_ABSOLUTE "${ARG_OUTPUT_DIR}")
    set(ARG_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/${ARG_OUTPUT_DIR}")
  endif()
  set(_dir "${ARG_OUTPUT_DIR}")
  set(_header "${_dir}/${ARG_PREFIX}_rseq.h")
  set(_source "${_dir}/${ARG_PREFIX}_rseq.c")
  set(_manifest "${_dir}/${ARG_PREFIX}_rseq.manifest.json")
  set(_depfile "${_dir}/${ARG_PREFIX}_rseq.d")
  set(_stamp "${_dir}/${ARG_PREFIX}_rseq.options")

  get_property(_taken GLOBAL PROPERTY _RSEQ_GEN_HEADERS)
  if(_header IN_LIST _taken)
    message(FATAL_ERROR "RseqGen: ${_where}: ${_header} is already generated by another call; "
                        "give this one another PREFIX or OUTPUT_DIR")
  endif()
  set_property(GLOBAL APPEND PROPERTY _RSEQ_GEN_HEADERS "${_header}")

  set(_args generate
      --protocol "${ARG_PROTOCOL}" --prefix "${ARG_PREFIX}" --arch "${_arches}"
      --tls-model "${ARG_TLS_MODEL}" --registration "${ARG_REGISTRATION}"
      --visibility "${ARG_VISIBILITY}")
  if(ARG_DLOPEN_SAFE)
    list(APPEND _args --dlopen-safe)
  endif()
  list(APPEND _args --output-dir "${_dir}" --manifest "${_manifest}" --depfile "${_depfile}"
       --origin "${CMAKE_CURRENT_LIST_FILE}")

  # Everything that decides the output, except the templates and generator
  # sources (those come from the depfile).
  string(REPLACE ";" " " _cmd_text "${RSEQ_GEN_COMMAND}")
  string(REPLACE ";" "\n  " _args_text "${_args}")
  file(MAKE_DIRECTORY "${_dir}")
  _rseq_gen_write_if_changed("${_stamp}"
    "# Options of the rseq-gen step for ${target} (rewritten only when they change).\n"
    "rseq-gen ${RSEQ_GEN_VERSION}: ${_cmd_text}\n  ${_args_text}\n")

  add_custom_command(
    OUTPUT "${_header}" "${_source}" "${_manifest}"
    COMMAND ${RSEQ_GEN_COMMAND} ${_args}
    DEPENDS "${_stamp}"
    DEPFILE "${_depfile}"
    COMMENT "rseq-gen: generating ${ARG_PREFIX}_rseq.h/.c for ${target} (protocol ${ARG_PROTOCOL}, ${_arches})"
    VERBATIM)

  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    # The INTERFACE library holds the custom command (a build target since
    # CMake 3.19); its consumers compile the source.
    target_sources(${target} PRIVATE "${_header}" "${_manifest}")
    target_sources(${target} INTERFACE "$<BUILD_INTERFACE:${_source}>")
    target_include_directories(${target} INTERFACE "$<BUILD_INTERFACE:${_dir}>")
  else()
    target_sources(${target} PRIVATE "${_header}" "${_source}")
    target_include_directories(${target} ${scope} "$<BUILD_INTERFACE:${_dir}>")
  endif()
  _rseq_gen_link_threads(${target} ${_type})
  if(ARG_PROTOCOL IN_LIST RSEQ_GEN_OWNING_PROTOCOLS)
    _rseq_gen_add_nodelete(${target} ${_type})
  endif()
  _rseq_gen_add_executable_flags(${target} ${_type} ${ARG_PROTOCOL})
  set_property(TARGET ${target} APPEND PROPERTY RSEQ_GEN_MANIFESTS "${_manifest}")
  set_property(TARGET ${target} APPEND PROPERTY RSEQ_GEN_PREFIXES "${ARG_PREFIX}")
  set_property(TARGET ${target} APPEND PROPERTY RSEQ_GEN_PROTOCOLS "${ARG_PROTOCOL}")
  # What a version script of the target must keep global: the names the
  # protocol shares between modules, and every generated name when exported.
  string(REPLACE "-" "_" _p "${ARG_PROTOCOL}")
  set(_globals ${RSEQ_GEN_PROTOCOL_${_p}_SHARED_SYMBOLS})
  if(ARG_VISIBILITY STREQUAL "default")
    list(APPEND _globals "${ARG_PREFIX}_*")
  endif()
  set_property(TARGET ${target} APPEND PROPERTY RSEQ_GEN_VERSION_SCRIPT_GLOBALS ${_globals})
  set_property(TARGET ${target} APPEND PROPERTY RSEQ_GEN_HEADERS "${_header}")
endfunction()

# An optional leading keyword (a library type, a scope) before the keyword
# arguments: <out_keyword> gets it, or <default>; <out_rest> gets the rest.
function(_rseq_gen_leading_keyword pattern default out_keyword out_rest)
  set(_keyword "${default}")
  set(_rest ${ARGN})
  if(_rest)
    list(GET _rest 0 _first)
    if(_first MATCHES "^(${pattern})$")
      set(_keyword "${_first}")
      list(REMOVE_AT _rest 0)
    endif()
  endif()
  set(${out_keyword} "${_keyword}" PARENT_SCOPE)
  set(${out_rest} "${_rest}" PARENT_SCOPE)
endfunction()

function(rseq_gen_add_library name)
  _rseq_gen_leading_keyword("STATIC|SHARED|MODULE|OBJECT|INTERFACE" STATIC _type _rest ${ARGN})
  add_library(${name} ${_type})
  if(_type STREQUAL "INTERFACE")
    set(_scope INTERFACE)
  else()
    set(_scope PUBLIC)
    set_target_properties(${name} PROPERTIES LINKER_LANGUAGE C)
    # PIC unless the project decides: the library may end up in a plugin.
    if(NOT DEFINED CMAKE_POSITION_INDEPENDENT_CODE)
      set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    endif()
  endif()
  # A SHARED or MODULE library made of the generated code exists to serve
  # the objects that link it: its names are exported unless VISIBILITY says
  # otherwise. Everywhere else the generated names stay hidden in the one
  # object the code is linked into.
  if(_type MATCHES "^(SHARED|MODULE)$" AND NOT "VISIBILITY" IN_LIST _rest)
    list(APPEND _rest VISIBILITY default)
  endif()
  _rseq_gen_attach(rseq_gen_add_library ${name} ${_scope} ${_rest})
endfunction()

function(rseq_gen_target_sources target)
  if(NOT TARGET ${target})
    message(FATAL_ERROR "RseqGen: rseq_gen_target_sources(${target}): no target '${target}'")
  endif()
  _rseq_gen_leading_keyword("PRIVATE|PUBLIC|INTERFACE" PRIVATE _scope _rest ${ARGN})
  _rseq_gen_attach(rseq_gen_target_sources ${target} ${_scope} ${_rest})
endfunction()
