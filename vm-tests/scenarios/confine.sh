# shellcheck shell=bash
# confine (issue 11 §1, §2): the kernel enforces nfkit's promises on a real
# Debian kernel with loadable modules.
#   - a running nfkit is in seccomp filter mode (`Seccomp: 2` in
#     /proc/PID/status) and `status` reports the filter and the Landlock ABI;
#   - every way to start a process is refused (EPERM; clone3 ENOSYS);
#   - `nfkit modules load` (finit_module) works under the read-only Landlock
#     ruleset, and that ruleset refuses writes;
#   - modprobe.d `install` lines: nfkit's policy refuses them
#     (`--ignore-install` off) or loads the module itself (on); and even
#     when libkmod is let to run the command itself (the hidden test entry
#     probes without nfkit's callback: the mistake nfkit never makes), the
#     command cannot start: libkmod's system() gets EPERM, nothing runs;
#   - (boot `apply`) a live `apply` under its ruleset: nf_conntrack loaded
#     by it after the ruleset was made, then its sysctls written beneath
#     /proc/sys/net/netfilter, the persistent files written, verify agrees;
#     `conntrack set` likewise; a write outside apply's directories refused.
# On a kernel without Landlock (Debian 11's 5.10: Landlock came in 5.13) the
# seccomp half is checked the same; for Landlock, nfkit must say it is not in
# force (status JSON and text, and a `-v` warning) and the writes go through:
# the report is checked against the kernel's own LSM list, not assumed.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="confinement: seccomp (no exec, no fork) and Landlock in force; finit_module works; install commands cannot run"
SCENARIO_BOOTS="main apply"

MARKER=/run/nfkit-confine-marker
TRACE=(strace -f -qq -e "trace=execve,execveat,fork,vfork,clone,clone3")

# new_processes FILE: fork/vfork/clone/clone3 calls without CLONE_THREAD
# that returned a pid in a strace log.
new_processes() {
    grep -E '(fork|clone3?)\(' "$1" | grep -v CLONE_THREAD | grep -cE '= [1-9][0-9]*$'
}

write_install_lines() {
    cat >/etc/modprobe.d/nfkit-vm-confine.conf <<EOF
install xt_hl /bin/touch $MARKER.xt_hl
install xt_length /bin/touch $MARKER.xt_length
install xt_ecn /bin/sh -c 'touch $MARKER.xt_ecn'
EOF
    record confine.conf /etc/modprobe.d/nfkit-vm-confine.conf
}

# seccomp_of_running_nfkit: `Seccomp:` of a running `nfkit __confinement-test
# wait` (kept alive by an open fifo on its stdin).
seccomp_of_running_nfkit() {
    local fifo=/run/nfkit-confine-fifo pid line i
    rm -f "$fifo" /run/nfkit-confine-wait.out
    mkfifo "$fifo"
    "$NFKIT" __confinement-test wait <"$fifo" >/run/nfkit-confine-wait.out &
    pid=$!
    exec 7>"$fifo"
    for i in $(seq 100); do
        grep -q '^ready' /run/nfkit-confine-wait.out 2>/dev/null && break
        sleep 0.1
    done
    line=$(cat /run/nfkit-confine-wait.out)
    cp "/proc/$pid/status" "$OUT/running-status"
    exec 7>&-
    wait "$pid"
    echo "$line"
}

# kernel_has_landlock: the kernel's LSM list (securityfs) names landlock.
kernel_has_landlock() {
    if ! [ -r /sys/kernel/security/lsm ]; then
        mount -t securityfs securityfs /sys/kernel/security
    fi
    record lsm /sys/kernel/security/lsm
    grep -qw landlock /sys/kernel/security/lsm
}

# check_write_refused WHAT FILE COMMAND...: the ruleset of COMMAND refuses a
# write to FILE where the kernel has Landlock; without it, the write goes
# through (nothing confines it, and nfkit said so).
check_write_refused() {
    local what=$1 file=$2
    shift 2
    if [ "$LANDLOCK" = yes ]; then
        check_status "$what" 1 "$NFKIT" __confinement-test write "$file" -- "$@"
        check_match "with the confinement hint" "Landlock ruleset refused" "$CHECK_OUTPUT"
        check_fails "nothing was written" test -e "$file"
    else
        check "no Landlock on this kernel: $what goes through" \
            "$NFKIT" __confinement-test write "$file" -- "$@"
        rm -f "$file"
    fi
}

