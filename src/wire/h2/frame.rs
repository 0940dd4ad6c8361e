//! HTTP/2 frames (RFC 9113 sections 4 and 6): the 9-byte header, every frame type's payload
//! read with the section's rules (sizes, stream-id rules, padding), and the encoders of what a
//! server sends. Reading borrows from the caller's buffer; nothing here allocates but the
//! caller's output vector.

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame header length.
pub const HEADER_LEN: usize = 9;

/// The default and smallest `SETTINGS_MAX_FRAME_SIZE` (what the server accepts: it never
/// raises it, so every frame a client sends is at most this).
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

/// The initial window of a stream and of the connection (RFC 9113 section 6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The largest window (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Settings identifiers (RFC 9113 section 6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RFC 9113 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

impl ErrorCode {
    /// The code of a number read from the wire (unknown codes are treated as `InternalError`,
    /// RFC 9113 section 7 allows any behaviour but "special").
    pub fn from_u32(v: u32) -> ErrorCode {
        use ErrorCode::*;
        match v {
            0x0 => NoError,
            0x1 => ProtocolError,
            0x3 => FlowControlError,
            0x4 => SettingsTimeout,
            0x5 => StreamClosed,
            0x6 => FrameSizeError,
            0x7 => RefusedStream,
            0x8 => Cancel,
            0x9 => CompressionError,
            0xa => ConnectError,
            0xb => EnhanceYourCalm,
            0xc => InadequateSecurity,
            0xd => Http11Required,
            _ => InternalError,
        }
    }
}

/// What a frame that breaks the rules costs: the whole connection (GOAWAY with the code) or
/// one stream (RST_STREAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    Connection(ErrorCode),
    Stream(u32, ErrorCode),
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The stream identifier, the reserved bit cleared.
    pub stream: u32,
}

impl FrameHeader {
    /// Reads the 9 header bytes; `None` if fewer are there.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    /// Whether the frame is larger than `max_frame` (the server's `SETTINGS_MAX_FRAME_SIZE`):
    /// a connection error `FRAME_SIZE_ERROR` (RFC 9113 section 4.2 allows treating any one as
    /// such), found before the payload is buffered.
    pub fn check_size(&self, max_frame: u32) -> Result<(), FrameError> {
        if self.len > max_frame {
            Err(FrameError::Connection(ErrorCode::FrameSizeError))
        } else {
            Ok(())
        }
    }
}

/// A priority field (HEADERS with PRIORITY, or PRIORITY frame). Read and checked, not used
/// (RFC 9113 deprecates the scheme; the server writes streams in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub depends_on: u32,
    pub weight: u8,
}

/// A frame, its payload borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        /// The whole payload length, padding included: what flow control counts.
        flow_len: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        block: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// Whole 6-byte entries, checked; read them with [`settings`].
        params: &'a [u8],
    },
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// A frame of a type this endpoint does not know: ignored (RFC 9113 section 4.1).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

fn conn(code: ErrorCode) -> FrameError {
    FrameError::Connection(code)
}

/// Strips padding (the PADDED flag's length byte and the trailing pad).
fn unpad<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if h.flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(conn(ErrorCode::FrameSizeError))?;
    let pad = usize::from(pad);
    if pad > rest.len() {
        // RFC 9113 sections 6.1 and 6.2: padding at least as long as the rest.
        return Err(conn(ErrorCode::ProtocolError));
    }
    Ok(&rest[..rest.len() - pad])
}

