//! `nfkit conntrack plan --max N`: what a conntrack limit costs and how the
//! kernel would size the table (pure model; the facts come from
//! [`gather`]).
//!
//! Kernel rules (net/netfilter/nf_conntrack_core.c, `nf_conntrack_init_start`
//! and `nf_ct_alloc_hashtable`):
//! - without a `hashsize` parameter the bucket count comes from memory:
//!   `RAM / 16384 / sizeof(struct hlist_head)` (8 bytes on 64-bit);
//!   - since 5.15 (commit d532bcd0b269 "netfilter: conntrack: sanitize table
//!     size default settings"): 262144 when RAM > 4 GiB on 64-bit, else
//!     65536 when RAM > 1 GiB, at least 1024, and `max = buckets` (factor 1);
//!   - before: 65536 when RAM > 4 GiB, else 16384 when RAM > 1 GiB, at least
//!     32, and `max = 4 × buckets`;
//!   - with `hashsize=` given at load: `max = 8 × buckets` (both eras);
//! - the bucket count is rounded up to a multiple of
//!   `PAGE_SIZE / sizeof(struct hlist_nulls_head)` = 512;
//! - the table is resized at run time only from the initial network
//!   namespace (`nf_conntrack_set_hashsize` returns EOPNOTSUPP elsewhere),
//!   through the `nf_conntrack_buckets` sysctl (writable since 5.x) or the
//!   `hashsize` module parameter; otherwise only at the next module load
//!   (modprobe.d `options nf_conntrack hashsize=`) or boot
//!   (`nf_conntrack.hashsize=` for a built-in nf_conntrack).
//!
//! kube-proxy's default (pkg/proxy/apis/config, `getConntrackMax`):
//! `max(maxPerCore × CPUs, min)` with `maxPerCore` 32768 and `min` 131072;
//! it only ever raises `nf_conntrack_max` (and sets `hashsize` to max/4 when
//! smaller).

use serde::Serialize;

use super::limits::{effective_buckets, memory_estimate};
use super::{Source, Sourced};

/// `sizeof(struct hlist_head)` on this build's word size.
pub const HLIST_HEAD_BYTES: u64 = std::mem::size_of::<usize>() as u64;
/// kube-proxy's default `conntrack.maxPerCore`.
pub const KUBE_PROXY_MAX_PER_CORE: u64 = 32_768;
/// kube-proxy's default `conntrack.min`.
pub const KUBE_PROXY_MIN: u64 = 131_072;

const GIB: u64 = 1 << 30;

/// Which default-sizing rule a kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SizingEra {
    /// Linux 5.15 and later: max = buckets.
    #[serde(rename = "since_5_15")]
    Since5_15,
    /// Before 5.15: max = 4 × buckets.
    #[serde(rename = "before_5_15")]
    Before5_15,
}

impl SizingEra {
    /// The era of a release string (`6.1.0-13-amd64`); `None` if unparsable.
    pub fn of_release(release: &str) -> Option<SizingEra> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        Some(if (major, minor) >= (5, 15) {
            SizingEra::Since5_15
        } else {
            SizingEra::Before5_15
        })
    }

    /// Entries per bucket of the default sizing.
    pub fn default_ratio(self) -> u64 {
        match self {
            SizingEra::Since5_15 => 1,
            SizingEra::Before5_15 => 4,
        }
    }
}

/// Entries per bucket when `hashsize=` was given at load time.
pub const EXPLICIT_HASHSIZE_RATIO: u64 = 8;

/// The bucket count the kernel picks at load without `hashsize=` for
/// `ram_bytes` of memory (after rounding to 512), on a 64-bit kernel when
/// `wide` (the 262144 step exists only there).
pub fn default_buckets(era: SizingEra, ram_bytes: u64, wide: bool) -> u64 {
    let from_memory = ram_bytes / 16_384 / HLIST_HEAD_BYTES;
    let size = match era {
        SizingEra::Since5_15 => {
            let s = if wide && ram_bytes > 4 * GIB {
                262_144
            } else if ram_bytes > GIB {
                65_536
            } else {
                from_memory
            };
            s.max(1024)
        }
        SizingEra::Before5_15 => {
            let s = if ram_bytes > 4 * GIB {
                65_536
            } else if ram_bytes > GIB {
                16_384
            } else {
                from_memory
            };
            s.max(32)
        }
    };
    round_buckets(size)
}

