# cmake -DPROGRAM=... -DEXPECTED_STATUS=N -DEXPECTED_OUTPUT=REGEX -P expect_exit.cmake
# Run PROGRAM; fail unless it exits with EXPECTED_STATUS and its output matches EXPECTED_OUTPUT.
execute_process(COMMAND ${PROGRAM} RESULT_VARIABLE status OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
if(NOT status STREQUAL EXPECTED_STATUS OR NOT output MATCHES "${EXPECTED_OUTPUT}")
  message(FATAL_ERROR "${PROGRAM} exited with ${status} (expected ${EXPECTED_STATUS}), output "
                      "expected to match \"${EXPECTED_OUTPUT}\":\n${output}")
endif()
