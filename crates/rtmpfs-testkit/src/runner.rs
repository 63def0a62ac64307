//! Running one operation sequence on two backends and comparing them after every step.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::engine::EngineBackend;
use crate::model::{Model, ModelConfig};
use crate::op::Op;
use crate::outcome::{Id, NodeSnap, Outcome, Snapshot, Value};

/// Something that executes [`Op`]s and can be inspected.
pub trait Backend {
    /// Short name for messages.
    fn name(&self) -> &'static str;
    /// Run one operation.
    fn apply(&mut self, op: &Op) -> Outcome;
    /// The whole visible state.
    fn snapshot(&mut self) -> Snapshot;
    /// Close every handle and delete every name.
    ///
    /// # Errors
    /// A description of what could not be removed.
    fn remove_all(&mut self) -> Result<(), String>;
    /// Backend-specific consistency checks (the engine's accounting invariant).
    ///
    /// # Errors
    /// The first violated invariant.
    fn check(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// What differed between two backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchKind {
    /// The operation's results differ.
    Outcome,
    /// A path exists on one side only, or the handle lists differ in length.
    Structure,
    /// Inode identities do not correspond (a link or rename broke identity).
    Identity,
    /// An attribute differs (`kind`, `perm`, `nlink`, `size`, `blocks`, `rdev`, `target`,
    /// `content`, `xattrs`).
    Field(&'static str),
    /// One side changed `mtime`/`ctime` and the other did not.
    Time(&'static str),
    /// statfs figures differ.
    Statfs,
}

/// One difference, with the path (or `#handle`) it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differed.
    pub kind: MismatchKind,
    /// Where (`""` is the root, `#3` the fourth open handle), if anywhere.
    pub path: Option<String>,
    /// Both sides' values.
    pub detail: String,
    /// For [`MismatchKind::Outcome`]: both outcomes.
    pub outcomes: Option<(Outcome, Outcome)>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{:?} at {p:?}: {}", self.kind, self.detail),
            None => write!(f, "{:?}: {}", self.kind, self.detail),
        }
    }
}

/// Inode identities of side A matched to side B; must stay a bijection for the whole run.
#[derive(Debug, Default, Clone)]
pub struct Bijection {
    ab: HashMap<Id, Id>,
    ba: HashMap<Id, Id>,
}

impl Bijection {
    /// Record or check that `a` corresponds to `b`.
    ///
    /// # Errors
    ///
    /// A message naming both sides when `a` or `b` already corresponds to another inode.
    pub fn check(&mut self, a: Id, b: Id) -> Result<(), String> {
        match (self.ab.get(&a), self.ba.get(&b)) {
            (None, None) => {
                self.ab.insert(a, b);
                self.ba.insert(b, a);
                Ok(())
            }
            (Some(&x), _) if x != b => Err(format!("A inode {a} was B {x}, now B {b}")),
            (_, Some(&y)) if y != a => Err(format!("B inode {b} was A {y}, now A {a}")),
            _ => Ok(()),
        }
    }
}

/// Compares two backends step by step.
#[derive(Debug, Default)]
pub struct Comparator {
    bij: Bijection,
    prev: Option<(Snapshot, Snapshot)>,
    /// Compare "changed or not" of mtime and ctime (both sides must have clocks).
    pub compare_times: bool,
}

impl Comparator {
    /// A comparator; `compare_times` for two backends that both keep times.
    pub fn new(compare_times: bool) -> Comparator {
        Comparator {
            compare_times,
            ..Comparator::default()
        }
    }

    /// Forget the previous snapshots: the next comparison checks no time changes (used after
    /// a cleanup that is not an operation).
    pub fn forget_prev(&mut self) {
        self.prev = None;
    }

