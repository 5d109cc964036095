//! Helpers shared by the launcher's integration tests: a tiny generated PVH
//! kernel to boot instead of the real one, and child processes that die with
//! the test.
#![allow(dead_code, reason = "each test binary uses a part of the helpers")]

use std::io::Read;
use std::process::Child;
use std::thread::JoinHandle;

/// A launcher child that is killed and reaped if the test panics.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `pipe` to its end on a thread; the handle yields the text.
pub fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Files under /dev/shm that the launcher with `pid` made, for a `tag`
/// (`eth-ivshmem-<tag>-<pid>-…`) or any (an empty tag).
pub fn leftovers(pid: u32, tag: &str) -> Vec<String> {
    let marker = format!("-{pid}-");
    let prefix = format!("eth-ivshmem-{tag}");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix) && name.contains(&marker))
                .collect()
        })
        .unwrap_or_default()
}

/// A tiny PVH kernel generated in memory, for testing the launcher without
/// the real kernel: it writes a message to COM1 and leaves through
/// `isa-debug-exit` with a chosen value.
/// Builds a 32-bit ELF with a PVH entry note (`XEN_ELFNOTE_PHYS32_ENTRY`)
/// that prints `message` on COM1 (port 0x3f8) and then, if `exit_value` is
/// given, writes it to port 0xf4, so QEMU exits with `(exit_value << 1) | 1`
/// (0x10 → 33); otherwise it halts for ever (interrupts are off).
pub fn pvh_elf(message: &str, exit_value: Option<u32>) -> Vec<u8> {
    const BASE: u32 = 0x10_0000;
    const EHDR: usize = 52;
    const PHDR: usize = 32;
    const NOTE: usize = 20;
    let code_offset = EHDR + 2 * PHDR + NOTE;
    let entry = BASE + code_offset as u32;

    let mut code = Vec::new();
    code.extend_from_slice(&[0x66, 0xBA, 0xF8, 0x03]); // mov $0x3f8, %dx
    for byte in message.bytes() {
        code.extend_from_slice(&[0xB0, byte, 0xEE]); // mov $byte, %al; out %al, %dx
    }
    if let Some(exit_value) = exit_value {
        code.push(0xB8); // mov $exit_value, %eax
        code.extend_from_slice(&exit_value.to_le_bytes());
        code.extend_from_slice(&[0x66, 0xBA, 0xF4, 0x00]); // mov $0xf4, %dx
        code.push(0xEF); // out %eax, %dx
    }
    code.extend_from_slice(&[0xF4, 0xEB, 0xFD]); // 1: hlt; jmp 1b

    let total = (code_offset + code.len()) as u32;
    let mut elf = Vec::new();
    let u16le = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    // ELF header: ELFCLASS32, little-endian, version 1, ET_EXEC, EM_386.
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 1, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    u16le(&mut elf, 2); // e_type
    u16le(&mut elf, 3); // e_machine
    u32le(&mut elf, 1); // e_version
    u32le(&mut elf, entry); // e_entry
    u32le(&mut elf, EHDR as u32); // e_phoff
    u32le(&mut elf, 0); // e_shoff
    u32le(&mut elf, 0); // e_flags
    u16le(&mut elf, EHDR as u16); // e_ehsize
    u16le(&mut elf, PHDR as u16); // e_phentsize
    u16le(&mut elf, 2); // e_phnum
    u16le(&mut elf, 40); // e_shentsize
    u16le(&mut elf, 0); // e_shnum
    u16le(&mut elf, 0); // e_shstrndx
    // PT_LOAD: the whole file at BASE, R+X.
    for v in [1, 0, BASE, BASE, total, total, 5, 0x1000] {
        u32le(&mut elf, v);
    }
    // PT_NOTE.
    let note_offset = (EHDR + 2 * PHDR) as u32;
    for v in [
        4,
        note_offset,
        BASE + note_offset,
        BASE + note_offset,
        NOTE as u32,
        NOTE as u32,
        4,
        4,
    ] {
        u32le(&mut elf, v);
    }
    // Note: namesz 4, descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", entry.
    for v in [4, 4, 18] {
        u32le(&mut elf, v);
    }
    elf.extend_from_slice(b"Xen\0");
    u32le(&mut elf, entry);
    debug_assert_eq!(elf.len(), code_offset);
    elf.extend_from_slice(&code);
    elf
}
