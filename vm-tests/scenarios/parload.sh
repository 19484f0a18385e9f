# shellcheck shell=bash
# parload (issue 16): the parallel module loader on a real kernel. From the
# boot's baseline each time, the set of modules in /proc/modules after
#   - `nfkit modules load --jobs 4 NAMES...` (parallel, one process),
#   - `nfkit modules load --jobs 1 NAMES...` (one after another), and
#   - a `modprobe NAME` loop (the oracle)
# must be the same, for
#   - seed:   the seed guide's names (seed-modules.list);
#   - soft:   names with softdeps: modprobe.d `softdep` lines (pre and post)
#             and the kernel's first netfilter modules.softdep line;
#   - fail:   `xt_length nf_conntrack hashsize=abc xt_hl`: nf_conntrack
#             refuses the value (EINVAL). Nothing of that name may be left
#             behind (its dependencies inserted for it are rolled back), the
#             others load: the oracle is the modprobe loop WITHOUT the failing
#             name (modprobe itself leaves the dependencies loaded);
#   - shared: `nf_conntrack hashsize=abc xt_state`: the failing name's module
#             is also a dependency of another name, which must still load it
#             (without the bad option), as a modprobe loop does.
# Boots `repeat1`..`repeat4` load the seed set in parallel 5 times each (20
# in all; back to the baseline in between) and compare each result with
# that boot's `--jobs 1` load.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="parallel module loader: same /proc/modules as --jobs 1 and a modprobe loop (seed, softdeps, a failing name); 20 parallel runs"
SCENARIO_BOOTS="sets repeat1 repeat2 repeat3 repeat4"

PARLOAD_JOBS=4

loaded_modules() { cut -d' ' -f1 /proc/modules | sort; }

seed_names() { grep -v -e '^#' -e '^$' "$PAYLOAD/scenarios/seed-modules.list"; }

# The kernel's own first netfilter softdep line: "softdep MOD pre: A post: B".
kernel_softdep_module() {
    grep -E '^softdep (nf|nft|xt|ip|ipt|ip6t|ebt|arpt)_' \
        "/lib/modules/$(uname -r)/modules.softdep" | head -n 1 | awk '{print $2}'
}

# back_to_baseline: removes every module that is not in the baseline, newest
# first (/proc/modules lists the newest first), a few passes for the ones in
# use by others; fails when the baseline is not reached.
back_to_baseline() {
    local pass extra
    for pass in 1 2 3 4 5 6 7 8; do
        extra=$(cut -d' ' -f1 /proc/modules | grep -vxF -f "$OUT/baseline" || true)
        [[ -z $extra ]] && return 0
        # shellcheck disable=SC2086 # one word per module
        rmmod $extra 2>/dev/null || true
    done
    extra=$(cut -d' ' -f1 /proc/modules | grep -vxF -f "$OUT/baseline" || true)
    check_eq "back to the baseline" "" "${extra//$'\n'/ }"
}

# modprobe_loop WORDS...: `modprobe NAME OPTION=VALUE...` per name (a word
# with `=` belongs to the name before it). Returns non-zero if one failed.
modprobe_loop() {
    local w rc=0 group=()
    for w in "$@" ''; do
        if [[ -n $w && $w == *=* ]]; then
            group+=("$w")
            continue
        fi
        if ((${#group[@]})); then
            modprobe "${group[@]}" || rc=1
        fi
        group=("$w")
    done
    return "$rc"
}

# load_set SET MODE WORDS...: from the baseline, load WORDS with MODE
# (parallel, serial, modprobe, others = modprobe); writes $OUT/SET-MODE (the
# module set after), SET-MODE.status (the exit status) and, for nfkit,
# SET-MODE.json (kept in the results, not printed: the console is slow).
load_set() {
    local set=$1 mode=$2 rc=0 start
    shift 2
    back_to_baseline || return 1
    start=$(date +%s%N)
    case $mode in
    parallel) "$NFKIT" --json modules load --jobs "$PARLOAD_JOBS" "$@" >"$OUT/$set-$mode.json" 2>"$OUT/$set-$mode.err" || rc=$? ;;
    serial) "$NFKIT" --json modules load --jobs 1 "$@" >"$OUT/$set-$mode.json" 2>"$OUT/$set-$mode.err" || rc=$? ;;
    *) modprobe_loop "$@" >/dev/null 2>"$OUT/$set-$mode.err" || rc=$? ;;
    esac
    note "$set/$mode: exit $rc in $((($(date +%s%N) - start) / 1000000)) ms"
    loaded_modules >"$OUT/$set-$mode"
    echo "$rc" >"$OUT/$set-$mode.status"
}

