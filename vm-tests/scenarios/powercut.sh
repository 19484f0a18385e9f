# shellcheck shell=bash
# powercut (issue 11 §3): crash-consistency trials. The guest's data disk
# (vdc, serial nfkit-logged) sits behind qemu's blklogwrites driver, which
# records every write and flush the guest sends it, in the dm-log-writes
# format, on the host. The guest mounts it (ext4, default data=ordered) at
# /mnt/data and runs `nfkit --root /mnt/data` through a sequence of desired
# states: nfkit's offline mode writes exactly the files it writes on a live
# host, under the root, and the disk holds nothing else that changes.
#
# After each step the guest copies every file under /mnt/data/etc to
# $OUT/steps/NN/tree (the versions the step was meant to leave) and writes a
# mark file whose data block ("NFKIT-POWERCUT-MARK NN") the host finds in the
# log, followed by a flush: the log entries between two marks are one step's.
#
# The host side (compare) replays the log into crash states and checks each
# one: tests/powercut.rs (`replay_vm_log`), see README "Power cuts".
#
# Boot "crash": the host step (host_crash) keeps one crash state per step as
# a raw image, its journal not replayed, attached as a disk with serial
# crash-NN; the guest mounts each (the kernel replays the journal, as after
# a real power cut), then `apply --check` must name exactly the files that
# differ from the step nfkit.toml describes, `apply` must converge them to
# that step's bytes, and `verify` must then agree.
#
# Negative control: /etc/naive.conf is rewritten carelessly (removed, created
# and written, no fsync) at the start of every step; the checker must flag it.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="power cuts: nfkit apply on a logged ext4 disk, every crash state replayed and checked on the host"
SCENARIO_BOOTS="run crash"
SCENARIO_LOGGED_DISK=32M
SCENARIO_LOGGED_BOOTS="run"

PCS_ROOT=/mnt/data
PCS_STEP=0

# pcs_write PATH: stdin becomes PATH under the root, atomically and durably
# (the harness's own inputs must not be what the checker catches).
pcs_write() {
    local f=$PCS_ROOT$1
    mkdir -p "$(dirname "$f")"
    cat >"$f.pcs-tmp"
    sync "$f.pcs-tmp"
    mv "$f.pcs-tmp" "$f"
    sync "$(dirname "$f")"
}

# pcs_naive: the negative control, a careless rewrite: the old file
# removed, the new one created and written, nothing fsynced. (A plain
# `>file` truncation is partly rescued by ext4's auto_da_alloc heuristic,
# which starts writeback at close; a new inode is not.)
pcs_naive() {
    local i
    rm -f "$PCS_ROOT/etc/naive.conf"
    for ((i = 0; i < 40; i++)); do
        printf 'naive writer, step %02d, line %02d: %s\n' "$PCS_STEP" "$i" "$(printf '%060d' "$PCS_STEP")"
    done >"$PCS_ROOT/etc/naive.conf"
}