/// Rounds a bucket count up to the kernel's 512 granule (u64 version of
/// [`effective_buckets`]).
pub fn round_buckets(n: u64) -> u64 {
    match u32::try_from(n) {
        Ok(small) => u64::from(effective_buckets(small.max(1))),
        Err(_) => n.div_ceil(512) * 512,
    }
}

/// kube-proxy's default `nf_conntrack_max` for `cpus` CPUs.
pub fn kube_proxy_max(cpus: u64) -> u64 {
    (KUBE_PROXY_MAX_PER_CORE * cpus).max(KUBE_PROXY_MIN)
}

/// Whether the bucket count can change now, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum BucketsChange {
    /// At run time, through this path.
    RunTime { via: String },
    /// Only when nf_conntrack is loaded next (or at boot when built in).
    NextLoad { why: String, how: String },
    /// Not known (offline tree).
    Unknown { why: String },
}

/// What the host looks like (read by [`gather`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Kernel release.
    pub release: Option<String>,
    /// `MemTotal` in bytes.
    pub ram_bytes: Option<u64>,
    /// CPUs (for kube-proxy's formula).
    pub cpus: Option<u64>,
    /// Current `nf_conntrack_max`.
    pub max: Option<u64>,
    /// Current bucket count.
    pub buckets: Option<u64>,
    /// One entry's slab size.
    pub entry_size: Sourced<u32>,
    /// In the initial network namespace.
    pub initial_netns: Option<bool>,
    /// The `nf_conntrack_buckets` sysctl is writable here.
    pub buckets_sysctl_writable: bool,
    /// `/sys/module/nf_conntrack/parameters/hashsize` is writable here.
    pub hashsize_param_writable: bool,
    /// nf_conntrack is built into the kernel.
    pub builtin: bool,
    /// Offline (`--root`).
    pub offline: bool,
}

/// A table size and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    /// Maximum entries.
    pub max: u64,
    /// Buckets.
    pub buckets: u64,
    /// Entries per bucket at the maximum.
    pub ratio: f64,
    /// `max × entry size + buckets × 8` in bytes.
    pub memory_bytes: u64,
}

fn sizing(max: u64, buckets: u64, entry_size: u32) -> Sizing {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Sizing {
        max,
        buckets,
        ratio: if buckets == 0 {
            0.0
        } else {
            max as f64 / buckets as f64
        },
        memory_bytes: memory_estimate(clamp(max), clamp(buckets), entry_size),
    }
}

/// The kernel's own default for this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelDefault {
    /// Which rule.
    pub era: SizingEra,
    /// Entries per bucket by default (1 since 5.15, 4 before).
    pub ratio: u64,
    /// Buckets it picks from memory.
    pub buckets: u64,
    /// Max it derives from them.
    pub max: u64,
}

/// kube-proxy's default and whether the plan matches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeProxy {
    /// CPUs counted.
    pub cpus: u64,
    /// `max(32768 × cpus, 131072)`.
    pub max: u64,
    /// The planned max equals it.
    pub matches: bool,
}

/// The plan for `--max N`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The max asked about.
    pub requested_max: u64,
    /// One entry's size.
    pub entry_size: Sourced<u32>,
    /// The kernel's default sizing (when release and memory are known).
    pub kernel_default: Option<KernelDefault>,
    /// Now.
    pub current: Option<Sizing>,
    /// N on the current buckets.
    pub at_current_buckets: Option<Sizing>,
    /// N on the buckets that keep this kernel's default ratio.
    pub suggested: Sizing,
    /// Whether (and how) the buckets can change.
    pub buckets_change: BucketsChange,
    /// kube-proxy's formula.
    pub kube_proxy: Option<KubeProxy>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Builds the plan (pure).
