//! rename, with `RENAME_NOREPLACE`, `RENAME_EXCHANGE` and `RENAME_WHITEOUT`.
//!
//! Locking, the only place that holds several directory locks besides rmdir (parent, then child):
//! * same directory: that directory's lock, then the victim directory's (a child) if any;
//! * across directories: the filesystem rename lock first, which freezes every parent pointer;
//!   then both parents, ancestor first, else ascending inode number; then the victim directory
//!   (a child of the target parent). The ancestry checks done before locking the victim
//!   (victim is not an ancestor of the source parent: `NotEmpty`; the moved directory is not an
//!   ancestor of the target parent: `Invalid`) are what make "children after parents" a true
//!   order here.

use super::namespace::touch_dir;
use super::Filesystem;
use crate::dir::{Dir, DirBody};
use crate::error::{FsError, Result};
use crate::inode::{Body, Inode, Meta};
use crate::limits::BOGO_INODE_SIZE;
use crate::name::{self, NameKind};
use crate::sync::{Arc, WriteGuard};
use crate::types::{access, Ctx, FileKind, Ino, RenameFlags, Timespec};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

impl Filesystem {
    /// Rename `name` in `parent` to `new_name` in `new_parent`.
    ///
    /// # Errors
    /// `NotFound`; `Exists` (noreplace); `Invalid` (a directory moved under itself, bad flag
    /// combinations); `NotEmpty` (a non-empty directory victim, or a victim that is an ancestor
    /// of the source); `IsDir`/`NotDir` (kind mismatch); `Busy` (`.` or `..`); `Perm`/`Access`;
    /// `NoSpace` (whiteout inode); `ReadOnly`.
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        let _gate = self.change_gate();
        self.check_writable()?;
        if flags.exchange && (flags.noreplace || flags.whiteout) {
            return Err(FsError::Invalid);
        }
        let (name, new_name) = (name.as_bytes(), new_name.as_bytes());
        if name::check(name)? != NameKind::Normal || name::check(new_name)? != NameKind::Normal {
            return Err(FsError::Busy);
        }
        let p1 = self.inode(parent)?;
        let p2 = self.inode(new_parent)?;
        let b1 = p1.dir().ok_or(FsError::NotDir)?;
        let b2 = p2.dir().ok_or(FsError::NotDir)?;
        // Search permission for the lookups; write permission and the flags come with
        // may_delete/may_create in `rename_locked`, after the names are resolved.
        self.check_perm(ctx, &p1, access::X_OK)?;
        self.check_perm(ctx, &p2, access::X_OK)?;
        let result = if parent == new_parent {
            let mut d = b1.entries.write();
            self.rename_locked(
                ctx,
                &Parents {
                    p1: &p1,
                    b1,
                    p2: &p2,
                    b2,
                },
                Guards::One(&mut d),
                name,
                new_name,
                flags,
            )
        } else {
            let _rename = self.rename_lock.lock();
            let p1_first = if is_ancestor(self, parent, new_parent) {
                true
            } else if is_ancestor(self, new_parent, parent) {
                false
            } else {
                parent < new_parent
            };
            let (mut g1, mut g2);
            if p1_first {
                g1 = b1.entries.write();
                g2 = b2.entries.write_nested();
            } else {
                g2 = b2.entries.write();
                g1 = b1.entries.write_nested();
            }
            self.rename_locked(
                ctx,
                &Parents {
                    p1: &p1,
                    b1,
                    p2: &p2,
                    b2,
                },
                Guards::Two(&mut g1, &mut g2),
                name,
                new_name,
                flags,
            )
        };
        if let Some(v) = result? {
            self.maybe_release(&v);
        }
        Ok(())
    }

    /// The body of rename, with both parent directories locked. Returns the victim whose last
    /// link may have gone, for release after the locks are dropped.
    fn rename_locked(
        &self,
        ctx: &Ctx,
        p: &Parents<'_>,
        mut g: Guards<'_, '_>,
        name: &[u8],
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<Option<Arc<Inode>>> {
        let cross = p.p1.ino != p.p2.ino;
        let src = g.first().get(name).ok_or(FsError::NotFound)?;
        if g.first().removed || g.second().removed {
            return Err(FsError::NotFound);
        }
        let dst = g.second().get(new_name);
        // NOREPLACE is checked before the "same inode" shortcut, as do_renameat2 does.
        if flags.noreplace && dst.is_some() {
            return Err(FsError::Exists);
        }
        if let Some(dst) = dst {
            if dst.ino == src.ino {
                // Two names of one inode (or the same name): POSIX says do nothing.
                return Ok(None);
            }
        }
        if flags.exchange && dst.is_none() {
            return Err(FsError::NotFound);
        }
        let moved = self.inode(src.ino)?;
        let victim = dst.map(|d| self.inode(d.ino)).transpose()?;
        let moved_is_dir = moved.kind == FileKind::Directory;
        let victim_is_dir = victim.as_ref().is_some_and(|v| v.kind == FileKind::Directory);
        if cross {
            // Parent pointers are frozen by the rename lock, so these walks are exact. The VFS
            // checks ancestry (lock_rename's trap) before it looks at the kinds.
            if moved_is_dir && is_ancestor(self, moved.ino, p.p2.ino) {
                return Err(FsError::Invalid);
            }
            if let Some(v) = victim.as_ref().filter(|_| victim_is_dir) {
                if is_ancestor(self, v.ino, p.p1.ino) {
                    return Err(if flags.exchange {
                        FsError::Invalid
                    } else {
                        FsError::NotEmpty
                    });
                }
            }
        }
        // vfs_rename: may_delete of the source, then may_delete of the target (or may_create),
        // whose flag and permission checks come before the target's type check.
        self.check_perm(ctx, p.p1, access::W_OK | access::X_OK)?;
        self.check_sticky(ctx, p.p1, &moved)?;
        self.check_perm(ctx, p.p2, access::W_OK | access::X_OK)?;
        if let Some(v) = &victim {
            self.check_sticky(ctx, p.p2, v)?;
        }
        if !flags.exchange && victim.is_some() {
            if moved_is_dir && !victim_is_dir {
                return Err(FsError::NotDir);
            }
            if !moved_is_dir && victim_is_dir {
                return Err(FsError::IsDir);
            }
        }
        if cross && moved_is_dir {
            self.check_perm(ctx, &moved, access::W_OK)?;
        }
        if cross && flags.exchange && victim_is_dir {
            if let Some(v) = &victim {
                self.check_perm(ctx, v, access::W_OK)?;
            }
        }
        // A directory victim must be empty; lock it (a child of the target parent) to check and
        // to mark it removed atomically with the check.
        let mut victim_dir_guard = None;
        if !flags.exchange && victim_is_dir {
            let vb = victim.as_ref().and_then(|v| v.dir()).ok_or(FsError::NotDir)?;
            let vd = vb.entries.write_nested();
            if !vd.is_empty() {
                return Err(FsError::NotEmpty);
            }
            victim_dir_guard = Some(vd);
        }

        // The walking snapshot's pre-images of everything that changes: both parents' entries
        // and records (link counts, times), the moved inode and the victim (ctime, link count).
        // A moved directory's entries do not change (its parent pointer is not in an image).
        self.snap_entries(p.p1, g.first());
        self.snap_meta(p.p1);
        if cross {
            self.snap_entries(p.p2, g.second());
            self.snap_meta(p.p2);
        }
        self.snap_meta(&moved);
        if let Some(v) = &victim {
            self.snap_meta(v);
        }
        // Whiteouts cost an inode; charge after every check, before anything changes.
        if flags.whiteout {
            self.ispace.charge(BOGO_INODE_SIZE)?;
        }
        let now = Timespec::now();
        if flags.exchange {
            let v = victim.as_ref().ok_or(FsError::NotFound)?;
            p.b1.remove(g.first(), name);
            p.b2.remove(g.second(), new_name);
            p.b1.insert(g.first(), name, v.ino, v.kind);
            p.b2.insert(g.second(), new_name, moved.ino, moved.kind);
            if cross {
                if moved_is_dir {
                    set_parent(&moved, p.p2.ino);
                    adjust_nlink(p.p1, -1);
                    adjust_nlink(p.p2, 1);
                }
                if victim_is_dir {
                    set_parent(v, p.p1.ino);
                    adjust_nlink(p.p2, -1);
                    adjust_nlink(p.p1, 1);
                }
            }
            touch_ctime(v, now);
        } else {
            p.b1.remove(g.first(), name);
            if let Some(v) = &victim {
                p.b2.remove(g.second(), new_name);
                if let Some(mut vd) = victim_dir_guard.take() {
                    vd.removed = true;
                    // The victim's ".." no longer counts toward the target parent.
                    adjust_nlink(p.p2, -1);
                }
                self.drop_link(v, now);
            }
            p.b2.insert(g.second(), new_name, moved.ino, moved.kind);
            if cross && moved_is_dir {
                set_parent(&moved, p.p2.ino);
                adjust_nlink(p.p1, -1);
                adjust_nlink(p.p2, 1);
            }
            if flags.whiteout {
                let wo = self.whiteout_inode(ctx, p.p1);
                self.table.insert(wo.clone());
                self.live_inodes.add(1);
                p.b1.insert(g.first(), name, wo.ino, wo.kind);
            }
        }
        touch_ctime(&moved, now);
        touch_dir(p.p1, now);
        if cross {
            touch_dir(p.p2, now);
        }
        drop(victim_dir_guard);
        Ok(if flags.exchange { None } else { victim })
    }

    /// The whiteout left by `RENAME_WHITEOUT`: a 0:0 character device, as overlayfs expects.
    /// Its inode space was charged by the caller.
    fn whiteout_inode(&self, ctx: &Ctx, parent: &Inode) -> Arc<Inode> {
        let gid = {
            let pm = parent.meta.read();
            if pm.perm & libc::S_ISGID != 0 {
                pm.gid
            } else {
                ctx.gid
            }
        };
        let meta = Meta::new(0, ctx.uid, gid, 1, Timespec::now());
        let wo = Arc::new(Inode::new(
            self.alloc_ino(),
            self.generation,
            FileKind::CharDevice,
            meta,
            Body::Special,
        ));
        self.snap_born(&wo);
        wo
    }
}

