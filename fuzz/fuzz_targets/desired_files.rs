//! The boot-time files nfkit writes for an accepted nfkit.toml say exactly
//! what nfkit.toml says, nothing more: modules-load.d, the `/etc/modules`
//! block, modprobe.d, sysctl.d and `IPTABLES_MODULES`, each parsed back by
//! nfkit's own parsers (issue 10, "Injection into boot-time files").
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfkit::fuzzing::{self, Directive};

const HEADER: &str = "# Written by nfkit\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(desired) = fuzzing::desired_parse(&text) else {
        return;
    };
    let p = fuzzing::desired_persisted(&desired);

    // modules-load.d: one name per line, no parameters.
    let list = fuzzing::module_list_render(HEADER, &p.load);
    let back: Vec<(String, Vec<String>)> = fuzzing::module_list_parse(&list)
        .into_iter()
        .map(|(_, m, params)| (m, params))
        .collect();
    let want: Vec<(String, Vec<String>)> = p.load.iter().map(|m| (m.clone(), vec![])).collect();
    assert_eq!(back, want, "modules-load.d\n{list}");

    // /etc/modules: nfkit's block.
    let block = fuzzing::module_list_with_block("", &p.load).expect("block in an empty file");
    assert_eq!(
        fuzzing::module_list_block(&block).unwrap(),
        p.load,
        "/etc/modules\n{block}"
    );

    // modprobe.d: exactly one `options` line per module with options.
    let modprobe = fuzzing::modprobe_d_render(HEADER, &p.options);
    let (directives, errors) = fuzzing::modprobe_d_parse(&modprobe);
    assert!(
        errors.is_empty(),
        "modprobe.d errors at {errors:?}\n{modprobe}"
    );
    let back: Vec<(String, Vec<String>)> = directives
        .into_iter()
        .map(|(_, d)| match d {
            Directive::Options { module, options } => (module, options),
            other => panic!("modprobe.d holds {other:?}\n{modprobe}"),
        })
        .collect();
    let want: Vec<(String, Vec<String>)> = p
        .options
        .iter()
        .filter(|(_, o)| !o.is_empty())
        .map(|(m, o)| (fuzzing::normalize_module(m), o.clone()))
        .collect();
    assert_eq!(back, want, "modprobe.d\n{modprobe}");

    // sysctl.d: the same keys and values, no other line.
    let sysctl = fuzzing::sysctl_d_render(HEADER, &p.sysctl);
    let (lines, errors) = fuzzing::sysctl_d_parse(&sysctl);
    assert!(errors.is_empty(), "sysctl.d errors at {errors:?}\n{sysctl}");
    let back: Vec<(String, String)> = lines
        .into_iter()
        .map(|l| {
            assert!(!l.ignore_failure, "sysctl.d `-` line\n{sysctl}");
            (l.key, l.value)
        })
        .collect();
    assert_eq!(back, p.sysctl, "sysctl.d\n{sysctl}");

    // iptables-config: IPTABLES_MODULES holds the load list.
    if !p.load.is_empty() {
        let config = fuzzing::shell_set_words("", "IPTABLES_MODULES", &p.load)
            .expect("set IPTABLES_MODULES in an empty file");
        let vars = fuzzing::shell_parse(&config).expect("iptables-config parses");
        assert_eq!(vars.len(), 1, "iptables-config\n{config}");
        assert_eq!(
            fuzzing::shell_words(&vars[0].value),
            p.load,
            "iptables-config\n{config}"
        );
    }
});