pub fn plan(requested_max: u64, facts: &Facts) -> Plan {
    let era = facts.release.as_deref().and_then(SizingEra::of_release);
    let wide = HLIST_HEAD_BYTES == 8;
    let kernel_default = match (era, facts.ram_bytes) {
        (Some(era), Some(ram)) => {
            let buckets = default_buckets(era, ram, wide);
            Some(KernelDefault {
                era,
                ratio: era.default_ratio(),
                buckets,
                max: buckets * era.default_ratio(),
            })
        }
        _ => None,
    };
    let ratio = era.unwrap_or(SizingEra::Since5_15).default_ratio();
    let size = facts.entry_size.value;
    let suggested = sizing(
        requested_max,
        round_buckets(requested_max.div_ceil(ratio).max(1)),
        size,
    );
    let current = match (facts.max, facts.buckets) {
        (Some(m), Some(b)) => Some(sizing(m, b, size)),
        _ => None,
    };
    let at_current_buckets = facts.buckets.map(|b| sizing(requested_max, b, size));
    let mut notes = Vec::new();
    if facts.entry_size.source == Source::Assumed {
        notes.push(format!(
            "entry size {size} bytes is assumed: /sys/kernel/slab/nf_conntrack and \
             /proc/slabinfo were not readable"
        ));
    }
    if era.is_none() {
        notes
            .push("kernel release unknown: the 5.15+ ratio (1 entry per bucket) is assumed".into());
    }
    if let Some(at) = &at_current_buckets
        && at.ratio > ratio as f64 * 2.0
    {
        notes.push(format!(
            "{requested_max} entries on the current {} buckets is {:.1} per bucket \
             (this kernel's default is {ratio}): lookups walk longer chains; \
             raise the buckets to {} as well",
            at.buckets, at.ratio, suggested.buckets
        ));
    }
    if let Some(current) = &current
        && requested_max < current.max
    {
        notes.push(format!(
            "{requested_max} is below the current max {}: `conntrack set --never-lower` \
             (or [conntrack] never_lower = true) would keep the current value",
            current.max
        ));
    }
    let buckets_change = buckets_change(facts);
    let kube_proxy = facts.cpus.map(|cpus| {
        let max = kube_proxy_max(cpus);
        KubeProxy {
            cpus,
            max,
            matches: max == requested_max,
        }
    });
    if let Some(k) = &kube_proxy
        && k.max > requested_max
    {
        notes.push(format!(
            "kube-proxy with its defaults raises nf_conntrack_max to {} on this host \
             ({} CPUs × {KUBE_PROXY_MAX_PER_CORE}, at least {KUBE_PROXY_MIN})",
            k.max, k.cpus
        ));
    }
    Plan {
        requested_max,
        entry_size: facts.entry_size.clone(),
        kernel_default,
        current,
        at_current_buckets,
        suggested,
        buckets_change,
        kube_proxy,
        notes,
    }
}

fn buckets_change(facts: &Facts) -> BucketsChange {
    let next_load_how = if facts.builtin {
        "nf_conntrack is built in: `nf_conntrack.hashsize=N` on the kernel command line, at the next boot"
    } else {
        "`options nf_conntrack hashsize=N` in modprobe.d (`nfkit conntrack set --buckets N --persist`), at the next load of nf_conntrack"
    };
    if facts.offline {
        return BucketsChange::Unknown {
            why: "offline (--root): the running kernel is not asked".into(),
        };
    }
    match facts.initial_netns {
        Some(false) => BucketsChange::NextLoad {
            why: "not the initial network namespace: the kernel resizes the table only \
                  from the initial one (EOPNOTSUPP)"
                .into(),
            how: format!("on the host: {next_load_how}"),
        },
        _ if facts.buckets_sysctl_writable => BucketsChange::RunTime {
            via: "net.netfilter.nf_conntrack_buckets (`nfkit conntrack set --buckets N`)".into(),
        },
        _ if facts.hashsize_param_writable => BucketsChange::RunTime {
            via: "/sys/module/nf_conntrack/parameters/hashsize".into(),
        },
        _ => BucketsChange::NextLoad {
            why: "neither nf_conntrack_buckets nor /sys/module/nf_conntrack/parameters/hashsize \
                  is writable here"
                .into(),
            how: next_load_how.into(),
        },
    }
}