# same_sets SET ORACLE_MODE: parallel, serial and the oracle left one set.
same_sets() {
    check_same_file "$1: --jobs $PARLOAD_JOBS and --jobs 1 leave the same /proc/modules" \
        "$OUT/$1-parallel" "$OUT/$1-serial"
    check_same_file "$1: --jobs $PARLOAD_JOBS and the modprobe loop leave the same /proc/modules" \
        "$OUT/$1-parallel" "$OUT/$1-$2"
    check_eq "$1: --jobs $PARLOAD_JOBS and --jobs 1 exit alike" \
        "$(cat "$OUT/$1-serial.status")" "$(cat "$OUT/$1-parallel.status")"
}

# name_ok SET MODE NAME: the report's `ok` for NAME.
name_ok() {
    jq -r --arg n "$3" '.results[] | select(.name == $n) | .ok' "$OUT/$1-$2.json"
}

boot_sets() {
    local mode ksoft names h_nfkit h_modprobe
    loaded_modules | record baseline
    check "the baseline has no netfilter module of the sets" \
        bash -c '! grep -qE "^(nf_conntrack|xt_length|xt_hl|xt_dscp|x_tables) " /proc/modules'

    # seed
    mapfile -t names < <(seed_names)
    for mode in parallel serial modprobe; do
        load_set seed "$mode" "${names[@]}"
    done
    same_sets seed modprobe
    check_eq "seed: the parallel load succeeds as the modprobe loop does" \
        "$(cat "$OUT/seed-modprobe.status")" "$(cat "$OUT/seed-parallel.status")"
    check_eq "seed: the parallel load used $PARLOAD_JOBS threads" \
        "$PARLOAD_JOBS" "$(jq -r .jobs "$OUT/seed-parallel.json")"
    check_eq "seed: one result per name, in the order given" \
        "$(printf '%s\n' "${names[@]}")" "$(jq -r '.results[].name' "$OUT/seed-parallel.json")"

    # soft
    cat >/etc/modprobe.d/nfkit-vm-parload.conf <<'EOF'
softdep xt_dscp pre: xt_multiport post: xt_hl
softdep xt_length post: xt_TCPMSS
EOF
    record parload.conf /etc/modprobe.d/nfkit-vm-parload.conf
    ksoft=$(kernel_softdep_module)
    note "the kernel's first netfilter softdep: ${ksoft:-none}"
    for mode in parallel serial modprobe; do
        load_set soft "$mode" xt_dscp xt_length nf_nat_ftp ${ksoft:+"$ksoft"}
    done
    same_sets soft modprobe
    check_eq "soft: the loads succeed" "0 0" \
        "$(cat "$OUT/soft-parallel.status") $(cat "$OUT/soft-modprobe.status")"
    for mode in xt_multiport xt_hl xt_TCPMSS; do
        check "soft: softdep $mode is loaded by the parallel load" grep -qx "$mode" "$OUT/soft-parallel"
    done
    rm -f /etc/modprobe.d/nfkit-vm-parload.conf

    # fail: the oracle loads the other names only.
    for mode in parallel serial; do
        load_set fail "$mode" xt_length nf_conntrack hashsize=abc xt_hl
    done
    load_set fail others xt_length xt_hl
    same_sets fail others
    check_eq "fail: the parallel load exits 1" 1 "$(cat "$OUT/fail-parallel.status")"
    check_eq "fail: per name ok (xt_length, nf_conntrack, xt_hl)" "true false true" \
        "$(name_ok fail parallel xt_length) $(name_ok fail parallel nf_conntrack) $(name_ok fail parallel xt_hl)"
    check_match "fail: the error names the bad value" "hashsize|EINVAL|[Ii]nvalid" \
        "$(jq -c '.results[1].modules[0].error' "$OUT/fail-parallel.json")"
    check_fails "fail: nothing of nf_conntrack left (nf_conntrack, nf_defrag_ipv4/6)" \
        grep -qxE 'nf_conntrack|nf_defrag_ipv4|nf_defrag_ipv6' "$OUT/fail-parallel"

    # shared: the failing name's module is another name's dependency.
    for mode in parallel serial; do
        load_set shared "$mode" nf_conntrack hashsize=abc xt_state
    done
    load_set shared others xt_state
    same_sets shared others
    check_eq "shared: per name ok (nf_conntrack, xt_state)" "false true" \
        "$(name_ok shared parallel nf_conntrack) $(name_ok shared parallel xt_state)"
    check "shared: nf_conntrack is loaded (for xt_state)" grep -qx nf_conntrack "$OUT/shared-parallel"
    back_to_baseline
    "$NFKIT" modules load --jobs "$PARLOAD_JOBS" nf_conntrack hashsize=abc xt_state >/dev/null 2>&1
    h_nfkit=$(cat /sys/module/nf_conntrack/parameters/hashsize 2>&1)
    back_to_baseline
    modprobe xt_state
    h_modprobe=$(cat /sys/module/nf_conntrack/parameters/hashsize 2>&1)
    check_eq "shared: nf_conntrack loaded without the bad option (hashsize as modprobe xt_state sets it)" \
        "$h_modprobe" "$h_nfkit"

    # alias: two names of one module with the same options (what `nfkit
    # boot` asks for `ip_conntrack` in the list and nf_conntrack's options):
    # one insert with the options, both names ok; hashsize is a
    # module_param_call parameter, in sysfs but not in modinfo (bug found
    # by bench/vm: the second name failed with "unknown parameter").
    for mode in parallel serial; do
        load_set alias "$mode" ip_conntrack hashsize=16384 nf_conntrack hashsize=16384
        check_eq "alias/$mode: both names ok" "true true" \
            "$(name_ok alias "$mode" ip_conntrack) $(name_ok alias "$mode" nf_conntrack)"
        check_eq "alias/$mode: the option applied" 16384 "$(cat /sys/module/nf_conntrack/parameters/hashsize)"
    done
    check "alias: an option of an already loaded module is a note, not an error (modprobe: exit 0)" \
        "$NFKIT" modules load nf_conntrack hashsize=16384
    back_to_baseline
}

