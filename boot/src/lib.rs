//! PVH entry (placeholder).
#![no_std]
