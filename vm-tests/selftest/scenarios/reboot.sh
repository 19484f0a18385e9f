# shellcheck shell=bash disable=SC2034
# Positive: a systemd boot writes state to the root disk; a reboot on the same
# disk ('+') sees it, and sees the first boot's records in $PREV; a final fresh
# boot does not see it.
SCENARIO_DESC="selftest: systemd boot, reboot on the same disk, then a fresh boot"
SCENARIO_BOOTS="write@systemd +reread fresh"
boot_write() {
    check "PID 1 is systemd" test "$(cat /proc/1/comm)" = systemd
    check "systemd reached a running state" sh -c 'systemctl is-system-running | grep -Eq "running|degraded|starting"'
    record boot-id /proc/sys/kernel/random/boot_id
    check "write a marker on the root disk" sh -c 'cat /proc/sys/kernel/random/boot_id >/var/lib/nfkit-marker'
}
boot_reread() {
    check "PID 1 is the vm init script" test "$(cat /proc/1/comm)" = nfkit-vm-init
    check "the marker survived the reboot" test -f /var/lib/nfkit-marker
    check_same_file "marker holds the first boot's id (via \$PREV)" "$PREV/write/boot-id" /var/lib/nfkit-marker
    check_fails "this is another boot" cmp -s "$PREV/write/boot-id" /proc/sys/kernel/random/boot_id
}
boot_fresh() {
    check_fails "a fresh boot has no marker" test -e /var/lib/nfkit-marker
}
