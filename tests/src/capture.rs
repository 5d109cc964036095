//! Reading a pcap capture the way a user would: with `tcpdump -r`, its
//! output turned into the events the tests look for (ARP, ICMP echo, TCP
//! handshakes) in the order they crossed the link.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// The Debian package with `tcpdump`.
pub const TCPDUMP_PACKAGE: &str = "tcpdump";

/// One frame of interest, as `tcpdump -n` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `ARP, Request who-has TARGET tell SENDER`.
    ArpRequest {
        /// The address asked for.
        target: Ipv4Addr,
        /// Who asks.
        sender: Ipv4Addr,
    },
    /// `ARP, Reply SENDER is-at MAC`.
    ArpReply {
        /// Who answers.
        sender: Ipv4Addr,
    },
    /// `IP FROM > TO: ICMP echo request, id I, seq S`.
    EchoRequest {
        /// Source.
        from: Ipv4Addr,
        /// Destination.
        to: Ipv4Addr,
        /// Sequence number.
        seq: u16,
    },
    /// `IP FROM > TO: ICMP echo reply, id I, seq S`.
    EchoReply {
        /// Source.
        from: Ipv4Addr,
        /// Destination.
        to: Ipv4Addr,
        /// Sequence number.
        seq: u16,
    },
    /// `IP A.P > B.Q: Flags [F], …`.
    Tcp {
        /// Source address and port.
        from: (Ipv4Addr, u16),
        /// Destination address and port.
        to: (Ipv4Addr, u16),
        /// tcpdump's flags, e.g. `S`, `S.`, `.`, `P.`, `F.`.
        flags: TcpFlags,
    },
}

/// The flags field of a tcpdump TCP line, e.g. `S.` (at most 8 letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags([u8; 8]);

impl TcpFlags {
    /// The flags as tcpdump wrote them.
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(8);
        std::str::from_utf8(&self.0[..end]).unwrap_or("?")
    }

    fn new(text: &str) -> Option<TcpFlags> {
        let mut flags = [0u8; 8];
        if text.len() > 8 {
            return None;
        }
        flags[..text.len()].copy_from_slice(text.as_bytes());
        Some(TcpFlags(flags))
    }
}

/// `10.0.0.1.7` → (10.0.0.1, 7).
fn endpoint(text: &str) -> Option<(Ipv4Addr, u16)> {
    let text = text.trim_end_matches(':');
    let (address, port) = text.rsplit_once('.')?;
    Some((address.parse().ok()?, port.parse().ok()?))
}

impl Event {
    /// Reads one line of `tcpdump -n -r` (the timestamp first), or `None`
    /// for a frame of no interest (IPv6 neighbour discovery, …).
    pub fn parse(line: &str) -> Option<Event> {
        let (_, rest) = line.split_once(' ')?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let word = |i: usize| words.get(i).copied().unwrap_or("");
        if let Some(arp) = rest.strip_prefix("ARP, ") {
            // tcpdump names a non-zero target MAC in parentheses (smoltcp
            // asks with ff:ff:ff:ff:ff:ff, Linux with zeroes).
            let words: Vec<&str> = arp
                .split([' ', ','])
                .filter(|w| !w.is_empty() && !w.starts_with('('))
                .collect();
            return match words.as_slice() {
                ["Request", "who-has", target, "tell", sender, ..] => Some(Event::ArpRequest {
                    target: target.parse().ok()?,
                    sender: sender.parse().ok()?,
                }),
                ["Reply", sender, "is-at", ..] => Some(Event::ArpReply {
                    sender: sender.parse().ok()?,
                }),
                _ => None,
            };
        }
        if word(0) != "IP" || word(2) != ">" {
            return None;
        }
        if word(4) == "ICMP" && word(5) == "echo" {
            let seq = rest
                .split(", ")
                .find_map(|part| part.strip_prefix("seq "))?
                .parse()
                .ok()?;
            let from = word(1).parse().ok()?;
            let to = word(3).trim_end_matches(':').parse().ok()?;
            return match word(6).trim_end_matches(',') {
                "request" => Some(Event::EchoRequest { from, to, seq }),
                "reply" => Some(Event::EchoReply { from, to, seq }),
                _ => None,
            };
        }
        if word(4) == "Flags" {
            let flags = word(5)
                .trim_end_matches(',')
                .strip_prefix('[')?
                .strip_suffix(']')?;
            return Some(Event::Tcp {
                from: endpoint(word(1))?,
                to: endpoint(word(3))?,
                flags: TcpFlags::new(flags)?,
            });
        }
        None
    }
}

