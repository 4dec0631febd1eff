# Install-time helper of NodehostInstall.cmake (run by `cmake --install` and by CPack, never at
# configure time): installs one template file with the install prefix filled in, because the
# prefix is only known then (`cmake --install --prefix`, CPack's /usr).
#
# Input variables:
#   NH_IC_TEMPLATE   the template; @NH_PLUGIN_DIR@, @NH_DATADIR@ and @NH_PREFIX@ are replaced
#   NH_IC_NAME       the installed file name
#   NH_IC_DEST       the directory, relative to the prefix, or SYSCONF/<sub> for the
#                    configuration directory: /etc/<sub> when the prefix is / or /usr,
#                    /etc/opt/... for /opt/..., else <prefix>/etc/<sub> (GNU rules)
#   NH_IC_PLUGINDIR  the plugins' directory, relative to the prefix (or absolute)
#   NH_IC_DATADIR    share/nodehost, relative to the prefix (or absolute)
#   NH_IC_CONFFILE   ON: an existing file is kept (a configuration the administrator edited;
#                    the Debian package marks it a conffile, dpkg handles it there)
#   NH_IC_TMPDIR     a directory of the build tree for the filled-in copy
# DESTDIR is honoured by file(INSTALL); the installed file goes into install_manifest.txt.

set(_nh_prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "(.)/+$" "\\1" _nh_prefix "${_nh_prefix}")

function(_nh_ic_abs out rel)
  if(IS_ABSOLUTE "${rel}")
    set(${out} "${rel}" PARENT_SCOPE)
  elseif(_nh_prefix STREQUAL "/")
    set(${out} "/${rel}" PARENT_SCOPE)
  else()
    set(${out} "${_nh_prefix}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

if(NH_IC_DEST MATCHES "^SYSCONF/(.*)$")
  set(_nh_sub "${CMAKE_MATCH_1}")
  if(_nh_prefix STREQUAL "/" OR _nh_prefix STREQUAL "/usr")
    set(_nh_dest "/etc/${_nh_sub}")
  elseif(_nh_prefix MATCHES "^/opt/")
    set(_nh_dest "/etc${_nh_prefix}/${_nh_sub}")
  else()
    set(_nh_dest "${_nh_prefix}/etc/${_nh_sub}")
  endif()
else()
  _nh_ic_abs(_nh_dest "${NH_IC_DEST}")
endif()
_nh_ic_abs(_nh_plugindir "${NH_IC_PLUGINDIR}")
_nh_ic_abs(_nh_datadir "${NH_IC_DATADIR}")

if(NH_IC_CONFFILE AND EXISTS "$ENV{DESTDIR}${_nh_dest}/${NH_IC_NAME}")
  message(STATUS "Keeping: $ENV{DESTDIR}${_nh_dest}/${NH_IC_NAME} (exists; the new default "
                 "would name the plugins in ${_nh_plugindir})")
  return()
endif()

file(READ "${NH_IC_TEMPLATE}" _nh_text)
string(REPLACE "@NH_PLUGIN_DIR@" "${_nh_plugindir}" _nh_text "${_nh_text}")
string(REPLACE "@NH_DATADIR@" "${_nh_datadir}" _nh_text "${_nh_text}")
string(REPLACE "@NH_PREFIX@" "${_nh_prefix}" _nh_text "${_nh_text}")
# One copy per destination: installs into different prefixes may run at the same time.
string(MD5 _nh_key "$ENV{DESTDIR}${_nh_dest}/${NH_IC_NAME}")
set(_nh_tmp "${NH_IC_TMPDIR}/${_nh_key}")
file(WRITE "${_nh_tmp}/${NH_IC_NAME}" "${_nh_text}")
file(INSTALL DESTINATION "${_nh_dest}" TYPE FILE
  PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
  FILES "${_nh_tmp}/${NH_IC_NAME}")
file(REMOVE_RECURSE "${_nh_tmp}")
