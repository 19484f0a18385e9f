//! The parallel loader's plan (pure, no I/O): the dependency DAG of every
//! module a load inserts, and which module may start when, given what has
//! finished and what has failed.
//!
//! - Nodes are the modules of all load sequences (libkmod's dry-run order of
//!   each requested name), each once, in *sequential order*: the order of
//!   first occurrence over the sequences in request order, which is the
//!   order the one-module-after-another loader inserts them in.
//! - Edges come from the module facts: a hard dependency (modules.dep) and
//!   a pre-softdep go before the module, a post-softdep after it. Only
//!   edges that agree with the sequential order are kept, so the graph is
//!   acyclic by construction (softdeps may form cycles; libkmod breaks them
//!   by visiting each module once, which is what the sequential order
//!   records) and the sequential order is one of its topological orders.
//! - [`Schedule`] hands out the lowest-numbered ready node: with one worker
//!   the insert order is the sequential order. A failed node blocks, through
//!   hard edges only, every node that needs it (transitively): those are
//!   never attempted and carry the failed node as their cause. Softdep edges
//!   only order: a failed softdep does not block (modprobe ignores softdep
//!   failures too).

use std::collections::{BTreeSet, HashMap};

/// Why one module waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// modules.dep: the module needs it; its failure blocks the module.
    Hard,
    /// A softdep (pre or post): order only.
    Soft,
}

/// What the resolver knows of one module's relations (real module names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Relations {
    /// Hard dependencies (modules.dep).
    pub deps: Vec<String>,
    /// Pre-softdeps: inserted before it.
    pub pre: Vec<String>,
    /// Post-softdeps: inserted after it.
    pub post: Vec<String>,
}

