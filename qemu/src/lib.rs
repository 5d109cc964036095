//! Host side of eth-ivshmem (placeholder).
