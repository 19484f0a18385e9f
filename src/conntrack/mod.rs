//! Connection tracking: statistics and limits.
//!
//! Sources, in order of preference:
//! - ctnetlink (`IPCTNL_MSG_CT_GET_STATS` for count and max,
//!   `IPCTNL_MSG_CT_GET_STATS_CPU` for per-CPU counters), which needs
//!   CAP_NET_ADMIN;
//! - `/proc/sys/net/netfilter/nf_conntrack_{count,max,buckets,expect_max}`
//!   (world-readable) and `/proc/net/stat/nf_conntrack` (only with
//!   `CONFIG_NF_CONNTRACK_PROCFS`).
//!
//! Every figure in a [`ConntrackStatus`] carries its [`Source`].

pub mod fixtures;
pub mod helper_read;
pub mod helpers;
pub mod limits;
pub mod plan;
pub mod procstat;
pub mod set;
pub mod stats;

use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily, conntrack::ConntrackMessage,
};
use serde::Serialize;

use crate::netlink::{self, NfnlSocket};
use crate::system::Host;
use stats::{Counters, CpuStats, GlobalStats};

/// sysctl keys (canonical names).
pub const KEY_MAX: &str = "net.netfilter.nf_conntrack_max";
/// Legacy alias of [`KEY_MAX`], registered for the initial namespace only.
pub const KEY_MAX_LEGACY: &str = "net.nf_conntrack_max";
/// Bucket count (the `hashsize` module parameter).
pub const KEY_BUCKETS: &str = "net.netfilter.nf_conntrack_buckets";
/// Entries in this namespace.
pub const KEY_COUNT: &str = "net.netfilter.nf_conntrack_count";
/// Expectation limit.
pub const KEY_EXPECT_MAX: &str = "net.netfilter.nf_conntrack_expect_max";

/// Where a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// ctnetlink.
    Netlink,
    /// `/proc/sys/net/netfilter`.
    Sysctl,
    /// `/proc/net/stat/nf_conntrack`.
    ProcStat,
    /// `/sys/kernel/slab` or `/proc/slabinfo`.
    Slab,
    /// A typical value, not read from this kernel.
    Assumed,
}

impl Source {
    /// Short label for human output.
    pub fn label(self) -> &'static str {
        match self {
            Source::Netlink => "netlink",
            Source::Sysctl => "sysctl",
            Source::ProcStat => "/proc/net/stat",
            Source::Slab => "slab",
            Source::Assumed => "assumed",
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Its source.
    pub source: Source,
}

impl<T> Sourced<T> {
    fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// Per-CPU and summed counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterReport {
    /// Where the counters came from.
    pub source: Source,
    /// Sum over all CPUs.
    pub total: Counters,
    /// One entry per CPU (keyed by CPU id; ids may have gaps).
    pub per_cpu: Vec<CpuStats>,
}

/// Estimate of the memory the table can use at its maximum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// `max × entry_size + buckets × 8`, in bytes.
    pub bytes: u64,
    /// Size of one `struct nf_conn` slab object.
    pub entry_size: Sourced<u32>,
}

/// Everything `nfkit conntrack` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConntrackStatus {
    /// Whether connection tracking is present in this kernel.
    pub present: bool,
    /// Entries in this network namespace.
    pub entries: Option<Sourced<u64>>,
    /// Maximum entries (global on current kernels); 0 = no limit.
    pub max: Option<Sourced<u64>>,
    /// Hash buckets.
    pub buckets: Option<Sourced<u64>>,
    /// `entries / max × 100`, when both are known and max > 0.
    pub usage_percent: Option<f64>,
    /// Maximum expectations.
    pub expect_max: Option<Sourced<u64>>,
    /// Per-CPU counters.
    pub counters: Option<CounterReport>,
    /// Memory estimate at the maximum.
    pub memory_estimate: Option<MemoryEstimate>,
    /// Explanations: fallbacks taken, missing pieces.
    pub notes: Vec<String>,
}

/// Typical `struct nf_conn` slab size on 64-bit kernels when it cannot be read.
const ASSUMED_ENTRY_SIZE: u32 = 320;

fn stats_request(message_type: u8) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        ConntrackMessage::Other {
            message_type,
            attributes: vec![],
        },
    )
}

