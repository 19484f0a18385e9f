# shellcheck shell=bash
# ansible (issue 13): the collection nfkit.netfilter driven by a real
# `ansible-playbook` inside the guest, against localhost (`-c local`), on a
# real kernel with loadable modules. The guest has python3 but no network and
# no pip, so the host step ships ansible-core and the packages it imports
# (from the venv of tests/support/ansible-venv, with their __pycache__:
# ansible-core 2.17 for bookworm's python 3.11 and trixie's 3.13; for
# bullseye's python 3.9, which 2.17 does not support as controller, the
# `--for-python 3.9` site with ansible-core 2.15, no __pycache__) and the
# collection, built by contrib/ansible/nfkit/netfilter/build from the
# payload's own nfkit and installed from its tarball with
# `ansible-galaxy collection install`. The same playbooks and oracles on
# every kernel; the guest checks that the ansible-core the host step
# shipped ($PAYLOAD/ansible/version) is the one that ran.
#
# Boot `main` (systemd): one playbook (one ansible start-up costs tens of
# seconds under TCG); between its steps, debug tasks record the guest's own
# /proc/modules, /sys/module parameter and persistence files through a
# `pipe` lookup on the controller (the guest itself): an oracle that never
# runs nfkit. Shown:
#   - check mode: kmod present and persistent=present report changed, with
#     diffs; no module loaded, no file written;
#   - kmod loads a module that is not loaded (changed), again: not changed;
#     params of a module that is not loaded are passed to it (/sys/module);
#   - persistent=present writes modprobe.d and the boot list of the host's
#     layout (and nfkit.toml); again: not changed; `nfkit verify` agrees;
#   - params that differ on a loaded module: check mode reports the change
#     (before/after), a real run fails naming the parameter (the module is
#     not reloaded: it keeps its value);
#   - state=absent in check mode changes nothing; then it unloads (changed);
#     again: not changed;
#   - facts: ansible_facts.nfkit lists exactly the loaded modules.
# Boot `reboot` (systemd, same disk): systemd loaded the persisted module with
# its parameter, the unloaded one stays out, `nfkit verify` agrees, the same
# kmod task is not changed and writes nothing.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="Ansible collection: ansible-playbook in the guest drives nfkit.netfilter.kmod/facts on the real kernel"
SCENARIO_BOOTS="main persist@systemd +reboot@systemd"

ANS_LOAD=xt_multiport     # loaded, then unloaded (no parameters)
ANS_PARAM=nf_conntrack_ftp # loaded with a parameter, persisted
ANS_PORTS=2121

# ---- host ----------------------------------------------------------------

