//! The network apps, one per module: the `ping`, `tcp-echo` and `udp-echo`
//! clients, `stats` and `fragment-flood` return whether they passed; the
//! echo `server` and the `link` watcher run until stopped. [`echo`] holds what the echo apps share. The
//! measuring clients `tcp-send`, `tcp-recv` ([`oneway`]) and `udp-flood`
//! talk to the server's [`services`].

pub mod echo;
pub mod fragment_flood;
pub mod link;
pub mod oneway;
pub mod ping;
pub mod server;
pub mod services;
pub mod stats;
pub mod tcp_echo;
pub mod udp_echo;
pub mod udp_flood;

pub use fragment_flood::fragment_flood;
pub use link::run_link;
pub use oneway::{tcp_recv, tcp_send};
pub use ping::ping;
pub use server::serve;
pub use stats::{report_statistics, stats};
pub use tcp_echo::tcp_echo;
pub use udp_echo::udp_echo;
pub use udp_flood::udp_flood;
