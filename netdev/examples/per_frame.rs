//! Moves a fixed number of frames between two engines on one thread, for
//! counting instructions per frame with `valgrind --tool=callgrind`, which
//! is repeatable where wall-clock benchmarks on a busy machine are not:
//!
//! ```sh
//! cargo build --release -p netdev --example per_frame
//! valgrind --tool=callgrind target/x86_64-unknown-linux-gnu/release/examples/per_frame 64 100000
//! ```
//!
//! Arguments: frame size (default 64), frames (default 100000).

fn main() {
    let mut arguments = std::env::args().skip(1);
    let frame_size = arguments
        .next()
        .map_or(64, |a| a.parse().expect("a frame size"));
    let frames = arguments
        .next()
        .map_or(100_000, |a| a.parse().expect("a frame count"));
    let sample = netdev_host::bench::engine_frames(frame_size, frames);
    println!("{} frames of {} bytes", sample.frames, sample.frame_size);
}
