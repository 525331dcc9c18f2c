//! `tcp://` addresses: parsing, resolving and formatting.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rpc_core::TransportError;
use rpc_core::transport::Address;

/// The host and port of a `tcp://` address, before resolution.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// A literal IP address.
    Ip(SocketAddr),
    /// A host name to resolve.
    Host(&'a str, u16),
}

/// Parses `tcp://HOST:PORT`, where HOST is an IPv4 address, an IPv6 address
/// in brackets, or a host name.
pub(crate) fn parse(addr: &Address) -> Result<Target<'_>, TransportError> {
    let invalid = |reason: &str| TransportError::InvalidAddress {
        addr: addr.to_string(),
        reason: reason.to_owned(),
    };
    if addr.scheme() != "tcp" {
        return Err(invalid("the tcp transport serves tcp:// addresses"));
    }
    let rest = addr.rest();
    if rest.starts_with('[') {
        return rest
            .parse()
            .map(Target::Ip)
            .map_err(|_| invalid("expected [IPv6]:PORT"));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(invalid("expected HOST:PORT"));
    };
    let port = port
        .parse()
        .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_ipv6() {
            return Err(invalid(
                "IPv6 addresses are written in brackets: [::1]:PORT",
            ));
        }
        return Ok(Target::Ip(SocketAddr::new(ip, port)));
    }
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !valid_host {
        return Err(invalid("the host must be an IP address or a host name"));
    }
    Ok(Target::Host(host, port))
}

/// Parses `addr` and resolves its host name, if it has one.
pub(crate) async fn resolve(addr: &Address) -> Result<Vec<SocketAddr>, TransportError> {
    match parse(addr)? {
        Target::Ip(ip) => Ok(vec![ip]),
        Target::Host(host, port) => {
            let found = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| TransportError::io("resolve", e))?;
            Ok(found.collect())
        }
    }
}

/// The error for a host name that resolved to nothing.
pub(crate) fn no_addresses(addr: &Address) -> TransportError {
    TransportError::io(
        "resolve",
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolved to no address"),
        ),
    )
}

/// `tcp://IP:PORT`, with IPv6 addresses in brackets.
pub(crate) fn uri(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<&str>) {
        let addr = Address::parse(input).unwrap();
        let got = parse(&addr).ok().map(|t| match t {
            Target::Ip(ip) => uri(ip),
            Target::Host(host, port) => format!("host {host} port {port}"),
        });
        assert_eq!(got.as_deref(), expect, "parsing {input:?}");
    }

    #[test]
    fn parses() {
        check("tcp://127.0.0.1:0", Some("tcp://127.0.0.1:0"));
        check("127.0.0.1:4000", Some("tcp://127.0.0.1:4000"));
        check("tcp://[::1]:0", Some("tcp://[::1]:0"));
        check(
            "tcp://[::ffff:1.2.3.4]:80",
            Some("tcp://[::ffff:1.2.3.4]:80"),
        );
        check("tcp://localhost:4000", Some("host localhost port 4000"));
        check(
            "tcp://node-7.cluster_a:1",
            Some("host node-7.cluster_a port 1"),
        );
        check("tcp://::1:80", None);
        check("tcp://[::1]", None);
        check("tcp://[::1:80", None);
        check("tcp://localhost", None);
        check("tcp://localhost:", None);
        check("tcp://localhost:65536", None);
        check("tcp://localhost:-1", None);
        check("tcp://:80", None);
        check("tcp://a/b:80", None);
        check("tcp://a@b:80", None);
        check("mem://a:80", None);
    }
}
