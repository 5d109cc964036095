//! The `stats` app: the link's and the stack's counters since boot
//! ([`NetStatistics`](abi::report::NetStatistics)) and the current session
//! with the peer ([`PeerSession`](abi::report::PeerSession), `so far`),
//! two report lines. The kernel prints the same at the end of its apps.

use crate::kprintln;
use crate::net::device::NetDevice;
use crate::net::stack::Stack;

/// Prints the statistics and the session so far.
pub fn report_statistics<D: NetDevice>(stack: &mut Stack<D>) {
    let statistics = stack.statistics();
    kprintln!("{statistics}");
    let session = stack.session_so_far();
    kprintln!("{session}");
}

/// The app: prints and passes.
pub fn stats<D: NetDevice>(stack: &mut Stack<D>) -> bool {
    stack.poll();
    report_statistics(stack);
    true
}
