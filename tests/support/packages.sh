# shellcheck shell=bash
# tests/support/packages.sh: installs the Debian packages that provide the
# commands a script needs. Sourced (never executed) by tests/setup,
# tests/support/kernel-tree, vm-tests/lib/host.sh and bench/host.
#
#   ensure_packages CMD:PACKAGE...
#
# CMD is a command name (looked up in PATH, /usr/sbin and /sbin), an absolute
# path (must be executable) or a shared library soname such as libkmod.so.2
# (looked up with ldconfig -p). When every CMD is there, nothing else happens:
# no apt call at all. Otherwise, as root:
#
#   1. `apt-get update` (once per process);
#   2. ONE `apt-get install` for every missing package, which also names every
#      needed package that is already installed, pinned to its installed
#      version: apt then has to keep those (it refuses rather than remove one)
#      and has to pick versions of the new packages that fit the ones there;
#   3. before installing, apt's simulated plan (`apt-get -s`) is read: a plan
#      that removes any package is refused, so apt never silently takes away
#      something we (or the machine's owner) need;
#   4. afterwards EVERY CMD is checked again; a still missing one fails the
#      caller with its name and the package that should provide it.
#
# The backports trap (why step 2 has fallbacks). Our standard image ships
# qemu-utils 1:10.0 from bookworm-backports and no qemu-system-*; its apt
# sources do not list bookworm-backports. qemu-utils 10 `Breaks:
# qemu-system-common (<< 1:8.0)`, and bookworm's qemu-system-x86 7.2 needs
# qemu-system-common 7.2. `apt-get install qemu-system-x86` alone therefore
# REMOVES qemu-utils (qemu-img is gone, every vm-test failed with "qemu-img:
# command not found"); naming qemu-utils in the same call makes apt refuse
# instead ("held broken packages"). Packages built from one source package
# must come from one suite, so when the plan above does not resolve, the
# missing packages' installed siblings (same source package) decide:
#
#   a. same suite as the installed sibling: if the suite serving the installed
#      sibling's version is in the apt sources (e.g. bookworm-backports, which
#      has pin 100 and is never a default candidate), install with
#      `-t THAT-SUITE`, so the new packages and their dependencies come from
#      there (qemu-system-x86 10.0 next to qemu-utils 10.0);
#   b. otherwise realign the sibling to the suite of the missing package's
#      candidate: `SIBLING/SUITE` with --allow-downgrades (on our image:
#      qemu-utils 10.0 -> bookworm's 7.2, next to qemu-system-x86 7.2). This
#      only uses the sources apt is configured with, which a Debian release
#      keeps consistent; the version change is logged.
#
# Each candidate plan is simulated first; the first one that resolves without
# removing anything is installed. If none does, the caller fails with what
# each plan ran into. We never add apt sources.
#
# Messages go to stderr, prefixed with $PKG_LOG_NAME (default: the script's
# name). Failures `exit 1` (callers run with `set -e` or want to stop anyway).
# NFKIT_APT_LOCK_TIMEOUT (default 300) is how long to wait for apt's lock.
# NFKIT_PKG_PLAN_ONLY=1 (for tests) stops before installing: it logs the plan
# that would run and exits 0.

_pkg_log() { printf '%s: %s\n' "${PKG_LOG_NAME:-${0##*/}}" "$*" >&2; }
_pkg_die() {
    _pkg_log "error: $*"
    exit 1
}

