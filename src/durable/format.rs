//! The event store's bytes, sans-IO: the segment header, the record, CRC-32C, the scan of one
//! segment and the recovery of a whole store, all pure functions over byte slices.
//!
//! A segment file is a 16-byte header (`\xffsse-log`, the format version as a little-endian
//! `u32`, the CRC-32C of those 12 bytes) followed by records. A record is
//!
//! ```text
//! magic [0xff, b'e', b'v', b'1'] | body length u32 | CRC-32C of (length, body) u32 | body
//! body: seq u64 | flags u8 (1 private, 2 has type, 4 has retry, 8 has id) | [retry u64]
//!       | topic count u8 | (topic length u16, topic)* | [type length u8, type]
//!       | [id length u16, id] | data
//! ```
//!
//! Format 2 added the publisher's id (flag 8). A format 1 record is a format 2 record without
//! it, so this build reads segments of both (and the store marks a format 1 directory as
//! format 2 before it writes an id, so an older build refuses it rather than misread it).
//!
//! all integers little-endian. `0xff` never occurs in UTF-8, so no text a publisher sends can
//! look like a header. A segment may end in zeros: the writer fills space ahead of its last
//! record with zeros (and syncs them) so that a sync has only data to write, not the file's
//! new size; a record never starts with a zero byte, so zeros where a record would start end
//! the segment cleanly, and a torn write shows as a bad record followed by zeros (or the end). Records in a store have strictly increasing sequence numbers; a jump
//! between two records, or between a record and the next segment's name (the first sequence
//! number it was opened for), is a gap: those events are lost, and a resume across them is
//! told so.
//!
//! **Invariant:** no IO, no clock, no panic on any input: every length is checked against what
//! is there before it is used, and a bad record ends the scan of its segment (nothing after it
//! in that segment is trusted, so a corrupted length can never make us read garbage as events).

use crate::hub::history::{Publish, Restored};
use std::collections::VecDeque;

/// The version this build writes (and reads, with [`OLDEST_READ_VERSION`] and those between).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_READ_VERSION: u32 = 1;
/// The first 8 bytes of a segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\xffsse-log";
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// The first 4 bytes of a record.
pub const RECORD_MAGIC: [u8; 4] = [0xff, b'e', b'v', b'1'];
/// Bytes before a record's body (magic, length, CRC).
pub const RECORD_HEADER_LEN: usize = 12;
/// The shortest record (no topic, no type, no retry, empty data): what bounds how many
/// events a number of lost bytes could have held.
pub const MIN_RECORD_LEN: usize = RECORD_HEADER_LEN + 8 + 1 + 1;

const FLAG_PRIVATE: u8 = 1;
const FLAG_TYPE: u8 = 2;
const FLAG_RETRY: u8 = 4;
const FLAG_ID: u8 = 8;

/// The CRC-32C tables for slicing by 8: `T[0]` is the byte-at-a-time table, `T[k][i]` the
/// CRC of byte `i` followed by `k` zero bytes (start-up reads the whole history through this,
/// so 8 bytes a step instead of 1 matters there).
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

