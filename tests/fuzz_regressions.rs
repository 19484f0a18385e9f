//! Inputs found by the fuzz targets (fuzz/, README "Fuzzing") in code this
//! branch does not own, kept as tests. An `#[ignore]`d test is an open bug:
//! its reason names the issue; run them with `cargo test --test
//! fuzz_regressions -- --ignored`. Fixed ones live next to their code.

use nfkit::fuzzing;

/// Found by the shell_vars target within a second (issue 10, "Encodings and
/// line endings"): an iptables-config ending in a backslash without a final
/// newline. Appending `IPTABLES_MODULES=...` after it makes the new line a
/// continuation of the previous one: bash (and nfkit's own parser) then
/// read `X=\nIPTABLES_MODULES=...` as X's value, and IPTABLES_MODULES is
/// not set at all.
#[test]
fn shell_vars_append_after_trailing_backslash_sets_the_variable() {
    let text = "S=\"\"\nX=\\";
    let words = vec!["nf_conntrack_ftp".to_string()];
    let written = fuzzing::shell_set_words(text, "IPTABLES_MODULES", &words).unwrap();
    let vars = fuzzing::shell_parse(&written).unwrap();
    let set = vars
        .iter()
        .rev()
        .find(|v| v.name == "IPTABLES_MODULES")
        .unwrap_or_else(|| panic!("IPTABLES_MODULES not set in {written:?}"));
    assert_eq!(fuzzing::shell_words(&set.value), words);
    let x = vars.iter().find(|v| v.name == "X").unwrap();
    assert_eq!(x.value, "", "X changed: {written:?}");
}

/// Found by the shell_vars target: a bare value continued onto the next line
/// (`IPTABLES_MODULES=\` newline) is rewritten as a bare multi-line value,
/// whose second line bash runs as a command.
#[test]
fn shell_vars_bare_continued_value_is_rewritten_as_one_word() {
    let text = "IPTABLES_MODULES=\\\n\n";
    let words = vec!["nf_conntrack_ftp".to_string()];
    let written = fuzzing::shell_set_words(text, "IPTABLES_MODULES", &words).unwrap();
    let vars = fuzzing::shell_parse(&written)
        .unwrap_or_else(|e| panic!("{written:?} does not parse: {e:?}"));
    assert_eq!(fuzzing::shell_words(&vars.last().unwrap().value), words);
}

/// Found by the desired_files target (issue 10, "Injection into boot-time
/// files"): nfkit.toml accepts a sysctl key holding `=`, and sysctl.d then
/// reads `net.netfilter.nf_conntrack_a=cct = 1` as the key
/// `net.netfilter.nf_conntrack_a` with the value `cct = 1`.
#[test]
fn sysctl_key_with_equals_is_refused_or_written_back_exactly() {
    let text = "[sysctl]\n\"net.netfilter.nf_conntrack_a=cct\" = true\n";
    let Ok(desired) = fuzzing::desired_parse(text) else {
        return; // refused: the fix
    };
    let settings = fuzzing::desired_persisted(&desired).sysctl;
    let rendered = fuzzing::sysctl_d_render("", &settings);
    let (lines, errors) = fuzzing::sysctl_d_parse(&rendered);
    assert!(errors.is_empty());
    let back: Vec<(String, String)> = lines.into_iter().map(|l| (l.key, l.value)).collect();
    assert_eq!(back, settings, "{rendered}");
}

/// Found by the shell_vars fuzz target in CI's smoke: a file ending in `\r`
/// without a newline. The newline appended before `IPTABLES_MODULES=` made
/// that `\r` part of a CRLF line end, so the last value lost its final
/// `\r`; now a CRLF follows it and every earlier value stays as it was.
#[test]
fn shell_vars_append_after_a_trailing_carriage_return_keeps_the_value() {
    let text = "X=\"a\nb\"\x0b\r\r";
    let before = fuzzing::shell_parse(text).unwrap();
    let words = vec!["nf_conntrack_ftp".to_string()];
    let written = fuzzing::shell_set_words(text, "IPTABLES_MODULES", &words).unwrap();
    let after = fuzzing::shell_parse(&written).unwrap();
    assert_eq!(after[0].value, before[0].value, "{written:?}");
    assert_eq!(fuzzing::shell_words(&after[1].value), words, "{written:?}");
    let again = fuzzing::shell_set_words(&written, "IPTABLES_MODULES", &words).unwrap();
    assert_eq!(again, written);
}
