//! The ClientHello peeker against real captures, every prefix and split, and hostile input.

//! Fixtures in `tests/fixtures/client_hello/` are first flights captured on loopback by a
//! socket that saved the first record(s) it received and closed:
//! - `curl.bin`: curl 7.88.1 / OpenSSL 3.0, `--resolve a.example.com:PORT:127.0.0.1 https://a.example.com:PORT/`
//! - `openssl.bin`: `openssl s_client` 3.0 with `-servername b.example.com`
//! - `no-sni.bin`: `openssl s_client -noservername`
//! - `rustls-pq.bin`: rustls 0.23 with the aws-lc-rs provider (X25519MLKEM768 key share first),
//!   ALPN h2 + http/1.1, server name `PQ-Checkout.eu-west-1.shop.c.example.com.` (rustls sends
//!   it without the dot, case kept): 1,515 bytes.

use super::*;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncWriteExt, ReadBuf};

const CURL: &[u8] = include_bytes!("../../../tests/fixtures/client_hello/curl.bin");
const OPENSSL: &[u8] = include_bytes!("../../../tests/fixtures/client_hello/openssl.bin");
const NO_SNI: &[u8] = include_bytes!("../../../tests/fixtures/client_hello/no-sni.bin");
const RUSTLS_PQ: &[u8] = include_bytes!("../../../tests/fixtures/client_hello/rustls-pq.bin");

struct Capture {
    name: &'static str,
    bytes: &'static [u8],
    sni: Option<&'static str>,
    alpn: &'static [&'static [u8]],
}

const CAPTURES: &[Capture] = &[
    Capture {
        name: "curl",
        bytes: CURL,
        sni: Some("a.example.com"),
        alpn: &[b"h2", b"http/1.1"],
    },
    Capture {
        name: "openssl",
        bytes: OPENSSL,
        sni: Some("b.example.com"),
        alpn: &[],
    },
    Capture {
        name: "no-sni",
        bytes: NO_SNI,
        sni: None,
        alpn: &[],
    },
    Capture {
        name: "rustls-pq",
        bytes: RUSTLS_PQ,
        sni: Some("pq-checkout.eu-west-1.shop.c.example.com"),
        alpn: &[b"h2", b"http/1.1"],
    },
];

fn expect_hello(name: &str, input: &[u8]) -> ClientHelloInfo {
    match peek(input) {
        Peek::Hello(info) => info,
        other => panic!("{name}: expected a hello, got {other:?}"),
    }
}

/// Every strict prefix needs more (and never overstates how much); the whole input is a hello.
fn assert_prefixes_need_more(name: &str, input: &[u8]) -> ClientHelloInfo {
    for len in 0..input.len() {
        match peek(&input[..len]) {
            Peek::NeedMore(more) => assert!(
                more >= 1 && len + more <= input.len(),
                "{name}: prefix {len} asks for {more} more of {}",
                input.len()
            ),
            other => panic!("{name}: prefix {len}/{}: {other:?}", input.len()),
        }
    }
    expect_hello(name, input)
}

/// Every prefix answers `NeedMore` or exactly what the whole input answers.
fn assert_monotone(name: &str, input: &[u8]) -> Peek {
    let whole = peek(input);
    for len in 0..input.len() {
        let part = peek(&input[..len]);
        assert!(
            matches!(part, Peek::NeedMore(_)) || part == whole,
            "{name}: prefix {len} says {part:?}, whole says {whole:?}"
        );
    }
    whole
}

// ---- building hellos ----

fn u8_vec(data: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(data.len()).unwrap()];
    out.extend_from_slice(data);
    out
}

fn u16_vec(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(u16_vec(data));
    out
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend(u16_vec(name));
    ext(0, &u16_vec(&entry))
}

fn alpn(protocols: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = protocols.iter().flat_map(|p| u8_vec(p)).collect();
    ext(16, &u16_vec(&list))
}

fn sig_algs(schemes: &[u16]) -> Vec<u8> {
    ext(13, &u16_vec(&u16s(schemes)))
}

fn versions(versions: &[u16]) -> Vec<u8> {
    ext(43, &u8_vec(&u16s(versions)))
}

