//! What `nfkit import` takes by default: the admin's configuration of the
//! netfilter layer (pure, apart from [`ModuleLayer::load`]).
//!
//! Two questions decide whether an item found in a file is imported:
//!
//! - **Whose file is it?** ([`FileClass`]) `/etc` holds the admin's
//!   configuration. `/usr/lib`, `/lib` and `/usr/local/lib` hold vendor
//!   defaults: the distribution's packages, and (`/usr/local/lib`) software
//!   the admin installed locally, which ships its defaults there the same way
//!   (systemd's file-hierarchy(7) and kmod give the three the same role, and
//!   `/etc` overrides all of them). Copying a vendor default into nfkit.toml
//!   would make `apply` write it into `/etc`, where it would override the
//!   vendor's future changes. `/run` is generated at runtime and lost at
//!   reboot: it is never imported. A file named on the command line is the
//!   admin's choice.
//! - **Is it about the netfilter layer?** A module is netfilter when the
//!   module tree (`/lib/modules/*/modules.dep` and `modules.builtin`) places
//!   it in a directory named `netfilter` below `kernel/net/`
//!   (`kernel/net/netfilter/`, `kernel/net/ipv4/netfilter/`,
//!   `kernel/net/ipv6/netfilter/`, `kernel/net/bridge/netfilter/`, ...), or
//!   it is `br_netfilter` (`kernel/net/bridge/`). A name the tree does not
//!   place (no tree, not in it, or out of tree under `extra/` or `updates/`)
//!   is judged by its name: 2.6-era netfilter names (`ip_conntrack`,
//!   `ip_nat_ftp`, `ipt_*`) and the netfilter prefixes (`nf_`, `nft_`, `xt_`,
//!   `ipt_`, `iptable_`, `ebt_`, `ip_set`, `ip_vs`, ...). Names in
//!   `IPTABLES_MODULES` are netfilter by construction. A sysctl is netfilter
//!   when it is `net.netfilter.*`, `net.nf_conntrack_max` or a 2.6-era
//!   `net.ipv4.netfilter.ip_conntrack_*` key.
//!
//! `--all` ([`Scope::All`]) imports vendor files and non-netfilter modules
//! too, and lists every item it adds; the default lists what it skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::modules::{legacy, sysfs};

/// How much `import` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The admin's files, netfilter modules, their options, netfilter sysctls.
    Netfilter,
    /// Also vendor files and modules outside the netfilter layer (`--all`).
    All,
}

/// Whose a configuration file is, by its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileClass {
    /// `/etc`: the admin's configuration.
    Admin,
    /// `/usr/lib`, `/lib`, `/usr/local/lib`: defaults shipped with software.
    Vendor,
    /// `/run`: generated at runtime, gone at reboot.
    Runtime,
    /// Named on the command line: the admin's choice.
    Named,
}

impl FileClass {
    /// The class of a default source path (as seen inside the root).
    pub fn of(path: &Path) -> Self {
        let under = |dir: &str| path.starts_with(dir);
        if under("/etc") {
            Self::Admin
        } else if under("/run") {
            Self::Runtime
        } else {
            // /usr/lib, /lib, /usr/local/lib, and anything else not the admin's.
            Self::Vendor
        }
    }
}

/// Why an item is outside the default scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// It comes from a vendor file (`--all` adds it).
    VendorFile,
    /// Its module is not part of the netfilter layer (`--all` adds it).
    NotNetfilter,
    /// It comes from `/run` (never imported).
    RuntimeFile,
}

impl Reason {
    /// Whether `--all` imports items skipped for this reason.
    pub fn widened_by_all(self) -> bool {
        !matches!(self, Self::RuntimeFile)
    }

    fn text(self) -> &'static str {
        match self {
            Self::VendorFile => "vendor default",
            Self::NotNetfilter => "not a netfilter module",
            Self::RuntimeFile => "generated at runtime in /run",
        }
    }
}

/// Why an item from a file of `class`, netfilter or not, is outside the
/// default scope; empty when it is inside.
pub fn reasons(class: FileClass, netfilter: bool) -> Vec<Reason> {
    let mut out = Vec::new();
    match class {
        FileClass::Vendor => out.push(Reason::VendorFile),
        FileClass::Runtime => out.push(Reason::RuntimeFile),
        FileClass::Admin | FileClass::Named => {}
    }
    if !netfilter {
        out.push(Reason::NotNetfilter);
    }
    out
}

