//! `Filesystem::set_memory_limit`: the RAM budget of a live filesystem, raised and cut (the
//! engine side of `rtmpfs resize MOUNTPOINT memory=`). The background evictor is off in every
//! test, so a cut that fits proves that the call itself evicted.

use rtmpfs_core::{Config, Ctx, Fh, Filesystem, MemoryLimitError, OpenFlags, SwapConfig, PAGE_SIZE};
use std::ffi::OsStr;

const P: usize = PAGE_SIZE as usize;

// `swap`: None = noswap, Some(None) = unlimited swap, Some(Some(n)) = n bytes (Config's own shape).
#[allow(clippy::option_option)]
fn config(memory_pages: u64, swap: Option<Option<u64>>) -> Config {
    Config {
        size_bytes: Some(4096 * PAGE_SIZE),
        memory_bytes: Some(memory_pages * PAGE_SIZE),
        swap: swap.map(|size_pages| SwapConfig {
            dir: std::env::temp_dir(),
            size_bytes: size_pages.map(|p| p * PAGE_SIZE),
            encrypt: false,
        }),
        background_threads: false,
        ..Config::default()
    }
}

fn pattern(i: usize) -> Vec<u8> {
    (0..P)
        .map(|b| (b as u8).wrapping_mul(7).wrapping_add(i as u8))
        .collect()
}

fn file_with(fs: &Filesystem, pages: usize) -> Fh {
    let (_, fh) = fs
        .create(&Ctx::root(), fs.root(), OsStr::new("f"), 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    for i in 0..pages {
        assert_eq!(fs.write(&Ctx::root(), fh, (i * P) as u64, &pattern(i)).unwrap(), P);
    }
    fh
}

fn check(fs: &Filesystem, fh: Fh, pages: usize) {
    for i in 0..pages {
        assert_eq!(fs.read_vec(fh, (i * P) as u64, P).unwrap(), pattern(i), "page {i}");
    }
}

#[test]
fn a_cut_evicts_down_to_the_new_budget_before_returning_and_a_raise_is_immediate() {
    let fs = Filesystem::new(config(64, Some(None))).unwrap();
    let fh = file_with(&fs, 60);
    let before = fs.usage();
    assert_eq!(before.resident_pages, 60);
    fs.set_memory_limit(16).unwrap();
    let u = fs.usage();
    assert_eq!(u.memory_limit_pages, Some(16));
    assert!(u.frames_in_use <= 16, "{u:?}");
    assert!(u.evictions >= 44, "{u:?}");
    assert_eq!(u.resident_pages + u.swapped_pages, 60, "{u:?}");
    // Nothing lost; reading swaps pages back in within the new budget.
    check(&fs, fh, 60);
    assert!(fs.usage().frames_in_use <= 16 + 1);
    fs.set_memory_limit(256).unwrap();
    assert_eq!(fs.usage().memory_limit_pages, Some(256));
    // The raise is there at once: 200 pages now fit without another eviction.
    let ev = fs.usage().evictions;
    for i in 60..200 {
        fs.write(&Ctx::root(), fh, (i * P) as u64, &pattern(i)).unwrap();
    }
    check(&fs, fh, 200);
    let u = fs.usage();
    assert_eq!(u.evictions, ev, "{u:?}");
    assert_eq!(u.resident_pages, 200, "{u:?}");
}

#[test]
fn without_swap_a_cut_below_what_is_resident_is_refused_with_the_figures() {
    let fs = Filesystem::new(config(32, None)).unwrap();
    let fh = file_with(&fs, 20);
    let e = fs.set_memory_limit(10).unwrap_err();
    assert_eq!(e, MemoryLimitError::NoSwap { in_use: 20, asked: 10 });
    let msg = e.to_string();
    assert!(msg.contains("20 pages") && msg.contains("noswap"), "{msg}");
    assert_eq!(fs.usage().memory_limit_pages, Some(32), "a refusal changes nothing");
    fs.set_memory_limit(24).unwrap();
    assert_eq!(fs.usage().memory_limit_pages, Some(24));
    check(&fs, fh, 20);
}

#[test]
fn a_cut_the_swap_cannot_take_is_refused_and_the_budget_restored() {
    // 40 pages in RAM, a swap of 8 pages: a budget of 8 cannot be reached.
    let fs = Filesystem::new(config(64, Some(Some(8)))).unwrap();
    let fh = file_with(&fs, 40);
    match fs.set_memory_limit(8) {
        Err(MemoryLimitError::Stuck {
            in_use,
            asked: 8,
            swap_used,
            swap_capacity: Some(8),
        }) => {
            assert!(in_use > 8 && swap_used <= 8, "{in_use} {swap_used}");
        }
        other => panic!("expected Stuck, got {other:?}"),
    }
    assert_eq!(fs.usage().memory_limit_pages, Some(64));
    check(&fs, fh, 40);
}

#[test]
fn no_budget_and_zero_are_refused() {
    let fs = Filesystem::new(Config::default()).unwrap();
    assert_eq!(fs.set_memory_limit(10), Err(MemoryLimitError::NoBudget));
    let fs = Filesystem::new(config(8, Some(None))).unwrap();
    assert_eq!(fs.set_memory_limit(0), Err(MemoryLimitError::Zero));
    assert_eq!(fs.usage().memory_limit_pages, Some(8));
}