    /// Compare two outcomes of the same operation.
    pub fn outcomes(&mut self, a: &Outcome, b: &Outcome) -> Vec<Mismatch> {
        let same = match (a, b) {
            (Outcome::Ok(Value::Entries(ea)), Outcome::Ok(Value::Entries(eb))) => {
                let names_a: Vec<_> = ea.iter().map(|(n, (k, _))| (n, k)).collect();
                let names_b: Vec<_> = eb.iter().map(|(n, (k, _))| (n, k)).collect();
                if names_a == names_b {
                    let mut errs = Vec::new();
                    for ((n, (_, ia)), (_, ib)) in ea.iter().zip(eb.values()) {
                        if let Err(e) = self.bij.check(*ia, *ib) {
                            errs.push(Mismatch {
                                kind: MismatchKind::Identity,
                                path: Some(String::from_utf8_lossy(n).into_owned()),
                                detail: format!("readdir entry: {e}"),
                                outcomes: None,
                            });
                        }
                    }
                    return errs;
                }
                false
            }
            _ => a == b,
        };
        if same {
            Vec::new()
        } else {
            vec![Mismatch {
                kind: MismatchKind::Outcome,
                path: None,
                detail: format!("{} vs {}", brief(a), brief(b)),
                outcomes: Some((a.clone(), b.clone())),
            }]
        }
    }

    /// Compare two snapshots taken after the same step.
    pub fn snapshots(&mut self, a: Snapshot, b: Snapshot) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let paths_a: Vec<&String> = a.nodes.keys().collect();
        let paths_b: Vec<&String> = b.nodes.keys().collect();
        if paths_a != paths_b {
            out.push(Mismatch {
                kind: MismatchKind::Structure,
                path: None,
                detail: format!("paths {paths_a:?} vs {paths_b:?}"),
                outcomes: None,
            });
        }
        for (path, na) in &a.nodes {
            if let Some(nb) = b.nodes.get(path) {
                self.nodes(path, na, nb, &mut out);
            }
        }
        if a.handles.len() != b.handles.len() {
            out.push(Mismatch {
                kind: MismatchKind::Structure,
                path: None,
                detail: format!("{} vs {} open handles", a.handles.len(), b.handles.len()),
                outcomes: None,
            });
        }
        for (i, (ha, hb)) in a.handles.iter().zip(&b.handles).enumerate() {
            self.nodes(&format!("#{i}"), ha, hb, &mut out);
        }
        if let (Some(sa), Some(sb)) = (a.statfs, b.statfs) {
            if sa != sb {
                out.push(Mismatch {
                    kind: MismatchKind::Statfs,
                    path: None,
                    detail: format!("{sa:?} vs {sb:?}"),
                    outcomes: None,
                });
            }
        }
        if self.compare_times {
            if let Some((pa, pb)) = &self.prev {
                times(pa, &a, pb, &b, &mut out);
            }
        }
        self.prev = Some((a, b));
        out
    }

    fn nodes(&mut self, path: &str, a: &NodeSnap, b: &NodeSnap, out: &mut Vec<Mismatch>) {
        let mut field = |name: &'static str, va: String, vb: String| {
            if va != vb {
                out.push(Mismatch {
                    kind: MismatchKind::Field(name),
                    path: Some(path.to_string()),
                    detail: format!("{va} vs {vb}"),
                    outcomes: None,
                });
            }
        };
        field("kind", format!("{:?}", a.kind), format!("{:?}", b.kind));
        field("perm", format!("{:o}", a.perm), format!("{:o}", b.perm));
        field("nlink", a.nlink.to_string(), b.nlink.to_string());
        field("size", a.size.to_string(), b.size.to_string());
        field("blocks", a.blocks.to_string(), b.blocks.to_string());
        field("rdev", a.rdev.to_string(), b.rdev.to_string());
        field(
            "target",
            format!("{:?}", a.target.as_deref().map(String::from_utf8_lossy)),
            format!("{:?}", b.target.as_deref().map(String::from_utf8_lossy)),
        );
        if a.content != b.content {
            field("content", content_diff(a, b), String::new());
        }
        if a.xattrs.is_some() && b.xattrs.is_some() && a.xattrs != b.xattrs {
            field("xattrs", xattr_brief(a.xattrs.as_ref()), xattr_brief(b.xattrs.as_ref()));
        }
        if let Err(e) = self.bij.check(a.id, b.id) {
            out.push(Mismatch {
                kind: MismatchKind::Identity,
                path: Some(path.to_string()),
                detail: e,
                outcomes: None,
            });
        }
    }
}

