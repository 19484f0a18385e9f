# shellcheck shell=bash
# ansible (issue 13): the collection nfkit.netfilter driven by a real
# `ansible-playbook` inside the guest, against localhost (`-c local`), on a
# real kernel with loadable modules. The guest has python3 but no network and
# no pip, so the host step ships ansible-core and the packages it imports
# (from the venv of tests/support/ansible-venv, with their __pycache__) and
# the collection, built by contrib/ansible/nfkit/netfilter/build from the
# payload's own nfkit and installed from its tarball with
# `ansible-galaxy collection install`.
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
SCENARIO_BOOTS="main@systemd +reboot@systemd"
SCENARIO_KERNELS="6.1 6.12"
SCENARIO_KERNELS_WHY="ansible-core 2.17 needs python >= 3.10 on the controller, bullseye has 3.9; the kmod module's Rust side runs in every other scenario on 5.10"

ANS_LOAD=xt_multiport     # loaded, then unloaded (no parameters)
ANS_PARAM=nf_conntrack_ftp # loaded with a parameter, persisted
ANS_PORTS=2121

# ---- host ----------------------------------------------------------------

# ansible_payload: ansible-core and the packages ansible-playbook and
# ansible-galaxy import, copied from the cached venv with their
# __pycache__ (valid for the guest's python 3.11; trixie's 3.13 compiles its
# own), into $PAYLOAD_DIR/ansible/site; the collection tarball built from the
# payload's nfkit; the tests' JSON callback.
ansible_payload() {
    local repo venv built tarball
    repo=$(cd "$VM_TESTS_DIR/.." && pwd)
    venv=$("$repo/tests/support/ansible-venv" | tail -n 1)
    mkdir -p "$PAYLOAD_DIR/ansible/site" "$PAYLOAD_DIR/ansible/callback_plugins"
    # cryptography (and its cffi) is left out: ansible-core imports it only
    # for Vault, which the playbooks here do not use. ansible_test is
    # ansible-test's, not needed to run a playbook.
    "$venv/bin/python" - "$PAYLOAD_DIR/ansible/site" <<'PY'
import importlib.metadata as md, os, shutil, sys
dest = sys.argv[1]
for name in ("ansible-core", "jinja2", "MarkupSafe", "PyYAML", "packaging", "resolvelib"):
    dist = md.distribution(name)
    for f in dist.files:
        parts = f.parts
        if parts[0] in ("..", "ansible_test") or parts[0].endswith(".data"):
            continue
        src = f.locate()
        if not os.path.isfile(src):
            continue
        out = os.path.join(dest, *parts)
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
    du -sh "$PAYLOAD_DIR/ansible"
}

host_main() { ansible_payload; }
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

# task REPORT TASK [JQ]: field JQ (default: the whole result) of task TASK on
# localhost in $OUT/REPORT.json, compact JSON (strings quoted); "missing"
# when the report has no such task.
task() {
    jq -c --arg t "$2" "[.plays[].tasks[] | select(.task.name == \$t) | .hosts.localhost][0] // \"missing\" | ${3:-.}" "$OUT/$1.json"
}

# raw REPORT TASK JQ: like task, strings unquoted.
raw() {
    jq -r --arg t "$2" "[.plays[].tasks[] | select(.task.name == \$t) | .hosts.localhost][0] | $3" "$OUT/$1.json"
}

# The oracle, independent of nfkit: `oracle modules` (the loaded modules'
# names from /proc/modules, sorted), `oracle ports` (the parameter of the
# loaded $ANS_PARAM from /sys/module, or "not loaded"), `oracle files` (the
# persistence files nfkit may write, with their contents). Playbooks read it
# through a `pipe` lookup on the controller (this guest itself): no module,
# no nfkit.
write_oracle() {
    cat >"$ANS_WORK/oracle" <<EOF
#!/bin/sh
case \$1 in
modules) cut -d' ' -f1 /proc/modules | sort ;;
ports) cat /sys/module/$ANS_PARAM/parameters/ports 2>/dev/null || echo "not loaded" ;;
files)
    for f in /etc/nfkit/nfkit.toml /etc/modules-load.d/nfkit.conf /etc/modprobe.d/nfkit.conf /etc/modules; do
        if [ -f "\$f" ]; then echo "== \$f"; cat "\$f"; else echo "== \$f absent"; fi
    done ;;
esac
EOF
    chmod 0755 "$ANS_WORK/oracle"
}

# snapshot_task NAME: a debug task "snapshot NAME" whose msg has the oracle's
# three views.
snapshot_task() {
    cat <<EOF
    - name: snapshot $1
      ansible.builtin.debug:
        msg:
          modules: "{{ lookup('ansible.builtin.pipe', oracle ~ ' modules') }}"
          ports: "{{ lookup('ansible.builtin.pipe', oracle ~ ' ports') }}"
          files: "{{ lookup('ansible.builtin.pipe', oracle ~ ' files') }}"
EOF
}

