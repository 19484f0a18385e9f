//! Persistent configuration: file formats (pure parsers and renderers),
//! precedence, and atomic writes.

pub mod modprobe_d;
pub mod shell_vars;
pub mod sysctl_d;
