//! The ivshmem-net protocol engine (placeholder; see issue 3).
#![no_std]