/// The two parent directories of a rename (the same one twice for a same-directory rename).
struct Parents<'a> {
    p1: &'a Arc<Inode>,
    b1: &'a DirBody,
    p2: &'a Arc<Inode>,
    b2: &'a DirBody,
}

/// The held parent guards: one for a same-directory rename, two otherwise.
enum Guards<'g, 'a> {
    One(&'g mut WriteGuard<'a, Dir>),
    Two(&'g mut WriteGuard<'a, Dir>, &'g mut WriteGuard<'a, Dir>),
}

impl Guards<'_, '_> {
    fn first(&mut self) -> &mut Dir {
        match self {
            Guards::One(g) | Guards::Two(g, _) => g,
        }
    }

    fn second(&mut self) -> &mut Dir {
        match self {
            Guards::One(g) | Guards::Two(_, g) => g,
        }
    }
}

/// Whether directory `a` is `b` or one of its ancestors. Walks parent pointers (atomics); exact
/// while the rename lock is held.
fn is_ancestor(fs: &Filesystem, a: Ino, b: Ino) -> bool {
    let mut cur = b;
    // Depth is bounded by the number of directories; the guard only protects against a bug.
    for _ in 0..=fs.table.len() {
        if cur == a {
            return true;
        }
        if cur == Ino::ROOT {
            return false;
        }
        let Some(inode) = fs.table.get(cur) else {
            return false;
        };
        let Some(body) = inode.dir() else {
            return false;
        };
        cur = body.parent();
    }
    false
}

fn set_parent(dir: &Inode, parent: Ino) {
    if let Body::Dir(b) = &dir.body {
        b.set_parent(parent);
    }
}

fn adjust_nlink(dir: &Inode, delta: i32) {
    let mut m = dir.meta.write();
    m.nlink = m.nlink.saturating_add_signed(delta);
}

fn touch_ctime(inode: &Inode, now: Timespec) {
    inode.meta.write().ctime = now;
}
