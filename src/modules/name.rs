//! Module name validation and normalisation (pure).

use std::fmt;

/// Longest module name the kernel accepts: `MODULE_NAME_LEN` is
/// `64 - sizeof(unsigned long)` = 56 bytes with the NUL on 64-bit.
pub const MODULE_NAME_MAX: usize = 55;

/// Longest alias nfkit looks up. Modaliases (`pci:v…d…`, with a `:`) are
/// longer than module names; this is `NAME_MAX`.
pub const ALIAS_MAX: usize = 255;

/// Why a name was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// The empty string.
    Empty,
    /// Longer than the limit (the limit is given).
    TooLong(usize),
    /// Contains `/` or `\`: nfkit loads by name, never by path.
    PathSeparator,
    /// Contains `..`.
    DotDot,
    /// Contains a control, space, non-ASCII or quote character (given).
    BadChar(char),
    /// Starts with `-` (looks like a command-line option).
    LeadingDash,
    /// Contains `=` (looks like an OPTION=VALUE).
    Assignment,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("empty name"),
            NameProblem::TooLong(max) => write!(f, "longer than {max} characters"),
            NameProblem::PathSeparator => {
                f.write_str("contains a path separator (nfkit loads modules by name, not by file)")
            }
            NameProblem::DotDot => f.write_str("contains '..'"),
            NameProblem::BadChar(c) => write!(
                f,
                "contains the character {c:?}, not allowed in module names"
            ),
            NameProblem::LeadingDash => {
                f.write_str("starts with '-' (an option, not a module name?)")
            }
            NameProblem::Assignment => {
                f.write_str("contains '=' (an OPTION=VALUE must follow a module name)")
            }
        }
    }
}

/// Checks a name or alias given by the user. Accepts what libkmod can look
/// up (module names, aliases such as `ip_conntrack`, `net-pf-10`, modaliases
/// with `:` and `*`) and refuses what can only be a mistake or an attack.
pub fn validate(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    let max = if name.contains(':') {
        ALIAS_MAX
    } else {
        MODULE_NAME_MAX
    };
    if name.len() > max {
        return Err(NameProblem::TooLong(max));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameProblem::PathSeparator);
    }
    if name.contains("..") {
        return Err(NameProblem::DotDot);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '`' | '$' | ';'))
    {
        return Err(NameProblem::BadChar(c));
    }
    if name.starts_with('-') {
        return Err(NameProblem::LeadingDash);
    }
    if name.contains('=') {
        return Err(NameProblem::Assignment);
    }
    Ok(())
}

/// libkmod's `alias_normalize` for plain names: `-` and `_` are the same in
/// module names; the canonical form uses `_`. Bracket patterns are left as is.
/// The one place nfkit folds dashes in module names; see [`ModuleName`].
pub(crate) fn normalize(name: &str) -> String {
    match name.find('[') {
        Some(i) => format!("{}{}", name[..i].replace('-', "_"), &name[i..]),
        None => name.replace('-', "_"),
    }
}

/// A module name (or alias) in canonical form: `-` folded to `_` as libkmod
/// and the kernel do ([`normalize`]), so two spellings of one module compare
/// equal. Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ModuleName(String);

impl ModuleName {
    /// The canonical form of `name` (no validation: for names read from the
    /// kernel or a module tree, or already checked with [`validate`]).
    pub fn canonical(name: &str) -> ModuleName {
        ModuleName(normalize(name))
    }

    /// A name given by the user: [`validate`]d, then made canonical.
    pub fn parse(name: &str) -> Result<ModuleName, NameProblem> {
        validate(name)?;
        Ok(ModuleName::canonical(name))
    }