# The spawn probe (tests/support/spawn-probe.c) is built here: the guest has
# no C compiler, and nfkit holds no code that starts a process.
host_main() {
    cc -shared -fPIC -O2 -Wall -Werror -o "$PAYLOAD_DIR/spawn-probe.so" \
        "$VM_TESTS_DIR/../tests/support/spawn-probe.c"
}

boot_main() {
    local ready rc
    LANDLOCK=no
    kernel_has_landlock && LANDLOCK=yes
    note "kernel LSMs: $(cat /sys/kernel/security/lsm); Landlock: $LANDLOCK"
    ready=$(seccomp_of_running_nfkit)
    check_match "the waiting nfkit printed its pid" '^ready [0-9]+$' "$ready"
    check_match "a running nfkit: Seccomp: 2" $'Seccomp:\t2' "$(cat "$OUT/running-status")"
    check_match "a running nfkit: NoNewPrivs: 1" $'NoNewPrivs:\t1' "$(cat "$OUT/running-status")"

    check "nfkit status --json" "$NFKIT" status --json
    printf '%s\n' "$CHECK_OUTPUT" | record status.json
    check_eq "status: seccomp filter" filter "$(jq -r .confinement.seccomp.state <<<"$CHECK_OUTPUT")"
    check_eq "status: kernel seccomp mode 2" 2 "$(jq -r .confinement.seccomp_mode <<<"$CHECK_OUTPUT")"
    if [ "$LANDLOCK" = yes ]; then
        check_eq "status: landlock enforced" enforced "$(jq -r .confinement.landlock.state <<<"$CHECK_OUTPUT")"
        note "guest Landlock ABI: $(jq -r .confinement.landlock.abi <<<"$CHECK_OUTPUT")"
    else
        check_eq "status: landlock unavailable (not silently dropped)" unavailable \
            "$(jq -r .confinement.landlock.state <<<"$CHECK_OUTPUT")"
        check "nfkit -v status" "$NFKIT" -v status
        check_match "-v warns that writes are not confined" \
            "running without Landlock \(writes are not confined by the kernel\)" "$CHECK_OUTPUT"
        check_match "status says Landlock is NOT in force" "landlock +NOT in force" "$CHECK_OUTPUT"
    fi

    rc=0
    LD_PRELOAD=$PAYLOAD/spawn-probe.so "$NFKIT" --json __confinement-test spawn \
        >"$OUT/spawn.json" 2>"$OUT/spawn.err" || rc=$?
    check_eq "every way to start a process is refused (exit 1)" 1 "$rc"
    check_match "each refusal is an error with its cause" \
        "start a process with execve: Operation not permitted" "$(cat "$OUT/spawn.err")"
    check_eq "nothing started" 0 "$(jq '[.attempts[] | select(.outcome == "started")] | length' "$OUT/spawn.json")"
    check_eq "clone3: ENOSYS" ENOSYS "$(jq -r '.attempts[] | select(.call == "clone3") | .errno' "$OUT/spawn.json")"
    check_eq "a thread still starts" ok "$(jq -r '.attempts[] | select(.call == "thread") | .outcome' "$OUT/spawn.json")"

    # finit_module under the ruleset (modules load gets the read-only one).
    check "nfkit modules load xt_multiport nf_conntrack (under seccomp + Landlock)" \
        "$NFKIT" modules load xt_multiport nf_conntrack
    check "xt_multiport is loaded" grep -q '^xt_multiport ' /proc/modules
    check_write_refused "modules load's ruleset refuses a write" /etc/nfkit-confine-x \
        modules load xt_state

    write_install_lines
    check "modprobe sees the install line (dry run prints it)" modprobe -n -v xt_hl
    check_match "modprobe -n -v shows the command" "install /bin/touch" "$CHECK_OUTPUT"

    # --ignore-install off: nfkit's policy refuses the command.
    check_status "nfkit modules load xt_hl: refused (install command)" 1 "$NFKIT" modules load xt_hl
    check_match "it names the install command" "install" "$CHECK_OUTPUT"
    check_fails "xt_hl not loaded" grep -q '^xt_hl ' /proc/modules
    # --ignore-install on: the module itself is inserted (finit_module).
    check "nfkit modules load -i xt_hl: the module itself is loaded" "$NFKIT" modules load -i xt_hl
    check "xt_hl is loaded" grep -q '^xt_hl ' /proc/modules

    # The mistake: libkmod runs the command itself. It cannot start.
    check_status "libkmod running xt_length's install command: fails (exit 1)" 1 \
        "${TRACE[@]}" -o "$OUT/strace-mistake" "$NFKIT" __confinement-test kmod-install xt_length
    record mistake.out <<<"$CHECK_OUTPUT"
    check_match "libkmod tried to start the shell and got EPERM" \
        '(clone3?|vfork|fork)\(.*= -1 (EPERM|ENOSYS)' "$(cat "$OUT/strace-mistake")"
    check_eq "only nfkit itself was executed" 1 "$(grep -cE '(execve|execveat)\(' "$OUT/strace-mistake")"
    check_eq "no process was created" 0 "$(new_processes "$OUT/strace-mistake")"
    check_fails "the install command never ran" test -e "$MARKER.xt_length"
    check_fails "xt_length not loaded" grep -q '^xt_length ' /proc/modules
    check_status "the same for a /bin/sh -c install line (xt_ecn)" 1 \
        "$NFKIT" __confinement-test kmod-install xt_ecn
    check_fails "the sh install command never ran" test -e "$MARKER.xt_ecn"
    # The mistake with --ignore-install on: libkmod inserts the module.
    check "libkmod with IGNORE_COMMAND: loads xt_length itself" \
        "$NFKIT" __confinement-test kmod-install -i xt_length
    check "xt_length is loaded" grep -q '^xt_length ' /proc/modules
    check_fails "and ran nothing" test -e "$MARKER.xt_length"
    check_fails "the xt_hl install command never ran either" test -e "$MARKER.xt_hl"
}

