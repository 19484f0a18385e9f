# shellcheck shell=bash
# Benchmark (issues 6 and 16): loading the seed module set, each run in its
# own fresh boot (module files not in the page cache, nothing loaded), the
# methods alternating within every round:
#   par      `nfkit modules load NAMES...` (the parallel loader, default jobs)
#   seq      `nfkit modules load --jobs 1 NAMES...` (one after another)
#   modprobe `for m in NAMES; do modprobe $m; done`
#   sml      `systemd-modules-load` with NAMES in /etc/modules-load.d/ (the
#            loader at boot: one process, libkmod, one module after another)
# and the boot step for one desired state (the seed modules, an nf_conntrack
# option, conntrack max and buckets, a conntrack timeout):
#   nboot    `nfkit boot` with that state in /etc/nfkit/nfkit.toml
#   sysd     `systemd-modules-load` then `systemd-sysctl` with the same state
#            in modules-load.d, modprobe.d and sysctl.d (what systemd runs)
# A last boot (floor) loads with `--jobs 1` under strace: the time inside
# every finit_module (the kernel's work, the floor of a one-at-a-time load)
# and, per module, its own insert time, from which bench/vm computes the
# longest dependency chain (the floor of a parallel load).
# Timings are recorded, not judged; the checks prove each run did the job and
# that every method leaves the same modules loaded.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="benchmark: cold load of the seed set (parallel, --jobs 1, modprobe loop, systemd-modules-load) and the boot step (nfkit boot vs systemd-modules-load + systemd-sysctl), fresh boots"
# BENCH_REPS fresh boots per method (bench/vm --reps; 3 to 7), the methods
# rotated from one round to the next so that none always goes first.
_bench_boots() {
    local reps=${BENCH_REPS:-3} r i loaders=(par seq modprobe sml) out=""
    [[ $reps =~ ^[3-7]$ ]] || reps=3
    for ((r = 1; r <= reps; r++)); do
        for ((i = 0; i < 4; i++)); do out+="${loaders[(i + r - 1) % 4]}$r "; done
        if ((r % 2)); then out+="nboot$r sysd$r "; else out+="sysd$r nboot$r "; fi
    done
    echo "${out}floor"
}
SCENARIO_BOOTS=$(_bench_boots)

# The boot step's desired state (the same in both forms).
BENCH_MAX=200000
BENCH_BUCKETS=16384
BENCH_EXPECT=512
BENCH_ESTABLISHED=86400

bench_names() { grep -v -e '^#' -e '^$' "$PAYLOAD/scenarios/seed-modules.list"; }
now_ns() { date +%s%N; }
systemd_tool() {
    local t
    for t in /lib/systemd/"$1" /usr/lib/systemd/"$1"; do
        [[ -x $t ]] && { echo "$t"; return 0; }
    done
    return 1
}

# timed NAME CMD...: runs CMD (output to /tmp/bench.out), records its wall
# time in ns as NAME-ns and the loaded modules as NAME-modules; checks it
# succeeded.
timed() {
    local name=$1 start end rc=0
    shift
    sync
    echo 3 >/proc/sys/vm/drop_caches
    start=$(now_ns)
    "$@" >/tmp/bench.out 2>&1 || rc=$?
    end=$(now_ns)
    check_eq "$name: $* succeeded" 0 "$rc"
    [[ $rc == 0 ]] || sed 's/^/# /' /tmp/bench.out | head -n 20
    echo $((end - start)) | record "$name-ns"
    cut -d' ' -f1 /proc/modules | sort | record "$name-modules"
    wc -l </proc/modules | record modules
}

modprobe_loop() {
    local m rc=0
    for m in $(bench_names); do modprobe "$m" >/dev/null 2>&1 || rc=1; done
    return "$rc"
}

both_systemd() {
    "$(systemd_tool systemd-modules-load)" && "$(systemd_tool systemd-sysctl)"
}

