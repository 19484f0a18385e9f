# shellcheck shell=bash
# persist-pcs (issue 5): a Parallels Cloud Server / Virtuozzo style host
# (the seed guide): IPTABLES_MODULES with 2.6-era names in
# /etc/sysconfig/iptables-config, `options ip_conntrack ...` in
# /etc/modprobe.d/parallels.conf, net.nf_conntrack_max in /etc/sysctl.conf.
# `nfkit import` translates it, `nfkit apply` persists it, and after a reboot
# (systemd guest) the kernel matches. ip_conntrack_disable_ve0 exists only on
# Virtuozzo kernels: on this Debian kernel verify must single it out as not
# accepted, and everything else must agree. (The EL6/PCS host without systemd
# and sysctl.d, where nfkit edits /etc/sysctl.conf in place and apply reports
# the missing module boot path, is covered offline: tests/persist_offline.rs
# pcs_el6_*.)
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="PCS-style config imported, applied, rebooted, verified (legacy names, alias-keyed options)"
SCENARIO_BOOTS="apply@systemd +verify@systemd"

PCS_MAX=200000

boot_apply() {
    mkdir -p /etc/sysconfig /etc/modprobe.d /etc/nfkit
    # As the guide writes it: one module per line inside the quotes.
    cat >/etc/sysconfig/iptables-config <<'CFG'
# Load additional iptables modules (nat helpers)
#   Default: -none-
IPTABLES_MODULES="
ip_conntrack
ip_conntrack_ftp
ip_nat_ftp
ipt_state
ipt_REJECT
ipt_multiport
iptable_filter
iptable_mangle
iptable_nat
"
# Unload modules on restart and stop
IPTABLES_MODULES_UNLOAD="no"
CFG
    cp /etc/sysconfig/iptables-config "$OUT/iptables-config.before"
    echo 'options ip_conntrack ip_conntrack_disable_ve0=0' >/etc/modprobe.d/parallels.conf
    echo "net.nf_conntrack_max = $PCS_MAX" >>/etc/sysctl.conf

    # stdout is the nfkit.toml; notes about what was not imported go to stderr.
    local import_rc=0
    "$NFKIT" import --from pcs >/etc/nfkit/nfkit.toml 2>/tmp/import.err || import_rc=$?
    record imported.toml /etc/nfkit/nfkit.toml
    record import.err /tmp/import.err
    check_eq "nfkit import --from pcs exits 0" 0 "$import_rc"
    local imported
    imported=$(cat /etc/nfkit/nfkit.toml)
    check_match "ip_conntrack translated" "ip_conntrack → nf_conntrack" "$imported"
    check_match "ipt_state translated" "ipt_state → xt_state" "$imported"
    check_match "legacy sysctl name translated" "net.nf_conntrack_max → conntrack.max" "$imported"
    check_match "alias-keyed options noted" "keyed by an alias" "$imported"
    # Issue 9: the guest's vendor defaults (Debian's /usr/lib/modprobe.d:
    # snd-pcsp index=-2, bonding max_bonds=0, dummy numdummies=0, ...) stay
    # where they are; only the netfilter options are imported, the rest is counted.
    check "the guest has vendor modprobe.d defaults (the check below means something)" \
        grep -Eqs '^options (bonding|dummy|snd-pcsp) ' /usr/lib/modprobe.d/*.conf /lib/modprobe.d/*.conf
    check_eq "only netfilter module options imported" "[modules.options.nf_conntrack]" \
        "$(grep '^\[modules\.options\.' /etc/nfkit/nfkit.toml)"
    check_match "vendor defaults counted as not imported, --all named" \
        "not imported: [0-9]+ items \([0-9]+ from vendor files.*nfkit import --all" "$(cat /tmp/import.err)"
    check "--all would add them, each with its file:line" \
        grep -Eq '^# added by --all: /(usr/)?lib/modprobe\.d/[^:]+:[0-9]+: options (bonding|dummy|snd_pcsp) ' \
        <("$NFKIT" import --from pcs --all 2>/dev/null)

    # The Virtuozzo-only parameter is kept in nfkit.toml (the host may be
    # Virtuozzo) but this kernel does not accept it: apply must say so and
    # still converge everything else.
    local rc=0
    "$NFKIT" apply >/tmp/apply-output 2>&1 || rc=$?
    record apply-output /tmp/apply-output
    check_eq "apply exits 3: the state still differs after converging" 3 "$rc"
    check_match "apply names the parameter this kernel does not accept" \
        "still differs: nf_conntrack.ip_conntrack_disable_ve0.*does not accept" "$(tr '\n' ' ' </tmp/apply-output)"
    check "nf_conntrack loaded by apply" grep -q '^nf_conntrack ' /proc/modules
    check "xt_state loaded by apply" grep -q '^xt_state ' /proc/modules
    check_eq "max set by apply" "$PCS_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
    check "options keyed by nf_conntrack in modprobe.d/nfkit.conf" \
        grep -q '^options nf_conntrack ip_conntrack_disable_ve0=0' /etc/modprobe.d/nfkit.conf
    check_eq "modprobe.d/nfkit.conf holds no vendor default (only nf_conntrack options)" "" \
        "$(grep '^options' /etc/modprobe.d/nfkit.conf | grep -v '^options nf_conntrack ')"
    check "IPTABLES_MODULES now holds the current names" \
        grep -q '^nf_conntrack$' /etc/sysconfig/iptables-config
    # Every other byte of iptables-config is kept.
    diff <(grep -v -x -f <(printf '%s\n' nf_conntrack nf_conntrack_ftp nf_nat_ftp xt_state ipt_REJECT xt_multiport iptable_filter iptable_mangle iptable_nat ip_conntrack ip_conntrack_ftp ip_nat_ftp ipt_state ipt_multiport) "$OUT/iptables-config.before") \
         <(grep -v -x -f <(printf '%s\n' nf_conntrack nf_conntrack_ftp nf_nat_ftp xt_state ipt_REJECT xt_multiport iptable_filter iptable_mangle iptable_nat ip_conntrack ip_conntrack_ftp ip_nat_ftp ipt_state ipt_multiport) /etc/sysconfig/iptables-config) >"$OUT/config-diff" 2>&1
    check_eq "iptables-config: comments and other keys unchanged" "" "$(cat "$OUT/config-diff")"
    # The one-module-per-line layout is kept: the diff is exactly the renamed
    # lines (modules that stay keep their lines).
    check_eq "iptables-config: only the renamed lines changed, one module per line" \
        "< ip_conntrack|< ip_conntrack_ftp|< ip_nat_ftp|< ipt_multiport|< ipt_state|> nf_conntrack|> nf_conntrack_ftp|> nf_nat_ftp|> xt_multiport|> xt_state" \
        "$(diff "$OUT/iptables-config.before" /etc/sysconfig/iptables-config | grep '^[<>]' | LC_ALL=C sort | paste -sd'|')"
    # systemd guest: modules-load.d and sysctl.d carry everything to the next
    # boot, so apply reports no next-boot gap (only the Virtuozzo parameter).
    check_eq "apply: no next-boot gap on a systemd host" "" "$(grep 'next boot:' /tmp/apply-output || true)"
}

boot_verify() {
    local m
    for m in nf_conntrack nf_conntrack_ftp nf_nat_ftp xt_state ipt_REJECT xt_multiport iptable_filter iptable_mangle iptable_nat; do
        check "$m loaded at boot" grep -q "^$m " /proc/modules
    done
    check_eq "max at boot" "$PCS_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
    local rc=0
    "$NFKIT" --json verify >/tmp/verify.json 2>/tmp/verify.err || rc=$?
    record verify.json /tmp/verify.json
    record verify.err /tmp/verify.err
    check_eq "verify exits 3: one item differs" 3 "$rc"
    check_eq "the only differing row is the Virtuozzo-only parameter" \
        "nf_conntrack.ip_conntrack_disable_ve0" \
        "$(jq -r '.rows[] | select(.ok == false) | .item' "$OUT/verify.json")"
    check_match "... explained as not accepted by this kernel" "does not accept" \
        "$(jq -r '.rows[] | select(.ok == false) | .notes | join(" ")' "$OUT/verify.json")"
    check_match "the alias-keyed line in parallels.conf is named" "parallels.conf:1" "$(cat "$OUT/verify.json")"
}