/// A TLS 1.2-style ClientHello body with the given extension block (None: no block at all).
fn body_with(block: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7; 32]);
    body.extend(u8_vec(&[9; 32]));
    body.extend(u16_vec(&u16s(&[0x1301, 0x1302, 0xc02b])));
    body.extend(u8_vec(&[0]));
    if let Some(block) = block {
        body.extend(u16_vec(block));
    }
    body
}

fn body(extensions: &[Vec<u8>]) -> Vec<u8> {
    body_with(Some(&extensions.concat()))
}

fn message(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut out = vec![1, len[1], len[2], len[3]];
    out.extend_from_slice(body);
    out
}

fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 3, 1];
    out.extend(u16_vec(payload));
    out
}

/// Wraps a handshake message in handshake records, cut at the given offsets.
fn records(message: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&message.len()]) {
        out.extend(record(HANDSHAKE, &message[from..to]));
        from = to;
    }
    out
}

fn hello(extensions: &[Vec<u8>]) -> Vec<u8> {
    records(&message(&body(extensions)), &[])
}

/// The handshake message inside a single-record capture.
fn message_of(capture: &[u8]) -> &[u8] {
    &capture[RECORD_HEADER_LEN..]
}

/// A first flight from a real rustls client (ring provider, as the gateway uses).
fn rustls_hello(name: &str, alpn: Vec<Vec<u8>>, max_fragment_size: Option<usize>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    config.max_fragment_size = max_fragment_size;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// A ~9 KB hello: rustls offering 40 ALPN protocols of 220 bytes.
fn nine_kb_hello() -> Vec<u8> {
    let protocols = (0..40u8).map(|i| vec![b'a' + i % 26; 220]).collect();
    rustls_hello("big.example.com", protocols, None)
}

// ---- the parser ----

#[test]
fn captures_every_prefix_needs_more_then_hello() {
    for capture in CAPTURES {
        let info = assert_prefixes_need_more(capture.name, capture.bytes);
        assert_eq!(info.sni.as_deref(), capture.sni, "{}", capture.name);
        assert_eq!(info.alpn, capture.alpn, "{}", capture.name);
        assert!(info.offers_tls13(), "{}", capture.name);
        assert!(info.offers_ecdsa && info.offers_rsa, "{}", capture.name);
    }
    assert!(
        RUSTLS_PQ.len() > 1500,
        "the post-quantum hello must be large"
    );
}

#[test]
fn bytes_after_the_hello_are_ignored() {
    for capture in CAPTURES {
        let mut input = capture.bytes.to_vec();
        input.extend(record(CHANGE_CIPHER_SPEC, &[1]));
        input.extend(b"early data or garbage");
        assert_eq!(peek(&input), peek(capture.bytes), "{}", capture.name);
    }
}

#[test]
fn captures_agree_with_tls_parser() {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let nine_kb = nine_kb_hello();
    let inputs = CAPTURES
        .iter()
        .map(|c| (c.name, c.bytes))
        .chain([("9kb", nine_kb.as_slice())]);
    for (name, input) in inputs {
        let (_, plaintext) = tls_parser::parse_tls_plaintext(input).unwrap();
        let [TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello))] = &plaintext.msg[..]
        else {
            panic!("{name}: tls-parser sees no ClientHello");
        };
        let (rest, extensions) =
            tls_parser::parse_tls_client_hello_extensions(hello.ext.unwrap()).unwrap();
        assert!(rest.is_empty(), "{name}");
        let mut their_sni = None;
        let mut their_alpn = Vec::new();
        for extension in extensions {
            match extension {
                TlsExtension::SNI(names) => {
                    their_sni = names
                        .iter()
                        .find(|(kind, _)| *kind == SNIType::HostName)
                        .map(|(_, host)| String::from_utf8(host.to_ascii_lowercase()).unwrap())
                }
                TlsExtension::ALPN(list) => {
                    their_alpn = list.iter().map(|p| p.to_vec()).collect();
                }
                _ => {}
            }
        }
        let ours = expect_hello(name, input);
        assert_eq!(ours.sni, their_sni, "{name}");
        assert_eq!(ours.alpn, their_alpn, "{name}");
    }
}