fn priority(b: &[u8]) -> Priority {
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Priority {
        exclusive: v & 0x8000_0000 != 0,
        depends_on: v & 0x7fff_ffff,
        weight: b[4],
    }
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads one frame's payload (`payload.len() == h.len`), by RFC 9113 section 6's rules.
/// The size against `SETTINGS_MAX_FRAME_SIZE` is [`FrameHeader::check_size`]'s.
pub fn parse<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    debug_assert_eq!(payload.len(), h.len as usize);
    let s = h.stream;
    match h.kind {
        kind::DATA => {
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            let data = unpad(h, payload)?;
            Ok(Frame::Data {
                stream: s,
                end_stream: h.flags & flag::END_STREAM != 0,
                data,
                flow_len: h.len,
            })
        }
        kind::HEADERS => {
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            let mut block = unpad(h, payload)?;
            let mut prio = None;
            if h.flags & flag::PRIORITY != 0 {
                if block.len() < 5 {
                    return Err(conn(ErrorCode::FrameSizeError));
                }
                let p = priority(block);
                if p.depends_on == s {
                    return Err(FrameError::Stream(s, ErrorCode::ProtocolError));
                }
                prio = Some(p);
                block = &block[5..];
            }
            Ok(Frame::Headers {
                stream: s,
                end_stream: h.flags & flag::END_STREAM != 0,
                end_headers: h.flags & flag::END_HEADERS != 0,
                priority: prio,
                block,
            })
        }
        kind::PRIORITY => {
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            if payload.len() != 5 {
                return Err(FrameError::Stream(s, ErrorCode::FrameSizeError));
            }
            let p = priority(payload);
            if p.depends_on == s {
                return Err(FrameError::Stream(s, ErrorCode::ProtocolError));
            }
            Ok(Frame::Priority {
                stream: s,
                priority: p,
            })
        }
        kind::RST_STREAM => {
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            if payload.len() != 4 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            Ok(Frame::RstStream {
                stream: s,
                code: ErrorCode::from_u32(u32_at(payload)),
            })
        }
        kind::SETTINGS => {
            if s != 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            let ack = h.flags & flag::ACK != 0;
            if ack && !payload.is_empty() {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            if payload.len() % 6 != 0 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            for (id, v) in settings(payload) {
                check_setting(id, v)?;
            }
            Ok(Frame::Settings {
                ack,
                params: payload,
            })
        }
        kind::PUSH_PROMISE => {
            // A client never sends it (RFC 9113 section 8.4); the connection refuses it.
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            Ok(Frame::PushPromise { stream: s })
        }
        kind::PING => {
            if s != 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            if payload.len() != 8 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            let mut data = [0u8; 8];
            data.copy_from_slice(payload);
            Ok(Frame::Ping {
                ack: h.flags & flag::ACK != 0,
                data,
            })
        }
        kind::GOAWAY => {
            if s != 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            if payload.len() < 8 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            Ok(Frame::GoAway {
                last_stream: u32_at(payload) & 0x7fff_ffff,
                code: ErrorCode::from_u32(u32_at(&payload[4..])),
                debug: &payload[8..],
            })
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != 4 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            let increment = u32_at(payload) & 0x7fff_ffff;
            if increment == 0 {
                return Err(if s == 0 {
                    conn(ErrorCode::ProtocolError)
                } else {
                    FrameError::Stream(s, ErrorCode::ProtocolError)
                });
            }
            Ok(Frame::WindowUpdate {
                stream: s,
                increment,
            })
        }
        kind::CONTINUATION => {
            if s == 0 {
                return Err(conn(ErrorCode::ProtocolError));
            }
            Ok(Frame::Continuation {
                stream: s,
                end_headers: h.flags & flag::END_HEADERS != 0,
                block: payload,
            })
        }
        k => Ok(Frame::Unknown { kind: k, stream: s }),
    }
}

/// The (identifier, value) pairs of a SETTINGS payload (whole entries only).
pub fn settings(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params
        .chunks_exact(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32_at(&c[2..])))
}

/// RFC 9113 section 6.5.2's bounds on the values it defines (unknown ones are ignored).
fn check_setting(id: u16, v: u32) -> Result<(), FrameError> {
    match id {
        setting::ENABLE_PUSH if v > 1 => Err(conn(ErrorCode::ProtocolError)),
        setting::INITIAL_WINDOW_SIZE if v > MAX_WINDOW => Err(conn(ErrorCode::FlowControlError)),
        setting::MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME..=0x00ff_ffff).contains(&v) => {
            Err(conn(ErrorCode::ProtocolError))
        }
        _ => Ok(()),
    }
}

