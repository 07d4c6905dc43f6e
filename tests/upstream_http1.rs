//! HTTP/1.1 to upstreams, end to end on loopback with curl: bodies that stream both ways in
//! many pieces, chunked framing, and an upstream that answers before it has read the request
//! body. The upstreams are raw-socket servers written here, so the bytes on the wire are the
//! test's own, not another HTTP library's.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use support::*;

const HOST: &str = "h1.example.com";
const SE_HOST: &str = "backend.h1.internal";

/// A gateway routing [`HOST`] to `upstream` without retries, so request bodies stream.
fn world(upstream: &TcpServer) -> World {
    let files = [
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "se.yaml",
            service_entry_80("backend", SE_HOST, &[(upstream.addr, vec![])]),
        ),
        (
            "vs.yaml",
            vs("h1", HOST, &rule(SE_HOST, "    retries: {attempts: 0}\n")),
        ),
    ];
    World::start(&[], Vec::new(), &files)
}

/// Reads a request head; returns its lines, lower-cased.
fn read_head(reader: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return lines;
        }
        lines.push(line.trim_end().to_ascii_lowercase());
    }
}

/// Reads a chunked body to its end; its bytes.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).unwrap();
        let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        assert_eq!(&chunk[size..], b"\r\n", "chunk data ends in CRLF");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A body of `len` bytes that is not one repeated byte, so a lost or doubled piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_chunked_upload_and_a_chunked_download_stream_through_whole() {
    const UP: usize = 3 << 20;
    const DOWN_CHUNK: usize = 1000;
    const DOWN_CHUNKS: usize = 2000;
    let upstream = TcpServer::start(|stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader);
        assert!(
            head.contains(&"transfer-encoding: chunked".to_string()),
            "{head:?}"
        );
        let body = read_chunked(&mut reader);
        let verdict = if body == pattern(UP) {
            "same"
        } else {
            "different"
        };
        let mut out =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upload: {verdict}\r\n\r\n")
                .into_bytes();
        let download = pattern(DOWN_CHUNKS * DOWN_CHUNK);
        for (i, piece) in download.chunks(DOWN_CHUNK).enumerate() {
            out.extend_from_slice(format!("{DOWN_CHUNK:x};i={i}\r\n").as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nx-trailer: dropped\r\n\r\n");
        let _ = writer.write_all(&out);
    });
    let w = world(&upstream);
    let dir = tempfile::tempdir().unwrap();
    let (upload, download) = (dir.path().join("up"), dir.path().join("down"));
    std::fs::write(&upload, pattern(UP)).unwrap();
    let out = curl(&[
        "--resolve",
        &format!("{HOST}:{}:127.0.0.1", w.addr.port()),
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", upload.display()),
        "-o",
        &download.display().to_string(),
        &format!("http://{HOST}:{}/upload", w.addr.port()),
    ]);
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        out.header("x-upload"),
        Some("same"),
        "the upstream got the upload whole"
    );
    let got = std::fs::read(&download).unwrap();
    assert_eq!(got.len(), DOWN_CHUNKS * DOWN_CHUNK);
    assert!(
        got == pattern(DOWN_CHUNKS * DOWN_CHUNK),
        "the download came whole, in order"
    );
}

#[test]
fn an_upstream_that_answers_before_reading_the_body_is_heard() {
    let upstream = TcpServer::start(|stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        read_head(&mut reader);
        let _ = writer.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
        );
        let _ = writer.shutdown(Shutdown::Write);
        // Drain (bounded by the read timeout) so that closing does not reset the connection.
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(reader.get_mut().read(&mut sink), Ok(n) if n > 0) {}
    });
    let w = world(&upstream);
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("up");
    std::fs::write(&upload, pattern(16 << 20)).unwrap();
    let out = curl(&[
        "--resolve",
        &format!("{HOST}:{}:127.0.0.1", w.addr.port()),
        "--data-binary",
        &format!("@{}", upload.display()),
        &format!("http://{HOST}:{}/upload", w.addr.port()),
    ]);
    assert_eq!(out.status, 413, "{out:?}");
    assert_eq!(out.body, "too big!");
}
