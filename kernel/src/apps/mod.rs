//! Apps that run on the ivshmem device itself, whatever protocol it
//! carries (the network apps, which need ivshmem-net, are in
//! `crate::net::apps`).

pub mod ivshmem;