/// Whether a DATA or HEADERS frame ends its stream (the END_STREAM flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// More frames follow on the stream.
    Open,
    /// END_STREAM: the sender's last frame on the stream.
    End,
}

impl StreamEnd {
    fn flag(self) -> u8 {
        match self {
            StreamEnd::Open => 0,
            StreamEnd::End => flag::END_STREAM,
        }
    }
}

impl FrameHeader {
    /// Writes this header (`len` at most 2^24-1; the reserved stream bit cleared).
    pub fn put(self, out: &mut Vec<u8>) {
        debug_assert!(self.len <= 0x00ff_ffff);
        let l = self.len.to_be_bytes();
        out.extend_from_slice(&[l[1], l[2], l[3], self.kind, self.flags]);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
    }
}

/// The header of a frame with a payload of `len` bytes (write it with [`FrameHeader::put`]).
pub fn header(len: usize, kind: u8, flags: u8, stream: u32) -> FrameHeader {
    FrameHeader {
        len: len as u32,
        kind,
        flags,
        stream,
    }
}

/// A SETTINGS frame with these entries.
pub fn put_settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    header(entries.len() * 6, kind::SETTINGS, 0, 0).put(out);
    for &(id, v) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn put_settings_ack(out: &mut Vec<u8>) {
    header(0, kind::SETTINGS, flag::ACK, 0).put(out);
}

pub fn put_ping_ack(out: &mut Vec<u8>, data: &[u8; 8]) {
    header(8, kind::PING, flag::ACK, 0).put(out);
    out.extend_from_slice(data);
}

pub fn put_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode) {
    header(8, kind::GOAWAY, 0, 0).put(out);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

pub fn put_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    header(4, kind::RST_STREAM, 0, stream).put(out);
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    header(4, kind::WINDOW_UPDATE, 0, stream).put(out);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

/// A DATA frame carrying `data` (at most the peer's max frame size; the caller splits).
pub fn put_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end: StreamEnd) {
    header(data.len(), kind::DATA, end.flag(), stream).put(out);
    out.extend_from_slice(data);
}

/// A field block to send on a stream as HEADERS plus CONTINUATION frames.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBlock<'a> {
    pub stream: u32,
    /// The HPACK-encoded fields.
    pub block: &'a [u8],
    pub end: StreamEnd,
    /// The largest frame payload the peer takes.
    pub max_frame: usize,
}

