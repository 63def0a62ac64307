//! A private kernel tmpfs, mounted for one test run: the oracle of the differential tests.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::ModelConfig;
use crate::op;

/// The mount options (`mode=`, `size=`, `nr_inodes=`) that give a tmpfs, or an rtmpfs mount,
/// the limits of `cfg`. Both filesystems take the same names.
pub fn mount_options(cfg: &ModelConfig) -> String {
    let mut opts = vec![format!("mode={:o}", cfg.root_mode)];
    if let Some(p) = cfg.size_pages {
        opts.push(format!("size={}", p * op::PAGE));
    }
    if let Some(n) = cfg.nr_inodes {
        opts.push(format!("nr_inodes={n}"));
    }
    opts.join(",")
}

/// A fresh kernel tmpfs mounted on a new directory under the temporary directory; unmounted
/// (lazily if a descriptor is still open) and the directory removed on drop, panics included.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount tmpfs with `options` (e.g. `size=98304,nr_inodes=12,mode=1777`).
    ///
    /// # Errors
    /// Why it could not: not root, or the mount was refused.
    pub fn mount(options: &str) -> Result<Tmpfs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err(
                "mounting a kernel tmpfs (the oracle of the differential tests) needs root \
                        (CI has it); it cannot run here"
                    .into(),
            );
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rtmpfs-diff-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|err| format!("mkdir {}: {err}", dir.display()))?;
        let data = CString::new(options).map_err(|_| format!("NUL in mount options {options:?}"))?;
        if let Err(err) = rustix::mount::mount(
            "rtmpfs-diff",
            &dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount -t tmpfs -o {options} on {}: {err}", dir.display()));
        }
        Ok(Tmpfs { dir })
    }

    /// A tmpfs with the limits and root mode of `cfg`.
    ///
    /// # Errors
    /// As [`Tmpfs::mount`].
    pub fn for_config(cfg: &ModelConfig) -> Result<Tmpfs, String> {
        Tmpfs::mount(&mount_options(cfg))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::empty()).is_err() {
            // Busy (a descriptor leaked by a panicking test): detach, so nothing stays mounted.
            let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
