//! The first bytes of a TLS connection: find the ClientHello, read once, keep the bytes for replay.
//!
//! [`peek`] is a pure function over the bytes read so far. It answers *a complete ClientHello
//! (with its SNI and ALPN)*, *need more bytes*, or *not a ClientHello* (and why, as a metric
//! slug). [`read_client_hello`] is the IO edge: it reads into a caller-owned buffer under a
//! deadline until [`peek`] decides. The caller then replays that buffer into rustls (terminate) or
//! to the upstream (passthrough), so the socket is read once and the hello stays in that buffer
//! (only a hello split across records is copied, transiently, to be parsed).
//!
//! The record layer is walked by hand instead of with `tls_parser::parse_tls_plaintext` and the
//! hello body is read with a small cursor instead of `tls_parser::parse_tls_handshake_client_hello`
//! and `parse_tls_extensions`, because on this input those answer `Incomplete` where more bytes
//! cannot help (a short length *inside* a complete record), accept truncated extension blocks and
//! server-name lists as shorter ones (losing or hiding the SNI), reject a hello split across
//! records, and allocate a vector per list. tls-parser still names the wire constants here, and
//! the tests use it as an independent oracle.
//!
//! Must not: log (the caller records one line and one metric per failed connection), know about
//! routes or credentials, or read past [`MAX_HELLO_BYTES`].

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use bytes::BytesMut;
use tls_parser::{SNIType, TlsExtensionType, TlsHandshakeType, TlsRecordType};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read while looking for a ClientHello: its records, headers included.
///
/// Post-quantum key shares push ordinary hellos past 1,500 bytes; 16 KiB leaves room for
/// padding, long ALPN lists and session tickets.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// The highest protocol version a client can offer today (TLS 1.3), as on the wire.
pub const TLS13: u16 = 0x0304;

/// Buffer growth step: the first reservation, and the least one afterwards.
const READ_STEP: usize = 2 * 1024;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 1035: a DNS name is at most 253 characters without its trailing dot.
const MAX_HOST_LEN: usize = 253;

const HANDSHAKE: u8 = TlsRecordType::Handshake.0;
const CHANGE_CIPHER_SPEC: u8 = TlsRecordType::ChangeCipherSpec.0;
const ALERT: u8 = TlsRecordType::Alert.0;
const APPLICATION_DATA: u8 = TlsRecordType::ApplicationData.0;
const HEARTBEAT: u8 = TlsRecordType::Heartbeat.0;
const CLIENT_HELLO: u8 = TlsHandshakeType::ClientHello.0;
const SERVER_NAME: u16 = TlsExtensionType::ServerName.0;
const ALPN: u16 = TlsExtensionType::ApplicationLayerProtocolNegotiation.0;
const SIGNATURE_ALGORITHMS: u16 = TlsExtensionType::SignatureAlgorithms.0;
const SUPPORTED_VERSIONS: u16 = TlsExtensionType::SupportedVersions.0;
const HOST_NAME: u8 = SNIType::HostName.0;

/// What a prefix of a connection's first bytes says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A complete ClientHello.
    Hello(ClientHelloInfo),
    /// Not enough bytes yet: read at least this many more (always at least 1) before a hello can
    /// be complete. A lower bound: a later record header may ask for more, a reject may need fewer.
    NeedMore(usize),
    /// Not a TLS ClientHello; close the connection and count the reason.
    Reject(RejectReason),
}

/// What a complete ClientHello offers, as far as routing and credential choice need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The `host_name` from `server_name`: lower-cased, one trailing dot removed; IP literals kept
    /// as sent. `None` when the client sent no host name.
    pub sni: Option<String>,
    /// The ALPN protocols offered, in the client's order; empty without the extension.
    pub alpn: Vec<Vec<u8>>,
    /// `signature_algorithms` lists an ECDSA scheme. Without that extension (clients older than
    /// TLS 1.2) both `offers_*` are false: RFC 5246 §7.4.1.4.1 then lets the cipher suite decide.
    pub offers_ecdsa: bool,
    /// `signature_algorithms` lists an RSA scheme (PKCS#1 or PSS).
    pub offers_rsa: bool,
    /// The highest version offered: from `supported_versions` when present (GREASE ignored),
    /// otherwise the hello's legacy version. `0x0303` is TLS 1.2, [`TLS13`] is TLS 1.3.
    pub max_version: u16,
}

impl ClientHelloInfo {
    /// Whether the client offers TLS 1.3.
    pub fn offers_tls13(&self) -> bool {
        self.max_version >= TLS13
    }
}

