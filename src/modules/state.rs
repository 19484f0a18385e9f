//! The state of a module in the kernel, as nfkit reports it (pure).

use std::fmt;

use serde::Serialize;

/// Where a module is, as `modules list` and `modules resolve` report it. The
/// JSON form is the snake_case name (`not_loaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModState {
    /// Compiled into the kernel.
    Builtin,
    /// Loaded and initialised.
    Live,
    /// Being loaded (`/proc/modules` `Loading`).
    Coming,
    /// Being unloaded (`/proc/modules` `Unloading`).
    Going,
    /// Not in the kernel (or, for a tree that is not the running kernel's,
    /// not known to be).
    NotLoaded,
    /// A state this nfkit does not know.
    Unknown,
}

impl ModState {
    /// The name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ModState::Builtin => "builtin",
            ModState::Live => "live",
            ModState::Coming => "coming",
            ModState::Going => "going",
            ModState::NotLoaded => "not_loaded",
            ModState::Unknown => "unknown",
        }
    }

    /// Inserted in the kernel, whether still initialising or already
    /// unloading (what "loaded" means to `apply` and `verify`).
    pub fn is_loaded(self) -> bool {
        matches!(self, ModState::Live | ModState::Coming | ModState::Going)
    }

    /// The state word of a `/proc/modules` line (the kernel prints `Live`,
    /// `Loading` or `Unloading`).
    pub(crate) fn from_proc_modules(word: &str) -> ModState {
        match word {
            "Live" => ModState::Live,
            "Loading" => ModState::Coming,
            "Unloading" => ModState::Going,
            _ => ModState::Unknown,
        }
    }

    /// The content of `/sys/module/<name>/initstate` (`live`, `coming`,
    /// `going`).
    pub(crate) fn from_sysfs(word: &str) -> ModState {
        match word.trim() {
            "live" => ModState::Live,
            "coming" => ModState::Coming,
            "going" => ModState::Going,
            _ => ModState::Unknown,
        }
    }
}

impl fmt::Display for ModState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment (`{:<8}`) apply.
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_json_form() {
        for s in [
            ModState::Builtin,
            ModState::Live,
            ModState::Coming,
            ModState::Going,
            ModState::NotLoaded,
            ModState::Unknown,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(format!("{:<8}|", ModState::Live), "live    |");
    }

    #[test]
    fn proc_modules_words() {
        assert_eq!(ModState::from_proc_modules("Live"), ModState::Live);
        assert_eq!(ModState::from_proc_modules("Loading"), ModState::Coming);
        assert_eq!(ModState::from_proc_modules("Unloading"), ModState::Going);
        assert_eq!(ModState::from_proc_modules("Weird"), ModState::Unknown);
        assert_eq!(ModState::from_sysfs("live\n"), ModState::Live);
        assert_eq!(ModState::from_sysfs("coming"), ModState::Coming);
        assert_eq!(ModState::from_sysfs("going"), ModState::Going);
        assert_eq!(ModState::from_sysfs("Live"), ModState::Unknown);
        assert!(ModState::Going.is_loaded() && !ModState::Builtin.is_loaded());
    }
}
