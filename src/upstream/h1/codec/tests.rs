use super::*;
use http::Request;

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(()).unwrap().into_parts().0
}

fn encoded(parts: &Parts, body: BodySize) -> (String, Framing) {
    let mut dst = Vec::new();
    let framing = encode_request(parts, body, &mut dst);
    (String::from_utf8(dst).unwrap(), framing)
}

#[test]
fn a_bodiless_get_goes_out_as_its_line_and_fields() {
    let p = parts(
        "GET",
        "/a/b?c=d",
        &[("host", "web"), ("x-one", "1"), ("x-one", "2")],
    );
    let (head, framing) = encoded(&p, BodySize::Empty);
    assert_eq!(
        head,
        "GET /a/b?c=d HTTP/1.1\r\nhost: web\r\nx-one: 1\r\nx-one: 2\r\n\r\n"
    );
    assert_eq!(framing, Framing::Empty);
}

#[test]
fn request_bodies_are_framed_as_hyper_frames_them() {
    // A known size gets a Content-Length; a valid one already there is kept, not repeated.
    let (head, framing) = encoded(&parts("POST", "/", &[("host", "h")]), BodySize::Exact(5));
    assert!(
        head.ends_with("host: h\r\ncontent-length: 5\r\n\r\n"),
        "{head}"
    );
    assert_eq!(framing, Framing::Length(5));
    let p = parts("PUT", "/", &[("content-length", "7")]);
    let (head, framing) = encoded(&p, BodySize::Unknown);
    assert_eq!(head.matches("content-length").count(), 1, "{head}");
    assert_eq!(framing, Framing::Length(7));
    // An unknown size is chunked, and an invalid length dropped; GET sends no body.
    let p = parts(
        "POST",
        "/",
        &[("content-length", "x"), ("transfer-encoding", "gzip")],
    );
    let (head, framing) = encoded(&p, BodySize::Unknown);
    assert_eq!(
        head,
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(framing, Framing::Chunked);
    let (head, framing) = encoded(&parts("GET", "/", &[]), BodySize::Unknown);
    assert_eq!(head, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(framing, Framing::Empty);
    // An empty body keeps the client's `content-length: 0`.
    let p = parts("POST", "/", &[("content-length", "0")]);
    let (head, framing) = encoded(&p, BodySize::Empty);
    assert!(head.contains("content-length: 0\r\n"), "{head}");
    assert_eq!(framing, Framing::Empty);
}

fn parse(raw: &str, head_request: bool) -> (Result<Option<ResponseHead>, HeadError>, BytesMut) {
    let mut buf = BytesMut::from(raw);
    let parsed = parse_response(&mut buf, head_request, &mut HeadScratch::default());
    (parsed, buf)
}

fn head(raw: &str) -> ResponseHead {
    parse(raw, false).0.unwrap().unwrap()
}

#[test]
fn a_response_head_is_taken_off_the_buffer_and_the_body_left() {
    let (parsed, rest) = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhelloHTTP/1.1",
        false,
    );
    let head = parsed.unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&rest[..], b"helloHTTP/1.1");
}

#[test]
fn an_incomplete_head_waits_and_an_oversized_one_is_refused() {
    let (parsed, rest) = parse("HTTP/1.1 200 OK\r\nContent-Le", false);
    assert!(parsed.unwrap().is_none());
    assert_eq!(rest.len(), 27, "the partial head stays for the next read");
    let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(parse(&huge, false).0.unwrap_err(), HeadError::TooLarge);
    assert!(matches!(
        parse("HTTP/1.1 2OO OK\r\n\r\n", false).0,
        Err(HeadError::Malformed(_))
    ));
}

#[test]
fn response_framing_follows_rfc_9112() {
    let framing = |raw: &str| head(raw).framing;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"),
        Framing::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"),
        Framing::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n"),
        Framing::Length(4)
    );
    let head_response = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).0;
    assert_eq!(head_response.unwrap().unwrap().framing, Framing::Empty);
    // No length: the body runs to the close, and the connection cannot be reused.
    let until_close = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(until_close.framing, Framing::UntilClose);
    assert!(!until_close.keep_alive);
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
    for bad in ["3, 4", "-1", "", "0x10", "99999999999999999999"] {
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert!(
            matches!(parse(&raw, false).0, Err(HeadError::Malformed(_))),
            "content-length {bad:?}"
        );
    }
}

