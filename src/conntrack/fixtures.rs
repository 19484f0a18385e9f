//! Test and benchmark support: creates conntrack entries through ctnetlink
//! (`IPCTNL_MSG_CT_NEW`), the deterministic way to fill a table without
//! traffic. Entries created this way count as `insert`. Not used by the CLI.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple},
};

use crate::netlink::{self, NfnlSocket, ReplyEnd};

fn tuple(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(IpAddr::V4(src)),
            IPTuple::DestinationAddress(IpAddr::V4(dst)),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Udp),
            ProtoTuple::SourcePort(sport),
            ProtoTuple::DestinationPort(dport),
        ]),
    ]
}

/// Creates `count` UDP entries `10.x.y.z:1000 → 192.0.2.1:53` (distinct
/// source addresses starting at index `first`), each with a 600 s timeout,
/// in the network namespace of `socket`.
pub fn create_udp_entries(
    socket: &mut NfnlSocket,
    first: u32,
    count: u32,
) -> Result<(), netlink::Error> {
    const OP: &str = "create conntrack entry (IPCTNL_MSG_CT_NEW)";
    let server = Ipv4Addr::new(192, 0, 2, 1);
    for index in first..first + count {
        let client = Ipv4Addr::from(0x0a00_0000u32 | (index & 0x00ff_ffff));
        let request = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(tuple(client, server, 1000, 53)),
                ConntrackAttribute::CtaTupleReply(tuple(server, client, 53, 1000)),
                ConntrackAttribute::CtaTimeout(600),
            ]),
        );
        socket.exchange(
            OP,
            request,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            ReplyEnd::Ack,
        )?;
    }
    Ok(())
}
