# shellcheck shell=bash
# sysctl-keys (issue 12): sysctls that appeared or left between the matrix's
# kernels, nfkit vs sysctl(8), each in a fresh boot with nf_conntrack loaded.
# For every key of SK_KEYS the oracle runs `sysctl -w KEY=VALUE` and nfkit
# runs `apply` with that one key in nfkit.toml's [sysctl]; the host then
# compares the per-key verdicts (set / missing), so a key that exists on one
# kernel only gets nfkit's "does not exist on this kernel" exactly where
# sysctl says "cannot stat". The value is the key's current value (any value
# valid for it); a missing key gets 1.
#
# Keys (the oracle decides where each exists; the notes say why each is
# here, and what the matrix's oracles answered on 2026-11-29):
#   nf_conntrack_helper             removed in 6.0: set on 5.10 only
#   nf_conntrack_tcp_ignore_invalid_rst  added in 5.14: missing on 5.10
#   nf_hooks_lwtunnel               added in 5.15 (missing on 5.10); not a
#                                   conntrack key, so
#                                   refused before anything is loaded
#   nf_conntrack_sctp_timeout_heartbeat_acked  gone with the SCTP state
#                                   rework (also from Debian's 5.10: missing
#                                   on all three)
#   nf_conntrack_dccp_timeout_open, nf_conntrack_gre_timeout,
#   nf_conntrack_tcp_timeout_established, nf_conntrack_acct: long-standing
#   nf_conntrack_nfkit_no_such      none (canary: the "missing" verdict is
#                                   compared on every kernel)
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="sysctls that appeared or left per kernel: nfkit apply vs sysctl -w, same verdict per key"
SCENARIO_BOOTS="oracle nfkit"

SK_KEYS="
net.netfilter.nf_conntrack_helper
net.netfilter.nf_conntrack_tcp_ignore_invalid_rst
net.netfilter.nf_hooks_lwtunnel
net.netfilter.nf_conntrack_sctp_timeout_heartbeat_acked
net.netfilter.nf_conntrack_dccp_timeout_open
net.netfilter.nf_conntrack_gre_timeout
net.netfilter.nf_conntrack_tcp_timeout_established
net.netfilter.nf_conntrack_acct
net.netfilter.nf_conntrack_nfkit_no_such
"

sk_value() {   # the key's current value, or 1 where it does not exist
    sysctl -n "$1" 2>/dev/null || echo 1
}

# sk_run VERDICT_FN: VERDICT_FN KEY VALUE prints set | missing | error and
# leaves the tool's output in $OUT/out.tmp.
sk_run() {
    local key value verdict
    : >"$OUT/verdicts.tmp"
    : >"$OUT/messages.tmp"
    for key in $SK_KEYS; do
        value=$(sk_value "$key")
        verdict=$("$1" "$key" "$value")
        printf '%s\t%s\n' "$key" "$verdict" >>"$OUT/verdicts.tmp"
        printf '%s\t%s\n' "$key" "$(tr '\n' ' ' <"$OUT/out.tmp")" >>"$OUT/messages.tmp"
    done
    rm -f "$OUT/out.tmp"
    record verdicts "$OUT/verdicts.tmp"
    record messages "$OUT/messages.tmp"
    rm -f "$OUT/verdicts.tmp" "$OUT/messages.tmp"
    check_fails "no key ended in an error other than 'missing'" grep -q $'\terror$' "$OUT/verdicts"
    check "the canary is missing" grep -qx $'net.netfilter.nf_conntrack_nfkit_no_such\tmissing' "$OUT/verdicts"
    check "a key every kernel has is set" grep -qx $'net.netfilter.nf_conntrack_acct\tset' "$OUT/verdicts"
}

oracle_verdict() {
    if sysctl -w "$1=$2" >"$OUT/out.tmp" 2>&1; then
        echo set
    elif grep -q 'cannot stat' "$OUT/out.tmp"; then
        echo missing
    else
        echo error
    fi
}

nfkit_verdict() {
    local rc=0
    mkdir -p /etc/nfkit
    printf '[sysctl]\n"%s" = "%s"\n' "$1" "$2" >/etc/nfkit/nfkit.toml
    "$NFKIT" apply >"$OUT/out.tmp" 2>&1 || rc=$?
    if ((rc == 0)) && [[ $(sysctl -n "$1" 2>/dev/null) == "$2" ]] &&
        grep -qx "$1 = $2" /etc/sysctl.d/90-nfkit.conf; then
        echo set
    elif ((rc == 1)) && grep -q "sysctl $1 does not exist on this kernel" "$OUT/out.tmp"; then
        echo missing
    else
        echo error
    fi
}

boot_oracle() {
    check "modprobe nf_conntrack" modprobe nf_conntrack || return 0
    sk_run oracle_verdict
}

boot_nfkit() {
    check "nfkit modules load nf_conntrack" "$NFKIT" modules load nf_conntrack || return 0
    sk_run nfkit_verdict
    # A missing key left nothing behind: no sysctl.d file names it.
    check_eq "no missing key was written to sysctl.d" "" \
        "$(grep -h -f <(awk -F'\t' '$2 == "missing" { print "^" $1 " " }' "$OUT/verdicts") \
            /etc/sysctl.d/*.conf 2>/dev/null || true)"
}

compare() {
    check_same_file "same per-key verdicts (set / missing) as sysctl -w on this kernel" \
        "$RESULTS/oracle/verdicts" "$RESULTS/nfkit/verdicts"
}
