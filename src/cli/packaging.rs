//! Hidden commands for packagers and completion scripts:
//! `nfkit __gen man [PAGE]`, `nfkit __gen completion SHELL` (pages and
//! scripts on stdout; `contrib/debian/build` uses them) and
//! `nfkit __complete-modules [PREFIX]` (module names for the scripts).
//! They write nothing but stdout: their Landlock policy is `Writes::NONE`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{EXIT_OK, completions, manpages, write_stdout};
use crate::system::Host;

/// `nfkit __gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    #[command(subcommand)]
    what: GenWhat,
}

#[derive(Debug, Subcommand)]
enum GenWhat {
    /// Without PAGE: the file name of every page, one a line. With PAGE
    /// (e.g. nfkit-apply.8, nfkit.toml.5): that page's roff source.
    Man {
        /// A file name from the list.
        page: Option<String>,
    },
    /// The completion script for SHELL.
    Completion {
        /// bash, zsh or fish.
        shell: ShellArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

/// `nfkit __complete-modules`.
#[derive(Debug, Args)]
pub struct CompleteModulesArgs {
    /// Only names starting with PREFIX (dashes and underscores alike).
    #[arg(default_value = "")]
    prefix: String,
    /// The modules of kernel release R instead of the running kernel's.
    #[arg(long, value_name = "R")]
    kernel_release: Option<String>,
}

/// Why a page or the module names could not be given.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// No page of that name.
    #[error("render man page {page}: no such page")]
    UnknownPage { page: String },
    /// The running kernel's release could not be told.
    #[error("list module names: the kernel release is unknown")]
    NoRelease(#[source] Option<crate::read::ReadError>),
    /// A release that is not one directory name.
    #[error("list module names: '{release}' is not a kernel release")]
    BadRelease { release: String },
    /// The module tree has no modules.dep (or no tree at all).
    #[error("list module names: {} has no modules.dep", dir.display())]
    NoModuleTree { dir: PathBuf },
}

impl crate::error::Hint for GenError {
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            GenError::UnknownPage { .. } => Some(
                format!(
                    "the pages are: {}",
                    manpages::page_files().join(", ")
                )
                .into(),
            ),
            GenError::NoRelease(_) => Some("give --kernel-release R".into()),
            GenError::BadRelease { .. } => {
                Some("a release is a directory name under /lib/modules (uname -r)".into())
            }
            GenError::NoModuleTree { .. } => Some(
                "modules for this kernel are not installed (or depmod was not run); the kernel may have no module support".into(),
            ),
        }
    }
}

pub(super) fn run_gen(args: GenArgs) -> anyhow::Result<u8> {
    let text = match args.what {
        GenWhat::Man { page: None } => {
            let mut list = manpages::page_files().join("\n");
            list.push('\n');
            list
        }
        GenWhat::Man { page: Some(page) } => {
            manpages::render(&page).ok_or(GenError::UnknownPage { page })?
        }
        GenWhat::Completion { shell } => completions::script(match shell {
            ShellArg::Bash => clap_complete::Shell::Bash,
            ShellArg::Zsh => clap_complete::Shell::Zsh,
            ShellArg::Fish => clap_complete::Shell::Fish,
        }),
    };
    write_stdout(&text)?;
    Ok(EXIT_OK)
}

pub(super) fn run_complete_modules(host: &Host, args: CompleteModulesArgs) -> anyhow::Result<u8> {
    let release = match args.kernel_release {
        Some(r) => r,
        None if host.offline => match crate::modules::sysfs::releases(&host.root).as_slice() {
            [only] => only.clone(),
            _ => return Err(GenError::NoRelease(None).into()),
        },
        None => host
            .kernel_release()
            .map_err(|e| GenError::NoRelease(Some(e)))?
            .ok_or(GenError::NoRelease(None))?,
    };
    if release.is_empty() || release.contains('/') || release == ".." {
        return Err(GenError::BadRelease { release }.into());
    }
    let dir = host.root.join("lib/modules").join(&release);
    if !dir.join("modules.dep").is_file() {
        return Err(GenError::NoModuleTree { dir }.into());
    }
    let names = crate::modules::sysfs::known_module_names(&dir);
    write_stdout(matching(&names, &args.prefix))?;
    Ok(EXIT_OK)
}

/// The names starting with `prefix` (`-` and `_` alike), one a line.
fn matching(names: &[String], prefix: &str) -> String {
    let prefix = prefix.replace('-', "_");
    let mut out = String::new();
    for name in names.iter().filter(|n| n.starts_with(&prefix)) {
        out.push_str(name);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_fold_dashes() {
        let names: Vec<String> = ["nf_conntrack", "nf_nat", "xt_state"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(matching(&names, "nf-c"), "nf_conntrack\n");
        assert_eq!(matching(&names, "nf_"), "nf_conntrack\nnf_nat\n");
        assert_eq!(matching(&names, ""), "nf_conntrack\nnf_nat\nxt_state\n");
        assert_eq!(matching(&names, "zz"), "");
    }
}