# ansible_payload: ansible-core and the packages ansible-playbook and
# ansible-galaxy import, copied into $PAYLOAD_DIR/ansible/site: for
# bookworm and trixie from the cached venv (ansible-core 2.17) with their
# __pycache__ (valid for the guest's python 3.11; trixie's 3.13 compiles its
# own); for bullseye (python 3.9) from the `--for-python 3.9` site
# (ansible-core 2.15, cp39 wheels, no byte code: the guest compiles its
# own). Its ansible-core version goes to $PAYLOAD_DIR/ansible/version. Then
# the collection tarball built from the payload's nfkit (with the venv's
# ansible-galaxy, on this host) and the tests' JSON callback.
ansible_payload() {
    local repo venv site='' built tarball
    repo=$(cd "$VM_TESTS_DIR/.." && pwd)
    venv=$("$repo/tests/support/ansible-venv" | tail -n 1)
    if [[ $VM_SUITE == bullseye ]]; then
        site=$("$repo/tests/support/ansible-venv" --for-python 3.9 | tail -n 1)
    fi
    mkdir -p "$PAYLOAD_DIR/ansible/site" "$PAYLOAD_DIR/ansible/callback_plugins"
    # cryptography (and its cffi) is left out: ansible-core imports it only
    # for Vault, which the playbooks here do not use. ansible_test is
    # ansible-test's, not needed to run a playbook. importlib-resources is
    # ansible-core 2.15's dependency on python < 3.10 (ansible-galaxy's).
    "$venv/bin/python" - "$PAYLOAD_DIR/ansible" "$site" <<'PY'
import importlib.metadata as md, os, shutil, sys
dest, site = sys.argv[1], sys.argv[2]
names = ["ansible-core", "jinja2", "MarkupSafe", "PyYAML", "packaging", "resolvelib"]
if site:
    names.append("importlib-resources")
search = [site] if site else sys.path
for name in names:
    found = list(md.distributions(name=name, path=search))
    if len(found) != 1:
        sys.exit(f"{name}: {len(found)} distributions in {search}")
    dist = found[0]
    if name == "ansible-core":
        with open(os.path.join(dest, "version"), "w") as f:
            f.write(dist.version + "\n")
    for f in dist.files:
        parts = f.parts
        if parts[0] in ("..", "ansible_test") or parts[0].endswith(".data"):
            continue
        if site and "__pycache__" in parts:
            continue
        src = f.locate()
        if not os.path.isfile(src):
            continue
        out = os.path.join(dest, "site", *parts)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(src, out)
PY
    built=$(NFKIT_BINARY=$PAYLOAD_DIR/nfkit ANSIBLE_GALAXY=$venv/bin/ansible-galaxy \
        "$repo/contrib/ansible/nfkit/netfilter/build")
    tarball=$(printf '%s\n' "$built" | tail -n 1)
    [[ -f $tarball ]] || { echo "build printed no tarball: $built" >&2; return 1; }
    # Installed here, from the tarball, as a user would (ansible-galaxy
    # in the guest would cost a minute of a TCG boot's 300 s).
    "$venv/bin/ansible-galaxy" collection install --offline --force \
        -p "$PAYLOAD_DIR/ansible/collections" "$tarball"
    cp "$repo/tests/ansible/callback_plugins/nfkit_json.py" "$PAYLOAD_DIR/ansible/callback_plugins/"
    echo "ansible-core $(cat "$PAYLOAD_DIR/ansible/version") for $VM_SUITE"
    du -sh "$PAYLOAD_DIR/ansible"
}

host_main() { ansible_payload; }
host_persist() { ansible_payload; }
host_reboot() { ansible_payload; }

# ---- guest ---------------------------------------------------------------

ANS_WORK=/root/nfkit-ansible

ansible_env() {
    export PYTHONPATH=$PAYLOAD/ansible/site
    export ANSIBLE_COLLECTIONS_PATH=$PAYLOAD/ansible/collections
    export ANSIBLE_STDOUT_CALLBACK=nfkit_json
    export ANSIBLE_CALLBACK_PLUGINS=$PAYLOAD/ansible/callback_plugins
    export ANSIBLE_LOCAL_TEMP=$ANS_WORK/tmp-local ANSIBLE_REMOTE_TMP=$ANS_WORK/tmp-remote
    export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=false
    export LC_ALL=C.UTF-8 HOME=/root
}

