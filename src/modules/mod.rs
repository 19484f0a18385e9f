//! Kernel modules: pure logic and the high-level operations.
