//! One HTTP/2 connection's protocol engine (RFC 9113), sans-IO and clock-free: bytes and `now`
//! in; complete requests, resets and frames out. It owns the preface, SETTINGS and their ACK,
//! HEADERS + CONTINUATION assembly (bounded), HPACK decoding, request bodies (bounded),
//! connection and stream flow control (WINDOW_UPDATE both ways), PING, RST_STREAM and GOAWAY,
//! and the limits that make the known attacks cheap (rapid reset, CONTINUATION and control
//! frame floods, HPACK bombs, ids reused or going backwards, oversized frames, a bad preface,
//! a peer that never reads).
//!
//! What a request means is not here: the caller takes each complete [`H2Request`] with
//! [`H2::take_requests`], answers it with [`H2::send_headers`] and [`H2::send_data`], and writes
//! what [`H2::poll_transmit`] gives: control frames first, then DATA of every stream that has
//! some and window for it, in turn, all in one buffer (one write for many streams).
//!
//! **Invariant:** nothing here touches a socket or reads a clock; `now` is an argument.
//! **Invariant:** memory is bounded: the partial frame by the max frame size, a field block
//! by [`H2Config::max_block`], a request body by [`H2Config::max_body`], queued control frames
//! by [`MAX_CONTROL_OUT`] (past it the connection ends `ENHANCE_YOUR_CALM`), and each stream's
//! queued DATA by what the caller gives it (the caller asks [`H2::queued`] first).

use std::collections::BTreeMap;

use crate::wire::h2::frame::{
    self, flag, kind, setting, ErrorCode, Frame, FrameError, FrameHeader, HeaderBlock, StreamEnd,
    DEFAULT_MAX_FRAME, DEFAULT_WINDOW, HEADER_LEN, MAX_WINDOW, PREFACE,
};
use crate::wire::h2::hpack::{self, Field, HpackError};

/// Control frames (SETTINGS ACK, PING ACK, RST_STREAM, WINDOW_UPDATE) queued and not yet
/// written, at most: a peer that floods them without reading ends the connection.
pub const MAX_CONTROL_OUT: usize = 64 * 1024;

/// CONTINUATION frames one field block may take.
pub const MAX_CONTINUATIONS: u32 = 64;

/// What the engine is built with (from the server's flags).
#[derive(Clone, Debug)]
pub struct H2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` announced and enforced (`--h2-max-streams`).
    pub max_streams: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` announced; a larger decoded list is answered `431`.
    pub max_list: usize,
    /// A field block's compressed bytes, at most (HEADERS + CONTINUATION).
    pub max_block: usize,
    /// A request body's bytes, at most; past it the stream is answered `413` (or reset).
    pub max_body: usize,
    /// A stream with DATA queued and no window for it this long is reset.
    pub stall_ms: u64,
    /// Streams the client may cancel (RST_STREAM) per second on average, and at once.
    pub resets_per_s: u32,
    /// Control frames (SETTINGS, PING, PRIORITY, empty DATA) per second on average, and at
    /// once.
    pub control_per_s: u32,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_streams: 100,
            max_list: 16 * 1024,
            max_block: 48 * 1024,
            max_body: 64 * 1024,
            stall_ms: 10_000,
            resets_per_s: 100,
            control_per_s: 200,
        }
    }
}

/// A complete request: its fields (pseudo-fields checked) and body.
#[derive(Debug)]
pub struct H2Request {
    pub stream: u32,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub authority: Option<Vec<u8>>,
    /// The regular fields, in order (names lowercase).
    pub fields: Vec<Field>,
    pub body: Vec<u8>,
    /// What the engine already knows the answer is (`431`, `413`, `400`): the caller answers
    /// with this status and does not route.
    pub refused: Option<u16>,
}

/// Something the caller must know besides requests.
#[derive(Debug, PartialEq, Eq)]
pub enum H2Event {
    /// The stream ended before its answer did (the client reset it, or it stalled): drop
    /// what feeds it.
    StreamGone(u32),
}

/// A token bucket in milliseconds: `cap` at once, `per_s` a second on average.
#[derive(Debug, Clone)]
struct Budget {
    tokens: u64,
    last_ms: u64,
    cap: u64,
    per_s: u64,
}

impl Budget {
    fn new(per_s: u32, now: u64) -> Budget {
        let per_s = u64::from(per_s.max(1));
        Budget {
            tokens: per_s * 1000,
            last_ms: now,
            cap: per_s * 1000,
            per_s,
        }
    }

