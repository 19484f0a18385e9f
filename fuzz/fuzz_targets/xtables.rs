//! Legacy xtables getsockopt blobs: `*_getinfo` and the entry table. The
//! first byte picks the family. Info decodes and re-encodes to itself;
//! chains found are consistent with the info (no more built-in chains than
//! hooks, no more rules than entries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fuzz_target!(|data: &[u8]| {
    let (family, rest) = data.split_first().unwrap_or((&0, &[]));
    let info_size = if family % 3 == 2 { 68 } else { 84 };
    let Ok(info) = fuzzing::xt_parse_info(*family, rest) else {
        assert!(rest.len() < info_size);
        return;
    };
    if info.name.len() < 32 && !info.name.contains('\0') && !info.name.contains('\u{fffd}') {
        let bytes = fuzzing::xt_encode_info(*family, &info);
        assert_eq!(bytes.len(), info_size);
        assert_eq!(fuzzing::xt_parse_info(*family, &bytes).as_ref(), Ok(&info));
    }
    let entries = &rest[info_size..];
    if let Ok(chains) = fuzzing::xt_parse_chains(*family, &info, entries) {
        let hooks = if family % 3 == 2 { 3 } else { 5 };
        assert!(chains.iter().filter(|c| c.builtin).count() <= hooks);
        for c in &chains {
            assert!(
                c.rules < info.num_entries as usize,
                "{c:?}, {} entries",
                info.num_entries
            );
        }
        assert!(chains.iter().all(|c| c.builtin == c.policy.is_some()));
    }
});
