use super::*;

/// Feeds `wire` to a decoder `split` bytes at a time; the data it yields, and whether it ended.
fn decode(mut decoder: Decoder, wire: &[u8], split: usize) -> Result<(Vec<u8>, bool), BodyError> {
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in wire.chunks(split) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.step(&mut buf)? {
                Step::Data(bytes) => data.extend_from_slice(&bytes),
                Step::More => break,
                Step::End => return Ok((data, true)),
            }
        }
    }
    Ok((data, false))
}

const CHUNKED: &[u8] =
    b"5\r\nhello\r\n6;name=value\r\n world\r\nA \r\n, chunked!\r\n0\r\nx-trailer: t\r\n\r\n";

#[test]
fn a_chunked_body_decodes_however_its_bytes_arrive() {
    for split in 1..=CHUNKED.len() {
        let (data, ended) = decode(Decoder::Chunked(Chunk::Size), CHUNKED, split).unwrap();
        assert_eq!(data, b"hello world, chunked!", "split {split}");
        assert!(ended, "split {split}");
    }
}

#[test]
fn the_last_piece_of_data_ends_the_body_when_the_framing_is_already_read() {
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\n"[..]);
    let mut decoder = Decoder::Chunked(Chunk::Size);
    assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == "abc"));
    assert!(decoder.settle(&mut buf), "the terminator was in the buffer");
    assert!(buf.is_empty());
    // Not yet there: the body has not ended, and settling waits for more.
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r"[..]);
    let mut decoder = Decoder::Chunked(Chunk::Size);
    assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(_))));
    assert!(!decoder.settle(&mut buf));
}

#[test]
fn malformed_chunked_framing_is_an_error() {
    let cases: [&[u8]; 6] = [
        b"zz\r\n",
        b"5\r\nhelloXX",
        b"5\nhello\r\n",
        b"5 x\r\n",
        b"11111111111111111\r\n",
        b"0\r\nx-t: 1\n\r\n",
    ];
    for wire in cases {
        assert!(
            decode(Decoder::Chunked(Chunk::Size), wire, wire.len()).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let endless = vec![b'1'; MAX_CHUNK_LINE + 2];
    assert!(decode(Decoder::Chunked(Chunk::Size), &endless, 1024).is_err());
}

#[test]
fn a_length_body_ends_at_its_length_and_leaves_what_follows() {
    let mut buf = BytesMut::from(&b"0123456789NEXT"[..]);
    let mut decoder = Decoder::Length(10);
    assert!(matches!(decoder.step(&mut buf), Ok(Step::Data(d)) if d == "0123456789"));
    assert!(decoder.settle(&mut buf));
    assert!(matches!(decoder.step(&mut buf), Ok(Step::End)));
    assert_eq!(&buf[..], b"NEXT");
    let (data, ended) = decode(Decoder::Length(4), b"abcdef", 1).unwrap();
    assert_eq!((data.as_slice(), ended), (&b"abcd"[..], true));
}

#[test]
fn a_body_until_close_takes_everything_and_never_ends_by_itself() {
    let (data, ended) = decode(Decoder::UntilClose, b"all of it", 3).unwrap();
    assert_eq!(data, b"all of it");
    assert!(!ended);
}
