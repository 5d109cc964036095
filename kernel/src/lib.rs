//! The eth-ivshmem unikernel (placeholder).
#![no_std]
