//! The network on top of an ivshmem device: the ivshmem-net link ([`link`],
//! through the netdev engine and its [`adapter`]), the middleware smoltcp
//! sees ([`port`], with [`reassembly`] and [`peer`]), smoltcp on top of it
//! ([`stack`], with [`announce`]), the network apps ([`apps`]), and a pcap capture of the
//! link's frames on COM2 when asked for ([`capture`]).

pub mod adapter;
pub mod announce;
pub mod apps;
pub mod capture;
pub mod device;
pub mod link;
pub mod peer;
pub mod port;
pub mod reassembly;
pub mod stack;

pub use link::{LinkEngine, REQUIREMENTS, open};
