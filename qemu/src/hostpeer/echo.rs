//! TCP and UDP echo with Linux's stack on our side (Rust `std` sockets):
//! a client that sends a pattern through a VM's echo server and checks
//! every byte, and an echo server for the VM's own clients.
//!
//! Sockets belong to the namespace they are made in, so call
//! [`tcp_echo_client`] and [`EchoServer::start`] from a thread inside a
//! [`super::Namespace`] (e.g. through [`super::Namespace::run`]); the
//! threads they start carry on in that namespace.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The echo port of the kernel's `server` app and of [`EchoServer`].
pub const ECHO_PORT: u16 = 7;

/// How long the server's threads may sleep before they look at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The byte at `offset` of the client's stream (a pattern that no shifted
/// or repeated copy matches for long).
pub fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(131) ^ (offset >> 12)) as u8
}

/// A TCP echo that went through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpEcho {
    /// Bytes sent, echoed and checked.
    pub bytes: u64,
    /// From the connection's setup to the last byte echoed.
    pub elapsed: Duration,
}

impl TcpEcho {
    /// Bytes echoed per second, in Mbit/s (each byte crosses the link twice).
    pub fn mbits(&self) -> f64 {
        mbits(self.bytes, self.elapsed)
    }
}

/// `bytes` in `elapsed`, in Mbit/s.
pub fn mbits(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

/// Connects to `target`, sends `bytes` of [`pattern`] from a second thread
/// while reading the echo back, and checks every byte. `idle` bounds the
/// connection's setup and every wait for progress.
///
/// # Errors
///
/// No connection, a stall longer than `idle`, the peer closing early, or a
/// byte that differs (with its offset).
pub fn tcp_echo_client(target: SocketAddr, bytes: u64, idle: Duration) -> anyhow::Result<TcpEcho> {
    let mut stream = TcpStream::connect_timeout(&target, idle)
        .with_context(|| format!("cannot connect to {target}"))?;
    let started = Instant::now();
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    let mut writer = stream.try_clone()?;
    let sender =
        thread::Builder::new()
            .name("tcp-echo-send".into())
            .spawn(move || -> io::Result<()> {
                let mut chunk = vec![0u8; 64 << 10];
                let mut offset = 0u64;
                while offset < bytes {
                    let length = (bytes - offset).min(chunk.len() as u64) as usize;
                    for (i, byte) in chunk[..length].iter_mut().enumerate() {
                        *byte = pattern(offset + i as u64);
                    }
                    writer.write_all(&chunk[..length])?;
                    offset += length as u64;
                }
                Ok(())
            })?;
    let mut buffer = vec![0u8; 64 << 10];
    let mut received = 0u64;
    let result = (|| -> anyhow::Result<()> {
        while received < bytes {
            let length = match stream.read(&mut buffer) {
                Ok(0) => bail!("{target} closed the connection after {received} of {bytes} bytes"),
                Ok(length) => length,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("no echo from {target} after {received} of {bytes} bytes")
                    });
                }
            };
            let length = length.min((bytes - received) as usize);
            if let Some(at) = (0..length).find(|&i| buffer[i] != pattern(received + i as u64)) {
                bail!(
                    "byte {} of the echo from {target} is {:#04x}, sent {:#04x}",
                    received + at as u64,
                    buffer[at],
                    pattern(received + at as u64)
                );
            }
            received += length as u64;
        }
        Ok(())
    })();
    let elapsed = started.elapsed();
    // Unblocks the sender if the reader gave up.
    let _ = stream.shutdown(Shutdown::Both);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?;
    result?;
    sent.with_context(|| format!("cannot send to {target}"))?;
    Ok(TcpEcho { bytes, elapsed })
}

/// The TCP discard service of the kernel's `server` app (its `tcp-send`
/// writes into it).
pub const DISCARD_PORT: u16 = 9;
/// The TCP source service of the kernel's `server` app: it sends as many
/// stream bytes as the first 8 bytes (little-endian) ask for, then closes.
pub const SOURCE_PORT: u16 = 19;

