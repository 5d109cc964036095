//! The engine on the host, next to its references in one run: frames/s
//! through two engines on two threads, the same frames with the same copies
//! through an SPSC ring crate (`rtrb`), and single-thread memcpy bandwidth
//! (see `netdev_host::bench`).
//!
//! `cargo bench -p netdev` (harness = false). Each measurement runs for
//! `RUN_TIME` and is repeated `RUNS` times; the table shows the median with
//! the min–max range. The launcher's `bench` command prints the same rows.

use std::time::Duration;

use netdev_host::bench::{self, Sample, Spread};

const RUN_TIME: Duration = Duration::from_millis(400);
const RUNS: usize = 5;

fn spread(measure: impl Fn() -> Sample) -> Spread {
    let rates: Vec<f64> = (0..RUNS).map(|_| measure().frames_per_second()).collect();
    Spread::of(&rates)
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore arguments.
    println!(
        "ivshmem-net engine on the host: two threads, output sections of {:#x} bytes, \
         median (min-max) of {RUNS} runs of {} ms",
        bench::SECTION_SIZE,
        RUN_TIME.as_millis()
    );
    println!(
        "{:>6} {:>28} {:>28} {:>8} {:>28} {:>8}",
        "frame", "engine frames/s", "rtrb SPSC frames/s", "vs SPSC", "memcpy frames/s", "of memcpy"
    );
    for frame_size in [64, 1514, 9014] {
        let one_thread = spread(|| bench::engine_one_thread(frame_size, RUN_TIME));
        println!(
            "{:>6} one thread, both ends: {:.2}M frames/s ({:.0} ns per frame, send and receive)",
            frame_size,
            one_thread.median / 1e6,
            1e9 / one_thread.median
        );
    }
    for frame_size in [64, 1514, 9014] {
        let engine = spread(|| bench::engine(frame_size, RUN_TIME));
        let spsc = spread(|| bench::spsc(frame_size, RUN_TIME));
        let memcpy = spread(|| bench::memcpy(frame_size, RUN_TIME));
        let range = |s: Spread| {
            format!(
                "{:.2}M ({:.2}-{:.2})",
                s.median / 1e6,
                s.min / 1e6,
                s.max / 1e6
            )
        };
        println!(
            "{:>6} {:>28} {:>28} {:>7.0}% {:>28} {:>7.0}%",
            frame_size,
            range(engine),
            range(spsc),
            100.0 * engine.median / spsc.median,
            range(memcpy),
            100.0 * engine.median / memcpy.median
        );
    }
}