# repeat_runs FIRST LAST: runs FIRST..LAST of the parallel load of the seed
# set, each from the baseline, each compared with this boot's --jobs 1 load.
repeat_runs() {
    local i names bad=''
    loaded_modules | record baseline
    mapfile -t names < <(seed_names)
    load_set reference serial "${names[@]}"
    check_eq "the --jobs 1 reference load succeeds" 0 "$(cat "$OUT/reference-serial.status")"
    for i in $(seq "$1" "$2"); do
        load_set "run$i" parallel "${names[@]}"
        cmp -s "$OUT/reference-serial" "$OUT/run$i-parallel" || bad+=" $i"
        [[ $(cat "$OUT/run$i-parallel.status") == "$(cat "$OUT/reference-serial.status")" ]] || bad+=" $i(exit)"
    done
    check_eq "parallel loads $1..$2 each left the --jobs 1 set (runs that differ:)" "" "$bad"
    back_to_baseline
}

# 20 runs in four boots of 5: unloading ~40 modules costs seconds of RCU
# grace periods under TCG, and 20 cycles in one boot outgrew the 300 s
# boot timeout on a loaded host.
boot_repeat1() { repeat_runs 1 5; }
boot_repeat2() { repeat_runs 6 10; }
boot_repeat3() { repeat_runs 11 15; }
boot_repeat4() { repeat_runs 16 20; }