    /// A plain module name for the files nfkit writes (nfkit.toml's load
    /// list and option tables, modules-load.d, `/etc/modules`,
    /// `IPTABLES_MODULES`, modprobe.d `options`): 1 to 55 ASCII letters,
    /// digits, `_` or `-` (as `KBUILD_MODNAME`), not starting with `-`;
    /// no alias patterns. Canonical.
    pub fn parse_plain(name: &str) -> Result<ModuleName, NameProblem> {
        validate(name)?;
        if name.len() > MODULE_NAME_MAX {
            return Err(NameProblem::TooLong(MODULE_NAME_MAX));
        }
        if let Some(c) = name
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(NameProblem::BadChar(c));
        }
        Ok(ModuleName::canonical(name))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The module a module tree path names: the file name without `.ko`
    /// and any compression suffix (`.xz`, `.zst`, `.gz`), canonical.
    /// `kernel/net/netfilter/nf_conntrack.ko` → `nf_conntrack`;
    /// `kernel/arch/x86/crypto/crc32c-intel.ko.xz` → `crc32c_intel`. `None`
    /// for anything that is not a `.ko` file. The one parser of module tree
    /// paths (modules.builtin, modules.dep, modules.order).
    pub fn from_tree_path(path: &str) -> Option<ModuleName> {
        let file = path.trim().rsplit('/').next()?;
        let file = [".xz", ".zst", ".gz"]
            .iter()
            .find_map(|z| file.strip_suffix(z))
            .unwrap_or(file);
        let stem = file.strip_suffix(".ko")?;
        // Module files are named by KBUILD_MODNAME: letters, digits, `_`,
        // `-`. Anything else (a damaged or hostile index) names no module.
        let plausible = !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        plausible.then(|| ModuleName::canonical(stem))
    }

    /// Whether `other` is a spelling of this name.
    pub fn is(&self, other: &str) -> bool {
        self.0 == normalize(other)
    }
}

/// Module names in a `modules.builtin` text (one path a line).
pub(crate) fn names_in_builtin(text: &str) -> impl Iterator<Item = ModuleName> + '_ {
    text.lines().filter_map(ModuleName::from_tree_path)
}

/// Module names in a `modules.dep` text (`path: dependency paths` a line):
/// the modules the lines are about, not their dependencies.
pub(crate) fn names_in_dep(text: &str) -> impl Iterator<Item = ModuleName> + '_ {
    text.lines()
        .filter_map(|line| line.split_once(':').map(|(path, _)| path))
        .filter_map(ModuleName::from_tree_path)
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::borrow::Borrow<str> for ModuleName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// nfkit.toml's module names: [`ModuleName::parse_plain`], the refusal
/// naming the text.
impl<'de> serde::Deserialize<'de> for ModuleName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::persist::values::module_name(&text).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for ModuleName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ModuleName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ModuleName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<ModuleName> for String {
    fn eq(&self, other: &ModuleName) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_aliases() {
        for ok in [
            "nf_conntrack",
            "ip_conntrack",
            "xt_TCPMSS",
            "net-pf-10",
            "crc32c-intel",
            "pci:v00008086d*sv*sd*bc*sc*i*",
            "nf-ct-proto-132",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate(""), Err(NameProblem::Empty));
        assert_eq!(
            validate("../../etc/passwd"),
            Err(NameProblem::PathSeparator)
        );
        assert_eq!(
            validate("/lib/modules/x.ko"),
            Err(NameProblem::PathSeparator)
        );
        assert_eq!(validate("a\\b"), Err(NameProblem::PathSeparator));
        assert_eq!(validate("a..b"), Err(NameProblem::DotDot));
        assert_eq!(validate("nf conntrack"), Err(NameProblem::BadChar(' ')));
        assert_eq!(validate("nf\u{7}x"), Err(NameProblem::BadChar('\u{7}')));
        assert_eq!(validate("nf_conntrack\n"), Err(NameProblem::BadChar('\n')));
        assert_eq!(validate("nfé"), Err(NameProblem::BadChar('é')));
        assert_eq!(validate("x$(reboot)"), Err(NameProblem::BadChar('$')));
        assert_eq!(validate("-r"), Err(NameProblem::LeadingDash));
        assert_eq!(validate("hashsize=1"), Err(NameProblem::Assignment));
        let long = "x".repeat(56);
        assert_eq!(validate(&long), Err(NameProblem::TooLong(55)));
        assert_eq!(validate(&"x".repeat(55)), Ok(()));
        let alias = format!("pci:{}", "v".repeat(300));
        assert_eq!(validate(&alias), Err(NameProblem::TooLong(255)));
    }

