//! Shrunk failures, kept by name. Each sequence runs against the model (`model::regression_*`)
//! and, as root, against the kernel too (`differential::differential_regressions`), so every
//! expectation here is Linux's.

use rtmpfs_testkit::{at, DirSel, NodeKind, Op, OpenMode, Whence};

const RDONLY_TRUNC: OpenMode = OpenMode {
    acc: 0,
    trunc: true,
    append: false,
};

/// A named sequence.
pub type Regression = (&'static str, fn() -> Vec<Op>);

/// Every regression sequence by name.
pub const REGRESSIONS: &[Regression] = &[
    ("symlink_ignores_umask", symlink_ignores_umask),
    ("mkdir_drops_setid_bits", mkdir_drops_setid_bits),
    ("whiteout_rename_between_hard_links", whiteout_rename_between_hard_links),
    ("noreplace_onto_same_inode", noreplace_onto_same_inode),
    ("user_xattr_on_symlink", user_xattr_on_symlink),
    (
        "copy_range_overlap_after_eof_shortening",
        copy_range_overlap_after_eof_shortening,
    ),
    ("open_rdonly_trunc", open_rdonly_trunc),
    (
        "trunc_to_same_size_frees_reserved_past_eof",
        trunc_to_same_size_frees_reserved_past_eof,
    ),
    ("fallocate_len0_readonly", fallocate_len0_readonly),
    ("seek_on_directory", seek_on_directory),
    ("link_dir_onto_existing", link_dir_onto_existing),
    ("copy_range_dir_handle", copy_range_dir_handle),
    ("rename_ancestry_before_kind", rename_ancestry_before_kind),
    ("xattr_nospace_before_exists", xattr_nospace_before_exists),
];

/// The sequence named `name`.
pub fn get(name: &str) -> Vec<Op> {
    REGRESSIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| panic!("no regression {name}"), |(_, f)| f())
}

fn create(path: &str, flags: OpenMode) -> Op {
    Op::Create {
        at: at(path),
        mode: 0o644,
        flags,
    }
}

fn mkdir(path: &str) -> Op {
    Op::Mkdir {
        at: at(path),
        mode: 0o755,
    }
}

/// Symlinks are always 0777; the umask (022 here) does not apply.
fn symlink_ignores_umask() -> Vec<Op> {
    vec![Op::Symlink { at: at("a"), target: 0 }]
}

/// mkdir(2) keeps only the permission and sticky bits of its mode (`S_IRWXUGO | S_ISVTX`).
fn mkdir_drops_setid_bits() -> Vec<Op> {
    vec![
        Op::Mkdir {
            at: at("a"),
            mode: 0o4755,
        },
        Op::Mkdir {
            at: at("b"),
            mode: 0o3775,
        },
    ]
}

/// `RENAME_WHITEOUT` between two names of one inode does nothing; its inode-space charge must
/// be given back (the engine's invariant check caught `inode space 3072 != charged 4096`).
fn whiteout_rename_between_hard_links() -> Vec<Op> {
    vec![
        Op::Mknod {
            at: at("a"),
            kind: NodeKind::Fifo,
            mode: 0o644,
        },
        Op::Link {
            from: at("a"),
            to: at("b"),
        },
        Op::Rename {
            from: at("a"),
            to: at("b"),
            flags: 4,
        },
        Op::Statfs,
    ]
}

/// `RENAME_NOREPLACE` onto an existing name is EEXIST even when both name one inode (Linux
/// checks NOREPLACE before "same inode: nothing to do").
fn noreplace_onto_same_inode() -> Vec<Op> {
    vec![
        create("a", OpenMode::RDWR),
        Op::Link {
            from: at("a"),
            to: at("b"),
        },
        Op::Rename {
            from: at("a"),
            to: at("b"),
            flags: 1,
        },
        Op::Rename {
            from: at("a"),
            to: at("a"),
            flags: 1,
        },
    ]
}

/// `xattr_permission` refuses `user.*` on a symlink (EPERM to change, ENODATA to read) before
/// the name's handler is resolved, so even the invalid name `user.` gets those errors.
fn user_xattr_on_symlink() -> Vec<Op> {
    vec![
        Op::Symlink { at: at("a"), target: 0 },
        Op::SetXattr {
            at: at("a"),
            name: 4,
            len: 3,
            seed: 0,
            flags: 0,
        },
        Op::RemoveXattr { at: at("a"), name: 4 },
        Op::GetXattr { at: at("a"), name: 4 },
        Op::SetXattr {
            at: at("a"),
            name: 0,
            len: 3,
            seed: 0,
            flags: 0,
        },
    ]
}

/// copy_file_range shortens the count to the source's EOF before it checks that source and
/// target ranges of one file do not overlap.
fn copy_range_overlap_after_eof_shortening() -> Vec<Op> {
    vec![
        Op::Tmpfile {
            dir: DirSel(0),
            mode: 0o644,
        },
        Op::CopyRange {
            from: 0,
            off_in: 0,
            to: 0,
            off_out: 0,
            len: 1,
        },
        Op::Write {
            h: 0,
            off: 0,
            len: 100,
            seed: 1,
        },
        Op::CopyRange {
            from: 0,
            off_in: 50,
            to: 0,
            off_out: 150,
            len: 1000,
        },
    ]
}

