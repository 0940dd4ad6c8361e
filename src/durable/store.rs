//! The data directory, file IO only: the lock file (one owner), the format file (version and
//! the ids' epoch), the segment files (`<first seq, 20 digits>.seg`), recovery at start-up
//! (read, truncate a torn tail, open or create the segment to append to), append, sync, roll
//! and delete. Called at start-up and then only from the writer thread, never from a loop.
//!
//! The segment appended to keeps zeros written (and synced) ahead of its last record, up to
//! `ahead` bytes (see [`Store::set_layout`]) and never past its size, so that a sync after an
//! append has only the data to write: the file's size, and so the journal, do not change (on
//! this machine's ext4 that took a sync from 0.17-0.34 to 0.11-0.25 ms at p50 over five rounds,
//! docs/performance.md). A segment is rolled once its records reach its size less that room,
//! and its unused zeros are cut off then, so the files never hold more than one segment beyond
//! the history's bytes.
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
    /// Where its records end (where the next is appended).
    pub len: u64,
    /// Its file's length: `len` and the zeros written ahead.
    pub file_len: u64,
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
    /// A segment's size: it rolls once its records reach `size - ahead`.
    size: u64,
    /// Bytes of zeros kept written ahead of the last record (0: none).
    ahead: u64,
    /// Syncs are writes of whole pages with `O_DIRECT | O_DSYNC` (see [`Direct`]), when asked
    /// for and the file system takes them.
    want_direct: bool,
    direct: Option<Direct>,
}

/// A page, the unit of an `O_DIRECT` write (and its alignment in memory and in the file).
const PAGE: u64 = 4096;

