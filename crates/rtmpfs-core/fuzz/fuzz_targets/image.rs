//! Feed the fuzzer's bytes to the image reader (`Filesystem::from_image`), plain and with a key:
//! it must refuse or build a filesystem, never panic, hang or allocate without bound; a tree it
//! builds must pass the accounting invariant. The corpus is best seeded with real images
//! (`rtmpfs snapshot`, or `tests/image.rs`'s), since a random byte string rarely gets past the
//! header's checksum.
//!
//! Run: `cd crates/rtmpfs-core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run image`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmpfs_core::{Config, Filesystem, ImageKey, RestoreOptions};

fuzz_target!(|data: &[u8]| {
    let config = Config {
        size_bytes: Some(64 << 20),
        max_inodes: Some(10_000),
        ..Config::default()
    };
    for key in [None, Some(ImageKey::from_bytes(&[7u8; 32]).unwrap())] {
        let opts = RestoreOptions {
            key,
            size: rtmpfs_core::LimitSource::Config,
            inodes: rtmpfs_core::LimitSource::Config,
        };
        if let Ok(fs) = Filesystem::from_image(config.clone(), data, &opts) {
            fs.check_invariants().unwrap();
        }
    }
});
