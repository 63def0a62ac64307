//! The differential runner: one operation sequence on the model, the engine and any number of
//! directory backends (a kernel tmpfs, an rtmpfs FUSE mount), compared after every step.
//!
//! * model against engine: exactly (results, errnos, bytes, attributes, statfs), plus the
//!   engine's accounting invariant;
//! * each directory backend against the engine: the same, plus whether the step changed each
//!   inode's mtime and ctime; a difference passes only if a [`Deviation`] explains it.
//!
//! Differences that are decisions, not bugs, are listed in [`DEVIATIONS`] with their reason
//! (and in docs/semantics.md). A deviation applies to every directory backend unless it names
//! the sides it concerns: kernel tmpfs differs from the engine where Linux has a bug the engine
//! does not copy, while rtmpfs through FUSE is the engine and must not.

use std::collections::BTreeMap;

use crate::dir::DirBackend;
use crate::engine::EngineBackend;
use crate::model::{Model, ModelConfig, MAX_FILE};
use crate::op::{self, Op};
use crate::outcome::{Outcome, Value};
use crate::runner::{Backend, Comparator, Mismatch, MismatchKind};

/// The name of the kernel tmpfs backend ([`DirBackend::tmpfs`]).
pub const KERNEL: &str = "kernel";

/// The name of the rtmpfs FUSE mount backend (`crates/rtmpfs-cli/tests/differential.rs`).
pub const RTMPFS: &str = "rtmpfs";

/// A difference between a directory backend and the engine that is a decision, with its reason.
pub struct Deviation {
    /// Short name.
    pub name: &'static str,
    /// Why the sides differ.
    pub reason: &'static str,
    /// The directory backends ([`Backend::name`]) it may explain; empty: every one.
    pub sides: &'static [&'static str],
    /// Whether this deviation explains `m`, seen after `s.op`.
    pub matches: fn(s: &Step<'_>, m: &Mismatch) -> bool,
}

/// One step as the deviations see it.
pub struct Step<'a> {
    /// The operation.
    pub op: &'a Op,
    /// Which directory backend (side A of the mismatch).
    pub side: &'static str,
    /// What the directory backend returned.
    pub dir: &'a Outcome,
    /// What the engine returned (side B).
    pub engine: &'a Outcome,
}

/// Every accepted difference. Each is also in docs/semantics.md.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        name: "linux-seek-last-page-overflow",
        reason: "Linux bug: mapping_seek_hole_data overflows for data in the page holding byte \
             i64::MAX - 1 (SEEK_DATA gives ENXIO, SEEK_HOLE a negative offset); the engine \
             answers correctly. See linux_seek_overflows_in_last_page.",
        sides: &[KERNEL],
        matches: |s, m| {
            let last_page = MAX_FILE & !(op::PAGE - 1);
            matches!(s.op, Op::Seek { .. })
                && match &m.outcomes {
                    Some((Outcome::Ok(Value::Count(k)), _)) => *k > MAX_FILE,
                    Some((Outcome::Err(libc::ENXIO), Outcome::Ok(Value::Count(e)))) => *e >= last_page,
                    _ => false,
                }
        },
    },
    Deviation {
        name: "fallocate-mode-decoded-first",
        reason: "The engine's fallocate takes a FallocateMode enum, so a mode tmpfs does not \
             support is refused (EOPNOTSUPP) when the raw bits are decoded, before the call; \
             the kernel checks len == 0 (EINVAL) and write access (EBADF) before it looks at \
             such a mode. Only the errno of a call that fails either way differs. Through FUSE \
             the kernel's checks run first too, so this holds for every side.",
        sides: &[],
        matches: |s, m| {
            matches!(s.op, Op::Fallocate { mode, .. } if ![0, 1, 3].contains(mode))
                && both_errors(m, &[libc::EINVAL, libc::EBADF], &[libc::EOPNOTSUPP])
        },
    },
    Deviation {
        name: "failed-write-keeps-times",
        reason: "A write (or copy_file_range) that fails with ENOSPC having written nothing leaves \
             mtime and ctime alone in the engine; Linux stamps them (file_update_time) before \
             it tries to allocate. POSIX asks for the update on success only.",
        sides: &[KERNEL],
        matches: |s, m| {
            matches!(s.op, Op::Write { .. } | Op::CopyRange { .. })
                && *s.dir == Outcome::Err(libc::ENOSPC)
                && *s.engine == Outcome::Err(libc::ENOSPC)
                && matches!(m.kind, MismatchKind::Time(_))
                && m.path.as_deref().is_some()
        },
    },
    Deviation {
        name: "fuse-directory-seek-data-hole",
        reason: "lseek(SEEK_DATA/SEEK_HOLE) on a directory: FUSE directories use the VFS's \
             generic_file_llseek, which never asks the daemon and answers from the directory's \
             size (ENXIO at or past it, else the offset or the size); tmpfs, and the engine, \
             refuse with EINVAL. The kernel decides before the request could reach rtmpfs.",
        sides: &[RTMPFS],
        matches: |s, m| {
            matches!(s.op, Op::Seek { .. })
                && matches!(
                    &m.outcomes,
                    Some((
                        Outcome::Err(libc::ENXIO) | Outcome::Ok(Value::Count(_)),
                        Outcome::Err(libc::EINVAL)
                    ))
                )
        },
    },
];

