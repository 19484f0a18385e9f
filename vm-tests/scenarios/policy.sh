# shellcheck shell=bash
# policy (issue 4): modprobe.d policy, nfkit vs modprobe, each in a fresh boot
# with the same /etc/modprobe.d/nfkit-vm-policy.conf:
#   - `install xt_length /bin/false`: modprobe runs it and fails; nfkit runs
#     nothing, does not load the module and reports it as disabled;
#   - `install xt_hl /bin/touch /run/nfkit-marker`: modprobe runs it (the
#     marker appears: proof the config is live); with nfkit the marker must
#     never exist;
#   - `blacklist xt_TCPMSS`, then load its alias ipt_TCPMSS: the blacklist
#     applies to alias resolution (same verdict and /proc/modules as modprobe);
#   - softdeps: the first netfilter `softdep` of the kernel's modules.softdep
#     (not hard-coded), plus one from modprobe.d (`softdep xt_dscp pre:
#     xt_multiport`): loading the module loads its softdeps, as modprobe does;
#   - `install x_tables ...` added once x_tables is loaded: a load that
#     needs it (xt_limit) succeeds and the command does not run.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="modprobe.d policy: install commands never run, blacklist on alias, softdeps"
SCENARIO_BOOTS="oracle nfkit"

MARKER=/run/nfkit-marker

loaded_modules() { cut -d' ' -f1 /proc/modules | sort; }

write_policy() {
    cat >/etc/modprobe.d/nfkit-vm-policy.conf <<EOF
install xt_length /bin/false
install xt_hl /bin/touch $MARKER
blacklist xt_TCPMSS
softdep xt_dscp pre: xt_multiport
EOF
    record policy.conf /etc/modprobe.d/nfkit-vm-policy.conf
}

# The kernel's own first netfilter softdep line: "softdep MOD pre: A B post: C".
kernel_softdep() {
    grep -E '^softdep (nf|nft|xt|ip|ipt|ip6t|ebt|arpt)_' \
        "/lib/modules/$(uname -r)/modules.softdep" | head -n 1
}

# softdep_modules LINE: the modules named after pre:/post: of a softdep line.
softdep_modules() {
    sed -E 's/^softdep [^ ]+ //; s/(pre|post)://g' <<<"$1" | tr ' ' '\n' | grep -v '^$'
}

policy_run() {   # policy_run LOADER...
    local line mod m
    write_policy
    loaded_modules | record modules-before

    "$@" xt_length >"$OUT/install-false.out" 2>&1
    echo "exit $?" >>"$OUT/install-false.out"
    record install-false "$OUT/install-false.out"

    "$@" xt_hl >"$OUT/install-marker.out" 2>&1
    echo "exit $?" >>"$OUT/install-marker.out"
    record install-marker "$OUT/install-marker.out"
    if [[ -e $MARKER ]]; then echo present; else echo absent; fi | record marker

    "$@" ipt_TCPMSS >"$OUT/blacklist-alias.out" 2>&1
    echo "exit $?" >>"$OUT/blacklist-alias.out"
    record blacklist-alias "$OUT/blacklist-alias.out"

    check "a load with a modprobe.d softdep succeeds" "$@" xt_dscp
    check "its softdep xt_multiport is loaded" grep -q '^xt_multiport ' /proc/modules

    # An install command of a module already in the kernel does not stop a
    # load that needs it: libkmod skips loaded modules before it looks at
    # their commands (nfkit: by its /proc/modules snapshot of the run).
    check "x_tables is loaded (a dependency of xt_dscp)" grep -q '^x_tables ' /proc/modules
    echo "install x_tables /bin/touch $MARKER.x_tables" >>/etc/modprobe.d/nfkit-vm-policy.conf
    check "a load whose loaded dependency has an install command succeeds" "$@" xt_limit
    check "xt_limit is loaded" grep -q '^xt_limit ' /proc/modules
    check_fails "the loaded dependency's install command did not run" test -e "$MARKER.x_tables"
    sed -i '/^install x_tables /d' /etc/modprobe.d/nfkit-vm-policy.conf

    line=$(kernel_softdep)
    printf '%s\n' "$line" | record kernel-softdep
    if [[ -n $line ]]; then
        mod=$(awk '{print $2}' <<<"$line")
        check "load $mod (has a kernel softdep)" "$@" "$mod"
        for m in $(softdep_modules "$line"); do
            check "softdep $m of $mod is loaded" grep -q "^$m " /proc/modules
        done
    else
        note "this kernel has no netfilter softdep in modules.softdep"
    fi
    loaded_modules | record modules-after
}

boot_oracle() {
    policy_run modprobe
    check "oracle: the /bin/false install command made modprobe fail" \
        grep -q '^exit [1-9]' "$OUT/install-false"
    check "oracle: the marker install command ran (the config is live)" test -e "$MARKER"
    check_fails "oracle: xt_length was not loaded" grep -q '^xt_length ' /proc/modules
}

boot_nfkit() {
    policy_run "$NFKIT" modules load
    check_fails "xt_length (install /bin/false) was not loaded" grep -q '^xt_length ' /proc/modules
    check_match "nfkit reports xt_length as disabled" "[Dd]isabled" "$(cat "$OUT/install-false")"
    check_fails "the marker install command never ran" test -e "$MARKER"
    check_fails "xt_hl (install command) was not loaded" grep -q '^xt_hl ' /proc/modules
    check_match "nfkit says the alias's module is blacklisted" "blacklist" "$(cat "$OUT/blacklist-alias")"
}

compare() {
    check_same_file "same baseline /proc/modules" \
        "$RESULTS/oracle/modules-before" "$RESULTS/nfkit/modules-before"
    # The blacklisted alias: modprobe exits 0 silently without loading
    # anything; nfkit may report it (see boot_nfkit). Neither loads it.
    check_fails "oracle: ipt_TCPMSS (blacklisted xt_TCPMSS) did not load xt_TCPMSS" \
        grep -qx xt_TCPMSS "$RESULTS/oracle/modules-after"
    check_fails "nfkit: ipt_TCPMSS (blacklisted xt_TCPMSS) did not load xt_TCPMSS" \
        grep -qx xt_TCPMSS "$RESULTS/nfkit/modules-after"
    # Module sets after everything, except what the install commands changed:
    # xt_length / xt_hl are never loaded by either side (modprobe ran the
    # commands instead of loading).
    check_same_file "same /proc/modules after the policy run" \
        "$RESULTS/oracle/modules-after" "$RESULTS/nfkit/modules-after"
}
