//! The libkmod binding against a real module tree (no kernel changes).

#[path = "support/tree.rs"]
mod tree;

use nfkit::kmod::{Context, probe_flags};

#[test]
fn lookup_alias_resolves_to_real_module() {
    let t = tree::kernel_tree();
    let ctx = Context::new(Some(&t.moddir()), Some(&[t.root.join("etc/modprobe.d")])).unwrap();
    ctx.load_resources().unwrap();
    assert_eq!(ctx.dirname(), t.moddir());
    let list = ctx.lookup("ip_conntrack").unwrap();
    assert_eq!(list.names(), vec!["nf_conntrack".to_owned()]);
    let list = ctx.lookup("ipt_state").unwrap();
    assert_eq!(list.names(), vec!["xt_state".to_owned()]);
    assert!(ctx.lookup("no_such_module_xyz").unwrap().is_empty());
}

#[test]
fn dry_run_probe_reports_sequence_and_never_installs() {
    let t = tree::kernel_tree();
    let ctx = Context::new(Some(&t.moddir()), Some(&[t.root.join("etc/modprobe.d")])).unwrap();
    let m = ctx.module("xt_state").unwrap();
    let mut calls = 0;
    let out = m.probe_insert(
        probe_flags::DRY_RUN | probe_flags::IGNORE_LOADED | probe_flags::APPLY_BLACKLIST_ALIAS_ONLY,
        Some("foo=1"),
        &mut |_, _| {
            calls += 1;
            Ok(())
        },
    );
    assert_eq!(out.result.unwrap(), 0);
    let names: Vec<_> = out.actions.iter().map(|a| a.module.as_str()).collect();
    assert_eq!(names.last(), Some(&"xt_state"));
    assert!(names.contains(&"nf_conntrack"), "{names:?}");
    assert_eq!(out.actions.last().unwrap().options, "foo=1");
    assert_eq!(calls, 0);
    let info = m.info().unwrap();
    assert!(info.iter().any(|(k, _)| k == "vermagic"), "{info:?}");
    let deps = m.dependencies().names();
    assert!(deps.contains(&"x_tables".to_owned()), "{deps:?}");
}
