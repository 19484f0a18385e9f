//! Persistent configuration: file formats (pure parsers and renderers),
//! precedence, and atomic writes.

pub mod apply;
pub mod boot_gaps;
pub mod desired;
#[cfg(test)]
mod desired_keys;
pub mod diff;
pub mod edit;
pub mod el_boot;
pub mod files;
pub mod import;
pub mod import_scope;
pub(crate) mod line_endings;
pub mod modprobe_d;
pub mod module_list;
pub mod nextboot;
pub mod plan;
pub mod record;
pub mod runtime;
pub(crate) mod shell_value;
pub mod shell_vars;
pub mod sysctl_conf;
pub mod sysctl_d;
pub mod sysctl_glob;
pub mod values;
pub mod verify;

/// Helpers shared by this module's unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use std::fs;
    use std::path::Path;

    /// Writes `text` at `rel` (an absolute path as seen inside the root)
    /// under `root`, creating directories.
    pub fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel.trim_start_matches('/'));
        fs::create_dir_all(path.parent().expect("a file path")).expect("create directories");
        fs::write(path, text).expect("write fixture");
    }
}
