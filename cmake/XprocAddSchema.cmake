# xproc_add_schema(<target> FILES a.capnp [b.capnp ...])
#
# Generates the C++ code of a user's Cap'n Proto schemas and compiles it into <target>,
# which is linked to xproc::core (link xproc::manager too for a schema that imports
# "/xproc/manager.capnp"). The schemas may import xproc's own ("/xproc/value.capnp",
# "/xproc/manager.capnp"); generated headers are included by the schema's file name
# ("point.capnp.h"). Works both from an installed xproc (find_package(xproc)) and inside
# xproc's own build.
# The compiler and its C++ plugin: CapnProtoConfig's CAPNP_EXECUTABLE / CAPNPC_CXX_EXECUTABLE
# when set, else found on PATH (Debian's imported capnp targets point at a wrong prefix).
if(NOT XPROC_CAPNP_EXECUTABLE)
  find_program(XPROC_CAPNP_EXECUTABLE NAMES capnp HINTS ${CAPNP_EXECUTABLE} REQUIRED)
  find_program(XPROC_CAPNPC_CXX_EXECUTABLE NAMES capnpc-c++ HINTS ${CAPNPC_CXX_EXECUTABLE} REQUIRED)
endif()

function(xproc_add_schema target)
  cmake_parse_arguments(ARG "" "" "FILES" ${ARGN})
  if(NOT ARG_FILES)
    message(FATAL_ERROR "xproc_add_schema(${target}): give the schemas after FILES")
  endif()
  set(output_dir ${CMAKE_CURRENT_BINARY_DIR}/xproc_schemas/${target})
  file(MAKE_DIRECTORY ${output_dir})
  set(sources)
  foreach(schema ${ARG_FILES})
    get_filename_component(schema_path ${schema} ABSOLUTE)
    get_filename_component(schema_dir ${schema_path} DIRECTORY)
    get_filename_component(schema_name ${schema_path} NAME)
    set(generated ${output_dir}/${schema_name}.c++ ${output_dir}/${schema_name}.h)
    add_custom_command(
      OUTPUT ${generated}
      COMMAND ${XPROC_CAPNP_EXECUTABLE} compile -o${XPROC_CAPNPC_CXX_EXECUTABLE}:${output_dir}
              --src-prefix=${schema_dir} -I${XPROC_SCHEMA_DIR} ${schema_path}
      DEPENDS ${schema_path}
      COMMENT "xproc: generating C++ for ${schema_name}"
      VERBATIM)
    list(APPEND sources ${output_dir}/${schema_name}.c++)
  endforeach()
  target_sources(${target} PRIVATE ${sources})
  target_include_directories(${target} PRIVATE ${output_dir})
  target_link_libraries(${target} PRIVATE xproc::core)
endfunction()
