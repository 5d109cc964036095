//! Issue 12: `cargo run -- bench` runs end to end on a tiny configuration
//! (every setup once, a few pings, small transfers) and prints its table.
//! The bench is not a timed test: only that every row has numbers is
//! judged, never their size.

use std::time::Duration;

use e2e::run_launcher;

#[test]
fn the_bench_prints_its_table_for_every_setup() {
    e2e::kernel();
    // The bench takes the VM lock itself (for the whole run).
    let run = run_launcher(
        &[
            "bench",
            "--runs",
            "1",
            "--pings",
            "3",
            "--bytes",
            "64K",
            "--datagrams",
            "200",
            "--echoes",
            "2",
            "--engine-millis",
            "20",
            "--engine-runs",
            "1",
        ],
        Duration::from_secs(240),
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    for needle in [
        "load before: ",
        "load after: ",
        "rtrb SPSC",
        "  1514 ",
        "ivshmem irq",
        "ivshmem poll",
        "virtio irq",
        "virtio poll",
        "first ping, ARP incl. (ms)",
        "ping RTT p99 (ms)",
        "TCP receive (Mbit/s)",
        "UDP 64 B (datagrams/s)",
        "ivshmem / virtio-net, irq: RTT p50 ×",
        "ivshmem / virtio-net, poll: RTT p50 ×",
        "TCP echo stalls, ivshmem irq: 0 of 2 rounds of 64K stalled",
        "TCP echo stalls, ivshmem poll: 0 of 2 rounds of 64K stalled",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?}\n{}", run.context());
    }
    assert!(
        !run.stdout.contains(" -  "),
        "every cell has a number\n{}",
        run.context()
    );
}