#[test]
fn captures_split_across_two_records_at_every_point() {
    for capture in CAPTURES {
        let whole = expect_hello(capture.name, capture.bytes);
        let message = message_of(capture.bytes);
        for cut in 1..message.len() {
            let input = records(message, &[cut]);
            assert_eq!(expect_hello(capture.name, &input), whole, "cut at {cut}");
        }
        // Every prefix of a few two-record encodings, cuts inside and after the header.
        for cut in [1, 3, 4, 5, 100, message.len() - 1] {
            let input = records(message, &[cut]);
            assert_eq!(assert_prefixes_need_more(capture.name, &input), whole);
        }
    }
}

#[test]
fn captures_in_one_byte_and_three_records() {
    for capture in CAPTURES {
        let whole = expect_hello(capture.name, capture.bytes);
        let message = message_of(capture.bytes);
        let third = message.len() / 3;
        let three = records(message, &[third, 2 * third]);
        assert_eq!(assert_prefixes_need_more(capture.name, &three), whole);
        let cuts: Vec<usize> = (1..message.len()).collect();
        let tiny = records(message, &cuts);
        if tiny.len() <= MAX_HELLO_BYTES {
            assert_eq!(expect_hello(capture.name, &tiny), whole);
        } else {
            // 6 buffer bytes per hello byte: the pq hello in 1-byte records is too large.
            assert_eq!(peek(&tiny), Peek::Reject(RejectReason::TooLarge));
        }
    }
}

#[test]
fn real_multi_record_hello_from_rustls() {
    let input = rustls_hello("frag.example.com", vec![b"h2".to_vec()], Some(100));
    let first_len = usize::from(u16::from_be_bytes([input[3], input[4]]));
    assert!(
        first_len + RECORD_HEADER_LEN < input.len(),
        "rustls did not fragment"
    );
    let info = assert_prefixes_need_more("rustls fragmented", &input);
    assert_eq!(info.sni.as_deref(), Some("frag.example.com"));
    assert_eq!(info.alpn, vec![b"h2".to_vec()]);
}

#[test]
fn nine_kb_hello_every_prefix() {
    let input = nine_kb_hello();
    assert!(
        input.len() > 9000 && input.len() < MAX_HELLO_BYTES,
        "{}",
        input.len()
    );
    let info = assert_prefixes_need_more("9kb", &input);
    assert_eq!(info.sni.as_deref(), Some("big.example.com"));
    assert_eq!(info.alpn.len(), 40);
}

#[test]
fn size_limit_is_exact() {
    // Padding (extension 21) sized so that the record ends exactly at MAX_HELLO_BYTES.
    let base = hello(&[sni(b"big.example.com"), ext(21, &[])]).len();
    let padded = |extra: usize| hello(&[sni(b"big.example.com"), ext(21, &vec![0; extra])]);
    let at_limit = padded(MAX_HELLO_BYTES - base);
    assert_eq!(at_limit.len(), MAX_HELLO_BYTES);
    let info = expect_hello("at limit", &at_limit);
    assert_eq!(info.sni.as_deref(), Some("big.example.com"));
    let over = padded(MAX_HELLO_BYTES - base + 1);
    assert_eq!(peek(&over), Peek::Reject(RejectReason::TooLarge));
    // Rejected from the record header alone, before the payload arrives.
    assert_eq!(peek(&over[..5]), Peek::Reject(RejectReason::TooLarge));
}

/// Parses one synthetic hello with these extensions, checking every prefix on the way.
fn info_of(name: &str, extensions: &[Vec<u8>]) -> ClientHelloInfo {
    assert_prefixes_need_more(name, &hello(extensions))
}

