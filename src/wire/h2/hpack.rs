//! HPACK (RFC 7541): the decoder of request field blocks, with a bounded dynamic table and a
//! bounded header list, and a minimal encoder for responses (static-table indexes and literals
//! without indexing, never Huffman, so the encoder keeps no state).
//!
//! The decoder never panics on any input and never holds more than the table's size (at most
//! the `SETTINGS_HEADER_TABLE_SIZE` the server announced) plus the header list it was asked to
//! return (at most the list limit). A block that decodes past the list limit is still decoded
//! to its end, so the table stays in step with the peer's, but nothing more is kept: the
//! caller answers `431` on that stream and the connection goes on (an "HPACK bomb" costs the
//! bytes of its block, not the size it claims).

use std::collections::VecDeque;

use super::huffman;

/// The static table (RFC 7541 Appendix A), index 1 first.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The size RFC 7541 section 4.1 counts for an entry: name + value + 32.
pub const ENTRY_OVERHEAD: usize = 32;

/// Why a field block does not decode. `ListTooLarge` leaves the decoder in step (the block was
/// read to its end) and is a stream's problem (`431`); every other error is the connection's
/// (`COMPRESSION_ERROR`, RFC 9113 section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a representation.
    Truncated,
    /// An integer past 2^32 (or more than 5 continuation bytes).
    IntegerOverflow,
    /// Index 0, or past the static and dynamic tables.
    BadIndex,
    /// A bad Huffman string (EOS inside, bad padding).
    Huffman,
    /// A table size update above the limit the server announced, or not at the block's start.
    BadSizeUpdate,
    /// The decoded list passed the limit (the sum RFC 9113 section 6.5.2 counts); the block
    /// was read to its end, so the table is in step.
    ListTooLarge,
    /// One string longer than the whole list may be: the block was not read to its end, so
    /// the connection ends (RFC 9113 section 10.5.1 allows it).
    StringTooLong,
}

/// One decoded field. Names and values are bytes; the caller checks what HTTP allows.
pub type Field = (Vec<u8>, Vec<u8>);

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoder's state: its dynamic table (newest first) and its limits.
#[derive(Debug)]
pub struct Decoder {
    table: VecDeque<Entry>,
    /// Sum of the entries' sizes (RFC 7541 section 4.1).
    size: usize,
    /// The table's current maximum (set by the peer's size updates, at most `limit`).
    max: usize,
    /// What the server announced as `SETTINGS_HEADER_TABLE_SIZE` (default 4,096).
    limit: usize,
}

