//! nfkit: set up a Linux host's netfilter layer natively.
//!
//! Layout (pure logic, kernel I/O and CLI are kept apart):
//!
//! | module | kind | kernel interface |
//! |---|---|---|
//! | [`conntrack`] | pure codec + I/O | ctnetlink `IPCTNL_MSG_CT_GET_STATS(_CPU)`, `/proc/sys/net/netfilter`, `/proc/net/stat/nf_conntrack` |
//! | [`tables`] | pure codec + I/O | `/proc/net/*_tables_names`, `IPT_SO_GET_INFO`/`GET_ENTRIES`, nftables `NFT_MSG_GETTABLE`/`GETCHAIN` |
//! | [`metrics`] | pure renderer + I/O | Prometheus text format; `setns` per namespace (`--all-netns`) |
//! | [`netlink`] | I/O | one `NETLINK_NETFILTER` socket layer (netlink-sys) |
//! | [`sysctl`] | I/O over a root | `/proc/sys` reads and writes |
//! | [`read`] | I/O over a root | every read of a file nfkit did not write: regular files only, size caps, confinement |
//! | [`system`] | I/O over a root | kernel release, module support, network namespace |
//! | [`containment`] | pure + I/O | containers, OpenVZ, what must be done on the host |
//! | [`confine`] | I/O | seccomp filter (no exec, no new process) and Landlock ruleset (writes confined) |
//! | [`cli`] | CLI | clap definitions, rendering, exit codes |
//!
//! Nothing in this crate starts a process.

pub mod ansible;
pub mod cli;
pub mod confine;
pub mod conntrack;
pub mod containment;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod kmod;
pub mod lossless;
pub mod metrics;
pub mod modules;
pub mod netlink;
pub mod persist;
pub mod read;
pub mod sysctl;
pub mod system;
pub mod tables;
