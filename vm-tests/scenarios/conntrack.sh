# shellcheck shell=bash
# conntrack (issue 4): on a kernel where nf_conntrack is a module.
#   - count / max / buckets / per-CPU statistics from nfkit match the oracles
#     (`conntrack -C`, `conntrack -S`, sysctl) read in the same boot;
#   - `nfkit conntrack set --max N` in the initial namespace takes effect;
#   - in a child network namespace (unshare -n) it is refused, and the
#     initial namespace's value is unchanged.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="conntrack: count/max/buckets/per-CPU vs conntrack -S/-C and sysctl; set --max; refused in a child netns"
SCENARIO_BOOTS="main"

NEW_MAX=54321

boot_main() {
    check "modprobe nf_conntrack (oracle)" modprobe nf_conntrack || return 0
    conntrack -C | record oracle-count
    conntrack -S | record oracle-stats
    sysctl -n net.netfilter.nf_conntrack_max | record oracle-max
    sysctl -n net.netfilter.nf_conntrack_buckets | record oracle-buckets
    check_eq "conntrack -S has one line per possible CPU" \
        "$(wc -l <"$OUT/oracle-stats")" "$(($(cut -d- -f2 /sys/devices/system/cpu/possible) + 1))"

    check "nfkit conntrack --json" "$NFKIT" conntrack --json || return 0
    record nfkit-conntrack.json <<<"$CHECK_OUTPUT"
    local j=$OUT/nfkit-conntrack.json
    check_eq "nfkit max matches sysctl" "$(cat "$OUT/oracle-max")" "$(jq -r .max.value "$j")"
    check_eq "nfkit buckets matches sysctl" "$(cat "$OUT/oracle-buckets")" "$(jq -r .buckets.value "$j")"
    # The count moves with traffic; the guest has none, so it is stable here.
    check_eq "nfkit entries match conntrack -C" "$(cat "$OUT/oracle-count")" "$(jq -r .entries.value "$j")"
    check_eq "nfkit has one per-CPU entry per conntrack -S line" \
        "$(wc -l <"$OUT/oracle-stats")" "$(jq '.counters.per_cpu | length' "$j")"
    # Summed counters agree with conntrack -S (found=, insert=, drop=, ...).
    local key sum
    for key in found invalid insert insert_failed drop early_drop error search_restart; do
        sum=$(grep -oE "(^|[[:space:]])$key=[0-9]+" "$OUT/oracle-stats" | cut -d= -f2 | awk '{s += $1} END {print s + 0}')
        check_eq "counter $key: nfkit total = sum of conntrack -S" "$sum" "$(jq -r ".counters.total.$key" "$j")"
    done

    check "nfkit conntrack set --max $NEW_MAX (initial namespace)" "$NFKIT" conntrack set --max "$NEW_MAX"
    check_eq "sysctl shows the new max" "$NEW_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"

    check_fails "nfkit conntrack set --max in a child netns is refused" \
        unshare -n "$NFKIT" conntrack set --max 1000
    record child-netns-message <<<"$CHECK_OUTPUT"
    check_eq "the initial namespace's max is unchanged" "$NEW_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"
}
