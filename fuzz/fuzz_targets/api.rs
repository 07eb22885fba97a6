//! The API's request steps never panic on untrusted input: headers, declared length, token,
//! route (method, path, query) and the body parsed as its command's type.
//! Input: method, URL, then header lines `name: value`, an empty line, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let url = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let rest = parts.next().unwrap_or_default();
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let headers: Vec<(&[u8], &[u8])> = head
        .split(|b| *b == b'\n')
        .filter_map(|l| {
            let i = l.iter().position(|b| *b == b':')?;
            Some((&l[..i], l[i + 1..].trim_ascii()))
        })
        .collect();
    let _ = berth::api::check_untrusted(&method, &url, &headers, body, "0123456789abcdef");
});