impl Decoder {
    /// A decoder whose table may hold `limit` bytes (the server's `SETTINGS_HEADER_TABLE_SIZE`).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
        }
    }

    /// The table's size as RFC 7541 counts it (for tests and figures).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Entries in the dynamic table, newest first (for tests).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.table.iter().map(|(n, v)| (&n[..], &v[..]))
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            // RFC 7541 section 4.4: an entry larger than the table empties it.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.table.push_front((name.into(), value.into()));
        self.size += size;
    }

    /// Looks an index up in the static table then the dynamic one.
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex);
        }
        if index <= STATIC.len() {
            let (n, v) = STATIC[index - 1];
            return Ok((n.as_bytes(), v.as_bytes()));
        }
        match self.table.get(index - STATIC.len() - 1) {
            Some((n, v)) => Ok((n, v)),
            None => Err(HpackError::BadIndex),
        }
    }

    /// Decodes one complete field block into `fields` (cleared first). The list may hold at
    /// most `max_list` bytes as RFC 9113 counts them (name + value + 32 per field); past that
    /// the rest of the block is still decoded (to keep the table in step) but not kept, and
    /// the answer is `ListTooLarge`.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        fields: &mut Vec<Field>,
    ) -> Result<(), HpackError> {
        fields.clear();
        let mut pos = 0;
        let mut list = 0usize;
        let mut over = false;
        let mut started = false;
        // One string never needs more than the list limit (the list would be over anyway) nor
        // more than 8/5 of the block (Huffman's best ratio), whichever is smaller.
        let string_cap = max_list.min(block.len().saturating_mul(8) / 5 + 1);
        while pos < block.len() {
            let b = block[pos];
            let (name, value, index_it): (Vec<u8>, Vec<u8>, bool);
            if b & 0x80 != 0 {
                // Indexed field (section 6.1).
                let i = integer(block, &mut pos, 7)?;
                let (n, v) = self.get(i)?;
                started = true;
                list = list.saturating_add(n.len() + v.len() + ENTRY_OVERHEAD);
                if list > max_list {
                    over = true;
                }
                if !over {
                    fields.push((n.to_vec(), v.to_vec()));
                }
                continue;
            } else if b & 0x40 != 0 {
                // Literal with incremental indexing (6.2.1).
                let (n, v) = self.literal(block, &mut pos, 6, string_cap)?;
                name = n;
                value = v;
                index_it = true;
            } else if b & 0x20 != 0 {
                // Dynamic table size update (6.3): only before the first field.
                if started {
                    return Err(HpackError::BadSizeUpdate);
                }
                let max = integer(block, &mut pos, 5)?;
                if max > self.limit {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.max = max;
                self.evict_to(max);
                continue;
            } else {
                // Literal without indexing (6.2.2, 0000) or never indexed (6.2.3, 0001).
                let (n, v) = self.literal(block, &mut pos, 4, string_cap)?;
                name = n;
                value = v;
                index_it = false;
            }
            started = true;
            if index_it {
                self.insert(&name, &value);
            }
            list = list.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
            if list > max_list {
                over = true;
            }
            if !over {
                fields.push((name, value));
            }
        }
        if over {
            fields.clear();
            return Err(HpackError::ListTooLarge);
        }
        Ok(())
    }

    fn literal(
        &self,
        block: &[u8],
        pos: &mut usize,
        prefix: u8,
        cap: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        let i = integer(block, pos, prefix)?;
        let name = if i == 0 {
            string(block, pos, cap)?
        } else {
            self.get(i)?.0.to_vec()
        };
        let value = string(block, pos, cap)?;
        Ok((name, value))
    }
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 section 5.1) at `pos`; at most 2^32.
pub fn integer(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, HpackError> {
    let first = *block.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let mask = ((1u16 << n) - 1) as u8;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value as usize);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value as usize);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Reads a string literal (section 5.2), Huffman-decoded if flagged, of at most `cap` bytes
/// once decoded.
fn string(block: &[u8], pos: &mut usize, cap: usize) -> Result<Vec<u8>, HpackError> {
    let huff = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if huff {
        let mut out = Vec::with_capacity(raw.len().min(cap));
        match huffman::decode(raw, &mut out, cap) {
            Ok(()) => Ok(out),
            Err(huffman::HuffmanError::TooLong) => Err(HpackError::StringTooLong),
            Err(_) => Err(HpackError::Huffman),
        }
    } else if raw.len() > cap {
        Err(HpackError::StringTooLong)
    } else {
        Ok(raw.to_vec())
    }
}

