# `cmake --install`: headers (the library's and the generated schema headers), the
# libraries, the `xproc` command, the schemas, a CMake package (xprocConfig.cmake) and a
# pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(XPROC_INSTALL_SCHEMA_DIR ${CMAKE_INSTALL_DATADIR}/xproc/schema)
set(XPROC_INSTALL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/xproc)

# The public headers, and only those: what they include must be in this list too (the
# install test compiles against the installed tree alone).
set(XPROC_PUBLIC_HEADERS
  # xproc::core
  xproc.h array.h auth.h byte_connection.h byte_queue.h connection.h errors.h fd.h listener.h message.h
  message_check.h process.h queue.h queue_waiter.h segments.h sharing.h timeout.h value.h wait.h
  # xproc::manager
  event_loop.h manager.h manager_proxies.h manager_server.h queue_promises.h tls_options.h)
list(TRANSFORM XPROC_PUBLIC_HEADERS PREPEND ${CMAKE_SOURCE_DIR}/src/xproc/)
install(FILES ${XPROC_PUBLIC_HEADERS} ${XPROC_SCHEMA_HDRS} ${XPROC_GENERATED_DIR}/xproc/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/xproc)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/schema/xproc DESTINATION ${XPROC_INSTALL_SCHEMA_DIR})

set(XPROC_INSTALL_TARGETS xproc_core xproc_manager xproc)
# xproc::nats, where libnats was found: its headers in xproc/nats/ (they name libnats's
# types only as opaque declarations, so a user needs libnats's headers only to call native()).
if(TARGET xproc_nats)
  list(APPEND XPROC_INSTALL_TARGETS xproc_nats)
  install(FILES ${CMAKE_SOURCE_DIR}/src/xproc/nats/connection.h ${CMAKE_SOURCE_DIR}/src/xproc/nats/queue.h
                ${CMAKE_SOURCE_DIR}/src/xproc/nats/dict.h ${CMAKE_SOURCE_DIR}/src/xproc/nats/bridge.h
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/xproc/nats)
  set(XPROC_PACKAGE_HAS_NATS ON)
else()
  set(XPROC_PACKAGE_HAS_NATS OFF)
endif()
if(TARGET xproc_c)
  list(APPEND XPROC_INSTALL_TARGETS xproc_c)
  install(FILES ${CMAKE_SOURCE_DIR}/bindings/c/include/xproc.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()
install(TARGETS ${XPROC_INSTALL_TARGETS} EXPORT xprocTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET xproc_cli)
  install(TARGETS xproc_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT xprocTargets NAMESPACE xproc:: DESTINATION ${XPROC_INSTALL_CMAKE_DIR})

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/xprocConfig.cmake.in
  ${CMAKE_BINARY_DIR}/xprocConfig.cmake INSTALL_DESTINATION ${XPROC_INSTALL_CMAKE_DIR}
  PATH_VARS XPROC_INSTALL_SCHEMA_DIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/xprocConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/xprocConfig.cmake ${CMAKE_BINARY_DIR}/xprocConfigVersion.cmake
              ${CMAKE_SOURCE_DIR}/cmake/XprocAddSchema.cmake
        DESTINATION ${XPROC_INSTALL_CMAKE_DIR})
configure_file(${CMAKE_SOURCE_DIR}/cmake/xproc.pc.in ${CMAKE_BINARY_DIR}/xproc.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/xproc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