/// Why the first bytes are not a usable ClientHello. All are the client's doing (downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not TLS at all: plain HTTP on a TLS port, a port scanner, garbage.
    NotTls,
    /// An SSL 2.0-style (two-byte header) ClientHello; no TLS 1.2+ client sends one.
    Sslv2,
    /// TLS-shaped but broken: bad lengths, a bad `server_name` or ALPN list, records interleaved.
    Malformed,
    /// The hello would not fit in [`MAX_HELLO_BYTES`].
    TooLarge,
    /// A TLS record that is not a handshake, or a handshake message that is not a ClientHello.
    NotClientHello,
}

impl RejectReason {
    /// Slug for metric labels and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotTls => "not_tls",
            Self::Sslv2 => "sslv2",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::NotClientHello => "not_client_hello",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`read_client_hello`] found no ClientHello. All downstream: the client's bytes or pace.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("not a TLS ClientHello ({0})")]
    Rejected(RejectReason),
    #[error("no complete ClientHello before the deadline")]
    Timeout,
    /// Closed before a decision; an empty buffer means the client sent nothing (a TCP probe).
    #[error("connection closed before a complete ClientHello")]
    Eof,
    #[error("reading the ClientHello failed")]
    Io(#[from] std::io::Error),
}

impl PeekError {
    /// Slug for metric labels and log fields.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Rejected(reason) => reason.as_str(),
            Self::Timeout => "timeout",
            Self::Eof => "eof",
            Self::Io(_) => "io",
        }
    }
}

/// Inspects the bytes read so far from a connection. Pure and total: never panics, allocates
/// only the SNI string, the ALPN list and, for a hello split across records, one copy of it.
///
/// A hello is complete at the end of the record holding its last byte; bytes after that record
/// are ignored. Once the answer is `Hello` or `Reject`, longer inputs give the same answer.
pub fn peek(buf: &[u8]) -> Peek {
    let verdict = match buf.first() {
        None => Ok(Peek::NeedMore(RECORD_HEADER_LEN)),
        Some(&HANDSHAKE) => locate(buf).and_then(|progress| finish(buf, progress)),
        Some(&(CHANGE_CIPHER_SPEC | ALERT | APPLICATION_DATA | HEARTBEAT)) => other_record(buf),
        Some(&first) if first & 0x80 != 0 => sslv2(buf),
        Some(_) => Err(RejectReason::NotTls),
    };
    verdict.unwrap_or_else(Peek::Reject)
}

/// Reads from `io` into `buf` until [`peek`] decides, the hello would exceed `max_bytes` (at most
/// [`MAX_HELLO_BYTES`]), EOF, or `timeout` passes. Bytes already in `buf` count as read.
///
/// On every outcome `buf` holds exactly what was read (never more than [`MAX_HELLO_BYTES`]), so the
/// caller can replay it. The buffer grows in 2 KiB steps; a reused, cleared buffer keeps its
/// capacity. A reader that dribbles bytes costs one record walk per read, not a reparse.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    timeout: Duration,
    max_bytes: usize,
) -> Result<ClientHelloInfo, PeekError> {
    let max_bytes = max_bytes.min(MAX_HELLO_BYTES);
    tokio::time::timeout(timeout, read_until_decided(io, buf, max_bytes))
        .await
        .unwrap_or(Err(PeekError::Timeout))
}

async fn read_until_decided<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    max_bytes: usize,
) -> Result<ClientHelloInfo, PeekError> {
    loop {
        let wanted = match peek(buf) {
            Peek::Hello(info) if buf.len() <= max_bytes => return Ok(info),
            Peek::Hello(_) => return Err(PeekError::Rejected(RejectReason::TooLarge)),
            Peek::Reject(reason) => return Err(PeekError::Rejected(reason)),
            Peek::NeedMore(wanted) => wanted,
        };
        let room = max_bytes.saturating_sub(buf.len());
        if wanted > room {
            // `peek` rejects any hello past MAX_HELLO_BYTES; this is the configured, lower limit.
            return Err(PeekError::Rejected(RejectReason::TooLarge));
        }
        if buf.capacity() - buf.len() < wanted.min(room) {
            buf.reserve(wanted.max(READ_STEP).min(room));
        }
        let limit = u64::try_from(room).unwrap_or(u64::MAX);
        if (&mut *io).take(limit).read_buf(buf).await? == 0 {
            return Err(PeekError::Eof);
        }
    }
}

