# shellcheck shell=bash
# explain (issue 14 §1 §2): `nfkit explain` against modprobe's real outcomes
# on the guest kernel, with the guest's own oracles deciding every
# expectation:
#   - a loadable module (xt_multiport): would load; `modprobe -n -v` shows
#     an insmod; after `modprobe` it is already satisfied (loaded);
#   - `blacklist xt_TCPMSS`: the alias ipt_TCPMSS is refused (modprobe loads
#     nothing), the name xt_TCPMSS would load (modprobe loads it);
#   - `install xt_length /bin/false`: refused, disabled by policy (modprobe
#     fails, nothing loaded);
#   - a built-in module (first line of modules.builtin): already satisfied;
#   - a nonexistent module: unavailable (modprobe fails);
#   - kernel facts: sig_enforce, lockdown as the guest's files say; the
#     kernel config option from /boot/config-$(uname -r) when it exists;
#   - conntrack helper (§2): nf_conntrack_ftp loaded with nothing assigning
#     it → warning (explain, and verify with it desired); an nft ct helper used by a rule → assigned; where
#     net.netfilter.nf_conntrack_helper exists (5.10), 1 → assigned, 0 → not;
#   - boot "disabled": kernel.modules_disabled=1 (irreversible, own boot):
#     a loadable module is refused with that reason and modprobe fails; a
#     module loaded before stays satisfied.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="explain: reasons agree with modprobe (loadable, blacklist alias/name, install /bin/false, built in, missing, modules_disabled) and helper assignment"
SCENARIO_BOOTS="explain disabled"

# Outputs live outside $OUT: `record NAME FILE` must not be given a file
# inside $OUT (it would truncate it).
WORK=/run/nfkit-vm-explain

# jx NAME FILTER: a jq filter over NAME's JSON.
jx() { jq -r "$2" "$WORK/$1.json"; }

# ex NAME MODULE...: runs explain --json into $WORK/NAME.json (recorded as
# NAME.json), its exit status into $WORK/NAME.rc.
ex() {
    local name=$1
    shift
    mkdir -p "$WORK"
    "$NFKIT" --json explain "$@" >"$WORK/$name.json" 2>"$WORK/$name.err"
    echo $? >"$WORK/$name.rc"
    record "$name.json" "$WORK/$name.json"
}

rc() { cat "$WORK/$1.rc"; }

loaded() { grep -q "^$1 " /proc/modules; }