    /// Takes one; false when the bucket is empty.
    fn take(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now);
        self.tokens = (self.tokens + dt * self.per_s).min(self.cap);
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Stream {
    /// The request is complete (END_STREAM received): it is the caller's.
    remote_closed: bool,
    /// Headers not yet complete or body still arriving.
    request: Option<Box<H2Request>>,
    /// What the peer lets us send on it.
    send_window: i64,
    /// DATA the caller queued and the window has not let out yet.
    queued: Vec<u8>,
    /// END_STREAM goes with the last queued byte.
    end_queued: bool,
    /// Our HEADERS have been queued (the answer started).
    answered: bool,
    /// Since when DATA has waited with no window (for the stall reset).
    blocked_since: Option<u64>,
    /// The body was refused (`413`): what more arrives is dropped.
    discard: bool,
}

/// A DATA frame's fields as the engine takes them.
struct DataIn<'a> {
    stream: u32,
    end_stream: bool,
    data: &'a [u8],
    flow_len: u32,
}

/// A field block being assembled across CONTINUATION frames.
#[derive(Debug)]
struct Continuation {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
    frames: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's 24-byte preface.
    Preface,
    Open,
    /// GOAWAY sent: no new streams; closed once the open ones are done.
    Draining,
    /// GOAWAY for an error sent (or the peer's): write what is queued, then close.
    Closing,
}

/// One HTTP/2 connection. See the module docs.
#[derive(Debug)]
pub struct H2 {
    cfg: H2Config,
    phase: Phase,
    inb: Vec<u8>,
    /// Control frames, written before any DATA.
    control: Vec<u8>,
    decoder: hpack::Decoder,
    streams: BTreeMap<u32, Stream>,
    /// The highest stream id the client opened (for GOAWAY and the monotonic rule).
    last_stream: u32,
    continuation: Option<Continuation>,
    /// What the peer lets us send in all.
    send_window: i64,
    /// The peer's `SETTINGS_INITIAL_WINDOW_SIZE` and `SETTINGS_MAX_FRAME_SIZE`.
    peer_initial_window: u32,
    peer_max_frame: u32,
    /// Bytes received since our last WINDOW_UPDATE of the connection.
    recv_unacked: u32,
    requests: Vec<H2Request>,
    events: Vec<H2Event>,
    resets: Budget,
    controls: Budget,
    /// Round-robin position among streams for DATA.
    next_turn: u32,
    error: Option<ErrorCode>,
    /// The client's first SETTINGS arrived.
    got_settings: bool,
}

/// The window we keep open for request bodies, per stream and for the connection.
const RECV_WINDOW: u32 = DEFAULT_WINDOW;

