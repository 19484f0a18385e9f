# shellcheck shell=bash disable=SC2034
# A runner that dies before its verdict must fail the boot.
SCENARIO_DESC="selftest: the runner dies before printing its verdict"
SCENARIO_BOOTS="main"
boot_main() {
    check "true passes" true
    kill -9 $$
}