/// Decode error of a stats reply, as a netlink error.
fn malformed(op: &'static str, e: impl std::fmt::Display) -> netlink::Error {
    netlink::Error::Malformed {
        op,
        detail: e.to_string(),
    }
}

/// Reads count and max through `IPCTNL_MSG_CT_GET_STATS`.
pub fn netlink_global_stats(socket: &mut NfnlSocket) -> Result<GlobalStats, netlink::Error> {
    const OP: &str = "read conntrack statistics (IPCTNL_MSG_CT_GET_STATS)";
    let reply = socket.request_one(OP, stats_request(stats::IPCTNL_MSG_CT_GET_STATS))?;
    stats::decode_global(attributes_of(&reply).ok_or_else(|| malformed(OP, "short payload"))?)
        .map_err(|e| malformed(OP, e))
}

/// Reads per-CPU counters through an `IPCTNL_MSG_CT_GET_STATS_CPU` dump.
pub fn netlink_cpu_stats(socket: &mut NfnlSocket) -> Result<Vec<CpuStats>, netlink::Error> {
    const OP: &str = "read conntrack per-CPU statistics (IPCTNL_MSG_CT_GET_STATS_CPU)";
    let replies = socket.dump(OP, stats_request(stats::IPCTNL_MSG_CT_GET_STATS_CPU))?;
    let mut per_cpu = Vec::with_capacity(replies.len());
    for reply in &replies {
        let header = NetfilterHeader::parse(&reply.payload).map_err(|e| malformed(OP, e))?;
        let attributes = attributes_of(reply).ok_or_else(|| malformed(OP, "short payload"))?;
        per_cpu.push(CpuStats {
            cpu: header.res_id,
            counters: stats::decode_cpu_counters(attributes).map_err(|e| malformed(OP, e))?,
        });
    }
    per_cpu.sort_by_key(|s| s.cpu);
    Ok(per_cpu)
}

/// The attribute bytes after the 4-byte nfgenmsg.
fn attributes_of(reply: &netlink::Reply) -> Option<&[u8]> {
    reply.payload.get(4..)
}

/// Options for [`read_status`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Do not use netlink even when available (files only).
    pub files_only: bool,
}

