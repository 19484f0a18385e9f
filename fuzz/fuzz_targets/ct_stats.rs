//! ctnetlink statistics replies: per-CPU and global attribute decoders, on
//! raw attributes or on whole datagrams split into frames. What decodes
//! re-encodes (as the kernel would) and decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fn check_cpu(attributes: &[u8]) {
    if let Ok(counters) = fuzzing::stats_decode_cpu(attributes) {
        let bytes = fuzzing::stats_encode_cpu(&counters);
        assert_eq!(fuzzing::stats_decode_cpu(&bytes), Ok(counters), "{bytes:?}");
    }
}

fn check_global(attributes: &[u8]) {
    if let Ok(global) = fuzzing::stats_decode_global(attributes) {
        let bytes = fuzzing::stats_encode_global(&global);
        assert_eq!(
            fuzzing::stats_decode_global(&bytes),
            Ok(global),
            "{bytes:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    match choice % 3 {
        0 => check_cpu(rest),
        1 => check_global(rest),
        _ => {
            if let Ok(frames) = fuzzing::netlink_split_frames(rest) {
                for (_, payload) in frames {
                    let attributes = payload.get(4..).unwrap_or(&[]);
                    check_cpu(attributes);
                    check_global(attributes);
                }
            }
        }
    }
});
