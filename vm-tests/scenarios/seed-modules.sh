# shellcheck shell=bash
# seed-modules (issue 4): load every name of both seed-guide lists
# (seed-modules.list) in a fresh boot with nfkit, and in another fresh boot
# with modprobe. The host then compares the two boots' results:
#   - /proc/modules before (baseline) and after loading: identical sets;
#   - per-name verdicts (loaded / not-found): identical, so names missing on
#     this kernel get the same verdict from nfkit as from modprobe;
#   - /proc/net/ip_tables_names: identical (and, in the nfkit boot, equal to
#     what `nfkit tables` reports).
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="seed-guide modules: nfkit vs modprobe in two fresh boots, same /proc/modules and verdicts"
SCENARIO_BOOTS="oracle nfkit"

# A name that exists on no kernel, loaded after the seed names: every seed
# name exists on Debian 12's kernel, so without it the "not found" verdict
# would never be compared.
SEED_CANARY=nfkit_vm_no_such_module

seed_names() {
    grep -v -e '^#' -e '^$' "$PAYLOAD/scenarios/seed-modules.list"
    echo "$SEED_CANARY"
}

loaded_modules() { cut -d' ' -f1 /proc/modules | sort; }

# seed_load_all LOADER...: runs `LOADER NAME` for every seed name and records
#   verdicts   NAME<TAB>loaded | not-found | error
#   messages   NAME<TAB>the loader's output (for the log; not compared)
# A verdict is "not-found" when the loader fails and says "not found", as
# modprobe does ("modprobe: FATAL: Module x not found in directory ...").
seed_load_all() {
    local name out rc verdict start
    : >"$OUT/verdicts.tmp"
    : >"$OUT/messages.tmp"
    start=$(date +%s%N)
    for name in $(seed_names); do
        rc=0
        out=$("$@" "$name" 2>&1) || rc=$?
        if ((rc == 0)); then
            verdict=loaded
        elif [[ ${out,,} == *"not found"* ]]; then
            verdict=not-found
        else
            verdict=error
        fi
        printf '%s\t%s\n' "$name" "$verdict" >>"$OUT/verdicts.tmp"
        printf '%s\t%s\n' "$name" "${out//$'\n'/ | }" >>"$OUT/messages.tmp"
    done
    note "loading $(seed_names | wc -l) names with '$*' took $((($(date +%s%N) - start) / 1000000)) ms"
    record verdicts "$OUT/verdicts.tmp"
    record messages "$OUT/messages.tmp"
    rm -f "$OUT/verdicts.tmp" "$OUT/messages.tmp"
}

# Checks common to both boots, on the state the loads left.
seed_check_state() {
    local name verdict m missing=''
    check_eq "every seed name got a verdict" "$(seed_names | wc -l)" "$(wc -l <"$OUT/verdicts")"
    check_fails "no name ended in an error other than 'not found'" grep -q $'\terror$' "$OUT/verdicts"
    check "the canary $SEED_CANARY is reported not found" grep -qx "$SEED_CANARY"$'\tnot-found' "$OUT/verdicts"
    # Every module that a loaded name resolves to (modprobe -R, the oracle's
    # resolution) is now loaded, or built in.
    while IFS=$'\t' read -r name verdict; do
        [[ $verdict == loaded ]] || continue
        for m in $(modprobe -R "$name" 2>/dev/null); do
            grep -q "^$m " /proc/modules ||
                grep -q "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin" ||
                missing+=" $name->$m"
        done
    done <"$OUT/verdicts"
    check_eq "every loaded name's modules are in /proc/modules" "" "$missing"
    loaded_modules | record modules-after
    check_eq "no module of the baseline was unloaded" "" \
        "$(comm -23 "$OUT/modules-before" "$OUT/modules-after")"
    record ip_tables_names /proc/net/ip_tables_names
}

boot_oracle() {
    loaded_modules | record modules-before
    # The oracle's resolution of each name, for reference (nfkit's `modules
    # resolve` can later be compared with it).
    local name
    for name in $(seed_names); do
        printf '%s\t%s\n' "$name" "$(modprobe -R "$name" 2>&1 | tr '\n' ' ')"
    done | record resolved
    seed_load_all modprobe
    seed_check_state
}

boot_nfkit() {
    loaded_modules | record modules-before
    # One process per name mirrors the oracle and keeps the verdict per name.
    seed_load_all "$NFKIT" modules load
    seed_check_state
    # The legacy IPv4 tables nfkit lists (names, or objects with a name).
    check "nfkit tables --json runs" "$NFKIT" tables --json
    record nfkit-tables.json <<<"$CHECK_OUTPUT"
    check_eq "nfkit tables agrees with /proc/net/ip_tables_names" \
        "$(sort /proc/net/ip_tables_names)" \
        "$(jq -r '.legacy[] | select(.family == "ipv4") | .tables[] | if type == "string" then . else .name end' \
            "$OUT/nfkit-tables.json" | sort)"
}

# Host side: $RESULTS/<phase>/<record> holds each boot's records.
compare() {
    check_same_file "same /proc/modules before loading (baseline)" \
        "$RESULTS/oracle/modules-before" "$RESULTS/nfkit/modules-before"
    check_same_file "same per-name verdicts (loaded / not-found)" \
        "$RESULTS/oracle/verdicts" "$RESULTS/nfkit/verdicts"
    check_same_file "same /proc/modules after loading every seed name" \
        "$RESULTS/oracle/modules-after" "$RESULTS/nfkit/modules-after"
    check_same_file "same /proc/net/ip_tables_names" \
        "$RESULTS/oracle/ip_tables_names" "$RESULTS/nfkit/ip_tables_names"
}