/// Whether `scope` imports an item with these reasons.
pub fn admitted(scope: Scope, reasons: &[Reason]) -> bool {
    match scope {
        Scope::Netfilter => reasons.is_empty(),
        Scope::All => reasons.iter().all(|r| r.widened_by_all()),
    }
}

/// One thing a source line would bring into nfkit.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A module to load.
    Load {
        /// The name as written.
        module: String,
    },
    /// An `options` line (or parameters in `/etc/modules`).
    Options {
        /// The module (or alias) as written.
        module: String,
        /// `key=value` words.
        options: Vec<String>,
    },
    /// A sysctl assignment.
    Sysctl {
        /// The key as written.
        key: String,
        /// The value.
        value: String,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load { module } => write!(f, "load {module}"),
            Self::Options { module, options } => {
                write!(f, "options {module} {}", options.join(" "))
            }
            Self::Sysctl { key, value } => write!(f, "{key} = {value}"),
        }
    }
}

/// An item outside the default scope: skipped by default, added by `--all`
/// (unless a reason is not widened by `--all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutOfScope {
    /// What it is.
    pub item: Item,
    /// `file:line`.
    pub source: String,
    /// Why it is outside the default scope.
    pub reasons: Vec<Reason>,
    /// Whether this run imported it.
    pub imported: bool,
}

impl OutOfScope {
    fn why(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.text())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The comment lines that account for out-of-scope items: with `--all`,
/// one per added item (its source and why the default skips it); without,
/// counts per reason and a hint that `--all` exists. Runtime files are
/// counted in both.
pub fn summary(items: &[OutOfScope], ignored_sysctls: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in items.iter().filter(|i| i.imported) {
        out.push(format!(
            "added by --all: {}: {} ({})",
            i.source,
            i.item,
            i.why()
        ));
    }
    let skipped: Vec<&OutOfScope> = items.iter().filter(|i| !i.imported).collect();
    if !skipped.is_empty() {
        let count = |reason: Reason| {
            skipped
                .iter()
                .filter(|i| i.reasons.contains(&reason))
                .count()
        };
        let parts: Vec<String> = [
            Reason::VendorFile,
            Reason::NotNetfilter,
            Reason::RuntimeFile,
        ]
        .into_iter()
        .filter_map(|r| {
            let n = count(r);
            (n > 0).then(|| format!("{n} {}", plural(r, n)))
        })
        .collect();
        let widenable = skipped
            .iter()
            .any(|i| i.reasons.iter().all(|r| r.widened_by_all()));
        out.push(format!(
            "not imported: {} item{} ({}){}",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            parts.join("; "),
            if widenable {
                "; `nfkit import --all` adds vendor defaults and non-netfilter modules, listing each"
            } else {
                ""
            }
        ));
    }
    if ignored_sysctls > 0 {
        out.push(format!(
            "not imported: {ignored_sysctls} sysctl assignment{} outside net.netfilter (nfkit.toml holds net.netfilter.* only)",
            if ignored_sysctls == 1 { "" } else { "s" }
        ));
    }
    out
}

fn plural(reason: Reason, n: usize) -> &'static str {
    match (reason, n == 1) {
        (Reason::VendorFile, true) => "from a vendor file",
        (Reason::VendorFile, false) => "from vendor files",
        (Reason::NotNetfilter, true) => "about a module outside the netfilter layer",
        (Reason::NotNetfilter, false) => "about modules outside the netfilter layer",
        (Reason::RuntimeFile, true) => "from /run (generated at runtime)",
        (Reason::RuntimeFile, false) => "from /run (generated at runtime)",
    }
}

/// Which modules belong to the netfilter layer, from the module trees under
/// a root, with the name rule for names the trees do not place.
#[derive(Debug, Clone, Default)]
pub struct ModuleLayer {
    /// Module name → whether a tree places it in the netfilter layer.
    placed: BTreeMap<String, bool>,
}

