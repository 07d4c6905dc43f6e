//! HTTP/1.1 message heads on the upstream side: the request head written as bytes, the response
//! head read from bytes, and how each body is framed (RFC 9112 §6).

use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// The largest response head accepted (Envoy's default `max_request_headers_kb` is 60).
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most header fields a response head may have (as hyper).
const MAX_HEADERS: usize = 100;

/// What is known of a request body before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodySize {
    Empty,
    Exact(u64),
    Unknown,
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the upstream closes the connection.
    UntilClose,
}

/// Writes the request line and header fields into `dst` and says how the body follows, framing
/// it as hyper's client does: a valid `Content-Length` is kept, a known size gets one, an unknown
/// size is chunked (except for GET, HEAD and CONNECT, which are sent without a body).
/// `Transfer-Encoding` is hop-by-hop and always decided here.
pub(super) fn encode_request(parts: &Parts, body: BodySize, dst: &mut Vec<u8>) -> Framing {
    let declared = content_length(&parts.headers).ok().flatten();
    let (framing, add_length) = match (body, declared) {
        (BodySize::Empty, _) => (Framing::Empty, false),
        (_, Some(n)) => (Framing::Length(n), false),
        (BodySize::Exact(n), None) => (Framing::Length(n), true),
        (BodySize::Unknown, None) => match parts.method {
            Method::GET | Method::HEAD | Method::CONNECT => (Framing::Empty, false),
            _ => (Framing::Chunked, false),
        },
    };
    // An empty body keeps whatever Content-Length came (`content-length: 0` on a POST); with a
    // body, only a valid one stays.
    let keep_length = body == BodySize::Empty || declared.is_some();
    dst.extend_from_slice(parts.method.as_str().as_bytes());
    dst.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    dst.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && !keep_length) {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) if add_length => {
            put_field(
                dst,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        Framing::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    dst.extend_from_slice(b"\r\n");
    framing
}

/// One `name: value` field line of an HTTP/1 head (the downstream fast path writes with it too).
pub(crate) fn put_field(dst: &mut impl BufMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The upstream lets the connection carry another request after this response.
    pub keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
}

/// Takes one complete response head off the front of `buf`, or `None` while it is incomplete.
/// Header values are slices of the head's bytes, not copies. `head_request` says the request was
/// HEAD, whose response has no body whatever its headers say.
pub(super) fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    scratch: &mut HeadScratch,
) -> Result<Option<ResponseHead>, HeadError> {
    // Uninitialized slots: nothing to clear per parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("syntax")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Malformed("status"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each field lies, so that its value can be sliced from the head once it is frozen
    // (the parsed fields borrow the buffer the head is split from).
    let base = buf.as_ptr() as usize;
    let HeadScratch { fields, names } = scratch;
    fields.clear();
    fields.extend(parsed.headers.iter().map(|header| Field {
        name: (header.name.as_ptr() as usize - base, header.name.len()),
        value: (header.value.as_ptr() as usize - base, header.value.len()),
    }));
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut delimiters = Delimiters::default();
    for (i, &Field { name, value }) in fields.iter().enumerate() {
        let name = field_name(names, i, &head[name.0..name.0 + name.1])?;
        // A slice of the head, validated again (a byte scan); httparse has let through only
        // field-value bytes, so this does not fail in practice.
        let value = HeaderValue::from_maybe_shared(head.slice(value.0..value.0 + value.1))
            .map_err(|_| HeadError::Malformed("field value"))?;
        if delimiters.see(&name, value.as_bytes()) == Seen::ThisHopOnly {
            // The gateway would strip it at once (a hash removal); never stored is cheaper.
            continue;
        }
        headers.append(name, value);
    }
    let framing = delimiters.framing(status, head_request)?;
    let keep_alive = delimiters.keep_alive(version) && framing != Framing::UntilClose;
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What parsing keeps between the response heads of one connection: room for the fields'
/// places, and the last head's field names as spelled. One upstream answers one kind of request
/// alike, so the next head most likely spells the same names in the same order; a name spelled
/// as before is taken again instead of parsed (and, for a non-standard name, allocated) again.
#[derive(Debug, Default)]
pub(super) struct HeadScratch {
    fields: Vec<Field>,
    names: Vec<Spelled>,
}

/// Names remembered per connection: the first fields of a head, where the common ones are.
const REMEMBERED_NAMES: usize = 16;

/// The longest spelling remembered (`access-control-allow-credentials` fits).
const SPELLING_MAX: usize = 32;

/// A field name and how the upstream spelled it.
#[derive(Debug)]
struct Spelled {
    name: HeaderName,
    len: u8,
    spelling: [u8; SPELLING_MAX],
}

impl Spelled {
    /// A spelling too long to keep is kept as none, which no field name matches (httparse
    /// refuses empty ones).
    fn new(name: HeaderName, raw: &[u8]) -> Self {
        let mut spelling = [0; SPELLING_MAX];
        let len = match spelling.get_mut(..raw.len()) {
            Some(room) => {
                room.copy_from_slice(raw);
                raw.len() as u8
            }
            None => 0,
        };
        Spelled {
            name,
            len,
            spelling,
        }
    }

    fn is(&self, raw: &[u8]) -> bool {
        self.spelling[..usize::from(self.len)] == *raw
    }
}

/// The `i`th field's name: the last head's `i`th name if `raw` spells it the same way, else
/// parsed and remembered.
fn field_name(names: &mut Vec<Spelled>, i: usize, raw: &[u8]) -> Result<HeaderName, HeadError> {
    if let Some(last) = names.get(i) {
        if last.is(raw) {
            return Ok(last.name.clone());
        }
    }
    let name = HeaderName::from_bytes(raw).map_err(|_| HeadError::Malformed("field name"))?;
    if i < names.len() {
        names[i] = Spelled::new(name.clone(), raw);
    } else if i < REMEMBERED_NAMES {
        names.push(Spelled::new(name.clone(), raw));
    }
    Ok(name)
}

/// Where a header field's name and value lie in a response head: (offset, length).
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// What [`Delimiters::see`] made of a field.
#[derive(PartialEq, Eq)]
enum Seen {
    /// A field about this connection only, whose content the delimiters now hold:
    /// `Transfer-Encoding`, `Keep-Alive`, `Proxy-Connection`, or a `Connection` naming nothing
    /// but `close`, `keep-alive` or `upgrade` (RFC 9110 §7.6.1). It is not passed on.
    ThisHopOnly,
    Other,
}

/// What a response's framing fields say, gathered while its fields are read (no lookups after).
#[derive(Default)]
struct Delimiters {
    length: Option<u64>,
    bad_length: bool,
    transfer_encoding: bool,
    /// The last transfer coding is chunked.
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl Delimiters {
    fn see(&mut self, name: &HeaderName, value: &[u8]) -> Seen {
        if *name == CONTENT_LENGTH {
            self.bad_length |= add_lengths(value, &mut self.length).is_err();
        } else if *name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Seen::ThisHopOnly;
        } else if *name == CONNECTION {
            let mut names_fields = false;
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                let close = token.eq_ignore_ascii_case(b"close");
                let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                names_fields |= !(close
                    || keep_alive
                    || token.is_empty()
                    || token.eq_ignore_ascii_case(b"upgrade"));
            }
            if !names_fields {
                return Seen::ThisHopOnly;
            }
        } else if name.as_str() == "keep-alive" || name.as_str() == "proxy-connection" {
            return Seen::ThisHopOnly;
        }
        Seen::Other
    }

    /// RFC 9112 §6.3: which response has no body, and how the others end. Transfer-Encoding
    /// overrides Content-Length; chunked must come last, or the body runs to the close.
    fn framing(&self, status: StatusCode, head_request: bool) -> Result<Framing, HeadError> {
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Empty);
        }
        if self.transfer_encoding {
            return Ok(if self.chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        match (self.bad_length, self.length) {
            (true, _) => Err(HeadError::Malformed("content-length")),
            (false, Some(n)) => Ok(Framing::Length(n)),
            (false, None) => Ok(Framing::UntilClose),
        }
    }

    /// Whether the connection may carry another request: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`. A response with both Transfer-Encoding and
    /// Content-Length may be an attempt at smuggling: its connection closes after it (RFC 9112
    /// §6.3).
    fn keep_alive(&self, version: Version) -> bool {
        let ambiguous = self.transfer_encoding && (self.length.is_some() || self.bad_length);
        !self.close && !ambiguous && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// The `Content-Length` of a request: `Ok(None)` when absent, `Err` when its values are not
/// one number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        add_lengths(value.as_bytes(), &mut found)?;
    }
    Ok(found)
}

/// Adds one Content-Length field value to what `found` holds: every number must be the same
/// (a list of the same number, `5, 5`, is one number).
fn add_lengths(value: &[u8], found: &mut Option<u64>) -> Result<(), ()> {
    for item in value.split(|&b| b == b',') {
        let n = parse_decimal(item.trim_ascii()).ok_or(())?;
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        *found = Some(n);
    }
    Ok(())
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests;
