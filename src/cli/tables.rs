//! `nfkit tables` and `nfkit tables show`.

use clap::{Args, Subcommand};

use super::{EXIT_OK, Output, render};
use crate::system::Host;
use crate::tables;

/// `nfkit tables`.
#[derive(Debug, Args)]
pub struct TablesArgs {
    #[command(subcommand)]
    action: Option<TablesAction>,
}

#[derive(Debug, Subcommand)]
enum TablesAction {
    /// The chains of an existing table, with policy and rule count. Never
    /// creates the table.
    Show {
        /// Table name (e.g. nat, filter, or an nftables table).
        table: String,
        /// ipv4, ipv6, arp (legacy) or inet, ip, ip6, bridge, netdev, nft-arp (nftables).
        #[arg(long)]
        family: Option<String>,
    },
}

pub(super) fn run(host: &Host, args: TablesArgs, output: Output) -> anyhow::Result<u8> {
    match args.action {
        None => {
            let report = tables::read_tables(host, &mut crate::netlink::SharedSocket::default());
            output.emit(&report, |out| render::tables(out, &report))?;
        }
        Some(TablesAction::Show { table, family }) => {
            let family = family.as_deref().map(tables::parse_family).transpose()?;
            let shown = tables::show_table(host, &table, family)?;
            output.emit(&shown, |out| render::shown_table(out, &shown))?;
        }
    }
    Ok(EXIT_OK)
}
