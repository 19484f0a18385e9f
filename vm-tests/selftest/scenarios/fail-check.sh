# shellcheck shell=bash disable=SC2034
# A failing check must fail the boot.
SCENARIO_DESC="selftest: one check passes, one fails"
SCENARIO_BOOTS="main"
boot_main() {
    check "true passes" true
    check "false fails" false
}