/// How far the records in the buffer get towards one complete ClientHello message.
#[derive(Debug)]
enum Progress {
    NeedMore(usize),
    /// The whole message is this range of the buffer: the first record's payload.
    InOneRecord(Range<usize>),
    /// The message, `len` bytes, is spread over the records in `buf[..end]`.
    Fragmented {
        end: usize,
        len: usize,
    },
}

/// Walks the handshake records at the start of `buf` (which starts with a handshake record type)
/// until they hold one complete handshake message. Checks everything it can see as early as it
/// can: record headers, the message type, and every length against [`MAX_HELLO_BYTES`].
fn locate(buf: &[u8]) -> Result<Progress, RejectReason> {
    let mut start = 0; // the current record's first byte
    let mut gathered = 0; // handshake bytes in the complete records before `start`
    let mut header = HandshakeHeader::default();
    loop {
        let rest = buf.get(start..).unwrap_or_default();
        let len = match record_header(rest, start == 0)? {
            RecordHeader::Partial { missing } => return Ok(Progress::NeedMore(missing)),
            RecordHeader::Complete { len } => len,
        };
        let payload_start = start + RECORD_HEADER_LEN;
        let end = payload_start + len;
        if end > MAX_HELLO_BYTES {
            return Err(RejectReason::TooLarge);
        }
        let available = buf.get(payload_start..end.min(buf.len()));
        let message_len = header.feed(available.unwrap_or_default())?;
        if buf.len() < end {
            return Ok(Progress::NeedMore(end - buf.len()));
        }
        gathered += len;
        match message_len {
            // RFC 8446 §5.1: the ClientHello must end at a record boundary (a key change follows).
            Some(total) if gathered > total => return Err(RejectReason::Malformed),
            Some(total) if gathered == total && start == 0 => {
                return Ok(Progress::InOneRecord(payload_start..end))
            }
            Some(total) if gathered == total => {
                return Ok(Progress::Fragmented { end, len: total })
            }
            _ => start = end,
        }
    }
}

enum RecordHeader {
    Partial { missing: usize },
    Complete { len: usize },
}

/// Checks the (possibly partial) record header at the start of `rest`: a handshake record with
/// a TLS 1.0-1.3 version and a non-empty payload. A bad first header means the peer does not
/// speak TLS; a bad later one breaks a hello already under way.
fn record_header(rest: &[u8], first: bool) -> Result<RecordHeader, RejectReason> {
    let wrong = if first {
        RejectReason::NotTls
    } else {
        RejectReason::Malformed
    };
    if rest.first().is_some_and(|&kind| kind != HANDSHAKE)
        || rest.get(1).is_some_and(|&major| major != 3)
        || rest.get(2).is_some_and(|minor| !(1..=4).contains(minor))
    {
        return Err(wrong);
    }
    match rest.get(3..RECORD_HEADER_LEN) {
        Some(&[hi, lo]) => match usize::from(u16::from_be_bytes([hi, lo])) {
            // RFC 8446 §5.1: no zero-length handshake fragments.
            0 => Err(RejectReason::Malformed),
            len => Ok(RecordHeader::Complete { len }),
        },
        _ => Ok(RecordHeader::Partial {
            missing: RECORD_HEADER_LEN.saturating_sub(rest.len()),
        }),
    }
}

/// The first four handshake bytes (type and 24-bit length), which may straddle records.
#[derive(Default)]
struct HandshakeHeader {
    bytes: [u8; HANDSHAKE_HEADER_LEN],
    have: usize,
}

impl HandshakeHeader {
    /// Takes what it still lacks from the start of one record's payload, checks what it has, and
    /// returns the whole message's length (header included) once it is known.
    fn feed(&mut self, payload: &[u8]) -> Result<Option<usize>, RejectReason> {
        let take = (HANDSHAKE_HEADER_LEN - self.have).min(payload.len());
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.have..self.have + take),
            payload.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.have += take;
        }
        if self.have == 0 {
            return Ok(None);
        }
        let [kind, l0, l1, l2] = self.bytes;
        if kind != CLIENT_HELLO {
            return Err(RejectReason::NotClientHello);
        }
        if self.have < HANDSHAKE_HEADER_LEN {
            return Ok(None);
        }
        let total = HANDSHAKE_HEADER_LEN
            + ((usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2));
        if total + RECORD_HEADER_LEN > MAX_HELLO_BYTES {
            return Err(RejectReason::TooLarge);
        }
        Ok(Some(total))
    }
}