#[test]
fn server_names() {
    let long = "a".repeat(253);
    #[rustfmt::skip]
    let cases: [(&str, Vec<u8>, Option<&str>); 9] = [
        ("upper case", sni(b"A.Example.COM"), Some("a.example.com")),
        ("trailing dot", sni(b"a.example.com."), Some("a.example.com")),
        ("ipv4 literal", sni(b"192.0.2.7"), Some("192.0.2.7")),
        ("ipv6 literal", sni(b"2001:db8::1"), Some("2001:db8::1")),
        ("wildcard-looking", sni(b"*.example.com"), Some("*.example.com")),
        ("253 characters", sni(long.as_bytes()), Some(&long)),
        ("no server_name", alpn(&[b"h2"]), None),
        ("unknown name type only", ext(0, &u16_vec(&[1, 0, 1, b'x'])), None),
        ("unknown type, then host", ext(0, &u16_vec(&[1, 0, 1, b'x', 0, 0, 1, b'y'])), Some("y")),
    ];
    for (name, extension, expected) in cases {
        assert_eq!(
            info_of(name, &[extension]).sni.as_deref(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn signature_schemes() {
    let cases: [(&str, &[u16], bool, bool); 6] = [
        ("ecdsa and rsa-pss", &[0x0403, 0x0804], true, true),
        ("ecdsa and ed25519", &[0x0603, 0x0807], true, false),
        ("rsa pkcs1", &[0x0401], false, true),
        ("rsa-pss with pss key", &[0x080b], false, true),
        ("ed25519 and ed448", &[0x0807, 0x0808], false, false),
        ("ecdsa brainpool", &[0x081b], true, false),
    ];
    for (name, schemes, ecdsa, rsa) in cases {
        let info = info_of(name, &[sig_algs(schemes)]);
        assert_eq!((info.offers_ecdsa, info.offers_rsa), (ecdsa, rsa), "{name}");
    }
    let info = info_of("no signature_algorithms", &[sni(b"a.test")]);
    assert_eq!((info.offers_ecdsa, info.offers_rsa), (false, false));
}

#[test]
fn versions_offered() {
    #[rustfmt::skip]
    let cases: [(&str, Option<&[u16]>, u16); 4] = [
        ("tls 1.3 after grease", Some(&[0x3a3a, 0x0304, 0x0303]), TLS13),
        ("tls 1.2 only", Some(&[0x0303]), 0x0303),
        ("only grease and a draft", Some(&[0x0a0a, 0x7f1c]), 0x0303),
        ("no supported_versions", None, 0x0303),
    ];
    for (name, offered, expected) in cases {
        let extensions: Vec<Vec<u8>> = offered.map(versions).into_iter().collect();
        assert_eq!(info_of(name, &extensions).max_version, expected, "{name}");
    }
    let no_block = records(&message(&body_with(None)), &[]);
    let info = expect_hello("no extension block", &no_block);
    assert_eq!((info.max_version, info.sni), (0x0303, None));
}

#[test]
fn alpn_and_ignored_extensions() {
    let info = info_of("alpn order", &[alpn(&[b"http/1.1", b"h2"])]);
    assert_eq!(info.alpn, [b"http/1.1".to_vec(), b"h2".to_vec()]);
    let others = [
        ext(0x0a0a, &[]),     // GREASE
        sni(b"x.test"),       //
        ext(21, &[0; 40]),    // padding
        ext(0xfe0d, &[1, 2]), // encrypted_client_hello
        ext(0xabcd, &[]),     // unknown, empty
    ];
    let info = info_of("grease, padding, ech, unknown", &others);
    assert_eq!((info.sni.as_deref(), info.alpn.len()), (Some("x.test"), 0));
    assert_eq!(info_of("empty extension block", &[]).sni, None);
}

/// Inputs that are not a usable ClientHello, each with the reason it must be counted under.
#[rustfmt::skip]
fn reject_cases() -> Vec<(&'static str, Vec<u8>, RejectReason)> {
    use RejectReason::*;
    let good = message(&body(&[sni(b"a.example.com")]));
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut body = body(&[sni(b"a.example.com")]);
        edit(&mut body);
        records(&message(&body), &[])
    };
    // A body cut short after the random: session id, suites, compression as given.
    let tail = |rest: &[u8]| records(&message(&[&[3, 3][..], &[0; 32], rest].concat()), &[]);
    let hs = |message: &[u8]| record(HANDSHAKE, message);
    let mut sslv2 = vec![0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10];
    sslv2.extend([0; 37]);
    let interleaved = [
        records(&good[..50], &[]),
        record(ALERT, &[1, 0]),
        records(&good[50..], &[]),
    ]
    .concat();
    let mut bad_second_version = records(&good, &[50]);
    bad_second_version[RECORD_HEADER_LEN + 50 + 2] = 9;
    let zero_second = [records(&good[..50], &[]), vec![0x16, 3, 1, 0, 0]].concat();
    let trailing = records(&[&good[..], &[1, 0, 0, 0]].concat(), &[]);
    let two_hosts = ext(0, &u16_vec(&[0, 0, 1, b'a', 0, 0, 1, b'b']));
    vec![
        ("plain http", b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n".to_vec(), NotTls),
        ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), NotTls),
        ("garbage", vec![0, 1, 2, 3, 4, 5, 6, 7], NotTls),
        ("sslv2 hello", sslv2, Sslv2),
        ("sslv2 hello, ssl2 version", vec![0x80, 0x2e, 0x01, 0x00, 0x02], Sslv2),
        ("high bit noise", vec![0xff, 0xff, 0xff, 0xff], NotTls),
        ("high bit, hello type, bad version", vec![0x80, 0x2e, 0x01, 0x07], NotTls),
        ("record claims 20 KiB", vec![0x16, 3, 1, 0x50, 0x00], TooLarge),
        ("record at the TLS maximum", vec![0x16, 3, 1, 0x40, 0x00], TooLarge),
        ("hello claims 16 KiB", hs(&[1, 0, 0x40, 0, 3, 3]), TooLarge),
        ("hello claims 16 MiB", hs(&[1, 0xff, 0xff, 0xff, 3, 3]), TooLarge),
        ("change cipher spec first", record(CHANGE_CIPHER_SPEC, &[1]), NotClientHello),
        ("alert first", record(ALERT, &[2, 40]), NotClientHello),
        ("application data first", record(APPLICATION_DATA, &[0; 30]), NotClientHello),
        ("heartbeat first", record(HEARTBEAT, &[1, 0, 0]), NotClientHello),
        ("alert with ssl3 version", vec![ALERT, 3, 0, 0, 2, 2, 40], NotTls),
        ("alert with bad major", vec![ALERT, 9, 1], NotTls),
        ("server hello", hs(&[2, 0, 0, 38]), NotClientHello),
        ("record version 2.0", vec![0x16, 2, 0, 0, 10], NotTls),
        ("record version ssl 3.0", vec![0x16, 3, 0, 0, 10], NotTls),
        ("record version 3.5", vec![0x16, 3, 5, 0, 10], NotTls),
        ("zero-length record", vec![0x16, 3, 1, 0, 0], Malformed),
        ("alert between fragments", interleaved, Malformed),
        ("bad version in second record", bad_second_version, Malformed),
        ("zero-length second record", zero_second, Malformed),
        ("handshake data after the hello", trailing, Malformed),
        ("body too short", records(&message(&[3, 3, 0]), &[]), Malformed),
        ("empty body", records(&message(&[]), &[]), Malformed),
        ("legacy version 2.0", edited(&|b| b[0] = 2), Malformed),
        ("session id of 33 bytes", edited(&|b| b[34] = 33), Malformed),
        ("odd cipher suites length", tail(&[0, 0, 3, 0x13, 1, 0, 1, 0]), Malformed),
        ("no cipher suites", tail(&[0, 0, 0, 1, 0]), Malformed),
        ("no compression methods", tail(&[0, 0, 2, 0x13, 1, 0]), Malformed),
        ("stray byte after compression", tail(&[0, 0, 2, 0x13, 1, 1, 0, 0]), Malformed),
        ("extension block too long", edited(&|b| *b.last_mut().unwrap() = 0xff), Malformed),
        ("bytes after extension block", edited(&|b| b.push(0)), Malformed),
        ("extension longer than block", hello(&[vec![0, 21, 0, 9, 0]]), Malformed),
        ("truncated extension header", hello(&[vec![0, 21, 0]]), Malformed),
        ("empty server_name", hello(&[ext(0, &[])]), Malformed),
        ("server_name of one byte", hello(&[ext(0, &[0])]), Malformed),
        ("server_name list too long", hello(&[ext(0, &[0, 9, 0, 0, 1, b'a'])]), Malformed),
        ("server_name list too short", hello(&[ext(0, &[0, 3, 0, 0, 1, b'a'])]), Malformed),
        ("empty server_name list", hello(&[ext(0, &[0, 0])]), Malformed),
        ("truncated name entry", hello(&[ext(0, &u16_vec(&[0, 0, 9, b'a']))]), Malformed),
        ("empty host name", hello(&[sni(b"")]), Malformed),
        ("host name is a dot", hello(&[sni(b".")]), Malformed),
        ("host name with a space", hello(&[sni(b"a b.example.com")]), Malformed),
        ("host name with a NUL", hello(&[sni(b"a.example.com\0.evil")]), Malformed),
        ("host name in raw utf-8", hello(&[sni("bücher.example".as_bytes())]), Malformed),
        ("254-char host name", hello(&[sni(&[b'a'; 254])]), Malformed),
        ("two host names", hello(&[two_hosts]), Malformed),
        ("two server_name extensions", hello(&[sni(b"a.test"), sni(b"b.test")]), Malformed),
        ("empty alpn extension", hello(&[ext(16, &[])]), Malformed),
        ("empty alpn list", hello(&[ext(16, &[0, 0])]), Malformed),
        ("empty protocol name", hello(&[alpn(&[b"h2", b""])]), Malformed),
        ("alpn list too short", hello(&[ext(16, &[0, 2, 2, b'h', b'2'])]), Malformed),
        ("two alpn extensions", hello(&[alpn(&[b"h2"]), alpn(&[b"h2"])]), Malformed),
        ("odd signature_algorithms", hello(&[ext(13, &[0, 3, 4, 3, 8])]), Malformed),
        ("empty signature_algorithms", hello(&[sig_algs(&[])]), Malformed),
        ("two signature_algorithms", hello(&[sig_algs(&[0x0403]), sig_algs(&[1])]), Malformed),
        ("odd supported_versions", hello(&[ext(43, &[3, 3, 4, 3])]), Malformed),
        ("empty supported_versions", hello(&[versions(&[])]), Malformed),
        ("supported_versions + extra", hello(&[ext(43, &[2, 3, 4, 0])]), Malformed),
    ]
}

#[test]
fn rejects() {
    for (name, input, reason) in reject_cases() {
        assert_eq!(
            assert_monotone(name, &input),
            Peek::Reject(reason),
            "{name}"
        );
    }
}

#[test]
fn early_rejects_need_only_a_few_bytes() {
    let cases: [(&[u8], Peek); 8] = [
        (b"G", Peek::Reject(RejectReason::NotTls)),
        (&[0x16, b'E'], Peek::Reject(RejectReason::NotTls)),
        (
            &[0x16, 3, 1, 0, 200, 2],
            Peek::Reject(RejectReason::NotClientHello),
        ),
        (&[0x15], Peek::NeedMore(1)),
        (&[0x15, 3], Peek::NeedMore(1)),
        (&[0x80], Peek::NeedMore(2)),
        (&[0x16, 3], Peek::NeedMore(3)),
        (&[], Peek::NeedMore(5)),
    ];
    for (input, expected) in cases {
        assert_eq!(peek(input), expected, "{input:?}");
    }
}

#[test]
fn slugs() {
    use RejectReason::*;
    let slugs = [
        (NotTls, "not_tls"),
        (Sslv2, "sslv2"),
        (Malformed, "malformed"),
        (TooLarge, "too_large"),
        (NotClientHello, "not_client_hello"),
    ];
    for (reason, slug) in slugs {
        assert_eq!(reason.as_str(), slug);
        assert_eq!(reason.to_string(), slug);
        assert_eq!(PeekError::Rejected(reason).slug(), slug);
    }
    assert_eq!(PeekError::Timeout.slug(), "timeout");
    assert_eq!(PeekError::Eof.slug(), "eof");
    assert_eq!(
        PeekError::Io(io::ErrorKind::ConnectionReset.into()).slug(),
        "io"
    );
}

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len());
        match rng.below(6) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.byte(),
            2 => input[at] = [0, 0xff, 1, 0x80][rng.below(4)],
            3 => input.truncate(at),
            4 => {
                let to = (at + rng.below(64)).min(input.len());
                let copy = input[at..to].to_vec();
                input.splice(at..at, copy);
            }
            _ => {
                // Nudge a plausible length field.
                if at + 1 < input.len() {
                    let v = u16::from_be_bytes([input[at], input[at + 1]]);
                    let v = v.wrapping_add([1, 0xffff, 2, 0xfffe][rng.below(4)]);
                    input[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        if input.is_empty() {
            return;
        }
    }
}

#[test]
fn fuzz_never_panics_and_stays_monotone() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let multi = records(message_of(CURL), &[7, 300]);
    let seeds: Vec<&[u8]> = vec![CURL, OPENSSL, NO_SNI, RUSTLS_PQ, &multi];
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..6000 {
        let input = if round % 2 == 0 {
            let mut input = seeds[rng.below(seeds.len())].to_vec();
            mutate(&mut rng, &mut input);
            input
        } else {
            let len = rng.below(700);
            let mut input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if round % 4 == 1 && len >= 9 {
                // A plausible handshake record header and message header.
                let header = [0x16, 3, 1, input[3] & 0x3, input[4], 1];
                input[..6].copy_from_slice(&header);
            }
            input
        };
        let whole = peek(&input);
        for _ in 0..8 {
            let len = rng.below(input.len() + 1);
            let part = peek(&input[..len]);
            let consistent = match (&part, &whole) {
                (Peek::NeedMore(more), Peek::Hello(_)) => len + more <= input.len(),
                (Peek::NeedMore(_), _) => true,
                (part, whole) => part == whole,
            };
            assert!(
                consistent,
                "round {round}: prefix {len} {part:?} vs {whole:?}"
            );
        }
        let label = match whole {
            Peek::Hello(_) => "hello".to_owned(),
            Peek::NeedMore(_) => "need_more".to_owned(),
            Peek::Reject(reason) => reason.as_str().to_owned(),
        };
        *outcomes.entry(label).or_default() += 1;
    }
    // The inputs reach deep into the parser, not only the first byte.
    for outcome in [
        "hello",
        "need_more",
        "malformed",
        "not_tls",
        "not_client_hello",
    ] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) > 10,
            "{outcomes:?}"
        );
    }
}