/// Gathers the conntrack status of the host (or of an offline tree);
/// netlink requests go through `socket` (opened only when netlink is used).
pub fn read_status(
    host: &Host,
    options: ReadOptions,
    socket: &mut netlink::SharedSocket,
) -> ConntrackStatus {
    let sysctl = host.sysctl();
    let mut notes = Vec::new();
    let read_key = |key: &str, notes: &mut Vec<String>| match sysctl.read_u64(key) {
        Ok(value) => value,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    // The buckets sysctl exists whenever conntrack does; entries and max
    // come from netlink when it answers (one request instead of two files),
    // from sysctl otherwise.
    let buckets = read_key(KEY_BUCKETS, &mut notes);
    let expect_max = read_key(KEY_EXPECT_MAX, &mut notes);
    let mut status = ConntrackStatus {
        present: buckets.is_some(),
        entries: None,
        max: None,
        buckets: buckets.map(|v| Sourced::new(v, Source::Sysctl)),
        usage_percent: None,
        expect_max: expect_max.map(|v| Sourced::new(v, Source::Sysctl)),
        counters: None,
        memory_estimate: None,
        notes,
    };

    let use_netlink = status.present && !options.files_only && !host.offline;
    if use_netlink && !host.component_present("nf_conntrack_netlink") {
        status.notes.push(
            "nf_conntrack_netlink is not loaded: figures from /proc only \
             (netlink was not used, so that reading does not load a module)"
                .into(),
        );
    } else if use_netlink {
        match read_netlink(socket, &mut status) {
            Ok(()) => {}
            Err(e) => {
                let hint = crate::error::hint(&e)
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                let e = crate::error::message(&e);
                status
                    .notes
                    .push(format!("{e}{hint}; falling back to /proc"));
            }
        }
    }
    if status.max.is_none() {
        status.max = read_key(KEY_MAX, &mut status.notes).map(|v| Sourced::new(v, Source::Sysctl));
    }
    if status.entries.is_none() {
        status.entries =
            read_key(KEY_COUNT, &mut status.notes).map(|v| Sourced::new(v, Source::Sysctl));
    }
    status.present |= status.max.is_some() || status.entries.is_some();
    if !status.present {
        status.notes.push(
            "connection tracking is not present in this kernel \
             (no /proc/sys/net/netfilter/nf_conntrack_*); load it with \
             `nfkit modules load nf_conntrack`"
                .into(),
        );
        return status;
    }
    if status.counters.is_none() {
        read_proc_counters(host, &mut status);
    }
    if let (Some(entries), Some(max)) = (&status.entries, &status.max)
        && max.value > 0
    {
        status.usage_percent = Some(entries.value as f64 * 100.0 / max.value as f64);
    }
    if let (Some(max), Some(buckets)) = (&status.max, &status.buckets) {
        let entry_size = entry_size(host);
        status.memory_estimate = Some(MemoryEstimate {
            bytes: limits::memory_estimate(
                u32::try_from(max.value).unwrap_or(u32::MAX),
                u32::try_from(buckets.value).unwrap_or(u32::MAX),
                entry_size.value,
            ),
            entry_size,
        });
    }
    status
}

fn read_netlink(
    socket: &mut netlink::SharedSocket,
    status: &mut ConntrackStatus,
) -> Result<(), netlink::Error> {
    let socket = socket.get("read conntrack statistics")?;
    let global = netlink_global_stats(socket)?;
    status.entries = Some(Sourced::new(global.entries.into(), Source::Netlink));
    if let Some(max) = global.max_entries {
        status.max = Some(Sourced::new(max.into(), Source::Netlink));
    }
    let per_cpu = netlink_cpu_stats(socket)?;
    status.counters = Some(CounterReport {
        source: Source::Netlink,
        total: Counters::sum(per_cpu.iter().map(|c| &c.counters)),
        per_cpu,
    });
    Ok(())
}

fn read_proc_counters(host: &Host, status: &mut ConntrackStatus) {
    let path = host.proc("net/stat/nf_conntrack");
    match host.read_io(&path, crate::read::Kind::KernelTable) {
        Ok(text) => match procstat::parse(&text) {
            Ok(parsed) => {
                let per_cpu: Vec<CpuStats> = parsed
                    .per_cpu
                    .into_iter()
                    .enumerate()
                    .map(|(i, counters)| CpuStats {
                        cpu: u16::try_from(i).unwrap_or(u16::MAX),
                        counters,
                    })
                    .collect();
                status.counters = Some(CounterReport {
                    source: Source::ProcStat,
                    total: Counters::sum(per_cpu.iter().map(|c| &c.counters)),
                    per_cpu,
                });
                if status.entries.is_none() {
                    status.entries = parsed.entries.map(|v| Sourced::new(v, Source::ProcStat));
                }
            }
            Err(e) => status.notes.push(e.to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => status.notes.push(
            "per-CPU counters unavailable: /proc/net/stat/nf_conntrack does not \
             exist (CONFIG_NF_CONNTRACK_PROCFS off) and netlink was not usable"
                .into(),
        ),
        Err(e) => status
            .notes
            .push(format!("cannot read {}: {e}", path.display())),
    }
}

/// The size of one conntrack entry, from the slab allocator when readable.
pub(crate) fn entry_size(host: &Host) -> Sourced<u32> {
    let from_sysfs = host
        .read_io(
            &host.sys("kernel/slab/nf_conntrack/slab_size"),
            crate::read::Kind::KernelValue,
        )
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if let Some(size) = from_sysfs {
        return Sourced::new(size, Source::Slab);
    }
    let from_slabinfo = host
        .read_io(&host.proc("slabinfo"), crate::read::Kind::KernelTable)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some("nf_conntrack"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|s| s.parse().ok())
        });
    match from_slabinfo {
        Some(size) => Sourced::new(size, Source::Slab),
        None => Sourced::new(ASSUMED_ENTRY_SIZE, Source::Assumed),
    }
}

/// Whether a status was read entirely without netlink.
pub fn netlink_used(status: &ConntrackStatus) -> bool {
    status
        .counters
        .as_ref()
        .is_some_and(|c| c.source == Source::Netlink)
}

/// Helper for tests and benchmarks: the message to send for a stats
/// request, as bytes.
#[doc(hidden)]
pub fn encoded_stats_request(message_type: u8, flags: u16, sequence: u32) -> Vec<u8> {
    netlink::encode_request(stats_request(message_type), flags, sequence)
}
