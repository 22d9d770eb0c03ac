# Included into an interface package's project (CMAKE_PROJECT_INCLUDE) when it is built against the
# PyPI ROS 2 wheels: their exported targets name include folders of the machine the wheels were built
# on (e.g. /opt/python/cp311-cp311/include/python3.11). At the end of the package's CMakeLists, drop
# include folders that do not exist here, so the generate step does not refuse them.
function(robovlms_mobile_drop_missing_includes)
  get_directory_property(imported IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      set(kept "")
      foreach(dir IN LISTS dirs)
        if(EXISTS "${dir}" OR dir MATCHES "^\\$<")
          list(APPEND kept "${dir}")
        endif()
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL robovlms_mobile_drop_missing_includes)