# snap REPORT NAME VIEW: that view of snapshot NAME.
snap() { raw "$1" "snapshot $2" ".msg.$3"; }

write_main_playbook() {
    local other=$((ANS_PORTS + 1))
    cat >"$ANS_WORK/main.yml" <<EOF
- hosts: localhost
  gather_facts: false
  vars:
    oracle: $ANS_WORK/oracle
  tasks:
    - name: versions
      ansible.builtin.debug:
        msg:
          ansible: "{{ ansible_version.full }}"
          python: "{{ ansible_playbook_python }}"
$(snapshot_task start)
    - name: load, check mode
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
      check_mode: true
      diff: true
    - name: load with params and persist, check mode
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
      check_mode: true
      diff: true
$(snapshot_task "after check mode")
    - name: load
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
    - name: load again
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
    - name: load with params and persist
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
    - name: load with params and persist again
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
    - name: facts loaded
      nfkit.netfilter.facts:
$(snapshot_task loaded)
    - name: other params, check mode
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $other
      check_mode: true
      diff: true
    - name: other params
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params: "ports=$other"
      ignore_errors: true
    - name: unload, check mode
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
      check_mode: true
      diff: true
$(snapshot_task "after other params")
    - name: unload
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
    - name: unload again
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
    - name: facts unloaded
      nfkit.netfilter.facts:
$(snapshot_task unloaded)
EOF
}

write_reboot_playbook() {
    cat >"$ANS_WORK/reboot.yml" <<EOF
- hosts: localhost
  gather_facts: false
  vars:
    oracle: $ANS_WORK/oracle
  tasks:
    - name: load with params and persist
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
$(snapshot_task end)
EOF
}

# ansible_ready: the shipped ansible-core and collection, this boot's
# playbooks. A failure fails the scenario (no skip).
ansible_ready() {
    ansible_env
    mkdir -p "$ANS_WORK"
    note "guest python: $(python3 --version 2>&1)"
    check_same_file "the installed collection's kmod is the payload's nfkit" \
        "$NFKIT" "$PAYLOAD/ansible/collections/ansible_collections/nfkit/netfilter/plugins/modules/kmod" || return 1
    write_oracle
}

# in_list NAME TEXT: 1 when NAME is a line of TEXT, else 0.
in_list() { grep -cx -- "$1" <<<"$2"; }

# facts_match_oracle REPORT TASK SNAPSHOT: the facts task lists as loaded
# exactly the netfilter modules the snapshot's /proc/modules has (those it
# lists at all), and this scenario's two modules exactly when loaded.
facts_match_oracle() {
    local names mods m stray=''
    names=$(raw "$1" "$2" '.ansible_facts.nfkit.modules.modules[] | select(.state == "live") | .name')
    mods=$(snap "$1" "$3" modules)
    check_eq "$2: lists nf_conntrack loaded" 1 "$(in_list nf_conntrack "$names")"
    for m in $names; do
        [[ $(in_list "$m" "$mods") == 1 ]] || stray+=" $m"
    done
    check_eq "$2: every module it calls loaded is in /proc/modules" "" "$stray"
    for m in "$ANS_LOAD" "$ANS_PARAM"; do
        check_eq "$2: $m listed exactly when in /proc/modules" "$(in_list "$m" "$mods")" "$(in_list "$m" "$names")"
    done
}

