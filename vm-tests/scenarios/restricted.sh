# shellcheck shell=bash
# restricted (issue 14 §1 §6): what nfkit says and does where a module load
# cannot happen, against modprobe's real outcome on the guest kernel (the
# oracle decides every expectation):
#   boot "jail":
#     - no CAP_SYS_MODULE (`setpriv --bounding-set -sys_module`): modprobe
#       fails; explain says "must be done on the host" (no_cap_sys_module),
#       `modules load` fails with kind must_be_done_on_host and a hint,
#       nothing is inserted; a loaded and a built-in module are still
#       satisfied (exit 0); status says module loads are the host's;
#     - a new user namespace (`unshare -U -r`, all capabilities there):
#       the same, reason non_initial_user_namespace;
#     - `boot` in a new network namespace without CAP_SYS_MODULE: the module
#       and the global conntrack max are both must_be_done_on_host, the max
#       is unchanged;
#     - no module tree (tmpfs over /lib/modules, private mount namespace):
#       loaded / built-in modules are satisfied, another one is unavailable
#       (not_in_tree, module_dir_exists false), modprobe fails too;
#     - last (irreversible): module.sig_enforce=1 through sysfs: an unsigned
#       copy of a module (its signature cut off) is refused by modprobe and
#       by explain (signature_enforced), a signed one still loads.
#   boot "cmdline" (kernel command line module_blacklist=xt_length
#   modprobe.blacklist=xt_TCPMSS, vm-tests/run's SCENARIO_CMDLINE_cmdline):
#     - module_blacklist=: modprobe fails, explain refused (cmdline_blacklist),
#       `modules load` fails not_permitted naming it;
#     - modprobe.blacklist=: the alias ipt_TCPMSS is refused and modprobe
#       loads nothing, the name xt_TCPMSS loads;
#     - last (irreversible): lockdown=integrity through securityfs: the
#       unsigned copy is refused by modprobe and by explain (lockdown), a
#       signed module still loads.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="restricted: no CAP_SYS_MODULE, user/network namespaces, no module tree, sig_enforce, lockdown, module_blacklist=/modprobe.blacklist= on the command line: nfkit's outcomes agree with modprobe"
SCENARIO_BOOTS="jail cmdline"
SCENARIO_CMDLINE_cmdline="module_blacklist=xt_length modprobe.blacklist=xt_TCPMSS"

# Outputs live outside $OUT: `record NAME FILE` must not be given a file
# inside $OUT (it would truncate it).
WORK=/run/nfkit-vm-restricted
NOCAP=(setpriv --bounding-set -sys_module --inh-caps -sys_module --)
USERNS=(unshare -U -r --)
# A private mount namespace where /lib/modules is an empty tmpfs.
# shellcheck disable=SC2016 # "$@" is for that sh
NOTREE=(unshare -m -- sh -c 'mount -t tmpfs nfkit-notree /lib/modules && exec "$@"' sh)

# jx NAME FILTER: a jq filter over NAME's JSON.
jx() { jq -r "$2" "$WORK/$1.json"; }

# nf NAME CMD...: runs CMD (nfkit with --json, possibly behind a wrapper);
# stdout into $WORK/NAME.json (recorded), stderr NAME.err, status NAME.rc.
nf() {
    local name=$1
    shift
    mkdir -p "$WORK"
    "$@" >"$WORK/$name.json" 2>"$WORK/$name.err"
    echo $? >"$WORK/$name.rc"
    record "$name.json" "$WORK/$name.json"
}

rc() { cat "$WORK/$1.rc"; }

loaded() { grep -q "^$1 " /proc/modules; }

# blocks NAME: "OUTCOME KIND,KIND" of the first result's first module
# (the reasons whose effect is blocks or host).
blocks() {
    jx "$1" '"\(.results[0].outcome) \([.results[0].modules[0].reasons[] | select(.effect=="blocks" or .effect=="host") | .kind] | sort | join(","))"'
}

