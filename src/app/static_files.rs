//! The client page: files embedded in the binary (the default) or read from a `--www` folder.
//!
//! A request path becomes a file in three steps: [`sanitize`] turns the percent-encoded path
//! into a plain relative name or refuses it, then the name is looked up in the embedded table
//! or joined to the canonical `--www` root, and for a folder the canonical result must still lie
//! under the root (so a symlink cannot lead out) and be a regular file.
//!
//! A `--www` folder's files are cached in memory, bounded in bytes and entries (least recently
//! used out; a path found missing drops its entry), and an entry is trusted only while the
//! file's identity and times are unchanged (device, inode, size, modification and change
//! time) and were already a second old when it was read (a change within the same timestamp
//! tick would otherwise go unseen).
//!
//! **Invariant:** no request path reaches a file outside the page's folder; only names made of
//! non-empty segments that do not start with `.` are ever looked up (`.` and `..` segments are
//! resolved first, and one that would climb above the root refuses the path).
//! **Invariant:** the cache never holds more than [`CACHE_MAX_BYTES`] of file bodies nor more
//! than [`CACHE_MAX_ENTRIES`] entries.

pub use crate::core::body::Body;
use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The files compiled into the binary. A unit test below checks this list against `www/`.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../www/index.html")),
    ("app.js", include_bytes!("../../www/app.js")),
    ("style.css", include_bytes!("../../www/style.css")),
    ("favicon.svg", include_bytes!("../../www/favicon.svg")),
    ("hub.js", include_bytes!("../../www/hub.js")),
    ("i18n.js", include_bytes!("../../www/i18n.js")),
    ("dashboard.html", include_bytes!("../../www/dashboard.html")),
    ("dashboard.js", include_bytes!("../../www/dashboard.js")),
];

/// Files larger than this are not served from a `--www` folder (a response holds its whole
/// body in memory): they are 404.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// The `--www` cache holds at most this many bytes of file bodies...
pub const CACHE_MAX_BYTES: usize = 32 << 20;
/// ...in at most this many files...
pub const CACHE_MAX_ENTRIES: usize = 1024;
/// ...and no file larger than this (read for each request instead).
pub const CACHE_MAX_FILE_BYTES: usize = 4 << 20;
/// A file whose change time is more recent than this when it is read is not cached: a second
/// change within the same timestamp tick would leave every stamp equal.
const SETTLE: Duration = Duration::from_secs(1);

/// A file ready to send.
#[derive(Clone, Debug)]
pub struct File {
    pub body: Body,
    pub content_type: &'static str,
    /// A strong entity tag, quotes included.
    pub etag: Arc<str>,
}

enum FileSource {
    Embedded(Vec<(&'static str, File)>),
    Dir { root: PathBuf, cache: Mutex<Cache> },
}

/// What identifies a version of a file on disk without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed more than [`SETTLE`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let settle = now.saturating_sub(SETTLE);
        (latest.0, latest.1) < (settle.as_secs() as i64, i64::from(settle.subsec_nanos()))
    }
}

struct Cached {
    stamp: Stamp,
    file: File,
    /// The cache's clock when this entry was last served (least recently used goes first).
    used: u64,
}

/// The `--www` cache: request name to file, bounded (see [`CACHE_MAX_BYTES`]).
#[derive(Default)]
struct Cache {
    map: HashMap<String, Cached>,
    bytes: usize,
    clock: u64,
}

impl Cache {
    fn get(&mut self, name: &str, stamp: &Stamp) -> Option<File> {
        self.clock += 1;
        let clock = self.clock;
        let hit = self.map.get_mut(name).filter(|c| c.stamp == *stamp)?;
        hit.used = clock;
        Some(hit.file.clone())
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.map.remove(name) {
            self.bytes -= old.file.body.bytes().len();
        }
    }

    fn insert(&mut self, name: &str, stamp: Stamp, file: File) {
        self.remove(name);
        let len = file.body.bytes().len();
        if len > CACHE_MAX_FILE_BYTES {
            return;
        }
        while !self.map.is_empty()
            && (self.bytes + len > CACHE_MAX_BYTES || self.map.len() >= CACHE_MAX_ENTRIES)
        {
            // O(entries), only on a miss that inserts; lookups stay O(1).
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += len;
        self.map.insert(
            name.to_owned(),
            Cached {
                stamp,
                file,
                used: self.clock,
            },
        );
    }
}

/// The page's files. Shared by every event loop.
pub struct StaticFiles {
    source: FileSource,
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
            source: FileSource::Embedded(files),
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
            source: FileSource::Dir {
                root,
                cache: Mutex::new(Cache::default()),
            },
        })
    }

    /// The file for a request path (percent-encoded, without the query), or `None` (404).
    pub fn lookup(&self, path: &str) -> Option<File> {
        let name = sanitize(path)?;
        match &self.source {
            FileSource::Embedded(files) => files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f.clone()),
            FileSource::Dir { root, cache } => read_under(root, &name, cache),
        }
    }
}