/// `O_RDONLY | O_TRUNC` truncates on Linux (the access check asks for write permission).
fn open_rdonly_trunc() -> Vec<Op> {
    vec![
        create("a", OpenMode::RDWR),
        Op::Write {
            h: 0,
            off: 0,
            len: 5000,
            seed: 1,
        },
        Op::Open {
            at: at("a"),
            flags: RDONLY_TRUNC,
        },
    ]
}

/// shmem_setattr frees every page past the new size whenever the size does not grow, the
/// same size included: `KEEP_SIZE` pages beyond EOF go at `truncate(same size)` and at
/// `O_TRUNC` of an empty file.
fn trunc_to_same_size_frees_reserved_past_eof() -> Vec<Op> {
    vec![
        create("a", OpenMode::RDWR),
        Op::Write {
            h: 0,
            off: 0,
            len: 10,
            seed: 1,
        },
        Op::Fallocate {
            h: 0,
            mode: 1,
            off: 8192,
            len: 4096,
        },
        Op::Truncate { at: at("a"), size: 10 },
        Op::Fallocate {
            h: 0,
            mode: 1,
            off: 8192,
            len: 4096,
        },
        Op::Ftruncate { h: 0, size: 10 },
        create("b", OpenMode::RDWR),
        Op::Fallocate {
            h: 1,
            mode: 1,
            off: 0,
            len: 8192,
        },
        Op::Open {
            at: at("b"),
            flags: OpenMode {
                acc: 2,
                trunc: true,
                append: false,
            },
        },
    ]
}

/// fallocate checks `len == 0` (EINVAL) before the handle's write access (EBADF).
fn fallocate_len0_readonly() -> Vec<Op> {
    vec![
        create("a", OpenMode::RDONLY),
        Op::Fallocate {
            h: 0,
            mode: 0,
            off: 0,
            len: 0,
        },
    ]
}

/// SEEK_DATA/SEEK_HOLE on a directory is EINVAL (the directory's llseek), not EISDIR.
fn seek_on_directory() -> Vec<Op> {
    vec![
        mkdir("d0"),
        Op::Open {
            at: at("d0"),
            flags: OpenMode::RDONLY,
        },
        Op::Seek {
            h: 0,
            whence: Whence::Data,
            off: 0,
        },
        Op::Seek {
            h: 0,
            whence: Whence::Hole,
            off: -1,
        },
    ]
}

/// link(2) of a directory onto an existing name: EEXIST (the new name is created, and found
/// taken, before vfs_link refuses directories with EPERM).
fn link_dir_onto_existing() -> Vec<Op> {
    vec![
        mkdir("d0"),
        create("a", OpenMode::RDONLY),
        Op::Link {
            from: at("d0"),
            to: at("a"),
        },
        Op::Link {
            from: at("d0"),
            to: at("d0"),
        },
        Op::Link {
            from: at("d0"),
            to: at("b"),
        },
    ]
}

/// copy_file_range checks the kinds of both files (EISDIR, EINVAL) before the handles' access
/// modes (EBADF).
fn copy_range_dir_handle() -> Vec<Op> {
    vec![
        mkdir("d0"),
        Op::Open {
            at: at("d0"),
            flags: OpenMode::RDONLY,
        },
        create("a", OpenMode::RDONLY),
        Op::CopyRange {
            from: 0,
            off_in: 0,
            to: 1,
            off_out: 0,
            len: 10,
        },
        Op::CopyRange {
            from: 1,
            off_in: 0,
            to: 0,
            off_out: 0,
            len: 10,
        },
    ]
}

/// rename checks ancestry (the source may not be above the new parent: EINVAL; the target may
/// not be above the old parent: ENOTEMPTY) before the kinds of source and target.
fn rename_ancestry_before_kind() -> Vec<Op> {
    vec![
        mkdir("d0"),
        create("d0/a", OpenMode::RDONLY),
        Op::Rename {
            from: at("d0/a"),
            to: at("d0"),
            flags: 0,
        },
        Op::Create {
            at: at("d0/d1"),
            mode: 0o644,
            flags: OpenMode::RDONLY,
        },
        Op::Rename {
            from: at("d0"),
            to: at("d0/d1"),
            flags: 0,
        },
    ]
}

/// shmem charges a new xattr value against the inode space before it looks for the old one,
/// so with the space nearly full `XATTR_CREATE` on an existing name and `XATTR_REPLACE` on a
/// missing one fail with ENOSPC, not EEXIST/ENODATA.
fn xattr_nospace_before_exists() -> Vec<Op> {
    let xattr = |name, len, flags| Op::SetXattr {
        at: at("a"),
        name,
        len,
        seed: 1,
        flags,
    };
    let mut ops = vec![create("a", OpenMode::RDWR), xattr(0, 100, 0), xattr(1, 750, 0)];
    for d in ["d0", "d1", "b", "d0/a", "d0/b", "d0/d0", "d0/d1", "d1/a", "d1/b"] {
        ops.push(mkdir(d));
    }
    ops.extend([xattr(0, 100, 1), xattr(2, 10, 2), xattr(0, 10, 1), Op::Statfs]);
    ops
}