# A built-in module that has a /sys/module directory (without a module tree
# only /sys/module tells that it is built in).
builtin_with_sysfs() {
    local m
    while read -r m; do
        m=${m##*/}
        m=${m%%.ko*}
        m=${m//-/_}
        if [[ -d /sys/module/$m && ! -e /sys/module/$m/initstate ]]; then
            echo "$m"
            return 0
        fi
    done <"/lib/modules/$(uname -r)/modules.builtin"
    return 1
}

# make_unsigned MODULE: replaces MODULE's file by a copy without its
# appended signature (decompressed when it was .ko.xz; depmod then).
make_unsigned() {
    local m=$1 path new
    path=$(modinfo -n "$m")
    new=${path%.ko*}.ko
    mkdir -p "$WORK"
    python3 - "$path" "$WORK/$m.ko" <<'PY' || return 1
import lzma, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
if src.endswith(".ko.xz"):
    data = lzma.decompress(data)
elif not src.endswith(".ko"):
    sys.exit("cannot decompress " + src)
magic = b"~Module signature appended~\n"
if not data.endswith(magic):
    sys.exit(src + " carries no signature")
# struct module_signature (12 bytes) ends with sig_len, big endian.
sig_len = int.from_bytes(data[-len(magic) - 4:-len(magic)], "big")
data = data[: -(len(magic) + 12 + sig_len)]
assert not data.endswith(magic)
open(dst, "wb").write(data)
PY
    rm -f "$path"
    cp "$WORK/$m.ko" "$new"
    if [[ $new != "$path" ]]; then
        depmod -a
    fi
}

# Without CAP_SYS_MODULE, in a user namespace: explain, load, nothing inserted.
host_only_checks() {
    local tag=$1 reason=$2 m=$3
    shift 3
    local wrap=("$@") xt_before
    xt_before=$(loaded x_tables && echo loaded || echo absent)
    check_fails "$tag oracle: modprobe $m fails" "${wrap[@]}" modprobe "$m"
    check_fails "$tag oracle: $m is not loaded" loaded "$m"
    nf "$tag-explain" "${wrap[@]}" "$NFKIT" --json explain "$m"
    check_eq "$tag explain $m exits 1" 1 "$(rc "$tag-explain")"
    check_eq "$tag explain $m: must be done on the host ($reason)" \
        "must_be_done_on_host $reason" "$(blocks "$tag-explain")"
    nf "$tag-load" "${wrap[@]}" "$NFKIT" --json modules load "$m"
    check_eq "$tag modules load $m exits 1" 1 "$(rc "$tag-load")"
    check_eq "$tag modules load $m: error kind must_be_done_on_host" must_be_done_on_host \
        "$(jx "$tag-load" '.results[0].modules[0].error.kind')"
    check_match "$tag modules load $m: the hint says where" "on the host" \
        "$(jx "$tag-load" '.results[0].modules[0].error.hint')"
    check_fails "$tag $m is still not loaded" loaded "$m"
    check_eq "$tag nothing inserted (x_tables as before)" "$xt_before" \
        "$(loaded x_tables && echo loaded || echo absent)"
    check_status "$tag modules load $m (text) exits 1" 1 "${wrap[@]}" "$NFKIT" modules load "$m"
    check_match "$tag text: must be done on the host" "error: load $m: must be done on the host" "$CHECK_OUTPUT"
    check_match "$tag text: with the hint" "hint: load $m on the host" "$CHECK_OUTPUT"
    nf "$tag-ok" "${wrap[@]}" "$NFKIT" --json modules load nf_conntrack "$BUILTIN"
    check_eq "$tag modules load of a loaded and a built-in module exits 0" 0 "$(rc "$tag-ok")"
    check_eq "$tag loaded / built in: already satisfied" "already_loaded builtin" \
        "$(jx "$tag-ok" '[.results[].modules[0].outcome] | join(" ")')"
    nf "$tag-status" "${wrap[@]}" "$NFKIT" --json status
    check_eq "$tag status: module loads must be done on the host" must_be_done_on_host \
        "$(jx "$tag-status" '.containment.capabilities[] | select(.operation=="module loads") | .outcome')"
}

boot_jail() {
    local m=xt_multiport capeff uid_map max
    BUILTIN=$(builtin_with_sysfs)
    check "oracle: a built-in module with /sys/module: $BUILTIN" test -n "$BUILTIN"
    check "oracle: modprobe nf_conntrack" modprobe nf_conntrack

    # The jails, as the kernel sees them.
    capeff=$("${NOCAP[@]}" sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
    check_eq "oracle: setpriv leaves no CAP_SYS_MODULE (CapEff $capeff)" 0 "$(((16#$capeff >> 16) & 1))"
    uid_map=$("${USERNS[@]}" cat /proc/self/uid_map)
    check_fails "oracle: unshare -U is not the initial user namespace ($uid_map)" \
        grep -q 4294967295 <<<"$uid_map"

    host_only_checks nocap no_cap_sys_module "$m" "${NOCAP[@]}"
    host_only_checks userns non_initial_user_namespace "$m" "${USERNS[@]}"

    # boot in a container-like jail: new network namespace, no CAP_SYS_MODULE.
    max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
    mkdir -p "$WORK"
    printf '[modules]\nload = ["%s", "nf_conntrack"]\n[conntrack]\nmax = %d\n' \
        "$m" "$((max + 4096))" >"$WORK/jail.toml"
    nf jail-boot unshare -n -- "${NOCAP[@]}" "$NFKIT" --json --config "$WORK/jail.toml" boot
    check_eq "jail boot exits 1" 1 "$(rc jail-boot)"
    check_eq "jail boot: the module and the global max are the host's" \
        "module $m=must_be_done_on_host net.netfilter.nf_conntrack_max=must_be_done_on_host" \
        "$(jx jail-boot '[.failures[] | "\(.item)=\(.outcome)"] | sort | join(" ")')"
    check_match "jail boot: stderr says so" "must be done on the host" "$(cat "$WORK/jail-boot.err")"
    check_eq "jail boot: nf_conntrack_max unchanged" "$max" "$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
    check_fails "jail boot: $m not loaded" loaded "$m"

    # No module tree.
    check_fails "notree oracle: modprobe $m without /lib/modules fails" "${NOTREE[@]}" modprobe "$m"
    nf notree-ok "${NOTREE[@]}" "$NFKIT" --json modules load nf_conntrack "$BUILTIN"
    check_eq "notree: modules load of a loaded and a built-in module exits 0" 0 "$(rc notree-ok)"
    check_eq "notree: already satisfied" "already_loaded builtin" \
        "$(jx notree-ok '[.results[].modules[0].outcome] | join(" ")')"
    nf notree-explain "${NOTREE[@]}" "$NFKIT" --json explain nf_conntrack "$m"
    check_eq "notree: explain exits 1 ($m)" 1 "$(rc notree-explain)"
    check_eq "notree: nf_conntrack satisfied, $m unavailable (no tree)" \
        "already_satisfied unavailable not_in_tree false" \
        "$(jx notree-explain '"\(.results[0].outcome) \(.results[1].outcome) \(.results[1].reasons[0].kind) \(.module_dir_exists)"')"
    nf notree-load "${NOTREE[@]}" "$NFKIT" --json modules load "$m"
    check_eq "notree: modules load $m exits 1, not found" "1 not_found" \
        "$(rc notree-load) $(jx notree-load '.results[0].error.kind')"
    check_fails "notree: $m not loaded" loaded "$m"

    # Last: module.sig_enforce=1 (cannot be undone before reboot).
    check "make an unsigned copy of $m" make_unsigned "$m"
    check_eq "oracle: modinfo shows no signer for $m" "" "$(modinfo -F signer "$m")"
    check_match "oracle: xt_comment is signed" . "$(modinfo -F signer xt_comment)"
    nf unsigned "$NFKIT" --json explain "$m"
    check_eq "explain $m (unsigned, nothing enforced): would load, unsigned" "would_load unsigned" \
        "$(jx unsigned '"\(.results[0].outcome) \(.results[0].modules[0].signature)"')"
    check "sig_enforce=1 through sysfs" sh -c 'echo 1 >/sys/module/module/parameters/sig_enforce'
    check_eq "oracle: sig_enforce is Y" Y "$(cat /sys/module/module/parameters/sig_enforce)"
    nf enforced "$NFKIT" --json explain "$m" xt_comment
    check_eq "explain under sig_enforce exits 1" 1 "$(rc enforced)"
    check_eq "explain $m (unsigned) under sig_enforce: refused" "refused signature_enforced" "$(blocks enforced)"
    check_eq "explain xt_comment (signed) under sig_enforce: would load" would_load \
        "$(jx enforced '.results[1].outcome')"
    nf enforced-load "$NFKIT" --json modules load "$m"
    check_eq "modules load $m under sig_enforce: exit 1, kind signature" "1 signature" \
        "$(rc enforced-load) $(jx enforced-load '.results[0].modules[0].error.kind')"
    check_fails "oracle: modprobe $m (unsigned) fails" modprobe "$m"
    check_fails "oracle: $m not loaded" loaded "$m"
    check "oracle: modprobe xt_comment (signed) works" modprobe xt_comment
}

boot_cmdline() {
    local m=xt_multiport
    check_match "oracle: module_blacklist=xt_length on the command line" "module_blacklist=xt_length" "$(cat /proc/cmdline)"

    # module_blacklist= (the kernel refuses the module).
    nf kbl "$NFKIT" --json explain xt_length
    check_eq "explain xt_length exits 1" 1 "$(rc kbl)"
    check_eq "explain xt_length: refused by the command line" "refused cmdline_blacklist" "$(blocks kbl)"
    check_eq "explain: names module_blacklist" module_blacklist \
        "$(jx kbl '.results[0].modules[0].reasons[] | select(.kind=="cmdline_blacklist") | .param')"
    check_eq "explain: kernel facts list it" xt_length "$(jx kbl '.kernel.cmdline_module_blacklist | join(",")')"
    check_fails "oracle: modprobe xt_length fails" modprobe xt_length
    check_fails "oracle: xt_length not loaded" loaded xt_length
    nf kbl-load "$NFKIT" --json modules load xt_length
    check_eq "modules load xt_length: exit 1, not_permitted" "1 not_permitted" \
        "$(rc kbl-load) $(jx kbl-load '.results[0].modules[0].error.kind')"
    check_match "modules load xt_length: names module_blacklist=" "module_blacklist" \
        "$(jx kbl-load '.results[0].modules[0].error.message')"

    # modprobe.blacklist= (libkmod: alias loads only).
    nf mbl-alias "$NFKIT" --json explain ipt_TCPMSS
    check_eq "explain ipt_TCPMSS (alias) exits 1" 1 "$(rc mbl-alias)"
    check_eq "explain ipt_TCPMSS: refused by modprobe.blacklist=" "refused cmdline_blacklist modprobe_blacklist" \
        "$(blocks mbl-alias) $(jx mbl-alias '.results[0].modules[0].reasons[] | select(.kind=="cmdline_blacklist") | .param')"
    modprobe ipt_TCPMSS
    check_fails "oracle: modprobe ipt_TCPMSS loaded nothing" loaded xt_TCPMSS
    nf mbl-alias-load "$NFKIT" --json modules load ipt_TCPMSS
    check_eq "modules load ipt_TCPMSS: exit 1, blacklisted" "1 blacklisted" \
        "$(rc mbl-alias-load) $(jx mbl-alias-load '.results[0].modules[0].error.kind')"
    check_fails "xt_TCPMSS still not loaded" loaded xt_TCPMSS
    nf mbl-name "$NFKIT" --json explain xt_TCPMSS
    check_eq "explain xt_TCPMSS (by name): would load" "0 would_load" \
        "$(rc mbl-name) $(jx mbl-name '.results[0].outcome')"
    check "oracle: modprobe xt_TCPMSS loads it by name" modprobe xt_TCPMSS
    check "oracle: xt_TCPMSS is loaded" loaded xt_TCPMSS

    # Last: lockdown=integrity (cannot be undone before reboot).
    check "make an unsigned copy of $m" make_unsigned "$m"
    if ! mountpoint -q /sys/kernel/security; then
        check "mount securityfs" mount -t securityfs securityfs /sys/kernel/security
    fi
    check_match "oracle: lockdown is none" '\[none\]' "$(cat /sys/kernel/security/lockdown)"
    nf unlocked "$NFKIT" --json explain "$m"
    check_eq "explain $m (unsigned, no lockdown): would load" "would_load unsigned none" \
        "$(jx unlocked '"\(.results[0].outcome) \(.results[0].modules[0].signature) \(.kernel.lockdown)"')"
    check "lockdown integrity through securityfs" sh -c 'echo integrity >/sys/kernel/security/lockdown'
    check_match "oracle: lockdown is integrity" '\[integrity\]' "$(cat /sys/kernel/security/lockdown)"
    nf locked "$NFKIT" --json explain "$m" xt_comment
    check_eq "explain under lockdown exits 1" 1 "$(rc locked)"
    check_eq "explain $m (unsigned) under lockdown: refused" "refused lockdown" "$(blocks locked)"
    check_eq "explain xt_comment (signed) under lockdown: would load" would_load \
        "$(jx locked '.results[1].outcome')"
    nf locked-load "$NFKIT" --json modules load "$m"
    check_eq "modules load $m under lockdown: exit 1, not_permitted" "1 not_permitted" \
        "$(rc locked-load) $(jx locked-load '.results[0].modules[0].error.kind')"
    check_match "modules load $m: names the lockdown" "lockdown" \
        "$(jx locked-load '.results[0].modules[0].error.message')"
    check_fails "oracle: modprobe $m (unsigned) fails under lockdown" modprobe "$m"
    check_fails "oracle: $m not loaded" loaded "$m"
    check "oracle: modprobe xt_comment (signed) works under lockdown" modprobe xt_comment
}
