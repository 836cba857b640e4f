# The ctest example_demo_headless (cmake -P): runs Stage Demo headless with a fixed scenario and
# seed, then checks its summary and its screenshot.
#   -DDEMO=<stage-demo> -DSCREENSHOT=<png> -DSECONDS=<n> -DSEED=<s>
execute_process(
    COMMAND ${DEMO} --headless --seconds ${SECONDS} --seed ${SEED} --screenshot ${SCREENSHOT}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 180)
message("${out}")
if(err)
    message("stderr:\n${err}")
endif()
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "stage-demo --headless exited with status ${rc}")
endif()

# What the scenario must have done, as the summary tells it.
set(expected
    "restarts happened \\([1-9][0-9]*\\): ok"                             # restarts happened
    "storm on devices: devices exceeded its intensity and escalated, then recovered"
    "poller +Running +group 1 worker\\(s\\) on the GUI thread: started [0-9]+, failed [1-9]" # the watchdog
    "indexer +Running +group 2 worker\\(s\\) on 2 thread\\(s\\): started [0-9]+, failed [0-9]+, abandoned [1-9]" # the shutdown timeout
    "paths +sent [1-9][0-9]*, acknowledged [1-9][0-9]*, redelivered [1-9][0-9]*, dead-lettered [1-9][0-9]*, left queued 0, lost 0 "
    "requests +sent [1-9][0-9]*, acknowledged [1-9][0-9]*, redelivered [1-9][0-9]*, dead-lettered [1-9][0-9]*, left queued 0, lost 0 "
    "images +sent [1-9][0-9]*, acknowledged [1-9][0-9]*, redelivered [1-9][0-9]*, dead-lettered 1, left queued 0, lost 0 "
    "thumbnailer +Running +process group, 1 child process\\(es\\): started [0-9]+, failed [4-9]" # the segfaults
    "image\\(s\\) dead-lettered \\(1 by a crash: [^)]*killed by signal 11"
    "the SupervisorView's model had 10 rows \\(the tree has 10 nodes\\)"
    "result: PASS")
foreach(pattern IN LISTS expected)
    if(NOT out MATCHES "${pattern}")
        message(FATAL_ERROR "the summary does not match: ${pattern}")
    endif()
endforeach()

# The screenshot on disk is not blank.
execute_process(COMMAND ${DEMO} --check-image ${SCREENSHOT}
    OUTPUT_VARIABLE image ERROR_VARIABLE image_err RESULT_VARIABLE image_rc TIMEOUT 60)
message("${image}")
if(NOT image_rc EQUAL 0)
    message(FATAL_ERROR "the screenshot ${SCREENSHOT} is blank or unreadable: ${image}${image_err}")
endif()
