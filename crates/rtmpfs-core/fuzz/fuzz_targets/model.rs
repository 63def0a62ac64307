//! Decode a sequence of `Op`s from the fuzzer's bytes and run it on the reference model and the
//! engine, exactly as the proptest does: every outcome, byte and attribute compared after each
//! step, the accounting invariant checked, and everything deleted at the end with all space
//! given back. Any difference panics, which libFuzzer reports as a crash.
//!
//! Run: `cd crates/rtmpfs-core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run model`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmpfs_testkit::model::ModelConfig;
use rtmpfs_testkit::{Op, Runner};

fuzz_target!(|ops: Vec<Op>| {
    // Long sequences only slow the fuzzer down; the interesting states come early.
    let ops = &ops[..ops.len().min(64)];
    if let Err(e) = Runner::new(ModelConfig::default()).run(ops) {
        panic!("{e}");
    }
});
