# DEB and RPM packages, split the way collectd splits itself: `sentinel` (daemon, CLI, tools,
# the plugins without dependencies of their own, config, unit, man pages), one
# `sentinel-plugin-<family>` per plugin family with its own dependencies, and `sentinel-dev`
# (header, pkg-config, CMake package, example). Dependencies are computed from the shared
# libraries (dpkg-shlibdeps, rpm's automatic requires), not typed by hand.
# `make package` configures a build with CMAKE_INSTALL_PREFIX=/usr and runs cpack into dist/.

get_property(SN_FAMILIES GLOBAL PROPERTY SN_PLUGIN_FAMILIES)
if(SN_FAMILIES)
  list(REMOVE_DUPLICATES SN_FAMILIES)
endif()

set(CPACK_PACKAGE_NAME sentinel)
set(CPACK_PACKAGE_VENDOR "Sentinel project")
set(CPACK_PACKAGE_CONTACT "Sentinel maintainers <sentinel@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Autonomous incident-response engine")
set(CPACK_PACKAGE_DESCRIPTION
  "Sentinel reads telemetry, detects anomalies statistically, folds them into incidents,\n finds a probable root cause, plans and executes a remediation behind safety gates,\n verifies it and keeps a tamper-evident audit.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR "DEB;RPM")
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_SOURCE_DIR}/dist)
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
set(CPACK_STRIP_FILES ON)

# Debian: the first line is the synopsis, the rest the extended description (lines < 80).
set(CPACK_DEBIAN_CORE_DESCRIPTION "sentineld reads telemetry, detects anomalies statistically, folds them into
incidents, finds a probable root cause, plans and executes a remediation
behind safety gates, verifies it and keeps a tamper-evident audit.
This package holds the daemon, sentinelctl, sentinel-detect and the plugins
that need no library of their own.")
set(CPACK_DEBIAN_DEV_DESCRIPTION "Sentinel plugin development files
The public plugin ABI header, a pkg-config file, a CMake package and an
example executor for building Sentinel plugins out of tree.")
set(CPACK_COMPONENT_CORE_DESCRIPTION "${CPACK_DEBIAN_CORE_DESCRIPTION}")
set(CPACK_COMPONENT_DEV_DESCRIPTION "${CPACK_DEBIAN_DEV_DESCRIPTION}")
set(SN_FAMILY_TEXT_kafka "Kafka input (librdkafka consumer groups)")
set(SN_FAMILY_TEXT_postgres "PostgreSQL state and audit store")
set(SN_FAMILY_TEXT_clickhouse "ClickHouse telemetry store")
set(SN_FAMILY_TEXT_prometheus "Prometheus remote write, Alertmanager and OTLP inputs")
set(SN_FAMILY_TEXT_aws "AWS executor (EC2, ECS)")
set(SN_FAMILY_TEXT_kubernetes "Kubernetes executor")
set(SN_FAMILY_TEXT_ai "LLM analyzer, OpenAI-compatible embedder and Qdrant store")
set(SN_FAMILY_TEXT_chatops "Slack and PagerDuty notifiers")
set(SN_FAMILY_TEXT_detect "Likelihood detector (offline and NAB tuned)")

set(SN_COMPONENTS core dev)
foreach(f ${SN_FAMILIES})
  list(APPEND SN_COMPONENTS plugin_${f})
endforeach()
set(CPACK_COMPONENTS_ALL ${SN_COMPONENTS})
set(CPACK_COMPONENTS_GROUPING IGNORE)

# ---- Debian ----
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/sentinel")
set(CPACK_DEBIAN_CORE_PACKAGE_NAME sentinel)
set(CPACK_DEBIAN_CORE_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_CORE_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/deb/postinst ${PROJECT_SOURCE_DIR}/packaging/deb/prerm
  ${PROJECT_SOURCE_DIR}/packaging/deb/postrm ${PROJECT_SOURCE_DIR}/packaging/deb/conffiles)
set(CPACK_DEBIAN_CORE_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME sentinel-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libjansson-dev, pkg-config")
foreach(f ${SN_FAMILIES})
  string(TOUPPER "plugin_${f}" C)
  set(CPACK_DEBIAN_${C}_PACKAGE_NAME sentinel-plugin-${f})
  set(CPACK_DEBIAN_${C}_DESCRIPTION "Sentinel plugins: ${SN_FAMILY_TEXT_${f}}
Plugins of the ${f} family for sentineld, packaged apart
because they need libraries of their own; install next to sentinel.")
  set(CPACK_COMPONENT_${C}_DESCRIPTION "${CPACK_DEBIAN_${C}_DESCRIPTION}")
  set(CPACK_DEBIAN_${C}_PACKAGE_DEPENDS "sentinel (= ${PROJECT_VERSION})")
endforeach()

# ---- RPM ----
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_LICENSE "MIT")
set(CPACK_RPM_PACKAGE_GROUP "Applications/System")
set(CPACK_RPM_PACKAGE_URL "https://example.org/sentinel")
set(CPACK_RPM_CORE_PACKAGE_NAME sentinel)
set(CPACK_RPM_CORE_PRE_INSTALL_SCRIPT_FILE ${PROJECT_SOURCE_DIR}/packaging/rpm/pre.sh)
set(CPACK_RPM_CORE_POST_INSTALL_SCRIPT_FILE ${PROJECT_SOURCE_DIR}/packaging/rpm/post.sh)
set(CPACK_RPM_CORE_POST_UNINSTALL_SCRIPT_FILE ${PROJECT_SOURCE_DIR}/packaging/rpm/postun.sh)
set(CPACK_RPM_CORE_USER_FILELIST "%config(noreplace) /etc/sentinel/sentinel.conf"
  "%config(noreplace) /etc/sentinel/detect.conf")
set(CPACK_RPM_DEV_PACKAGE_NAME sentinel-devel)
set(CPACK_RPM_DEV_PACKAGE_REQUIRES "jansson-devel, pkgconfig")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION /etc /usr/sbin /usr/bin /usr/lib
  /usr/lib/systemd /usr/lib/systemd/system /usr/lib/x86_64-linux-gnu
  /usr/lib/x86_64-linux-gnu/pkgconfig /usr/lib/x86_64-linux-gnu/cmake /usr/include
  /usr/share /usr/share/doc /usr/share/man /usr/share/man/man1 /usr/share/man/man5
  /usr/share/man/man8)
set(CPACK_RPM_SPEC_MORE_DEFINE "%define packager Sentinel maintainers <sentinel@example.org>")
set(CPACK_RPM_DEV_PACKAGE_ARCHITECTURE noarch)
set(CPACK_RPM_DEV_PACKAGE_GROUP "Development/Libraries")
foreach(f ${SN_FAMILIES})
  string(TOUPPER "plugin_${f}" C)
  set(CPACK_RPM_${C}_PACKAGE_NAME sentinel-plugin-${f})
  set(CPACK_RPM_${C}_PACKAGE_REQUIRES "sentinel = ${PROJECT_VERSION}")
endforeach()

include(CPack)
