# buffetConfig.cmake - find_package(buffet) support; gives the INTERFACE target buffet::buffet.
# Installed as <prefix>/lib/cmake/buffet/; the include directory is found relative to this file,
# so an installed tree can be moved or packaged without editing it.
get_filename_component(_buffet_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

# buffet uses threads (call_once, per-thread caches); Threads::Threads adds -pthread where needed.
include(CMakeFindDependencyMacro)
find_dependency(Threads)

if(NOT TARGET buffet::buffet)
  add_library(buffet::buffet INTERFACE IMPORTED)
  set_target_properties(buffet::buffet PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_buffet_prefix}/include/buffet"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
unset(_buffet_prefix)
