# shellcheck shell=bash disable=SC2034
# A hanging guest must be killed at the time limit (selftest sets a short one).
SCENARIO_DESC="selftest: the guest hangs"
SCENARIO_BOOTS="main"
boot_main() {
    sleep 3600
}
