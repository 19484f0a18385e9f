# shellcheck shell=bash
# package (issue 15): the Debian package (contrib/debian/build, built on the
# host around the binary the other scenarios use) on a clean guest:
# `dpkg -i`, `man nfkit`, `nfkit --version`, bash completion of a subcommand
# and of module names from the guest's own module tree; the unit is not
# enabled by the package; `systemctl enable nfkit-boot`, reboot on the same
# disk: the unit applied nfkit.toml (nothing else loads those modules or
# sets that max: no `nfkit apply` ran, so no modules-load.d/sysctl.d file
# exists). Then `dpkg -r` removes the binary and keeps nfkit.toml and the
# conffile, `dpkg -P` removes what the package owns and nothing else (the
# names under /etc and /usr are compared with a listing taken before the
# install).
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="Debian package: install, man page, completion, nfkit-boot.service at reboot, remove, purge"
SCENARIO_BOOTS="install@systemd +boot@systemd"

PKG_MAX=98765
PKG_MODULES="xt_multiport nf_nat_ftp"

# The package, built on the host into the payload (deb/nfkit_*.deb).
host_install() {
    local out
    out=$(mktemp -d)
    "$VM_TESTS_DIR/../contrib/debian/build" ${NFKIT_BIN:+--binary "$NFKIT_BIN"} --out "$out" >/dev/null
    mkdir -p "$PAYLOAD_DIR/deb"
    cp "$out"/nfkit_*_amd64.deb "$PAYLOAD_DIR/deb/"
    rm -rf "$out"
}

# Names under /etc and /usr (what a package can own), sorted.
package_tree_names() {
    find /etc /usr -xdev | LC_ALL=C sort
}

package_deb() {
    local debs=("$PAYLOAD"/deb/nfkit_*_amd64.deb)
    printf '%s\n' "${debs[0]}"
}

boot_install() {
    check_match "booted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    check_fails "clean guest: no nfkit package" dpkg -s nfkit
    check_fails "clean guest: no /usr/sbin/nfkit" test -e /usr/sbin/nfkit
    # Kept on the guest's disk (outside /etc and /usr), not recorded: the
    # serial console would carry ~16000 lines.
    package_tree_names >/var/tmp/nfkit-tree-before
    # man-db's dpkg trigger rebuilds the whole man index (minutes under TCG);
    # `man` reads the pages without it. Off as with debconf's
    # man-db/auto-update=false.
    rm -f /var/lib/man-db/auto-update
    check "dpkg -i the package" dpkg -i "$(package_deb)"
    record dpkg-i <<<"$CHECK_OUTPUT"
    check_match "dpkg says it is installed" 'Status: install ok installed' "$(dpkg -s nfkit)"
    check "nfkit --version runs" /usr/sbin/nfkit --version
    check_match "... and names its version" '^nfkit [0-9]+\.[0-9]+\.[0-9]+$' "$CHECK_OUTPUT"
    check "man nfkit renders" env MANWIDTH=80 man nfkit
    check_match "... with EXIT STATUS" 'EXIT STATUS' "$CHECK_OUTPUT"
    check "man nfkit-apply renders" env MANWIDTH=80 man nfkit-apply
    check "man 5 nfkit.toml renders" env MANWIDTH=80 man 5 nfkit.toml
    check_match "... documenting conntrack.max" 'conntrack\.max' "$CHECK_OUTPUT"

    # bash completion, non-interactively: bash-completion's loader finds
    # /usr/share/bash-completion/completions/nfkit by the command's name.
    local loader='source /usr/share/bash-completion/bash_completion; __load_completion nfkit || _completion_loader nfkit'
    check "bash-completion loads nfkit's completion" bash -c "$loader; complete -p nfkit"
    check_match "... registering its function" '_nfkit_modules_or_clap' "$CHECK_OUTPUT"
    check "bash completes 'nfkit ap'" bash -c "$loader"'
        COMP_WORDS=(nfkit ap); COMP_CWORD=1; COMP_LINE="nfkit ap"; COMP_POINT=8
        f=$(complete -p nfkit | sed "s/.*-F \([^ ]*\) .*/\1/")
        "$f" nfkit ap nfkit; printf "%s\n" "${COMPREPLY[@]}"'
    check_eq "... to apply" apply "$CHECK_OUTPUT"
    check "bash completes a module name (nf_conntrack_ft)" bash -c "$loader"'
        COMP_WORDS=(nfkit modules load nf_conntrack_ft); COMP_CWORD=3
        f=$(complete -p nfkit | sed "s/.*-F \([^ ]*\) .*/\1/")
        "$f" nfkit nf_conntrack_ft load; printf "%s\n" "${COMPREPLY[@]}"'
    check_eq "... from the running kernel's tree" nf_conntrack_ftp "$CHECK_OUTPUT"

    check_status "the package enables nothing: nfkit-boot disabled" 1 systemctl is-enabled nfkit-boot.service
    check_match "the unit runs after systemd-sysctl" 'systemd-sysctl\.service' "$(systemctl show -p After nfkit-boot.service)"
    check_match "... and before network-pre.target" 'network-pre\.target' "$(systemctl show -p Before nfkit-boot.service)"

    mkdir -p /etc/nfkit
    {
        local list="" m
        for m in $PKG_MODULES; do list+="\"$m\", "; done
        printf '[modules]\nload = [%s]\n\n[conntrack]\nmax = %s\n' "${list%, }" "$PKG_MAX"
    } >/etc/nfkit/nfkit.toml
    record nfkit.toml /etc/nfkit/nfkit.toml
    check "systemctl enable nfkit-boot" systemctl enable nfkit-boot.service
    check "no modules-load.d or sysctl.d file of nfkit (only the unit can apply)" \
        test ! -e /etc/modules-load.d/nfkit.conf -a ! -e /etc/sysctl.d/90-nfkit.conf
}