/// A record of another TLS content type first (ChangeCipherSpec, Alert, ApplicationData,
/// Heartbeat): TLS, but not a ClientHello, if a TLS version follows.
fn other_record(buf: &[u8]) -> Result<Peek, RejectReason> {
    let Some(&major) = buf.get(1) else {
        return Ok(Peek::NeedMore(1));
    };
    if major != 3 {
        return Err(RejectReason::NotTls);
    }
    let Some(minor) = buf.get(2) else {
        return Ok(Peek::NeedMore(1));
    };
    if (1..=4).contains(minor) {
        Err(RejectReason::NotClientHello)
    } else {
        Err(RejectReason::NotTls)
    }
}

/// A first byte with the high bit set: an SSL 2.0 record header if MSG-CLIENT-HELLO (1) and an
/// SSL 2.0 (0x0002) or SSL 3/TLS (0x03xx) version follow, otherwise noise.
fn sslv2(buf: &[u8]) -> Result<Peek, RejectReason> {
    let Some(&kind) = buf.get(2) else {
        return Ok(Peek::NeedMore(3 - buf.len()));
    };
    if kind != 1 {
        return Err(RejectReason::NotTls);
    }
    match buf.get(3) {
        None => Ok(Peek::NeedMore(1)),
        Some(0 | 3) => Err(RejectReason::Sslv2),
        Some(_) => Err(RejectReason::NotTls),
    }
}

fn finish(buf: &[u8], progress: Progress) -> Result<Peek, RejectReason> {
    let info = match progress {
        Progress::NeedMore(wanted) => return Ok(Peek::NeedMore(wanted)),
        Progress::InOneRecord(message) => parse_message(buf.get(message).unwrap_or_default())?,
        Progress::Fragmented { end, len } => {
            parse_message(&gather(buf.get(..end).unwrap_or_default(), len))?
        }
    };
    Ok(Peek::Hello(info))
}

/// Concatenates the payloads of the (already checked) records in `records`.
fn gather(records: &[u8], len: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(len);
    let mut rest = records;
    while let Some((header, tail)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() {
        let [_, _, _, hi, lo] = *header;
        let (payload, tail) = tail
            .split_at_checked(usize::from(u16::from_be_bytes([hi, lo])))
            .unwrap_or((tail, &[]));
        message.extend_from_slice(payload);
        rest = tail;
    }
    message
}

/// Parses a complete ClientHello handshake message (header included, already checked).
fn parse_message(message: &[u8]) -> Result<ClientHelloInfo, RejectReason> {
    let body = message
        .get(HANDSHAKE_HEADER_LEN..)
        .ok_or(RejectReason::Malformed)?;
    parse_client_hello(body)
}

/// RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2): every length must fit exactly.
fn parse_client_hello(body: &[u8]) -> Result<ClientHelloInfo, RejectReason> {
    let mut hello = Reader(body);
    let legacy_version = hello.u16()?;
    hello.take(32)?; // random
    let session_id = hello.vec_u8()?;
    let cipher_suites = hello.vec_u16()?;
    let compression_methods = hello.vec_u8()?;
    if legacy_version >> 8 != 3
        || session_id.len() > 32
        || cipher_suites.is_empty()
        || cipher_suites.len() % 2 != 0
        || compression_methods.is_empty()
    {
        return Err(RejectReason::Malformed);
    }
    let mut info = ClientHelloInfo {
        sni: None,
        alpn: Vec::new(),
        offers_ecdsa: false,
        offers_rsa: false,
        max_version: legacy_version,
    };
    if hello.is_empty() {
        return Ok(info); // no extensions at all: a pre-TLS 1.2 client
    }
    let mut extensions = Reader(hello.vec_u16()?);
    hello.finish()?;
    // Each extension we read must appear once, or the gateway and the server behind it could
    // read different names (RFC 8446 §4.2 forbids duplicates).
    let mut seen = 0u8;
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec_u16()?;
        let bit = match kind {
            SERVER_NAME => 1,
            ALPN => 2,
            SIGNATURE_ALGORITHMS => 4,
            SUPPORTED_VERSIONS => 8,
            _ => continue,
        };
        if seen & bit != 0 {
            return Err(RejectReason::Malformed);
        }
        seen |= bit;
        match kind {
            SERVER_NAME => info.sni = server_name(data)?,
            ALPN => info.alpn = protocols(data)?,
            SIGNATURE_ALGORITHMS => (info.offers_ecdsa, info.offers_rsa) = signatures(data)?,
            _ => info.max_version = highest_version(data)?.unwrap_or(legacy_version),
        }
    }
    Ok(info)
}