/// What `tcpdump -r` made of a file.
#[derive(Debug, Clone)]
pub struct Tcpdump {
    /// Its standard output, one line per frame.
    pub lines: Vec<String>,
    /// Its standard error (`reading from file …, link-type EN10MB …`).
    pub stderr: String,
}

impl Tcpdump {
    /// The events of interest, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lines.iter().filter_map(|l| Event::parse(l)).collect()
    }

    /// The lines, for messages.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Runs `tcpdump -n -r path` and checks that it read the whole file as an
/// Ethernet capture.
///
/// # Panics
///
/// `tcpdump` is missing (with the package to install), fails, or says the
/// file is truncated or not Ethernet.
pub fn tcpdump(path: &Path) -> Tcpdump {
    let output = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run tcpdump ({e}): install it (Debian package {TCPDUMP_PACKAGE}; .ci/run does)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        output.status.success() && !stderr.contains("truncated"),
        "tcpdump -r {} failed ({}): {stderr}\n{}",
        path.display(),
        output.status,
        lines.join("\n")
    );
    assert!(
        stderr.contains("link-type EN10MB (Ethernet)"),
        "not an Ethernet capture: {stderr}"
    );
    Tcpdump { lines, stderr }
}

/// One step of an expected exchange: whether an event is it.
type Step = Box<dyn Fn(&Event) -> bool>;

/// Asserts that the frames in `dump` hold, in this order: an ARP request from
/// `client` for `server` and its reply; `pings` echo requests from
/// `client` each followed by its reply (sequence numbers from
/// `first_seq`); then a TCP handshake from `client` to `server`'s `port`.
/// Other frames may come in between.
///
/// # Panics
///
/// With the missing step and the whole of `dump`.
pub fn assert_exchange(
    dump: &Tcpdump,
    client: Ipv4Addr,
    server: Ipv4Addr,
    pings: u16,
    first_seq: u16,
    port: u16,
) {
    let events = dump.events();
    let mut expected: Vec<(String, Step)> = vec![
        (
            format!("ARP request for {server} from {client}"),
            Box::new(move |e| {
                *e == Event::ArpRequest {
                    target: server,
                    sender: client,
                }
            }),
        ),
        (
            format!("ARP reply from {server}"),
            Box::new(move |e| *e == Event::ArpReply { sender: server }),
        ),
    ];
    for seq in first_seq..first_seq + pings {
        expected.push((
            format!("echo request {seq} from {client}"),
            Box::new(move |e| {
                *e == Event::EchoRequest {
                    from: client,
                    to: server,
                    seq,
                }
            }),
        ));
        expected.push((
            format!("echo reply {seq} from {server}"),
            Box::new(move |e| {
                *e == Event::EchoReply {
                    from: server,
                    to: client,
                    seq,
                }
            }),
        ));
    }
    let tcp = move |from_client: bool, want: &'static str| {
        move |e: &Event| match e {
            Event::Tcp { from, to, flags } => {
                let (c, s) = if from_client { (from, to) } else { (to, from) };
                c.0 == client && *s == (server, port) && flags.as_str() == want
            }
            _ => false,
        }
    };
    expected.push(("TCP SYN".into(), Box::new(tcp(true, "S"))));
    expected.push(("TCP SYN-ACK".into(), Box::new(tcp(false, "S."))));
    expected.push(("TCP ACK of the handshake".into(), Box::new(tcp(true, "."))));
    let mut at = 0;
    for (what, matches) in &expected {
        match events[at..].iter().position(matches) {
            Some(found) => at += found + 1,
            None => panic!(
                "the capture lacks {what} after event {at} of {}:\n{}",
                events.len(),
                dump.text()
            ),
        }
    }
}
