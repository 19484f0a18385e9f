//! The Landlock ruleset: enforces a [`policy`](super::policy) on this
//! process (and every thread it creates afterwards).
//!
//! Handled (denied unless a rule grants it): `Execute` and every write right
//! of ABI 5 (`WriteFile`, `Make*`, `Remove*`, `Refer`, `Truncate`,
//! `IoctlDev`). Not handled, so allowed everywhere: `ReadFile`, `ReadDir`.
//! No rule grants `Execute`. Best effort: on an older kernel the rights it
//! does not know stay unrestricted, on a kernel without Landlock nothing is
//! restricted, and [`super::Landlock`] says which.

use landlock::{
    ABI, Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};

use super::policy::{Grant, Rights};

/// The newest ABI whose rights nfkit asks for.
const TARGET_ABI: ABI = ABI::V5;

/// What the kernel may allow: everything handled except reading.
fn handled() -> BitFlags<AccessFs> {
    AccessFs::from_all(TARGET_ABI) & !(AccessFs::ReadFile | AccessFs::ReadDir)
}

fn rights(r: Rights) -> BitFlags<AccessFs> {
    let files = AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::WriteFile;
    match r {
        Rights::FilesIn => files,
        Rights::FilesAndDirsIn => files | AccessFs::MakeDir,
        Rights::LockFile => AccessFs::WriteFile.into(),
        Rights::LockDir => AccessFs::MakeReg | AccessFs::WriteFile,
        Rights::KernelValues => AccessFs::WriteFile | AccessFs::Truncate,
    }
}

/// What `restrict_self` did.
pub(crate) struct Enforced {
    /// The kernel's Landlock ABI (`None`: no Landlock).
    pub abi: Option<i32>,
    /// Why not, when the kernel has no Landlock.
    pub unavailable: Option<&'static str>,
    /// Whether every handled right is enforced.
    pub status: RulesetStatus,
}

/// Restricts this process to `grants`.
pub(crate) fn enforce(grants: &[Grant]) -> Result<Enforced, landlock::RulesetError> {
    let mut created = Ruleset::default().handle_access(handled())?.create()?;
    for g in grants {
        // A path that vanished since the policy was made gets no rule (its
        // writes are then refused, never widened).
        let Ok(fd) = PathFd::new(&g.path) else {
            continue;
        };
        created = created.add_rule(PathBeneath::new(fd, rights(g.rights)))?;
    }
    let status = created.restrict_self()?;
    let (abi, unavailable) = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => (Some(kernel_abi.unwrap_or(effective_abi as i32)), None),
        LandlockStatus::NotEnabled => (None, Some("built in but not enabled at boot (lsm=)")),
        LandlockStatus::NotImplemented => (None, Some("not built into the kernel")),
    };
    Ok(Enforced {
        abi,
        unavailable,
        status: status.ruleset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_grants_execute_and_reads_are_not_handled() {
        assert!(handled().contains(AccessFs::Execute));
        assert!(!handled().intersects(AccessFs::ReadFile | AccessFs::ReadDir));
        for r in [
            Rights::FilesIn,
            Rights::FilesAndDirsIn,
            Rights::LockFile,
            Rights::LockDir,
            Rights::KernelValues,
        ] {
            assert!(!rights(r).contains(AccessFs::Execute), "{r:?}");
            assert!(
                !rights(r).intersects(AccessFs::MakeSym | AccessFs::Refer),
                "{r:?}"
            );
            assert!(handled().contains(rights(r)), "{r:?}");
        }
    }
}
