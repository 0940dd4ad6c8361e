//! The client side of HTTP/1.1 that a stream needs, sans-IO: the response head (through
//! `httparse`), and the body's framing: close-delimited, `Content-Length`, or chunked.
//!
//! [`BodyReader::next`] hands back the payload as sub-slices of the input, so de-chunking
//! copies nothing; its state is a few integers, whatever the chunk sizes.
//!
//! **Invariant:** no IO; no panic and no allocation on any input; every count is bounded.

/// Most header lines accepted in a response head.
const MAX_HEADERS: usize = 64;
/// Most bytes of chunk extensions, or of one trailer line, accepted.
const MAX_FRAMING_LINE: u32 = 4096;

/// The body framing a response announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No length: the body ends when the connection closes (the seed's stream).
    Close,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The parts of a response head a stream needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Bytes the head takes, blank line included.
    pub len: usize,
    pub status: u16,
    /// The media type is `text/event-stream` (parameters aside).
    pub event_stream: bool,
    pub body: BodyKind,
}

/// What [`parse_head`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadScan {
    /// Not all of the head is there yet.
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    /// A final response head.
    Complete(Response),
}

/// A response head that is not HTTP/1.x, or whose framing headers contradict themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadHead;

/// Parses a response head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<HeadScan, BadHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(HeadScan::Partial),
        Ok(httparse::Status::Complete(len)) => len,
        Err(_) => return Err(BadHead),
    };
    let status = resp.code.ok_or(BadHead)?;
    if (100..200).contains(&status) && status != 101 {
        return Ok(HeadScan::Interim(len));
    }
    let mut event_stream = false;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            let media = h.value.split(|&b| b == b';').next().unwrap_or(&[]);
            event_stream = media
                .trim_ascii()
                .eq_ignore_ascii_case(b"text/event-stream");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The body is chunked when chunked is the last coding (RFC 9112 6.1); any other
            // final coding means the body runs to the close.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value.trim_ascii()).map_err(|_| BadHead)?;
            let n: u64 = v.parse().map_err(|_| BadHead)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadHead);
            }
            length = Some(n);
        }
    }
    let body = match (chunked, length) {
        (Some(true), _) => BodyKind::Chunked,
        (Some(false), _) => BodyKind::Close,
        (None, Some(n)) => BodyKind::Length(n),
        (None, None) => BodyKind::Close,
    };
    Ok(HeadScan::Complete(Response {
        len,
        status,
        event_stream,
        body,
    }))
}

/// The chunked transfer coding was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadChunk;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// Skipping a chunk extension (or whitespace) up to the LF.
    Ext,
    /// Saw CR after the size line; LF must follow.
    SizeLf,
    /// Inside a chunk's data.
    Data,
    /// After a chunk's data: CRLF (or a bare LF) must follow.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one; `at_line_start` when nothing
    /// but an optional CR has been seen on the current line.
    Trailer {
        at_line_start: bool,
    },
    /// The body is complete.
    Done,
}

/// A body's framing state. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyReader(Framing);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Everything until the close is body.
    Close,
    /// This many bytes are left.
    Length(u64),
    /// A chunked body: the state, the current size or bytes left in the chunk, and the length
    /// of the current extension or trailer line.
    Chunked { state: Chunk, n: u64, line: u32 },
}

impl BodyReader {
    /// The reader for a response's framing.
    pub fn new(kind: BodyKind) -> Self {
        BodyReader(match kind {
            BodyKind::Close => Framing::Close,
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => Framing::Chunked {
                state: Chunk::Size { digits: 0 },
                n: 0,
                line: 0,
            },
        })
    }

    /// Whether the body has ended (bytes after it are ignored).
    pub fn is_done(&self) -> bool {
        matches!(
            self.0,
            Framing::Length(0)
                | Framing::Chunked {
                    state: Chunk::Done,
                    ..
                }
        )
    }

    /// Consumes framing from the front of `input` and returns the next run of payload bytes,
    /// or `None` once `input` is used up (or the body is done). Call until `None`.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BadChunk> {
        match &mut self.0 {
            Framing::Close => {
                let all = std::mem::take(input);
                Ok((!all.is_empty()).then_some(all))
            }
            Framing::Length(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                if n == 0 {
                    return Ok(None);
                }
                let (data, rest) = input.split_at(n);
                *left -= n as u64;
                *input = rest;
                Ok(Some(data))
            }
            Framing::Chunked { state, n, line } => loop {
                if *state == Chunk::Data {
                    let take = (*n).min(input.len() as u64) as usize;
                    if take == 0 {
                        return Ok(None);
                    }
                    let (data, rest) = input.split_at(take);
                    *n -= take as u64;
                    *input = rest;
                    if *n == 0 {
                        *state = Chunk::DataCr;
                    }
                    return Ok(Some(data));
                }
                if *state == Chunk::Done {
                    return Ok(None);
                }
                let Some((&b, rest)) = input.split_first() else {
                    return Ok(None);
                };
                *input = rest;
                *state = match *state {
                    Chunk::Size { digits } => match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            if digits >= 16 {
                                return Err(BadChunk);
                            }
                            let d = (b as char).to_digit(16).unwrap_or(0);
                            *n = *n << 4 | u64::from(d);
                            Chunk::Size { digits: digits + 1 }
                        }
                        _ if digits == 0 => return Err(BadChunk),
                        b'\r' => Chunk::SizeLf,
                        b'\n' => end_of_size(*n, line),
                        b';' | b' ' | b'\t' => {
                            *line = 0;
                            Chunk::Ext
                        }
                        _ => return Err(BadChunk),
                    },
                    Chunk::Ext => {
                        *line += 1;
                        if *line > MAX_FRAMING_LINE {
                            return Err(BadChunk);
                        }
                        if b == b'\n' {
                            end_of_size(*n, line)
                        } else {
                            Chunk::Ext
                        }
                    }
                    Chunk::SizeLf if b == b'\n' => end_of_size(*n, line),
                    Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                    Chunk::DataCr | Chunk::DataLf if b == b'\n' => {
                        *n = 0;
                        Chunk::Size { digits: 0 }
                    }
                    Chunk::Trailer { at_line_start } => match b {
                        b'\n' if at_line_start => Chunk::Done,
                        b'\n' => {
                            *line = 0;
                            Chunk::Trailer {
                                at_line_start: true,
                            }
                        }
                        b'\r' if at_line_start => Chunk::Trailer {
                            at_line_start: true,
                        },
                        _ => {
                            *line += 1;
                            if *line > MAX_FRAMING_LINE {
                                return Err(BadChunk);
                            }
                            Chunk::Trailer {
                                at_line_start: false,
                            }
                        }
                    },
                    Chunk::SizeLf | Chunk::DataCr | Chunk::DataLf | Chunk::Data | Chunk::Done => {
                        return Err(BadChunk)
                    }
                };
            },
        }
    }
}

