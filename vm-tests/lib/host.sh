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

# recipe_hash: sha256 over the recipe files' names and contents.
recipe_hash() {
    local f
    for f in "${RECIPE_FILES[@]}"; do
        printf '%s\n' "${f#"$VM_TESTS_DIR"/}"
        cat "$f"
    done | sha256sum | cut -c1-16
}

# image_dir: where the image for the current recipe lives (may not exist yet).
image_dir() { printf '%s/image-%s\n' "$NFKIT_VM_CACHE" "$(recipe_hash)"; }

# image_is_complete DIR: true when DIR holds a finished build of this recipe.
# The stamp is written last, inside the temporary build directory, before the
# directory is renamed into place; so a stamp means everything else is there.
image_is_complete() {
    local dir=$1
    [[ -f $dir/stamp && -f $dir/vmlinuz && -f $dir/initrd.img && -f $dir/rootfs.img ]] &&
        [[ $(cat "$dir/stamp") == "$(recipe_hash)" ]]
}

# ensure_packages CMD:PACKAGE...: installs the Debian packages whose commands
# are missing. Checks first; runs `apt-get update` at most once per process,
# and only when something is missing. Fails loudly when it cannot install.
_APT_UPDATED=0
ensure_packages() {
    local spec cmd pkg missing=()
    for spec in "$@"; do
        cmd=${spec%%:*} pkg=${spec#*:}
        # root's PATH has /usr/sbin; a user's may not: look there too.
        if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd && ! -x /sbin/$cmd ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    # Deduplicate (several commands may come from one package).
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root or install them"
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
    log "installing ${missing[*]}"
    if ((_APT_UPDATED == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    local aptlog
    aptlog=$(mktemp)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$aptlog" 2>&1 || { cat "$aptlog" >&2; die "apt-get install ${missing[*]} failed"; }
    rm -f "$aptlog"
}

# debian_mirror: the Debian mirror of the host's apt sources (deb822 .sources
# files or one-line .list files), overridable with NFKIT_VM_MIRROR. Only the
# entries serving a "bookworm" suite count, so third-party repositories are
# never picked.
debian_mirror() {
    if [[ -n ${NFKIT_VM_MIRROR:-} ]]; then
        printf '%s\n' "$NFKIT_VM_MIRROR"
        return
    fi
    local f mirror=''
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # deb822 stanzas are separated by blank lines; keep the URI of the
        # first stanza whose Suites list contains exactly "bookworm".
        mirror=$(awk '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) ok = 1
                }
                if (ok && uri != "") { print uri; exit }
            }' "$f")
        [[ -n $mirror ]] && break
    done
    if [[ -z $mirror ]]; then
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i+1) == "bookworm") { print $i; exit } }')
    fi
    [[ -n $mirror ]] || die "no Debian bookworm mirror in /etc/apt/sources*; set NFKIT_VM_MIRROR"
    printf '%s\n' "$mirror"
}
