//! nftables replies: datagrams split into frames, each decoded as a table
//! (through netlink-packet-netfilter), a chain and a rule; or one payload
//! decoded directly. No panic; names never hold the NUL that ends them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fn payload(family: u8, message_type: u16, payload: &[u8]) {
    if let Ok(Some(table)) = fuzzing::nft_table_from_frame(message_type, payload) {
        assert!(!table.family.is_empty());
    }
    if let Some((table, chain)) = fuzzing::nft_chain_from_reply(family, payload) {
        assert!(!table.contains('\0') && !chain.name.contains('\0'));
        assert_eq!(chain.rules, 0);
    }
    if let Some((table, chain)) = fuzzing::nft_rule_location(payload) {
        assert!(!table.contains('\0') && !chain.contains('\0'));
    }
}

fuzz_target!(|data: &[u8]| {
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    if choice & 1 == 0 {
        if let Ok(frames) = fuzzing::netlink_split_frames(rest) {
            for (message_type, p) in frames {
                payload(p.first().copied().unwrap_or(0), message_type, &p);
            }
        }
    } else {
        let message_type = (0x0a << 8) | u16::from(choice >> 1);
        payload(rest.first().copied().unwrap_or(0), message_type, rest);
    }
});
