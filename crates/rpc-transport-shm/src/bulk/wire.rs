//! What the bulk level puts in bytes: the descriptor that travels inside a
//! `BulkHandle`, and the request and reply on the owner's bulk socket.
//! Pure: no I/O, and every decoder checks lengths before reading.
//!
//! ```text
//! descriptor  version u8 = 1 | name_len u8 | name | id u64 | token [16] | len u64
//! request     op u8 = 1 | id u64 | token [16] | generation u64 (0: none held)
//! reply       status u8 | generation u64 | len u64     (+ one memfd if status = 2)
//! ```
//!
//! Integers are little-endian. `name` is the owner's bulk socket, in the
//! abstract namespace under `rpc-shm-bulk/`.

use crate::error::ShmError;

/// The descriptor format version.
const VERSION: u8 = 1;
/// The only request operation: "give me region `id`".
const OP_GET: u8 = 1;
/// The longest socket name a descriptor may carry.
pub(crate) const MAX_NAME_LEN: usize = 96;
/// The bytes of a request.
pub(crate) const REQUEST_LEN: usize = 33;
/// The bytes of a reply.
pub(crate) const REPLY_LEN: usize = 17;

/// A secret that proves a reader got the region's handle from its owner.
pub(crate) type Token = [u8; 16];

/// Where a registered region is, as its owner describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// The owner's bulk socket name.
    pub name: String,
    /// The region's id in the owner's engine.
    pub id: u64,
    /// The region's secret.
    pub token: Token,
    /// The region's length in bytes.
    pub len: u64,
}

impl Descriptor {
    /// The bytes that travel in the handle.
    pub(crate) fn encode(&self) -> Vec<u8> {
        debug_assert!(valid_name(&self.name));
        let mut out = Vec::with_capacity(34 + self.name.len());
        out.push(VERSION);
        // The name is one of ours, at most MAX_NAME_LEN bytes.
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Parses a descriptor a peer sent, which may be forged.
    pub(crate) fn decode(src: &[u8]) -> Result<Self, ShmError> {
        let bad = |why| move || ShmError::BulkDescriptor(why);
        let mut r = Reader(src);
        if r.u8().ok_or_else(bad("empty"))? != VERSION {
            return Err(bad("unknown version")());
        }
        let name_len = usize::from(r.u8().ok_or_else(bad("truncated"))?);
        let name = r.take(name_len).ok_or_else(bad("truncated name"))?;
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| valid_name(n))
            .ok_or_else(bad("invalid socket name"))?
            .to_owned();
        let id = r.u64().ok_or_else(bad("truncated id"))?;
        let token = r.array().ok_or_else(bad("truncated token"))?;
        let len = r.u64().ok_or_else(bad("truncated length"))?;
        if !r.0.is_empty() {
            return Err(bad("trailing bytes")());
        }
        if len == 0 {
            return Err(bad("empty region")());
        }
        Ok(Self {
            name,
            id,
            token,
            len,
        })
    }
}

/// Whether `name` can be a bulk socket name: what `fresh` names look like.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// A reader's request for a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The region's id.
    pub id: u64,
    /// The region's secret, from the descriptor.
    pub token: Token,
    /// The snapshot generation the reader has mapped, 0 for none.
    pub generation: u64,
}

impl Request {
    /// The bytes on the socket.
    pub(crate) fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0] = OP_GET;
        out[1..9].copy_from_slice(&self.id.to_le_bytes());
        out[9..25].copy_from_slice(&self.token);
        out[25..33].copy_from_slice(&self.generation.to_le_bytes());
        out
    }

    /// Parses a request; `None` for an unknown operation.
    pub(crate) fn decode(src: &[u8; REQUEST_LEN]) -> Option<Self> {
        let mut r = Reader(src);
        (r.u8()? == OP_GET).then_some(())?;
        Some(Self {
            id: r.u64()?,
            token: r.array()?,
            generation: r.u64()?,
        })
    }
}

/// The owner's answer to a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// No such region (never registered, deregistered, or a wrong token).
    Refused,
    /// The reader's mapping is the current snapshot.
    Current {
        /// The snapshot generation.
        generation: u64,
    },
    /// A new snapshot: its memfd comes with the reply.
    Fd {
        /// The snapshot generation.
        generation: u64,
        /// Its length in bytes.
        len: u64,
    },
}

impl Reply {
    /// The bytes on the socket.
    pub(crate) fn encode(&self) -> [u8; REPLY_LEN] {
        let (status, generation, len) = match *self {
            Self::Refused => (0u8, 0, 0),
            Self::Current { generation } => (1, generation, 0),
            Self::Fd { generation, len } => (2, generation, len),
        };
        let mut out = [0u8; REPLY_LEN];
        out[0] = status;
        out[1..9].copy_from_slice(&generation.to_le_bytes());
        out[9..17].copy_from_slice(&len.to_le_bytes());
        out
    }

    /// Parses a reply; `None` for an unknown status.
    pub(crate) fn decode(src: &[u8; REPLY_LEN]) -> Option<Self> {
        let mut r = Reader(src);
        let status = r.u8()?;
        let generation = r.u64()?;
        let len = r.u64()?;
        match status {
            0 => Some(Self::Refused),
            1 => Some(Self::Current { generation }),
            2 => Some(Self::Fd { generation, len }),
            _ => None,
        }
    }

    /// Whether a memfd comes with the reply.
    pub(crate) fn carries_fd(&self) -> bool {
        matches!(self, Self::Fd { .. })
    }
}

/// Reads fields off the front of a slice, `None` once it runs short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> Descriptor {
        Descriptor {
            name: "1-abc".into(),
            id: 7,
            token: [9; 16],
            len: 4096,
        }
    }

    #[track_caller]
    fn check(input: &[u8], expect: Result<Descriptor, &str>) {
        let got = Descriptor::decode(input).map_err(|e| match e {
            ShmError::BulkDescriptor(why) => why,
            other => panic!("unexpected error {other}"),
        });
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn descriptors_round_trip_and_forgeries_fail() {
        let good = desc().encode();
        assert_eq!(good.len(), 34 + 5);
        check(&good, Ok(desc()));
        check(&[], Err("empty"));
        check(&[2], Err("unknown version"));
        check(&[1], Err("truncated"));
        check(&[1, 200, b'a'], Err("truncated name"));
        check(&[1, 0], Err("invalid socket name"));
        check(&[1, 2, b'a', b'/'], Err("invalid socket name"));
        check(&[1, 2, 0xff, 0xfe], Err("invalid socket name"));
        check(&good[..good.len() - 1], Err("truncated length"));
        check(&good[..10], Err("truncated id"));
        check(&good[..20], Err("truncated token"));
        check(&[&good[..], &[0]].concat(), Err("trailing bytes"));
        let empty = Descriptor { len: 0, ..desc() }.encode();
        check(&empty, Err("empty region"));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let mut too_long = vec![1, long.len() as u8];
        too_long.extend_from_slice(long.as_bytes());
        too_long.extend_from_slice(&[0; 32]);
        check(&too_long, Err("invalid socket name"));
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let req = Request {
            id: u64::MAX,
            token: [3; 16],
            generation: 2,
        };
        assert_eq!(Request::decode(&req.encode()), Some(req));
        let mut bad = req.encode();
        bad[0] = 9;
        assert_eq!(Request::decode(&bad), None);
        for reply in [
            Reply::Refused,
            Reply::Current { generation: 5 },
            Reply::Fd {
                generation: 6,
                len: 1 << 40,
            },
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
        let mut bad = Reply::Refused.encode();
        bad[0] = 3;
        assert_eq!(Reply::decode(&bad), None);
    }
}
