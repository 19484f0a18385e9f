//! iptables-config: any text either is refused or parses to spans inside the
//! text; setting `IPTABLES_MODULES` gives a file that parses, where the
//! variable's last assignment holds exactly the words set, every other
//! variable keeps its value, and setting the same words again changes
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing::{self, ShellLine};

const NAME: &str = "IPTABLES_MODULES";

fn last<'a>(vars: &'a [ShellLine], name: &str) -> Option<&'a ShellLine> {
    vars.iter().rev().find(|a| a.name == name)
}

fuzz_target!(|data: &[u8]| {
    let (choice, rest) = data.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    let Ok(vars) = fuzzing::shell_parse(&text) else {
        return;
    };
    for v in &vars {
        assert!(v.span.start <= v.span.end && v.span.end <= text.len());
        assert!(text.is_char_boundary(v.span.start) && text.is_char_boundary(v.span.end));
    }
    let words: Vec<String> = match choice % 4 {
        0 => vec![],
        1 => vec!["nf_conntrack_ftp".into()],
        2 => vec![
            "nf_nat_ftp".into(),
            "xt_state".into(),
            "ip_conntrack_netbios_ns".into(),
        ],
        _ => vec!["nf-nat-sip".into(), "nf_conntrack_sip".into()],
    };
    let written = fuzzing::shell_set_words(&text, NAME, &words)
        .unwrap_or_else(|e| panic!("set_words refused a file that parses: {e}"));
    let after = fuzzing::shell_parse(&written)
        .unwrap_or_else(|e| panic!("the file written does not parse: {e:?}\n{written:?}"));
    let set = last(&after, NAME).unwrap_or_else(|| panic!("{NAME} not set\n{written:?}"));
    assert_eq!(fuzzing::shell_words(&set.value), words, "{written:?}");
    for v in &vars {
        if v.name != NAME {
            assert_eq!(
                last(&after, &v.name).map(|a| &a.value),
                last(&vars, &v.name).map(|a| &a.value),
                "{} changed\n{written:?}",
                v.name
            );
        }
    }
    assert_eq!(
        after.iter().filter(|a| a.name != NAME).count(),
        vars.iter().filter(|a| a.name != NAME).count(),
        "assignments appeared or vanished\n{written:?}"
    );
    let again = fuzzing::shell_set_words(&written, NAME, &words).expect("second set");
    let again_vars = fuzzing::shell_parse(&again).expect("parses");
    assert_eq!(
        fuzzing::shell_words(&last(&again_vars, NAME).unwrap().value),
        words,
        "second set\n{again:?}"
    );
});