/// A field block as HEADERS plus CONTINUATION frames of at most `max_frame` bytes each.
pub fn put_headers(out: &mut Vec<u8>, h: HeaderBlock<'_>) {
    let HeaderBlock {
        stream,
        block,
        end,
        max_frame,
    } = h;
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = end.flag();
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    header(first.len(), kind::HEADERS, flags, stream).put(out);
    out.extend_from_slice(first);
    while let Some(c) = chunks.next() {
        let f = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        header(c.len(), kind::CONTINUATION, f, stream).put(out);
        out.extend_from_slice(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> (FrameHeader, Vec<u8>) {
        let mut b = Vec::new();
        header(payload.len(), kind, flags, stream).put(&mut b);
        let h = FrameHeader::parse(&b).unwrap();
        (h, payload.to_vec())
    }

    fn p(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame<'static>, FrameError> {
        let (h, pl) = frame(kind, flags, stream, payload);
        let pl: &'static [u8] = Box::leak(pl.into_boxed_slice());
        parse(&h, pl)
    }

    const PE: FrameError = FrameError::Connection(ErrorCode::ProtocolError);
    const FSE: FrameError = FrameError::Connection(ErrorCode::FrameSizeError);

    #[test]
    fn header_round_trip_and_reserved_bit() {
        let mut b = Vec::new();
        header(0x123456, 7, 0xab, 0x7fff_fffe).put(&mut b);
        assert_eq!(
            FrameHeader::parse(&b),
            Some(FrameHeader {
                len: 0x123456,
                kind: 7,
                flags: 0xab,
                stream: 0x7fff_fffe
            })
        );
        b[5] |= 0x80;
        assert_eq!(FrameHeader::parse(&b).unwrap().stream, 0x7fff_fffe);
        assert_eq!(FrameHeader::parse(&b[..8]), None);
        let h = FrameHeader::parse(&b).unwrap();
        assert_eq!(h.check_size(16_384), Err(FSE));
    }

    #[test]
    fn data_padding_and_stream_zero() {
        assert_eq!(
            p(
                kind::DATA,
                flag::PADDED | flag::END_STREAM,
                1,
                &[2, b'h', b'i', 0, 0]
            ),
            Ok(Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"hi",
                flow_len: 5
            })
        );
        assert_eq!(p(kind::DATA, flag::PADDED, 1, &[3, 0, 0]), Err(PE));
        assert_eq!(p(kind::DATA, flag::PADDED, 1, &[]), Err(FSE));
        assert_eq!(p(kind::DATA, 0, 0, b"x"), Err(PE));
    }

    #[test]
    fn headers_priority_padding() {
        let payload = [1, 0x80, 0, 0, 3, 16, 0x82, 0];
        assert_eq!(
            p(
                kind::HEADERS,
                flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
                5,
                &payload
            ),
            Ok(Frame::Headers {
                stream: 5,
                end_stream: false,
                end_headers: true,
                priority: Some(Priority {
                    exclusive: true,
                    depends_on: 3,
                    weight: 16
                }),
                block: &[0x82],
            })
        );
        assert_eq!(
            p(kind::HEADERS, flag::PRIORITY, 5, &[0, 0, 0, 5, 1]),
            Err(FrameError::Stream(5, ErrorCode::ProtocolError))
        );
        assert_eq!(p(kind::HEADERS, flag::PRIORITY, 5, &[0, 0]), Err(FSE));
        assert_eq!(p(kind::HEADERS, 0, 0, &[0x82]), Err(PE));
    }

    #[test]
    fn control_frames_sizes_and_streams() {
        assert_eq!(
            p(kind::PRIORITY, 0, 3, &[0, 0, 0, 1]),
            Err(FrameError::Stream(3, ErrorCode::FrameSizeError))
        );
        assert_eq!(p(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 1]), Err(PE));
        assert_eq!(p(kind::RST_STREAM, 0, 1, &[0, 0, 0]), Err(FSE));
        assert_eq!(p(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8]), Err(PE));
        assert_eq!(
            p(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
            Ok(Frame::RstStream {
                stream: 1,
                code: ErrorCode::Cancel
            })
        );
        assert_eq!(p(kind::SETTINGS, 0, 1, &[]), Err(PE));
        assert_eq!(p(kind::SETTINGS, flag::ACK, 0, &[0; 6]), Err(FSE));
        assert_eq!(p(kind::SETTINGS, 0, 0, &[0; 5]), Err(FSE));
        assert_eq!(p(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), Err(PE));
        assert_eq!(
            p(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            Err(FrameError::Connection(ErrorCode::FlowControlError))
        );
        assert_eq!(p(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]), Err(PE));
        assert_eq!(p(kind::SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0]), Err(PE));
        let ok = p(
            kind::SETTINGS,
            0,
            0,
            &[0, 3, 0, 0, 0, 100, 0, 99, 1, 2, 3, 4],
        )
        .unwrap();
        match ok {
            Frame::Settings { ack: false, params } => {
                assert_eq!(
                    settings(params).collect::<Vec<_>>(),
                    [(3, 100), (99, 0x01020304)]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p(kind::PING, 0, 0, &[0; 7]), Err(FSE));
        assert_eq!(p(kind::PING, 0, 1, &[0; 8]), Err(PE));
        assert_eq!(p(kind::GOAWAY, 0, 0, &[0; 7]), Err(FSE));
        assert_eq!(p(kind::GOAWAY, 0, 1, &[0; 8]), Err(PE));
        assert_eq!(p(kind::WINDOW_UPDATE, 0, 0, &[0; 3]), Err(FSE));
        assert_eq!(p(kind::WINDOW_UPDATE, 0, 0, &[0; 4]), Err(PE));
        assert_eq!(
            p(kind::WINDOW_UPDATE, 0, 7, &[0x80, 0, 0, 0]),
            Err(FrameError::Stream(7, ErrorCode::ProtocolError))
        );
        assert_eq!(
            p(kind::WINDOW_UPDATE, 0, 7, &[0x80, 0, 1, 0]),
            Ok(Frame::WindowUpdate {
                stream: 7,
                increment: 256
            })
        );
        assert_eq!(p(kind::CONTINUATION, 0, 0, &[]), Err(PE));
        assert_eq!(p(kind::PUSH_PROMISE, 0, 0, &[0; 4]), Err(PE));
        assert_eq!(
            p(0xfa, 0, 9, b"whatever"),
            Ok(Frame::Unknown {
                kind: 0xfa,
                stream: 9
            })
        );
    }

    #[test]
    fn encoders_read_back() {
        let mut out = Vec::new();
        put_settings(&mut out, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
        put_settings_ack(&mut out);
        put_ping_ack(&mut out, b"12345678");
        put_goaway(&mut out, 7, ErrorCode::EnhanceYourCalm);
        put_rst_stream(&mut out, 3, ErrorCode::RefusedStream);
        put_window_update(&mut out, 0, 1000);
        put_data(&mut out, 1, b"abc", StreamEnd::End);
        put_headers(
            &mut out,
            HeaderBlock {
                stream: 1,
                block: &[1, 2, 3, 4, 5],
                end: StreamEnd::Open,
                max_frame: 2,
            },
        );
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest).unwrap();
            let end = HEADER_LEN + h.len as usize;
            frames.push(parse(&h, &rest[HEADER_LEN..end]).unwrap());
            rest = &rest[end..];
        }
        assert_eq!(frames.len(), 10);
        assert!(matches!(frames[0], Frame::Settings { ack: false, .. }));
        assert!(matches!(frames[1], Frame::Settings { ack: true, .. }));
        assert_eq!(
            frames[2],
            Frame::Ping {
                ack: true,
                data: *b"12345678"
            }
        );
        assert_eq!(
            frames[3],
            Frame::GoAway {
                last_stream: 7,
                code: ErrorCode::EnhanceYourCalm,
                debug: &[]
            }
        );
        assert_eq!(
            frames[4],
            Frame::RstStream {
                stream: 3,
                code: ErrorCode::RefusedStream
            }
        );
        assert_eq!(
            frames[5],
            Frame::WindowUpdate {
                stream: 0,
                increment: 1000
            }
        );
        assert!(matches!(
            frames[6],
            Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"abc",
                ..
            }
        ));
        assert!(matches!(
            frames[7],
            Frame::Headers {
                stream: 1,
                end_stream: false,
                end_headers: false,
                block: &[1, 2],
                ..
            }
        ));
        assert!(matches!(
            frames[8],
            Frame::Continuation {
                stream: 1,
                end_headers: false,
                block: &[3, 4]
            }
        ));
        assert!(matches!(
            frames[9],
            Frame::Continuation {
                stream: 1,
                end_headers: true,
                block: &[5]
            }
        ));
    }

    mod random {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5000))]
            #[test]
            fn random_frames_never_panic(
                head in proptest::collection::vec(any::<u8>(), 9..10),
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut h = FrameHeader::parse(&head).unwrap();
                h.len = payload.len() as u32;
                h.kind %= 12;
                let _ = parse(&h, &payload);
            }
        }
    }
}
