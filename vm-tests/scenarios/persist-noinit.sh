# shellcheck shell=bash
# persist-noinit (issue 5): a host without systemd. The first boot removes
# systemd as init (so nfkit detects a non-systemd Debian host), installs nfkit
# and hooks `nfkit boot` into /etc/rc.local, applies nfkit.toml. The reboot
# runs with the plain init script (no systemd, no modules-load, no
# systemd-sysctl), runs the rc.local hook as an init would, and checks that
# `nfkit boot` loaded the modules with their options before setting the
# conntrack sysctls.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="persistence without systemd: nfkit boot from rc.local loads modules with options, then sysctls"
SCENARIO_BOOTS="apply +boot"

PN_MAX=77777
PN_BUCKETS=16384

boot_apply() {
    # A Debian host whose init is not systemd: nfkit's host detection must
    # pick /etc/modules (its marked block) instead of modules-load.d.
    rm -f /sbin/init
    install -m 0755 "$NFKIT" /usr/sbin/nfkit
    printf '#!/bin/sh\n/usr/sbin/nfkit boot\n' >/etc/rc.local
    chmod 0755 /etc/rc.local
    mkdir -p /etc/nfkit
    cat >/etc/nfkit/nfkit.toml <<TOML
[modules]
load = ["xt_conntrack", "iptable_filter"]

[conntrack]
max = $PN_MAX
buckets = $PN_BUCKETS
TOML
    check "nfkit apply (offline-style: files only would do; this also converges now)" /usr/sbin/nfkit apply
    record apply-output <<<"$CHECK_OUTPUT"
    check_match "targets chosen for a non-systemd Debian host" "etc-modules" "$CHECK_OUTPUT"
    check "nfkit's block in /etc/modules" grep -q '^# BEGIN nfkit' /etc/modules
    check "no modules-load.d file on a non-systemd host" test ! -e /etc/modules-load.d/nfkit.conf
    record etc-modules /etc/modules
}

boot_boot() {
    check_match "no systemd on this boot" '^nfkit-vm-init$|^bash$' "$(cat /proc/1/comm)"
    check_fails "nothing loaded nf_conntrack before the hook" grep -q '^nf_conntrack ' /proc/modules
    check "rc.local runs nfkit boot" /etc/rc.local
    record boot-output <<<"$CHECK_OUTPUT"
    check "nf_conntrack loaded by nfkit boot" grep -q '^nf_conntrack ' /proc/modules
    check "xt_conntrack loaded by nfkit boot" grep -q '^xt_conntrack ' /proc/modules
    check "iptable_filter loaded by nfkit boot" grep -q '^iptable_filter ' /proc/modules
    check_eq "hashsize passed with the load" "$PN_BUCKETS" "$(cat /sys/module/nf_conntrack/parameters/hashsize)"
    check_eq "max set after the module was loaded" "$PN_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
    check "nfkit verify names rc.local as the boot hook and agrees" /usr/sbin/nfkit verify
    check_match "... the hook is named" "rc.local" "$CHECK_OUTPUT"
    record verify-output <<<"$CHECK_OUTPUT"
    check "nfkit boot again: nothing to do" /usr/sbin/nfkit boot
    check_match "... and says so" "nothing to do" "$CHECK_OUTPUT"
}
