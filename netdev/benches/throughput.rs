//! Moves frames between two engines on two threads over real shared memory
//! and prints frames/s and Gbit/s for 64, 1514 and 9014-byte frames, next
//! to the single-thread memcpy bandwidth measured in the same run.
//!
//! `cargo bench -p netdev` (harness = false). Each size runs for about a
//! second; the sender copies each frame into its section (`send`), the
//! receiver copies it out (`receive`), as smoltcp would.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use netdev::{Config, Engine};
use netdev_host::host::HostLink;
use netdev_host::now;

const SECTION_SIZE: usize = 0x7F000; // the Jailhouse NET macro size
const RUN_TIME: Duration = Duration::from_secs(1);

fn engine(
    link: &HostLink,
    id: u16,
) -> Engine<
    netdev_host::host::HostRegion,
    netdev_host::host::HostRegionMut,
    netdev_host::host::HostNotifier,
> {
    let (sections, notifier) = link.endpoint(id).unwrap();
    let mut config = Config::new(id, 2, [0x02, 0, 0, 0, 0, id as u8]);
    config.mtu = 9000;
    Engine::new(config, sections, notifier).unwrap()
}

/// Returns (frames, seconds).
fn run(frame_size: usize) -> (u64, f64) {
    let link = HostLink::new(SECTION_SIZE);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let link = link.clone();
        let total = Arc::clone(&total);
        thread::spawn(move || {
            let mut engine = engine(&link, 1);
            while !engine.poll(now()) {
                link.doorbell(1).wait(Duration::from_millis(1));
            }
            let mut buffer = vec![0u8; 16 * 1024];
            let mut received = 0u64;
            let mut idle = 0u32;
            while received < total.load(Ordering::Acquire) {
                match engine.receive(&mut buffer) {
                    Ok(Some(length)) => {
                        assert_eq!(length, frame_size);
                        let sequence = u64::from_le_bytes(buffer[..8].try_into().unwrap());
                        assert_eq!(sequence, received, "in order");
                        received += 1;
                        idle = 0;
                    }
                    _ => {
                        idle += 1;
                        if idle > 64 {
                            engine.poll(now());
                        }
                        std::hint::spin_loop();
                    }
                }
            }
            // Let the sender see the last completions.
            for _ in 0..1000 {
                engine.poll(now());
            }
            received
        })
    };
    let mut engine = engine(&link, 0);
    while !engine.poll(now()) {
        link.doorbell(0).wait(Duration::from_millis(1));
    }
    let mut frame = vec![0x5Au8; frame_size];
    let mut sent = 0u64;
    let started = Instant::now();
    let stopper = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(RUN_TIME);
            stop.store(true, Ordering::Relaxed);
        })
    };
    while !stop.load(Ordering::Relaxed) {
        frame[..8].copy_from_slice(&sent.to_le_bytes());
        if engine.send(&frame).is_ok() {
            sent += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    total.store(sent, Ordering::Release);
    let received = receiver.join().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    stopper.join().unwrap();
    assert_eq!(received, sent);
    assert_eq!(engine.statistics().protocol_errors.total(), 0);
    (sent, seconds)
}

/// Single-thread memcpy bandwidth in Gbit/s over buffers larger than the
/// caches.
fn memcpy_gbits() -> f64 {
    let size = 64 * 1024 * 1024;
    let source = vec![0xA5u8; size];
    let mut destination = vec![0u8; size];
    destination.copy_from_slice(&source); // fault the pages in
    let started = Instant::now();
    let mut bytes = 0u64;
    while started.elapsed() < RUN_TIME {
        destination.copy_from_slice(black_box(&source));
        black_box(&mut destination);
        bytes += size as u64;
    }
    bytes as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore arguments.
    let memcpy = memcpy_gbits();
    println!("ivshmem-net engine, two threads, section {SECTION_SIZE:#x} bytes");
    println!(
        "{:>10} {:>14} {:>10} {:>14}",
        "frame", "frames/s", "Gbit/s", "of memcpy"
    );
    for frame_size in [64, 1514, 9014] {
        let (frames, seconds) = run(frame_size);
        let rate = frames as f64 / seconds;
        let gbits = rate * frame_size as f64 * 8.0 / 1e9;
        println!(
            "{:>10} {:>14.0} {:>10.2} {:>13.1}%",
            frame_size,
            rate,
            gbits,
            100.0 * gbits / memcpy
        );
    }
    println!("{:>10} {:>14} {:>10.2}", "memcpy", "-", memcpy);
}
