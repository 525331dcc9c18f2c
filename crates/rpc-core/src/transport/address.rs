//! Transport addresses written as URIs.

use std::fmt;
use std::str::FromStr;

use crate::error::TransportError;

/// An address such as `tcp://127.0.0.1:4000`, `tcp://[::1]:0`,
/// `tcp://node7.cluster:4000` or `mem://server`.
///
/// An address written without a scheme (`127.0.0.1:4000`) means TCP, as in
/// moolib.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    scheme_len: usize,
}

impl Address {
    /// Parses an address. The scheme must be non-empty lowercase ASCII
    /// letters, digits or `+-.`, and the rest must be non-empty.
    pub fn parse(s: &str) -> Result<Self, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidAddress {
            addr: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("tcp", s),
        };
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        {
            return Err(invalid(
                "the scheme must be lowercase letters, digits or +-.",
            ));
        }
        if rest.is_empty() {
            return Err(invalid("nothing follows the scheme"));
        }
        if rest.chars().any(char::is_whitespace) {
            return Err(invalid("addresses contain no white space"));
        }
        Ok(Self {
            full: format!("{scheme}://{rest}"),
            scheme_len: scheme.len(),
        })
    }

    /// The scheme, such as `"tcp"`.
    pub fn scheme(&self) -> &str {
        &self.full[..self.scheme_len]
    }

    /// What follows `scheme://`, such as `"127.0.0.1:4000"`.
    pub fn rest(&self) -> &str {
        &self.full[self.scheme_len + 3..]
    }

    /// The whole address as a string.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.full)
    }
}

impl FromStr for Address {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<(&str, &str)>) {
        let got = Address::parse(input).ok();
        let got = got.as_ref().map(|a| (a.scheme(), a.rest()));
        assert_eq!(got, expect, "parsing {input:?}");
    }

    #[test]
    fn parses() {
        check("tcp://127.0.0.1:0", Some(("tcp", "127.0.0.1:0")));
        check("127.0.0.1:1234", Some(("tcp", "127.0.0.1:1234")));
        check("tcp://[::1]:80", Some(("tcp", "[::1]:80")));
        check("mem://server", Some(("mem", "server")));
        check("shm://a/b", Some(("shm", "a/b")));
        check("tcp://", None);
        check("://x", None);
        check("TCP://x", None);
        check("tcp://a b", None);
        check("", None);
    }

    #[test]
    fn display_round_trips() {
        let a = Address::parse("127.0.0.1:9").unwrap();
        assert_eq!(a.to_string(), "tcp://127.0.0.1:9");
        assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
    }
}
