# shellcheck shell=bash
# options (issue 4): module options at load time, nfkit vs modprobe, each in a
# fresh boot.
#   - nf_conntrack hashsize=N at load: /sys/module/nf_conntrack/parameters/
#     hashsize and net.netfilter.nf_conntrack_buckets both show N;
#   - an unknown option (ip_conntrack_disable_ve0=0): the kernel loads the
#     module and ignores it with a warning (the oracle records this); nfkit
#     must report it as not accepted;
#   - a bad value (hashsize=abc): EINVAL; nfkit must say so clearly and leave
#     nothing half-loaded (modprobe leaves the dependencies it loaded first:
#     the oracle records which).
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="module options: hashsize at load, unknown option, bad value (EINVAL)"
SCENARIO_BOOTS="oracle nfkit"

OPT_HASHSIZE=32768

loaded_modules() { cut -d' ' -f1 /proc/modules | sort; }

boot_oracle() {
    loaded_modules | record modules-before
    check "modprobe nf_conntrack hashsize=$OPT_HASHSIZE" modprobe nf_conntrack "hashsize=$OPT_HASHSIZE"
    check_eq "parameters/hashsize shows the option" "$OPT_HASHSIZE" "$(cat /sys/module/nf_conntrack/parameters/hashsize)"
    check_eq "nf_conntrack_buckets shows the option" "$OPT_HASHSIZE" "$(sysctl -n net.netfilter.nf_conntrack_buckets)"
    check "modprobe -r nf_conntrack" modprobe -r nf_conntrack

    # Unknown option: the kernel ignores it with a warning; modprobe succeeds.
    dmesg -C
    check "modprobe nf_conntrack ip_conntrack_disable_ve0=0 (kernel ignores it)" \
        modprobe nf_conntrack ip_conntrack_disable_ve0=0
    dmesg | grep -i 'unknown parameter' | record unknown-option-dmesg
    check "the kernel warned: unknown parameter 'ip_conntrack_disable_ve0' ignored" \
        grep -q "ip_conntrack_disable_ve0" "$OUT/unknown-option-dmesg"
    check "modprobe -r nf_conntrack" modprobe -r nf_conntrack

    # Bad value: EINVAL from init_module.
    check_fails "modprobe nf_conntrack hashsize=abc fails" modprobe nf_conntrack hashsize=abc
    record bad-value-message <<<"$CHECK_OUTPUT"
    check_match "modprobe says Invalid argument" "Invalid argument" "$CHECK_OUTPUT"
    check_fails "nf_conntrack is not loaded after EINVAL" grep -q '^nf_conntrack ' /proc/modules
    # What modprobe leaves behind (its dependencies stay loaded), for reference.
    loaded_modules | record modules-after-bad-value
}

boot_nfkit() {
    loaded_modules | record modules-before
    check "nfkit modules load nf_conntrack hashsize=$OPT_HASHSIZE" \
        "$NFKIT" modules load nf_conntrack "hashsize=$OPT_HASHSIZE"
    check_eq "parameters/hashsize shows the option" "$OPT_HASHSIZE" "$(cat /sys/module/nf_conntrack/parameters/hashsize)"
    check_eq "nf_conntrack_buckets shows the option" "$OPT_HASHSIZE" "$(sysctl -n net.netfilter.nf_conntrack_buckets)"
    check "nfkit modules unload nf_conntrack" "$NFKIT" modules unload nf_conntrack

    check_fails "nfkit reports ip_conntrack_disable_ve0=0 as not accepted" \
        "$NFKIT" modules load nf_conntrack ip_conntrack_disable_ve0=0
    record unknown-option-message <<<"$CHECK_OUTPUT"
    check_match "the message names the option" "ip_conntrack_disable_ve0" "$CHECK_OUTPUT"
    # Whatever nfkit decided, leave a clean state for the next step.
    modprobe -r nf_conntrack 2>/dev/null || true

    check_fails "nfkit modules load nf_conntrack hashsize=abc fails" \
        "$NFKIT" modules load nf_conntrack hashsize=abc
    record bad-value-message <<<"$CHECK_OUTPUT"
    check_match "nfkit's message names EINVAL / invalid argument and the parameter" \
        "(EINVAL|[Ii]nvalid argument).*hashsize|hashsize.*(EINVAL|[Ii]nvalid argument)" "$CHECK_OUTPUT"
    loaded_modules | record modules-after-bad-value
    check_same_file "nothing left half-loaded: /proc/modules is back to the baseline" \
        "$OUT/modules-before" "$OUT/modules-after-bad-value"
}

compare() {
    check_same_file "same baseline /proc/modules" \
        "$RESULTS/oracle/modules-before" "$RESULTS/nfkit/modules-before"
}
