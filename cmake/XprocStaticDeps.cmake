# XPROC_STATIC_DEPS (the Python wheel, see pyproject.toml): Cap'n Proto compiled from its
# sources (cmake/CapnProtoFromSource.cmake) and OpenSSL from its static archives, so that
# the extension needs nothing but glibc and the C++ runtime and carries its own copies,
# hidden, out of reach of another Cap'n Proto in the process, such as pycapnp's. Stands in
# for find_package(CapnProto): the same CapnProto:: targets and capnp_generate_cpp(), with
# the system's `capnp` compiler, which must be of the sources' release (the generated code
# checks the library's version).
# Every symbol hidden, xproc's own too, so that nothing it instantiates from kj's templates
# is exported.
set(CMAKE_CXX_VISIBILITY_PRESET hidden)
set(CMAKE_VISIBILITY_INLINES_HIDDEN ON)
# Paths in messages (__FILE__) relative to the source and build trees, not to where they
# were: the wheel built from the sdist is the one built from the repository.
# GCC tries the last map first, and the build tree may lie inside the source tree.
add_compile_options(-ffile-prefix-map=${CMAKE_SOURCE_DIR}/= -ffile-prefix-map=${CMAKE_BINARY_DIR}/=build/)
set(OPENSSL_USE_STATIC_LIBS TRUE)
find_package(OpenSSL REQUIRED)
find_package(Threads REQUIRED)

include(${CMAKE_CURRENT_LIST_DIR}/CapnProtoFromSource.cmake)

find_program(CAPNP_EXECUTABLE capnp REQUIRED)
get_filename_component(capnp_bin_dir ${CAPNP_EXECUTABLE} DIRECTORY)
find_program(CAPNPC_CXX_EXECUTABLE capnpc-c++ HINTS ${capnp_bin_dir} REQUIRED)
execute_process(COMMAND ${CAPNP_EXECUTABLE} --version OUTPUT_VARIABLE capnp_version_line
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT capnp_version_line MATCHES " ${XPROC_CAPNP_VERSION}$")
  message(FATAL_ERROR "XPROC_STATIC_DEPS: ${CAPNP_EXECUTABLE} is \"${capnp_version_line}\"; "
                      "the sources in ${XPROC_CAPNP_SOURCE_DIR} are ${XPROC_CAPNP_VERSION}")
endif()
# The standard schemas (/capnp/c++.capnp) and capnp_generate_cpp() come with the sources.
set(CAPNP_INCLUDE_DIRECTORY ${XPROC_CAPNP_SOURCE_DIR}/src)
include(${XPROC_CAPNP_SOURCE_DIR}/cmake/CapnProtoMacros.cmake)

# The wheel carries OpenSSL's code, so it carries OpenSSL's licence (Apache-2.0): the
# copyright file of the distribution's package whose archives are linked, installed among
# the wheel's licence files. (Cap'n Proto's comes with its sources: wheel.license-files.)
if(SKBUILD)
  find_file(XPROC_OPENSSL_LICENSE copyright PATHS /usr/share/doc/libssl-dev /usr/share/doc/openssl
            NO_DEFAULT_PATH DOC "OpenSSL's licence, installed into the wheel")
  if(NOT XPROC_OPENSSL_LICENSE)
    message(FATAL_ERROR "XPROC_STATIC_DEPS: OpenSSL's licence not found in /usr/share/doc/libssl-dev: "
                        "set XPROC_OPENSSL_LICENSE to the licence of the OpenSSL linked")
  endif()
  install(FILES ${XPROC_OPENSSL_LICENSE} DESTINATION ${SKBUILD_METADATA_DIR}/licenses/openssl)
endif()
