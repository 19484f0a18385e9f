//! Man pages (pure): `nfkit(8)` and one page per visible subcommand
//! (`nfkit-apply(8)`, `nfkit-modules-load(8)`, ...) rendered from the clap
//! definitions with `clap_mangen`, plus the sections clap does not know
//! (EXIT STATUS, FILES, EXAMPLES, SEE ALSO); and `nfkit.toml(5)`, written by
//! hand in `contrib/man/nfkit.toml.5` (a unit test keeps it in step with the
//! parser's types). Packagers get them through `nfkit __gen man`.

use clap::CommandFactory;

use super::Cli;

/// Section of the command pages (system administration).
const SECTION: &str = "8";

/// The hand-written page of the desired-state format.
pub(crate) const NFKIT_TOML_5: &str = include_str!("../../contrib/man/nfkit.toml.5");

/// File name of the desired-state format's page.
const NFKIT_TOML_PAGE: &str = "nfkit.toml.5";

/// Every visible command, depth first (the top command first), with its
/// page name (`nfkit-modules-load`).
fn commands() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, name: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((name.clone(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, format!("{name}-{}", sub.get_name()), out);
        }
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, cmd.get_name().to_owned(), &mut out);
    out
}

/// File names of every page (`nfkit.8`, `nfkit-apply.8`, ..., `nfkit.toml.5`).
pub(crate) fn page_files() -> Vec<String> {
    let mut files: Vec<String> = commands()
        .into_iter()
        .map(|(name, _)| format!("{name}.{SECTION}"))
        .collect();
    files.push(NFKIT_TOML_PAGE.to_owned());
    files
}

/// The roff source of page `file` (a name from [`page_files`]).
pub(crate) fn render(file: &str) -> Option<String> {
    if file == NFKIT_TOML_PAGE {
        return Some(NFKIT_TOML_5.to_owned());
    }
    let name = file.strip_suffix(&format!(".{SECTION}"))?;
    let all = commands();
    let (_, cmd) = all.iter().find(|(n, _)| n == name)?;
    let subpages: Vec<&str> = all
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            n.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .collect();
    Some(render_command(name, cmd, &subpages))
}