fn read_under(root: &Path, name: &str, cache: &Mutex<Cache>) -> Option<File> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
    let found = root
        .join(name)
        .canonicalize()
        .ok()
        .filter(|real| real.starts_with(root))
        .and_then(|real| Some((std::fs::metadata(&real).ok()?, real)))
        .filter(|(meta, _)| meta.is_file() && meta.len() <= MAX_FILE_BYTES);
    let Some((meta, real)) = found else {
        // Gone (or never there): whatever was cached under this name is dead weight.
        lock().remove(name);
        return None;
    };
    let stamp = Stamp::of(&meta);
    if let Some(file) = lock().get(name, &stamp) {
        return Some(file);
    }
    // Read without the lock: other loops go on serving cached files meanwhile.
    let bytes: Arc<[u8]> = std::fs::read(&real).ok()?.into();
    let file = File {
        content_type: content_type(name),
        etag: etag_of(&bytes),
        body: Body::Shared(bytes),
    };
    // The stamp was taken before the read, so a change during the read shows on the next
    // lookup; a file that changed very recently is not trusted to stay as read.
    let mut cache = lock();
    if stamp.settled(SystemTime::now()) && file.body.bytes().len() as u64 == stamp.len {
        cache.insert(name, stamp, file.clone());
    } else {
        cache.remove(name);
    }
    Some(file)
}

/// A request path as a safe relative file name, or `None` when it must be refused (404).
///
/// `/` is `index.html`. Dot segments are resolved (RFC 3986 section 5.2.4: `/./a` is `a`,
/// `/a/../b` is `b`). Refused: anything but a leading `/`; a bad or encoded `/` or `\`
/// (`%2F`, `%5C`); NUL or other control bytes; a decoded result that is not UTF-8 (overlong
/// encodings included); a `..` that would climb above the root; an empty segment, or one
/// starting with `.` (dotfiles); a path ending in `/`, `.` or `..` (a directory).
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
    let mut segments: Vec<&str> = Vec::new();
    let mut last = "";
    for seg in name.split('/') {
        match seg {
            "." => {}
            ".." => {
                segments.pop()?;
            }
            s if s.is_empty() || s.starts_with('.') => return None,
            s => segments.push(s),
        }
        last = seg;
    }
    if segments.is_empty() || last == "." || last == ".." {
        return None;
    }
    Some(segments.join("/"))
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
        assert_eq!(sanitize("/./index.html").as_deref(), Some("index.html"));
        assert_eq!(sanitize("/a/./b/../c.js").as_deref(), Some("a/c.js"));
        assert_eq!(sanitize("/a/%2e%2e/app.js").as_deref(), Some("app.js"));
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
            "/a/..",
            "/a/.",
            "/./",
            "/a/../..",
            "/a/../../b",
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
        assert_eq!(
            files.lookup("/./sub/../index.html").unwrap().body.bytes(),
            b"hello"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_least_recently_used() {
        let file = |n: usize| File {
            body: Body::Shared(vec![0u8; n].into()),
            content_type: "x",
            etag: "\"e\"".into(),
        };
        let stamp = |ino| Stamp {
            dev: 1,
            ino,
            len: 0,
            mtime: (0, 0),
            ctime: (0, 0),
        };
        let mut c = Cache::default();
        let mib = 1 << 20;
        for i in 0..100u64 {
            c.insert(&format!("f{i}"), stamp(i), file(mib));
            assert!(c.bytes <= CACHE_MAX_BYTES && c.map.len() <= CACHE_MAX_ENTRIES);
            // f0 is served after every insert, so it stays.
            assert!(c.get("f0", &stamp(0)).is_some(), "f0 evicted at {i}");
        }
        assert_eq!(c.bytes, CACHE_MAX_BYTES);
        assert!(
            c.get("f1", &stamp(1)).is_none(),
            "the least recently used went"
        );
        assert!(c.get("f99", &stamp(99)).is_some());
        assert!(c.get("f99", &stamp(7)).is_none(), "another stamp is a miss");
        c.remove("f99");
        assert_eq!(c.bytes, CACHE_MAX_BYTES - mib);
        c.insert("big", stamp(1), file(CACHE_MAX_FILE_BYTES + 1));
        assert!(c.get("big", &stamp(1)).is_none(), "too big to cache");
        for i in 0..2 * CACHE_MAX_ENTRIES as u64 {
            c.insert(&format!("s{i}"), stamp(i), file(1));
        }
        assert_eq!(c.map.len(), CACHE_MAX_ENTRIES);
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut st = stamp(0);
        st.ctime = (100, 0);
        assert!(st.settled(t(102)));
        assert!(!st.settled(t(100)), "changed just now: not trusted yet");
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
