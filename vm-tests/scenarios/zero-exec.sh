# shellcheck shell=bash
# zero-exec (issue 4): nfkit loads and unloads modules without executing
# anything: under `strace -f`, the only execve is nfkit's own, and it never
# forks. The kernel's own module autoloader (request_module, which runs
# /proc/sys/kernel/modprobe) is watched too, through a logging wrapper.
# The oracle half proves the detector sees a child exec.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="zero exec: nfkit load/unload under strace -f executes nothing but itself"
SCENARIO_BOOTS="main"

TRACE=(strace -f -qq -e "trace=execve,execveat,fork,vfork,clone,clone3")

# count_execs FILE: execve/execveat calls in a strace log.
count_execs() { grep -cE '(execve|execveat)\(' "$1"; }
# count_forks FILE: new processes (fork/vfork, or clone without CLONE_THREAD).
count_forks() { grep -E '(fork|clone3?)\(' "$1" | grep -vc 'CLONE_THREAD'; }

# Route the kernel's request_module() through a logger.
install_kernel_modprobe_logger() {
    cat >/run/modprobe-logger <<'SH'
#!/bin/sh
echo "$*" >>/run/kernel-modprobe.log
exec /sbin/modprobe "$@"
SH
    chmod 755 /run/modprobe-logger
    : >/run/kernel-modprobe.log
    echo /run/modprobe-logger >/proc/sys/kernel/modprobe
}

boot_main() {
    # Oracle: the detector sees a child's exec and fork.
    check "strace -f on sh -c /bin/true" "${TRACE[@]}" -o "$OUT/strace-oracle" sh -c '/bin/true; /bin/true'
    check_eq "detector: 3 execve (sh and two children)" 3 "$(count_execs "$OUT/strace-oracle")"
    check "detector: at least one fork/clone" test "$(count_forks "$OUT/strace-oracle")" -ge 1

    install_kernel_modprobe_logger
    check "nfkit modules load xt_multiport nf_conntrack under strace" \
        "${TRACE[@]}" -o "$OUT/strace-load" "$NFKIT" modules load xt_multiport nf_conntrack
    check_eq "load: one execve (nfkit itself)" 1 "$(count_execs "$OUT/strace-load")"
    check_eq "load: no fork" 0 "$(count_forks "$OUT/strace-load")"
    check "xt_multiport is loaded" grep -q '^xt_multiport ' /proc/modules

    check "nfkit modules unload xt_multiport under strace" \
        "${TRACE[@]}" -o "$OUT/strace-unload" "$NFKIT" modules unload xt_multiport
    check_eq "unload: one execve (nfkit itself)" 1 "$(count_execs "$OUT/strace-unload")"
    check_eq "unload: no fork" 0 "$(count_forks "$OUT/strace-unload")"
    check_fails "xt_multiport is gone" grep -q '^xt_multiport ' /proc/modules

    record kernel-modprobe.log /run/kernel-modprobe.log
    check_eq "the kernel ran no modprobe on nfkit's behalf" "" "$(cat /run/kernel-modprobe.log)"
}
