//! nfkit.toml: any text either is refused or, once accepted, renders to a
//! file that parses back to the same desired state (and renders the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(desired) = fuzzing::desired_parse(&text) else {
        return;
    };
    let rendered = fuzzing::desired_render(&desired);
    let again = fuzzing::desired_parse(&rendered)
        .unwrap_or_else(|e| panic!("nfkit.toml as rendered does not parse: {e}\n{rendered}"));
    assert_eq!(
        again, desired,
        "render → parse changed the state\n{rendered}"
    );
    assert_eq!(
        fuzzing::desired_render(&again),
        rendered,
        "render is not stable"
    );
});