# load_report NAME: the results of $OUT/NAME.json into R["TASK/PATH"] (one
# jq run: each jq start costs seconds under TCG). PATH is the result's key
# path joined by dots (`changed`, `msg.modules`, `diff.0.before`); besides,
# `TASK/live` (the modules a facts task calls loaded, one a line) and
# `TASK/written` (the files an apply report changed).
declare -A R
load_report() {
    local k v
    R=()
    while IFS= read -r -d '' k && IFS= read -r -d '' v; do
        R[$k]=$v
    done < <(jq -j '
        .plays[].tasks[] | .task.name as $n | .hosts.localhost
        | ( (del(.apply, .unload, .ansible_facts)
             | paths(type != "object" and type != "array") as $p
             | "\($n)/\($p | map(tostring) | join("."))", (getpath($p) | tostring)),
            (if .ansible_facts then "\($n)/live",
                ([.ansible_facts.nfkit.modules.modules[] | select(.state == "live") | .name] | join("\n"))
             else empty end),
            (if .apply then "\($n)/written",
                ([.apply.files[] | select(.action != "unchanged") | .path] | join("\n"))
             else empty end) )
        | . + "\u0000"' "$OUT/$1.json")
}

# get TASK/PATH: that value of the loaded report ("<missing>" when absent).
get() { printf '%s' "${R[$1]-<missing>}"; }

# snap NAME VIEW: view VIEW (modules, ports, files) of snapshot NAME.
snap() {
    local text=${R["snapshot $1/msg"]-<missing>}
    text=${text#*"=== $2"$'\n'}
    printf '%s' "${text%%$'\n'===*}"
}

# The oracle, independent of nfkit: the loaded modules' names (the guest's
# /proc/modules, sorted), the parameter of $ANS_PARAM (/sys/module, or "not
# loaded"), the persistence files nfkit may write with their contents.
# Playbooks run it through a `pipe` lookup on the controller (this guest).
write_oracle() {
    cat >"$ANS_WORK/oracle" <<EOF
#!/bin/sh
echo "=== modules"
cut -d' ' -f1 /proc/modules | sort
echo "=== ports"
cat /sys/module/$ANS_PARAM/parameters/ports 2>/dev/null || echo "not loaded"
echo "=== files"
for f in /etc/nfkit/nfkit.toml /etc/modules-load.d/nfkit.conf /etc/modprobe.d/nfkit.conf /etc/modules; do
    if [ -f "\$f" ]; then echo "== \$f"; cat "\$f"; else echo "== \$f absent"; fi
done
echo "=== end"
EOF
    chmod 0755 "$ANS_WORK/oracle"
}

# snapshot_task NAME: a debug task "snapshot NAME" whose msg is the oracle's.
snapshot_task() {
    cat <<EOF
    - name: snapshot $1
      ansible.builtin.debug:
        msg: "{{ lookup('ansible.builtin.pipe', '$ANS_WORK/oracle') }}"
EOF
}

# snap_file NAME PATH: the content of file PATH in snapshot NAME.
snap_file() {
    local text
    text=$(snap "$1" files)$'\n'
    [[ $text == *"== $2"$'\n'* ]] || return 0
    text=${text#*"== $2"$'\n'}
    printf '%s' "${text%%$'\n'==*}"
}

# kmod_task NAME MODULE STATE PERSISTENT PORTS|- [check]: a kmod task.
kmod_task() {
    printf '    - name: %s\n      nfkit.netfilter.kmod:\n        name: %s\n' "$1" "$2"
    [[ $3 == present ]] || printf '        state: %s\n' "$3"
    [[ $4 == disabled ]] || printf '        persistent: %s\n' "$4"
    [[ $5 == - ]] || printf '        params:\n          ports: %s\n' "$5"
    [[ ${6:-} != check ]] || printf '      check_mode: true\n      diff: true\n'
}

play_header() {
    printf -- '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
}

write_main_playbook() {
    {
        play_header
        cat <<'EOF'
    - name: versions
      ansible.builtin.debug:
        msg: "{{ ansible_version.full }} {{ ansible_playbook_python }}"
EOF
        snapshot_task start
        kmod_task "load, check mode" "$ANS_LOAD" present disabled - check
        kmod_task "load with params, check mode" "$ANS_PARAM" present disabled "$ANS_PORTS" check
        snapshot_task "after check mode"
        kmod_task load "$ANS_LOAD" present disabled -
        kmod_task "load again" "$ANS_LOAD" present disabled -
        kmod_task "load with params" "$ANS_PARAM" present disabled "$ANS_PORTS"
        printf '    - name: facts\n      nfkit.netfilter.facts:\n'
        snapshot_task loaded
        kmod_task "other params, check mode" "$ANS_PARAM" present disabled $((ANS_PORTS + 1)) check
        kmod_task "other params" "$ANS_PARAM" present disabled $((ANS_PORTS + 1))
        printf '      ignore_errors: true\n'
        kmod_task "unload, check mode" "$ANS_LOAD" absent disabled - check
        snapshot_task "after other params"
        kmod_task unload "$ANS_LOAD" absent disabled -
        kmod_task "unload again" "$ANS_LOAD" absent disabled -
        snapshot_task unloaded
    } >"$ANS_WORK/main.yml"
}

write_persist_playbook() {
    {
        play_header
        snapshot_task start
        kmod_task "persist, check mode" "$ANS_PARAM" present present "$ANS_PORTS" check
        snapshot_task "after check mode"
        kmod_task persist "$ANS_PARAM" present present "$ANS_PORTS"
        kmod_task "persist again" "$ANS_PARAM" present present "$ANS_PORTS"
        snapshot_task persisted
    } >"$ANS_WORK/persist.yml"
}

# After the reboot: the persisted module is dropped (unloaded and out of the
# boot files) with state=absent persistent=absent.
write_reboot_playbook() {
    {
        play_header
        snapshot_task boot
        kmod_task "persist again" "$ANS_PARAM" present present "$ANS_PORTS"
        kmod_task "drop, check mode" "$ANS_PARAM" absent absent - check
        snapshot_task "after check mode"
        kmod_task drop "$ANS_PARAM" absent absent -
        snapshot_task dropped
    } >"$ANS_WORK/reboot.yml"
}

# playbook NAME: runs $ANS_WORK/NAME.yml against localhost with the guest's
# python3; the JSON report goes to $OUT/NAME.json, stderr to
# $OUT/NAME.stderr (both shown when it fails). Status: ansible-playbook's.
playbook() {
    local name=$1 rc=0 start
    start=$(date +%s)
    python3 -m ansible.cli.playbook -i localhost, -c local \
        -e ansible_python_interpreter=/usr/bin/python3 \
        "$ANS_WORK/$name.yml" >"$OUT/$name.json" 2>"$OUT/$name.stderr" || rc=$?
    echo "ansible-playbook $name.yml: status $rc after $(($(date +%s) - start)) s"
    ((rc == 0)) || cat "$OUT/$name.json" "$OUT/$name.stderr"
    return "$rc"
}

# ansible_ready: the shipped ansible-core and collection. A failure fails
# the scenario (no skip).
ansible_ready() {
    ansible_env
    mkdir -p "$ANS_WORK"
    note "guest python: $(python3 --version 2>&1)"
    check_same_file "the installed collection's kmod is the payload's nfkit" \
        "$NFKIT" "$PAYLOAD/ansible/collections/ansible_collections/nfkit/netfilter/plugins/modules/kmod" || return 1
    write_oracle
}

# run_playbook NAME: runs it and loads its report; a failure ends the boot.
run_playbook() {
    check "ansible-playbook $1.yml runs in the guest" playbook "$1" || return 1
    note "$CHECK_OUTPUT"
    cp "$ANS_WORK/$1.yml" "$OUT/"
    load_report "$1"
}

# in_list NAME TEXT: 1 when NAME is a line of TEXT, else 0.
in_list() { grep -cx -- "$1" <<<"$2"; }

# facts_match_oracle TASK SNAPSHOT: the facts task calls loaded only modules
# in the snapshot's /proc/modules, nf_conntrack among them, and this
# scenario's two modules exactly when loaded.
facts_match_oracle() {
    local names mods m stray=''
    names=$(get "$1/live")
    mods=$(snap "$2" modules)
    check_eq "$1: nf_conntrack is loaded" 1 "$(in_list nf_conntrack "$names")"
    for m in $names; do
        [[ $(in_list "$m" "$mods") == 1 ]] || stray+=" $m"
    done
    check_eq "$1: every module it calls loaded is in /proc/modules" "" "$stray"
    for m in "$ANS_LOAD" "$ANS_PARAM"; do
        check_eq "$1: $m listed exactly when in /proc/modules" "$(in_list "$m" "$mods")" "$(in_list "$m" "$names")"
    done
}

boot_main() {
    local other=$((ANS_PORTS + 1))
    ansible_ready || return 0
    write_main_playbook
    run_playbook main || return 0
    check_match "ansible-core $(cat "$PAYLOAD/ansible/version") (the payload's) ran it" \
        "^$(sed 's/[.]/\\./g' "$PAYLOAD/ansible/version") " "$(get versions/msg)"
    note "ansible and controller python: $(get versions/msg)"

    check_eq "$ANS_LOAD is not loaded at the start" 0 "$(in_list "$ANS_LOAD" "$(snap start modules)")"
    check_eq "$ANS_PARAM is not loaded at the start" 0 "$(in_list "$ANS_PARAM" "$(snap start modules)")"

    # Check mode: everything would change, nothing does.
    check_eq "load, check mode: changed" true "$(get 'load, check mode/changed')"
    check_eq "... diff before: not loaded" "module $ANS_LOAD = not loaded" "$(get 'load, check mode/diff.0.before')"
    check_eq "... diff after: loaded" "module $ANS_LOAD = loaded" "$(get 'load, check mode/diff.0.after')"
    check_eq "load with params, check mode: changed" true "$(get 'load with params, check mode/changed')"
    check_eq "check mode loaded no module (/proc/modules)" "$(snap start modules)" "$(snap 'after check mode' modules)"

    # Load.
    check_eq "load: changed" true "$(get load/changed)"
    check_eq "... $ANS_LOAD is in /proc/modules" 1 "$(in_list "$ANS_LOAD" "$(snap loaded modules)")"
    check_eq "load again: not changed" false "$(get 'load again/changed')"
    check_eq "load with params: changed" true "$(get 'load with params/changed')"
    check_eq "... $ANS_PARAM is in /proc/modules" 1 "$(in_list "$ANS_PARAM" "$(snap loaded modules)")"
    check_eq "... with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap loaded ports)"
    facts_match_oracle facts loaded

    # A parameter that differs on the loaded module.
    check_eq "other params, check mode: changed" true "$(get 'other params, check mode/changed')"
    check_match "... diff before: ports = $ANS_PORTS" "ports = $ANS_PORTS" "$(get 'other params, check mode/diff.0.before')"
    check_match "... diff after: ports = $other" "ports = $other" "$(get 'other params, check mode/diff.0.after')"
    check_eq "other params: the task failed" true "$(get 'other params/failed')"
    check_match "... its message names the parameter and both values" \
        "$ANS_PARAM\.ports: $ANS_PORTS \(wanted $other\)" "$(get 'other params/msg')"
    note "other params: msg: $(get 'other params/msg')"
    note "other params: hint: $(get 'other params/hint')"
    check_eq "... the module kept ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap 'after other params' ports)"
    check_eq "unload, check mode: changed" true "$(get 'unload, check mode/changed')"
    check_eq "... diff after: not loaded" "module $ANS_LOAD = not loaded" "$(get 'unload, check mode/diff.0.after')"
    check_eq "other params and unload check mode changed no module (/proc/modules)" \
        "$(snap loaded modules)" "$(snap 'after other params' modules)"

    # Unload.
    check_eq "unload: changed" true "$(get unload/changed)"
    check_eq "... $ANS_LOAD is gone from /proc/modules" 0 "$(in_list "$ANS_LOAD" "$(snap unloaded modules)")"
    check_eq "... $ANS_PARAM is still loaded" 1 "$(in_list "$ANS_PARAM" "$(snap unloaded modules)")"
    check_eq "unload again: not changed" false "$(get 'unload again/changed')"
    check_eq "without persistent, no file was written" "$(snap start files)" "$(snap unloaded files)"
    check_eq "the guest's /proc/modules agrees with the last snapshot" "$(snap unloaded modules)" \
        "$(cut -d' ' -f1 /proc/modules | sort)"
}

boot_persist() {
    local files f written
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    ansible_ready || return 0
    write_persist_playbook
    run_playbook persist || return 0
    check_eq "$ANS_PARAM is not loaded at the start" 0 "$(in_list "$ANS_PARAM" "$(snap start modules)")"
    check_eq "persist, check mode: changed" true "$(get 'persist, check mode/changed')"
    check_match "... a diff shows the modprobe.d option" "options $ANS_PARAM ports=$ANS_PORTS" \
        "$(get 'persist, check mode/diff.0.prepared') $(get 'persist, check mode/diff.1.prepared') $(get 'persist, check mode/diff.2.prepared')"
    check_eq "... no module loaded (/proc/modules)" "$(snap start modules)" "$(snap 'after check mode' modules)"
    check_eq "... no file written" "$(snap start files)" "$(snap 'after check mode' files)"

    check_eq "persist: changed" true "$(get persist/changed)"
    check_eq "... $ANS_PARAM is in /proc/modules" 1 "$(in_list "$ANS_PARAM" "$(snap persisted modules)")"
    check_eq "... with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap persisted ports)"
    check_eq "persist again: not changed" false "$(get 'persist again/changed')"
    files=$(snap persisted files)
    printf '%s\n' "$files" | record files-persisted
    written=$(get persist/written)
    note "persist wrote: $(tr '\n' ' ' <<<"$written")"
    # The boot list of this host's layout (systemd: modules-load.d).
    check_eq "... modules-load.d/nfkit.conf" 1 "$(in_list /etc/modules-load.d/nfkit.conf "$written")"
    check_eq "... which lists $ANS_PARAM" 1 "$(in_list "$ANS_PARAM" "$(snap_file persisted /etc/modules-load.d/nfkit.conf)")"
    check_eq "... modprobe.d/nfkit.conf with the option" "options $ANS_PARAM ports=$ANS_PORTS" \
        "$(grep "^options" <<<"$(snap_file persisted /etc/modprobe.d/nfkit.conf)")"
    for f in $written; do
        check "$f names $ANS_PARAM" grep -q "$ANS_PARAM" "$f"
    done
    check "nfkit verify agrees (desired = running = next boot)" "$NFKIT" verify
    record verify <<<"$CHECK_OUTPUT"
}

boot_reboot() {
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    ansible_ready || return 0
    write_reboot_playbook
    run_playbook reboot || return 0
    check_eq "systemd loaded the persisted $ANS_PARAM at boot" 1 "$(in_list "$ANS_PARAM" "$(snap boot modules)")"
    check_eq "... with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap boot ports)"
    check_eq "the files are those written before the reboot" "$(cat "$PREV/persist/files-persisted")" "$(snap boot files)"
    check_eq "persist again after the reboot: not changed" false "$(get 'persist again/changed')"

    check_eq "drop (absent, persistent absent), check mode: changed" true "$(get 'drop, check mode/changed')"
    check_eq "... no module unloaded (/proc/modules)" "$(snap boot modules)" "$(snap 'after check mode' modules)"
    check_eq "... no file changed" "$(snap boot files)" "$(snap 'after check mode' files)"
    check_eq "drop: changed" true "$(get drop/changed)"
    check_eq "... $ANS_PARAM is gone from /proc/modules" 0 "$(in_list "$ANS_PARAM" "$(snap dropped modules)")"
    check_fails "... and from modules-load.d and modprobe.d" grep -q "$ANS_PARAM" \
        <(snap_file dropped /etc/modules-load.d/nfkit.conf; snap_file dropped /etc/modprobe.d/nfkit.conf)
    check "nfkit verify agrees after the drop" "$NFKIT" verify
    record verify <<<"$CHECK_OUTPUT"
}