/// Where a module tree path places a module: `Some(true)` in the netfilter
/// layer, `Some(false)` elsewhere in the kernel's tree, `None` for out-of-tree
/// modules (`extra/`, `updates/`), which the path says nothing about.
pub fn placement(path: &str) -> Option<(String, bool)> {
    let mut rel = path.trim();
    if let Some(abs) = rel.strip_prefix("/lib/modules/") {
        // Old module-init-tools wrote absolute paths: drop the release too.
        rel = abs.split_once('/')?.1;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let (file, dirs) = parts.split_last()?;
    let name = crate::modules::name::ModuleName::from_tree_path(file)?.into_string();
    if dirs.first() != Some(&"kernel") {
        return None;
    }
    let in_net = dirs.get(1) == Some(&"net");
    let netfilter = in_net
        && (dirs[2..].contains(&"netfilter")
            || (name == "br_netfilter" && dirs.get(2) == Some(&"bridge")));
    Some((name, netfilter))
}

/// The name rule, for names no tree places.
pub fn netfilter_by_name(name: &str) -> bool {
    legacy::lookup(name).is_some() || sysfs::is_netfilter(name)
}

impl ModuleLayer {
    /// From the texts of `modules.dep` and `modules.builtin` files (any
    /// number of releases; a name any of them places in the netfilter layer
    /// is netfilter).
    pub fn from_trees<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut placed = BTreeMap::new();
        for text in texts {
            for line in text.lines() {
                // modules.dep: "path: deps"; modules.builtin: "path".
                let path = line.split(':').next().unwrap_or("");
                if let Some((name, netfilter)) = placement(path) {
                    let entry = placed.entry(name).or_insert(false);
                    *entry |= netfilter;
                }
            }
        }
        Self { placed }
    }

    /// Reads every release's `modules.dep` and `modules.builtin` under
    /// `root/lib/modules`. No tree: the name rule alone.
    pub fn load(root: &Path) -> Self {
        let mut texts = Vec::new();
        for release in sysfs::releases(root) {
            for file in ["modules.dep", "modules.builtin"] {
                let inner = Path::new("/lib/modules").join(&release).join(file);
                if let Ok(Some(text)) =
                    crate::read::read_text(root, &inner, crate::read::Kind::ModuleIndex)
                {
                    texts.push(text);
                }
            }
        }
        Self::from_trees(texts.iter().map(String::as_str))
    }

    /// Whether the tree knows any module.
    pub fn has_tree(&self) -> bool {
        !self.placed.is_empty()
    }

    /// Whether `name` (as written: dashes, legacy names) is a netfilter module.
    pub fn is_netfilter(&self, name: &str) -> bool {
        let normalized = crate::modules::name::ModuleName::canonical(name);
        if legacy::lookup(normalized.as_str()).is_some() {
            return true;
        }
        match self.placed.get(normalized.as_str()) {
            Some(&netfilter) => netfilter,
            None => netfilter_by_name(normalized.as_str()),
        }
    }
}