/// Writes an integer with an `n`-bit prefix, the first byte's high bits being `flags`.
pub fn put_integer(out: &mut Vec<u8>, flags: u8, n: u8, value: usize) {
    let mask = ((1u16 << n) - 1) as usize;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Encodes one response field, stateless: the static entry's index when name and value are
/// both in the static table, else a literal without indexing (the static name's index when
/// the name is there). `name` must be lowercase already (HTTP/2 field names are).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let mut name_index = 0;
    for (i, (n, v)) in STATIC.iter().enumerate() {
        if n.as_bytes() == name {
            if v.as_bytes() == value {
                put_integer(out, 0x80, 7, i + 1);
                return;
            }
            if name_index == 0 {
                name_index = i + 1;
            }
        }
    }
    put_integer(out, 0x00, 4, name_index);
    if name_index == 0 {
        put_string(out, name);
    }
    put_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn check(d: &mut Decoder, block: &str, want: &[(&str, &str)], table: &[(&str, &str)]) {
        let mut fields = Vec::new();
        d.decode(&hex(block), 1 << 20, &mut fields).unwrap();
        let got: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        let entries: Vec<(&[u8], &[u8])> = d.entries().collect();
        let expect: Vec<(&[u8], &[u8])> = table
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(entries, expect);
        let size: usize = table.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert_eq!(d.table_size(), size);
    }

    #[test]
    fn c1_integers() {
        let mut out = Vec::new();
        put_integer(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        put_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        let mut pos = 0;
        assert_eq!(integer(&out, &mut pos, 5), Ok(1337));
        assert_eq!(pos, 3);
        out.clear();
        put_integer(&mut out, 0, 8, 42);
        assert_eq!(out, [0x2a]);
        // Past 2^32, endless continuation, and a cut integer are refused.
        let mut pos = 0;
        assert_eq!(
            integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos, 5),
            Err(HpackError::IntegerOverflow)
        );
        let mut pos = 0;
        assert_eq!(
            integer(
                &[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                &mut pos,
                5
            ),
            Err(HpackError::IntegerOverflow)
        );
        let mut pos = 0;
        assert_eq!(
            integer(&[0x1f, 0x80], &mut pos, 5),
            Err(HpackError::Truncated)
        );
    }

    #[test]
    fn c2_field_representations() {
        let mut d = Decoder::new(4096);
        check(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            &[("custom-key", "custom-header")],
            &[("custom-key", "custom-header")],
        );
        let mut d = Decoder::new(4096);
        check(
            &mut d,
            "040c 2f73 616d 706c 652f 7061 7468",
            &[(":path", "/sample/path")],
            &[],
        );
        let mut d = Decoder::new(4096);
        check(
            &mut d,
            "1008 7061 7373 776f 7264 0673 6563 7265 74",
            &[("password", "secret")],
            &[],
        );
        let mut d = Decoder::new(4096);
        check(&mut d, "82", &[(":method", "GET")], &[]);
    }

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const T1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const T2: &[(&str, &str)] = &[
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];
    const T3: &[(&str, &str)] = &[
        ("custom-key", "custom-value"),
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];

    #[test]
    fn c3_requests_without_huffman() {
        let mut d = Decoder::new(4096);
        check(
            &mut d,
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            REQ1,
            T1,
        );
        check(&mut d, "8286 84be 5808 6e6f 2d63 6163 6865", REQ2, T2);
        check(
            &mut d,
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            REQ3,
            T3,
        );
    }

    #[test]
    fn c4_requests_with_huffman() {
        let mut d = Decoder::new(4096);
        check(
            &mut d,
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            REQ1,
            T1,
        );
        check(&mut d, "8286 84be 5886 a8eb 1064 9cbf", REQ2, T2);
        check(
            &mut d,
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            REQ3,
            T3,
        );
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOC: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn responses(blocks: [&str; 3]) {
        let mut d = Decoder::new(256);
        check(
            &mut d,
            blocks[0],
            &[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC),
            ],
            &[
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302"),
            ],
        );
        check(
            &mut d,
            blocks[1],
            &[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC),
            ],
            &[
                (":status", "307"),
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private"),
            ],
        );
        check(
            &mut d,
            blocks[2],
            &[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE2),
                ("location", LOC),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE),
            ],
            &[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE2),
            ],
        );
    }

    #[test]
    fn c5_responses_without_huffman_evict() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
             3d31",
        ]);
    }

    #[test]
    fn c6_responses_with_huffman_evict() {
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn size_updates_are_bounded_and_only_first() {
        let mut d = Decoder::new(4096);
        let mut f = Vec::new();
        // 0x3f e1 1f = size update to 4096: allowed; to 4097: refused.
        assert_eq!(d.decode(&[0x3f, 0xe1, 0x1f], 100, &mut f), Ok(()));
        assert_eq!(
            d.decode(&[0x3f, 0xe2, 0x1f], 100, &mut f),
            Err(HpackError::BadSizeUpdate)
        );
        // After a field: refused.
        assert_eq!(
            d.decode(&[0x82, 0x20], 100, &mut f),
            Err(HpackError::BadSizeUpdate)
        );
        // Size 0 empties the table.
        check(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0161",
            &[("custom-key", "a")],
            &[("custom-key", "a")],
        );
        check(&mut d, "20", &[], &[]);
        assert_eq!(d.decode(&hex("be"), 100, &mut f), Err(HpackError::BadIndex));
    }

    #[test]
    fn a_bomb_is_refused_and_the_table_stays_in_step() {
        // One 4,000-byte value put in the table, then referenced 1,000 times in a 1 KB block:
        // 4 MB of fields for 1 KB of input. The list limit stops it; nothing past it is kept.
        let mut d = Decoder::new(4096);
        let mut block = vec![0x40, 0x01, b'x'];
        put_integer(&mut block, 0, 7, 4000);
        block.extend(std::iter::repeat(b'y').take(4000));
        let mut f = Vec::new();
        assert_eq!(d.decode(&block, 16 << 10, &mut f), Ok(()));
        let bomb = vec![0xbe; 1000];
        assert_eq!(
            d.decode(&bomb, 16 << 10, &mut f),
            Err(HpackError::ListTooLarge)
        );
        assert!(f.is_empty() && f.capacity() < 64);
        // The next block still decodes against the same table.
        assert_eq!(d.decode(&[0xbe], 16 << 10, &mut f), Ok(()));
        assert_eq!(f[0].1.len(), 4000);
        // A literal longer than the list limit is refused before it is copied.
        let mut big = vec![0x00, 0x01, b'x'];
        put_integer(&mut big, 0, 7, 20_000);
        big.extend(std::iter::repeat(b'z').take(20_000));
        assert_eq!(
            d.decode(&big, 16 << 10, &mut f),
            Err(HpackError::StringTooLong)
        );
    }

    #[test]
    fn the_encoder_round_trips() {
        let mut out = Vec::new();
        encode_field(&mut out, b":status", b"200");
        encode_field(&mut out, b":status", b"413");
        encode_field(&mut out, b"content-type", b"text/event-stream");
        encode_field(&mut out, b"x-accel-buffering", b"no");
        assert_eq!(out[0], 0x88);
        let mut d = Decoder::new(4096);
        let mut f = Vec::new();
        d.decode(&out, 1 << 16, &mut f).unwrap();
        let want: Vec<Field> = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b":status".to_vec(), b"413".to_vec()),
            (b"content-type".to_vec(), b"text/event-stream".to_vec()),
            (b"x-accel-buffering".to_vec(), b"no".to_vec()),
        ];
        assert_eq!(f, want);
        assert_eq!(d.table_size(), 0);
    }

    mod random {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn random_blocks_never_panic_and_stay_bounded(
                blocks in proptest::collection::vec(
                    proptest::collection::vec(any::<u8>(), 0..300), 1..6),
                limit in 0usize..5000,
            ) {
                let mut d = Decoder::new(limit);
                let mut f = Vec::new();
                for b in &blocks {
                    let _ = d.decode(b, 2048, &mut f);
                    prop_assert!(d.table_size() <= limit);
                    let kept: usize = f.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                    prop_assert!(kept <= 2048);
                }
            }

            #[test]
            fn random_huffman_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut out = Vec::new();
                let _ = huffman::decode(&bytes, &mut out, 64);
                prop_assert!(out.len() <= 64);
            }
        }
    }
}
