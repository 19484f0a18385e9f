# shellcheck shell=bash disable=SC2034
# Two verdict lines in one boot must fail it.
SCENARIO_DESC="selftest: a second verdict line"
SCENARIO_BOOTS="main"
boot_main() {
    check "true passes" true
    echo "vm-tests: 1 passed, 0 failed"
}
