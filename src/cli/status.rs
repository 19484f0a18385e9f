//! `nfkit status`.

use serde::Serialize;

use super::{EXIT_OK, Output, render};
use crate::conntrack::{self, ConntrackStatus, ReadOptions};
use crate::system::{self, Host, NetnsInfo};
use crate::tables::{self, TablesReport};

/// Everything `nfkit status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// Whether the kernel has loadable-module support.
    pub module_support: bool,
    /// Whether libkmod.so.2 can be loaded.
    pub libkmod: Libkmod,
    /// The network namespace nfkit runs in.
    pub network_namespace: NetnsInfo,
    /// Container / restricted host: where each operation can be done.
    pub containment: crate::containment::Containment,
    /// Conntrack figures.
    pub conntrack: ConntrackStatus,
    /// Table names.
    pub tables: TablesReport,
    /// The kernel-enforced confinement of this run (seccomp, Landlock).
    pub confinement: crate::confine::Confinement,
}

/// libkmod availability (found on disk; module commands load it).
#[derive(Debug, Serialize)]
pub struct Libkmod {
    /// Whether `libkmod.so.2` was found where the dynamic loader looks.
    pub loadable: bool,
    /// Its path.
    pub path: Option<std::path::PathBuf>,
    /// Why not.
    pub error: Option<crate::error::ErrorObject>,
}

pub(super) fn run(host: &Host, output: Output) -> anyhow::Result<u8> {
    let libkmod = match system::find_libkmod() {
        Ok(path) => Libkmod {
            loadable: true,
            path: Some(path),
            error: None,
        },
        Err(e) => Libkmod {
            loadable: false,
            path: None,
            error: Some(crate::error::ErrorObject::text(e)),
        },
    };
    let netns = host.network_namespace();
    // One netlink socket for the conntrack statistics and the nft dump.
    let mut socket = crate::netlink::SharedSocket::default();
    let report = StatusReport {
        kernel_release: host.kernel_release()?,
        module_support: host.has_module_support(),
        libkmod,
        network_namespace: netns,
        containment: crate::containment::read_in(host, netns),
        conntrack: conntrack::read_status(host, ReadOptions::default(), &mut socket),
        tables: tables::read_tables(host, &mut socket),
        confinement: crate::confine::report(),
    };
    output.emit(&report, |out| render::status(out, &report, output.verbose))?;
    Ok(EXIT_OK)
}
