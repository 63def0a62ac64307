//! Helpers shared by the engine's unit tests.

use std::ffi::OsStr;

use crate::{Ctx, Fh, Filesystem};

/// Close `fh`, unlink `name` from the root directory, and check that nothing stays charged:
/// no page, no swap slot, no frame.
pub(crate) fn delete_and_check_empty(fs: &Filesystem, fh: Fh, name: &str) {
    fs.release(fh).unwrap();
    fs.unlink(&Ctx::root(), fs.root(), OsStr::new(name)).unwrap();
    let u = fs.usage();
    assert_eq!(
        (u.charged_pages, u.swap_slots_used, u.frames_in_use),
        (0, 0, 0),
        "{u:?}"
    );
}
