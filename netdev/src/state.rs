//! The ivshmem-net state values (docs/ivshmem-net.md §2.1).
#![forbid(unsafe_code)]

/// A value of the State register / state table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// 0: not initialised, or peer gone (the hypervisor writes it on reset).
    Reset,
    /// 1: driver present, wants to (re)initialise.
    Init,
    /// 2: own output section zeroed and rings initialised.
    Ready,
    /// 3: interface open and processing.
    Run,
    /// Any other value (never written by a conforming peer).
    Unknown(u32),
}

impl State {
    /// Decodes a state table entry.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Reset,
            1 => Self::Init,
            2 => Self::Ready,
            3 => Self::Run,
            other => Self::Unknown(other),
        }
    }

    /// The register value.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::Reset => 0,
            Self::Init => 1,
            Self::Ready => 2,
            Self::Run => 3,
            Self::Unknown(other) => other,
        }
    }
}

impl From<u32> for State {
    fn from(raw: u32) -> Self {
        Self::from_raw(raw)
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Reset => formatter.write_str("RESET"),
            Self::Init => formatter.write_str("INIT"),
            Self::Ready => formatter.write_str("READY"),
            Self::Run => formatter.write_str("RUN"),
            Self::Unknown(raw) => write!(formatter, "unknown ({raw:#x})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for raw in [0, 1, 2, 3, 4, 0xFFFF_FFFF] {
            assert_eq!(State::from_raw(raw).to_raw(), raw);
        }
        assert_eq!(State::from_raw(3), State::Run);
    }
}
