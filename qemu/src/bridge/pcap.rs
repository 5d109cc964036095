//! A capture of the frames that cross the link, in the classic libpcap
//! format (linktype Ethernet, microsecond timestamps), readable by `tcpdump
//! -r` and Wireshark.
//!
//! The format is smoltcp's ([`PcapSink`]: global header, per-packet headers);
//! this module only decides where the bytes go and when they reach the
//! file: they are buffered, and [`Capture::flush`] (called by the bridge
//! after every wake-up and before it exits) writes them out, so the file
//! holds every frame up to the last wake-up whatever ends the process. A
//! write error (a full disk) stops the capture with one message instead of
//! the panic of smoltcp's own `Write` sink.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::time::Instant;

/// Where the bytes go: a buffered file that remembers its first error.
#[derive(Debug)]
struct Sink {
    writer: BufWriter<File>,
    error: Option<io::Error>,
}

impl PcapSink for Sink {
    fn write(&mut self, data: &[u8]) {
        if self.error.is_none()
            && let Err(e) = Write::write_all(&mut self.writer, data)
        {
            self.error = Some(e);
        }
    }

    /// smoltcp flushes after every packet; we flush once per wake-up
    /// instead ([`Capture::flush`]).
    fn flush(&mut self) {}
}

/// An open capture file.
#[derive(Debug)]
pub struct Capture {
    path: PathBuf,
    sink: Sink,
    frames: u64,
    reported: bool,
}

impl Capture {
    /// Creates (or truncates) `path` and writes the pcap global header.
    ///
    /// # Errors
    ///
    /// The file cannot be created or written.
    pub fn create(path: &Path) -> io::Result<Capture> {
        let file = File::create(path)?;
        let mut capture = Capture {
            path: path.to_path_buf(),
            sink: Sink {
                writer: BufWriter::with_capacity(1 << 16, file),
                error: None,
            },
            frames: 0,
            reported: false,
        };
        capture.sink.global_header(PcapLinkType::Ethernet);
        capture.flush()?;
        Ok(capture)
    }

    /// Records one frame with the current wall-clock time.
    pub fn record(&mut self, frame: &[u8]) {
        if self.sink.error.is_some() {
            return;
        }
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let timestamp = Instant::from_micros(since_epoch.as_micros() as i64);
        self.sink.packet(timestamp, frame);
        self.frames += 1;
    }

    /// Frames recorded.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the buffered frames to the file.
    ///
    /// # Errors
    ///
    /// The first write error; the capture then stops (and the error is
    /// returned once).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.sink.error.is_none()
            && let Err(e) = Write::flush(&mut self.sink.writer)
        {
            self.sink.error = Some(e);
        }
        match &self.sink.error {
            Some(e) if !self.reported => {
                self.reported = true;
                Err(io::Error::new(
                    e.kind(),
                    format!("capture to {} stopped: {e}", self.path.display()),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Length of the classic pcap global header.
const GLOBAL_HEADER: usize = 24;
/// Length of a record header.
const RECORD_HEADER: usize = 16;

/// Counts the whole records of a classic pcap file and cuts off a record
/// that a writer killed in the middle left unfinished (so that `tcpdump -r`
/// reads the file without a "truncated" error); returns the records.
///
/// # Errors
///
/// The file cannot be read or written, or has no pcap global header in
/// the host's byte order (smoltcp's format).
pub fn trim(path: &Path) -> io::Result<u64> {
    let bytes = std::fs::read(path)?;
    let magic = bytes
        .get(..4)
        .map(|m| u32::from_ne_bytes(m.try_into().expect("4 bytes")));
    if bytes.len() < GLOBAL_HEADER || !matches!(magic, Some(0xa1b2_c3d4 | 0xa1b2_3c4d)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a pcap file: no global header",
        ));
    }
    let mut at = GLOBAL_HEADER;
    let mut records = 0;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        let captured = u32::from_ne_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let end = at + RECORD_HEADER + captured;
        if end > bytes.len() {
            break;
        }
        at = end;
        records += 1;
    }
    if at < bytes.len() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(at as u64)?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_classic_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.pcap");
        let mut capture = Capture::create(&path).unwrap();
        capture.record(&[0xAB; 60]);
        capture.record(&[0xCD; 1514]);
        capture.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 1514);
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4, "magic: microseconds, host order");
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0], "version 2.4");
        assert_eq!(u32_at(20), 1, "linktype Ethernet");
        let seconds = u32_at(24);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now.as_secs().abs_diff(u64::from(seconds)) < 60);
        assert!(u32_at(28) < 1_000_000, "microseconds");
        assert_eq!((u32_at(32), u32_at(36)), (60, 60));
        assert_eq!(&bytes[40..100], &[0xAB; 60]);
        assert_eq!((u32_at(108), u32_at(112)), (1514, 1514));
        assert_eq!(&bytes[116..], &[0xCD; 1514]);
        assert_eq!(capture.frames(), 2);
        drop(capture);

        // A writer killed in the middle of the second record: trimmed.
        let whole = bytes.len() as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(whole - 100)
            .unwrap();
        assert_eq!(trim(&path).unwrap(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 16 + 60);
        assert_eq!(trim(&path).unwrap(), 1, "a whole file is left alone");
        std::fs::write(&path, b"not a capture, really not").unwrap();
        assert!(trim(&path).is_err());
    }
}
