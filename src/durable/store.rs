//! The data directory, file IO only: the lock file (one owner), the format file (version and
//! the ids' epoch), the segment files (`<first seq, 20 digits>.seg`), recovery at start-up
//! (read, truncate a torn tail, open or create the segment to append to), append, sync, roll
//! and delete. Called at start-up and then only from the writer thread, never from a loop.
//!
//! **Invariant:** what is appended and then fails (a full disk, an IO error) is cut off again
//! before the next append, or, if that fails too, appends move to a new segment; so a failed
//! write never leaves half a record where a good one follows.

use super::format::{
    self, Found, Recovery, SegmentPos, FORMAT_VERSION, OLDEST_READ_VERSION, SEGMENT_HEADER_LEN,
};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "lock";
const FORMAT_FILE: &str = "format";
const SEGMENT_SUFFIX: &str = ".seg";

/// One segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The first sequence number it was opened for (its name).
    pub first: u64,
    /// The last sequence number it holds or covers (`first - 1` if none).
    pub last: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// An open data directory. See the module docs.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held (with `flock`) for the life of the process.
    _lock: File,
    /// The ids' epoch, fixed when the directory was first used.
    pub epoch: String,
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// The next sequence number to give.
    pub next: u64,
    /// Appends must start a new segment first (a failed write could not be cut off).
    broken: bool,
}

/// What start-up found.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    pub recovery: Recovery,
    /// Bytes of torn tail cut off.
    pub truncated: u64,
}

/// A one-line error for the start-up message, naming the directory.
fn fail(dir: &Path, what: impl std::fmt::Display) -> String {
    format!("--data-dir {}: {what}", dir.display())
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

/// Syncs the directory itself, so that a file created or renamed in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the directory's lock or says who holds it.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(dir, format_args!("cannot open its lock file: {e}")))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process that is still starting".to_string(),
            };
            return Err(fail(
                dir,
                format_args!(
                    "in use by another sse-server ({holder}, holding {})",
                    path.display()
                ),
            ));
        }
        return Err(fail(
            dir,
            format_args!("cannot lock {}: {e}", path.display()),
        ));
    }
    let pid = format!("{}\n", std::process::id());
    f.set_len(0)
        .and_then(|()| f.write_all_at(pid.as_bytes(), 0))
        .map_err(|e| fail(dir, format_args!("cannot write {}: {e}", path.display())))?;
    Ok(f)
}

/// Writes the format file (this build's version, `epoch`) through a synced temporary file.
fn write_format_file(dir: &Path, epoch: &str) -> Result<(), String> {
    let path = dir.join(FORMAT_FILE);
    let tmp = dir.join("format.tmp");
    let text = format!("sse-server event log\nformat {FORMAT_VERSION}\nepoch {epoch}\n");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    };
    write().map_err(|e| fail(dir, format_args!("cannot write {}: {e}", path.display())))
}

/// Whether a data directory holds segments already (a directory without any is fresh).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segments {
    Absent,
    Present,
}

