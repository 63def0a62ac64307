//! Images on disk for a mount: the tree restored at mount (`restore=`, `persist=`; `restore=`
//! also takes a tar archive, see `tar_import.rs`) and saved
//! atomically (`rtmpfs snapshot`, `persist=` at a clean end and every `persist_interval=`).
//!
//! A save writes a new file beside the image (`.NAME.rtmpfs-tmp.PID`, mode 0600, created
//! exclusively), fsyncs it, renames it over the image and fsyncs the directory: a crash, a
//! `kill -9` or a full disk at any point leaves the previous image whole, and a failure removes
//! the new file and says why. The format is docs/image-format.md.

use rtmpfs_core::{Config, Filesystem, ImageKey, LimitSource, RestoreOptions, SnapshotOptions, SnapshotStats};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Buffer of the image file's reader and writer.
const IO_BUFFER: usize = 1 << 20;

/// The key in `path`, if one is given.
///
/// # Errors
/// One line naming the file and what is wrong with it.
pub fn load_key(path: Option<&Path>) -> Result<Option<ImageKey>, String> {
    path.map(|p| ImageKey::from_file(p).map_err(|e| e.to_string()))
        .transpose()
}

/// Build the filesystem from the image at `path`, `size` and `nr_inodes` from the image unless
/// given as options. `Ok(None)` when the file does not exist and `absent_ok` (`persist=`).
///
/// # Errors
/// One line: the file and why its image was refused.
pub fn restore(
    config: Config,
    path: &Path,
    key: Option<&ImageKey>,
    limits_given: (bool, bool),
    absent_ok: bool,
) -> Result<Option<Filesystem>, String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && absent_ok => return Ok(None),
        Err(e) => return Err(format!("image {}: {e}", path.display())),
    };
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|e| format!("image {}: {e}", path.display()))?;
    if crate::tar_import::looks_like_tar(&head) {
        // A tar archive has no limits of its own: the mount's options give them.
        let input = BufReader::with_capacity(IO_BUFFER, file);
        return crate::tar_import::from_tar(config, input)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let source = |given: bool| if given { LimitSource::Config } else { LimitSource::Image };
    let opts = RestoreOptions {
        key: key.cloned(),
        size: source(limits_given.0),
        inodes: source(limits_given.1),
    };
    let input = BufReader::with_capacity(IO_BUFFER, file);
    Filesystem::from_image(config, input, &opts)
        .map(Some)
        .map_err(|e| format!("image {}: {e}", path.display()))
}

/// Remove the temporary files that saves to `path` killed before they finished left behind
/// (`.NAME.rtmpfs-tmp.PID` of a process that is gone); returns how many. Called when a
/// `persist=` mount starts: it owns that image.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (Some(name), Some(dir)) = (path.file_name(), path.parent()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.rtmpfs-tmp.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let gone = pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if gone && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Write an image of `fs` to `path` atomically (see the module docs). `served` is the device of
/// the mount `fs` serves while it is mounted: an image cannot go inside it (writing it would wait
/// for the very snapshot that writes it: every change to the mount waits for the snapshot).
///
/// # Errors
/// One line: what failed; the previous image at `path`, if any, is untouched.
pub fn save(
    fs: &Filesystem,
    path: &Path,
    key: Option<&ImageKey>,
    served: Option<(u32, u32)>,
) -> Result<SnapshotStats, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("saving image {}: {what}: {e}", path.display());
    let name = path.file_name().ok_or_else(|| fail("path", &"names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Some(dev) = served {
        use std::os::unix::fs::MetadataExt;
        let d = std::fs::metadata(&dir).map_err(|e| fail("the directory", &e))?.dev();
        if (libc::major(d), libc::minor(d)) == dev {
            return Err(fail(
                "refused",
                &"the image cannot be written inside the mount it is an image of",
            ));
        }
    }
    let tmp = dir.join(format!(".{}.rtmpfs-tmp.{}", name.to_string_lossy(), std::process::id()));
    // A temporary file left by a save that was killed (same pid, reused): ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("creating the new file", &e))?;
    let written = write_image(fs, file, key).and_then(|stats| {
        std::fs::rename(&tmp, path).map_err(|e| format!("renaming it over the image: {e}"))?;
        // The rename is durable once the directory is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("syncing the directory: {e}"))?;
        Ok(stats)
    });
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("saving image {}: {e}", path.display())
    })
}

fn write_image(fs: &Filesystem, file: File, key: Option<&ImageKey>) -> Result<SnapshotStats, String> {
    let mut out = BufWriter::with_capacity(IO_BUFFER, file);
    let opts = SnapshotOptions { key: key.cloned() };
    let stats = fs.snapshot_with(&mut out, &opts).map_err(|e| e.to_string())?;
    let file = out.into_inner().map_err(|e| e.error().to_string())?;
    file.sync_all().map_err(|e| format!("syncing: {e}"))?;
    Ok(stats)
}

/// A mount's `persist=` image: saved at the end and, with `persist_interval=`, periodically.
/// Saves are serialised (one temporary file per process).
pub(crate) struct Persist {
    pub(crate) fs: Arc<Filesystem>,
    pub(crate) path: PathBuf,
    pub(crate) key: Option<ImageKey>,
    /// The mount's device, while it is mounted (see [`save`]).
    pub(crate) dev: (u32, u32),
    lock: Mutex<()>,
}

impl Persist {
    pub(crate) fn new(fs: Arc<Filesystem>, path: PathBuf, key: Option<ImageKey>, dev: (u32, u32)) -> Arc<Persist> {
        Arc::new(Persist {
            fs,
            path,
            key,
            dev,
            lock: Mutex::new(()),
        })
    }

    /// Save now; logs the outcome.
    ///
    /// # Errors
    /// The one-line reason, also logged.
    pub(crate) fn save(&self) -> Result<(), String> {
        let _one = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Once unmounted, the path no longer leads into the mount: the check passes by itself.
        match save(&self.fs, &self.path, self.key.as_ref(), Some(self.dev)) {
            Ok(s) => {
                tracing::info!(
                    "saved {} ({} inodes, {} data pages; writers paused {:.1?})",
                    self.path.display(),
                    s.inodes,
                    s.data_pages,
                    s.pause
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!("{e}");
                Err(e)
            }
        }
    }

    /// Save every `interval` on a thread of its own, for the life of the process.
    pub(crate) fn every(self: &Arc<Self>, interval: Duration) {
        let me = self.clone();
        let started = std::thread::Builder::new()
            .name("rtmpfs-persist".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let _ = me.save();
            });
        if let Err(e) = started {
            tracing::error!("no persist_interval thread: {e}");
        }
    }
}

/// Used by the control socket's `snapshot PATH`.
pub(crate) fn snapshot_to(
    fs: &Filesystem,
    path: &Path,
    key: Option<&ImageKey>,
    dev: (u32, u32),
) -> Result<String, String> {
    if !path.is_absolute() {
        return Err("snapshot needs an absolute path".into());
    }
    let s = save(fs, path, key, Some(dev))?;
    Ok(format!(
        "saved {} inodes, {} entries, {} data pages; writers paused {:.3} ms\n",
        s.inodes,
        s.entries,
        s.data_pages,
        s.pause.as_secs_f64() * 1000.0
    ))
}