# shellcheck disable=SC2046 # one word per module name
bench_par() { timed load "$NFKIT" modules load $(bench_names); }
# shellcheck disable=SC2046
bench_seq() { timed load "$NFKIT" modules load --jobs 1 $(bench_names); }
bench_modprobe() { timed load modprobe_loop; }
bench_sml() {
    local tool
    tool=$(systemd_tool systemd-modules-load) || { check "systemd-modules-load is in the guest" false; return; }
    mkdir -p /etc/modules-load.d
    bench_names >/etc/modules-load.d/bench.conf
    timed load "$tool"
}

bench_nboot() {
    local list="" m
    for m in $(bench_names); do list+="\"$m\", "; done
    mkdir -p /etc/nfkit
    cat >/etc/nfkit/nfkit.toml <<EOF
[modules]
load = [${list%, }]

[modules.options.nf_conntrack]
expect_hashsize = $BENCH_EXPECT

[conntrack]
max = $BENCH_MAX
buckets = $BENCH_BUCKETS

[sysctl]
"net.netfilter.nf_conntrack_tcp_timeout_established" = $BENCH_ESTABLISHED
EOF
    timed boot "$NFKIT" boot
    bench_boot_state
}

bench_sysd() {
    systemd_tool systemd-sysctl >/dev/null || { check "systemd-sysctl is in the guest" false; return; }
    mkdir -p /etc/modules-load.d /etc/modprobe.d /etc/sysctl.d
    bench_names >/etc/modules-load.d/bench.conf
    printf 'options nf_conntrack hashsize=%s expect_hashsize=%s\n' "$BENCH_BUCKETS" "$BENCH_EXPECT" \
        >/etc/modprobe.d/bench.conf
    printf 'net.netfilter.nf_conntrack_max = %s\nnet.netfilter.nf_conntrack_tcp_timeout_established = %s\n' \
        "$BENCH_MAX" "$BENCH_ESTABLISHED" >/etc/sysctl.d/90-bench.conf
    timed boot both_systemd
    bench_boot_state
}

# The state either boot step must leave.
bench_boot_state() {
    check_eq "conntrack max" "$BENCH_MAX" "$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
    check_eq "conntrack buckets" "$BENCH_BUCKETS" "$(cat /proc/sys/net/netfilter/nf_conntrack_buckets)"
    check_eq "expect_hashsize" "$BENCH_EXPECT" "$(cat /sys/module/nf_conntrack/parameters/expect_hashsize)"
    check_eq "tcp established timeout" "$BENCH_ESTABLISHED" \
        "$(cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established)"
}

for _r in 1 2 3 4 5 6 7; do
    eval "boot_par$_r() { bench_par; }; boot_seq$_r() { bench_seq; }"
    eval "boot_modprobe$_r() { bench_modprobe; }; boot_sml$_r() { bench_sml; }"
    eval "boot_nboot$_r() { bench_nboot; }; boot_sysd$_r() { bench_sysd; }"
done
unset _r

boot_floor() {
    local release
    release=$(uname -r)
    # shellcheck disable=SC2046
    check "nfkit --jobs 1 load under strace" strace -f -T -y -e trace=finit_module,init_module \
        -o /tmp/strace.out "$NFKIT" modules load --jobs 1 $(bench_names)
    # Sum the <seconds> of every module insert.
    awk -F'<' '/init_module/ { sub(/>.*/, "", $NF); s += $NF; n++ } END { printf "%d %d\n", s * 1e9, n }' \
        /tmp/strace.out | record floor-ns-count
    # Per module: "NAME NS" (the fd's path, as strace -y shows it, names it).
    awk '/finit_module\(/ {
            if (match($0, /<\/[^>]*\.ko[^>]*>/) == 0) next
            path = substr($0, RSTART + 1, RLENGTH - 2); n = split(path, p, "/"); m = p[n]
            sub(/\.ko.*/, "", m); gsub(/-/, "_", m)
            t = $NF; sub(/^</, "", t); sub(/>$/, "", t)
            printf "%s %d\n", m, t * 1e9
         }' /tmp/strace.out | record insert-ns
    # The dependency lines of the loaded modules (for the longest chain).
    cp "/lib/modules/$release/modules.dep" "$OUT/modules.dep"
}
