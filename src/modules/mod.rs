//! Kernel modules: pure logic and the high-level operations.
pub mod error;
pub mod legacy;
pub mod name;
pub mod options;
pub mod suggest;
pub mod sysfs;