/// An outcome mismatch where the directory backend failed with one of `dir` and the engine
/// with one of `engine`.
fn both_errors(m: &Mismatch, dir: &[i32], engine: &[i32]) -> bool {
    matches!(
        &m.outcomes,
        Some((Outcome::Err(k), Outcome::Err(e))) if dir.contains(k) && engine.contains(e)
    )
}

/// Whether the model, before a step, says the operation would trigger a lasting deviation.
pub type SkipIf = fn(&Model, &Op) -> bool;

/// Operations the random sequences do not run, because they would trigger a deviation whose
/// effect lasts (state that differs afterwards, not only one result): each has a dedicated test.
pub const SKIPPED: &[(&str, SkipIf)] = &[
    ("refallocate-reserved-page", Model::refallocates_reserved_page),
    (
        "flagged-file-through-old-handle",
        Model::changes_flagged_file_through_handle,
    ),
];

/// The deviation that explains `m` on side `s.side`, if any.
pub fn allowed(s: &Step<'_>, m: &Mismatch) -> Option<&'static str> {
    DEVIATIONS
        .iter()
        .find(|d| (d.sides.is_empty() || d.sides.contains(&s.side)) && (d.matches)(s, m))
        .map(|d| d.name)
}

/// The reason given for a deviation or skipped operation, for the log.
pub fn reason(name: &str) -> &'static str {
    DEVIATIONS
        .iter()
        .find(|d| d.name == name)
        .map_or("(skipped operation)", |d| d.reason)
}

/// The configuration of the differential runs: limits small enough to reach ENOSPC.
pub fn diff_config() -> ModelConfig {
    ModelConfig {
        size_pages: Some(24),
        nr_inodes: Some(12),
        umask: 0o022,
        root_mode: 0o1777,
    }
}

/// Model, engine and directory backends side by side.
pub struct Differential {
    /// The directory backends, each compared with the engine.
    pub dirs: Vec<DirBackend>,
    /// The engine.
    pub engine: EngineBackend,
    /// The model.
    pub model: Model,
    dir_cmp: Vec<Comparator>,
    model_cmp: Comparator,
    steps: usize,
    /// How often each deviation was used.
    pub used: BTreeMap<&'static str, usize>,
    /// How many operations each entry of [`SKIPPED`] kept out.
    pub skipped: BTreeMap<&'static str, usize>,
}