/// What [`Store::make_room`] writes, 64 KiB at a time (a static of zeros: its pages are only
/// ever read, so they cost no memory of their own).
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The segment appended to, opened again with `O_DIRECT | O_DSYNC`: a sync is one write of the
/// pages from the one its synced records end in, which returns once they are on the disk, with
/// no page cache to flush first and no dirty pages held (on this machine's ext4, as fast as a
/// write and an `fdatasync` over the same zeros or faster, docs/performance.md). The page its records end in is
/// written again, whole, with the same bytes before the new ones: a torn write of it leaves
/// those bytes as they were.
#[derive(Debug)]
struct Direct {
    file: File,
    /// Where `tail` starts in the segment: a multiple of [`PAGE`].
    at: u64,
    /// The segment's bytes from `at` to where its records end: the last synced page's, then
    /// those appended since.
    tail: Vec<u8>,
    /// Room for one aligned write.
    out: Vec<u8>,
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
        let fed = recovery.feed(*first, &bytes, pos).map_err(|v| {
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
            len: fed.end as u64,
            file_len: bytes.len() as u64,
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
            // The one before becomes the newest: appends must not go over damage it holds.
            if let Some(prev) = segments.back() {
                if recovery.found.iter().any(|f| f.segment == prev.first) {
                    recovery.fresh_segment = true;
                }
            }
        } else if let Some(s) = segments.back_mut() {
            s.len = offset as u64;
            s.file_len = offset as u64;
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
        size: u64::MAX,
        ahead: 0,
        want_direct: false,
        direct: None,
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
        self.direct = None;
        // The one rolled from keeps only its records: its zeros ahead are given back (not
        // synced: if a crash undoes the cut, zeros after records read as a clean end).
        if let (Some(f), Some(seg)) = (&self.active, self.segments.back_mut()) {
            if seg.file_len > seg.len && seg.first != self.next && f.set_len(seg.len).is_ok() {
                seg.file_len = seg.len;
            }
        }
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
                    file_len: SEGMENT_HEADER_LEN as u64,
                });
                self.broken = false;
                self.make_room();
                self.open_direct();
                Ok(())
            }
            Err(e) => {
                // A half-made file would be read as a torn segment; leave none.
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Sets a segment's size and the zeros kept written ahead (see the module docs); `ahead`
    /// is capped at an eighth of `size`.
    pub fn set_layout(&mut self, size: u64, ahead: u64) {
        self.size = size.max(1);
        self.ahead = ahead.min(size / 8);
    }

    /// Makes syncs writes of whole pages with `O_DIRECT | O_DSYNC` (`Direct`) where the file
    /// system takes them; returns whether it does (else syncs stay `fdatasync`).
    pub fn set_direct(&mut self, on: bool) -> bool {
        self.want_direct = on;
        self.open_direct();
        self.direct.is_some()
    }

    /// Whether syncs are `O_DIRECT | O_DSYNC` writes.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn open_direct(&mut self) {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.direct = None;
        let (true, Some(f), Some(seg)) = (self.want_direct, &self.active, self.segments.back_mut())
        else {
            return;
        };
        let path = self.dir.join(segment_name(seg.first));
        let Ok(file) = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&path)
        else {
            return;
        };
        let at = seg.len / PAGE * PAGE;
        let mut tail = vec![0u8; (seg.len - at) as usize];
        if f.read_exact_at(&mut tail, at).is_err() {
            return;
        }
        let mut d = Direct {
            file,
            at,
            tail,
            out: Vec::new(),
        };
        // Some file systems open with O_DIRECT and then refuse its writes (a block larger
        // than a page, some FUSE ones): write the page the records end in, as it is (what
        // follows them there is zeros, or past the end), and keep `fdatasync` if that fails.
        if d.write().is_err() {
            return;
        }
        seg.file_len = seg.file_len.max(at + PAGE);
        self.direct = Some(d);
    }

    /// Rolls first if the segment's records reached its size (less the room kept ahead) or a
    /// failed write could not be cut.
    pub fn roll_if_due(&mut self) -> io::Result<()> {
        let len = self.segments.back().map_or(0, |s| s.len);
        let empty = self.segments.back().is_some_and(|s| s.first == self.next);
        let target = self.size.saturating_sub(self.ahead);
        if self.broken || self.active.is_none() || (len >= target && !empty) {
            self.roll()?;
        }
        Ok(())
    }

    /// Whether the zeros ahead of the last record ran under half of `ahead` while the
    /// segment has room for more.
    pub fn wants_room(&self) -> bool {
        match (&self.active, self.segments.back()) {
            (Some(_), Some(seg)) if !self.broken && self.ahead > 0 => {
                seg.file_len - seg.len.min(seg.file_len) < self.ahead / 2
                    && seg.file_len < self.size
            }
            _ => false,
        }
    }

    /// Writes zeros ahead of the last record, up to `ahead` bytes past it (see
    /// [`Store::set_layout`]; in whole pages, never past the segment's size), and syncs them
    /// with the file's new size. On an error (a full disk) nothing is kept and appends simply
    /// extend the file. Returns the bytes added.
    pub fn make_room(&mut self) -> u64 {
        if !self.wants_room() {
            return 0;
        }
        let (Some(f), Some(seg)) = (&self.active, self.segments.back_mut()) else {
            return 0;
        };
        let to = (seg.len + self.ahead).next_multiple_of(4096).min(self.size);
        if to <= seg.file_len {
            return 0;
        }
        let from = seg.file_len;
        // From one static page of zeros: a buffer the size of the room (up to 1 MiB) would
        // stay in the thread's heap once freed (measured: 27 B more per subscriber at 19,000).
        let write_zeros = || -> io::Result<()> {
            let mut at = from;
            while at < to {
                let n = (to - at).min(ZEROS.len() as u64);
                f.write_all_at(&ZEROS[..n as usize], at)?;
                at += n;
            }
            f.sync_data()
        };
        match write_zeros() {
            Ok(()) => {
                seg.file_len = to;
                to - from
            }
            Err(_) => {
                if f.set_len(from).is_err() {
                    self.broken = true;
                }
                0
            }
        }
    }

    /// Appends `bytes`, records through sequence number `last`, to the active segment. On an
    /// error, whatever part was written is cut off again (or appends move to a new segment).
    pub fn append(&mut self, bytes: &[u8], last: u64) -> io::Result<()> {
        let (Some(f), Some(seg)) = (&self.active, self.segments.back_mut()) else {
            return Err(io::Error::other("no segment to append to"));
        };
        if let Some(d) = &mut self.direct {
            // Written (and synced) by the next sync.
            d.tail.extend_from_slice(bytes);
            seg.len += bytes.len() as u64;
            seg.last = last;
            self.next = last + 1;
            return Ok(());
        }
        match f.write_all_at(bytes, seg.len) {
            Ok(()) => {
                seg.len += bytes.len() as u64;
                seg.file_len = seg.file_len.max(seg.len);
                seg.last = last;
                self.next = last + 1;
                Ok(())
            }
            Err(e) => {
                match f.set_len(seg.len) {
                    Ok(()) => seg.file_len = seg.len,
                    Err(_) => self.broken = true,
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
        let r = match (&mut self.direct, self.segments.back_mut()) {
            (Some(d), Some(seg)) => {
                let r = d.write();
                if r.is_ok() {
                    seg.file_len = seg
                        .file_len
                        .max(d.at + (d.tail.len() as u64).next_multiple_of(PAGE));
                    let keep = (seg.len / PAGE * PAGE - d.at) as usize;
                    d.tail.drain(..keep);
                    d.at += keep as u64;
                    if d.tail.capacity() > 4 << 20 {
                        d.tail.shrink_to(PAGE as usize);
                    }
                } else {
                    d.tail
                        .truncate(d.tail.len().saturating_sub(appended as usize));
                }
                r
            }
            _ => f.sync_data(),
        };
        if r.is_err() {
            if let Some(seg) = self.segments.back_mut() {
                seg.len = seg.len.saturating_sub(appended);
                // The cut is made durable too: the records' numbers are given again (they
                // were never answered), so they must not come back after a crash.
                if f.set_len(seg.len).and_then(|()| f.sync_all()).is_ok() {
                    seg.file_len = seg.len;
                }
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

    /// Bytes of segment files on disk (records and the zeros ahead).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.file_len).sum()
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

impl Direct {
    /// Writes `tail` at `at`, in whole pages (zeros after it), from an aligned buffer.
    fn write(&mut self) -> io::Result<()> {
        let n = self.tail.len();
        let padded = n.next_multiple_of(PAGE as usize);
        if self.out.len() < padded + PAGE as usize || self.out.len() > (4 << 20).max(2 * padded) {
            self.out = vec![0u8; padded + PAGE as usize];
        }
        let off = self.out.as_ptr().align_offset(PAGE as usize);
        let page = &mut self.out[off..off + padded];
        page[..n].copy_from_slice(&self.tail);
        page[n..].fill(0);
        self.file.write_all_at(page, self.at)
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

    /// A store in `d` keeping `max_events`, its segments `size` bytes with `ahead` bytes of
    /// zeros written ahead.
    fn with_room(d: &TempDir, max_events: usize, size: u64, ahead: u64) -> Store {
        let mut s = open(&d.0, max_events, 1 << 20, "e").unwrap().store;
        s.set_layout(size, ahead);
        s.make_room();
        s
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
        let half = &rec[..rec.len() / 2];
        let nonzero = format::data_end(half);
        assert_eq!(o.truncated, nonzero as u64);
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
        s.set_layout(20, 0);
        for i in 0..10 {
            s.roll_if_due().unwrap();
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
        s.set_layout(1 << 20, 0);
        s.roll_if_due().unwrap();
        write(&mut s, &["two"]);
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(events(&o.recovery), [(1, "one".into()), (2, "two".into())]);
    }

    /// The segment appended to keeps zeros written ahead, appends go over them without
    /// changing the file's size, a restart reads the records and no damage in the zeros, and
    /// a roll gives the old segment's zeros back.
    #[test]
    fn zeros_written_ahead_are_room_not_damage_and_a_roll_gives_them_back() {
        let d = TempDir::new("ahead");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        s.set_layout(64 << 10, 8 << 10);
        // Zeros after the header, to a whole page at least 8 KiB past it.
        assert_eq!(s.make_room(), 12288 - 16);
        let path = d.0.join(segment_name(1));
        assert_eq!(fs::metadata(&path).unwrap().len(), 12288);
        write(&mut s, &["one", "two"]);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            12288,
            "written over the zeros"
        );
        assert_eq!(s.bytes(), 12288);
        let used = s.segments()[0].len;
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert!(o.recovery.found.is_empty(), "{:?}", o.recovery.found);
        assert_eq!((o.truncated, o.store.next), (0, 3));
        assert_eq!(events(&o.recovery), [(1, "one".into()), (2, "two".into())]);
        let mut s = o.store;
        assert_eq!(
            s.segments()[0].len,
            used,
            "appends continue after the records"
        );
        s.set_layout(64 << 10, 8 << 10);
        // Fill past the segment's size less the room ahead: it rolls and gives its zeros back.
        let pad = "p".repeat(1000);
        let mut n = 2;
        while s.segments().len() == 1 {
            s.roll_if_due().unwrap();
            s.make_room();
            write(&mut s, &[pad.as_str()]);
            n += 1;
            let seg = s.segments()[0];
            assert!(seg.file_len <= 64 << 10, "never past its size: {seg:?}");
        }
        let old = s.segments()[0];
        assert_eq!(old.file_len, old.len, "no zeros left in a rolled segment");
        assert_eq!(fs::metadata(&path).unwrap().len(), old.len);
        assert!(old.len >= (64 << 10) - (8 << 10));
        drop(s);
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert!(o.recovery.found.is_empty(), "{:?}", o.recovery.found);
        assert_eq!(o.store.next, n + 1);
    }

    /// A write cut short over the zeros ahead (a crash mid-batch) is found, cut, counted, and
    /// never served; appends continue where it was, and the zeros come back.
    #[test]
    fn a_torn_write_over_the_zeros_ahead_is_cut_at_every_byte() {
        let d = TempDir::new("torn-ahead");
        let mut s = with_room(&d, 100, 64 << 10, 8 << 10);
        write(&mut s, &["one", "two"]);
        let good = s.segments()[0].len;
        drop(s);
        let path = d.0.join(segment_name(1));
        let clean = fs::read(&path).unwrap();
        let mut rec = Vec::new();
        encode(&mut rec, 3, &ev("three, cut short")).unwrap();
        for cut in 1..rec.len() {
            let mut bytes = clean.clone();
            bytes[good as usize..good as usize + cut].copy_from_slice(&rec[..cut]);
            fs::write(&path, &bytes).unwrap();
            let o = open(&d.0, 100, 1 << 20, "e").unwrap();
            assert_eq!(events(&o.recovery).len(), 2, "cut at {cut}");
            let nonzero = format::data_end(&rec[..cut]);
            assert_eq!(o.truncated, nonzero as u64, "cut at {cut}");
            assert!(
                o.recovery
                    .found
                    .iter()
                    .all(|f| f.damage == format::Damage::Torn),
                "cut at {cut}: {:?}",
                o.recovery.found
            );
            let mut s = o.store;
            assert_eq!((s.next, s.segments()[0].len), (3, good), "cut at {cut}");
            s.set_layout(64 << 10, 8 << 10);
            s.make_room();
            assert!(s.segments()[0].file_len > good);
            write(&mut s, &["three"]);
            drop(s);
            let o = open(&d.0, 100, 1 << 20, "e").unwrap();
            assert!(o.recovery.found.is_empty(), "cut at {cut}");
            assert_eq!(
                events(&o.recovery),
                [(1, "one".into()), (2, "two".into()), (3, "three".into())]
            );
            drop(o);
            fs::write(&path, &clean).unwrap();
        }
    }

    /// Syncs as `O_DIRECT | O_DSYNC` writes of whole pages: records across many pages, some
    /// written twice (the page they end in), read back whole after a restart, and appends go
    /// on from the page read back.
    #[test]
    fn direct_syncs_write_whole_pages_and_read_back() {
        let d = TempDir::new("direct");
        let mut s = with_room(&d, 1000, 1 << 20, 16 << 10);
        if !s.set_direct(true) {
            eprintln!("O_DIRECT refused by the temp dir's file system: skipped");
            return;
        }
        let texts: Vec<String> = (0..300)
            .map(|i| format!("event {i} {}", "d".repeat(i % 97)))
            .collect();
        for t in &texts[..150] {
            write(&mut s, &[t.as_str()]);
        }
        assert!(s.is_direct());
        assert_eq!(s.segments()[0].file_len % PAGE, 0);
        drop(s);
        let o = open(&d.0, 1000, 1 << 20, "e").unwrap();
        assert!(o.recovery.found.is_empty(), "{:?}", o.recovery.found);
        assert_eq!(events(&o.recovery).len(), 150);
        let mut s = o.store;
        s.set_layout(1 << 20, 16 << 10);
        assert!(s.set_direct(true));
        for chunk in texts[150..].chunks(7) {
            let refs: Vec<&str> = chunk.iter().map(|t| t.as_str()).collect();
            write(&mut s, &refs);
            s.make_room();
        }
        drop(s);
        let o = open(&d.0, 1000, 1 << 20, "e").unwrap();
        assert!(o.recovery.found.is_empty(), "{:?}", o.recovery.found);
        let got = events(&o.recovery);
        assert_eq!(got.len(), 300);
        for (i, (seq, data)) in got.iter().enumerate() {
            assert_eq!((*seq, data), ((i + 1) as u64, &texts[i]));
        }
    }

    /// A newest segment that never got its header (zeros only) is removed; if the one before
    /// it holds damage, appends go to a new segment rather than over that damage.
    #[test]
    fn a_header_less_newest_segment_goes_and_damage_before_it_is_not_written_over() {
        let d = TempDir::new("headerless");
        let mut s = open(&d.0, 100, 1 << 20, "e").unwrap().store;
        write(&mut s, &["one", "two"]);
        drop(s);
        let first = d.0.join(segment_name(1));
        let mut rec = Vec::new();
        encode(&mut rec, 3, &ev("torn")).unwrap();
        let garbage = &rec[..rec.len() - 3];
        fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap()
            .write_all(garbage)
            .unwrap();
        let damaged = fs::read(&first).unwrap();
        fs::write(d.0.join(segment_name(3)), [0u8; 4096]).unwrap();
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        // The zeros were removed and a new segment 3 begun, with its header.
        let firsts: Vec<u64> = o.store.segments().iter().map(|s| s.first).collect();
        assert_eq!(firsts, [1, 3]);
        assert_eq!(
            fs::read(d.0.join(segment_name(3))).unwrap()[..16],
            format::segment_header()
        );
        let mut s = o.store;
        s.set_layout(1 << 20, 0);
        s.roll_if_due().unwrap();
        write(&mut s, &["three"]);
        drop(s);
        assert_eq!(
            fs::read(&first).unwrap(),
            damaged,
            "the damage is kept as it was"
        );
        let o = open(&d.0, 100, 1 << 20, "e").unwrap();
        assert_eq!(
            events(&o.recovery),
            [(1, "one".into()), (2, "two".into()), (3, "three".into())]
        );
        assert!(
            o.recovery.found.iter().any(|f| f.segment == 1),
            "{:?}",
            o.recovery.found
        );
    }
}