// ---- the reader ----

/// Hands out the queued chunks one read at a time, then EOF.
struct Chunks(VecDeque<Vec<u8>>);

impl Chunks {
    fn split(input: &[u8], cuts: &[usize]) -> Self {
        let mut chunks = VecDeque::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&input.len()]) {
            if to > from {
                chunks.push_back(input[from..to].to_vec());
                from = to;
            }
        }
        Self(chunks)
    }
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.0.front_mut() {
            let n = chunk.len().min(out.remaining());
            out.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Fails every read.
struct Broken;

impl AsyncRead for Broken {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const PATIENT: Duration = Duration::from_secs(10);

async fn read_chunks(
    input: &[u8],
    cuts: &[usize],
) -> (Result<ClientHelloInfo, PeekError>, BytesMut) {
    let mut buf = BytesMut::new();
    let result = read_client_hello(
        &mut Chunks::split(input, cuts),
        &mut buf,
        PATIENT,
        MAX_HELLO_BYTES,
    )
    .await;
    (result, buf)
}

#[test]
fn reader_at_every_split_point_and_byte_by_byte() {
    let nine_kb = nine_kb_hello();
    let inputs = CAPTURES
        .iter()
        .map(|c| (c.name, c.bytes))
        .chain([("9kb", nine_kb.as_slice())]);
    runtime().block_on(async {
        for (name, input) in inputs {
            let expected = expect_hello(name, input);
            for cut in 1..input.len() {
                let (result, buf) = read_chunks(input, &[cut]).await;
                assert_eq!(result.unwrap(), expected, "{name} cut at {cut}");
                assert_eq!(&buf[..], input, "{name}: the buffer replays the hello");
            }
            let cuts: Vec<usize> = (1..input.len()).collect();
            let (result, buf) = read_chunks(input, &cuts).await;
            assert_eq!(result.unwrap(), expected, "{name} byte by byte");
            assert_eq!(&buf[..], input);
        }
    });
}

#[test]
fn reader_buffer_starts_at_two_kib_and_is_reusable() {
    runtime().block_on(async {
        let mut buf = BytesMut::new();
        let mut io = Chunks::split(CURL, &[]);
        read_client_hello(&mut io, &mut buf, PATIENT, MAX_HELLO_BYTES)
            .await
            .unwrap();
        assert_eq!(buf.capacity(), READ_STEP);
        buf.clear();
        let mut io = Chunks::split(OPENSSL, &[100]);
        let info = read_client_hello(&mut io, &mut buf, PATIENT, MAX_HELLO_BYTES)
            .await
            .unwrap();
        assert_eq!(info.sni.as_deref(), Some("b.example.com"));
        assert_eq!(
            buf.capacity(),
            READ_STEP,
            "no new allocation for a reused buffer"
        );
    });
}

#[test]
fn reader_across_records_over_a_duplex() {
    runtime().block_on(async {
        let input = records(message_of(RUSTLS_PQ), &[700]);
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = input.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(333) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client // keep the connection open
        });
        let mut buf = BytesMut::new();
        let info = read_client_hello(&mut server, &mut buf, PATIENT, MAX_HELLO_BYTES)
            .await
            .unwrap();
        assert_eq!(
            info.sni.as_deref(),
            Some("pq-checkout.eu-west-1.shop.c.example.com")
        );
        assert_eq!(&buf[..], &input[..]);
        drop(writer.await.unwrap());
    });
}

