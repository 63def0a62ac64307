//! `/proc/self/mountinfo`: which mounts exist, read without touching the mounts themselves (a
//! `stat` of a FUSE mount point would be a request to its daemon, possibly ourselves).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id.
    pub id: u64,
    /// Device of the superblock (`st_dev` of files in it).
    pub major: u32,
    /// See `major`.
    pub minor: u32,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: String,
    /// Filesystem type (`fuse`, `fuse.sshfs`, `tmpfs`, ...).
    pub fstype: String,
    /// Source (the mount's "device": TAG for us).
    pub source: String,
    /// Superblock options.
    pub super_options: String,
}

impl MountEntry {
    /// Whether this is a FUSE mount (any subtype).
    #[must_use]
    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }

    /// Whether a per-mount option (e.g. `ro`, `nosuid`) is set.
    #[must_use]
    pub fn has_option(&self, opt: &str) -> bool {
        self.mount_options.split(',').any(|o| o == opt)
    }
}

/// Decode mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let mut it = line.split(' ');
    let id = it.next()?.parse().ok()?;
    let _parent = it.next()?;
    let (maj, min) = it.next()?.split_once(':')?;
    let _root = it.next()?;
    let mount_point = PathBuf::from(unescape(it.next()?));
    let mount_options = it.next()?.to_string();
    // Optional fields up to the "-" separator.
    for f in it.by_ref() {
        if f == "-" {
            break;
        }
    }
    let fstype = unescape(it.next()?).to_string_lossy().into_owned();
    let source = unescape(it.next()?).to_string_lossy().into_owned();
    let super_options = it.next().unwrap_or("").to_string();
    Some(MountEntry {
        id,
        major: maj.parse().ok()?,
        minor: min.parse().ok()?,
        mount_point,
        mount_options,
        fstype,
        source,
        super_options,
    })
}

/// Parse mountinfo text.
#[must_use]
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// Every mount of this process's namespace, in mount order.
///
/// # Errors
/// When `/proc/self/mountinfo` cannot be read.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount whose mount point is exactly `path` (the topmost one if several are stacked).
///
/// # Errors
/// When `/proc/self/mountinfo` cannot be read.
pub fn mounted_at(path: &Path) -> std::io::Result<Option<MountEntry>> {
    Ok(read()?.into_iter().rev().find(|m| m.mount_point == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let text = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
95 22 0:53 / /mnt/my\\040dir rw,relatime - fuse scratch rw,user_id=0,group_id=0,default_permissions,allow_other
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fstype, "proc");
        assert!(m[0].has_option("nosuid"));
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/my dir"));
        assert_eq!((m[1].major, m[1].minor), (0, 53));
        assert_eq!(m[1].source, "scratch");
        assert!(m[1].is_fuse());
        assert!(m[1].super_options.contains("allow_other"));
    }

    #[test]
    fn reads_our_own_namespace() {
        let all = read().unwrap();
        assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
