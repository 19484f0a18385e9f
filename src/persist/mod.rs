//! Persistent configuration: file formats (pure parsers and renderers),
//! precedence, and atomic writes.

pub mod apply;
pub mod desired;
pub mod diff;
pub mod edit;
pub mod files;
pub mod import;
pub mod modprobe_d;
pub mod module_list;
pub mod nextboot;
pub mod plan;
pub mod runtime;
pub mod shell_vars;
pub mod sysctl_d;
pub mod verify;
