# shellcheck shell=bash
# Host-side helpers shared by vm-tests/build-image and vm-tests/run.
# Sourced, never executed. Callers have `set -euo pipefail`.

VM_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT=$(cd "$VM_TESTS_DIR/.." && pwd)
NFKIT_VM_CACHE=${NFKIT_VM_CACHE:-/var/cache/nfkit-vm}

# The files whose content defines the guest image. Any change to one of them
# changes the recipe hash, and so the image directory name: the next run
# rebuilds. Scenario files, the guest runner and the nfkit binary are NOT part
# of it: they travel on the per-boot payload disk.
RECIPE_FILES=(
    "$VM_TESTS_DIR/build-image"
    "$VM_TESTS_DIR/lib/host.sh"
    "$VM_TESTS_DIR/image/nfkit-vm-init"
    "$VM_TESTS_DIR/image/nfkit-vm.service"
)

log() { printf 'vm-tests: %s\n' "$*" >&2; }
die() { printf 'vm-tests: error: %s\n' "$*" >&2; exit 1; }

# The kernel matrix: each guest is one Debian release, its kernel AND its
# userland (kmod, procps, iptables, nftables, conntrack, systemd, strace are
# that release's: the oracles change with the kernel). KERNEL:SUITE, oldest
# first; `vm-tests/run --kernel K` and `build-image --suite S` use this table.
# shellcheck disable=SC2034 # used by the scripts that source this file
MATRIX=(5.10:bullseye 6.1:bookworm 6.12:trixie)

# suite_of KERNEL: the Debian suite whose kernel is KERNEL (fails if none).
suite_of() {
    local e
    for e in "${MATRIX[@]}"; do
        [[ ${e%%:*} == "$1" ]] && { printf '%s\n' "${e#*:}"; return 0; }
    done
    return 1
}

# kernel_of SUITE: the kernel series of SUITE's guest (fails if none).
kernel_of() {
    local e
    for e in "${MATRIX[@]}"; do
        [[ ${e#*:} == "$1" ]] && { printf '%s\n' "${e%%:*}"; return 0; }
    done
    return 1
}

# recipe_hash SUITE: sha256 over the suite's name and the recipe files' names
# and contents (one image per suite; changing the recipe rebuilds them all).
recipe_hash() {
    local f
    {
        printf 'suite %s\n' "$1"
        for f in "${RECIPE_FILES[@]}"; do
            printf '%s\n' "${f#"$VM_TESTS_DIR"/}"
            cat "$f"
        done
    } | sha256sum | cut -c1-16
}

# image_dir SUITE: where SUITE's image for the current recipe lives (may not
# exist yet).
image_dir() { printf '%s/image-%s-%s\n' "$NFKIT_VM_CACHE" "$1" "$(recipe_hash "$1")"; }

# image_is_complete DIR SUITE: true when DIR holds a finished build of this
# recipe for SUITE. The stamp is written last, inside the temporary build
# directory, before the directory is renamed into place; so a stamp means
# everything else is there.
image_is_complete() {
    local dir=$1 suite=$2
    [[ -f $dir/stamp && -f $dir/vmlinuz && -f $dir/initrd.img && -f $dir/rootfs.img ]] &&
        [[ $(cat "$dir/stamp") == "$(recipe_hash "$suite")" ]]
}

# ensure_packages CMD:PACKAGE...: one apt call for every missing package,
# chosen so that the versions fit the installed ones (our image's
# bookworm-backports qemu-utils!), never removing a package, every command
# checked again afterwards. See tests/support/packages.sh.
# shellcheck disable=SC2034 # read by packages.sh
PKG_LOG_NAME=vm-tests
# shellcheck source-path=SCRIPTDIR source=../../tests/support/packages.sh
source "$REPO_ROOT/tests/support/packages.sh"

# What the host needs to run guests (vm-tests/run) and to build the image
# (vm-tests/build-image). vm-tests/run ensures both lists in one call when the
# image still has to be built.
# shellcheck disable=SC2034 # used by the scripts that source this file
RUN_PACKAGES=(qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils mke2fs:e2fsprogs debugfs:e2fsprogs)
# shellcheck disable=SC2034
BUILD_PACKAGES=(debootstrap:debootstrap mke2fs:e2fsprogs chroot:coreutils flock:util-linux)

# debian_mirror: the Debian mirror of the host's apt sources (deb822 .sources
# files or one-line .list files), overridable with NFKIT_VM_MIRROR. Only the
# entries serving a Debian release by its code name (a suite of MATRIX, or
# the host's own /etc/os-release VERSION_CODENAME) count, so third-party
# repositories are never picked. Every guest suite comes from that mirror.
debian_mirror() {
    if [[ -n ${NFKIT_VM_MIRROR:-} ]]; then
        printf '%s\n' "$NFKIT_VM_MIRROR"
        return
    fi
    local names e host=''
    host=$( (. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}") || true)
    names=$host
    for e in "${MATRIX[@]}"; do names+=" ${e#*:}"; done
    local f mirror=''
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # deb822 stanzas are separated by blank lines; keep the URI of the
        # first stanza whose Suites list contains exactly one of the names.
        mirror=$(awk -v names="$names" '
            BEGIN { RS = ""; FS = "\n"; n = split(names, want, " ") }
            {
                uri = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/) {
                        m = split($i, s, /[ \t]+/)
                        for (j = 2; j <= m; j++) for (k = 1; k <= n; k++) if (s[j] == want[k]) ok = 1
                    }
                }
                if (ok && uri != "") { print uri; exit }
            }' "$f")
        [[ -n $mirror ]] && break
    done
    if [[ -z $mirror ]]; then
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v names="$names" '
                BEGIN { n = split(names, want, " ") }
                $1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/) for (k = 1; k <= n; k++) if ($(i+1) == want[k]) { print $i; exit } }')
    fi
    [[ -n $mirror ]] || die "no Debian mirror (suite one of:$names) in /etc/apt/sources*; set NFKIT_VM_MIRROR"
    printf '%s\n' "$mirror"
}
