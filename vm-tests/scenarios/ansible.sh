# shellcheck shell=bash
# ansible (issue 13): the collection nfkit.netfilter driven by a real
# `ansible-playbook` inside the guest, against localhost (`-c local`), on a
# real kernel with loadable modules. The host step ships ansible-core and the
# packages it imports (from the venv of tests/support/ansible-venv: the guest
# has python3 but no network and no pip) and the collection tarball built by
# contrib/ansible/nfkit/netfilter/build from the payload's own nfkit; the
# guest installs the tarball with `ansible-galaxy collection install`.
#
# Boot `main` (init= boot), module state read by the guest's /proc/modules and
# /sys/module (never by nfkit) before and after every playbook:
#   - check mode (`--check --diff`): kmod present and persistent=present
#     report changed with diffs; no module loaded, no file written;
#   - kmod loads a module that is not loaded (changed), a second task is
#     changed=false; params of a module that is not loaded are passed to it;
#   - persistent=present writes nfkit.toml, modules-load.d and modprobe.d;
#     `nfkit verify` agrees; a second task is changed=false;
#   - params that differ on a loaded module: check mode reports the change
#     (before/after), a real run fails naming the parameter (it is not
#     reloaded) and the module keeps its value;
#   - state=absent in check mode changes nothing, then unloads (changed), a
#     second task is changed=false;
#   - facts: ansible_facts.nfkit lists the loaded netfilter modules.
# Boot `reboot` (systemd, same disk): systemd loaded the persisted module with
# its parameter, `nfkit verify` agrees, the same kmod task is changed=false.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="Ansible collection: ansible-playbook in the guest drives nfkit.netfilter.kmod/facts on the real kernel"
SCENARIO_BOOTS="main +reboot@systemd"
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
    cp "$tarball" "$PAYLOAD_DIR/ansible/"
    cp "$repo/tests/ansible/callback_plugins/nfkit_json.py" "$PAYLOAD_DIR/ansible/callback_plugins/"
    du -sh "$PAYLOAD_DIR/ansible"
}

host_main() { ansible_payload; }
host_reboot() { ansible_payload; }

# ---- guest ---------------------------------------------------------------

ANS_WORK=/root/nfkit-ansible

ansible_env() {
    export PYTHONPATH=$PAYLOAD/ansible/site
    export ANSIBLE_COLLECTIONS_PATH=$ANS_WORK/collections
    export ANSIBLE_STDOUT_CALLBACK=nfkit_json
    export ANSIBLE_CALLBACK_PLUGINS=$PAYLOAD/ansible/callback_plugins
    export ANSIBLE_LOCAL_TEMP=$ANS_WORK/tmp-local ANSIBLE_REMOTE_TMP=$ANS_WORK/tmp-remote
    export ANSIBLE_NOCOLOR=1 ANSIBLE_HOST_KEY_CHECKING=false ANSIBLE_RETRY_FILES_ENABLED=false
    export LC_ALL=C.UTF-8 HOME=/root
}

# ansible_galaxy ARGS...: the shipped ansible-galaxy on the guest's python3.
ansible_galaxy() { python3 -m ansible.cli.galaxy "$@"; }

# playbook NAME [ARGS...]: runs $ANS_WORK/NAME.yml against localhost; the JSON
# report goes to $OUT/NAME.json (and $REPORT), stderr to $OUT/NAME.stderr
# (shown when it fails). Status: ansible-playbook's.
playbook() {
    local name=$1 rc=0
    shift
    python3 -m ansible.cli.playbook -i localhost, -c local \
        -e ansible_python_interpreter=/usr/bin/python3 \
        "$ANS_WORK/$name.yml" "$@" >"$OUT/$name.json" 2>"$OUT/$name.stderr" || rc=$?
    REPORT=$OUT/$name.json
    if ((rc != 0)); then
        cat "$OUT/$name.json" "$OUT/$name.stderr" >&2
    fi
    return "$rc"
}

# task TASK [JQ]: field JQ (default: the whole result, compact) of task TASK
# on localhost in the last report.
task() {
    jq -c --arg t "$1" "[.plays[].tasks[] | select(.task.name == \$t) | .hosts.localhost][0] | ${2:-.}" "$REPORT"
}

# loaded: the loaded modules' names, sorted (the guest's own /proc/modules).
loaded() { cut -d' ' -f1 /proc/modules | sort; }