fn end_of_size(n: u64, line: &mut u32) -> Chunk {
    *line = 0;
    if n == 0 {
        Chunk::Trailer {
            at_line_start: true,
        }
    } else {
        Chunk::Data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<HeadScan, BadHead> {
        parse_head(s.as_bytes())
    }

    fn complete(s: &str) -> Response {
        match head(s) {
            Ok(HeadScan::Complete(r)) => r,
            other => panic!("{other:?} for {s:?}"),
        }
    }

    #[test]
    fn heads() {
        let seed = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\nConnection: keep-alive\r\n\r\nevent:";
        let r = complete(seed);
        assert_eq!(
            (r.status, r.event_stream, r.body),
            (200, true, BodyKind::Close)
        );
        assert_eq!(&seed[r.len..], "event:");
        let axum = "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let r = complete(axum);
        assert_eq!((r.event_stream, r.body), (true, BodyKind::Chunked));
        let r = complete(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n",
        );
        assert_eq!(
            (r.status, r.event_stream, r.body),
            (404, false, BodyKind::Length(9))
        );
        let r = complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            r.body,
            BodyKind::Close,
            "TE without chunked last: read to close"
        );
        let r =
            complete("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream ; charset=utf-8\r\n\r\n");
        assert!(r.event_stream);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Type: text/event"),
            Ok(HeadScan::Partial)
        );
        assert_eq!(head(""), Ok(HeadScan::Partial));
        assert_eq!(
            head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"),
            Ok(HeadScan::Interim(25))
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 abc\r\n\r\n",
        ] {
            assert_eq!(head(bad), Err(BadHead), "{bad:?}");
        }
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(65));
        assert_eq!(head(&many), Err(BadHead));
    }

    /// Decodes `chunks` in order; the payload, whether the body ended, and any error.
    fn decode(kind: BodyKind, chunks: &[&[u8]]) -> (Vec<u8>, bool, Option<BadChunk>) {
        let mut r = BodyReader::new(kind);
        let mut out = Vec::new();
        for c in chunks {
            let mut input = *c;
            loop {
                match r.next(&mut input) {
                    Ok(Some(d)) => out.extend_from_slice(d),
                    Ok(None) => break,
                    Err(e) => return (out, r.is_done(), Some(e)),
                }
            }
            assert!(input.is_empty() || r.is_done());
        }
        (out, r.is_done(), None)
    }

    #[test]
    fn chunked() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nignored";
        let want = (b"hello, world0123456789".to_vec(), true, None);
        assert_eq!(decode(BodyKind::Chunked, &[body]), want);
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(decode(BodyKind::Chunked, &[a, b]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode(BodyKind::Chunked, &bytes), want);
        // Bare LFs are tolerated; upper-case hex too.
        assert_eq!(decode(BodyKind::Chunked, &[b"1\nA\n1F\n"]).0, b"A".to_vec());
        assert_eq!(
            decode(BodyKind::Chunked, &[b"0\r\n\r\n"]),
            (vec![], true, None)
        );
        // An open-ended stream is never done.
        assert_eq!(
            decode(BodyKind::Chunked, &[b"3\r\nabc\r\n"]),
            (b"abc".to_vec(), false, None)
        );
    }

    #[test]
    fn broken_chunks_are_errors() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\r\nhelloX",
            b"5\rX",
            b"11111111111111111\r\n",
            b"1\r\na\r\r",
        ] {
            assert_eq!(
                decode(BodyKind::Chunked, &[bad]).2,
                Some(BadChunk),
                "{bad:?}"
            );
        }
        let long_ext = [&b"1;"[..], &[b'x'; 5000]].concat();
        assert_eq!(decode(BodyKind::Chunked, &[&long_ext]).2, Some(BadChunk));
        let long_trailer = [&b"0\r\n"[..], &[b'x'; 5000]].concat();
        assert_eq!(
            decode(BodyKind::Chunked, &[&long_trailer]).2,
            Some(BadChunk)
        );
    }

    #[test]
    fn length_and_close() {
        assert_eq!(
            decode(BodyKind::Length(5), &[b"he", b"llo extra"]),
            (b"hello".to_vec(), true, None)
        );
        assert_eq!(
            decode(BodyKind::Close, &[b"a", b"", b"bc"]),
            (b"abc".to_vec(), false, None)
        );
    }
}