#[test]
fn reader_errors() {
    runtime().block_on(async {
        for capture in CAPTURES {
            for len in 0..capture.bytes.len() {
                let truncated = &capture.bytes[..len];
                let (result, buf) = read_chunks(truncated, &[len / 2]).await;
                assert!(
                    matches!(result, Err(PeekError::Eof)),
                    "{} at {len}",
                    capture.name
                );
                assert_eq!(&buf[..], truncated);
            }
        }
        let mut sslv2 = vec![0x80, 0x2e, 0x01, 0x03, 0x01];
        sslv2.extend([0; 43]);
        let cases: [(&str, Vec<u8>, &str); 7] = [
            (
                "plain http",
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                "not_tls",
            ),
            ("garbage", vec![0x42; 100], "not_tls"),
            ("sslv2", sslv2, "sslv2"),
            (
                "20 KiB record",
                [&[0x16, 3, 1, 0x50, 0][..], &[0; 3000]].concat(),
                "too_large",
            ),
            ("alert", record(ALERT, &[2, 40]), "not_client_hello"),
            ("malformed", hello(&[sni(b"")]), "malformed"),
            ("nothing", vec![], "eof"),
        ];
        for (name, input, slug) in cases {
            let (result, _) = read_chunks(&input, &[input.len() / 2]).await;
            assert_eq!(result.unwrap_err().slug(), slug, "{name}");
        }
        let mut buf = BytesMut::new();
        let result = read_client_hello(&mut Broken, &mut buf, PATIENT, MAX_HELLO_BYTES).await;
        assert!(matches!(result, Err(PeekError::Io(_))));
    });
}

