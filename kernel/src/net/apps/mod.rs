//! The network apps, one per module: the `ping`, `tcp-echo` and `udp-echo`
//! clients, `stats` and `fragment-flood` return whether they passed; the
//! echo `server` and the `link` watcher run until stopped. [`echo`] holds
//! what the echo apps share.

pub mod echo;
pub mod fragment_flood;
pub mod link;
pub mod ping;
pub mod server;
pub mod stats;
pub mod tcp_echo;
pub mod udp_echo;

pub use fragment_flood::fragment_flood;
pub use link::run_link;
pub use ping::ping;
pub use server::serve;
pub use stats::{report_statistics, stats};
pub use tcp_echo::tcp_echo;
pub use udp_echo::udp_echo;