fn render_command(name: &str, cmd: &clap::Command, subpages: &[&str]) -> String {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(SECTION)
        .manual("System Administration")
        .render(&mut buf)
        .expect("rendering into a Vec cannot fail");
    let generated = String::from_utf8(buf).expect("clap_mangen renders UTF-8 from UTF-8 help");
    let mut extra = String::new();
    extra.push_str(EXIT_STATUS);
    extra.push_str(FILES);
    extra.push_str(".SH EXAMPLES\n");
    extra.push_str(examples(name).unwrap_or(""));
    // No hyphenation inside page names.
    extra.push_str(".SH \"SEE ALSO\"\n.nh\n");
    let mut see: Vec<String> = Vec::new();
    if name != "nfkit" {
        see.push("nfkit (8)".to_owned());
    }
    see.extend(subpages.iter().map(|p| format!("{p} (8)")));
    see.push("nfkit.toml (5)".to_owned());
    see.extend(
        [
            "modprobe (8)",
            "modprobe.d (5)",
            "sysctl.d (5)",
            "conntrack (8)",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    let refs: Vec<String> = see
        .iter()
        .map(|s| {
            let (page, sec) = s.split_once(' ').expect("written as `page (n)`");
            format!(".BR {page} {sec}")
        })
        .collect();
    // One reference per line, comma-separated (the last without a comma).
    for (i, r) in refs.iter().enumerate() {
        extra.push_str(r);
        if i + 1 < refs.len() {
            extra.push_str(" ,");
        }
        extra.push('\n');
    }
    extra.push_str(".hy\n");
    // The project's sections go before clap's VERSION section.
    match generated.find(".SH VERSION") {
        Some(at) => format!("{}{extra}{}", &generated[..at], &generated[at..]),
        None => generated + &extra,
    }
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Success: the command did what was asked (for \fBapply\fR and \fBverify\fR:
the state matches).
.TP
.B 1
Error: an operation failed or an item was refused; the message names the
operation, the object and the cause, and a \fBhint:\fR line follows when
one helps.
.TP
.B 2
Usage error: unknown flag, missing or malformed argument.
.TP
.B 3
The state differs from what was asked: \fBapply \-\-check\fR would change
something, or \fBverify\fR found desired, running and next-boot states
apart.
"#;

const FILES: &str = r#".SH FILES
.TP
.I /etc/nfkit/nfkit.toml
The desired state (see \fBnfkit.toml\fR(5)); \fB\-\-config\fR names another
file. Written by \fBnfkit\fR itself when a command is given \fB\-\-persist\fR.
.TP
.I /run/lock/nfkit.lock
Held while nfkit writes files (in \fI/run\fR or \fI/tmp\fR when
\fI/run/lock\fR is missing).
.TP
.I /etc/modules-load.d/nfkit.conf
.TQ
.I /etc/modules
Modules loaded at boot (systemd hosts; Debian hosts without systemd).
.TP
.I /etc/modprobe.d/nfkit.conf
Module options (e.g. the conntrack hash size).
.TP
.I /etc/sysctl.d/90\-nfkit.conf
.TQ
.I /etc/sysctl.conf
Conntrack limits and other netfilter sysctls set at boot.
.TP
.I /etc/sysconfig/iptables\-config
\fBIPTABLES_MODULES\fR on Red Hat family hosts.
.TP
.I /lib/modules/RELEASE/
The module tree libkmod reads (\fBmodules.dep\fR, \fBmodules.alias\fR, ...).
.TP
.I /usr/lib/systemd/system/nfkit\-boot.service
.TQ
.I /etc/init.d/nfkit
Run \fBnfkit boot\fR at boot (not enabled by the package).
"#;

/// The EXAMPLES section of each page; `None` for a page without (a unit
/// test requires one for every page).
fn examples(page: &str) -> Option<&'static str> {
    Some(match page {
        "nfkit" => {
            r#"Show the kernel, module support, conntrack and tables at once:
.PP
.EX
nfkit status
.EE
.PP
Record the wanted state, then make the host match it now and at every boot:
.PP
.EX
nfkit import > /etc/nfkit/nfkit.toml
nfkit apply \-\-diff
nfkit verify
.EE
"#
        }
        "nfkit-status" => {
            r#".EX
nfkit status
nfkit \-\-json status
.EE
"#
        }
        "nfkit-conntrack" => {
            r#".EX
nfkit conntrack
nfkit conntrack \-\-per\-cpu
.EE
"#
        }
        "nfkit-conntrack-set" => {
            r#"Raise the limit now and keep it across reboots:
.PP
.EX
nfkit conntrack set \-\-max 500000 \-\-buckets 131072 \-\-persist
nfkit conntrack set net.nf_conntrack_max=262144 \-\-dry\-run
.EE
"#
        }
        "nfkit-tables" => {
            r#".EX
nfkit tables
.EE
"#
        }
        "nfkit-tables-show" => {
            r#".EX
nfkit tables show nat
nfkit tables show filter \-\-family ipv6
.EE
"#
        }
        "nfkit-modules" => {
            r#".EX
nfkit modules list
nfkit modules resolve ip_conntrack
.EE
"#
        }
        "nfkit-modules-list" => {
            r#".EX
nfkit modules list \-\-all
.EE
"#
        }
        "nfkit-modules-resolve" => {
            r#".EX
nfkit modules resolve ipt_state nf_nat_ftp
.EE
"#
        }
        "nfkit-modules-load" => {
            r#"Load with an option and load it at every boot:
.PP
.EX
nfkit modules load nf_conntrack expect_hashsize=1024 \-\-persist
nfkit modules load \-\-dry\-run xt_multiport
.EE
"#
        }
        "nfkit-modules-unload" => {
            r#".EX
nfkit modules unload \-\-dry\-run nf_nat_ftp
.EE
"#
        }
        "nfkit-apply" => {
            r#"See what would change, then change it:
.PP
.EX
nfkit apply \-\-check \-\-diff
nfkit apply
.EE
.PP
Prepare an image's files without touching the running kernel:
.PP
.EX
nfkit \-\-root /mnt/image apply
.EE
"#
        }
        "nfkit-verify" => {
            r#".EX
nfkit verify || echo "exit $?: 3 means the states differ"
.EE
"#
        }
        "nfkit-import" => {
            r#".EX
nfkit import > /etc/nfkit/nfkit.toml
nfkit import \-\-from pcs /etc/sysconfig/iptables\-config
.EE
"#
        }
        "nfkit-boot" => {
            r#"Run by \fInfkit\-boot.service\fR or \fI/etc/init.d/nfkit\fR:
.PP
.EX
systemctl enable nfkit\-boot.service
.EE
"#
        }
        "nfkit-conntrack-plan" => {
            r#"Memory and buckets before raising the limit:
.PP
.EX
nfkit conntrack plan \-\-max 1048576
.EE
"#
        }
        "nfkit-explain" => {
            r#"Why a module will or will not load (exit 1 when it would not):
.PP
.EX
nfkit explain nf_conntrack_ftp ip_conntrack
nfkit \-\-json explain xt_state
.EE
"#
        }
        "nfkit-metrics" => {
            r#"For node_exporter's textfile collector (written atomically):
.PP
.EX
nfkit metrics \-\-textfile /var/lib/prometheus/node\-exporter/nfkit.prom
nfkit metrics \-\-all\-netns
.EE
"#
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_examples_and_the_project_sections() {
        for (name, _) in commands() {
            assert!(
                examples(&name).is_some(),
                "{name}(8) has no EXAMPLES: add them to cli::manpages::examples"
            );
            let page = render(&format!("{name}.8")).unwrap();
            for section in [
                ".SH \"EXIT STATUS\"",
                ".SH FILES",
                ".SH EXAMPLES",
                ".SH NAME",
            ] {
                assert!(page.contains(section), "{name}(8) lacks {section}");
            }
            assert!(page.find(".SH EXAMPLES") < page.find(".SH VERSION"));
        }
    }

    #[test]
    fn pages_follow_the_visible_commands() {
        let files = page_files();
        assert_eq!(files[0], "nfkit.8");
        assert!(files.contains(&"nfkit-apply.8".to_owned()));
        assert!(files.contains(&"nfkit-modules-load.8".to_owned()));
        assert!(files.contains(&"nfkit.toml.5".to_owned()));
        assert!(!files.iter().any(|f| f.contains("__")), "{files:?}");
        assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
        for f in &files {
            assert!(render(f).is_some(), "{f}");
        }
        assert_eq!(render("nfkit-nosuch.8"), None);
    }

    #[test]
    fn see_also_lists_the_subpages() {
        let top = render("nfkit.8").unwrap();
        assert!(top.contains(".BR nfkit-modules-load (8)"), "{top}");
        let modules = render("nfkit-modules.8").unwrap();
        assert!(modules.contains(".BR nfkit-modules-unload (8)"));
        assert!(!modules.contains(".BR nfkit-apply (8)"));
    }
}
