//! The client page: files embedded in the binary (the default) or read from a `--www` folder.
//!
//! A request path becomes a file in three steps: [`sanitize`] turns the percent-encoded path
//! into a plain relative name or refuses it, then the name is looked up in the embedded table
//! or joined to the canonical `--www` root, and for a folder the canonical result must still lie
//! under the root (so a symlink cannot lead out) and be a regular file.
//!
//! **Invariant:** no request path reaches a file outside the page's folder; only names made of
//! non-empty segments that do not start with `.` are ever looked up.

pub use crate::response::Body;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The files compiled into the binary. A unit test below checks this list against `www/`.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../www/index.html")),
    ("app.js", include_bytes!("../www/app.js")),
    ("style.css", include_bytes!("../www/style.css")),
    ("favicon.svg", include_bytes!("../www/favicon.svg")),
    ("hub.js", include_bytes!("../www/hub.js")),
    ("dashboard.html", include_bytes!("../www/dashboard.html")),
    ("dashboard.js", include_bytes!("../www/dashboard.js")),
];

/// Files larger than this are not served from a `--www` folder (they would be held in memory).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A file ready to send.
#[derive(Clone, Debug)]
pub struct File {
    pub body: Body,
    pub content_type: &'static str,
    /// A strong entity tag, quotes included.
    pub etag: Arc<str>,
}

enum Source {
    Embedded(Vec<(&'static str, File)>),
    Dir {
        root: PathBuf,
        cache: Mutex<HashMap<PathBuf, (SystemTime, u64, File)>>,
    },
}

/// The page's files. Shared by every event loop.
pub struct StaticFiles {
    source: Source,
}

impl StaticFiles {
    /// The files compiled into the binary.
    pub fn embedded() -> Self {
        let files = EMBEDDED
            .iter()
            .map(|&(name, bytes)| {
                let file = File {
                    body: Body::Static(bytes),
                    content_type: content_type(name),
                    etag: etag_of(bytes),
                };
                (name, file)
            })
            .collect();
        StaticFiles {
            source: Source::Embedded(files),
        }
    }

    /// The files under `dir`, read when requested (and cached until they change).
    pub fn dir(dir: &Path) -> std::io::Result<Self> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(StaticFiles {
            source: Source::Dir {
                root,
                cache: Mutex::new(HashMap::new()),
            },
        })
    }

    /// The file for a request path (percent-encoded, without the query), or `None` (404).
    pub fn lookup(&self, path: &str) -> Option<File> {
        let name = sanitize(path)?;
        match &self.source {
            Source::Embedded(files) => files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f.clone()),
            Source::Dir { root, cache } => read_under(root, &name, cache),
        }
    }
}

fn read_under(
    root: &Path,
    name: &str,
    cache: &Mutex<HashMap<PathBuf, (SystemTime, u64, File)>>,
) -> Option<File> {
    let real = root.join(name).canonicalize().ok()?;
    if !real.starts_with(root) {
        return None;
    }
    let meta = std::fs::metadata(&real).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, len, file)) = cache.get(&real) {
        if *t == mtime && *len == meta.len() {
            return Some(file.clone());
        }
    }
    let bytes: Arc<[u8]> = std::fs::read(&real).ok()?.into();
    let file = File {
        content_type: content_type(name),
        etag: etag_of(&bytes),
        body: Body::Shared(bytes),
    };
    cache.insert(real, (mtime, meta.len(), file.clone()));
    Some(file)
}

/// A request path as a safe relative file name, or `None` when it must be refused (404).
///
/// `/` is `index.html`. Refused: anything but a leading `/`; a bad or encoded `/` or `\`
/// (`%2F`, `%5C`); NUL or other control bytes; a decoded result that is not UTF-8 (overlong
/// encodings included); an empty segment, or one starting with `.` (`.`, `..`, dotfiles); a
/// trailing `/` (a directory).
pub fn sanitize(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some("index.html".to_owned());
    }
    let bytes = rest.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let v = hi << 4 | lo;
            if v == b'/' || v == b'\\' {
                return None;
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return None;
    }
    let name = String::from_utf8(decoded).ok()?;
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return None;
    }
    Some(name)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `Content-Type` for a file name, UTF-8 for text.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A strong entity tag from the content (FNV-1a, 64 bits), so it survives restarts.
pub fn etag_of(bytes: &[u8]) -> Arc<str> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{:x}\"", bytes.len()).into()
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, RFC 9110 13.1.2).
pub fn none_match(header: &[u8], etag: &str) -> bool {
    let tag = etag.as_bytes();
    header.split(|&b| b == b',').any(|candidate| {
        let c = candidate.trim_ascii();
        c == b"*" || c.strip_prefix(b"W/").unwrap_or(c) == tag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_accepts_plain_names() {
        assert_eq!(sanitize("/").as_deref(), Some("index.html"));
        assert_eq!(sanitize("/app.js").as_deref(), Some("app.js"));
        assert_eq!(sanitize("/img/a%20b.png").as_deref(), Some("img/a b.png"));
        assert_eq!(sanitize("/%E4%B8%AD.txt").as_deref(), Some("中.txt"));
    }

    #[test]
    fn sanitize_refuses_escapes() {
        for bad in [
            "",
            "app.js",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%2fetc",
            "/..%5cetc",
            "/..\\etc",
            "/a%00b",
            "/a%0ab",
            "/%c0%ae%c0%ae/etc", // overlong '.'
            "/%c0%af",           // overlong '/'
            "/.env",
            "/.git/config",
            "/a//b",
            "/dir/",
            "/%zz",
            "/%4",
        ] {
            assert_eq!(sanitize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_file_in_www_is_embedded() {
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let mut on_disk: Vec<String> = std::fs::read_dir(&www)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        on_disk.sort();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "www/ and static_files::EMBEDDED must list the same files"
        );
    }

    #[test]
    fn embedded_lookup() {
        let files = StaticFiles::embedded();
        let index = files.lookup("/").expect("index.html is embedded");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(index.etag.starts_with('"') && index.etag.ends_with('"'));
        assert!(files.lookup("/favicon.svg").is_some());
        assert!(files.lookup("/nope.html").is_none());
        assert!(files.lookup("/../Cargo.toml").is_none());
    }

    #[test]
    fn dir_lookup_stays_under_root() {
        let base = std::env::temp_dir().join(format!("sse-static-{}", std::process::id()));
        let root = base.join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("sub/x.css"), "b{}").unwrap();
        std::fs::write(base.join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        let files = StaticFiles::dir(&root).unwrap();
        assert_eq!(files.lookup("/").unwrap().body.bytes(), b"hi");
        assert_eq!(
            files.lookup("/sub/x.css").unwrap().content_type,
            "text/css; charset=utf-8"
        );
        assert!(files.lookup("/sub").is_none(), "a directory is not a file");
        assert!(
            files.lookup("/link.txt").is_none(),
            "a symlink out of the root is refused"
        );
        assert!(files.lookup("/../secret.txt").is_none());
        // A change on disk is seen.
        std::fs::write(root.join("index.html"), "hello").unwrap();
        assert_eq!(files.lookup("/").unwrap().body.bytes(), b"hello");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn etags_and_matching() {
        let e = etag_of(b"abc");
        assert_eq!(&*e, &*etag_of(b"abc"));
        assert_ne!(&*e, &*etag_of(b"abd"));
        assert!(none_match(e.as_bytes(), &e));
        assert!(none_match(format!("\"x\", W/{e}").as_bytes(), &e));
        assert!(none_match(b"*", &e));
        assert!(!none_match(b"\"x\"", &e));
        assert_eq!(content_type("a.SVG"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
