# shellcheck shell=bash
# unload (issue 4): nfkit unload vs modprobe -r, each in a fresh boot.
#   - the same modules loaded, then the same unload: the remaining module
#     sets are identical (host compare);
#   - a module in use (nf_conntrack, held by xt_conntrack etc.) is refused,
#     with its holders named (the holders come from /sys/module/*/holders);
#   - a builtin module is refused clearly (picked from modules.builtin, not
#     hard-coded).
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="unload: same remaining set as modprobe -r, in-use refused with holders, builtin refused"
SCENARIO_BOOTS="oracle nfkit"

UNLOAD_SETUP="iptable_filter iptable_nat xt_conntrack xt_multiport"
UNLOAD_TARGET=iptable_nat

loaded_modules() { cut -d' ' -f1 /proc/modules | sort; }

# A builtin module of this kernel: the first networking one of
# modules.builtin, else its first entry.
builtin_module() {
    local f
    f=/lib/modules/$(uname -r)/modules.builtin
    { grep '^kernel/net/' "$f"; cat "$f"; } | sed -n '1{s|.*/||; s|\.ko$||; p}'
}

holders_of() { find "/sys/module/$1/holders" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }

boot_oracle() {
    local m
    for m in $UNLOAD_SETUP; do
        check "modprobe $m" modprobe "$m"
    done
    loaded_modules | record modules-loaded
    check "modprobe -r $UNLOAD_TARGET" modprobe -r "$UNLOAD_TARGET"
    loaded_modules | record modules-after-unload

    holders_of nf_conntrack | record nf_conntrack-holders
    check "nf_conntrack has holders" test -s "$OUT/nf_conntrack-holders"
    check_fails "modprobe -r nf_conntrack is refused while in use" modprobe -r nf_conntrack
    record in-use-message <<<"$CHECK_OUTPUT"
    check "nf_conntrack is still loaded" grep -q '^nf_conntrack ' /proc/modules

    local b
    b=$(builtin_module)
    printf '%s\n' "$b" | record builtin-name
    check_fails "modprobe -r $b (builtin) is refused" modprobe -r "$b"
    record builtin-message <<<"$CHECK_OUTPUT"
    check_match "modprobe says builtin" "builtin" "$CHECK_OUTPUT"
}

boot_nfkit() {
    local m
    for m in $UNLOAD_SETUP; do
        check "nfkit modules load $m" "$NFKIT" modules load "$m"
    done
    loaded_modules | record modules-loaded
    check "nfkit modules unload $UNLOAD_TARGET" "$NFKIT" modules unload "$UNLOAD_TARGET"
    loaded_modules | record modules-after-unload

    local holders h
    holders_of nf_conntrack | record nf_conntrack-holders
    holders=$(cat "$OUT/nf_conntrack-holders")
    check "nf_conntrack has holders" test -n "$holders"
    check_fails "nfkit modules unload nf_conntrack is refused while in use" \
        "$NFKIT" modules unload nf_conntrack
    record in-use-message <<<"$CHECK_OUTPUT"
    for h in $holders; do
        check_match "the refusal names holder $h" "$h" "$CHECK_OUTPUT"
    done
    check "nf_conntrack is still loaded" grep -q '^nf_conntrack ' /proc/modules

    local b
    b=$(builtin_module)
    printf '%s\n' "$b" | record builtin-name
    check_fails "nfkit modules unload $b (builtin) is refused" "$NFKIT" modules unload "$b"
    record builtin-message <<<"$CHECK_OUTPUT"
    check_match "nfkit says builtin" "[Bb]uilt-?in" "$CHECK_OUTPUT"
}

compare() {
    check_same_file "same modules after loading the setup" \
        "$RESULTS/oracle/modules-loaded" "$RESULTS/nfkit/modules-loaded"
    check_same_file "same remaining modules after unloading $UNLOAD_TARGET" \
        "$RESULTS/oracle/modules-after-unload" "$RESULTS/nfkit/modules-after-unload"
    check_same_file "same holders of nf_conntrack" \
        "$RESULTS/oracle/nf_conntrack-holders" "$RESULTS/nfkit/nf_conntrack-holders"
}
