# shellcheck shell=bash
# persist-systemd (issue 5): `nfkit apply` in a Debian guest booted with
# systemd, then a reboot on the same disk: the running kernel must match the
# desired state (modules, module options, conntrack max and buckets) with no
# nfkit process at boot: systemd-modules-load, modprobe.d and systemd-sysctl
# do the work from the files nfkit wrote. Then `nfkit verify` agrees and a
# second `nfkit apply` has nothing to do.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="persistence on systemd: apply, reboot, kernel matches nfkit.toml (modules, options, max, buckets)"
SCENARIO_BOOTS="apply@systemd +verify@systemd"

PS_MAX=123456
PS_BUCKETS=32768
PS_MODULES="xt_state iptable_nat xt_multiport nf_nat_ftp"

persist_systemd_toml() {
    local list m
    list=""
    for m in $PS_MODULES; do list+="\"$m\", "; done
    cat <<TOML
# desired state written by the vm-tests scenario persist-systemd
[modules]
load = [${list%, }]

[modules.options.nf_conntrack]
expect_hashsize = 2048

[conntrack]
max = $PS_MAX
buckets = $PS_BUCKETS
TOML
}

boot_apply() {
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    mkdir -p /etc/nfkit
    persist_systemd_toml >/etc/nfkit/nfkit.toml
    check_status "nfkit apply --check reports changes (exit 3)" 3 "$NFKIT" apply --check
    check "nfkit apply" "$NFKIT" apply
    record apply-output <<<"$CHECK_OUTPUT"
    check "modules-load.d/nfkit.conf lists nf_conntrack first" \
        grep -qx nf_conntrack <(grep -v '^#' /etc/modules-load.d/nfkit.conf | head -1)
    check "modprobe.d/nfkit.conf has hashsize keyed by nf_conntrack" \
        grep -q "^options nf_conntrack .*hashsize=$PS_BUCKETS" /etc/modprobe.d/nfkit.conf
    check "sysctl.d/90-nfkit.conf has the max" \
        grep -qx "net.netfilter.nf_conntrack_max = $PS_MAX" /etc/sysctl.d/90-nfkit.conf
    cat /etc/modules-load.d/nfkit.conf /etc/modprobe.d/nfkit.conf /etc/sysctl.d/90-nfkit.conf | record files
    # Runtime converged right away too.
    check_eq "max is set now" "$PS_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
    check_eq "buckets set now" "$PS_BUCKETS" "$(sysctl -n net.netfilter.nf_conntrack_buckets)"
    local m
    for m in $PS_MODULES; do
        check "$m loaded now" grep -q "^$m " /proc/modules
    done
    check "a second apply has nothing to do" "$NFKIT" apply
    check_match "... and says so" "nothing to do" "$CHECK_OUTPUT"
}

boot_verify() {
    check_match "rebooted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    local m
    for m in nf_conntrack $PS_MODULES; do
        check "$m loaded at boot" grep -q "^$m " /proc/modules
    done
    check_eq "hashsize from modprobe.d at first load" "$PS_BUCKETS" "$(cat /sys/module/nf_conntrack/parameters/hashsize)"
    check_eq "buckets at boot" "$PS_BUCKETS" "$(sysctl -n net.netfilter.nf_conntrack_buckets)"
    check_eq "expect_hashsize option at boot" "2048" "$(cat /sys/module/nf_conntrack/parameters/expect_hashsize)"
    check_eq "max at boot (systemd-sysctl, after modules-load)" "$PS_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
    check "nfkit verify: desired, running and next boot agree" "$NFKIT" verify
    record verify-output <<<"$CHECK_OUTPUT"
    check "nfkit apply --check: nothing to change (exit 0)" "$NFKIT" apply --check
}
