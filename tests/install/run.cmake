# cmake -DSTAGE_BINARY_DIR=... -DSTAGE_SOURCE_DIR=... -DWORK_DIR=... -DCXX=... [-DGENERATOR=...]
#       -P run.cmake
# 1. cmake --install the Stage build tree into WORK_DIR/prefix;
# 2. configure tests/install/consumer against that prefix only, with the same compiler;
# 3. build it; 4. run it. Any non-zero step is a FATAL_ERROR.
cmake_minimum_required(VERSION 3.25)

foreach(var STAGE_BINARY_DIR STAGE_SOURCE_DIR WORK_DIR CXX)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "run.cmake: -D${var}=... is required")
    endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(step name)
    message(STATUS "install_consumer: ${name}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "install_consumer: step '${name}' failed (${rc}): ${ARGN}")
    endif()
endfunction()

step("install" ${CMAKE_COMMAND} --install "${STAGE_BINARY_DIR}" --prefix "${prefix}")

set(generator_args)
if(DEFINED GENERATOR AND NOT GENERATOR STREQUAL "")
    set(generator_args -G "${GENERATOR}")
endif()
step("configure consumer" ${CMAKE_COMMAND}
    -S "${STAGE_SOURCE_DIR}/tests/install/consumer"
    -B "${consumer_build}"
    ${generator_args}
    "-DCMAKE_CXX_COMPILER=${CXX}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DSTAGE_EXPECTED_PREFIX=${prefix}"
    "-DSTAGE_SOURCE_DIR=${STAGE_SOURCE_DIR}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
step("build consumer" ${CMAKE_COMMAND} --build "${consumer_build}" -j2)
step("run consumer" "${consumer_build}/stage-install-consumer")
step("run qml consumer" ${CMAKE_COMMAND} -E env QT_QPA_PLATFORM=offscreen "${consumer_build}/stage-install-qml-consumer")
if(EXISTS "${consumer_build}/stage-install-backends-consumer")
    step("run backends consumer" "${consumer_build}/stage-install-backends-consumer")
endif()
message(STATUS "install_consumer: passed")