    #[test]
    fn module_names_compare_in_canonical_form() {
        let n = ModuleName::canonical("crc32c-intel");
        assert_eq!(n.as_str(), "crc32c_intel");
        assert!(n.is("crc32c_intel") && n.is("crc32c-intel") && !n.is("crc32c"));
        assert_eq!("crc32c_intel".to_string(), n);
        assert_eq!(format!("{n:<14}|"), "crc32c_intel  |");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"crc32c_intel\"");
        assert_eq!(ModuleName::parse("nf-nat").unwrap().as_str(), "nf_nat");
        assert_eq!(ModuleName::parse("-r"), Err(NameProblem::LeadingDash));
    }

    fn from_path(p: &str) -> Option<String> {
        ModuleName::from_tree_path(p).map(ModuleName::into_string)
    }

    #[test]
    fn tree_path_plain_ko() {
        assert_eq!(
            from_path("kernel/net/netfilter/nf_conntrack.ko").as_deref(),
            Some("nf_conntrack")
        );
        assert_eq!(from_path("xt_state.ko").as_deref(), Some("xt_state"));
    }

    #[test]
    fn tree_path_compressed() {
        for (p, n) in [
            ("kernel/net/netfilter/xt_state.ko.xz", "xt_state"),
            ("kernel/net/netfilter/ipvs/ip_vs_rr.ko.zst", "ip_vs_rr"),
            ("kernel/net/ipv4/netfilter/iptable_nat.ko.gz", "iptable_nat"),
        ] {
            assert_eq!(from_path(p).as_deref(), Some(n), "{p}");
        }
    }

    #[test]
    fn tree_path_dashes_are_folded() {
        assert_eq!(
            from_path("kernel/arch/x86/crypto/crc32c-intel.ko.xz").as_deref(),
            Some("crc32c_intel")
        );
        assert_eq!(
            from_path("kernel/sound/drivers/pcsp/snd-pcsp.ko").as_deref(),
            Some("snd_pcsp")
        );
    }

    #[test]
    fn tree_path_absolute_old_module_init_tools() {
        assert_eq!(
            from_path("/lib/modules/2.6.32-x/kernel/net/ipv4/netfilter/ip_tables.ko").as_deref(),
            Some("ip_tables")
        );
    }

    #[test]
    fn tree_path_name_ends_at_the_ko_suffix() {
        assert_eq!(from_path("extra/x_kobj.ko").as_deref(), Some("x_kobj"));
        // kbuild names module files after KBUILD_MODNAME (letters, digits,
        // `_`, `-`): a `.` or any other byte before `.ko` names no module
        // (found by the proc_files fuzz target: control bytes and `[` came
        // out as a "module name").
        for not_a_module in [
            "extra/a.b.ko",
            "extra/x.kobj.ko",
            "kernel/net/nf[conntr\u{10}-nat.ko",
            "",
            "kernel/net/",
            "kernel/x/.ko",
            "x.ko.bak",
            "x.o",
            "x.kox",
        ] {
            assert_eq!(from_path(not_a_module), None, "{not_a_module:?}");
        }
    }

    #[test]
    fn modules_builtin_format() {
        let text = "kernel/net/ipv4/tcp_cubic.ko\nkernel/net/netfilter/nf-conntrack.ko\n\n";
        let names: Vec<String> = names_in_builtin(text)
            .map(ModuleName::into_string)
            .collect();
        assert_eq!(names, vec!["tcp_cubic", "nf_conntrack"]);
    }

    #[test]
    fn modules_dep_format() {
        let text = "kernel/net/netfilter/xt_state.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n\
                    kernel/arch/x86/crypto/crc32c-intel.ko:\n\
                    not a dep line\n";
        let names: Vec<String> = names_in_dep(text).map(ModuleName::into_string).collect();
        assert_eq!(names, vec!["xt_state", "crc32c_intel"]);
    }

    #[test]
    fn normalizes_dashes() {
        assert_eq!(normalize("crc32c-intel"), "crc32c_intel");
        assert_eq!(normalize("nf_conntrack"), "nf_conntrack");
        assert_eq!(normalize("a-b[x-y]"), "a_b[x-y]");
    }
}
