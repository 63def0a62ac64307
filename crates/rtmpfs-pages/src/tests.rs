use super::*;
use std::sync::mpsc;

/// The pool is global: tests that move its figures run one at a time, and leave nothing in
/// their thread's cache (which would go back to the pool when the thread exits, at a time of
/// its own, after the next test has started).
static SERIAL: Mutex<()> = Mutex::new(());

struct Serial {
    _guard: parking_lot::MutexGuard<'static, ()>,
}

fn serial() -> Serial {
    Serial { _guard: SERIAL.lock() }
}

impl Drop for Serial {
    fn drop(&mut self) {
        flush_thread_cache();
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss field")
        .parse()
        .expect("number");
    pages * 4096
}

#[test]
fn zeroed_pages_are_zero_even_when_reused() {
    let _s = serial();
    let mut dirty = Vec::new();
    for _ in 0..200 {
        let mut p = PageBuf::for_overwrite().expect("page");
        p.fill(0xa5);
        dirty.push(p);
    }
    drop(dirty);
    for _ in 0..400 {
        let p = PageBuf::zeroed().expect("page");
        assert!(p.iter().all(|&b| b == 0), "a zeroed page held old bytes");
    }
}

#[test]
fn live_pages_are_distinct_aligned_and_keep_their_bytes() {
    let _s = serial();
    let pages: Vec<PageBuf> = (0..3000u32)
        .map(|i| {
            let mut p = PageBuf::for_overwrite().expect("page");
            p.fill((i % 251) as u8);
            p[..4].copy_from_slice(&i.to_le_bytes());
            p
        })
        .collect();
    let mut addrs: Vec<usize> = pages.iter().map(|p| p.as_ptr() as usize).collect();
    assert!(addrs.iter().all(|a| a % PAGE == 0), "a page is not page-aligned");
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), pages.len(), "two live pages share an address");
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&p[..4], &(i as u32).to_le_bytes());
        assert!(p[4..].iter().all(|&b| b == (i % 251) as u8), "page {i} was overwritten");
    }
}

#[test]
fn freeing_gives_ram_back_and_bounds_hot_pages() {
    let _s = serial();
    const N: usize = 40_000; // 160 MiB
    let before = stats();
    let pages: Vec<PageBuf> = (0..N)
        .map(|_| {
            let mut p = PageBuf::for_overwrite().expect("page");
            p.fill(1);
            p
        })
        .collect();
    let peak_rss = rss_bytes();
    drop(pages);
    flush_thread_cache();
    // Freed just now: kept with their contents (a rewrite would reuse them without faults).
    let kept = stats();
    assert!(kept.free_hot_bytes >= ((N - CACHE_MAX) * PAGE) as u64, "{kept:?}");
    assert!(
        kept.free_hot_bytes <= ((HOT_CAP + TRIM_BATCH) * PAGE) as u64,
        "{kept:?}"
    );
    // Once idle, all but HOT_LIMIT of them go back to the kernel.
    std::thread::sleep(IDLE + Duration::from_millis(100));
    trim_idle();
    let after = stats();
    let rss = rss_bytes();
    assert!(
        after.free_hot_bytes <= (HOT_LIMIT * PAGE) as u64,
        "{after:?}: too many dirty pages kept"
    );
    let given_back = after.pages_given_back - before.pages_given_back;
    assert!(
        given_back as usize >= N - HOT_LIMIT - CACHE_MAX,
        "only {given_back} of {N} pages given back: {after:?}"
    );
    // The test process's RSS fell by most of the 160 MiB (other tests allocate little).
    assert!(
        peak_rss.saturating_sub(rss) > (N * PAGE) as u64 / 2,
        "RSS {peak_rss} -> {rss} after freeing {} bytes",
        N * PAGE
    );
    // Given-back pages read as zeros when reused, and are reused before new mappings are made.
    let mapped = stats().mapped_bytes;
    let again: Vec<PageBuf> = (0..N).map(|_| PageBuf::zeroed().expect("page")).collect();
    assert!(again.iter().all(|p| p.iter().all(|&b| b == 0)));
    assert_eq!(stats().mapped_bytes, mapped, "free pages were not reused");
}

#[test]
fn pages_moved_between_threads_stay_intact_and_exiting_threads_return_their_cache() {
    let _s = serial();
    let out_before = stats().out_bytes;
    let (tx, rx) = mpsc::sync_channel::<(u8, PageBuf)>(64);
    let producers: Vec<_> = (0..3u8)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let tag = t.wrapping_mul(31).wrapping_add(i as u8);
                    let mut p = if i % 2 == 0 {
                        PageBuf::zeroed()
                    } else {
                        PageBuf::for_overwrite()
                    }
                    .expect("page");
                    p.fill(tag);
                    if i % 3 == 0 {
                        tx.send((tag, p)).expect("consumer alive");
                    } else {
                        assert!(p.iter().all(|&b| b == tag));
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        for (tag, p) in rx {
            assert!(p.iter().all(|&b| b == tag), "a page changed while in flight");
            n += 1;
        }
        n
    });
    for p in producers {
        p.join().expect("producer");
    }
    assert!(consumer.join().expect("consumer") > 0);
    // Every thread above has exited: their caches went back to the shared list.
    assert_eq!(stats().out_bytes, out_before, "pages leaked in exited threads' caches");
}
