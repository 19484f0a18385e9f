//! Benchmark helper: creates N conntrack entries through ctnetlink in the
//! caller's network namespace (`fill-conntrack N [FIRST]`), then exits.
//! Entries are UDP flows with a 600 s timeout, so a run has 10 minutes.

use nfkit::conntrack::fixtures::create_udp_entries;
use nfkit::netlink::NfnlSocket;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u32 = args
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| anyhow::anyhow!("usage: fill-conntrack N [FIRST]"))?;
    let first: u32 = args
        .next()
        .map_or(Ok(1), |f| f.parse())
        .map_err(|_| anyhow::anyhow!("FIRST is a number"))?;
    let mut socket = NfnlSocket::open("fill conntrack")?;
    create_udp_entries(&mut socket, first, count)?;
    Ok(())
}
