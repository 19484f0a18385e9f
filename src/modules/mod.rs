//! Kernel modules: pure logic and the high-level operations.
pub mod error;
pub mod legacy;
pub mod name;
pub mod ops;
pub mod options;
pub mod suggest;
pub mod sysfs;
pub mod unload;