/// The DAG of one load.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    names: Vec<String>,
    /// The options each node is inserted with (its key with the name).
    options: Vec<String>,
    prereqs: Vec<Vec<(usize, Edge)>>,
    dependents: Vec<Vec<(usize, Edge)>>,
    /// The unit (sequence) where each node occurs first.
    owner: Vec<usize>,
    /// Each unit's nodes, in its sequence's order, each once.
    units: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph of `sequences` (one per unit, in request order;
    /// each entry a module and the options it is inserted with), with each
    /// module's relations from `relations`.
    ///
    /// A node is a module *with its options*: a module that one name loads
    /// with given options and another needs with none is two nodes, the
    /// later one ordered after the earlier. If the earlier insert fails
    /// (a bad given option), the later one is still attempted with its own
    /// options, as the one-after-another loader would; if it succeeds, the
    /// later one finds the module loaded (`EEXIST`, done).
    pub(crate) fn build(
        sequences: &[Vec<(String, String)>],
        mut relations: impl FnMut(&str) -> Relations,
    ) -> Graph {
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut g = Graph::default();
        for (u, seq) in sequences.iter().enumerate() {
            let mut nodes = Vec::new();
            for (name, options) in seq {
                let i = *index
                    .entry((name.as_str(), options.as_str()))
                    .or_insert_with(|| {
                        g.names.push(name.clone());
                        g.options.push(options.clone());
                        g.owner.push(u);
                        g.names.len() - 1
                    });
                if !nodes.contains(&i) {
                    nodes.push(i);
                }
            }
            g.units.push(nodes);
        }
        g.prereqs = vec![Vec::new(); g.names.len()];
        g.dependents = vec![Vec::new(); g.names.len()];
        let mut known: HashMap<String, Relations> = HashMap::new();
        let mut edges = Vec::new();
        for nodes in &g.units {
            // Within one sequence a module occurs once: its node there.
            let here = |n: &String| nodes.iter().copied().find(|&i| g.names[i] == *n);
            for &v in nodes {
                let r = known
                    .entry(g.names[v].clone())
                    .or_insert_with(|| relations(&g.names[v]));
                for d in r.deps.iter().filter_map(here) {
                    edges.push((d, v, Edge::Hard));
                }
                for d in r.pre.iter().filter_map(here) {
                    edges.push((d, v, Edge::Soft));
                }
                for d in r.post.iter().filter_map(here) {
                    edges.push((v, d, Edge::Soft));
                }
            }
        }
        // Variants of one module: one after the other, in order.
        for v in 0..g.names.len() {
            if let Some(w) = (v + 1..g.names.len()).find(|&w| g.names[w] == g.names[v]) {
                edges.push((v, w, Edge::Soft));
            }
        }
        for (from, to, kind) in edges {
            g.add_edge(from, to, kind);
        }
        g
    }

    /// Adds `from` → `to` when it agrees with the sequential order; a hard
    /// edge wins over a soft one between the same nodes.
    fn add_edge(&mut self, from: usize, to: usize, kind: Edge) {
        if from >= to {
            return;
        }
        if let Some(e) = self.prereqs[to].iter_mut().find(|(p, _)| *p == from) {
            if kind == Edge::Hard {
                e.1 = Edge::Hard;
                if let Some(d) = self.dependents[from].iter_mut().find(|(d, _)| *d == to) {
                    d.1 = Edge::Hard;
                }
            }
            return;
        }
        self.prereqs[to].push((from, kind));
        self.dependents[from].push((to, kind));
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there is nothing to insert.
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The module name of node `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The first node of a module, if the load has it.
    pub(crate) fn node(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Unit `u`'s node of a module, if its sequence has it.
    pub(crate) fn node_in(&self, u: usize, name: &str) -> Option<usize> {
        self.units[u]
            .iter()
            .copied()
            .find(|&i| self.names[i] == name)
    }

    /// The options node `i` is inserted with.
    pub(crate) fn options(&self, i: usize) -> &str {
        &self.options[i]
    }

    /// What node `i` waits for.
    #[cfg(test)]
    pub(crate) fn prereqs(&self, i: usize) -> &[(usize, Edge)] {
        &self.prereqs[i]
    }

    /// The unit whose sequence has node `i` first.
    pub(crate) fn owner(&self, i: usize) -> usize {
        self.owner[i]
    }

    /// Unit `u`'s nodes, in its sequence's order.
    pub(crate) fn unit(&self, u: usize) -> &[usize] {
        &self.units[u]
    }
}

/// Where a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Prerequisites not all finished yet (or ready, not handed out).
    Waiting,
    /// Handed out to a worker.
    Running,
    /// Inserted.
    Done,
    /// The insert failed.
    Failed,
    /// Never attempted: a hard prerequisite failed (`cause` is the node that
    /// failed).
    Blocked {
        /// The failed node.
        cause: usize,
    },
}

impl NodeState {
    #[cfg(test)]
    fn is_final(self) -> bool {
        matches!(
            self,
            NodeState::Done | NodeState::Failed | NodeState::Blocked { .. }
        )
    }
}

/// Which node may start when.
#[derive(Debug, Clone)]
pub(crate) struct Schedule<'g> {
    g: &'g Graph,
    state: Vec<NodeState>,
    /// Prerequisites not finished yet.
    pending: Vec<usize>,
    ready: BTreeSet<usize>,
    /// Nodes not in a final state.
    open: usize,
}

impl<'g> Schedule<'g> {
    /// Nothing started yet.
    pub(crate) fn new(g: &'g Graph) -> Self {
        let pending: Vec<usize> = g.prereqs.iter().map(Vec::len).collect();
        let ready = (0..g.len()).filter(|&i| pending[i] == 0).collect();
        Schedule {
            g,
            state: vec![NodeState::Waiting; g.len()],
            pending,
            ready,
            open: g.len(),
        }
    }

    /// Hands out the lowest-numbered node whose prerequisites are all
    /// finished (hard ones inserted), or `None` when none is ready now.
    pub(crate) fn next(&mut self) -> Option<usize> {
        let i = self.ready.pop_first()?;
        self.state[i] = NodeState::Running;
        Some(i)
    }

    /// Records the end of a handed-out node.
    ///
    /// # Panics
    /// When `i` was not handed out by [`Self::next`] (a bug of the caller).
    pub(crate) fn finish(&mut self, i: usize, ok: bool) {
        assert_eq!(self.state[i], NodeState::Running, "node {i} not running");
        self.state[i] = if ok {
            NodeState::Done
        } else {
            NodeState::Failed
        };
        self.open -= 1;
        let cause = (!ok).then_some(i);
        self.release(i, cause);
    }

    /// Tells `i`'s dependents that it finished; with `cause`, blocks those
    /// that need it (and, through them, theirs).
    fn release(&mut self, i: usize, cause: Option<usize>) {
        let mut work = vec![(i, cause)];
        while let Some((n, cause)) = work.pop() {
            for &(d, kind) in &self.g.dependents[n] {
                if self.state[d] != NodeState::Waiting {
                    continue;
                }
                match (cause, kind) {
                    (Some(c), Edge::Hard) => {
                        self.state[d] = NodeState::Blocked { cause: c };
                        self.ready.remove(&d);
                        self.open -= 1;
                        work.push((d, Some(c)));
                    }
                    _ => {
                        self.pending[d] -= 1;
                        if self.pending[d] == 0 {
                            self.ready.insert(d);
                        }
                    }
                }
            }
        }
    }

    /// True when every node is in a final state.
    pub(crate) fn finished(&self) -> bool {
        self.open == 0
    }

    /// Where node `i` is.
    pub(crate) fn state(&self, i: usize) -> NodeState {
        self.state[i]
    }

    /// Every node's state.
    #[cfg(test)]
    pub(crate) fn states(&self) -> &[NodeState] {
        &self.state
    }

    /// Sanity for tests: every node final.
    #[cfg(test)]
    fn all_final(&self) -> bool {
        self.state.iter().all(|s| s.is_final())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A generated module universe: module `i` may depend (hard) only on
    /// lower-numbered modules (modules.dep is acyclic); softdeps are free
    /// (cycles allowed).
    #[derive(Debug, Clone)]
    pub(crate) struct Universe {
        pub deps: Vec<Vec<usize>>,
        pub pre: Vec<Vec<usize>>,
        pub post: Vec<Vec<usize>>,
    }

    pub(crate) fn mname(i: usize) -> String {
        format!("m{i}")
    }

    impl Universe {
        pub(crate) fn relations(&self, name: &str) -> Relations {
            let i: usize = name[1..].parse().unwrap();
            let names = |v: &[usize]| v.iter().map(|&j| mname(j)).collect();
            Relations {
                deps: names(&self.deps[i]),
                pre: names(&self.pre[i]),
                post: names(&self.post[i]),
            }
        }

        /// libkmod's probe list for `m` (kmod's `__kmod_module_get_probe_list`
        /// shape): pre-softdeps (their own lists), each dependency with its
        /// softdeps, the module, post-softdeps; each module visited once.
        pub(crate) fn sequence(&self, m: usize) -> Vec<String> {
            let mut visited = vec![false; self.deps.len()];
            let mut out = Vec::new();
            self.visit(m, &mut visited, &mut out);
            out.into_iter().map(mname).collect()
        }

        fn visit(&self, m: usize, visited: &mut [bool], out: &mut Vec<usize>) {
            if visited[m] {
                return;
            }
            visited[m] = true;
            // Dependencies in modules.dep order: the transitive closure,
            // deepest first.
            for d in self.closure(m) {
                self.with_softdeps(d, visited, out);
            }
            self.with_softdeps(m, visited, out);
        }

        fn with_softdeps(&self, m: usize, visited: &mut [bool], out: &mut Vec<usize>) {
            for &p in &self.pre[m] {
                self.visit(p, visited, out);
            }
            if !out.contains(&m) {
                out.push(m);
            }
            visited[m] = true;
            for &p in &self.post[m] {
                self.visit(p, visited, out);
            }
        }

        /// Transitive hard dependencies of `m`, lower numbers first (a
        /// dependency always has a lower number than its dependent).
        pub(crate) fn closure(&self, m: usize) -> Vec<usize> {
            let mut seen = BTreeSet::new();
            let mut work = self.deps[m].clone();
            while let Some(d) = work.pop() {
                if seen.insert(d) {
                    work.extend(self.deps[d].iter().copied());
                }
            }
            seen.into_iter().collect()
        }
    }

    pub(crate) fn universe() -> impl Strategy<Value = Universe> {
        (1usize..14).prop_flat_map(|n| {
            let deps = (0..n)
                .map(|i| proptest::collection::btree_set(0..i.max(1), 0..=i.min(3)))
                .collect::<Vec<_>>();
            let soft = || proptest::collection::vec(proptest::collection::vec(0..n, 0..2), n);
            (deps, soft(), soft()).prop_map(move |(deps, pre, post)| Universe {
                deps: deps
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| s.into_iter().filter(|&d| d < i).collect())
                    .collect(),
                pre: pre
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| v.into_iter().filter(|&p| p != i).collect())
                    .collect(),
                post: post
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| v.into_iter().filter(|&p| p != i).collect())
                    .collect(),
            })
        })
    }

    /// A universe, a request list (module numbers, repeats allowed) and the
    /// set of modules whose insert fails.
    pub(crate) fn load_case() -> impl Strategy<Value = (Universe, Vec<usize>, BTreeSet<usize>)> {
        universe().prop_flat_map(|u| {
            let n = u.deps.len();
            (
                Just(u),
                proptest::collection::vec(0..n, 1..6),
                proptest::collection::btree_set(0..n, 0..3),
            )
        })
    }

    pub(crate) fn graph_of(u: &Universe, requests: &[usize]) -> Graph {
        let seqs: Vec<Vec<(String, String)>> = requests
            .iter()
            .map(|&r| {
                u.sequence(r)
                    .into_iter()
                    .map(|m| (m, String::new()))
                    .collect()
            })
            .collect();
        Graph::build(&seqs, |n| u.relations(n))
    }

    fn plain(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), String::new()))
            .collect()
    }

    /// Nodes that need a failed node through hard edges (transitively),
    /// failed nodes themselves excluded unless they need another.
    fn hard_dependents_of(g: &Graph, failed: &BTreeSet<usize>) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for v in 0..g.len() {
            let mut work: Vec<usize> = g
                .prereqs(v)
                .iter()
                .filter(|e| e.1 == Edge::Hard)
                .map(|e| e.0)
                .collect();
            let mut seen = BTreeSet::new();
            while let Some(p) = work.pop() {
                if !seen.insert(p) {
                    continue;
                }
                if failed.contains(&p) {
                    out.insert(v);
                    break;
                }
                work.extend(
                    g.prereqs(p)
                        .iter()
                        .filter(|e| e.1 == Edge::Hard)
                        .map(|e| e.0),
                );
            }
        }
        out
    }

    /// Runs a schedule to its end with up to `width` nodes in flight,
    /// finishing them in the order `pick` chooses. Returns the start order.
    fn simulate(
        g: &Graph,
        width: usize,
        fails: &BTreeSet<usize>,
        mut pick: impl FnMut(usize) -> usize,
    ) -> (Vec<usize>, Vec<NodeState>) {
        let mut s = Schedule::new(g);
        let mut running: Vec<usize> = Vec::new();
        let mut started = Vec::new();
        loop {
            while running.len() < width {
                let Some(i) = s.next() else { break };
                // Every prerequisite is final, every hard one inserted.
                for &(p, kind) in g.prereqs(i) {
                    assert!(s.state(p).is_final(), "{i} started before {p} ended");
                    if kind == Edge::Hard {
                        assert_eq!(s.state(p), NodeState::Done, "{i} needs {p}");
                    }
                }
                assert!(!started.contains(&i), "{i} started twice");
                started.push(i);
                running.push(i);
            }
            if running.is_empty() {
                break;
            }
            let k = pick(running.len()) % running.len();
            let i = running.swap_remove(k);
            s.finish(i, !fails.contains(&names_index(g, i)));
        }
        assert!(s.finished() && s.all_final(), "{:?}", s.states());
        (started, s.states().to_vec())
    }

    /// The universe number of node `i`.
    fn names_index(g: &Graph, i: usize) -> usize {
        g.name(i)[1..].parse().unwrap()
    }

    proptest! {
        /// Every hard dependency and softdep of a node that the load has
        /// is ordered by an edge in the sequential direction, and the
        /// sequential order is the concatenation of the sequences.
        #[test]
        fn graph_keeps_the_sequential_order((u, req, _f) in load_case()) {
            let g = graph_of(&u, &req);
            let mut seq: Vec<String> = Vec::new();
            for &r in &req {
                for m in u.sequence(r) {
                    if !seq.contains(&m) {
                        seq.push(m);
                    }
                }
            }
            prop_assert_eq!((0..g.len()).map(|i| g.name(i).to_owned()).collect::<Vec<_>>(), seq);
            for v in 0..g.len() {
                let m = names_index(&g, v);
                for d in &u.deps[m] {
                    let Some(di) = g.node(&mname(*d)) else { continue };
                    // modules.dep order: dependencies come first.
                    prop_assert!(di < v);
                    prop_assert!(g.prereqs(v).contains(&(di, Edge::Hard)));
                }
                for &(p, _) in g.prereqs(v) {
                    prop_assert!(p < v);
                }
            }
        }

        /// Random completion order, up to 4 in flight, random failures:
        /// prerequisites first, no node twice, and the blocked nodes are
        /// exactly those that need a failed one.
        #[test]
        fn schedule_respects_the_dag_and_blocks_exactly_dependents(
            (u, req, fails) in load_case(),
            width in 1usize..5,
            picks in proptest::collection::vec(0usize..100, 64),
        ) {
            let g = graph_of(&u, &req);
            let mut k = 0;
            let (started, states) = simulate(&g, width, &fails, |_| {
                k += 1;
                picks[k % picks.len()]
            });
            let failed: BTreeSet<usize> =
                (0..g.len()).filter(|&i| states[i] == NodeState::Failed).collect();
            let blocked: BTreeSet<usize> = (0..g.len())
                .filter(|&i| matches!(states[i], NodeState::Blocked { .. }))
                .collect();
            prop_assert_eq!(&blocked, &hard_dependents_of(&g, &failed));
            // Attempted = everything not blocked; failures only where injected.
            let attempted: BTreeSet<usize> = started.iter().copied().collect();
            prop_assert_eq!(attempted.len(), started.len());
            prop_assert_eq!(attempted.len() + blocked.len(), g.len());
            for &i in &failed {
                prop_assert!(fails.contains(&names_index(&g, i)));
            }
            for (i, s) in states.iter().enumerate() {
                if let NodeState::Blocked { cause } = s {
                    prop_assert_eq!(states[*cause], NodeState::Failed);
                    prop_assert!(*cause < i);
                }
            }
        }

        /// One at a time, the start order is the sequential order (minus
        /// the blocked nodes).
        #[test]
        fn one_worker_keeps_the_sequential_order((u, req, fails) in load_case()) {
            let g = graph_of(&u, &req);
            let (started, states) = simulate(&g, 1, &fails, |_| 0);
            let expected: Vec<usize> = (0..g.len())
                .filter(|&i| !matches!(states[i], NodeState::Blocked { .. }))
                .collect();
            prop_assert_eq!(started, expected);
        }
    }

    #[test]
    fn softdep_cycles_and_post_softdeps() {
        // a pre b, b pre a (a cycle), c post d: d after c.
        let seqs = vec![plain(&["b", "a"]), plain(&["c", "d"])];
        let g = Graph::build(&seqs, |n| match n {
            "a" => Relations {
                pre: vec!["b".into()],
                ..Relations::default()
            },
            "b" => Relations {
                pre: vec!["a".into()],
                ..Relations::default()
            },
            "c" => Relations {
                post: vec!["d".into()],
                ..Relations::default()
            },
            _ => Relations::default(),
        });
        assert_eq!(g.prereqs(1), &[(0, Edge::Soft)]);
        assert_eq!(g.prereqs(0), &[]);
        assert_eq!(g.prereqs(3), &[(2, Edge::Soft)]);
        assert_eq!((g.owner(1), g.owner(3)), (0, 1));
        // A failed softdep does not block.
        let mut s = Schedule::new(&g);
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.next(), Some(2));
        assert_eq!(s.next(), None);
        s.finish(0, false);
        assert_eq!(s.next(), Some(1));
        s.finish(2, true);
        s.finish(1, true);
        assert_eq!(s.next(), Some(3));
        s.finish(3, true);
        assert!(s.finished());
    }

    #[test]
    fn a_failure_blocks_the_chain_with_its_cause() {
        let seqs = vec![plain(&["x", "y", "z"])];
        let g = Graph::build(&seqs, |n| match n {
            "y" => Relations {
                deps: vec!["x".into()],
                ..Relations::default()
            },
            "z" => Relations {
                deps: vec!["y".into(), "x".into()],
                ..Relations::default()
            },
            _ => Relations::default(),
        });
        let mut s = Schedule::new(&g);
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.next(), None);
        s.finish(0, false);
        assert!(s.finished());
        assert_eq!(s.state(1), NodeState::Blocked { cause: 0 });
        assert_eq!(s.state(2), NodeState::Blocked { cause: 0 });
    }

    /// `nf_conntrack hashsize=abc xt_state`: the first name's node has the
    /// bad option and fails; xt_state needs its own sequence's
    /// nf_conntrack (no options), which is still attempted.
    #[test]
    fn a_failed_option_variant_does_not_block_another_names_variant() {
        let seqs = vec![
            vec![
                ("crc".to_string(), String::new()),
                ("ct".to_string(), "hashsize=abc".to_string()),
            ],
            vec![
                ("crc".to_string(), String::new()),
                ("ct".to_string(), String::new()),
                ("state".to_string(), String::new()),
            ],
        ];
        let g = Graph::build(&seqs, |n| match n {
            "ct" => Relations {
                deps: vec!["crc".into()],
                ..Relations::default()
            },
            "state" => Relations {
                deps: vec!["ct".into(), "crc".into()],
                ..Relations::default()
            },
            _ => Relations::default(),
        });
        assert_eq!(g.len(), 4);
        assert_eq!((g.name(1), g.options(1)), ("ct", "hashsize=abc"));
        assert_eq!((g.name(2), g.options(2)), ("ct", ""));
        assert_eq!(g.node_in(1, "ct"), Some(2));
        assert_eq!(g.prereqs(2), &[(0, Edge::Hard), (1, Edge::Soft)]);
        assert_eq!(g.prereqs(3), &[(2, Edge::Hard), (0, Edge::Hard)]);
        let mut s = Schedule::new(&g);
        assert_eq!(s.next(), Some(0));
        s.finish(0, true);
        assert_eq!(s.next(), Some(1));
        assert_eq!(s.next(), None, "the second variant waits for the first");
        s.finish(1, false);
        assert_eq!(s.next(), Some(2));
        s.finish(2, true);
        assert_eq!(s.next(), Some(3));
        s.finish(3, true);
        assert!(s.finished());
    }
}