/// RFC 6066 §3: a non-empty list of (name type, name); at most one `host_name`. Other name
/// types are skipped.
fn server_name(data: &[u8]) -> Result<Option<String>, RejectReason> {
    let mut names = Reader(Reader::whole_vec_u16(data)?);
    let mut host = None;
    while !names.is_empty() {
        let kind = names.u8()?;
        let name = names.vec_u16()?;
        if kind == HOST_NAME && host.replace(name).is_some() {
            return Err(RejectReason::Malformed);
        }
    }
    host.map(normalize_host).transpose()
}

/// Lower-cases a host name and drops one trailing dot. Printable ASCII only (IDNs arrive as
/// A-labels); an IP literal passes as sent.
fn normalize_host(name: &[u8]) -> Result<String, RejectReason> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN || !name.iter().all(u8::is_ascii_graphic) {
        return Err(RejectReason::Malformed);
    }
    let mut host = String::with_capacity(name.len());
    host.extend(name.iter().map(|b| char::from(b.to_ascii_lowercase())));
    Ok(host)
}

/// RFC 7301 §3.1: a non-empty list of non-empty protocol names.
fn protocols(data: &[u8]) -> Result<Vec<Vec<u8>>, RejectReason> {
    let mut list = Reader(Reader::whole_vec_u16(data)?);
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let protocol = list.vec_u8()?;
        if protocol.is_empty() {
            return Err(RejectReason::Malformed);
        }
        protocols.push(protocol.to_vec());
    }
    Ok(protocols)
}

/// RFC 8446 §4.2.3: (offers ECDSA, offers RSA), reading TLS 1.2 (hash, signature) pairs and
/// TLS 1.3 scheme numbers alike.
fn signatures(data: &[u8]) -> Result<(bool, bool), RejectReason> {
    let mut ecdsa = false;
    let mut rsa = false;
    for scheme in u16_list(Reader::whole_vec_u16(data)?)? {
        let [hash, signature] = scheme.to_be_bytes();
        // A TLS 1.2 hash: md5 .. sha512. TLS 1.3 reuses the pairs for its pkcs1 and ecdsa schemes.
        let tls12_hash = (1..=6).contains(&hash);
        // ecdsa_{sha1, secp256r1_sha256, ...}; ecdsa_brainpool*_tls13
        ecdsa |= (tls12_hash && signature == 3) || (0x081a..=0x081c).contains(&scheme);
        // rsa_pkcs1_*; rsa_pss_rsae_*; rsa_pss_pss_*
        rsa |= (tls12_hash && signature == 1)
            || (0x0804..=0x0806).contains(&scheme)
            || (0x0809..=0x080b).contains(&scheme);
    }
    Ok((ecdsa, rsa))
}

/// RFC 8446 §4.2.1: the highest SSL 3/TLS version listed (GREASE and drafts ignored).
fn highest_version(data: &[u8]) -> Result<Option<u16>, RejectReason> {
    let mut outer = Reader(data);
    let versions = outer.vec_u8()?;
    outer.finish()?;
    Ok(u16_list(versions)?.filter(|v| v >> 8 == 3).max())
}

/// A non-empty, even-length run of big-endian `u16`s.
fn u16_list(list: &[u8]) -> Result<impl Iterator<Item = u16> + '_, RejectReason> {
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(RejectReason::Malformed);
    }
    Ok(list
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]])))
}

/// A cursor over a complete structure: running short means the structure is malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// `data` must be exactly one non-empty `u16`-length-prefixed vector.
    fn whole_vec_u16(data: &'a [u8]) -> Result<&'a [u8], RejectReason> {
        let mut outer = Reader(data);
        let inner = outer.vec_u16()?;
        outer.finish()?;
        if inner.is_empty() {
            return Err(RejectReason::Malformed);
        }
        Ok(inner)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn finish(&self) -> Result<(), RejectReason> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(RejectReason::Malformed)
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RejectReason> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(RejectReason::Malformed)?;
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RejectReason> {
        let (&byte, tail) = self.0.split_first().ok_or(RejectReason::Malformed)?;
        self.0 = tail;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, RejectReason> {
        let (bytes, tail) = self
            .0
            .split_first_chunk::<2>()
            .ok_or(RejectReason::Malformed)?;
        self.0 = tail;
        Ok(u16::from_be_bytes(*bytes))
    }

    fn vec_u8(&mut self) -> Result<&'a [u8], RejectReason> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    fn vec_u16(&mut self) -> Result<&'a [u8], RejectReason> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

#[cfg(test)]
mod tests;