/// A sysctl key (dotted or slashed) that belongs to the netfilter layer.
pub fn is_netfilter_sysctl(key: &str) -> bool {
    let dotted = key.replace('/', ".");
    dotted.starts_with("net.netfilter.")
        || dotted == "net.nf_conntrack_max"
        || dotted.starts_with("net.ipv4.netfilter.ip_conntrack_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_classes() {
        for (path, class) in [
            ("/etc/modprobe.d/a.conf", FileClass::Admin),
            ("/etc/modules", FileClass::Admin),
            ("/etc/sysconfig/iptables-config", FileClass::Admin),
            ("/usr/lib/modprobe.d/aliases.conf", FileClass::Vendor),
            ("/lib/modprobe.d/aliases.conf", FileClass::Vendor),
            ("/usr/local/lib/sysctl.d/x.conf", FileClass::Vendor),
            ("/run/modprobe.d/x.conf", FileClass::Runtime),
            ("/etcetera/x.conf", FileClass::Vendor),
        ] {
            assert_eq!(FileClass::of(Path::new(path)), class, "{path}");
        }
    }

    #[test]
    fn placement_by_tree_path() {
        for (path, want) in [
            (
                "kernel/net/netfilter/xt_state.ko.xz",
                Some(("xt_state", true)),
            ),
            (
                "kernel/net/ipv4/netfilter/iptable_nat.ko",
                Some(("iptable_nat", true)),
            ),
            (
                "kernel/net/netfilter/ipvs/ip_vs_rr.ko.zst",
                Some(("ip_vs_rr", true)),
            ),
            (
                "kernel/net/bridge/br_netfilter.ko",
                Some(("br_netfilter", true)),
            ),
            ("kernel/net/bridge/bridge.ko", Some(("bridge", false))),
            (
                "kernel/drivers/net/bonding/bonding.ko",
                Some(("bonding", false)),
            ),
            (
                "kernel/sound/drivers/pcsp/snd-pcsp.ko",
                Some(("snd_pcsp", false)),
            ),
            // A "netfilter" directory outside net/ is not the layer.
            ("kernel/drivers/netfilter/x.ko", Some(("x", false))),
            (
                "/lib/modules/2.6.32-x/kernel/net/ipv4/netfilter/ip_tables.ko",
                Some(("ip_tables", true)),
            ),
            ("updates/dkms/xt_geoip.ko", None),
            ("extra/foo.ko", None),
            ("", None),
            ("kernel/net/netfilter/README", None),
        ] {
            let got = placement(path);
            assert_eq!(got.as_ref().map(|(n, b)| (n.as_str(), *b)), want, "{path}");
        }
    }

    #[test]
    fn tree_decides_then_name_rule() {
        let dep = "kernel/net/netfilter/nf_conntrack.ko: kernel/net/netfilter/nf_defrag.ko\n\
                   kernel/drivers/net/dummy.ko:\n\
                   kernel/drivers/misc/nf_lookalike.ko:\n\
                   updates/dkms/xt_geoip.ko: kernel/net/netfilter/x_tables.ko\n";
        let layer = ModuleLayer::from_trees([dep, "kernel/net/ipv4/netfilter/ip_tables.ko\n"]);
        assert!(layer.has_tree());
        assert!(layer.is_netfilter("nf_conntrack"));
        assert!(layer.is_netfilter("ip_tables"), "builtin");
        assert!(!layer.is_netfilter("dummy"));
        // The tree places it outside the layer, whatever its name says.
        assert!(!layer.is_netfilter("nf_lookalike"));
        // Out of tree: the name decides.
        assert!(layer.is_netfilter("xt_geoip"));
        // Legacy names are netfilter, even as aliases the tree cannot know.
        assert!(layer.is_netfilter("ip_conntrack"));
        assert!(layer.is_netfilter("ip-nat-ftp"));
        assert!(!layer.is_netfilter("snd-pcsp"));
        let none = ModuleLayer::default();
        assert!(!none.has_tree());
        assert!(none.is_netfilter("nft_ct") && !none.is_netfilter("bonding"));
    }

    #[test]
    fn any_release_placing_it_in_the_layer_wins() {
        let layer = ModuleLayer::from_trees([
            "kernel/net/foo/nf_moved.ko:\n",
            "kernel/net/netfilter/nf_moved.ko:\n",
        ]);
        assert!(layer.is_netfilter("nf_moved"));
    }

    #[test]
    fn sysctl_keys() {
        for key in [
            "net.netfilter.nf_conntrack_max",
            "net/netfilter/nf_conntrack_tcp_loose",
            "net.nf_conntrack_max",
            "net.ipv4.netfilter.ip_conntrack_max",
        ] {
            assert!(is_netfilter_sysctl(key), "{key}");
        }
        for key in ["kernel.pid_max", "net.ipv4.ip_forward", "net.nf_conntrack"] {
            assert!(!is_netfilter_sysctl(key), "{key}");
        }
    }

    #[test]
    fn scope_rules() {
        use Reason::*;
        assert!(reasons(FileClass::Admin, true).is_empty());
        assert!(reasons(FileClass::Named, true).is_empty());
        assert_eq!(
            reasons(FileClass::Vendor, false),
            [VendorFile, NotNetfilter]
        );
        assert_eq!(reasons(FileClass::Runtime, true), [RuntimeFile]);
        assert!(admitted(Scope::Netfilter, &[]));
        assert!(!admitted(Scope::Netfilter, &[VendorFile]));
        assert!(admitted(Scope::All, &[VendorFile, NotNetfilter]));
        assert!(!admitted(Scope::All, &[RuntimeFile]));
    }

    #[test]
    fn summary_counts_and_lists() {
        let item = |imported, reasons: Vec<Reason>| OutOfScope {
            item: Item::Options {
                module: "bonding".into(),
                options: vec!["max_bonds=0".into()],
            },
            source: "/usr/lib/modprobe.d/aliases.conf:9".into(),
            reasons,
            imported,
        };
        let skipped = summary(
            &[
                item(false, vec![Reason::VendorFile, Reason::NotNetfilter]),
                item(false, vec![Reason::NotNetfilter]),
            ],
            3,
        );
        assert_eq!(
            skipped,
            [
                "not imported: 2 items (1 from a vendor file; 2 about modules outside the netfilter layer); \
                 `nfkit import --all` adds vendor defaults and non-netfilter modules, listing each",
                "not imported: 3 sysctl assignments outside net.netfilter (nfkit.toml holds net.netfilter.* only)",
            ]
        );
        let added = summary(
            &[item(true, vec![Reason::VendorFile, Reason::NotNetfilter])],
            0,
        );
        assert_eq!(
            added,
            [
                "added by --all: /usr/lib/modprobe.d/aliases.conf:9: options bonding max_bonds=0 (vendor default, not a netfilter module)"
            ]
        );
        assert!(summary(&[], 0).is_empty());
    }
}