/// For every path naming the same inode before and after the step on both sides, whether
/// mtime and ctime changed must agree.
fn times(pa: &Snapshot, a: &Snapshot, pb: &Snapshot, b: &Snapshot, out: &mut Vec<Mismatch>) {
    for (path, na) in &a.nodes {
        let (Some(oa), Some(nb), Some(ob)) = (pa.nodes.get(path), b.nodes.get(path), pb.nodes.get(path)) else {
            continue;
        };
        if oa.id != na.id || ob.id != nb.id {
            continue;
        }
        let (Some((ma, ca)), Some((moa, coa)), Some((mb, cb)), Some((mob, cob))) =
            (na.times, oa.times, nb.times, ob.times)
        else {
            continue;
        };
        for (which, x, y) in [("mtime", ma != moa, mb != mob), ("ctime", ca != coa, cb != cob)] {
            if x != y {
                out.push(Mismatch {
                    kind: MismatchKind::Time(which),
                    path: Some(path.clone()),
                    detail: format!("changed: {x} vs {y}"),
                    outcomes: None,
                });
            }
        }
    }
}

fn brief(o: &Outcome) -> String {
    match o {
        Outcome::Err(e) => format!("Err({})", errno_name(*e)),
        Outcome::Ok(Value::Bytes(b)) if b.len() > 32 => {
            format!("Ok(Bytes[{}] {:02x?}..)", b.len(), &b[..16])
        }
        Outcome::Ok(v) => format!("Ok({v:?})"),
    }
}

fn xattr_brief(x: Option<&BTreeMap<Vec<u8>, Vec<u8>>>) -> String {
    match x {
        None => "-".into(),
        Some(m) => format!(
            "{:?}",
            m.iter()
                .map(|(k, v)| format!("{}={}B", String::from_utf8_lossy(k), v.len()))
                .collect::<Vec<_>>()
        ),
    }
}

fn content_diff(a: &NodeSnap, b: &NodeSnap) -> String {
    match (&a.content, &b.content) {
        (Some(ca), Some(cb)) => {
            if ca.extents != cb.extents {
                return format!("extents {:?} vs {:?}", ca.extents, cb.extents);
            }
            let first = ca
                .bytes
                .iter()
                .zip(&cb.bytes)
                .position(|(x, y)| x != y)
                .unwrap_or(ca.bytes.len().min(cb.bytes.len()));
            format!(
                "{} vs {} bytes, first difference at byte {first}: {:?} vs {:?}",
                ca.bytes.len(),
                cb.bytes.len(),
                ca.bytes.get(first),
                cb.bytes.get(first)
            )
        }
        (x, y) => format!("content {:?} vs {:?}", x.is_some(), y.is_some()),
    }
}

/// The symbolic name of an errno, for messages.
pub fn errno_name(e: i32) -> String {
    let names = [
        (libc::ENOENT, "ENOENT"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::EACCES, "EACCES"),
        (libc::EPERM, "EPERM"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::EINVAL, "EINVAL"),
        (libc::EFBIG, "EFBIG"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ENODATA, "ENODATA"),
        (libc::ERANGE, "ERANGE"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::ENXIO, "ENXIO"),
        (libc::EBUSY, "EBUSY"),
        (libc::EMLINK, "EMLINK"),
        (libc::EIO, "EIO"),
        (libc::EROFS, "EROFS"),
        (libc::EXDEV, "EXDEV"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENODEV, "ENODEV"),
        (libc::ESPIPE, "ESPIPE"),
    ];
    names
        .iter()
        .find(|(n, _)| *n == e)
        .map_or_else(|| format!("errno {e}"), |(_, s)| (*s).to_string())
}

