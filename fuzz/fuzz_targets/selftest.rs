//! Not a fuzz target of the service: the deliberate failure that proves `scripts/fuzz-long.sh`
//! reports each kind of libFuzzer failure (`scripts/fuzz-long.sh --self-test`). What it does
//! with every input is chosen by `FUZZ_SELFTEST_MODE`: `crash` (a panic), `timeout` (never
//! returns), `oom` (one allocation over libFuzzer's malloc limit), `leak` (memory never freed,
//! for LeakSanitizer), or anything else: nothing (a clean run).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match std::env::var("FUZZ_SELFTEST_MODE").as_deref() {
        Ok("crash") => panic!("fuzz self-test: deliberate crash"),
        Ok("timeout") => loop {
            std::hint::black_box(data);
        },
        // 4 GiB in one allocation: over the default -rss_limit_mb (2048), which libFuzzer also
        // applies to single mallocs.
        Ok("oom") => {
            let big = vec![1u8; 4 << 30];
            std::hint::black_box(&big);
        }
        Ok("leak") => {
            let leaked = Box::leak(vec![7u8; 64 + data.len()].into_boxed_slice());
            std::hint::black_box(leaked);
        }
        _ => {}
    }
});
