//! The network on top of an ivshmem device: the ivshmem-net link ([`link`],
//! through the netdev engine and its [`adapter`]), smoltcp on top of it
//! ([`stack`]) and the network apps ([`apps`]).

pub mod adapter;
pub mod apps;
pub mod device;
pub mod link;
pub mod stack;

pub use link::{LinkEngine, REQUIREMENTS, open};
