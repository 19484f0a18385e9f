//! Kernel modules: pure logic and the high-level operations behind
//! `nfkit modules list|resolve|load|unload`.
//!
//! Semantics are modprobe's (kmod tools/modprobe.c), with three deliberate
//! differences: install/remove commands are never run, a blacklisted or
//! policy-disabled module is reported (not a silent success), and options
//! given for a load are checked against the module's real parameters.
//!
//! | file | job |
//! |---|---|
//! | [`target`] | which module tree and kernel; looking names up in it |
//! | [`resolve`] | `modules resolve` |
//! | [`load`] | `modules load` (the named steps of a load) |
//! | [`schedule`] / [`pool`] | the parallel loader: pure DAG and schedule / the threads |
//! | [`unload`] | `modules unload`, over the pure planner in [`removal`] |
//! | [`list`] | `modules list` |
//! | [`explain`] / [`explain_read`] | `explain`: pure reasons / reading the facts |
//! | [`index`] | checks the binary indexes before libkmod maps them |
pub mod error;
pub mod explain;
pub(crate) mod explain_read;
pub(crate) mod index;
pub(crate) mod legacy;
pub(crate) mod list;
pub(crate) mod load;
pub mod name;
pub mod options;
pub(crate) mod pool;
pub(crate) mod removal;
pub(crate) mod resolve;
pub(crate) mod schedule;
pub(crate) mod state;
pub(crate) mod suggest;
pub(crate) mod sysfs;
pub(crate) mod target;
pub(crate) mod unload;

// The API: the operations, their flags and their reports.
pub use explain_read::{
    ConfigSource, ExplainReport, Explained, ExplainedModule, ReasonReport, explain,
};
pub use list::{ListReport, ListedModule, list};
pub use load::{
    Jobs, LoadFlags, LoadOutcome, LoadReport, LoadRequest, LoadResult, LoadedModule, SeqAction,
    SeqStep, load, parse_load_args,
};
pub use removal::{Role, Step, StepResult};
pub use resolve::{Param, ResolveReport, Resolved, ResolvedModule, Softdeps, resolve, states};
pub use state::ModState;
pub use target::{Target, config_dirs};
pub use unload::{UnloadFlags, UnloadOutcome, UnloadReport, UnloadResult, UnloadedModule, unload};
