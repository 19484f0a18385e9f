# shellcheck shell=bash
# Benchmark (issue 6, item 3): verifying the seed configuration (every seed
# module loaded, conntrack max and buckets, the table names) with
# `nfkit verify` against the loop a script would run (grep of /proc/modules
# per module, sysctl -n, cat), alternating, in one boot with everything in
# place. Timings are recorded, not judged.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="benchmark: verify of the seed configuration, nfkit verify vs a shell loop"
SCENARIO_BOOTS="main"

BENCH_RUNS=15

boot_main() {
    local names m start end i list="" reals=""
    names=$(grep -v -e '^#' -e '^$' "$PAYLOAD/scenarios/seed-modules.list")
    for m in $names; do modprobe "$m" >/dev/null 2>&1; done
    # nfkit.toml of the seed state, with the modules' current names.
    for m in $names; do
        m=$("$NFKIT" --json modules resolve "$m" | jq -r '.results[0].modules[0].module')
        list+="\"$m\", "
        reals+="$m "
    done
    mkdir -p /etc/nfkit
    printf '[modules]\nload = [%s]\n\n[conntrack]\nmax = 65536\nbuckets = %s\n' "${list%, }" \
        "$(sysctl -n net.netfilter.nf_conntrack_buckets)" >/etc/nfkit/nfkit.toml
    "$NFKIT" apply >/dev/null 2>&1
    check "nfkit verify agrees before timing" "$NFKIT" verify
    cat >/tmp/script-verify <<SCRIPT
#!/bin/sh
ok=0
for m in $reals; do grep -q "^\$m " /proc/modules || { echo "missing \$m"; ok=1; }; done
[ "\$(sysctl -n net.netfilter.nf_conntrack_max)" = 65536 ] || ok=1
[ "\$(sysctl -n net.netfilter.nf_conntrack_buckets)" = "$(sysctl -n net.netfilter.nf_conntrack_buckets)" ] || ok=1
cat /proc/net/ip_tables_names >/dev/null || ok=1
exit \$ok
SCRIPT
    chmod +x /tmp/script-verify
    check "the script loop agrees too" /tmp/script-verify
    : >/tmp/nfkit-ns
    : >/tmp/script-ns
    : >/tmp/true-ns
    : >/tmp/version-ns
    for i in $(seq "$BENCH_RUNS"); do
        # The floors: one process start, and nfkit doing nothing.
        start=$(date +%s%N); /bin/true; end=$(date +%s%N)
        echo $((end - start)) >>/tmp/true-ns
        start=$(date +%s%N); "$NFKIT" --version >/dev/null; end=$(date +%s%N)
        echo $((end - start)) >>/tmp/version-ns
        start=$(date +%s%N); "$NFKIT" verify >/dev/null 2>&1; end=$(date +%s%N)
        echo $((end - start)) >>/tmp/nfkit-ns
        start=$(date +%s%N); /tmp/script-verify >/dev/null 2>&1; end=$(date +%s%N)
        echo $((end - start)) >>/tmp/script-ns
    done
    record true-ns /tmp/true-ns
    record version-ns /tmp/version-ns
    record nfkit-ns /tmp/nfkit-ns
    record script-ns /tmp/script-ns
}
