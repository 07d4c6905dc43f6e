//! HAProxy's PROXY protocol (v1 text, v2 binary) on the ports `--proxy-protocol` names: an L4
//! load balancer in front states the client's address before the connection's first byte, and
//! the gateway uses it as the downstream address (x-forwarded-for, access log, hashing), as
//! Envoy's proxy_protocol listener filter does. A connection without a valid header is closed.
//!
//! The header is taken off the socket exactly: peeked until whole, then read by its length, so
//! whatever follows it (a ClientHello, a request) stays in the socket for the port's protocol.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::v1;
use ppp::v2;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header accepted: v1's 107 bytes, or v2 with a few hundred bytes of TLVs.
const MAX_HEADER_BYTES: usize = 1024;
/// How long to wait before peeking again at a header that arrived in pieces (rare: load
/// balancers send the header in one segment).
const PIECE_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no PROXY protocol header: {0}")]
    Invalid(String),
    #[error("PROXY protocol header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("connection closed before the PROXY protocol header ended")]
    Eof,
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn slug(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::TooLong => "too_long",
            Error::Eof => "eof",
            Error::Timeout(_) => "timeout",
            Error::Io(_) => "io",
        }
    }
}

/// The addresses a header states: `None` for a LOCAL (v2) or UNKNOWN (v1) header, whose
/// connection speaks for itself (a load balancer's health check).
pub type Stated = Option<(SocketAddr, SocketAddr)>;

/// Takes the PROXY header off `stream`; the client's (source, destination) addresses.
pub async fn read_header(stream: &mut TcpStream, timeout: Duration) -> Result<Stated, Error> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .unwrap_or(Err(Error::Timeout(timeout)))
}

async fn read(stream: &mut TcpStream) -> Result<Stated, Error> {
    let mut buf = [0u8; MAX_HEADER_BYTES];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(Error::Eof);
        }
        match parse(&buf[..n])? {
            Some((len, stated)) => {
                stream.read_exact(&mut buf[..len]).await?;
                return Ok(stated);
            }
            None if n == MAX_HEADER_BYTES => return Err(Error::TooLong),
            None if n == seen => tokio::time::sleep(PIECE_WAIT).await,
            None => seen = n,
        }
    }
}

/// A whole header's length and addresses; `None` while it is incomplete.
pub fn parse(bytes: &[u8]) -> Result<Option<(usize, Stated)>, Error> {
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(header)) => {
            let stated = match header.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((header.header.len(), stated)))
        }
        HeaderResult::V2(Ok(header)) => {
            let stated = match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                // Unix sockets and unspecified families carry no address to use.
                (v2::Command::Proxy, _) => None,
            };
            Ok(Some((header.len(), stated)))
        }
        HeaderResult::V1(Err(e)) => Err(Error::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(Error::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_ipv4(command: u8, src: [u8; 4], dst: [u8; 4], ports: (u16, u16)) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend([0x20 | command, 0x11, 0, 12]);
        h.extend(src);
        h.extend(dst);
        h.extend(ports.0.to_be_bytes());
        h.extend(ports.1.to_be_bytes());
        h
    }

    #[test]
    fn v1_and_v2_headers_state_the_client() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (len, stated) = parse(v1).unwrap().unwrap();
        assert_eq!(&v1[len..len + 3], b"GET");
        let (src, dst) = stated.unwrap();
        assert_eq!(src, "203.0.113.7:51234".parse().unwrap());
        assert_eq!(dst, "10.0.0.1:443".parse().unwrap());

        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n";
        let (len, stated) = parse(v6).unwrap().unwrap();
        assert_eq!(len, v6.len());
        assert_eq!(stated.unwrap().0, "[2001:db8::1]:1000".parse().unwrap());

        let mut v2 = v2_ipv4(1, [198, 51, 100, 9], [10, 0, 0, 1], (4000, 443));
        let header_len = v2.len();
        v2.extend(b"\x16\x03\x01");
        let (len, stated) = parse(&v2).unwrap().unwrap();
        assert_eq!(len, header_len);
        assert_eq!(stated.unwrap().0, "198.51.100.9:4000".parse().unwrap());
    }

    #[test]
    fn local_and_unknown_headers_keep_the_connections_own_address() {
        let (_, stated) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(stated, None);
        let local = v2_ipv4(0, [0; 4], [0; 4], (0, 0));
        let (len, stated) = parse(&local).unwrap().unwrap();
        assert_eq!((len, stated), (local.len(), None));
    }

    #[test]
    fn partial_headers_wait_and_other_bytes_are_refused() {
        assert!(parse(b"PROXY TCP4 203.0.113.7").unwrap().is_none());
        assert!(parse(&v2_ipv4(1, [1; 4], [2; 4], (1, 2))[..20])
            .unwrap()
            .is_none());
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01",
            b"PROXY TCP4 x y 1 2\r\n",
        ] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
    }
}