/// Model against engine: every outcome, every snapshot, the engine's accounting invariant and
/// its usage figures after every step; at the end, everything deleted and usage back to zero.
pub struct Runner {
    /// The reference model.
    pub model: Model,
    /// The engine under test.
    pub engine: EngineBackend,
    cmp: Comparator,
    /// Operations run so far (for failure messages).
    pub steps: usize,
}

impl Runner {
    /// A model and an engine with the same configuration.
    pub fn new(cfg: ModelConfig) -> Runner {
        Runner::with_engine(cfg, EngineBackend::new(EngineBackend::config_for(&cfg), cfg.umask))
    }

    /// A model and a given engine (for engine options the model does not see, such as
    /// `track_lookups`).
    pub fn with_engine(cfg: ModelConfig, engine: EngineBackend) -> Runner {
        Runner {
            model: Model::new(cfg),
            engine,
            cmp: Comparator::new(false),
            steps: 0,
        }
    }

    /// Run one operation on both and compare everything.
    ///
    /// # Errors
    /// Every difference found, formatted.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.steps += 1;
        let om = self.model.apply(op);
        let oe = self.engine.apply(op);
        let mut errs = self.cmp.outcomes(&om, &oe);
        self.compare_state(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "step {} {op:?}: model vs engine:\n  {}",
                self.steps,
                errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
            ))
        }
    }

    fn compare_state(&mut self, errs: &mut Vec<Mismatch>) {
        let sm = self.model.snapshot();
        let se = self.engine.snapshot();
        errs.extend(self.cmp.snapshots(sm, se));
        if let Err(e) = self.engine.check() {
            errs.push(Mismatch {
                kind: MismatchKind::Statfs,
                path: None,
                detail: format!("engine invariant: {e}"),
                outcomes: None,
            });
        }
        let mu = self.model.usage();
        let eu = self.engine.fs.usage();
        // Data pages are resident or, with a RAM budget, swapped out, compressed in the pool or
        // stored as nothing (zeros): the model knows only data.
        let got = (
            eu.charged_pages,
            eu.resident_pages + eu.swapped_pages + eu.compressed_pages + eu.zero_pages,
            eu.reserved_pages,
            eu.inodes,
        );
        let want = (mu.charged_pages, mu.resident_pages, mu.reserved_pages, mu.inodes);
        let ispace_ok = self.model.config().nr_inodes.is_none() || eu.inode_space_used == mu.inode_space_used;
        if got != want || !ispace_ok || eu.poisoned_pages != 0 {
            errs.push(Mismatch {
                kind: MismatchKind::Statfs,
                path: None,
                detail: format!("usage: model {mu:?} vs engine {eu:?}"),
                outcomes: None,
            });
        }
    }

    /// Run a whole sequence, then delete everything and check that all space came back.
    ///
    /// # Errors
    /// The first failing step, or a leak at the end.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for op in ops {
            self.step(op)?;
        }
        self.finish()
    }

    /// Delete everything on both sides, compare, and check the engine is back to empty:
    /// no charged page, only the root inode, only the root's inode space.
    ///
    /// # Errors
    /// A difference or a leak.
    pub fn finish(&mut self) -> Result<(), String> {
        self.model.remove_all()?;
        self.engine.remove_all()?;
        let mut errs = Vec::new();
        self.compare_state(&mut errs);
        let u = self.engine.fs.usage();
        if u.charged_pages != 0
            || u.resident_pages != 0
            || u.swapped_pages != 0
            || u.compressed_pages != 0
            || u.zero_pages != 0
            || u.pool_bytes != 0
            || u.reserved_pages != 0
            || u.inodes != 1
            || u.inode_space_used != 1024
        {
            errs.push(Mismatch {
                kind: MismatchKind::Statfs,
                path: None,
                detail: format!("after deleting everything: {u:?}"),
                outcomes: None,
            });
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "after {} steps and deleting everything:\n  {}",
                self.steps,
                errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
            ))
        }
    }
}
