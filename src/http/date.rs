//! The `date` field of responses: formatted once a second per thread, as hyper caches it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
const LEN: usize = 29;

thread_local! {
    static CACHED: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// Appends the current time as an HTTP date.
pub fn extend(dst: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            } else {
                dst.extend_from_slice(text.as_bytes());
                return;
            }
        }
        dst.extend_from_slice(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_an_http_date_and_reuses_it_within_the_second() {
        let mut first = bytes::BytesMut::new();
        super::extend(&mut first);
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&first).unwrap()).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age.as_secs() < 5, "{first:?}");
        let mut second = bytes::BytesMut::new();
        super::extend(&mut second);
        assert_eq!(second.len(), super::LEN);
    }
}
