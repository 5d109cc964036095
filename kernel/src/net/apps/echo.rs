//! What the echo apps share: the byte stream the TCP and UDP echo clients
//! send and verify, the TCP socket both ends use, and how long an echo may
//! take.

use alloc::vec;
use smoltcp::socket::tcp;

/// TCP send buffers: large enough for window scaling to matter.
const TCP_SEND_BUFFER: usize = 256 * 1024;
/// TCP receive buffers: twice the peer's send buffer, so that the peer's
/// whole send buffer in flight cannot fill our window before the app reads.
///
/// smoltcp advertises its window right-shifted by the window scale, rounded
/// down (`rx_buffer.window() >> shift`, and at most 65535 << shift), so the
/// right edge it advertises can move back by up to 2^shift - 1 bytes when
/// a segment whose length is not a multiple of 2^shift arrives. A sender
/// that has just filled the previous edge then has its last few bytes cut
/// off by the receiver; its zero-window probe goes out after them (they
/// count as in flight), the receiver holds a hole too small to draw three
/// duplicate ACKs, and only smoltcp's retransmission timeout repairs it:
/// 1 s, then 2 s, 4 s (`RTTE_MIN_RTO`, doubling). That was the TCP echo
/// stall of issue 12. It can only happen while the window is what limits
/// the sender, so we keep it from limiting: receive buffers larger than
/// what the peer can have in flight, and apps that read everything at once
/// (the echo server keeps its own backlog rather than leaving data in the
/// socket while its send buffer is full).
const TCP_RECEIVE_BUFFER: usize = 2 * TCP_SEND_BUFFER;
/// How long a ping reply or an echoed datagram may take to come back.
pub const REPLY_TIMEOUT_MICROS: u64 = 2_000_000;

/// The 8 stream bytes at offset `8 * word` of connection `connection`: cheap,
/// and not periodic over anything a TCP window could hide.
fn pattern_word(connection: u32, word: u64) -> u64 {
    let mixed = (word ^ u64::from(connection).wrapping_mul(0xd6e8_feb8_6659_fd93))
        .wrapping_add(0x632b_e59b_d9b4_e019);
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (mixed >> 31)
}

/// The byte at `offset` of connection `connection`'s stream.
pub fn pattern(connection: u32, offset: u64) -> u8 {
    (pattern_word(connection, offset / 8) >> (8 * (offset % 8))) as u8
}

/// Splits `length` stream bytes starting at `offset` into a head (up to the
/// next 8-byte boundary), whole words, and a tail: returns (head, words end).
fn word_span(offset: u64, length: usize) -> (usize, usize) {
    let head = (((8 - offset % 8) % 8) as usize).min(length);
    (head, head + (length - head) / 8 * 8)
}

/// Fills `buffer` with the stream bytes starting at `offset`, a word at a time.
pub fn fill_pattern(connection: u32, offset: u64, buffer: &mut [u8]) {
    let (head, words_end) = word_span(offset, buffer.len());
    let first_word = (offset + head as u64) / 8;
    for (index, word) in buffer[head..words_end].chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&pattern_word(connection, first_word + index as u64).to_le_bytes());
    }
    for (index, byte) in buffer[..head].iter_mut().enumerate() {
        *byte = pattern(connection, offset + index as u64);
    }
    for (index, byte) in buffer.iter_mut().enumerate().skip(words_end) {
        *byte = pattern(connection, offset + index as u64);
    }
}

/// The index of the first byte of `buffer` that is not the stream byte at
/// `offset + index`, checking a word at a time.
pub fn first_mismatch(connection: u32, offset: u64, buffer: &[u8]) -> Option<usize> {
    let (head, words_end) = word_span(offset, buffer.len());
    let byte_mismatch = |index: usize| buffer[index] != pattern(connection, offset + index as u64);
    if let Some(index) = (0..head).find(|&index| byte_mismatch(index)) {
        return Some(index);
    }
    let first_word = (offset + head as u64) / 8;
    for (number, word) in buffer[head..words_end].chunks_exact(8).enumerate() {
        let expected = pattern_word(connection, first_word + number as u64);
        if u64::from_le_bytes(word.try_into().expect("chunks of 8")) != expected {
            let start = head + 8 * number;
            return (start..start + 8).find(|&index| byte_mismatch(index));
        }
    }
    (words_end..buffer.len()).find(|&index| byte_mismatch(index))
}

/// Queues up to `length` bytes of connection `connection`'s stream, from
/// `offset` on, written straight into `socket`'s send buffer; returns how
/// many (0 if the buffer is full or the socket cannot send).
pub fn send_stream(
    socket: &mut tcp::Socket<'_>,
    connection: u32,
    offset: u64,
    length: u64,
) -> usize {
    socket
        .send(|buffer| {
            let size = buffer.len().min(length.min(usize::MAX as u64) as usize);
            fill_pattern(connection, offset, &mut buffer[..size]);
            (size, size)
        })
        .unwrap_or(0)
}

/// Takes what `socket` received, checking it in place against connection
/// `connection`'s stream from `offset` on: the bytes taken, or the position
/// and value of the first wrong byte (nothing is taken then).
pub fn receive_stream(
    socket: &mut tcp::Socket<'_>,
    connection: u32,
    offset: u64,
) -> Result<usize, (u64, u8)> {
    socket
        .recv(|data| match first_mismatch(connection, offset, data) {
            None => (data.len(), Ok(data.len())),
            Some(index) => (0, Err((offset + index as u64, data[index]))),
        })
        .unwrap_or(Ok(0))
}

/// A TCP socket for the echo apps. Shared memory neither loses nor reorders
/// frames, so ACKs go out at once (no 10 ms delayed ACK) and small segments
/// are not held back (no Nagle): both only cost latency here.
pub fn tcp_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_RECEIVE_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_SEND_BUFFER]),
    );
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    socket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fill_and_check_agree_with_the_byte_pattern_at_every_alignment() {
        for offset in 0..20u64 {
            for length in [0usize, 1, 7, 8, 9, 31, 64, 100] {
                let mut buffer = vec![0u8; length];
                fill_pattern(3, offset, &mut buffer);
                for (index, byte) in buffer.iter().enumerate() {
                    assert_eq!(
                        *byte,
                        pattern(3, offset + index as u64),
                        "offset {offset} length {length} index {index}"
                    );
                }
                assert_eq!(first_mismatch(3, offset, &buffer), None);
                for corrupt in 0..length {
                    let mut bad = buffer.clone();
                    bad[corrupt] ^= 0x40;
                    assert_eq!(first_mismatch(3, offset, &bad), Some(corrupt));
                }
                if length >= 8 {
                    assert_ne!(
                        first_mismatch(4, offset, &buffer),
                        None,
                        "another connection's stream differs"
                    );
                }
            }
        }
    }
}