impl Differential {
    /// A fresh engine and model configured as `cfg`, against `dirs` (which must be empty and
    /// have the same limits).
    pub fn new(cfg: ModelConfig, dirs: Vec<DirBackend>) -> Differential {
        Differential {
            dir_cmp: dirs.iter().map(|_| Comparator::new(true)).collect(),
            dirs,
            engine: EngineBackend::new(EngineBackend::config_for(&cfg), cfg.umask),
            model: Model::new(cfg),
            model_cmp: Comparator::new(false),
            steps: 0,
            used: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    /// The classic three-way run: model, engine and a fresh private kernel tmpfs.
    ///
    /// # Errors
    /// Why the kernel tmpfs could not be mounted.
    pub fn with_tmpfs(cfg: ModelConfig) -> Result<Differential, String> {
        Ok(Differential::new(cfg, vec![DirBackend::tmpfs(&cfg)?]))
    }

    /// Run one operation everywhere and compare.
    ///
    /// # Errors
    /// Every unexplained difference, each with the sides it is between.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.steps += 1;
        if let Some((name, _)) = SKIPPED.iter().find(|(_, f)| f(&self.model, op)) {
            *self.skipped.entry(name).or_default() += 1;
            return Ok(());
        }
        let od: Vec<Outcome> = self.dirs.iter_mut().map(|d| d.apply(op)).collect();
        let oe = self.engine.apply(op);
        let om = self.model.apply(op);
        let se = self.engine.snapshot();
        self.wait_deferred(&se);
        let sd: Vec<_> = self.dirs.iter_mut().map(Backend::snapshot).collect();
        let sm = self.model.snapshot();
        for s in &sd {
            DirBackend::settle(s);
        }
        let mut unexplained = Vec::new();
        for (((dir, cmp), o), s) in self.dirs.iter().zip(&mut self.dir_cmp).zip(&od).zip(sd) {
            let mut ms = cmp.outcomes(o, &oe);
            ms.extend(cmp.snapshots(s, se.clone()));
            let st = Step {
                op,
                side: dir.name(),
                dir: o,
                engine: &oe,
            };
            for m in ms {
                match allowed(&st, &m) {
                    Some(name) => *self.used.entry(name).or_default() += 1,
                    None => unexplained.push(format!("{} vs engine: {m}", dir.name())),
                }
            }
        }
        let mut me = self.model_cmp.outcomes(&om, &oe);
        me.extend(self.model_cmp.snapshots(sm, se));
        unexplained.extend(me.into_iter().map(|m| format!("model vs engine: {m}")));
        if let Err(err) = self.engine.check() {
            unexplained.push(format!("engine invariant: {err}"));
        }
        if unexplained.is_empty() {
            Ok(())
        } else {
            Err(format!("step {} {op:?}:\n  {}", self.steps, unexplained.join("\n  ")))
        }
    }

    /// Give each [`DirBackend::deferred_release`] backend up to a second to reach the engine's
    /// statfs figures (an unlinked file's space comes back through FUSE a moment after close).
    fn wait_deferred(&self, engine: &crate::outcome::Snapshot) {
        let Some(want) = engine.statfs else { return };
        for d in self.dirs.iter().filter(|d| d.has_deferred_release()) {
            d.wait_statfs(&want, std::time::Duration::from_secs(1));
        }
    }

    /// Run a sequence, then delete everything everywhere and compare once more.
    ///
    /// # Errors
    /// The first failing step.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for op in ops {
            self.step(op)?;
        }
        for d in &mut self.dirs {
            d.remove_all()?;
        }
        self.engine.remove_all()?;
        self.model.remove_all()?;
        let se = self.engine.snapshot();
        self.wait_deferred(&se);
        for c in &mut self.dir_cmp {
            c.forget_prev();
        }
        self.step(&Op::Statfs)
    }

    /// Add this run's deviation and skip counts to `total`.
    pub fn tally(&self, total: &mut BTreeMap<&'static str, usize>) {
        for (k, v) in self.used.iter().chain(&self.skipped) {
            *total.entry(k).or_default() += v;
        }
    }
}