# etc_files: the persistence files nfkit may write, with their contents.
etc_files() {
    local f
    for f in /etc/nfkit/nfkit.toml /etc/modules-load.d/nfkit.conf /etc/modprobe.d/nfkit.conf /etc/modules; do
        if [[ -f $f ]]; then printf '== %s\n' "$f"; cat "$f"; else printf '== %s absent\n' "$f"; fi
    done
}

write_playbooks() {
    mkdir -p "$ANS_WORK"
    cat >"$ANS_WORK/check.yml" <<EOF
- hosts: localhost
  gather_facts: false
  tasks:
    - name: load, check mode
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
    - name: load with params and persist, check mode
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
EOF
    cat >"$ANS_WORK/converge.yml" <<EOF
- hosts: localhost
  gather_facts: false
  tasks:
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
    - name: facts
      nfkit.netfilter.facts:
EOF
    cat >"$ANS_WORK/differ.yml" <<EOF
- hosts: localhost
  gather_facts: false
  tasks:
    - name: other params, check mode
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $((ANS_PORTS + 1))
      check_mode: true
      diff: true
    - name: other params
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params: "ports=$((ANS_PORTS + 1))"
      ignore_errors: true
    - name: unload, check mode
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
      check_mode: true
      diff: true
EOF
    cat >"$ANS_WORK/unload.yml" <<EOF
- hosts: localhost
  gather_facts: false
  tasks:
    - name: unload
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
    - name: unload again
      nfkit.netfilter.kmod:
        name: $ANS_LOAD
        state: absent
    - name: facts
      nfkit.netfilter.facts:
EOF
    cat >"$ANS_WORK/after-reboot.yml" <<EOF
- hosts: localhost
  gather_facts: false
  tasks:
    - name: load with params and persist
      nfkit.netfilter.kmod:
        name: $ANS_PARAM
        params:
          ports: $ANS_PORTS
        persistent: present
EOF
}

# ansible_ready: ansible runs on this guest's python and the collection is
# installed from the tarball. Any failure here fails the scenario (no skip).
ansible_ready() {
    local tarball
    ansible_env
    note "guest python: $(python3 --version 2>&1)"
    check "ansible-playbook starts on the guest's python3" python3 -m ansible.cli.playbook --version || return 1
    check_match "... ansible-core 2.17.14" 'core 2\.17\.14' "$CHECK_OUTPUT" || return 1
    tarball=$(echo "$PAYLOAD"/ansible/nfkit-netfilter-*.tar.gz)
    check "the collection tarball is on the payload" test -f "$tarball" || return 1
    check "ansible-galaxy collection install (offline, from the tarball)" \
        ansible_galaxy collection install --offline --force -p "$ANS_WORK/collections" "$tarball" || return 1
    check_same_file "the installed kmod module is the payload's nfkit" \
        "$NFKIT" "$ANS_WORK/collections/ansible_collections/nfkit/netfilter/plugins/modules/kmod"
    write_playbooks
}