/// Continues a CRC-32C (Castagnoli, as iSCSI and ext4 use) over `bytes`; start from 0.
pub fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut c = !crc;
    let mut chunks = bytes.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][(lo >> 8 & 0xff) as usize]
            ^ t[5][(lo >> 16 & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][(hi >> 8 & 0xff) as usize]
            ^ t[1][(hi >> 16 & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The header every segment starts with.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c(0, &h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Ours, this version.
    Ok,
    /// Ours, another version (the whole store is then refused at start-up).
    Version(u32),
    /// Shorter than a header (a segment whose creation was cut short).
    Short,
    /// Not a header (wrong magic or checksum).
    Bad,
}

/// Reads a segment's header.
pub fn read_header(bytes: &[u8]) -> Header {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Header::Short;
    }
    if bytes[..8] != SEGMENT_MAGIC || le32(&bytes[12..16]) != crc32c(0, &bytes[..12]) {
        return Header::Bad;
    }
    match le32(&bytes[8..12]) {
        v if (OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&v) => Header::Ok,
        v => Header::Version(v),
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Why an event cannot be written as a record (never for a publish that passed
/// [`crate::hub::parse`]'s checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge(pub &'static str);

/// Appends event `seq` as a record to `out`; on error `out` is left as it was.
pub fn encode(out: &mut Vec<u8>, seq: u64, p: &Publish) -> Result<(), TooLarge> {
    let topics = u8::try_from(p.topics.len()).map_err(|_| TooLarge("too many topics"))?;
    if p.topics.iter().any(|t| t.len() > usize::from(u16::MAX)) {
        return Err(TooLarge("topic too long"));
    }
    let ty = match &p.event_type {
        Some(t) => Some(u8::try_from(t.len()).map_err(|_| TooLarge("type too long"))?),
        None => None,
    };
    let id = match &p.id {
        Some(id) => Some(u16::try_from(id.len()).map_err(|_| TooLarge("id too long"))?),
        None => None,
    };
    let body_len = 8
        + 1
        + p.retry.map_or(0, |_| 8)
        + 1
        + p.topics.iter().map(|t| 2 + t.len()).sum::<usize>()
        + ty.map_or(0, |n| 1 + usize::from(n))
        + id.map_or(0, |n| 2 + usize::from(n))
        + p.data.len();
    let len = u32::try_from(body_len).map_err(|_| TooLarge("event too large"))?;
    let start = out.len();
    out.reserve(RECORD_HEADER_LEN + body_len);
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    let mut flags = 0;
    if p.private {
        flags |= FLAG_PRIVATE;
    }
    if ty.is_some() {
        flags |= FLAG_TYPE;
    }
    if p.retry.is_some() {
        flags |= FLAG_RETRY;
    }
    if id.is_some() {
        flags |= FLAG_ID;
    }
    out.push(flags);
    if let Some(r) = p.retry {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.push(topics);
    for t in &p.topics {
        out.extend_from_slice(&(t.len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    if let (Some(n), Some(t)) = (ty, &p.event_type) {
        out.push(n);
        out.extend_from_slice(t.as_bytes());
    }
    if let (Some(n), Some(i)) = (id, &p.id) {
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(i.as_bytes());
    }
    out.extend_from_slice(p.data.as_bytes());
    let crc = crc32c(crc32c(0, &out[start + 4..start + 8]), &out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A cursor over a record body; every read is checked.
struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn text(&mut self, n: usize) -> Option<String> {
        std::str::from_utf8(self.take(n)?).ok().map(str::to_string)
    }
}

/// Decodes a record body whose checksum held.
fn decode_body(body: &[u8]) -> Option<(u64, Publish)> {
    let mut r = ByteReader(body);
    let seq = le64(r.take(8)?);
    let flags = r.u8()?;
    if flags & !(FLAG_PRIVATE | FLAG_TYPE | FLAG_RETRY | FLAG_ID) != 0 {
        return None;
    }
    let retry = if flags & FLAG_RETRY != 0 {
        Some(le64(r.take(8)?))
    } else {
        None
    };
    let n = r.u8()?;
    let mut topics = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let b = r.take(2)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        topics.push(r.text(len)?);
    }
    let event_type = if flags & FLAG_TYPE != 0 {
        let len = usize::from(r.u8()?);
        Some(r.text(len)?)
    } else {
        None
    };
    let id = if flags & FLAG_ID != 0 {
        let b = r.take(2)?;
        Some(r.text(usize::from(u16::from_le_bytes([b[0], b[1]])))?)
    } else {
        None
    };
    let data = std::str::from_utf8(r.0).ok()?.to_string();
    Some((
        seq,
        Publish {
            topics,
            data,
            event_type,
            retry,
            private: flags & FLAG_PRIVATE != 0,
            id,
        },
    ))
}

/// What is wrong at the end of a segment's good records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The tail is a cut-short write: less than a header, a length past the end, or a last
    /// record whose checksum fails (with only zeros, if anything, after it). Truncated when it
    /// ends the store.
    Torn,
    /// A record in the middle fails its checksum (or cannot be read, or does not follow
    /// the one before): the rest of the segment is not trusted.
    Corrupt,
}

/// One segment read through.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// The good records, each with its offset in the segment.
    pub records: Vec<(usize, u64, Publish)>,
    /// Where the good records end.
    pub end: usize,
    /// What the bytes from `end` to `data_end` are, if damaged.
    pub damage: Option<Damage>,
    /// Where the bytes that are not zero end (`end` if only zeros follow it): what damage
    /// covers; zeros after it are space written ahead, not data.
    pub data_end: usize,
}

/// Where the bytes that are not zero end: zeros after it are space written ahead (or the
/// zero bytes a torn write left), not data.
pub fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Reads the records of one segment (header already checked) from `SEGMENT_HEADER_LEN`,
/// stopping at the first that is not good. `after`: the records must have sequence numbers
/// above it (the previous segment's last, or this segment's name minus one).
pub fn scan_segment(bytes: &[u8], after: u64) -> SegmentScan {
    let mut scan = SegmentScan {
        end: SEGMENT_HEADER_LEN.min(bytes.len()),
        ..SegmentScan::default()
    };
    let data_end = data_end(bytes);
    let zeros_from = |at: usize| at >= data_end;
    let mut prev = after;
    let mut at = scan.end;
    while at < bytes.len() {
        if zeros_from(at) {
            // A clean end: nothing was written here.
            break;
        }
        let rest = &bytes[at..];
        let data = &bytes[at..data_end];
        if data.len() < RECORD_HEADER_LEN {
            scan.damage = Some(Damage::Torn);
            break;
        }
        if rest[..4] != RECORD_MAGIC {
            scan.damage = Some(Damage::Corrupt);
            break;
        }
        let len = le32(&rest[4..8]) as usize;
        let Some(total) = len
            .checked_add(RECORD_HEADER_LEN)
            .filter(|&t| t <= rest.len())
        else {
            scan.damage = Some(Damage::Torn);
            break;
        };
        let body = &rest[RECORD_HEADER_LEN..total];
        if crc32c(crc32c(0, &rest[4..8]), body) != le32(&rest[8..12]) {
            // The last record written (only zeros after it) is a write cut short.
            scan.damage = Some(if zeros_from(at + total) {
                Damage::Torn
            } else {
                Damage::Corrupt
            });
            break;
        }
        match decode_body(body) {
            Some((seq, p)) if seq > prev => {
                scan.records.push((at, seq, p));
                prev = seq;
            }
            _ => {
                scan.damage = Some(Damage::Corrupt);
                break;
            }
        }
        at += total;
        scan.end = at;
    }
    scan.data_end = data_end.max(scan.end);
    scan
}

/// What one segment held, as [`Recovery::feed`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Good records.
    pub records: usize,
    /// Where they end.
    pub end: usize,
    pub damage: Option<Damage>,
}

/// Damage found in one segment, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The segment's first sequence number (its file name).
    pub segment: u64,
    pub offset: usize,
    /// Bytes from `offset` to the last byte that is not zero (zeros after it are room).
    pub bytes: usize,
    pub damage: Damage,
}

/// Where a segment stands among those recovered: only the newest may end in a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentPos {
    /// A newer segment follows it.
    Older,
    /// The last segment, the one being written when the server stopped.
    Newest,
}

/// A whole store read back, segment by segment, oldest first, keeping at most the newest
/// `max_events` items and, roughly, `max_bytes` of records (a record's size on disk is less
/// than what the history counts for it, so the history's own bounds are the exact ones).
#[derive(Debug)]
pub struct Recovery {
    max_events: usize,
    max_bytes: usize,
    /// The retained items, with their size on disk.
    pub items: VecDeque<(Restored, usize)>,
    bytes: usize,
    /// The largest sequence number of any item dropped here for the bounds (0: none).
    pub dropped: u64,
    /// The last sequence number used (read, or lost in a gap).
    pub last: u64,
    /// Events read.
    pub events: u64,
    pub found: Vec<Found>,
    /// The last segment ends in a corrupt record: appends go to a new segment, named after
    /// `last`.
    pub fresh_segment: bool,
    /// The last segment's torn tail, to truncate: (segment, offset, bytes).
    pub truncate: Option<(u64, usize, usize)>,
}

impl Recovery {
    /// An empty store, bounded as the history is.
    pub fn new(max_events: usize, max_bytes: usize) -> Recovery {
        Recovery {
            max_events: max_events.max(1),
            max_bytes,
            items: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            last: 0,
            events: 0,
            found: Vec::new(),
            fresh_segment: false,
            truncate: None,
        }
    }

    fn push(&mut self, item: Restored, size: usize) {
        self.last = item.seq();
        self.items.push_back((item, size));
        self.bytes += size;
        while self.items.len() > self.max_events
            || (self.bytes > self.max_bytes && self.items.len() > 1)
        {
            if let Some((old, size)) = self.items.pop_front() {
                self.bytes -= size;
                self.dropped = old.seq();
            }
        }
    }

    fn gap_to(&mut self, through: u64) {
        if through > self.last {
            let after = self.last;
            // A store's first segment may start anywhere (older ones were deleted): that is
            // the history's start, not a gap.
            if self.last == 0 && self.items.is_empty() && self.found.is_empty() {
                self.last = through;
                self.dropped = through;
            } else {
                self.push(Restored::Gap { after, through }, MIN_RECORD_LEN);
            }
        }
    }

    /// Feeds one segment, `name` its first sequence number, `pos` whether it is the newest.
    /// `Err(version)` for a segment of another format version.
    pub fn feed(&mut self, name: u64, bytes: &[u8], pos: SegmentPos) -> Result<Fed, u32> {
        let header = read_header(bytes);
        if let Header::Version(v) = header {
            return Err(v);
        }
        self.gap_to(name.saturating_sub(1));
        let data_end = data_end(bytes);
        let scan = match header {
            Header::Ok => scan_segment(bytes, self.last),
            // A header cut short (or never written over the zeros ahead of it): the segment
            // was being made and held nothing.
            Header::Short => SegmentScan {
                damage: Some(Damage::Torn),
                data_end,
                ..SegmentScan::default()
            },
            _ if data_end < SEGMENT_HEADER_LEN => SegmentScan {
                damage: Some(Damage::Torn),
                data_end,
                ..SegmentScan::default()
            },
            _ => SegmentScan {
                damage: Some(Damage::Corrupt),
                data_end,
                ..SegmentScan::default()
            },
        };
        let ends: Vec<usize> = scan.records.iter().map(|r| r.0).skip(1).collect();
        let fed = Fed {
            records: scan.records.len(),
            end: scan.end,
            damage: scan.damage,
        };
        for (i, (offset, seq, p)) in scan.records.into_iter().enumerate() {
            let size = ends.get(i).copied().unwrap_or(scan.end) - offset;
            self.gap_to(seq - 1);
            self.push(Restored::Event(seq, p), size);
            self.events += 1;
        }
        if let Some(damage) = scan.damage {
            let lost = scan.data_end - scan.end;
            self.found.push(Found {
                segment: name,
                offset: scan.end,
                bytes: lost,
                damage,
            });
            match (pos, damage) {
                // A write cut short: its events were never answered nor shown (events reach
                // the history only once written, and synced unless `--fsync off`), so the
                // tail is cut and its numbers are given again, with no gap to report.
                (SegmentPos::Newest, Damage::Torn) => self.truncate = Some((name, scan.end, lost)),
                // A bad record with more after it: what followed may have been seen. However
                // many events the bytes held, they had the next numbers: skip them all, so an
                // id a subscriber saw is never given to another event, and start a new
                // segment named past them, so the gap is found again at the next start.
                (SegmentPos::Newest, Damage::Corrupt) => {
                    let bound = lost.div_ceil(MIN_RECORD_LEN) as u64;
                    self.gap_to(self.last + bound);
                    self.fresh_segment = true;
                }
                (SegmentPos::Older, _) => {}
            }
        }
        Ok(fed)
    }

    /// The next sequence number to give.
    pub fn next(&self) -> u64 {
        self.last + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(topic: &str, data: &str) -> Publish {
        Publish {
            topics: vec![topic.into()],
            data: data.into(),
            ..Publish::default()
        }
    }

    fn segment(first: u64, events: &[Publish]) -> Vec<u8> {
        let mut s = segment_header().to_vec();
        for (i, p) in events.iter().enumerate() {
            encode(&mut s, first + i as u64, p).unwrap();
        }
        s
    }

    fn seqs(r: &Recovery) -> Vec<u64> {
        r.items.iter().map(|(i, _)| i.seq()).collect()
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(crc32c(0, b"1234"), b"56789"), 0xe306_9283);
        // RFC 3720 appendix B.4: 32 bytes of zeros, of ones, ascending, descending.
        assert_eq!(crc32c(0, &[0; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(0, &[0xff; 32]), 0x62a8_ab43);
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(0, &up), 0x46dd_794e);
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(0, &down), 0x113f_db5c);
    }

    /// Slicing by 8 gives the byte-at-a-time CRC at every length, split and alignment.
    #[test]
    fn crc32c_by_8_equals_byte_at_a_time() {
        fn bytewise(crc: u32, bytes: &[u8]) -> u32 {
            let mut c = !crc;
            for &b in bytes {
                c = CRC_TABLES[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
            }
            !c
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for start in 0..9 {
            for end in start..data.len() {
                let d = &data[start..end];
                assert_eq!(crc32c(0, d), bytewise(0, d), "{start}..{end}");
                let mid = d.len() / 3;
                assert_eq!(crc32c(crc32c(0, &d[..mid]), &d[mid..]), bytewise(0, d));
            }
        }
    }

    #[test]
    fn records_round_trip_every_field() {
        let p = Publish {
            topics: vec!["a/b".into(), "é".into(), String::new()],
            data: "line 1\nline 2".into(),
            event_type: Some("token".into()),
            retry: Some(u64::MAX),
            private: true,
            id: Some("urn:uuid:é-1".into()),
        };
        let bytes = segment(7, &[p.clone(), Publish::default()]);
        let scan = scan_segment(&bytes, 6);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.end, bytes.len());
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[0].1, 7);
        assert_eq!(scan.records[0].2, p);
        assert_eq!(scan.records[1].2, Publish::default());
        // The empty event is the shortest record.
        assert_eq!(bytes.len() - scan.records[1].0, MIN_RECORD_LEN);
    }

    #[test]
    fn oversized_fields_are_refused_not_truncated() {
        let mut out = vec![1, 2, 3];
        let many = Publish {
            topics: vec!["t".into(); 256],
            ..Publish::default()
        };
        assert!(encode(&mut out, 1, &many).is_err());
        let long_type = Publish {
            event_type: Some("x".repeat(256)),
            ..Publish::default()
        };
        assert!(encode(&mut out, 1, &long_type).is_err());
        let long_id = Publish {
            id: Some("x".repeat(65_536)),
            ..Publish::default()
        };
        assert!(encode(&mut out, 1, &long_id).is_err());
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn headers_of_other_versions_and_garbage_are_told_apart() {
        let h = segment_header();
        assert_eq!(read_header(&h), Header::Ok);
        assert_eq!(read_header(&h[..15]), Header::Short);
        let version = |v: u8| {
            let mut h = h;
            h[8] = v;
            let crc = crc32c(0, &h[..12]);
            h[12..].copy_from_slice(&crc.to_le_bytes());
            h
        };
        assert_eq!(read_header(&version(3)), Header::Version(3));
        assert_eq!(read_header(&version(0)), Header::Version(0));
        // Format 1 (before ids) is read: its records are format 2's without the id.
        assert_eq!(read_header(&version(1)), Header::Ok);
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(read_header(&bad), Header::Bad);
        let mut r = Recovery::new(10, 1 << 20);
        assert_eq!(r.feed(1, &version(3), SegmentPos::Newest).unwrap_err(), 3);
    }

    /// The file cut at every byte offset of its last record: the tail is torn, truncated at
    /// the last good record, never served, and its number is given again (it was never
    /// answered: no gap to report).
    #[test]
    fn a_torn_tail_at_every_byte_offset_is_cut_and_never_served() {
        let events = [
            ev("a", "one"),
            ev("a", "two"),
            ev("b", "three, a little longer"),
        ];
        let whole = segment(1, &events);
        let good = segment(1, &events[..2]).len();
        for cut in good..whole.len() {
            let mut r = Recovery::new(100, 1 << 20);
            let scan = r.feed(1, &whole[..cut], SegmentPos::Newest).unwrap();
            assert_eq!(scan.records, 2, "cut at {cut}");
            assert_eq!(scan.end, good);
            if cut == good {
                assert_eq!(scan.damage, None);
                assert_eq!(r.truncate, None);
                assert_eq!(r.next(), 3);
                continue;
            }
            assert_eq!(scan.damage, Some(Damage::Torn), "cut at {cut}");
            // What is cut is counted up to its last byte that is not zero (zeros after a
            // record are space written ahead, wherever they come from).
            let data = data_end(&whole[..cut]);
            assert_eq!(r.truncate, Some((1, good, data - good)), "cut at {cut}");
            assert!(!r.fresh_segment, "appends continue where the cut is");
            // Never served: only the two good events, and no gap.
            assert_eq!(seqs(&r), [1, 2], "cut at {cut}");
            assert_eq!(r.next(), 3);
        }
    }

    #[test]
    fn a_last_record_with_a_bad_checksum_is_torn_and_zeros_after_records_are_room() {
        let mut s = segment(1, &[ev("a", "one"), ev("a", "two")]);
        let n = s.len();
        s[n - 1] ^= 0x40;
        let scan = scan_segment(&s, 0);
        assert_eq!((scan.records.len(), scan.damage), (1, Some(Damage::Torn)));
        // The same over zeros written ahead: still the last record written, still torn.
        s.extend_from_slice(&[0; 4096]);
        let scan = scan_segment(&s, 0);
        assert_eq!((scan.records.len(), scan.damage), (1, Some(Damage::Torn)));
        assert_eq!(scan.data_end, n);
        // Zeros where a record would start: a clean end, nothing cut, nothing counted.
        let mut z = segment(1, &[ev("a", "one")]);
        let end = z.len();
        z.extend_from_slice(&[0; 4096]);
        let scan = scan_segment(&z, 0);
        assert_eq!((scan.records.len(), scan.damage), (1, None));
        assert_eq!((scan.end, scan.data_end), (end, end));
        let mut r = Recovery::new(100, 1 << 20);
        let fed = r.feed(1, &z, SegmentPos::Newest).unwrap();
        assert_eq!((fed.end, fed.damage, r.truncate), (end, None, None));
        assert!(r.found.is_empty());
        // A bad record with data after the zeros is corruption, not a torn tail.
        let mut c = segment(1, &[ev("a", "one"), ev("a", "two")]);
        let n = c.len();
        c[n - 1] ^= 0x40;
        c.extend_from_slice(&[0; 64]);
        c.extend_from_slice(&[1]);
        assert_eq!(scan_segment(&c, 0).damage, Some(Damage::Corrupt));
        // A segment whose header was never written over its zeros held nothing.
        let mut r = Recovery::new(100, 1 << 20);
        let fed = r.feed(7, &[0; 4096], SegmentPos::Newest).unwrap();
        assert_eq!((fed.records, fed.damage), (0, Some(Damage::Torn)));
        assert_eq!(r.truncate, Some((7, 0, 0)));
    }

    /// A flipped bit anywhere in a record in the middle is found by its checksum (or its
    /// magic), what precedes it is kept, nothing after it in the segment is served, and
    /// the next segment continues after a gap.
    #[test]
    fn a_flipped_bit_in_the_middle_is_caught_at_every_bit() {
        let events: Vec<Publish> = (0..5).map(|i| ev("t", &format!("event {i}"))).collect();
        let s = segment(1, &events);
        let starts: Vec<usize> = scan_segment(&s, 0).records.iter().map(|r| r.0).collect();
        let (from, to) = (starts[2], starts[3]);
        let next = segment(6, &[ev("t", "after")]);
        for byte in from..to {
            for bit in 0..8 {
                let mut bad = s.clone();
                bad[byte] ^= 1 << bit;
                let mut r = Recovery::new(100, 1 << 20);
                let scan = r.feed(1, &bad, SegmentPos::Older).unwrap();
                assert_eq!(scan.records, 2, "byte {byte} bit {bit}");
                let found = &r.found[0];
                assert_eq!((found.segment, found.offset), (1, from));
                r.feed(6, &next, SegmentPos::Newest).unwrap();
                assert_eq!(seqs(&r), [1, 2, 5, 6], "byte {byte} bit {bit}");
                assert_eq!(
                    r.items[2].0,
                    Restored::Gap {
                        after: 2,
                        through: 5
                    }
                );
                assert_eq!(r.next(), 7);
                assert!(!r.fresh_segment && r.truncate.is_none());
            }
        }
    }

    #[test]
    fn corruption_in_the_newest_segment_is_kept_for_inspection_and_skipped() {
        let events: Vec<Publish> = (0..4).map(|i| ev("t", &format!("event {i}"))).collect();
        let mut s = segment(1, &events);
        let second = scan_segment(&s, 0).records[1].0;
        s[second + RECORD_HEADER_LEN + 9] ^= 4;
        let mut r = Recovery::new(100, 1 << 20);
        r.feed(1, &s, SegmentPos::Newest).unwrap();
        assert_eq!(r.found[0].damage, Damage::Corrupt);
        assert_eq!(r.truncate, None, "a corrupt middle is not a torn tail");
        assert!(r.fresh_segment);
        let lost = (s.len() - second) as u64;
        assert_eq!(r.next(), 2 + lost.div_ceil(MIN_RECORD_LEN as u64));
    }

    #[test]
    fn a_record_that_does_not_follow_its_predecessor_ends_the_segment() {
        let mut s = segment_header().to_vec();
        encode(&mut s, 5, &ev("a", "x")).unwrap();
        encode(&mut s, 5, &ev("a", "again")).unwrap();
        let scan = scan_segment(&s, 0);
        assert_eq!(
            (scan.records.len(), scan.damage),
            (1, Some(Damage::Corrupt))
        );
        assert!(scan_segment(&s, 5).records.is_empty());
    }

    #[test]
    fn segments_chain_and_deleted_ones_are_the_start_not_a_gap() {
        let mut r = Recovery::new(100, 1 << 20);
        r.feed(
            41,
            &segment(41, &[ev("a", "1"), ev("a", "2")]),
            SegmentPos::Older,
        )
        .unwrap();
        r.feed(43, &segment(43, &[ev("a", "3")]), SegmentPos::Older)
            .unwrap();
        // An empty newest segment (rolled, nothing written yet).
        r.feed(44, &segment_header(), SegmentPos::Newest).unwrap();
        assert_eq!(seqs(&r), [41, 42, 43]);
        assert_eq!(r.dropped, 40);
        assert_eq!(r.next(), 44);
        assert!(r.found.is_empty());
        // A newest segment named past the last record (appends after damage): a gap.
        let mut r = Recovery::new(100, 1 << 20);
        r.feed(1, &segment(1, &[ev("a", "1")]), SegmentPos::Older)
            .unwrap();
        r.feed(9, &segment(9, &[ev("a", "9")]), SegmentPos::Newest)
            .unwrap();
        assert_eq!(
            r.items[1].0,
            Restored::Gap {
                after: 1,
                through: 8
            }
        );
        assert_eq!(r.next(), 10);
    }

    #[test]
    fn recovery_keeps_only_the_newest_within_the_bounds() {
        let events: Vec<Publish> = (0..50).map(|i| ev("t", &format!("{i}"))).collect();
        let mut r = Recovery::new(10, 1 << 20);
        r.feed(1, &segment(1, &events), SegmentPos::Newest).unwrap();
        assert_eq!(seqs(&r), (41..=50).collect::<Vec<_>>());
        assert_eq!(r.dropped, 40);
        assert_eq!(r.events, 50);
        let mut r = Recovery::new(1000, 3 * MIN_RECORD_LEN + 20);
        r.feed(1, &segment(1, &events), SegmentPos::Newest).unwrap();
        assert!(r.items.len() < 5 && !r.items.is_empty());
        assert_eq!(r.items.back().map(|i| i.0.seq()), Some(50));
    }

    #[test]
    fn a_short_or_garbage_segment_never_panics() {
        let mut r = Recovery::new(10, 1 << 20);
        r.feed(1, &[], SegmentPos::Newest).unwrap();
        assert_eq!(r.next(), 1);
        let mut r = Recovery::new(10, 1 << 20);
        r.feed(1, b"\xffsse", SegmentPos::Newest).unwrap();
        assert_eq!(r.truncate, Some((1, 0, 4)));
        // Pseudo-random bytes after a good header, at many lengths.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in 0..600 {
            let mut s = segment_header().to_vec();
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(x as u8);
            }
            if n % 3 == 0 && n >= 4 {
                s[16..20].copy_from_slice(&RECORD_MAGIC);
            }
            let mut r = Recovery::new(10, 1 << 20);
            let scan = r.feed(1, &s, SegmentPos::Newest).unwrap();
            assert_eq!(scan.records, 0, "{n} random bytes");
        }
    }
}
