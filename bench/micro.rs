//! Micro benchmarks (divan): the stats decoder, the config parsers, and
//! `apply --check` on the seed configuration with everything in place.
//! Run: `cargo bench --bench micro`. Reports times; asserts nothing about them.

use std::hint::black_box;
use std::path::Path;

use nfkit::conntrack::stats;
use nfkit::persist::apply::{self, ApplyOptions};
use nfkit::persist::desired::Desired;
use nfkit::persist::{modprobe_d, shell_vars, sysctl_d};
use nfkit::system::Host;

fn main() {
    divan::main();
}

/// Attributes of one per-CPU stats message from Linux 6.18 (10 counters).
const CPU_ATTRIBUTES: [u8; 80] = [
    8, 0, 2, 0, 0, 0, 0, 0, 8, 0, 4, 0, 0, 0, 0, 0, 8, 0, 8, 0, 0, 0, 0, 1, 8, 0, 9, 0, 0, 0, 0, 0,
    8, 0, 10, 0, 0, 0, 0, 1, 8, 0, 11, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 0, 0, 8, 0, 13, 0, 0, 0,
    0, 0, 8, 0, 14, 0, 0, 0, 0, 0, 8, 0, 15, 0, 0, 0, 0, 0,
];

#[divan::bench]
fn decode_cpu_stats() -> stats::Counters {
    stats::decode_cpu_counters(black_box(&CPU_ATTRIBUTES)).unwrap()
}

#[divan::bench]
fn decode_global_stats() -> stats::GlobalStats {
    stats::decode_global(black_box(&[8, 0, 1, 0, 0, 0, 0, 4, 8, 0, 2, 0, 0, 4, 0, 0])).unwrap()
}

const SEED_MODULES: &str = "ipt_REJECT iptable_filter iptable_mangle xt_length xt_hl xt_tcpmss xt_TCPMSS \
    xt_multiport xt_limit xt_dscp ip_conntrack ip_conntrack_ftp ip_conntrack_irc ip_conntrack_netbios_ns \
    ip_nat_ftp ip_nat_irc ipt_comment ipt_conntrack ipt_helper ipt_length ipt_limit ipt_LOG ipt_multiport \
    ipt_REDIRECT ipt_state ipt_tcp ipt_TCPMSS ipt_tcpmss ipt_tos ipt_TOS ipt_ttl iptable_nat";

fn iptables_config() -> String {
    format!(
        "# Load additional iptables modules (nat helpers)\nIPTABLES_MODULES=\"\n{}\n\"\nIPTABLES_MODULES_UNLOAD=\"no\"\nIPTABLES_SAVE_ON_STOP=\"no\"\n",
        SEED_MODULES
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[divan::bench]
fn parse_iptables_config(bencher: divan::Bencher) {
    let text = iptables_config();
    bencher.bench(|| shell_vars::parse(black_box(&text)).unwrap());
}

#[divan::bench]
fn parse_modprobe_d(bencher: divan::Bencher) {
    let text = "# PCS\noptions nf_conntrack ip_conntrack_disable_ve0=0 hashsize=131072\nalias ip_conntrack nf_conntrack\nblacklist nf_nat_sip\ninstall ipv6 /bin/true\nsoftdep xt_state pre: nf_conntrack\n".repeat(8);
    bencher.bench(|| modprobe_d::parse(Path::new("/etc/modprobe.d/x.conf"), black_box(&text)));
}

#[divan::bench]
fn parse_sysctl_d(bencher: divan::Bencher) {
    let text = "# tuning\nnet.netfilter.nf_conntrack_max = 500000\nnet.ipv4.ip_forward=1\n-net.nf_conntrack_max = 1\n".repeat(16);
    bencher.bench(|| sysctl_d::parse(Path::new("/etc/sysctl.d/x.conf"), black_box(&text)));
}

fn seed_toml() -> String {
    let load: Vec<String> = SEED_MODULES
        .split_whitespace()
        .map(|m| {
            let name = nfkit::modules::name::ModuleName::canonical(m);
            format!("\"{}\"", nfkit::persist::desired::real_module_name(&name))
        })
        .collect();
    format!(
        "[modules]\nload = [{}]\n\n[conntrack]\nmax = 500000\nbuckets = 131072\n",
        load.join(", ")
    )
}

#[divan::bench]
fn parse_nfkit_toml(bencher: divan::Bencher) {
    let text = seed_toml();
    bencher.bench(|| Desired::parse("nfkit.toml", black_box(&text)).unwrap());
}

/// `apply --check` on a Debian/systemd image tree where the seed state is
/// already in place (offline: files only).
#[divan::bench]
fn apply_check_seed_in_place(bencher: divan::Bencher) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in [
        "etc/modules-load.d",
        "etc/modprobe.d",
        "etc/sysctl.d",
        "run/systemd/system",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let desired = Desired::parse("nfkit.toml", &seed_toml()).unwrap();
    let host = Host::offline(r);
    apply::apply(&host, &desired, ApplyOptions::default()).unwrap();
    bencher.bench(|| {
        let report =
            apply::apply(&host, black_box(&desired), ApplyOptions { check: true }).unwrap();
        assert!(!report.any_change());
    });
}
