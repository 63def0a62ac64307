//! The I/O guard proves which file's lock is held.

use super::FileData;
use crate::config::Config;
use crate::inode::Inode;
use crate::mm::MemoryManager;
use crate::sync::Weak;

#[test]
fn a_files_own_guard_is_accepted() {
    let mm = MemoryManager::start(&Config::default(), None).unwrap();
    let a = FileData::new(2, Weak::<Inode>::new());
    let io = a.lock_io();
    assert_eq!(a.write(&io, &mm, 0, b"abc").unwrap(), 3);
    a.truncate(&io, &mm, 1).unwrap();
    drop(io);
    assert_eq!(a.size(), 1);
    a.release_all(&mm);
}

#[test]
#[should_panic(expected = "the I/O guard of another file")]
fn another_files_guard_is_refused() {
    let mm = MemoryManager::start(&Config::default(), None).unwrap();
    let a = FileData::new(2, Weak::<Inode>::new());
    let b = FileData::new(3, Weak::<Inode>::new());
    let io = a.lock_io();
    let _ = b.write(&io, &mm, 0, b"abc");
}
