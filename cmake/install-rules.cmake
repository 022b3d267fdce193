include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS normgrad EXPORT normgrad-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/normgrad)
install(EXPORT normgrad-targets NAMESPACE normgrad:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/normgrad)
export(EXPORT normgrad-targets NAMESPACE normgrad:: FILE ${PROJECT_BINARY_DIR}/normgrad-targets.cmake)

configure_package_config_file(cmake/normgrad-config.cmake.in ${PROJECT_BINARY_DIR}/normgrad-config.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/normgrad)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/normgrad-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/normgrad-config.cmake ${PROJECT_BINARY_DIR}/normgrad-config-version.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/normgrad)
