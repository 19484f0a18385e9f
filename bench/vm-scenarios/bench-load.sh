# shellcheck shell=bash
# Benchmark (issue 6, item 4): cold load of the seed module set in fresh
# boots, alternating `nfkit modules load NAME...` (one process) with
# `for m in ...; do modprobe $m; done`. A last boot measures the kernel's own
# work: the time spent inside finit_module/init_module (strace -T).
# Timings are recorded, not judged; the checks only prove each run did the job.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="benchmark: cold load of the seed set, nfkit vs modprobe loop, fresh boots"
SCENARIO_BOOTS="nfkit1 modprobe1 nfkit2 modprobe2 nfkit3 modprobe3 floor"

bench_names() { grep -v -e '^#' -e '^$' "$PAYLOAD/scenarios/seed-modules.list"; }
now_ns() { date +%s%N; }

bench_nfkit() {
    local start end
    start=$(now_ns)
    # shellcheck disable=SC2046 # one word per module name
    "$NFKIT" modules load $(bench_names) >/tmp/bench.out 2>&1
    local rc=$?
    end=$(now_ns)
    check_eq "nfkit loaded every seed name" 0 "$rc"
    echo $((end - start)) | record load-ns
    wc -l </proc/modules | record modules
}

bench_modprobe() {
    local start end m rc=0
    start=$(now_ns)
    for m in $(bench_names); do modprobe "$m" >/dev/null 2>&1 || rc=1; done
    end=$(now_ns)
    check_eq "modprobe loaded every seed name" 0 "$rc"
    echo $((end - start)) | record load-ns
    wc -l </proc/modules | record modules
}

boot_nfkit1() { bench_nfkit; }
boot_nfkit2() { bench_nfkit; }
boot_nfkit3() { bench_nfkit; }
boot_modprobe1() { bench_modprobe; }
boot_modprobe2() { bench_modprobe; }
boot_modprobe3() { bench_modprobe; }

boot_floor() {
    # shellcheck disable=SC2046
    check "nfkit load under strace" strace -f -T -e trace=finit_module,init_module -o /tmp/strace.out \
        "$NFKIT" modules load $(bench_names)
    # Sum the <seconds> of every module insert.
    awk -F'<' '/init_module/ { sub(/>.*/, "", $NF); s += $NF; n++ } END { printf "%d %d\n", s * 1e9, n }' \
        /tmp/strace.out | record floor-ns-count
}