boot_apply() {
    LANDLOCK=no
    kernel_has_landlock && LANDLOCK=yes
    check_fails "nf_conntrack is not loaded yet" grep -q '^nf_conntrack ' /proc/modules
    mkdir -p /etc/nfkit
    cat >/etc/nfkit/nfkit.toml <<'EOF'
[modules]
load = ["xt_conntrack"]

[conntrack]
max = 131072

[sysctl]
"net.netfilter.nf_conntrack_tcp_timeout_established" = 7200
EOF
    check "nfkit -v apply (live, under its ruleset)" "$NFKIT" -v apply
    record apply.out <<<"$CHECK_OUTPUT"
    check "xt_conntrack is loaded" grep -q '^xt_conntrack ' /proc/modules
    check_eq "nf_conntrack_max set" 131072 "$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
    check_eq "tcp established timeout set" 7200 \
        "$(cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established)"
    check "a persistent file was written" grep -rqs nf_conntrack_max /etc/sysctl.d/ /etc/sysctl.conf
    check "nfkit verify agrees" "$NFKIT" verify
    check "nfkit conntrack set --max 100000 (live)" "$NFKIT" conntrack set --max 100000
    check_eq "nf_conntrack_max changed" 100000 "$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
    # This guest boots without systemd: apply's targets include /etc/modules
    # and /etc/sysctl.conf, so /etc itself is writable for apply (see the
    # README's Guarantees); everything outside it is not.
    check_write_refused "apply's ruleset refuses a write outside its directories" \
        /var/tmp/nfkit-confine-x apply
    check_write_refused "apply's ruleset refuses /lib/modprobe.d (vendor files)" \
        /lib/modprobe.d/nfkit-confine-x.conf apply
    check "apply's ruleset allows its own directory" \
        "$NFKIT" __confinement-test write /etc/modprobe.d/nfkit-confine-x.conf -- apply
    rm -f /etc/modprobe.d/nfkit-confine-x.conf
    check "nfkit -v status" "$NFKIT" -v status
    record status.txt <<<"$CHECK_OUTPUT"
    if [ "$LANDLOCK" = yes ]; then
        check_match "status names the Landlock ABI" "landlock +ABI [0-9]+" "$CHECK_OUTPUT"
    else
        check_match "status says Landlock is NOT in force" "landlock +NOT in force" "$CHECK_OUTPUT"
    fi
}