boot_main() {
    local r=main other=$((ANS_PORTS + 1))
    ansible_ready || return 0
    write_main_playbook
    check "ansible-playbook main.yml runs in the guest" playbook main || return 0
    note "$CHECK_OUTPUT"
    check_eq "ansible-core 2.17.14 ran it" '"2.17.14"' "$(task $r versions .msg.ansible)"
    note "controller python: $(raw $r versions .msg.python)"

    local start
    start=$(snap $r start modules)
    check_eq "$ANS_LOAD is not loaded at the start" 0 "$(in_list "$ANS_LOAD" "$start")"
    check_eq "$ANS_PARAM is not loaded at the start" 0 "$(in_list "$ANS_PARAM" "$start")"

    # Check mode: everything would change, nothing does.
    check_eq "load, check mode: changed" true "$(task $r 'load, check mode' .changed)"
    check_match "... diff: $ANS_LOAD not loaded -> loaded" "module $ANS_LOAD = not loaded.*module $ANS_LOAD = loaded" \
        "$(task $r 'load, check mode' '[.diff[0].before, .diff[0].after] | join(" ")')"
    check_eq "persist, check mode: changed" true "$(task $r 'load with params and persist, check mode' .changed)"
    check_match "... diff shows the modprobe.d option" "options $ANS_PARAM ports=$ANS_PORTS" \
        "$(task $r 'load with params and persist, check mode' .diff)"
    check_eq "check mode loaded no module (/proc/modules)" "$start" "$(snap $r 'after check mode' modules)"
    check_eq "check mode wrote no file" "$(snap $r start files)" "$(snap $r 'after check mode' files)"

    # Converge.
    check_eq "load: changed" true "$(task $r load .changed)"
    check_eq "... $ANS_LOAD is in /proc/modules" 1 "$(in_list "$ANS_LOAD" "$(snap $r loaded modules)")"
    check_eq "load again: not changed" false "$(task $r 'load again' .changed)"
    check_eq "persist: changed" true "$(task $r 'load with params and persist' .changed)"
    check_eq "... $ANS_PARAM is in /proc/modules" 1 "$(in_list "$ANS_PARAM" "$(snap $r loaded modules)")"
    check_eq "... loaded with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap $r loaded ports)"
    check_eq "persist again: not changed" false "$(task $r 'load with params and persist again' .changed)"
    local files written f
    files=$(snap $r loaded files)
    printf '%s\n' "$files" | record files-loaded
    check_match "modprobe.d/nfkit.conf has the option" "options $ANS_PARAM ports=$ANS_PORTS" "$files"
    # The boot list is the one of nfkit's layout for this host (reported).
    written=$(raw $r 'load with params and persist' '.apply.files[] | select(.action != "unchanged") | .path')
    note "files written: $(tr '\n' ' ' <<<"$written")"
    check_match "the boot list is among them" '/etc/(modules|modules-load.d/nfkit.conf)' "$written"
    for f in $written; do
        check "$f names $ANS_PARAM" grep -q "$ANS_PARAM" "$f"
    done
    facts_match_oracle $r 'facts loaded' loaded

    # A parameter that differs on the loaded module.
    check_eq "other params, check mode: changed" true "$(task $r 'other params, check mode' .changed)"
    check_match "... diff before has ports = $ANS_PORTS" "ports = $ANS_PORTS" \
        "$(raw $r 'other params, check mode' '.diff[0].before')"
    check_match "... diff after has ports = $other" "ports = $other" \
        "$(raw $r 'other params, check mode' '.diff[0].after')"
    check_eq "other params: the task failed" true "$(task $r 'other params' .failed)"
    check_match "... its message names the parameter" "ports" "$(raw $r 'other params' .msg)"
    note "other params: msg: $(raw $r 'other params' .msg)"
    note "other params: hint: $(raw $r 'other params' .hint)"
    check_eq "... the module kept ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(snap $r 'after other params' ports)"
    check_eq "unload, check mode: changed" true "$(task $r 'unload, check mode' .changed)"
    check_eq "other params and unload check mode changed no module (/proc/modules)" \
        "$(snap $r loaded modules)" "$(snap $r 'after other params' modules)"
    check_eq "... and no file" "$files" "$(snap $r 'after other params' files)"

    # Unload.
    check_eq "unload: changed" true "$(task $r unload .changed)"
    check_eq "... $ANS_LOAD is gone from /proc/modules" 0 "$(in_list "$ANS_LOAD" "$(snap $r unloaded modules)")"
    check_eq "unload again: not changed" false "$(task $r 'unload again' .changed)"
    check_eq "the persisted files did not change since converge" "$files" "$(snap $r unloaded files)"
    facts_match_oracle $r 'facts unloaded' unloaded

    check_eq "the guest's own /proc/modules agrees with the last snapshot" \
        "$(snap $r unloaded modules)" "$("$ANS_WORK/oracle" modules)"
    check "nfkit verify agrees (desired = running = next boot)" "$NFKIT" verify
    record verify <<<"$CHECK_OUTPUT"
}

boot_reboot() {
    local r=reboot
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    check "the persisted $ANS_PARAM was loaded at boot" grep -q "^$ANS_PARAM " /proc/modules
    check_eq "... with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" "$(cat "/sys/module/$ANS_PARAM/parameters/ports" 2>&1)"
    check_fails "$ANS_LOAD (unloaded, never persisted) is not loaded" grep -q "^$ANS_LOAD " /proc/modules
    check "nfkit verify agrees after the reboot" "$NFKIT" verify
    ansible_ready || return 0
    write_reboot_playbook
    check "ansible-playbook reboot.yml runs in the guest" playbook reboot || return 0
    note "$CHECK_OUTPUT"
    check_eq "the same kmod task: not changed" false "$(task $r 'load with params and persist' .changed)"
    check_eq "... and no file changed" "$(cat "$PREV/main/files-loaded")" "$(snap $r end files)"
}
