# shellcheck shell=bash
# metrics (issue 14 §3 §4 §5): on a kernel where nf_conntrack is a module.
#   - `nfkit metrics` figures equal `conntrack -C` / `conntrack -S` after
#     traffic (UDP over lo through a conntrack rule) and entries created
#     with `conntrack -I`;
#   - `--all-netns` counts a named namespace (bound with `unshare
#     --net=/run/netns/NAME`, filled through `nsenter`) apart;
#   - `conntrack plan`: the kernel's default sizing predicted from MemTotal
#     and the release equals what the freshly loaded module picked (oracle:
#     sysctl right after `modprobe nf_conntrack` without hashsize=);
#   - backends: iptables-nft alone, then iptables-legacy too = conflict;
#     ip_tables absent, then loaded (oracle: /proc/modules);
#   - `conntrack set --never-lower`: a lower max is kept, a higher one set
#     (oracle: sysctl); verify names a running max equal to kube-proxy's
#     formula.
# shellcheck disable=SC2034 # SCENARIO_* are read by the host runner

SCENARIO_DESC="metrics vs conntrack -S/-C under traffic, --all-netns, plan vs the kernel's default sizing, iptables backends, --never-lower, kube-proxy note"
SCENARIO_BOOTS="main"

boot_main() {
    check "modprobe nf_conntrack (oracle, no hashsize=)" modprobe nf_conntrack || return 0
    check "modprobe nf_conntrack_netlink" modprobe nf_conntrack_netlink || return 0
    sysctl -n net.netfilter.nf_conntrack_max | record oracle-default-max
    sysctl -n net.netfilter.nf_conntrack_buckets | record oracle-default-buckets

    # §4: the sizing model against the kernel's own choice.
    check "nfkit conntrack plan --json" "$NFKIT" conntrack plan --max 1000000 --json || return 0
    record plan.json <<<"$CHECK_OUTPUT"
    local p=$OUT/plan.json
    check_eq "plan: predicted default buckets = the kernel's" \
        "$(cat "$OUT/oracle-default-buckets")" "$(jq -r .kernel_default.buckets "$p")"
    check_eq "plan: predicted default max = the kernel's" \
        "$(cat "$OUT/oracle-default-max")" "$(jq -r .kernel_default.max "$p")"
    check_eq "plan: buckets can change at run time in the initial namespace" \
        "run_time" "$(jq -r .buckets_change.when "$p")"
    check_eq "plan: child namespace must wait for the next load" \
        "next_load" "$(unshare -n "$NFKIT" conntrack plan --max 1000000 --json | jq -r .buckets_change.when)"

    # §5 before any legacy use: ip_tables not loaded.
    check_eq "ip_tables not in /proc/modules yet (oracle)" "" "$(grep -o '^ip_tables ' /proc/modules || true)"
    check_eq "backends: ip_tables absent" "absent" "$("$NFKIT" tables --json | jq -r .backends.ip_tables)"

    # Traffic: a conntrack rule makes the hooks track lo traffic.
    check "iptables-nft conntrack rule" iptables-nft -A INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
    # An init= boot leaves lo down (nothing runs systemd's loopback set-up)
    # and the image has no ip(8): python3 sets IFF_UP (SIOCGIFFLAGS and
    # SIOCSIFFLAGS), so the UDP below really crosses the hooks.
    python3 -c '
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, struct.pack("16sH14s", b"lo", 0, b"")))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))
'
    check_match "lo is up (IFF_UP in its flags)" '^0x(9|[0-9a-f]*[13579bdf])$' "$(cat /sys/class/net/lo/flags)"
    local port
    for port in $(seq 20001 20030); do
        echo x >"/dev/udp/127.0.0.1/$port" 2>/dev/null || true
    done
    check "conntrack -I (long timeout)" conntrack -I -p udp -s 10.9.0.1 -d 10.9.0.2 --sport 1 --dport 53 -t 600

    check "nfkit metrics" "$NFKIT" metrics || return 0
    record metrics.prom <<<"$CHECK_OUTPUT"
    conntrack -S | record oracle-stats
    conntrack -C | record oracle-count
    local m=$OUT/metrics.prom value
    value() { awk -v s="$1" '$1 == s {print $2}' "$m"; }
    check_eq "entries = conntrack -C" "$(cat "$OUT/oracle-count")" "$(value node_nf_conntrack_entries)"
    check_eq "limit = sysctl" "$(sysctl -n net.netfilter.nf_conntrack_max)" "$(value node_nf_conntrack_entries_limit)"
    local key sum
    for key in found invalid insert insert_failed drop early_drop search_restart; do
        sum=$(grep -oE "(^|[[:space:]])$key=[0-9]+" "$OUT/oracle-stats" | cut -d= -f2 | awk '{s += $1} END {print s + 0}')
        check_eq "node_nf_conntrack_stat_$key = sum of conntrack -S" "$sum" "$(value "node_nf_conntrack_stat_$key")"
    done
    # The 30 UDP flows are entries; the kernel's `insert` statistic counts
    # only ctnetlink insertions on these kernels (1, the conntrack -I).
    check_match "traffic was tracked (conntrack -C: 30 flows + 1 inserted)" \
        '^(3[1-9]|[4-9][0-9]|[1-9][0-9]{2,})$' "$(cat "$OUT/oracle-count")"
    local cpu line
    while read -r line; do
        cpu=$(grep -oE 'cpu=[0-9]+' <<<"$line" | cut -d= -f2)
        key=$(grep -oE 'insert=[0-9]+' <<<"$line" | cut -d= -f2)
        check_eq "cpu $cpu insert = conntrack -S" "$key" "$(value "nfkit_conntrack_stat_total{cpu=\"$cpu\",stat=\"insert\"}")"
    done <"$OUT/oracle-stats"
    check_eq "nf_conntrack loaded gauge" "1" "$(value 'nfkit_module_loaded{module="nf_conntrack",state="live"}')"

    # --all-netns: a named namespace with 4 entries.
    mkdir -p /run/netns && touch /run/netns/nfkit-a
    check "bind a named namespace" unshare --net=/run/netns/nfkit-a true || return 0
    for port in 1 2 3 4; do
        nsenter --net=/run/netns/nfkit-a conntrack -I -p udp -s 10.8.0.1 -d 10.8.0.2 --sport "$port" --dport 53 -t 600 >/dev/null 2>&1
    done
    check_eq "oracle: 4 entries in nfkit-a" "4" "$(nsenter --net=/run/netns/nfkit-a conntrack -C)"
    check "nfkit metrics --all-netns" "$NFKIT" metrics --all-netns || return 0
    record metrics-all-netns.prom <<<"$CHECK_OUTPUT"
    local inode
    inode=$(stat -L -c %i /run/netns/nfkit-a)
    m=$OUT/metrics-all-netns.prom
    check_eq "nfkit-a counted apart" "4" "$(value "nfkit_netns_conntrack_entries{netns_inode=\"$inode\",netns_name=\"nfkit-a\"}")"
    check_eq "the initial namespace's count there too" "$(conntrack -C)" \
        "$(value "nfkit_netns_conntrack_entries{netns_inode=\"$(stat -L -c %i /proc/1/ns/net)\",netns_name=\"\"}")"

    # §5: iptables-nft in use; adding a legacy rule is a conflict.
    check "nfkit tables --json" "$NFKIT" tables --json || return 0
    check_eq "backends: nft only" '["nft"]' "$(jq -c .backends.in_use <<<"$CHECK_OUTPUT")"
    check "iptables-legacy rule" iptables-legacy -A OUTPUT -j ACCEPT
    check "nfkit status --json" "$NFKIT" status --json || return 0
    record status.json <<<"$CHECK_OUTPUT"
    check_eq "backends: both" '["legacy","nft"]' "$(jq -c .tables.backends.in_use "$OUT/status.json")"
    check_match "conflict reported" 'both iptables backends' "$(jq -r .tables.backends.conflict "$OUT/status.json")"
    check_eq "ip_tables loaded now (oracle: /proc/modules)" "ip_tables " "$(grep -o '^ip_tables ' /proc/modules)"
    check_eq "backends: ip_tables loaded" "loaded" "$(jq -r .tables.backends.ip_tables "$OUT/status.json")"

    # §4: --never-lower against the kernel's value (oracle: sysctl), and
    # verify naming a running value that is kube-proxy's formula.
    local key=net.netfilter.nf_conntrack_max cur low high kp
    cur=$(sysctl -n $key)
    low=$((cur / 2)) high=$((cur + 1024))
    check "conntrack set --max $low --never-lower" "$NFKIT" --json conntrack set --max "$low" --never-lower || return 0
    check_eq "never-lower: kept higher, not changed" "true false" \
        "$(jq -r '.changes[] | select(.limit=="max") | "\(.kept_higher) \(.changed)"' <<<"$CHECK_OUTPUT")"
    check_eq "never-lower: the kernel's max is unchanged" "$cur" "$(sysctl -n $key)"
    check "conntrack set --max $high --never-lower" "$NFKIT" conntrack set --max "$high" --never-lower
    check_eq "never-lower: raising works" "$high" "$(sysctl -n $key)"
    kp=$(($(nproc) * 32768))
    ((kp >= 131072)) || kp=131072
    check "oracle: $key = kube-proxy's max(32768 x $(nproc), 131072) = $kp" sysctl -qw "$key=$kp"
    printf '[conntrack]\nmax = %d\nnever_lower = true\n' "$low" >/run/nfkit-vm-metrics-kp.toml
    "$NFKIT" --json verify --config /run/nfkit-vm-metrics-kp.toml >/run/nfkit-vm-metrics-kp.json
    record verify-kube-proxy.json /run/nfkit-vm-metrics-kp.json
    check_match "verify names kube-proxy's running value" "kube-proxy probably set it" \
        "$(jq -r --arg k "$key" '.rows[] | select(.item==$k) | .notes[]' /run/nfkit-vm-metrics-kp.json)"
    check_eq "verify reads the running value" "$kp" \
        "$(jq -r --arg k "$key" '.rows[] | select(.item==$k) | .running' /run/nfkit-vm-metrics-kp.json)"
}
