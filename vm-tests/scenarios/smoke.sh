# shellcheck shell=bash
# smoke: the guest is what the other scenarios rely on: a kernel with loadable
# modules, working oracle tools, libkmod for nfkit's dlopen, and an nfkit
# binary that runs there (built on the host; it needs the guest's glibc to be
# at least the build's: the portable build, issue 12, runs on every guest).
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="guest sanity: loadable modules, oracles, libkmod, nfkit runs"
SCENARIO_BOOTS="main"

boot_main() {
    check "kernel has loadable module support (/proc/modules exists)" test -f /proc/modules
    check "module tree of the running kernel is installed" test -f "/lib/modules/$(uname -r)/modules.dep"
    # A fresh init= boot loads nothing netfilter: the load below is real.
    check_fails "nf_conntrack is not loaded before the test" grep -q '^nf_conntrack ' /proc/modules
    check "modprobe nf_conntrack (oracle) succeeds" modprobe nf_conntrack
    check "nf_conntrack is listed in /proc/modules" grep -q '^nf_conntrack ' /proc/modules
    check "/proc/sys/net/netfilter/nf_conntrack_max appears" test -f /proc/sys/net/netfilter/nf_conntrack_max
    check "sysctl reads net.netfilter.nf_conntrack_max" sysctl -n net.netfilter.nf_conntrack_max
    check "modprobe -r nf_conntrack (oracle) succeeds" modprobe -r nf_conntrack
    check_fails "nf_conntrack is gone after modprobe -r" grep -q '^nf_conntrack ' /proc/modules

    check "libkmod.so.2 is present for nfkit's dlopen" sh -c 'ldconfig -p | grep -q "libkmod.so.2 "'
    check "nfkit binary is on the payload and executable" test -x "$NFKIT"
    check "nfkit --version runs in the guest (root)" "$NFKIT" --version
    record nfkit-version <<<"$CHECK_OUTPUT"
    check "nfkit --version runs as the unprivileged user nfuser" runuser -u nfuser -- "$NFKIT" --version
    check "user nfuser is not root" test "$(id -u nfuser)" -ne 0

    # This guest's userland (the matrix's oracles) and how its module files
    # are stored (.ko, or .ko.xz on trixie: libkmod and the kernel decompress).
    {
        echo "kernel: $(uname -r) ($VM_KERNEL, $VM_SUITE)"
        echo "glibc: $(ldd --version 2>&1 | head -n 1)"
        echo "kmod: $(kmod --version 2>&1 | head -n 1)"
        echo "procps: $(sysctl --version 2>&1 | head -n 1)"
        echo "systemd: $(systemctl --version 2>&1 | head -n 1)"
        echo "iptables: $(iptables --version 2>&1)"
        echo "nft: $(nft --version 2>&1)"
        echo "conntrack: $(conntrack --version 2>&1)"
        echo "nf_conntrack file: $(modinfo -n nf_conntrack 2>&1)"
        echo "/usr merged: $([[ -L /lib ]] && echo yes || echo no)"
    } | record versions
    check_eq "the guest is the matrix entry it claims (uname -r starts with $VM_KERNEL.)" \
        "$VM_KERNEL." "$(uname -r | grep -oE '^[0-9]+\.[0-9]+\.')"
    check "oracle iptables-legacy runs" iptables-legacy -w -t filter -L -n
    check "oracle nft runs" nft list tables
    check "oracle conntrack runs" conntrack -S
    check "oracle lsmod runs" lsmod
    # The zero-exec scenario relies on strace seeing execve: prove it does.
    check "strace -f records execve" strace -f -qq -e trace=execve -o "$OUT/strace-true" /bin/true
    check_eq "strace saw exactly one execve for /bin/true" 1 "$(grep -c 'execve(' "$OUT/strace-true")"
}
