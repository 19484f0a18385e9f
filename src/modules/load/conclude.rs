//! Phase 4 of a load: each name's result from what the pool did, the
//! parameter check after loading, and the rollback of a failed name.

use super::*;

/// What phase 3 did, for concluding each name.
pub(super) struct Inserted<'a, 'c> {
    pub(super) graph: &'a Graph,
    pub(super) steps: &'a [SeqStep],
    pub(super) run: &'a PoolRun<InsertDone>,
    pub(super) ctx: &'c Context,
}

impl Inserted<'_, '_> {
    /// The error of failed node `i` (ours and libkmod's lines).
    pub(super) fn node_error(&self, t: &Target, i: usize, extra: &str) -> ErrorInfo {
        let (e, lines) = match &self.run.outcomes[i] {
            NodeOutcome::Failed(d) => (d.error.clone(), d.lines.clone()),
            _ => (None, Vec::new()),
        };
        let e = e.unwrap_or_else(|| kmod::Error::Call {
            call: "kmod_module_insert_module",
            arg: self.graph.name(i).to_owned(),
            errno: Errno::EINVAL,
        });
        let errno = e.errno().unwrap_or(Errno::EINVAL);
        let error = insert_error(t, self.ctx, self.graph.name(i), errno, extra, e);
        ErrorInfo::from(&error).with_libkmod(lines.into_iter().map(|l| l.message).collect())
    }

    /// Unit `u`'s result (a module of a name whose sequence was inserted).
    pub(super) fn conclude(&self, p: Pending<'_, '_>, u: usize) -> LoadedModule {
        let Pending {
            mut job,
            sequence: _,
            effective,
        } = p;
        let t = job.t;
        let required: BTreeSet<String> = std::iter::once(job.module.clone())
            .chain(job.m.dependencies().names())
            .collect();
        let mut error = None;
        for &i in self.graph.unit(u) {
            let name = self.graph.name(i);
            let root = match self.run.outcomes[i] {
                NodeOutcome::Done(_) => continue,
                NodeOutcome::Failed(_) => i,
                NodeOutcome::Blocked { cause } => cause,
            };
            let cause = self.graph.name(root);
            if root != i && name == job.module {
                job.notes.push(format!(
                    "{name} not attempted: {cause}, which it needs, failed"
                ));
            }
            if required.contains(name) {
                if error.is_none() {
                    error = Some(self.node_error(t, root, &job.extra));
                }
            } else if root == i {
                job.notes.push(format!(
                    "softdep {name} not inserted: {} (ignored, as modprobe does)",
                    self.node_error(t, i, "").error.message
                ));
            }
        }
        let failed = |job: LoadJob<'_, '_>, error| LoadedModule {
            module: job.module,
            outcome: LoadOutcome::Failed,
            sequence: Vec::new(),
            options: Vec::new(),
            notes: job.notes,
            error: Some(error),
        };
        if let Some(e) = error {
            return failed(job, e);
        }
        let target = self.graph.node_in(u, &job.module);
        let inserted_by_run =
            |i: usize| matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already);
        let inserted_here = target.is_none_or(|i| self.graph.owner(i) == u && inserted_by_run(i));
        // Inserted by this run as the very node of this name (an earlier
        // name with the same module and the same options owns it): the
        // options were applied, and sysfs shows it.
        let inserted_by_run = target.is_some_and(inserted_by_run);
        let (outcome, checked) = if inserted_here {
            (LoadOutcome::Loaded, job.check_options_applied())
        } else if inserted_by_run {
            (LoadOutcome::AlreadyLoaded, job.check_options_applied())
        } else {
            // An earlier name inserted it (with that name's options): as if
            // it had been loaded before this one, which it was.
            (
                LoadOutcome::AlreadyLoaded,
                job.check_given_options(Some(InKernel::Loaded)),
            )
        };
        if let Err(f) = checked {
            let error = ErrorInfo::from(&f.error);
            return failed(job, error);
        }
        let sequence = if inserted_here {
            self.graph
                .unit(u)
                .iter()
                .filter(|&&i| {
                    self.graph.owner(i) == u
                        && matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already)
                })
                .map(|&i| self.steps[i].clone())
                .collect()
        } else {
            Vec::new()
        };
        LoadedModule {
            module: job.module,
            outcome,
            sequence,
            options: effective,
            notes: job.notes,
            error: None,
        }
    }

    /// Removes, dependents first, what this run inserted for the names that
    /// failed, so that a failed name leaves the kernel as it found it
    /// (modprobe leaves dependencies loaded). A module a successful name's
    /// sequence has is kept. Returns each name's notes.
    pub(super) fn roll_back(
        &self,
        concluded: &[Vec<(LoadedModule, Option<usize>)>],
        failed: &[bool],
    ) -> Vec<Vec<String>> {
        let units_of = |n: usize| concluded[n].iter().filter_map(|(_, u)| *u);
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        let mut name_of_unit =
            vec![0; concluded.iter().flatten().filter(|x| x.1.is_some()).count()];
        for (n, &name_failed) in failed.iter().enumerate() {
            for u in units_of(n) {
                name_of_unit[u] = n;
                if !name_failed {
                    keep.extend(self.graph.unit(u).iter().map(|&i| self.graph.name(i)));
                }
            }
        }
        let ours = |i: usize| matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already);
        let mut removed: Vec<Vec<String>> = vec![Vec::new(); concluded.len()];
        let mut notes: Vec<Vec<String>> = vec![Vec::new(); concluded.len()];
        // Newest first: a module's dependents started after it ended.
        for &i in self.run.started.iter().rev() {
            let n = name_of_unit[self.graph.owner(i)];
            if !failed[n] || !ours(i) {
                continue;
            }
            let name = self.graph.name(i);
            if keep.contains(name) {
                notes[n].push(format!("kept {name}: another name of this load needs it"));
                continue;
            }
            let result = self.ctx.module(name).and_then(|m| {
                if m.refcnt()? > 0 {
                    return Ok(false); // something else started using it: keep
                }
                m.remove(0).map(|()| true)
            });
            match result {
                Ok(true) => removed[n].push(name.to_owned()),
                Ok(false) => notes[n].push(format!("kept {name}: now in use")),
                Err(e) => notes[n].push(format!("could not remove {name} again: {e}")),
            }
        }
        for (n, r) in removed.into_iter().enumerate() {
            if !r.is_empty() {
                notes[n].insert(
                    0,
                    format!(
                        "rolled back: removed {} (inserted by this load before the failure)",
                        r.join(", ")
                    ),
                );
            }
        }
        notes
    }
}

/// A module whose checks failed before anything was inserted.
pub(super) fn failed_module(f: Failure, lines: Vec<String>) -> LoadedModule {
    LoadedModule {
        error: Some(ErrorInfo::from(&f.error).with_libkmod(lines)),
        module: f.module,
        outcome: LoadOutcome::Failed,
        sequence: Vec::new(),
        options: Vec::new(),
        notes: f.notes,
    }
}
