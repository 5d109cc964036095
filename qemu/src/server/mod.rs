//! ivshmem server (v1 and v2 protocols). Work in progress.