/// Reads the facts of `host`.
pub fn gather(host: &crate::system::Host) -> Facts {
    let sysctl = host.sysctl();
    let read = |key: &str| sysctl.read_u64(key).ok().flatten();
    let mem_total = host
        .read_io(&host.proc("meminfo"), crate::read::Kind::KernelTable)
        .ok()
        .and_then(|text| parse_mem_total(&text));
    let writable = |path: std::path::PathBuf| {
        !host.offline && nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_ok()
    };
    let builtin = host.sys("module/nf_conntrack").is_dir()
        && !host.sys("module/nf_conntrack/initstate").exists();
    Facts {
        release: host.kernel_release().ok().flatten(),
        ram_bytes: mem_total,
        cpus: (!host.offline)
            .then(|| std::thread::available_parallelism().ok())
            .flatten()
            .map(|n| n.get() as u64),
        max: read(super::KEY_MAX),
        buckets: read(super::KEY_BUCKETS),
        entry_size: super::entry_size(host),
        initial_netns: host.network_namespace().initial,
        buckets_sysctl_writable: writable(host.proc("sys/net/netfilter/nf_conntrack_buckets")),
        hashsize_param_writable: writable(host.sys("module/nf_conntrack/parameters/hashsize")),
        builtin,
        offline: host.offline,
    }
}