impl H2 {
    /// A connection whose preface has not arrived yet; our SETTINGS are queued at once.
    pub fn new(cfg: H2Config, now: u64) -> H2 {
        let mut control = Vec::new();
        frame::put_settings(
            &mut control,
            &[
                (setting::MAX_CONCURRENT_STREAMS, cfg.max_streams),
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_HEADER_LIST_SIZE, cfg.max_list as u32),
            ],
        );
        H2 {
            resets: Budget::new(cfg.resets_per_s, now),
            controls: Budget::new(cfg.control_per_s, now),
            cfg,
            phase: Phase::Preface,
            inb: Vec::new(),
            control,
            decoder: hpack::Decoder::new(4096),
            streams: BTreeMap::new(),
            last_stream: 0,
            continuation: None,
            send_window: i64::from(DEFAULT_WINDOW),
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            recv_unacked: 0,
            requests: Vec::new(),
            events: Vec::new(),
            next_turn: 0,
            error: None,
            got_settings: false,
        }
    }

    /// Whether `bytes` start like the client preface (enough to pick this codec on plain TCP).
    pub fn is_preface_start(bytes: &[u8]) -> bool {
        let n = bytes.len().min(PREFACE.len());
        n > 0 && bytes[..n] == PREFACE[..n]
    }

    /// How many more bytes the engine takes now (one frame's worth at most is buffered).
    pub fn read_limit(&self) -> usize {
        if self.phase == Phase::Closing {
            return 0;
        }
        (HEADER_LEN + DEFAULT_MAX_FRAME as usize).saturating_sub(self.inb.len())
    }

    /// The connection-level error that ended it, if any.
    pub fn error(&self) -> Option<ErrorCode> {
        self.error
    }

    /// Whether the connection is over once what is queued is written.
    pub fn is_closing(&self) -> bool {
        self.phase == Phase::Closing || (self.phase == Phase::Draining && self.streams.is_empty())
    }

    /// Streams open (requests not yet fully answered).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    pub fn take_requests(&mut self) -> Vec<H2Request> {
        std::mem::take(&mut self.requests)
    }

    pub fn take_events(&mut self) -> Vec<H2Event> {
        std::mem::take(&mut self.events)
    }

    /// Bytes queued on a stream and not yet sent (the caller queues no more past its bound).
    pub fn queued(&self, stream: u32) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.queued.len())
    }

    /// Bytes received; frames are acted on as they complete.
    pub fn handle_input(&mut self, data: &[u8], now: u64) {
        if self.phase == Phase::Closing {
            return;
        }
        self.inb.extend_from_slice(data);
        let mut pos = 0;
        if self.phase == Phase::Preface {
            let n = self.inb.len().min(PREFACE.len());
            if self.inb[..n] != PREFACE[..n] {
                self.fail(ErrorCode::ProtocolError);
                return;
            }
            if self.inb.len() < PREFACE.len() {
                return;
            }
            pos = PREFACE.len();
            self.phase = Phase::Open;
        }
        while self.phase != Phase::Closing {
            let Some(h) = FrameHeader::parse(&self.inb[pos..]) else {
                break;
            };
            if let Err(FrameError::Connection(code)) = h.check_size(DEFAULT_MAX_FRAME) {
                self.fail(code);
                return;
            }
            if !self.got_settings {
                // The client's first frame must be SETTINGS (RFC 9113 section 3.4).
                if h.kind != kind::SETTINGS || h.flags & flag::ACK != 0 {
                    self.fail(ErrorCode::ProtocolError);
                    return;
                }
                self.got_settings = true;
            }
            let end = pos + HEADER_LEN + h.len as usize;
            if self.inb.len() < end {
                break;
            }
            let payload = self.inb[pos + HEADER_LEN..end].to_vec();
            pos = end;
            match frame::parse(&h, &payload) {
                Err(FrameError::Connection(code)) => self.fail(code),
                Err(FrameError::Stream(s, code)) => self.reset(s, code),
                Ok(f) => self.on_frame(f, now),
            }
        }
        self.inb.drain(..pos.min(self.inb.len()));
        if self.inb.is_empty() {
            self.inb = Vec::new();
        }
        if self.control.len() > MAX_CONTROL_OUT && self.phase != Phase::Closing {
            self.fail(ErrorCode::EnhanceYourCalm);
        }
    }

    fn on_frame(&mut self, f: Frame<'_>, now: u64) {
        // Between HEADERS and its last CONTINUATION nothing else may come (section 6.10).
        if let Some(c) = &self.continuation {
            match f {
                Frame::Continuation { stream, .. } if stream == c.stream => {}
                _ => return self.fail(ErrorCode::ProtocolError),
            }
        }
        match f {
            Frame::Settings { ack, params } => {
                if !self.controls.take(now) {
                    return self.fail(ErrorCode::EnhanceYourCalm);
                }
                if ack {
                    return;
                }
                for (id, v) in frame::settings(params) {
                    match id {
                        setting::INITIAL_WINDOW_SIZE => {
                            let delta = i64::from(v) - i64::from(self.peer_initial_window);
                            self.peer_initial_window = v;
                            for s in self.streams.values_mut() {
                                s.send_window += delta;
                                if s.send_window > i64::from(MAX_WINDOW) {
                                    return self.fail(ErrorCode::FlowControlError);
                                }
                            }
                        }
                        setting::MAX_FRAME_SIZE => self.peer_max_frame = v,
                        _ => {}
                    }
                }
                frame::put_settings_ack(&mut self.control);
            }
            Frame::Ping { ack, data } => {
                if !self.controls.take(now) {
                    return self.fail(ErrorCode::EnhanceYourCalm);
                }
                if !ack {
                    frame::put_ping_ack(&mut self.control, &data);
                }
            }
            Frame::Priority { .. } => {
                if !self.controls.take(now) {
                    self.fail(ErrorCode::EnhanceYourCalm);
                }
            }
            Frame::GoAway { .. } => {
                // The client leaves: finish what is open, accept nothing new.
                if self.phase == Phase::Open {
                    self.phase = Phase::Draining;
                }
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream == 0 {
                    self.send_window += i64::from(increment);
                    if self.send_window > i64::from(MAX_WINDOW) {
                        self.fail(ErrorCode::FlowControlError);
                    }
                } else if let Some(s) = self.streams.get_mut(&stream) {
                    s.send_window += i64::from(increment);
                    if s.send_window > i64::from(MAX_WINDOW) {
                        self.reset(stream, ErrorCode::FlowControlError);
                    }
                } else if stream > self.last_stream {
                    // WINDOW_UPDATE on an idle stream (section 5.1).
                    self.fail(ErrorCode::ProtocolError);
                }
            }
            Frame::RstStream { stream, .. } => {
                if stream > self.last_stream {
                    return self.fail(ErrorCode::ProtocolError);
                }
                if !self.resets.take(now) {
                    // Rapid reset: bounded work, then the connection ends.
                    return self.fail(ErrorCode::EnhanceYourCalm);
                }
                self.requests.retain(|r| r.stream != stream);
                if self.streams.remove(&stream).is_some() {
                    self.events.push(H2Event::StreamGone(stream));
                }
            }
            Frame::PushPromise { .. } => self.fail(ErrorCode::ProtocolError),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
                ..
            } => {
                if block.len() > self.cfg.max_block {
                    return self.fail(ErrorCode::EnhanceYourCalm);
                }
                let c = Continuation {
                    stream,
                    end_stream,
                    block: block.to_vec(),
                    frames: 0,
                };
                if end_headers {
                    self.on_block(c);
                } else {
                    self.continuation = Some(c);
                }
            }
            Frame::Continuation {
                stream: _,
                end_headers,
                block,
            } => {
                let Some(mut c) = self.continuation.take() else {
                    return self.fail(ErrorCode::ProtocolError);
                };
                c.frames += 1;
                if c.frames > MAX_CONTINUATIONS || c.block.len() + block.len() > self.cfg.max_block
                {
                    // CONTINUATION flood: the block is never kept past its bound.
                    return self.fail(ErrorCode::EnhanceYourCalm);
                }
                c.block.extend_from_slice(block);
                if end_headers {
                    self.on_block(c);
                } else {
                    self.continuation = Some(c);
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(
                DataIn {
                    stream,
                    end_stream,
                    data,
                    flow_len,
                },
                now,
            ),
            Frame::Unknown { .. } => {}
        }
    }

    /// A complete field block: a new request (or trailers, refused).
    fn on_block(&mut self, c: Continuation) {
        let Continuation {
            stream,
            end_stream,
            block,
            ..
        } = c;
        let mut fields = Vec::new();
        let decoded = self.decoder.decode(&block, self.cfg.max_list, &mut fields);
        if let Err(e) = decoded {
            if e != HpackError::ListTooLarge {
                return self.fail(ErrorCode::CompressionError);
            }
        }
        if let Some(s) = self.streams.get(&stream) {
            // After END_STREAM nothing more may come (section 5.1, half-closed (remote));
            // before it, trailers: the server takes none.
            let code = if s.remote_closed {
                ErrorCode::StreamClosed
            } else {
                ErrorCode::ProtocolError
            };
            return self.reset(stream, code);
        }
        if stream % 2 == 0 || stream <= self.last_stream {
            // Ids are odd and only go up (section 5.1.1): reused or backwards ends it.
            return self.fail(ErrorCode::ProtocolError);
        }
        self.last_stream = stream;
        if self.phase == Phase::Draining {
            return self.reset(stream, ErrorCode::RefusedStream);
        }
        if self.streams.len() >= self.cfg.max_streams as usize {
            // Section 5.1.2: past the announced maximum, PROTOCOL_ERROR or REFUSED_STREAM.
            return self.reset(stream, ErrorCode::RefusedStream);
        }
        let req = if decoded == Err(HpackError::ListTooLarge) {
            // Nothing of the list was kept: the answer is 431 whatever it asked.
            H2Request {
                stream,
                method: Vec::new(),
                path: Vec::new(),
                authority: None,
                fields: Vec::new(),
                body: Vec::new(),
                refused: Some(431),
            }
        } else {
            match check_request(stream, fields) {
                Ok(r) => r,
                Err(()) => return self.reset(stream, ErrorCode::ProtocolError),
            }
        };
        let s = Stream {
            remote_closed: end_stream,
            request: None,
            send_window: i64::from(self.peer_initial_window),
            queued: Vec::new(),
            end_queued: false,
            answered: false,
            blocked_since: None,
            // A refused head's body (if any follows) is not wanted, only its answer is.
            discard: req.refused.is_some(),
        };
        self.streams.insert(stream, s);
        if end_stream || req.refused.is_some() {
            self.requests.push(req);
        } else if let Some(s) = self.streams.get_mut(&stream) {
            s.request = Some(Box::new(req));
        }
    }

    fn on_data(&mut self, d: DataIn<'_>, now: u64) {
        let DataIn {
            stream,
            end_stream,
            data,
            flow_len,
        } = d;
        if flow_len == 0 && !end_stream && !self.controls.take(now) {
            // Empty DATA frames cost work and no window: counted as control frames.
            return self.fail(ErrorCode::EnhanceYourCalm);
        }
        // Connection flow control counts every DATA frame, whatever its stream.
        self.recv_unacked += flow_len;
        if self.recv_unacked > RECV_WINDOW {
            return self.fail(ErrorCode::FlowControlError);
        }
        if self.recv_unacked >= RECV_WINDOW / 2 {
            frame::put_window_update(&mut self.control, 0, self.recv_unacked);
            self.recv_unacked = 0;
        }
        let max_body = self.cfg.max_body;
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_stream {
                return self.fail(ErrorCode::ProtocolError);
            }
            return self.reset(stream, ErrorCode::StreamClosed);
        };
        if s.remote_closed {
            return self.reset(stream, ErrorCode::StreamClosed);
        }
        if s.discard {
            s.remote_closed = end_stream;
            return;
        }
        let Some(req) = s.request.as_mut() else {
            return self.reset(stream, ErrorCode::StreamClosed);
        };
        if req.body.len() + data.len() > max_body {
            // Too large: answered 413 with what came (the rest is reset away).
            req.refused = Some(413);
            req.body = Vec::new();
            s.discard = true;
            s.remote_closed = end_stream;
            let req = *s.request.take().expect("checked above");
            self.requests.push(req);
            return;
        }
        req.body.extend_from_slice(data);
        // The stream's window is given back as the body is taken (it is bounded anyway).
        if flow_len > 0 && !end_stream {
            frame::put_window_update(&mut self.control, stream, flow_len);
        }
        if end_stream {
            s.remote_closed = true;
            let req = *s.request.take().expect("checked above");
            self.requests.push(req);
        }
    }

    /// Resets a stream (a stream error, or the caller's decision).
    pub fn reset(&mut self, stream: u32, code: ErrorCode) {
        frame::put_rst_stream(&mut self.control, stream, code);
        if self.streams.remove(&stream).is_some() {
            self.events.push(H2Event::StreamGone(stream));
        }
    }

    /// A connection error: GOAWAY with the code and the last stream id, then close.
    fn fail(&mut self, code: ErrorCode) {
        if self.phase == Phase::Closing {
            return;
        }
        frame::put_goaway(&mut self.control, self.last_stream, code);
        self.error = Some(code);
        self.phase = Phase::Closing;
        self.continuation = None;
        self.inb = Vec::new();
        for id in std::mem::take(&mut self.streams).into_keys() {
            self.events.push(H2Event::StreamGone(id));
        }
    }

    /// The server is stopping: GOAWAY `NO_ERROR` naming the last stream id; streams open go on
    /// until the caller ends them, new ones are refused.
    pub fn go_away(&mut self) {
        if matches!(self.phase, Phase::Open | Phase::Preface) {
            frame::put_goaway(&mut self.control, self.last_stream, ErrorCode::NoError);
            self.phase = Phase::Draining;
        }
    }

    /// Queues the answer's head on a stream (`fields` lowercase, `:status` first is added).
    pub fn send_headers(
        &mut self,
        stream: u32,
        status: u16,
        fields: &[(&str, &[u8])],
        end: StreamEnd,
    ) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut block = Vec::with_capacity(64);
        let mut st = [0u8; 3];
        st[0] = b'0' + (status / 100 % 10) as u8;
        st[1] = b'0' + (status / 10 % 10) as u8;
        st[2] = b'0' + (status % 10) as u8;
        hpack::encode_field(&mut block, b":status", &st);
        for (n, v) in fields {
            hpack::encode_field(&mut block, n.as_bytes(), v);
        }
        s.answered = true;
        // HEADERS go with the control frames, ahead of any DATA (they use no window).
        frame::put_headers(
            &mut self.control,
            HeaderBlock {
                stream,
                block: &block,
                end,
                max_frame: self.peer_max_frame as usize,
            },
        );
        if end == StreamEnd::End {
            self.finish(stream);
        }
    }

    /// Queues DATA on a stream (sent as the windows allow; `end` closes it after).
    pub fn send_data(&mut self, stream: u32, data: &[u8], end: StreamEnd) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.queued.extend_from_slice(data);
            s.end_queued |= end == StreamEnd::End;
        }
    }

    fn finish(&mut self, stream: u32) {
        if let Some(s) = self.streams.get(&stream) {
            if s.remote_closed {
                self.streams.remove(&stream);
            } else {
                // Our side is done; what the client still sends is not wanted.
                frame::put_rst_stream(&mut self.control, stream, ErrorCode::NoError);
                self.streams.remove(&stream);
            }
        }
    }

    /// Everything due, into `out` (cleared first): control frames, then DATA of each stream
    /// in turn within the windows, frames of at most the peer's max frame size. The caller
    /// writes it in one write and reports nothing back: the engine forgets what it gave, and
    /// the caller keeps an unwritten tail as the HTTP/1.1 path does.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, now: u64) {
        out.clear();
        out.append(&mut self.control);
        if self.phase == Phase::Closing {
            return;
        }
        let ids: Vec<u32> = self
            .streams
            .range(self.next_turn..)
            .chain(self.streams.range(..self.next_turn))
            .filter(|(_, s)| !s.queued.is_empty() || s.end_queued)
            .map(|(&id, _)| id)
            .collect();
        let max = self.peer_max_frame as usize;
        let mut done = Vec::new();
        for id in ids {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            while !s.queued.is_empty() || s.end_queued {
                let room = s.send_window.min(self.send_window).max(0) as usize;
                let n = s.queued.len().min(room).min(max);
                if n == 0 && !s.queued.is_empty() {
                    s.blocked_since.get_or_insert(now);
                    break;
                }
                let end = s.end_queued && n == s.queued.len();
                let fin = if end { StreamEnd::End } else { StreamEnd::Open };
                frame::put_data(out, id, &s.queued[..n], fin);
                s.queued.drain(..n);
                s.send_window -= n as i64;
                self.send_window -= n as i64;
                s.blocked_since = None;
                if end {
                    s.end_queued = false;
                    done.push(id);
                    break;
                }
            }
            if s.queued.is_empty() {
                s.queued = Vec::new();
            }
            self.next_turn = id + 1;
        }
        for id in done {
            self.finish(id);
        }
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) is due (a blocked stream's stall).
    pub fn timeout(&self) -> Option<u64> {
        self.streams
            .values()
            .filter_map(|s| s.blocked_since)
            .min()
            .map(|t| t + self.cfg.stall_ms)
    }

    /// Resets every stream whose DATA has waited for window past the stall timeout (one stream
    /// never holds the others: each has its own window and its own clock).
    pub fn handle_timeout(&mut self, now: u64) {
        let stalled: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                s.blocked_since
                    .is_some_and(|t| now >= t + self.cfg.stall_ms)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stalled {
            self.reset(id, ErrorCode::Cancel);
        }
    }
}