boot_boot() {
    check_match "rebooted with systemd" '^systemd$' "$(cat /proc/1/comm)"
    check_match "nfkit-boot ran and succeeded" 'ActiveState=active' "$(systemctl show -p ActiveState nfkit-boot.service)"
    check_match "... with exit 0" 'ExecMainStatus=0' "$(systemctl show -p ExecMainStatus nfkit-boot.service)"
    journalctl -b -u nfkit-boot.service --no-pager 2>&1 | record nfkit-boot.journal
    local m
    for m in $PKG_MODULES; do
        check "$m loaded at boot by the unit" grep -q "^$m " /proc/modules
    done
    check_eq "conntrack max at boot set by the unit" "$PKG_MAX" "$(sysctl -n net.netfilter.nf_conntrack_max)"

    check "dpkg -r nfkit" dpkg -r nfkit
    check_fails "remove: the binary is gone" test -e /usr/sbin/nfkit
    check_fails "remove: the man page is gone" test -e /usr/share/man/man8/nfkit.8.gz
    check "remove: /etc/nfkit/nfkit.toml kept" test -f /etc/nfkit/nfkit.toml
    check "remove: the conffile /etc/init.d/nfkit kept" test -f /etc/init.d/nfkit
    check_match "dpkg: config-files state" 'Status: deinstall ok config-files' "$(dpkg -s nfkit 2>&1)"

    check "dpkg -P nfkit" dpkg -P nfkit
    record dpkg-P <<<"$CHECK_OUTPUT"
    check_fails "purge: the conffile is gone" test -e /etc/init.d/nfkit
    check_fails "purge: dpkg no longer knows nfkit" dpkg -s nfkit
    check "purge: /etc/nfkit/nfkit.toml (not the package's) kept" test -f /etc/nfkit/nfkit.toml
    package_tree_names >/var/tmp/nfkit-tree-after
    LC_ALL=C comm -3 /var/tmp/nfkit-tree-before /var/tmp/nfkit-tree-after | record tree-diff
    # Against the listing taken before the install: nothing of the system's
    # removed, nothing of the package's left. What remains is the admin's:
    # nfkit.toml (so also its directory) and the enablement link.
    check_eq "purge removed nothing that was there before" "" \
        "$(LC_ALL=C comm -23 /var/tmp/nfkit-tree-before /var/tmp/nfkit-tree-after)"
    check_eq "purge left only the admin's files" \
        "$(printf '%s\n' /etc/nfkit /etc/nfkit/nfkit.toml /etc/systemd/system/sysinit.target.wants/nfkit-boot.service)" \
        "$(LC_ALL=C comm -13 /var/tmp/nfkit-tree-before /var/tmp/nfkit-tree-after | grep -v '^/etc/systemd/system/sysinit.target.wants$')"
}