#[test]
fn keep_alive_is_http_1_1_without_close_or_1_0_that_asks() {
    let keep = |raw: &str| head(raw).keep_alive;
    assert!(!keep(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!keep(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x, close\r\n\r\n"
    ));
    assert!(!keep("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(keep(
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(keep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!keep(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
}

#[test]
fn fields_about_this_hop_only_are_read_but_not_passed_on() {
    let head = head(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, Upgrade\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: 1\r\n\r\n",
    );
    assert_eq!(head.framing, Framing::Chunked);
    assert!(head.keep_alive);
    let names: Vec<_> = head.headers.keys().map(|n| n.as_str()).collect();
    // `Upgrade` stays for the proxy to judge (a 101 keeps it).
    assert_eq!(names, ["upgrade", "x-kept"]);
    // A `Connection` naming other fields stays, for the proxy to remove them.
    let head = self::head(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close, x-private\r\nX-Private: 1\r\n\r\n",
    );
    assert!(!head.keep_alive);
    assert_eq!(head.headers["connection"], "close, x-private");
    assert!(head.headers.contains_key("x-private"));
}

#[test]
fn field_names_remembered_from_the_last_head_never_stand_for_other_names() {
    let mut scratch = HeadScratch::default();
    let mut next = |raw: &str| {
        let mut buf = BytesMut::from(raw);
        let head = parse_response(&mut buf, false, &mut scratch)
            .unwrap()
            .unwrap();
        let mut fields: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        fields.sort();
        fields
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let first =
        next("HTTP/1.1 200 OK\r\nContent-Type: a\r\nX-Backend: one\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        first,
        pairs(&[
            ("content-length", "0"),
            ("content-type", "a"),
            ("x-backend", "one")
        ])
    );
    // The same names in other cases, one other name in the middle.
    let second =
        next("HTTP/1.1 200 OK\r\ncontent-type: b\r\nX-Backenc: two\r\nCONTENT-LENGTH: 0\r\n\r\n");
    assert_eq!(
        second,
        pairs(&[
            ("content-length", "0"),
            ("content-type", "b"),
            ("x-backenc", "two")
        ])
    );
    // Moved: every name is where the last head had another one.
    let third =
        next("HTTP/1.1 200 OK\r\nX-Backenc: 3\r\nContent-Length: 0\r\nContent-Type: c\r\n\r\n");
    assert_eq!(
        third,
        pairs(&[
            ("content-length", "0"),
            ("content-type", "c"),
            ("x-backenc", "3")
        ])
    );
    // A name the parser refuses is refused though a valid one stood at its place.
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nX-Backenc: 3\r\nContent-Length: 0\r\n\r\n");
    parse_response(&mut buf, false, &mut scratch)
        .unwrap()
        .unwrap();
    let mut bad = BytesMut::from("HTTP/1.1 200 OK\r\nX-Back{nc: 3\r\n\r\n");
    assert!(parse_response(&mut bad, false, &mut scratch).is_err());
}

#[test]
fn a_long_field_name_is_parsed_each_time_and_displaces_nothing() {
    let long = "X-".to_owned() + &"a".repeat(40);
    let raw = format!("HTTP/1.1 200 OK\r\nServer: s\r\n{long}: 1\r\nContent-Length: 0\r\n\r\n");
    let mut scratch = HeadScratch::default();
    for _ in 0..2 {
        let mut buf = BytesMut::from(raw.as_str());
        let head = parse_response(&mut buf, false, &mut scratch)
            .unwrap()
            .unwrap();
        assert_eq!(head.headers[long.to_ascii_lowercase().as_str()], "1");
        assert_eq!(head.headers["server"], "s");
        assert_eq!(head.framing, Framing::Length(0));
    }
}
