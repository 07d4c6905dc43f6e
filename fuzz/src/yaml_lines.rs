//! A test oracle shared by the fuzz targets and `tests/fuzz_regressions.rs` (which includes this
//! file by path): independent of tollgate's own line counting on purpose.

/// Lines as YAML (libyaml, YAML 1.1) counts them: CR, LF, CRLF, NEL, LS and PS all break lines.
pub fn yaml_lines(text: &str) -> u32 {
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                count += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => count += 1,
            _ => {}
        }
    }
    count + 1
}