# pcs_end_step NAME: record what step PCS_STEP left, then mark the log.
pcs_end_step() {
    local dir
    dir=$OUT/steps/$(printf '%02d' "$PCS_STEP")
    mkdir -p "$dir/tree"
    cp -a "$PCS_ROOT/etc" "$dir/tree/"
    printf '%s\n' "$1" >"$dir/name"
    (cd "$dir/tree" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$dir/sha256"
    mkdir -p "$PCS_ROOT/marks"
    printf 'NFKIT-POWERCUT-MARK %02d\n' "$PCS_STEP" >"$PCS_ROOT/marks/$PCS_STEP"
    sync
    PCS_STEP=$((PCS_STEP + 1))
}

# pcs_toml: the desired state, written by the admin (atomically).
pcs_toml() { pcs_write /etc/nfkit/nfkit.toml; }

pcs_apply() {   # pcs_apply DESC [NFKIT ARGS...] (default: apply)
    local desc=$1
    shift
    (($#)) || set -- apply
    check "step $PCS_STEP: $desc" "$NFKIT" --root "$PCS_ROOT" "$@"
}

boot_run() {
    local dev='' d
    for d in /sys/block/vd*; do
        [[ $(cat "$d/serial" 2>/dev/null) == nfkit-logged ]] && dev=/dev/${d##*/}
    done
    check "the logged disk is attached (serial nfkit-logged)" test -n "$dev" || return 0
    check_eq "it is vdc (root and payload keep vda and vdb)" /dev/vdc "$dev"
    mkdir -p "$PCS_ROOT"
    check "mount the logged disk (ext4, data=ordered)" mount -t ext4 -o data=ordered "$dev" "$PCS_ROOT" || return 0
    record mount-options < <(grep " $PCS_ROOT " /proc/mounts)

    # Step 0: a Debian host with systemd, /etc/modules and an EL-style
    # iptables-config (every target nfkit has, on one root).
    local r=$PCS_ROOT
    mkdir -p "$r"/etc/{modules-load.d,modprobe.d,sysctl.d,sysconfig,nfkit} "$r/lib/systemd" "$r/sbin"
    : >"$r/lib/systemd/systemd"
    ln -s /lib/systemd/systemd "$r/sbin/init"
    echo 12.5 >"$r/etc/debian_version"
    printf '# /etc/modules: kernel modules to load at boot time.\nloop\n' >"$r/etc/modules"
    printf '# Load additional iptables modules\nIPTABLES_MODULES=""\n# Unload modules on restart and stop\nIPTABLES_MODULES_UNLOAD="no"\n' \
        >"$r/etc/sysconfig/iptables-config"
    : >"$r/etc/sysconfig/iptables"
    pcs_naive
    sync
    pcs_end_step "base layout"

    # 1: create the files.
    pcs_naive
    pcs_toml <<'EOF'
[modules]
load = ["xt_state"]

[conntrack]
max = 100000

[persist]
targets = ["modules-load.d", "modprobe.d", "sysctl.d"]
EOF
    pcs_apply "create: modules-load.d, sysctl.d"
    pcs_end_step "create"

    # 2: update every file nfkit owns.
    pcs_naive
    pcs_toml <<'EOF'
[modules]
load = ["xt_state", "iptable_nat", "nf_conntrack_ftp"]

[modules.options.nf_conntrack]
expect_hashsize = 1024

[conntrack]
max = 250000
buckets = 65536

[sysctl]
"net.netfilter.nf_conntrack_tcp_timeout_established" = 86400

[persist]
targets = ["modules-load.d", "modprobe.d", "sysctl.d"]
EOF
    pcs_apply "update: modules, options, sysctls"
    pcs_end_step "update"

    # 3: a later sysctl.d file overrides nfkit's: nfkit moves its file to
    # 99-zz-nfkit.conf (create one, remove the other).
    pcs_naive
    echo 'net.netfilter.nf_conntrack_max = 5000' | pcs_write /etc/sysctl.d/95-admin.conf
    pcs_apply "override: 90-nfkit.conf becomes 99-zz-nfkit.conf"
    pcs_end_step "override"

    # 4: IPTABLES_MODULES edited in place.
    pcs_naive
    pcs_toml <<'EOF'
[modules]
load = ["xt_state", "iptable_nat", "nf_conntrack_ftp"]

[modules.options.nf_conntrack]
expect_hashsize = 1024

[conntrack]
max = 250000
buckets = 65536

[sysctl]
"net.netfilter.nf_conntrack_tcp_timeout_established" = 86400

[persist]
targets = ["modules-load.d", "modprobe.d", "sysctl.d", "iptables-config"]
EOF
    pcs_apply "iptables-config: IPTABLES_MODULES in place"
    pcs_end_step "iptables-config"

    # 5: the marked block in /etc/modules.
    pcs_naive
    pcs_toml <<'EOF'
[modules]
load = ["xt_state", "iptable_nat", "nf_conntrack_ftp"]

[modules.options.nf_conntrack]
expect_hashsize = 1024

[conntrack]
max = 250000
buckets = 65536

[sysctl]
"net.netfilter.nf_conntrack_tcp_timeout_established" = 86400

[persist]
targets = ["modules-load.d", "modprobe.d", "sysctl.d", "iptables-config", "etc-modules"]
EOF
    pcs_apply "/etc/modules: the nfkit block"
    pcs_end_step "etc-modules"

    # 6, 7: one-off commands with --persist edit nfkit.toml (comments and
    # order kept) and write the files under one lock hold.
    pcs_naive
    pcs_apply "conntrack set --persist edits nfkit.toml" conntrack set --max 300000 --buckets 131072 --persist
    pcs_end_step "conntrack set --persist"

    pcs_naive
    pcs_apply "modules load --persist edits nfkit.toml" modules load nf_nat_ftp --persist
    pcs_end_step "modules load --persist"

    # 8: shrink: fewer modules, a sysctl dropped.
    pcs_naive
    pcs_toml <<'EOF'
[modules]
load = ["xt_state"]

[conntrack]
max = 120000

[persist]
targets = ["modules-load.d", "modprobe.d", "sysctl.d", "iptables-config", "etc-modules"]
EOF
    pcs_apply "shrink: modules and keys removed"
    pcs_end_step "shrink"

    check "verify --root agrees at the end" "$NFKIT" --root "$PCS_ROOT" verify
    check "umount the logged disk" umount "$PCS_ROOT"
    record steps-count < <(echo "$PCS_STEP")
}

host_crash() {
    ensure_packages e2fsck:e2fsprogs debugfs:e2fsprogs || return 1
    # Fewer states are enough to pick one per step; compare runs them all.
    NFKIT_POWERCUT_RUN="$RESULTS/run" NFKIT_POWERCUT_EXPORT="$EXTRA_DISKS" \
        NFKIT_POWERCUT_INSIDE=4 NFKIT_POWERCUT_SUBSETS=8 NFKIT_POWERCUT_MIN_STATES=0 \
        cargo test --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --test powercut -- \
        --ignored --exact replay_vm_log --nocapture || return 1
    mkdir -p "$PAYLOAD_DIR/crash"
    mv "$EXTRA_DISKS"/*.expect "$PAYLOAD_DIR/crash/"
}

# crash_one DEV NAME: one crash state's checks.
crash_one() {
    local dev=$1 name=$2 exp=$PAYLOAD/crash/$2.expect mnt=/mnt/$2 target want got p rc=0
    target=$(awk '$1 == "target" { print $2 }' "$exp")
    mkdir -p "$mnt"
    check "$name: the kernel mounts it (journal replayed at mount)" mount -t ext4 "$dev" "$mnt" || return 0
    "$NFKIT" --root "$mnt" verify >"/tmp/$name.verify" 2>&1 || true
    record "$name.verify" "/tmp/$name.verify"
    want=$(awk '$1 == "differs" { print $2 }' "$exp" | sort)
    "$NFKIT" --root "$mnt" --json apply --check >"/tmp/$name.check" 2>&1 || rc=$?
    got=$(jq -r '.files[] | select(.action != "unchanged") | .path' "/tmp/$name.check" | sed 's|^/||' | sort)
    check_eq "$name: apply --check names exactly the files that differ from step $target" "$want" "$got"
    check_eq "$name: apply --check exit status" "$([[ -n $want ]] && echo 3 || echo 0)" "$rc"
    check "$name: apply converges it" "$NFKIT" --root "$mnt" apply
    local wrong=''
    while read -r p; do
        if [[ -f $PREV/run/steps/$target/tree/$p ]]; then
            cmp -s "$PREV/run/steps/$target/tree/$p" "$mnt/$p" || wrong+=" $p"
        elif [[ -e $mnt/$p ]]; then
            wrong+=" $p(should be absent)"
        fi
    done < <(awk '$1 == "output" { print $2 }' "$exp")
    check_eq "$name: every file nfkit owns is step $target's after apply" "" "$wrong"
    check "$name: verify agrees after apply" "$NFKIT" --root "$mnt" verify
    check "$name: umount" umount "$mnt"
    check "$name: e2fsck -fn clean after the kernel's recovery and apply" e2fsck -fn "$dev"
}

boot_crash() {
    local d name n=0
    for d in /sys/block/vd*; do
        name=$(cat "$d/serial" 2>/dev/null) || continue
        [[ $name == crash-* ]] || continue
        n=$((n + 1))
        crash_one "/dev/${d##*/}" "$name"
    done
    check_eq "one crash state per step was booted" "$(cat "$PREV/run/steps-count")" "$n"
}

compare() {
    ensure_packages e2fsck:e2fsprogs debugfs:e2fsprogs qemu-io:qemu-utils >&2 || {
        _check_report 1 "host tools for the replay (e2fsck, debugfs, qemu-io)"
        return 0
    }
    local out=$RESULTS/replay
    mkdir -p "$out"
    check "the guest recorded its steps" test -s "$RESULTS/run/steps-count" || return 0
    check "crash states replayed from the log: 0 bad for nfkit, the negative control caught" \
        env NFKIT_POWERCUT_RUN="$RESULTS/run" NFKIT_POWERCUT_REPORT="$out/report.txt" \
        cargo test --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --test powercut -- \
        --ignored --exact replay_vm_log --nocapture
    cp /dev/null "$out/check-output.txt"
    printf '%s\n' "$CHECK_OUTPUT" >"$out/check-output.txt"
    [[ -f $out/report.txt ]] && sed -n '/^summary/,$p' "$out/report.txt"
    return 0
}
