# shellcheck shell=bash disable=SC2034
# A kernel crash must fail the boot even though a verdict follows... never.
SCENARIO_DESC="selftest: the kernel crashes (sysrq c)"
SCENARIO_BOOTS="main"
boot_main() {
    check "true passes" true
    echo c >/proc/sysrq-trigger
}