#[test]
fn reader_never_buffers_more_than_the_limit() {
    // A 3 KB hello in one-byte records needs 18 KB: rejected once the records pass 16 KiB.
    let message = message(&body(&[ext(21, &[0; 3000])]));
    let cuts: Vec<usize> = (1..message.len()).collect();
    let input = records(&message, &cuts);
    runtime().block_on(async {
        let (result, buf) = read_chunks(&input, &[1000, 9000]).await;
        assert!(matches!(
            result,
            Err(PeekError::Rejected(RejectReason::TooLarge))
        ));
        assert!(buf.len() <= MAX_HELLO_BYTES, "{}", buf.len());
    });
}

#[test]
fn reader_times_out() {
    runtime().block_on(async {
        // Sends nothing; then sends half a hello and stalls. The peer stays connected.
        for sent in [&[][..], &CURL[..200]] {
            let (mut client, mut server) = tokio::io::duplex(4096);
            client.write_all(sent).await.unwrap();
            let mut buf = BytesMut::new();
            let started = tokio::time::Instant::now();
            let result = read_client_hello(
                &mut server,
                &mut buf,
                Duration::from_millis(50),
                MAX_HELLO_BYTES,
            )
            .await;
            assert!(matches!(result, Err(PeekError::Timeout)), "{result:?}");
            assert!(started.elapsed() >= Duration::from_millis(50));
            assert_eq!(&buf[..], sent);
            drop(client);
        }
    });
}

#[test]
fn reader_refuses_a_hello_past_the_configured_limit() {
    let input = nine_kb_hello();
    runtime().block_on(async {
        for max in [4096, input.len() - 1] {
            let mut buf = BytesMut::new();
            let mut io = Chunks::split(&input, &[1000, 5000]);
            let result = read_client_hello(&mut io, &mut buf, PATIENT, max).await;
            assert!(
                matches!(result, Err(PeekError::Rejected(RejectReason::TooLarge))),
                "max {max}: {result:?}"
            );
            assert!(buf.len() <= max, "read {} past the limit {max}", buf.len());
        }
        let mut buf = BytesMut::new();
        let mut io = Chunks::split(&input, &[1000, 5000]);
        let info = read_client_hello(&mut io, &mut buf, PATIENT, input.len()).await;
        assert_eq!(info.unwrap().sni.as_deref(), Some("big.example.com"));
    });
}
