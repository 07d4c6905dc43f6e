//! The upstream HTTP/1.1 reader on arbitrary bytes, for the `upstream_response` fuzz target:
//! response heads and bodies one after another, fed in pieces as reads would deliver them. It
//! must never panic, never wait on a head larger than the limit, and a length-delimited body
//! must end after exactly its length.

use bytes::BytesMut;

use super::body::{Decoder, Step};
use super::codec::{self, Framing, MAX_HEAD};

/// `wire`'s first byte sets the read size (and whether the request was HEAD); the rest is what
/// the upstream sent.
pub fn responses(wire: &[u8]) {
    let Some((&first, wire)) = wire.split_first() else {
        return;
    };
    let read = usize::from(first).max(1);
    let head_request = first % 2 == 0;
    let mut pieces = wire.chunks(read);
    let mut buf = BytesMut::new();
    let mut scratch = codec::HeadScratch::default();
    // The body being read: its decoder, its declared length, and the bytes so far.
    let mut body: Option<(Decoder, Option<u64>, u64)> = None;
    loop {
        let progressed = match &mut body {
            None => match codec::parse_response(&mut buf, head_request, &mut scratch) {
                Ok(Some(head)) => {
                    assert!(head.headers.len() <= 100);
                    let length = match head.framing {
                        Framing::Length(n) => Some(n),
                        _ => None,
                    };
                    body = Decoder::new(head.framing).map(|d| (d, length, 0));
                    true
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= MAX_HEAD,
                        "waiting on a {}-byte head",
                        buf.len()
                    );
                    false
                }
                Err(_) => return,
            },
            Some((decoder, length, received)) => match decoder.step(&mut buf) {
                Ok(Step::Data(data)) => {
                    assert!(!data.is_empty());
                    *received += data.len() as u64;
                    assert!(length.is_none_or(|n| *received <= n));
                    true
                }
                Ok(Step::End) => {
                    assert!(length.is_none_or(|n| *received == n));
                    body = None;
                    true
                }
                Ok(Step::More) => false,
                Err(_) => return,
            },
        };
        if !progressed {
            match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn responses_one_after_another_in_any_read_size() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
                     HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
                     HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close";
        for read in 1..=255u8 {
            let mut input = vec![read];
            input.extend_from_slice(wire);
            super::responses(&input);
        }
    }
}
