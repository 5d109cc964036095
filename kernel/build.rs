//! Link the two kernel binaries as freestanding static ELFs (docs/toolchain.md
//! §5.1, variant B): `kernel` at 1 MiB for QEMU's PVH loader with
//! `boot/linker.ld`, `kernel-cell` at 0 for a Jailhouse cell with
//! `boot/jailhouse.ld` (docs/jailhouse.md §2).
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let boot = std::path::Path::new(&manifest).join("../boot");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-n",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    for (bin, script) in [("kernel", "linker.ld"), ("kernel-cell", "jailhouse.ld")] {
        let script = boot.join(script);
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,-T,{}", script.display());
    }
}