boot_explain() {
    local builtin_mod cfg opt want
    cat >/etc/modprobe.d/nfkit-vm-explain.conf <<'CONF'
# nfkit-vm explain
blacklist xt_TCPMSS
install xt_length /bin/false
CONF

    # A loadable module.
    check_fails "oracle: xt_multiport is not loaded yet" loaded xt_multiport
    check_match "oracle: modprobe -n -v would insert xt_multiport" 'insmod .*xt_multiport' \
        "$(modprobe -n -v xt_multiport 2>&1)"
    ex loadable xt_multiport
    check_eq "explain xt_multiport exits 0" 0 "$(rc loadable)"
    check_eq "explain xt_multiport: would load" would_load "$(jx loadable '.results[0].outcome')"
    check_eq "explain: not offline" false "$(jx loadable '.offline')"
    case $(cat /sys/module/module/parameters/sig_enforce 2>/dev/null) in
        Y) want=true ;;
        N) want=false ;;
        *) want=null ;;
    esac
    check_eq "explain: sig_enforce as the kernel says" "$want" "$(jx loadable '.kernel.sig_enforce')"
    if [[ -r /sys/kernel/security/lockdown ]]; then
        check_eq "explain: lockdown mode as the kernel says" \
            "$(sed -E 's/.*\[([a-z]+)\].*/\1/' /sys/kernel/security/lockdown)" \
            "$(jx loadable '.kernel.lockdown')"
    fi
    cfg=/boot/config-$(uname -r)
    if [[ -r $cfg ]]; then
        opt=$(grep -E '^CONFIG_NETFILTER_XT_MATCH_MULTIPORT=' "$cfg" | cut -d= -f2)
        check_eq "explain: kernel config option from $cfg" "$opt" \
            "$(jx loadable '.results[0].modules[0].reasons[] | select(.kind=="kernel_config") | .options[0].value')"
    else
        check_match "explain: says the boot config is absent" absent "$(jx loadable '.kernel_config.note')"
    fi
    check "oracle: modprobe xt_multiport" modprobe xt_multiport
    ex loaded xt_multiport
    check_eq "explain xt_multiport after modprobe: already satisfied" already_satisfied \
        "$(jx loaded '.results[0].outcome')"
    check_eq "explain: the reason is 'loaded'" loaded "$(jx loaded '.results[0].modules[0].reasons[0].kind')"

    # Blacklist: the alias is refused, the name loads.
    ex bl-alias ipt_TCPMSS
    check_eq "explain ipt_TCPMSS (alias of blacklisted xt_TCPMSS) exits 1" 1 "$(rc bl-alias)"
    check_eq "explain ipt_TCPMSS: refused" refused "$(jx bl-alias '.results[0].outcome')"
    check_eq "explain names the blacklist line" "/etc/modprobe.d/nfkit-vm-explain.conf:2" \
        "$(jx bl-alias '.results[0].modules[0].reasons[] | select(.kind=="blacklisted") | "\(.at.file):\(.at.line)"')"
    modprobe ipt_TCPMSS
    check_fails "oracle: modprobe ipt_TCPMSS loaded nothing" loaded xt_TCPMSS
    ex bl-name xt_TCPMSS
    check_eq "explain xt_TCPMSS (by name) exits 0" 0 "$(rc bl-name)"
    check_eq "explain xt_TCPMSS: would load" would_load "$(jx bl-name '.results[0].outcome')"
    check "oracle: modprobe xt_TCPMSS loads it by name" modprobe xt_TCPMSS
    check "oracle: xt_TCPMSS is loaded" loaded xt_TCPMSS

    # install /bin/false.
    ex install xt_length
    check_eq "explain xt_length (install /bin/false) exits 1" 1 "$(rc install)"
    check_eq "explain xt_length: disabled by policy" true \
        "$(jx install '.results[0].modules[0].reasons[] | select(.kind=="install_command") | .disabled_by_policy')"
    check_fails "oracle: modprobe xt_length fails" modprobe xt_length
    check_fails "oracle: xt_length is not loaded" loaded xt_length

    # Built in.
    builtin_mod=$(head -n 1 "/lib/modules/$(uname -r)/modules.builtin" | sed -E 's|.*/||; s/\.ko.*//; s/-/_/g')
    check_match "oracle: modprobe shows $builtin_mod as builtin" "^builtin $builtin_mod" \
        "$(modprobe --show-depends "$builtin_mod" 2>&1)"
    ex builtin "$builtin_mod"
    check_eq "explain $builtin_mod exits 0" 0 "$(rc builtin)"
    check_eq "explain $builtin_mod: already satisfied (built in)" "already_satisfied built_in" \
        "$(jx builtin '"\(.results[0].outcome) \(.results[0].modules[0].reasons[0].kind)"')"

    # Nonexistent.
    check_fails "oracle: modprobe nfkit_vm_none fails" modprobe nfkit_vm_none
    ex none nfkit_vm_none
    check_eq "explain nfkit_vm_none exits 1" 1 "$(rc none)"
    check_eq "explain nfkit_vm_none: unavailable, not in tree" "unavailable not_in_tree" \
        "$(jx none '"\(.results[0].outcome) \(.results[0].reasons[0].kind)"')"

    # §2: a loaded helper nothing assigns.
    check "oracle: modprobe nf_conntrack_ftp" modprobe nf_conntrack_ftp
    if [[ -e /proc/sys/net/netfilter/nf_conntrack_helper ]]; then
        sysctl -qw net.netfilter.nf_conntrack_helper=0
        ex helper-sysctl-off nf_conntrack_ftp
        check_eq "helper sysctl 0: not assigned" false "$(jx helper-sysctl-off '.results[0].helper.assigned')"
        sysctl -qw net.netfilter.nf_conntrack_helper=1
        ex helper-sysctl-on nf_conntrack_ftp
        check_eq "helper sysctl 1: assigned" true "$(jx helper-sysctl-on '.results[0].helper.assigned')"
        check_match "helper sysctl 1: named as the assigner" nf_conntrack_helper \
            "$(jx helper-sysctl-on '.results[0].helper.assigned_by[0]')"
        sysctl -qw net.netfilter.nf_conntrack_helper=0
    fi
    ex helper-none nf_conntrack_ftp
    check_eq "helper without rules: not assigned" false "$(jx helper-none '.results[0].helper.assigned')"
    check_match "helper without rules: warning" "does nothing" "$(jx helper-none '.results[0].helper.warning')"
    # verify says the same for a desired helper module.
    printf '[modules]\nload = ["nf_conntrack_ftp"]\n' >"$WORK/helper.toml"
    "$NFKIT" --json verify --config "$WORK/helper.toml" >"$WORK/verify-none.json"
    record verify-none.json "$WORK/verify-none.json"
    check_eq "verify without rules: the desired helper is not assigned" "nf_conntrack_ftp false" \
        "$(jx verify-none '.helpers[0] | "\(.module) \(.assigned)"')"
    check_match "verify without rules: warning" "does nothing" "$(jx verify-none '.helpers[0].warning')"
    check "nft: table, ct helper, rule" nft -f - <<'NFT'
table inet nfkitvm {
    ct helper ftp-std { type "ftp" protocol tcp; }
    chain pre { type filter hook prerouting priority filter; tcp dport 21 ct helper set "ftp-std"; }
}
NFT
    ex helper-nft nf_conntrack_ftp
    check_eq "helper with an nft ct helper rule: assigned" true "$(jx helper-nft '.results[0].helper.assigned')"
    check_eq "helper with an nft ct helper rule: no warning" null "$(jx helper-nft '.results[0].helper.warning')"
    "$NFKIT" --json verify --config "$WORK/helper.toml" >"$WORK/verify-nft.json"
    record verify-nft.json "$WORK/verify-nft.json"
    check_eq "verify with an nft ct helper rule: assigned, no warning" "true null" \
        "$(jx verify-nft '.helpers[0] | "\(.assigned) \(.warning)"')"
}

boot_disabled() {
    check "oracle: modprobe xt_state before disabling" modprobe xt_state
    ex before xt_multiport
    check_eq "before: xt_multiport would load" would_load "$(jx before '.results[0].outcome')"
    check "sysctl kernel.modules_disabled=1" sysctl -qw kernel.modules_disabled=1
    check_fails "oracle: modprobe xt_multiport now fails" modprobe xt_multiport
    ex after xt_multiport
    check_eq "explain xt_multiport exits 1" 1 "$(rc after)"
    check_eq "explain xt_multiport: refused by modules_disabled" "refused modules_disabled" \
        "$(jx after '"\(.results[0].outcome) \([.results[0].modules[0].reasons[] | select(.effect=="blocks") | .kind] | join(","))"')"
    ex kept xt_state
    check_eq "explain xt_state (loaded before): exits 0" 0 "$(rc kept)"
    check_eq "explain xt_state: already satisfied" already_satisfied "$(jx kept '.results[0].outcome')"
}