# _pkg_have CMD: true when CMD (command, absolute path or soname) is there.
_pkg_have() {
    local cmd=$1
    case $cmd in
    /*) [[ -x $cmd ]] ;;
    *.so.* | *.so)
        PATH=$PATH:/usr/sbin:/sbin ldconfig -p 2>/dev/null |
            awk -v lib="$cmd" '$1 == lib { found = 1 } END { exit !found }'
        ;;
    *)
        # root's PATH has /usr/sbin; a user's may not: look there too.
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd || -x /sbin/$cmd ]]
        ;;
    esac
}

# _pkg_installed_version PKG: the installed version, or nothing.
_pkg_installed_version() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null) || return 0
    [[ $st == ii* ]] && printf '%s\n' "${st##* }"
    return 0
}

# _pkg_source_installed PKG / _pkg_source_available PKG: the source package of
# the installed PKG / of PKG's candidate (a package without a Source field is
# its own source).
_pkg_source_installed() {
    local s
    s=$(dpkg-query -W -f='${source:Package}' "$1" 2>/dev/null) || true
    printf '%s\n' "${s:-$1}"
}
_pkg_source_available() {
    local s
    s=$(LC_ALL=C apt-cache show --no-all-versions "$1" 2>/dev/null |
        awk '$1 == "Source:" { print $2; exit }') || true
    printf '%s\n' "${s:-$1}"
}

# _pkg_candidate PKG: the version apt would install.
_pkg_candidate() {
    { LC_ALL=C apt-cache policy "$1" 2>/dev/null || true; } | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
}

# _pkg_suite_of PKG VERSION: the first apt source suite (as written in the
# sources, e.g. bookworm-backports) that serves VERSION of PKG; nothing when
# only dpkg's status file knows that version. Reads `apt-cache policy`'s
# version table: version lines are "*** V PRIO" or "V PRIO", source lines
# "PRIO URI SUITE/COMPONENT ARCH Packages" or "PRIO /var/lib/dpkg/status".
_pkg_suite_of() {
    { LC_ALL=C apt-cache policy "$1" 2>/dev/null || true; } | awk -v want="$2" '
        $1 ~ /:$/ { next }
        $1 == "***" { cur = $2; next }
        $2 !~ /\// { cur = $1; next }
        cur == want && $2 ~ /:\/\// {
            split($3, a, "/")
            if (a[1] != "" && a[1] != ".") { print a[1]; exit }
        }'
}

# _pkg_simulate ARGS...: runs `apt-get -s install ARGS`; prints nothing when
# the plan resolves and removes nothing, else prints why not. Always returns 0.
_pkg_simulate() {
    local out rc=0 why
    out=$(LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -s install -y --no-install-recommends "$@" 2>&1) || rc=$?
    if ((rc != 0)); then
        # apt's own reasons: "E: ..." and the unmet-dependency lines.
        why=$(printf '%s\n' "$out" | awk '
            /^E: / || /^ [^ ].* : [A-Z][A-Za-z-]*: / || /^  +(Pre)?Depends: |^  +Breaks: |^  +Conflicts: / {
                sub(/^ +/, ""); gsub(/ +/, " "); printf "%s%s", sep, $0; sep = "; "; if (++n == 6) exit
            }')
        printf '%s\n' "${why:-apt-get -s install failed (exit $rc): $(printf '%s\n' "$out" | tail -n 1)}"
        return 0
    fi
    why=$(printf '%s\n' "$out" | awk '$1 == "Remv" { printf "%s%s", sep, $2; sep = " " }')
    [[ -z $why ]] || printf 'the plan would REMOVE: %s\n' "$why"
    return 0
}

_PKG_APT_UPDATED=0
ensure_packages() {
    local spec cmd pkg v
    local -a missing_cmds=() missing_pkgs=() all_pkgs=()
    for spec in "$@"; do
        [[ $spec == ?*:?* ]] || _pkg_die "ensure_packages: bad spec '$spec' (want COMMAND:PACKAGE)"
        cmd=${spec%%:*} pkg=${spec#*:}
        all_pkgs+=("$pkg")
        if ! _pkg_have "$cmd"; then
            missing_cmds+=("$cmd ($pkg)")
            missing_pkgs+=("$pkg")
        fi
    done
    ((${#missing_pkgs[@]} == 0)) && return 0
    mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    mapfile -t all_pkgs < <(printf '%s\n' "${all_pkgs[@]}" | sort -u)
    local what="${missing_cmds[*]}"
    what=${what//) /), }
    [[ $(id -u) == 0 ]] || _pkg_die "missing: $what; run as root (to install them) or install them"
    command -v apt-get >/dev/null || _pkg_die "missing: $what; and no apt-get to install them"

    _pkg_log "missing: $what"
    if ((_PKG_APT_UPDATED == 0)); then
        _pkg_log "running apt-get update"
        LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            -o DPkg::Lock::Timeout="${NFKIT_APT_LOCK_TIMEOUT:-300}" >&2 || _pkg_die "apt-get update failed"
        _PKG_APT_UPDATED=1
    fi

    # The needed packages already installed, with their versions and sources.
    local -A inst=() isrc=()
    for pkg in "${all_pkgs[@]}"; do
        [[ " ${missing_pkgs[*]} " == *" $pkg "* ]] && continue
        v=$(_pkg_installed_version "$pkg")
        [[ -n $v ]] || continue
        inst[$pkg]=$v
        isrc[$pkg]=$(_pkg_source_installed "$pkg")
    done

    # Plan 1: the missing packages at apt's candidates, the installed ones kept.
    local -a plain=("${missing_pkgs[@]}")
    for pkg in "${!inst[@]}"; do plain+=("$pkg=${inst[$pkg]}"); done

    # The installed siblings of the missing packages (same source package).
    local m n msrc s suite_a='' suite_b='' why_a='' why_b=''
    local -a siblings=()
    for m in "${missing_pkgs[@]}"; do
        msrc=$(_pkg_source_available "$m")
        for n in "${!inst[@]}"; do
            [[ ${isrc[$n]} == "$msrc" ]] || continue
            siblings+=("$n")
            s=$(_pkg_suite_of "$n" "${inst[$n]}")
            if [[ -n $s && -z $suite_a ]]; then
                suite_a=$s why_a="$m from $s, where the installed $n ${inst[$n]} comes from"
            fi
            v=$(_pkg_candidate "$m") s=''
            [[ -z $v ]] || s=$(_pkg_suite_of "$m" "$v")
            if [[ -n $s && -z $suite_b ]]; then
                suite_b=$s why_b="$n realigned to $s, where $m $v comes from"
            fi
        done
    done

    # Plan 2 (a): the missing packages from their installed siblings' suite.
    # Plan 3 (b): the installed siblings moved to the missing ones' suite.
    local -a names=("as configured") plans=("${plain[*]}") realigned=()
    if [[ -n $suite_a ]]; then
        names+=("same suite: $why_a")
        plans+=("-t $suite_a ${plain[*]}")
    fi
    if [[ -n $suite_b ]]; then
        realigned=("${missing_pkgs[@]}")
        for pkg in "${!inst[@]}"; do
            if [[ " ${siblings[*]} " == *" $pkg "* ]]; then
                realigned+=("$pkg/$suite_b")
            else
                realigned+=("$pkg=${inst[$pkg]}")
            fi
        done
        names+=("realign: $why_b")
        plans+=("--allow-downgrades ${realigned[*]}")
    fi

    local i why chosen=-1 report=''
    local -a args
    for i in "${!plans[@]}"; do
        read -r -a args <<<"${plans[$i]}"
        why=$(_pkg_simulate "${args[@]}")
        if [[ -z $why ]]; then
            chosen=$i
            break
        fi
        report+=$'\n'"  plan '${names[$i]}' (apt-get install ${plans[$i]}): $why"
    done
    ((chosen >= 0)) || _pkg_die "cannot install ${missing_pkgs[*]} (for $what): no apt plan works (one must resolve and remove nothing):$report"

    read -r -a args <<<"${plans[$chosen]}"
    if [[ ${NFKIT_PKG_PLAN_ONLY:-} == 1 ]]; then
        _pkg_log "NFKIT_PKG_PLAN_ONLY=1: would run apt-get install ${args[*]} (plan '${names[$chosen]}')"
        exit 0
    fi
    _pkg_log "installing ${missing_pkgs[*]} (plan '${names[$chosen]}'): apt-get install ${args[*]}"
    local aptlog rc=0
    aptlog=$(mktemp)
    LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout="${NFKIT_APT_LOCK_TIMEOUT:-300}" "${args[@]}" >"$aptlog" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$aptlog" >&2
        rm -f "$aptlog"
        _pkg_die "apt-get install ${args[*]} failed (exit $rc); still missing: $what"
    fi
    rm -f "$aptlog"
    for pkg in "${!inst[@]}"; do
        v=$(_pkg_installed_version "$pkg")
        [[ $v == "${inst[$pkg]}" ]] || _pkg_log "note: $pkg changed from ${inst[$pkg]} to ${v:-(removed)}"
    done

    # Every command again, not only the ones that were missing.
    local -a still=()
    for spec in "$@"; do
        cmd=${spec%%:*} pkg=${spec#*:}
        _pkg_have "$cmd" && continue
        if [[ -n $(_pkg_installed_version "$pkg") ]]; then
            still+=("$cmd (package $pkg is installed without it: apt-get install --reinstall $pkg?)")
        else
            still+=("$cmd (package $pkg)")
        fi
    done
    if ((${#still[@]})); then
        what="${still[*]}"
        _pkg_die "after apt-get install, still missing: ${what//) /), }"
    fi
    _pkg_log "installed ${missing_pkgs[*]}"
}
