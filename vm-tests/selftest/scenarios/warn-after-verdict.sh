# shellcheck shell=bash disable=SC2034
# A kernel fault message anywhere in the console fails the boot, even when all
# checks passed. /dev/kmsg lets userspace print a line at KERN_ERR.
SCENARIO_DESC="selftest: an Oops-like kernel message after passing checks"
SCENARIO_BOOTS="main"
boot_main() {
    check "true passes" true
    echo '<3>selftest: BUG: fake kernel fault line' >/dev/kmsg
}