/// `MemTotal:  24684092 kB` → bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts() -> Facts {
        Facts {
            release: Some("6.1.0-13-amd64".into()),
            ram_bytes: Some(24_684_092 * 1024),
            cpus: Some(2),
            max: Some(262_144),
            buckets: Some(262_144),
            entry_size: Sourced {
                value: 256,
                source: Source::Slab,
            },
            initial_netns: Some(true),
            buckets_sysctl_writable: true,
            hashsize_param_writable: false,
            builtin: true,
            offline: false,
        }
    }

    #[test]
    fn eras_from_release() {
        assert_eq!(SizingEra::of_release("5.15.0"), Some(SizingEra::Since5_15));
        assert_eq!(
            SizingEra::of_release("6.18.44-fc"),
            Some(SizingEra::Since5_15)
        );
        assert_eq!(
            SizingEra::of_release("5.10.0-26-amd64"),
            Some(SizingEra::Before5_15)
        );
        assert_eq!(SizingEra::of_release("4.19.0"), Some(SizingEra::Before5_15));
        assert_eq!(SizingEra::of_release("x"), None);
    }

    #[test]
    fn kernel_default_sizes() {
        let e = SizingEra::Since5_15;
        // > 4 GiB: 262144 (this machine: max 262144 = buckets 262144).
        assert_eq!(default_buckets(e, 24_684_092 * 1024, true), 262_144);
        assert_eq!(default_buckets(e, 3 * GIB, true), 65_536);
        // 512 MiB: 512 MiB / 16384 / 8 = 4096.
        assert_eq!(default_buckets(e, 512 << 20, true), 4096);
        assert_eq!(default_buckets(e, 32 << 20, true), 1024);
        // 32-bit: no 262144 step.
        assert_eq!(default_buckets(e, 8 * GIB, false), 65_536);
        let b = SizingEra::Before5_15;
        assert_eq!(default_buckets(b, 8 * GIB, true), 65_536);
        assert_eq!(default_buckets(b, 2 * GIB, true), 16_384);
        // 2000 MiB... below 1 GiB: 768 MiB / 16384 / 8 = 6144.
        assert_eq!(default_buckets(b, 768 << 20, true), 6144);
        // Tiny: 32 rounded up to the 512 granule.
        assert_eq!(default_buckets(b, 1 << 20, true), 512);
        let d = plan(1, &facts()).kernel_default.unwrap();
        assert_eq!((d.buckets, d.max, d.ratio), (262_144, 262_144, 1));
    }

    #[test]
    fn plan_for_a_million() {
        let p = plan(1_000_000, &facts());
        assert_eq!(p.suggested.buckets, 1_000_448);
        assert_eq!(p.suggested.memory_bytes, 1_000_000 * 256 + 1_000_448 * 8);
        let at = p.at_current_buckets.unwrap();
        assert_eq!(at.buckets, 262_144);
        assert!((at.ratio - 3.814).abs() < 0.001);
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("raise the buckets to 1000448")),
            "{:?}",
            p.notes
        );
        assert_eq!(
            p.buckets_change,
            BucketsChange::RunTime {
                via: "net.netfilter.nf_conntrack_buckets (`nfkit conntrack set --buckets N`)"
                    .into()
            }
        );
        assert_eq!(p.kube_proxy.unwrap().max, 131_072);
        // Before 5.15 the default ratio is 4.
        let mut old = facts();
        old.release = Some("5.10.0".into());
        assert_eq!(plan(1_000_000, &old).suggested.buckets, 250_368);
    }

    #[test]
    fn buckets_change_outside_the_initial_namespace_waits() {
        let mut f = facts();
        f.initial_netns = Some(false);
        assert!(
            matches!(buckets_change(&f), BucketsChange::NextLoad { ref how, .. } if how.contains("kernel command line"))
        );
        f.initial_netns = Some(true);
        f.buckets_sysctl_writable = false;
        f.builtin = false;
        assert!(
            matches!(buckets_change(&f), BucketsChange::NextLoad { ref how, .. } if how.contains("modprobe.d"))
        );
        f.hashsize_param_writable = true;
        assert!(matches!(buckets_change(&f), BucketsChange::RunTime { .. }));
        f.offline = true;
        assert!(matches!(buckets_change(&f), BucketsChange::Unknown { .. }));
    }

    #[test]
    fn kube_proxy_formula() {
        assert_eq!(kube_proxy_max(1), 131_072);
        assert_eq!(kube_proxy_max(4), 131_072);
        assert_eq!(kube_proxy_max(8), 262_144);
        let p = plan(131_072, &facts());
        assert!(p.kube_proxy.unwrap().matches);
    }

    #[test]
    fn mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            Some(24_684_092 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
    }

    proptest! {
        /// Suggested buckets: a multiple of 512, at least N / ratio, and
        /// less than 512 above it; the memory is entries plus 8 per bucket.
        #[test]
        fn suggested_buckets_keep_the_ratio(n in 1u64..=i32::MAX as u64, old in any::<bool>()) {
            let mut f = facts();
            if old { f.release = Some("4.19.0".into()); }
            let p = plan(n, &f);
            let ratio = if old { 4 } else { 1 };
            prop_assert_eq!(p.suggested.buckets % 512, 0);
            prop_assert!(p.suggested.buckets * ratio >= n);
            prop_assert!(p.suggested.buckets < n.div_ceil(ratio) + 512);
            prop_assert_eq!(p.suggested.memory_bytes, n * 256 + p.suggested.buckets * 8);
            prop_assert!(p.suggested.ratio <= ratio as f64);
        }

        /// Default buckets: a multiple of 512, within the era's bounds,
        /// never smaller for more memory.
        #[test]
        fn default_buckets_are_monotonic(a in 0u64..(64 * GIB), b in 0u64..(64 * GIB), old in any::<bool>()) {
            let era = if old { SizingEra::Before5_15 } else { SizingEra::Since5_15 };
            let (lo, hi) = (a.min(b), a.max(b));
            let (x, y) = (default_buckets(era, lo, true), default_buckets(era, hi, true));
            prop_assert!(x <= y);
            prop_assert_eq!(x % 512, 0);
            prop_assert!(y <= 262_144);
            let floor = if old { 512 } else { 1024 };
            prop_assert!(x >= floor);
        }
    }
}
