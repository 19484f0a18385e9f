//! Phase 3 of a load: the inserter each worker thread of the pool runs
//! (its own libkmod context, inserts by path with the planned options).

use super::*;

/// What a worker reports for one module.
#[derive(Debug)]
pub(super) struct InsertDone {
    /// The error, for a failed insert.
    pub(super) error: Option<kmod::Error>,
    /// True when the kernel already had it (`EEXIST`: loaded by someone
    /// else meanwhile): not this run's to roll back.
    pub(super) already: bool,
    /// What the worker's context logged for it.
    pub(super) lines: Vec<LogLine>,
}

/// The real inserter: one per worker thread, with its own libkmod context
/// (made on that thread, on first use). The context reads no modprobe.d
/// configuration: path and options come from the resolving context's
/// plan, so both contexts agree by construction.
pub(super) struct KmodInserter<'a> {
    pub(super) module_dir: &'a Path,
    pub(super) ctx: Option<Result<Context, kmod::Error>>,
}

impl<'a> KmodInserter<'a> {
    pub(super) fn new(module_dir: &'a Path) -> Self {
        KmodInserter {
            module_dir,
            ctx: None,
        }
    }
}

impl Inserter for KmodInserter<'_> {
    type Step = SeqStep;
    type Done = InsertDone;

    fn insert(&mut self, step: &SeqStep) -> Result<InsertDone, InsertDone> {
        let done = |error: Option<kmod::Error>, already, lines| {
            let d = InsertDone {
                error,
                already,
                lines,
            };
            if d.error.is_some() { Err(d) } else { Ok(d) }
        };
        let call_error = |call, arg: &str, errno| kmod::Error::Call {
            call,
            arg: arg.to_owned(),
            errno,
        };
        match step.action {
            SeqAction::Builtin => done(None, true, Vec::new()),
            // Only the policy commands judge_commands accepted get here:
            // `true` succeeds without running anything, `false` fails as
            // the command would (libkmod's run_install callback did the same).
            SeqAction::Install => {
                let cmd = step.install_command.clone().unwrap_or_default();
                let failed = cmd.trim().ends_with("false");
                done(
                    failed.then(|| call_error("install", &cmd, Errno::EPERM)),
                    false,
                    Vec::new(),
                )
            }
            SeqAction::Insmod => {
                let Some(path) = &step.path else {
                    return done(
                        Some(call_error(
                            "kmod_module_insert_module",
                            &step.module,
                            Errno::ENOENT,
                        )),
                        false,
                        Vec::new(),
                    );
                };
                let dir = self.module_dir;
                // No configuration: an empty, NULL-terminated path list.
                let ctx = self
                    .ctx
                    .get_or_insert_with(|| Context::new(Some(dir), Some(&[])));
                let ctx = match ctx {
                    Ok(c) => c,
                    Err(e) => return done(Some(e.clone()), false, Vec::new()),
                };
                let result = ctx
                    .module_from_path(Path::new(path))
                    .and_then(|m| m.insert(&step.options));
                let lines = ctx.take_log();
                match result {
                    Ok(()) => done(None, false, lines),
                    Err(e) if e.errno() == Some(Errno::EEXIST) => done(None, true, lines),
                    Err(e) => done(Some(e), false, lines),
                }
            }
        }
    }
}