/// RFC 9113 section 8.3's rules for a request's fields: the pseudo-fields `:method`,
/// `:scheme`, `:path` (and `:authority`) once each, before the regular fields, no other pseudo
/// field, names lowercase, no connection-specific field, `te` only `trailers`.
fn check_request(stream: u32, fields: Vec<Field>) -> Result<H2Request, ()> {
    let mut method = None;
    let mut scheme = false;
    let mut path = None;
    let mut authority = None;
    let mut regular = Vec::with_capacity(fields.len());
    for (n, v) in fields {
        if let Some(p) = n.strip_prefix(b":") {
            if !regular.is_empty() {
                return Err(());
            }
            let slot = match p {
                b"method" => &mut method,
                b"path" => &mut path,
                b"authority" => &mut authority,
                b"scheme" => {
                    if scheme {
                        return Err(());
                    }
                    scheme = true;
                    continue;
                }
                _ => return Err(()),
            };
            if slot.is_some() {
                return Err(());
            }
            *slot = Some(v);
            continue;
        }
        if n.is_empty() || n.iter().any(|b| b.is_ascii_uppercase() || *b <= b' ') {
            return Err(());
        }
        if matches!(
            &n[..],
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
        ) || (n == b"te" && v != b"trailers")
        {
            return Err(());
        }
        if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return Err(());
        }
        regular.push((n, v));
    }
    let (Some(method), Some(path), true) = (method, path, scheme) else {
        return Err(());
    };
    if path.is_empty() {
        return Err(());
    }
    Ok(H2Request {
        stream,
        method,
        path,
        authority,
        fields: regular,
        body: Vec::new(),
        refused: None,
    })
}

#[cfg(test)]
mod tests;