boot_main() {
    local before after
    ansible_ready || return 0
    check_fails "$ANS_LOAD is not loaded at the start" grep -q "^$ANS_LOAD " /proc/modules
    check_fails "$ANS_PARAM is not loaded at the start" grep -q "^$ANS_PARAM " /proc/modules
    etc_files | record etc-before

    # Check mode: everything would change, nothing does.
    before=$(loaded)
    check "playbook check --check --diff" playbook check --check --diff || return 0
    check_eq "check: load reports changed" true "$(task 'load, check mode' .changed)"
    check_eq "check: persist reports changed" true "$(task 'load with params and persist, check mode' .changed)"
    check_match "check: persist shows the modprobe.d diff" "options $ANS_PARAM ports=$ANS_PORTS" \
        "$(task 'load with params and persist, check mode' '.diff')"
    after=$(loaded)
    check_eq "check mode loaded no module (/proc/modules)" "$before" "$after"
    check_eq "check mode wrote no file" "$(cat "$OUT/etc-before")" "$(etc_files)"

    # Converge.
    check "playbook converge" playbook converge || return 0
    check_eq "load: changed" true "$(task load .changed)"
    check "$ANS_LOAD is in /proc/modules" grep -q "^$ANS_LOAD " /proc/modules
    check_eq "load again: not changed" false "$(task 'load again' .changed)"
    check_eq "persist: changed" true "$(task 'load with params and persist' .changed)"
    check "$ANS_PARAM is in /proc/modules" grep -q "^$ANS_PARAM " /proc/modules
    check_eq "$ANS_PARAM was loaded with ports=$ANS_PORTS (/sys/module)" "$ANS_PORTS" \
        "$(cat "/sys/module/$ANS_PARAM/parameters/ports" 2>&1)"
    check_eq "persist again: not changed" false "$(task 'load with params and persist again' .changed)"
    etc_files | record etc-after
    check "modules-load.d/nfkit.conf lists $ANS_PARAM" grep -qx "$ANS_PARAM" /etc/modules-load.d/nfkit.conf
    check "modprobe.d/nfkit.conf has its option" grep -q "^options $ANS_PARAM .*ports=$ANS_PORTS" /etc/modprobe.d/nfkit.conf
    check "nfkit.toml has the module" grep -q "$ANS_PARAM" /etc/nfkit/nfkit.toml
    check "nfkit verify agrees (desired = running = next boot)" "$NFKIT" verify
    record verify <<<"$CHECK_OUTPUT"
    facts_list_loaded_modules

    # A parameter that differs on the loaded module.
    before=$(loaded)
    check "playbook differ --diff" playbook differ --diff || return 0
    check_eq "other params, check mode: changed" true "$(task 'other params, check mode' .changed)"
    check_match "... diff before: ports = $ANS_PORTS" "ports = $ANS_PORTS" \
        "$(task 'other params, check mode' '.diff[0].before')"
    check_match "... diff after: ports = $((ANS_PORTS + 1))" "ports = $((ANS_PORTS + 1))" \
        "$(task 'other params, check mode' '.diff[0].after')"
    check_eq "other params: the task failed" true "$(task 'other params' .failed)"
    check_match "... its message names the parameter" "ports" "$(task 'other params' .msg)"
    note "other params: msg=$(task 'other params' .msg) hint=$(task 'other params' .hint)"
    check_eq "... and the module kept its value (/sys/module)" "$ANS_PORTS" \
        "$(cat "/sys/module/$ANS_PARAM/parameters/ports" 2>&1)"
    check_eq "unload, check mode: changed" true "$(task 'unload, check mode' .changed)"
    after=$(loaded)
    check_eq "the differ playbook loaded or unloaded no module (/proc/modules)" "$before" "$after"

    # Unload.
    check "playbook unload" playbook unload || return 0
    check_eq "unload: changed" true "$(task unload .changed)"
    check_fails "$ANS_LOAD is gone from /proc/modules" grep -q "^$ANS_LOAD " /proc/modules
    check_eq "unload again: not changed" false "$(task 'unload again' .changed)"
    check_eq "the persisted files did not change since converge" "$(cat "$OUT/etc-after")" "$(etc_files)"
    facts_list_loaded_modules
}

# facts_list_loaded_modules: the facts task of the last report lists the
# loaded netfilter modules: every name it calls loaded is in /proc/modules,
# and the two modules of this scenario are listed exactly when loaded.
facts_list_loaded_modules() {
    local names m stray=''
    names=$(task facts '.ansible_facts.nfkit.modules.modules[] | select(.state == "live") | .name' | tr -d '"' | sort)
    check_match "facts list loaded modules" "nf_conntrack" "$names"
    for m in $names; do
        grep -q "^$m " /proc/modules || stray+=" $m"
    done
    check_eq "every module facts call loaded is in /proc/modules" "" "$stray"
    for m in "$ANS_LOAD" "$ANS_PARAM"; do
        check_eq "facts list $m exactly when /proc/modules does" \
            "$(grep -c "^$m " /proc/modules)" "$(grep -cx "$m" <<<"$names")"
    done
}

boot_reboot() {
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    check "systemd loaded $ANS_PARAM at boot" grep -q "^$ANS_PARAM " /proc/modules
    check_eq "... with ports=$ANS_PORTS" "$ANS_PORTS" "$(cat "/sys/module/$ANS_PARAM/parameters/ports" 2>&1)"
    check_fails "$ANS_LOAD (unloaded, never persisted) is not loaded" grep -q "^$ANS_LOAD " /proc/modules
    check "nfkit verify agrees after the reboot" "$NFKIT" verify
    ansible_ready || return 0
    check "playbook after-reboot" playbook after-reboot || return 0
    check_eq "the same kmod task: not changed" false "$(task 'load with params and persist' .changed)"
}