/// Reads the format file's epoch, or writes a new one (`epoch`) in a fresh directory. A
/// directory of an older format this build reads is marked as this format first (its
/// records are read as they are; new ones may carry what the old format had no room for,
/// so the older build must refuse the directory from now on rather than misread them).
fn format_file(dir: &Path, segments: Segments, epoch: &str) -> Result<String, String> {
    let fresh = segments == Segments::Absent;
    let path = dir.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut version = None;
            let mut found = None;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("format ") {
                    version = v.trim().parse::<u32>().ok();
                } else if let Some(e) = line.strip_prefix("epoch ") {
                    found = Some(e.trim().to_string());
                }
            }
            match (version, found) {
                (Some(v), Some(e))
                    if (OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&v)
                        && !e.is_empty()
                        && e.bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    if v != FORMAT_VERSION {
                        write_format_file(dir, &e)?;
                    }
                    Ok(e)
                }
                (Some(v), _) if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&v) => Err(fail(
                    dir,
                    format_args!(
                        "holds an event log of format {v}; this sse-server reads format \
                         {FORMAT_VERSION} (use another directory, or the sse-server that wrote it)"
                    ),
                )),
                _ => Err(fail(
                    dir,
                    format_args!("{} is not an sse-server format file", path.display()),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && fresh => {
            write_format_file(dir, epoch)?;
            Ok(epoch.to_string())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(fail(
            dir,
            format_args!("holds segments but no {FORMAT_FILE} file: not an sse-server data dir"),
        )),
        Err(e) => Err(fail(
            dir,
            format_args!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The segment files, oldest first.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| fail(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(first) = stem.parse::<u64>() {
                out.push((first, entry.path()));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Opens `dir` (which must exist): takes the lock, checks the format, reads every segment
/// into a [`Recovery`] bounded as the history is, cuts a torn tail, and readies the segment
/// to append to. `epoch` is used only if the directory is new.
pub fn open(
    dir: &Path,
    max_events: usize,
    max_bytes: usize,
    epoch: &str,
) -> Result<Opened, String> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail(dir, "not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(fail(dir, "no such directory (create it first)"))
        }
        Err(e) => return Err(fail(dir, e)),
    }
    let lock = lock(dir)?;
    let files = list(dir)?;
    let segments = match files.is_empty() {
        true => Segments::Absent,
        false => Segments::Present,
    };
    let epoch = format_file(dir, segments, epoch)?;
    let mut recovery = Recovery::new(max_events, max_bytes);
    let mut segments = VecDeque::new();
    for (i, (first, path)) in files.iter().enumerate() {
        let bytes =
            fs::read(path).map_err(|e| fail(dir, format_args!("{}: {e}", path.display())))?;
        let pos = if i + 1 == files.len() {
            SegmentPos::Newest
        } else {
            SegmentPos::Older
        };
        recovery.feed(*first, &bytes, pos).map_err(|v| {
            fail(
                dir,
                format_args!(
                    "{} is of format {v}; this sse-server reads format {FORMAT_VERSION}",
                    path.display()
                ),
            )
        })?;
        segments.push_back(Segment {
            first: *first,
            last: recovery.last.max(first.saturating_sub(1)),
            len: bytes.len() as u64,
        });
    }
    let mut truncated = 0;
    if let Some((first, offset, bytes)) = recovery.truncate {
        let path = dir.join(segment_name(first));
        let cut = || -> io::Result<()> {
            if offset < SEGMENT_HEADER_LEN {
                // Not even its header was written: the segment never held anything.
                fs::remove_file(&path)?;
                return sync_dir(dir);
            }
            let f = File::options().write(true).open(&path)?;
            f.set_len(offset as u64)?;
            f.sync_all()
        };
        cut().map_err(|e| {
            fail(
                dir,
                format_args!("cannot cut the torn tail of {}: {e}", path.display()),
            )
        })?;
        truncated = bytes as u64;
        if offset < SEGMENT_HEADER_LEN {
            segments.pop_back();
        } else if let Some(s) = segments.back_mut() {
            s.len = offset as u64;
        }
    }
    let mut store = Store {
        dir: dir.to_path_buf(),
        _lock: lock,
        epoch,
        segments,
        active: None,
        next: recovery.next(),
        broken: recovery.fresh_segment,
    };
    match store.segments.back() {
        Some(s) if !store.broken => {
            let path = dir.join(segment_name(s.first));
            let f = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| fail(dir, format_args!("{}: {e}", path.display())))?;
            store.active = Some(f);
        }
        _ => store
            .roll()
            .map_err(|e| fail(dir, format_args!("cannot create a segment: {e}")))?,
    }
    Ok(Opened {
        store,
        recovery,
        truncated,
    })
}

impl Store {
    /// Starts a new segment named after the next sequence number (synced, and the directory
    /// too, so that its name survives a crash before anything acknowledged is in it).
    pub fn roll(&mut self) -> io::Result<()> {
        if self.segments.back().is_some_and(|s| s.first == self.next) {
            // The segment appended to holds no record yet: it is replaced, not followed.
            let path = self.dir.join(segment_name(self.next));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.active = None;
            self.segments.pop_back();
        }
        let path = self.dir.join(segment_name(self.next));
        let create = || -> io::Result<File> {
            let f = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all_at(&format::segment_header(), 0)?;
            f.sync_all()?;
            sync_dir(&self.dir)?;
            Ok(f)
        };
        match create() {
            Ok(f) => {
                self.active = Some(f);
                self.segments.push_back(Segment {
                    first: self.next,
                    last: self.next - 1,
                    len: SEGMENT_HEADER_LEN as u64,
                });
                self.broken = false;
                Ok(())
            }
            Err(e) => {
                // A half-made file would be read as a torn segment; leave none.
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Rolls first if the segment reached `target` bytes or a failed write could not be cut.
    pub fn roll_if_due(&mut self, target: u64) -> io::Result<()> {
        let len = self.segments.back().map_or(0, |s| s.len);
        let empty = self.segments.back().is_some_and(|s| s.first == self.next);
        if self.broken || self.active.is_none() || (len >= target && !empty) {
            self.roll()?;
        }
        Ok(())
    }

    /// Appends `bytes`, records through sequence number `last`, to the active segment. On an
    /// error, whatever part was written is cut off again (or appends move to a new segment).
    pub fn append(&mut self, bytes: &[u8], last: u64) -> io::Result<()> {
        let (Some(f), Some(seg)) = (&self.active, self.segments.back_mut()) else {
            return Err(io::Error::other("no segment to append to"));
        };
        match f.write_all_at(bytes, seg.len) {
            Ok(()) => {
                seg.len += bytes.len() as u64;
                seg.last = last;
                self.next = last + 1;
                Ok(())
            }
            Err(e) => {
                if f.set_len(seg.len).is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Makes what was appended durable. After a failed sync the segment's cached pages are
    /// in an unknown state (the kernel may have dropped them), so the last `appended` bytes
    /// are cut off and appends move to a new segment.
    pub fn sync(&mut self, appended: u64) -> io::Result<()> {
        let Some(f) = &self.active else {
            return Ok(());
        };
        let r = f.sync_data();
        if r.is_err() {
            if let Some(seg) = self.segments.back_mut() {
                seg.len = seg.len.saturating_sub(appended);
                let _ = f.set_len(seg.len);
            }
            self.broken = true;
        }
        r
    }

    /// Deletes the oldest segments whose every event is at or before `evicted` (never the one
    /// appended to). Returns how many were deleted.
    pub fn retain(&mut self, evicted: u64) -> usize {
        let mut n = 0;
        while self.segments.len() > 1 && self.segments[0].last <= evicted {
            let path = self.dir.join(segment_name(self.segments[0].first));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
            self.segments.pop_front();
            n += 1;
        }
        n
    }

    /// Bytes of segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The start-up log's words for damage found.
pub fn describe(found: &Found) -> String {
    let what = match found.damage {
        format::Damage::Torn => "torn tail (an interrupted write), cut off",
        format::Damage::Corrupt => "corrupt record (checksum), the rest of the segment not served",
    };
    format!(
        "segment {} offset {}: {what} ({} bytes)",
        segment_name(found.segment),
        found.offset,
        found.bytes
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::durable::format::encode;
    use crate::hub::history::Publish;
    use crate::hub::history::Restored;

    /// A fresh directory under the system's temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("sse-durable-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ev(data: &str) -> Publish {
        Publish {
            topics: vec!["t".into()],
            data: data.into(),
            ..Publish::default()
        }
    }

    fn write(store: &mut Store, data: &[&str]) {
        let mut buf = Vec::new();
        let first = store.next;
        for (i, d) in data.iter().enumerate() {
            encode(&mut buf, first + i as u64, &ev(d)).unwrap();
        }
        store.append(&buf, first + data.len() as u64 - 1).unwrap();
        store.sync(buf.len() as u64).unwrap();
    }

    fn events(r: &Recovery) -> Vec<(u64, String)> {
        r.items
            .iter()
            .filter_map(|(i, _)| match i {
                Restored::Event(s, p) => Some((*s, p.data.clone())),
                Restored::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_dir_gets_a_format_file_and_a_segment_and_reopens_with_its_events() {
        let d = TempDir::new("fresh");
        let o = open(&d.0, 100, 1 << 20, "abc123").unwrap();
        let mut s = o.store;
        assert_eq!(
            (s.epoch.as_str(), s.next, s.segments().len()),
            ("abc123", 1, 1)
        );
        write(&mut s, &["one", "two"]);
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "other").unwrap();
        assert_eq!(o.store.epoch, "abc123", "the epoch is the directory's");
        assert_eq!(events(&o.recovery), [(1, "one".into()), (2, "two".into())]);
        assert_eq!(o.store.next, 3);
        assert_eq!(o.truncated, 0);
    }

    /// A directory of format 1 (before publisher ids): its records are read as they are, and
    /// the directory is marked format 2 before anything is written, so a build of format 1
    /// refuses it from then on rather than misread a record with an id.
    #[test]
    fn a_format_1_dir_is_read_and_marked_format_2() {
        let d = TempDir::new("v1");
        let mut s = open(&d.0, 100, 1 << 20, "old1").unwrap().store;
        write(&mut s, &["one", "two"]);
        drop(s);
        // Make it what a format 1 build wrote: the format file and the segment header say 1
        // (the records of format 1 are those of format 2 without an id).
        fs::write(
            d.0.join(FORMAT_FILE),
            "sse-server event log\nformat 1\nepoch old1\n",
        )
        .unwrap();
        let seg = d.0.join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = format::crc32c(0, &bytes[..12]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        fs::write(&seg, &bytes).unwrap();
        let o = open(&d.0, 100, 1 << 20, "new").unwrap();
        assert_eq!(o.store.epoch, "old1");
        assert_eq!(events(&o.recovery), [(1, "one".into()), (2, "two".into())]);
        assert_eq!(o.truncated, 0);
        let text = fs::read_to_string(d.0.join(FORMAT_FILE)).unwrap();
        assert_eq!(text, "sse-server event log\nformat 2\nepoch old1\n");
    }

    #[test]
    fn a_second_owner_is_refused_naming_the_holder() {
        let d = TempDir::new("lock");
        let _first = open(&d.0, 100, 1 << 20, "e").unwrap();
        let err = open(&d.0, 100, 1 << 20, "e").unwrap_err();
        assert!(
            err.contains(&format!(
                "in use by another sse-server (pid {}",
                std::process::id()
            )),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn missing_dirs_files_and_other_formats_are_one_line_errors() {
        let d = TempDir::new("errors");
        let missing = d.0.join("nope");
        let err = open(&missing, 10, 1000, "e").unwrap_err();
        assert!(err.contains("no such directory"), "{err}");
        let file = d.0.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(open(&file, 10, 1000, "e")
            .unwrap_err()
            .contains("not a directory"));
        let other = d.0.join("other");
        fs::create_dir(&other).unwrap();
        fs::write(
            other.join(FORMAT_FILE),
            "sse-server event log\nformat 9\nepoch x\n",
        )
        .unwrap();
        let err = open(&other, 10, 1000, "e").unwrap_err();
        assert!(
            err.contains("format 9; this sse-server reads format 2"),
            "{err}"
        );
        let orphan = d.0.join("orphan");
        fs::create_dir(&orphan).unwrap();
        fs::write(orphan.join(segment_name(1)), format::segment_header()).unwrap();
        let err = open(&orphan, 10, 1000, "e").unwrap_err();
        assert!(err.contains("no format file"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_torn_tail_is_cut_counted_and_appends_continue_after_the_cut() {
        let d = TempDir::new("torn");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        write(&mut s, &["one", "two"]);
        let path = d.0.join(segment_name(1));
        let good = fs::metadata(&path).unwrap().len();
        // Half a record at the end, as a crash in the middle of a write leaves it.
        let mut rec = Vec::new();
        encode(&mut rec, 3, &ev("three")).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&rec[..rec.len() / 2])
            .unwrap();
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(o.truncated, (rec.len() / 2) as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good, "cut off on disk");
        assert_eq!(events(&o.recovery).len(), 2);
        // The torn event was never answered: its number is given again.
        assert_eq!(o.store.next, 3);
        let mut s = o.store;
        write(&mut s, &["three again"]);
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(o.truncated, 0, "nothing is cut twice");
        assert_eq!(
            events(&o.recovery),
            [
                (1, "one".into()),
                (2, "two".into()),
                (3, "three again".into())
            ]
        );
        assert!(o.recovery.found.is_empty());
    }

    #[test]
    fn a_corrupt_record_in_the_newest_segment_moves_appends_past_its_ids() {
        let d = TempDir::new("corrupt");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        write(&mut s, &["one", "two", "three"]);
        drop(s);
        let path = d.0.join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let at = SEGMENT_HEADER_LEN + 30;
        bytes[at] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(o.truncated, 0, "kept for inspection");
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let next = o.store.next;
        assert!(next > 4, "{next}");
        let mut s = o.store;
        write(&mut s, &["four"]);
        drop(s);
        // The gap is found again from the new segment's name, and the damage again.
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(
            events(&o.recovery),
            [(1, "one".into()), (next, "four".into())]
        );
        assert!(o.recovery.items.iter().any(|(i, _)| *i
            == Restored::Gap {
                after: 1,
                through: next - 1
            }));
        assert_eq!(o.recovery.found.len(), 1);
        assert_eq!(o.store.next, next + 1);
    }

    #[test]
    fn segments_roll_and_old_ones_go_once_evicted() {
        let d = TempDir::new("roll");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        for i in 0..10 {
            s.roll_if_due(20).unwrap();
            write(
                &mut s,
                &[&format!(
                    "event {i} with some padding to pass the target size"
                )],
            );
        }
        assert_eq!(s.segments().len(), 10);
        assert_eq!(s.retain(4), 4);
        assert_eq!(s.segments()[0].first, 5);
        assert_eq!(s.retain(1000), 5, "the segment appended to stays");
        assert_eq!(list(&d.0).unwrap().len(), 1);
        assert_eq!(s.bytes(), s.segments()[0].len);
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(
            events(&o.recovery),
            [(
                10,
                "event 9 with some padding to pass the target size".into()
            )]
        );
        assert_eq!(
            o.recovery.dropped, 9,
            "what was deleted is the history's start"
        );
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let d = TempDir::new("fail");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        write(&mut s, &["one"]);
        let len = s.bytes();
        // A read-only handle makes the next write fail like a full disk does.
        let path = d.0.join(segment_name(1));
        s.active = Some(File::open(&path).unwrap());
        let mut rec = Vec::new();
        encode(&mut rec, 2, &ev("two")).unwrap();
        assert!(s.append(&rec, 2).is_err());
        assert_eq!((s.bytes(), s.next), (len, 2));
        assert!(
            s.broken,
            "the cut failed too (read-only), so the next append rolls"
        );
        s.roll_if_due(1 << 20).unwrap();
        write(&mut s, &["two"]);
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(events(&o.recovery), [(1, "one".into()), (2, "two".into())]);
    }
}
