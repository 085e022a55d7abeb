//! `multipart/form-data` (RFC 7578) as the SDK's `files.write` sends it: one part per
//! file, `name="file"`, the target path as its `filename`.

/// One part: its form name, filename and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub body: Vec<u8>,
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `body` into its parts; `Err` says what is malformed.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    let start = find(rest, delimiter.as_bytes()).ok_or("the body has no opening boundary")?;
    rest = &rest[start + delimiter.len()..];
    let next_delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or("a boundary is not followed by a line break")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part's headers do not end")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "a part's headers are not UTF-8")?;
        rest = &rest[head_end + 4..];
        let body_end = find(rest, next_delimiter.as_bytes()).ok_or("a part is not closed by a boundary")?;
        let (name, filename) = disposition(head);
        parts.push(Part { name, filename, body: rest[..body_end].to_vec() });
        rest = &rest[body_end + next_delimiter.len()..];
    }
}

/// `name` and `filename` of a part's `Content-Disposition`.
fn disposition(head: &str) -> (Option<String>, Option<String>) {
    let Some(line) = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:")) else {
        return (None, None);
    };
    let param = |key: &str| {
        line.split(';').skip(1).find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| unquote(v.trim()))
        })
    };
    (param("name"), param("filename"))
}

/// A quoted-string value (`"a\"b"` → `a"b`), or a token as it is.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else { return v.to_string() };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_upload_parses_into_its_files() {
        let ct = "multipart/form-data; boundary=b8f1";
        let body = b"--b8f1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/x/a.txt\"\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n--b8f1\r\nContent-Disposition: form-data; name=\"file\"; \
filename=\"b\\\"q.bin\"\r\n\r\n\x00\xff\r\n--\r\n--b8f1--\r\n";
        let parts = parse(body, &boundary(ct).unwrap()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_deref(), parts[0].filename.as_deref()), (Some("file"), Some("/tmp/x/a.txt")));
        assert_eq!(parts[0].body, b"hello");
        assert_eq!(parts[1].filename.as_deref(), Some("b\"q.bin"));
        assert_eq!(parts[1].body, b"\x00\xff\r\n--", "bytes that merely look like a boundary stay data");
    }

    #[test]
    fn malformed_bodies_and_other_types_are_refused() {
        assert_eq!(boundary("application/octet-stream"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"q\"").as_deref(), Some("q"));
        assert!(parse(b"no boundary here", "b").is_err());
        assert!(parse(b"--b\r\nContent-Disposition: form-data\r\n\r\nunterminated", "b").is_err());
        assert_eq!(parse(b"--b--\r\n", "b").unwrap(), vec![]);
    }
}