/// Sends `bytes` to the discard service at `target`, then waits for the
/// service to close after our FIN (it closes once it has taken every byte
/// before it): the time from the connection to that close.
///
/// # Errors
///
/// No connection, a stall longer than `idle`, data coming back.
pub fn tcp_send(target: SocketAddr, bytes: u64, idle: Duration) -> anyhow::Result<Duration> {
    let mut stream = TcpStream::connect_timeout(&target, idle)
        .with_context(|| format!("cannot connect to {target}"))?;
    let started = Instant::now();
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    let chunk: Vec<u8> = (0..64u64 << 10).map(pattern).collect();
    let mut sent = 0u64;
    while sent < bytes {
        let length = (bytes - sent).min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..length])
            .with_context(|| format!("cannot send to {target} after {sent} of {bytes} bytes"))?;
        sent += length as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Ok(started.elapsed()),
        Ok(_) => bail!("the discard service at {target} sent data"),
        Err(e) => Err(e).with_context(|| format!("{target} did not close after {bytes} bytes")),
    }
}

/// The byte at `offset` of the kernel's stream (its `fill_pattern` with
/// connection 0, as the source service sends it).
pub fn kernel_stream(offset: u64) -> u8 {
    let mixed = (offset / 8).wrapping_add(0x632b_e59b_d9b4_e019);
    let word = mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (mixed >> 31);
    (word >> (8 * (offset % 8))) as u8
}

/// Asks the source service at `target` for `bytes` and reads them to the
/// service's close, checking every byte: the time from the connection to
/// the close.
///
/// # Errors
///
/// No connection, a stall longer than `idle`, a wrong byte or count.
pub fn tcp_receive(target: SocketAddr, bytes: u64, idle: Duration) -> anyhow::Result<Duration> {
    let mut stream = TcpStream::connect_timeout(&target, idle)
        .with_context(|| format!("cannot connect to {target}"))?;
    let started = Instant::now();
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    stream.write_all(&bytes.to_le_bytes())?;
    let mut buffer = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        let length = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(length) => length,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{target} stalled after {received} of {bytes} bytes")
                });
            }
        };
        if let Some(at) = (0..length).find(|&i| buffer[i] != kernel_stream(received + i as u64)) {
            bail!(
                "byte {} from {target} is {:#04x}, not {:#04x}",
                received + at as u64,
                buffer[at],
                kernel_stream(received + at as u64)
            );
        }
        received += length as u64;
    }
    if received != bytes {
        bail!("{target} sent {received} bytes, asked for {bytes}");
    }
    Ok(started.elapsed())
}

/// One TCP connection an [`EchoServer`] served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The client.
    pub peer: SocketAddr,
    /// Bytes echoed.
    pub bytes: u64,
    /// From the first byte received to the last byte echoed.
    pub active: Duration,
}

/// What an [`EchoServer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoStatistics {
    /// TCP connections, closed or not.
    pub connections: Vec<Served>,
    /// UDP datagrams echoed.
    pub datagrams: u64,
}

/// TCP and UDP echo on one address and port, until stopped.
#[derive(Debug)]
pub struct EchoServer {
    port: u16,
    stop: Arc<AtomicBool>,
    statistics: Arc<Mutex<EchoStatistics>>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds TCP and UDP on `address` (in the calling thread's namespace)
    /// and serves in background threads.
    ///
    /// # Errors
    ///
    /// The port is taken (or below 1024 without root).
    pub fn start(address: SocketAddr) -> io::Result<EchoServer> {
        let listener = TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let udp = UdpSocket::bind((address.ip(), port))?;
        udp.set_read_timeout(Some(STOP_CHECK))?;
        let stop = Arc::new(AtomicBool::new(false));
        let statistics = Arc::new(Mutex::new(EchoStatistics::default()));
        let mut threads = Vec::new();
        {
            let (stop, statistics) = (Arc::clone(&stop), Arc::clone(&statistics));
            threads.push(
                thread::Builder::new()
                    .name("echo-tcp".into())
                    .spawn(move || accept(listener, &stop, &statistics))?,
            );
        }
        {
            let (stop, statistics) = (Arc::clone(&stop), Arc::clone(&statistics));
            threads.push(
                thread::Builder::new()
                    .name("echo-udp".into())
                    .spawn(move || {
                        let mut buffer = vec![0u8; 65536];
                        while !stop.load(Ordering::Relaxed) {
                            if let Ok((length, from)) = udp.recv_from(&mut buffer)
                                && udp.send_to(&buffer[..length], from).is_ok()
                            {
                                lock(&statistics).datagrams += 1;
                            }
                        }
                    })?,
            );
        }
        Ok(EchoServer {
            port,
            stop,
            statistics,
            threads,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it did so far.
    pub fn statistics(&self) -> EchoStatistics {
        lock(&self.statistics).clone()
    }

    /// Stops serving (open connections are closed) and returns what it did.
    pub fn stop(mut self) -> EchoStatistics {
        self.shut_down();
        self.statistics()
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn lock(statistics: &Mutex<EchoStatistics>) -> std::sync::MutexGuard<'_, EchoStatistics> {
    statistics.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections until stopped; each is echoed on a thread of its own.
fn accept(listener: TcpListener, stop: &Arc<AtomicBool>, statistics: &Arc<Mutex<EchoStatistics>>) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (stop, statistics) = (Arc::clone(stop), Arc::clone(statistics));
                let index = {
                    let mut statistics = lock(&statistics);
                    statistics.connections.push(Served {
                        peer,
                        bytes: 0,
                        active: Duration::ZERO,
                    });
                    statistics.connections.len() - 1
                };
                connections.push(thread::spawn(move || {
                    echo(stream, &stop, |bytes, active| {
                        let served = &mut lock(&statistics).connections[index];
                        served.bytes = bytes;
                        served.active = active;
                    });
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(STOP_CHECK),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Echoes one connection until the client closes it or the server stops,
/// reporting progress as `(bytes, time since the first byte)`.
fn echo(mut stream: TcpStream, stop: &AtomicBool, mut progress: impl FnMut(u64, Duration)) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(STOP_CHECK)).is_err()
    {
        return;
    }
    let mut buffer = vec![0u8; 64 << 10];
    let mut bytes = 0u64;
    let mut first = None;
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(length) => {
                let first = *first.get_or_insert_with(Instant::now);
                if stream.write_all(&buffer[..length]).is_err() {
                    break;
                }
                bytes += length as u64;
                progress(bytes, first.elapsed());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_over_loopback() {
        // Port 0: TCP picks one, UDP takes the same number.
        let server = EchoServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let target: SocketAddr = ([127, 0, 0, 1], server.port()).into();
        let echo = tcp_echo_client(target, 3 << 20, Duration::from_secs(10)).unwrap();
        assert_eq!(echo.bytes, 3 << 20);
        assert!(echo.mbits() > 0.0);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        udp.send_to(b"ping", target).unwrap();
        let mut buffer = [0u8; 16];
        let (length, _) = udp.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"ping");
        let statistics = server.stop();
        assert_eq!(statistics.datagrams, 1);
        assert_eq!(statistics.connections.len(), 1);
        assert_eq!(statistics.connections[0].bytes, 3 << 20);
        // Nobody listens now.
        assert!(tcp_echo_client(target, 1, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_pattern_does_not_repeat_soon() {
        let first: Vec<u8> = (0..4096).map(pattern).collect();
        for shift in 1..512 {
            let shifted: Vec<u8> = (shift..shift + 4096).map(pattern).collect();
            assert_ne!(first, shifted, "shift {shift}");
        }
    }
}
