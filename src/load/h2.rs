//! `--h2`: one HTTP/2 client connection carrying many event streams, sans-IO (bytes and `now`
//! in; bytes to write, deadlines, counts and end reasons out).
//!
//! A connection speaks h2c with prior knowledge on `http://` (the preface straight away) and
//! h2 on `https://` (the driver offers ALPN `h2` and refuses the connection with
//! [`Reason::NotH2`] when the server picks anything else). It carries up to `--h2-streams`
//! [`Slot`]s, each a [`Stream`] measured exactly as an HTTP/1.1 stream is (its head checked by
//! [`Stream::handle_head`], its DATA fed to its event parser as a close-delimited body): events,
//! ids, lateness, gaps, duplicates and publish-to-deliver are per stream; the TCP (and TLS)
//! handshake is timed once per connection.
//!
//! Flow control: the connection announces [`STREAM_WINDOW`] per stream and opens the
//! connection window to [`CONN_WINDOW`], then gives back what it consumed (a WINDOW_UPDATE per
//! stream and for the connection once half the window is used), so a live stream never stalls
//! on the client. PINGs are answered; SETTINGS acknowledged (a server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` below the streams a connection carries sends the excess
//! to a new connection). A stream the server resets (RST_STREAM) is counted (dropped if it was
//! open, `refused` if it was refused before its head) and asked for again on this connection
//! after [`RETRY_MS`], with `Last-Event-ID` set to the last id it saw; after a GOAWAY the
//! streams past its last stream id (and those not yet sent) leave as orphans that the driver
//! moves to a new connection, where they are asked for again the same way; the streams the
//! GOAWAY kept go on until they end or the connection closes, and then count as HTTP/1.1
//! streams do (dropped by reason).
//!
//! Cost: one read serves every stream of the connection: whole frames are parsed in place in
//! the loop's read buffer and a DATA payload goes straight to its stream's parser; only a frame
//! cut by the end of a read is copied (into one buffer per connection, at most one frame). An
//! event costs what it costs over HTTP/1.1; a frame costs a header parse and a slot lookup.
//!
//! **Invariant:** no socket, no clock; nothing panics on the peer's bytes, and memory per
//! connection is bounded (one partial frame, one field block up to the head cap, output
//! bounded by reading no more while [`MAX_OUT`] bytes wait).

use super::conn::{Stream, StreamConfig, Time};
use super::stats::{Reason, Stats};
use crate::wire::h2::frame::{
    self, setting, ErrorCode, Frame, FrameError, FrameHeader, HeaderBlock, StreamEnd,
    DEFAULT_MAX_FRAME, DEFAULT_WINDOW, HEADER_LEN, PREFACE,
};
use crate::wire::h2::hpack;

/// The window each stream starts with (announced as `SETTINGS_INITIAL_WINDOW_SIZE`).
pub const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's window, opened by a WINDOW_UPDATE right after the preface.
pub const CONN_WINDOW: u32 = 1 << 24;
/// A reset or refused stream is asked for again no sooner than this.
pub const RETRY_MS: u64 = 100;
/// Reading pauses while this much output waits to be written.
pub const MAX_OUT: usize = 64 * 1024;
/// The HPACK table the decoder keeps (the protocol's default; not announced otherwise).
const TABLE: usize = 4096;

/// What every connection of a run shares: the request's fields.
#[derive(Clone, Debug)]
pub struct H2Setup {
    /// `:authority` (the URL's host and port).
    pub authority: String,
    /// `:scheme`: `http` or `https`.
    pub scheme: &'static str,
    /// The `:path` of each `--spread` value, in turn.
    pub paths: Vec<String>,
    /// Per-stream knobs (timeouts, caps, the first `Last-Event-ID`).
    pub conn: StreamConfig,
}

/// One stream a connection carries.
#[derive(Debug)]
pub struct Slot {
    stream: Stream,
    /// Its HTTP/2 stream id on this connection; 0 while it waits to be asked for.
    id: u32,
    /// Which of the setup's paths it asks for.
    path: usize,
    /// DATA bytes consumed since its last WINDOW_UPDATE.
    unacked: u32,
    /// It is not asked for before this (a reopen's pause), in milliseconds.
    not_before_ms: u64,
}

impl Slot {
    /// A stream not yet asked for, created `now`, asking for path number `path`.
    pub fn new(now: Time, cfg: &StreamConfig, path: usize) -> Slot {
        Slot {
            stream: Stream::new(now, cfg),
            id: 0,
            path,
            unacked: 0,
            not_before_ms: 0,
        }
    }

    fn is_open(&self) -> bool {
        self.stream.is_established()
    }

    /// Back to waiting, to be asked for again no sooner than `at_ms`.
    fn requeue(&mut self, cfg: &StreamConfig, at_ms: u64) {
        self.stream.reopen(cfg);
        self.id = 0;
        self.unacked = 0;
        self.not_before_ms = at_ms;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP handshake under way.
    Connecting { deadline_ms: u64 },
    /// The preface went out; no frame read yet (the first must be the server's SETTINGS).
    Preface,
    /// Frames flow.
    Open,
}

/// A field block being assembled from HEADERS and CONTINUATION frames.
#[derive(Debug, Default)]
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// One HTTP/2 client connection. See the module docs.
#[derive(Debug)]
pub struct H2Conn {
    state: State,
    /// When the connect started.
    mark_us: u64,
    slots: Vec<Slot>,
    /// Where the last frame's stream was found in `slots`.
    hint: usize,
    /// Output not yet written: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    /// A frame cut by the end of a read (header included).
    partial: Vec<u8>,
    decoder: hpack::Decoder,
    fields: Vec<hpack::Field>,
    block: Option<Block>,
    next_id: u32,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` (unlimited until it says).
    peer_max_streams: u32,
    /// A GOAWAY came: no new stream on this connection.
    goaway: Option<u32>,
    /// Streams that must go to another connection.
    orphans: Vec<Slot>,
    /// DATA bytes consumed since the connection's last WINDOW_UPDATE.
    conn_unacked: u32,
    /// When streams were last asked for: a waiting stream whose pause ended by then waits for
    /// room under the server's limit (an input), not for a timer.
    asked_ms: u64,
}

impl H2Conn {
    /// A connection whose connect starts now, carrying `slots`.
    pub fn new(now: Time, cfg: &StreamConfig, slots: Vec<Slot>) -> H2Conn {
        H2Conn {
            state: State::Connecting {
                deadline_ms: now.ms() + cfg.connect_timeout_ms,
            },
            mark_us: now.us,
            slots,
            hint: 0,
            out: Vec::new(),
            sent: 0,
            partial: Vec::new(),
            decoder: hpack::Decoder::new(TABLE),
            fields: Vec::new(),
            block: None,
            next_id: 1,
            peer_max_streams: u32::MAX,
            goaway: None,
            orphans: Vec::new(),
            conn_unacked: 0,
            asked_ms: 0,
        }
    }

    /// Whether the TCP handshake is still under way.
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting { .. })
    }

    /// Streams carried (open or not).
    pub fn streams(&self) -> usize {
        self.slots.len()
    }

    /// Streams carried that are not open yet (waiting to be asked for, or for their head).
    pub fn opening(&self) -> usize {
        self.slots.iter().filter(|s| !s.is_open()).count()
    }

    /// Nothing left to carry: the driver closes the connection (everything was counted).
    pub fn is_done(&self) -> bool {
        self.slots.is_empty() && self.orphans.is_empty()
    }

    /// Streams that must move to a new connection (after a GOAWAY, or past the server's
    /// concurrency limit).
    pub fn take_orphans(&mut self) -> Vec<Slot> {
        std::mem::take(&mut self.orphans)
    }

    /// The TCP handshake finished: the preface, SETTINGS, the connection's WINDOW_UPDATE and
    /// every stream's HEADERS go out.
    pub fn handle_connected(&mut self, now: Time, setup: &H2Setup, stats: &mut Stats) {
        if !self.is_connecting() {
            return;
        }
        stats.connect_us.record(now.us.saturating_sub(self.mark_us));
        self.state = State::Preface;
        self.out.extend_from_slice(PREFACE);
        frame::put_settings(
            &mut self.out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, setup.conn.max_head as u32),
            ],
        );
        frame::put_window_update(&mut self.out, 0, CONN_WINDOW - DEFAULT_WINDOW);
        self.ask(now, setup, stats);
    }

    /// Sends HEADERS for every stream waiting whose pause is over, within the server's limit;
    /// after a GOAWAY (or when ids run out) they become orphans instead.
    fn ask(&mut self, now: Time, setup: &H2Setup, stats: &mut Stats) {
        if self.is_connecting() {
            return;
        }
        self.asked_ms = now.ms();
        let mut active = self.slots.iter().filter(|s| s.id != 0).count() as u64;
        let mut i = 0;
        while i < self.slots.len() {
            let s = &self.slots[i];
            if s.id != 0 || s.not_before_ms > now.ms() {
                i += 1;
                continue;
            }
            if self.goaway.is_some() || self.next_id > frame::MAX_WINDOW {
                let slot = self.slots.swap_remove(i);
                self.orphans.push(slot);
                continue;
            }
            if active >= u64::from(self.peer_max_streams) {
                break;
            }
            let id = self.next_id;
            self.next_id += 2;
            active += 1;
            let slot = &mut self.slots[i];
            slot.id = id;
            slot.stream.handle_requested(now, &setup.conn);
            if slot.not_before_ms > 0 {
                stats.h2.reopened += 1;
            }
            put_request(&mut self.out, id, setup, slot);
            i += 1;
        }
    }

    /// The output waiting to be written.
    pub fn pending(&self) -> Option<&[u8]> {
        (self.sent < self.out.len()).then(|| &self.out[self.sent..])
    }

    /// `n` more bytes of output went out.
    pub fn on_sent(&mut self, n: usize) {
        self.sent += n;
        if self.sent >= self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    /// Whether the loop should read now (not while connecting, nor while output piles up).
    pub fn wants_read(&self) -> bool {
        !self.is_connecting() && self.out.len() - self.sent < MAX_OUT
    }

    /// The next deadline: the connect's, a head's, or a reopen's pause.
    pub fn timeout(&self) -> Option<u64> {
        if let State::Connecting { deadline_ms } = self.state {
            return Some(deadline_ms);
        }
        self.slots
            .iter()
            .filter_map(|s| match s.stream.timeout() {
                Some(d) if s.id != 0 => Some(d),
                _ if s.id == 0 && s.not_before_ms > self.asked_ms => Some(s.not_before_ms),
                _ => None,
            })
            .min()
    }

    /// The deadline may have passed: a connect timeout ends the connection (`Some`); a head
    /// that did not come fails its stream (reset with CANCEL); paused streams are asked for.
    pub fn handle_timeout(
        &mut self,
        now: Time,
        setup: &H2Setup,
        stats: &mut Stats,
    ) -> Option<Reason> {
        if let State::Connecting { deadline_ms } = self.state {
            return (now.ms() >= deadline_ms).then_some(Reason::ConnectTimeout);
        }
        let mut i = 0;
        while i < self.slots.len() {
            let s = &self.slots[i];
            match s.stream.handle_timeout(now) {
                Some(reason) if s.id != 0 => {
                    frame::put_rst_stream(&mut self.out, s.id, ErrorCode::Cancel);
                    self.finish_slot(i, reason, stats);
                }
                _ => i += 1,
            }
        }
        self.ask(now, setup, stats);
        None
    }

    /// The peer closed the connection: why its streams end.
    pub fn handle_eof(&self) -> Reason {
        match self.state {
            State::Preface => Reason::ClosedBeforeHeaders,
            _ if self.slots.iter().any(Slot::is_open) => Reason::Closed,
            _ => Reason::ClosedBeforeHeaders,
        }
    }

    /// The connection ends (`reason`): each stream it carries (orphans aside: the driver takes
    /// them first) counts as an HTTP/1.1 stream
    /// would (dropped if it was open, failed if not) and leaves the run.
    pub fn end(&mut self, reason: Reason, stats: &mut Stats) {
        for s in self.slots.drain(..) {
            if s.is_open() {
                stats.end_dropped(reason);
            } else {
                stats.end_failed(reason);
            }
            s.stream.leave(stats);
        }
    }

    /// The run is over: each stream counts as open or still opening, and leaves.
    pub fn at_end(&self, stats: &mut Stats) {
        for s in self.slots.iter().chain(&self.orphans) {
            s.stream.leave(stats);
            if s.is_open() {
                stats.open_at_end += 1;
            } else {
                stats.pending_at_end += 1;
            }
        }
    }

    /// Ends one stream for good, counted with `reason`.
    fn finish_slot(&mut self, i: usize, reason: Reason, stats: &mut Stats) {
        let s = self.slots.swap_remove(i);
        if s.is_open() {
            stats.end_dropped(reason);
        } else {
            stats.end_failed(reason);
        }
        s.stream.leave(stats);
    }

    fn find(&mut self, id: u32) -> Option<usize> {
        if self.slots.get(self.hint).is_some_and(|s| s.id == id) {
            return Some(self.hint);
        }
        let i = self.slots.iter().position(|s| s.id == id)?;
        self.hint = i;
        Some(i)
    }

    /// Bytes from the peer. `Err` ends the connection (the driver calls [`H2Conn::end`]).
    pub fn handle_input(
        &mut self,
        mut data: &[u8],
        now: Time,
        setup: &H2Setup,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        if self.state == State::Preface && self.partial.is_empty() {
            // A server without HTTP/2 answers the preface with an HTTP/1.x response.
            let n = data.len().min(5);
            if data[..n] == b"HTTP/"[..n] && n > 0 {
                return Err(Reason::NotH2);
            }
        }
        // First the frame a previous read cut, completed from this one.
        if !self.partial.is_empty() {
            if self.partial.len() < HEADER_LEN {
                let take = (HEADER_LEN - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
            }
            let Some(h) = FrameHeader::parse(&self.partial) else {
                return Ok(());
            };
            self.check_size(&h)?;
            let need = HEADER_LEN + h.len as usize;
            let take = need.saturating_sub(self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < need {
                return Ok(());
            }
            let mut buf = std::mem::take(&mut self.partial);
            let r = self.on_frame(&h, &buf[HEADER_LEN..need], now, setup, stats);
            buf.clear();
            self.partial = buf;
            r?;
        }
        while let Some(h) = FrameHeader::parse(data) {
            self.check_size(&h)?;
            let end = HEADER_LEN + h.len as usize;
            if data.len() < end {
                break;
            }
            self.on_frame(&h, &data[HEADER_LEN..end], now, setup, stats)?;
            data = &data[end..];
        }
        self.partial.extend_from_slice(data);
        self.ask(now, setup, stats);
        Ok(())
    }

    fn check_size(&mut self, h: &FrameHeader) -> Result<(), Reason> {
        if h.check_size(DEFAULT_MAX_FRAME).is_err() {
            return Err(self.fail(ErrorCode::FrameSizeError));
        }
        Ok(())
    }

    /// A connection error found here: GOAWAY with `code`, and the connection ends.
    fn fail(&mut self, code: ErrorCode) -> Reason {
        frame::put_goaway(&mut self.out, 0, code);
        Reason::H2Error
    }

    fn on_frame(
        &mut self,
        h: &FrameHeader,
        payload: &[u8],
        now: Time,
        setup: &H2Setup,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        let f = match frame::parse(h, payload) {
            Ok(f) => f,
            Err(FrameError::Connection(code)) => return Err(self.fail(code)),
            Err(FrameError::Stream(id, code)) => {
                frame::put_rst_stream(&mut self.out, id, code);
                if let Some(i) = self.find(id) {
                    self.finish_slot(i, Reason::H2Error, stats);
                }
                return Ok(());
            }
        };
        if self.state == State::Preface {
            if !matches!(f, Frame::Settings { ack: false, .. }) {
                return Err(self.fail(ErrorCode::ProtocolError));
            }
            self.state = State::Open;
        }
        if self.block.is_some() && !matches!(f, Frame::Continuation { .. }) {
            // RFC 9113 section 6.10: nothing may come between a field block's frames.
            return Err(self.fail(ErrorCode::ProtocolError));
        }
        match f {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.on_data(stream, end_stream, data, flow_len, now, setup, stats),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
                ..
            } => {
                let mut b = Block {
                    stream,
                    end_stream,
                    bytes: Vec::new(),
                };
                if end_headers {
                    return self.on_block(stream, end_stream, block, now, setup, stats);
                }
                b.bytes.extend_from_slice(block);
                self.block = Some(b);
                Ok(())
            }
            Frame::Continuation {
                stream,
                end_headers,
                block,
            } => {
                let Some(mut b) = self.block.take() else {
                    return Err(self.fail(ErrorCode::ProtocolError));
                };
                if b.stream != stream {
                    return Err(self.fail(ErrorCode::ProtocolError));
                }
                if b.bytes.len() + block.len() > setup.conn.max_head {
                    // The head is past the cap; its block cannot be decoded to keep the table
                    // in step, so the connection ends.
                    return Err(self.fail(ErrorCode::EnhanceYourCalm));
                }
                b.bytes.extend_from_slice(block);
                if end_headers {
                    return self.on_block(b.stream, b.end_stream, &b.bytes, now, setup, stats);
                }
                self.block = Some(b);
                Ok(())
            }
            Frame::RstStream { stream, code } => {
                if let Some(i) = self.find(stream) {
                    stats.h2.resets += 1;
                    let s = &mut self.slots[i];
                    if s.is_open() {
                        stats.end_dropped(Reason::StreamReset);
                    } else if code == ErrorCode::RefusedStream {
                        stats.h2.refused += 1;
                    } else {
                        stats.end_failed(Reason::StreamReset);
                    }
                    s.requeue(&setup.conn, now.ms() + RETRY_MS);
                    self.spill();
                }
                Ok(())
            }
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { params, .. } => {
                for (id, v) in frame::settings(params) {
                    if id == setting::MAX_CONCURRENT_STREAMS {
                        self.peer_max_streams = v;
                    }
                }
                frame::put_settings_ack(&mut self.out);
                self.spill();
                Ok(())
            }
            Frame::Ping { ack: false, data } => {
                stats.h2.pings += 1;
                frame::put_ping_ack(&mut self.out, &data);
                Ok(())
            }
            Frame::GoAway {
                last_stream, code, ..
            } => {
                stats.h2.goaways += 1;
                self.goaway = Some(last_stream);
                let mut i = 0;
                while i < self.slots.len() {
                    let s = &mut self.slots[i];
                    if s.id > last_stream || s.id == 0 {
                        if s.id != 0 {
                            stats.h2.refused += 1;
                        }
                        let mut slot = self.slots.swap_remove(i);
                        slot.requeue(&setup.conn, now.ms() + RETRY_MS);
                        self.orphans.push(slot);
                    } else {
                        i += 1;
                    }
                }
                if code != ErrorCode::NoError && !self.slots.is_empty() {
                    return Err(Reason::H2Error);
                }
                Ok(())
            }
            Frame::PushPromise { .. } => Err(self.fail(ErrorCode::ProtocolError)),
            Frame::Ping { ack: true, .. }
            | Frame::WindowUpdate { .. }
            | Frame::Priority { .. }
            | Frame::Unknown { .. } => Ok(()),
        }
    }

    /// Streams waiting to be asked for that the server's concurrency limit leaves no room for
    /// go to another connection.
    fn spill(&mut self) {
        let max = self.peer_max_streams as usize;
        if self.slots.len() <= max {
            return;
        }
        let active = self.slots.iter().filter(|s| s.id != 0).count();
        let mut room = max.saturating_sub(active);
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].id != 0 {
                i += 1;
            } else if room > 0 {
                room -= 1;
                i += 1;
            } else {
                let slot = self.slots.swap_remove(i);
                self.orphans.push(slot);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
        now: Time,
        setup: &H2Setup,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        self.conn_unacked = self.conn_unacked.saturating_add(flow_len);
        if self.conn_unacked >= CONN_WINDOW / 2 {
            frame::put_window_update(&mut self.out, 0, self.conn_unacked);
            stats.h2.window_updates += 1;
            self.conn_unacked = 0;
        }
        let Some(i) = self.find(stream) else {
            // A stream this side already closed: only the connection's window counts it.
            return Ok(());
        };
        let s = &mut self.slots[i];
        if !s.is_open() {
            // DATA before the head (RFC 9113 section 8.1).
            frame::put_rst_stream(&mut self.out, stream, ErrorCode::ProtocolError);
            self.finish_slot(i, Reason::BadResponse, stats);
            return Ok(());
        }
        let result = s.stream.handle_input(data, now, &setup.conn, stats);
        s.unacked = s.unacked.saturating_add(flow_len);
        if let Err(reason) = result {
            frame::put_rst_stream(&mut self.out, stream, ErrorCode::Cancel);
            self.finish_slot(i, reason, stats);
            return Ok(());
        }
        if end_stream {
            self.finish_slot(i, Reason::Ended, stats);
            return Ok(());
        }
        if s.unacked >= STREAM_WINDOW / 2 {
            frame::put_window_update(&mut self.out, stream, s.unacked);
            stats.h2.window_updates += 1;
            s.unacked = 0;
        }
        Ok(())
    }

    /// A complete field block for `stream`.
    fn on_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
        now: Time,
        setup: &H2Setup,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        let mut fields = std::mem::take(&mut self.fields);
        let decoded = self.decoder.decode(block, setup.conn.max_head, &mut fields);
        let head = head_of(&fields);
        self.fields = fields;
        let slot = self.find(stream);
        match decoded {
            Ok(()) => {}
            Err(hpack::HpackError::ListTooLarge) => {
                if let Some(i) = slot {
                    frame::put_rst_stream(&mut self.out, stream, ErrorCode::Cancel);
                    self.finish_slot(i, Reason::HeadTooLarge, stats);
                }
                return Ok(());
            }
            Err(_) => return Err(self.fail(ErrorCode::CompressionError)),
        }
        let Some(i) = slot else {
            return Ok(());
        };
        let s = &mut self.slots[i];
        if s.is_open() {
            // Trailers: the stream ends with them, or the peer broke the rules.
            if !end_stream {
                frame::put_rst_stream(&mut self.out, stream, ErrorCode::ProtocolError);
                self.finish_slot(i, Reason::BadResponse, stats);
            } else {
                self.finish_slot(i, Reason::Ended, stats);
            }
            return Ok(());
        }
        let Some((status, event_stream)) = head else {
            frame::put_rst_stream(&mut self.out, stream, ErrorCode::ProtocolError);
            self.finish_slot(i, Reason::BadResponse, stats);
            return Ok(());
        };
        if (100..200).contains(&status) && !end_stream {
            return Ok(());
        }
        if let Err(reason) = s
            .stream
            .handle_head(status, event_stream, end_stream, now, stats)
        {
            if !end_stream {
                frame::put_rst_stream(&mut self.out, stream, ErrorCode::Cancel);
            }
            self.finish_slot(i, reason, stats);
        }
        Ok(())
    }
}

/// The `:status` and whether `content-type` is `text/event-stream`, from a response head.
fn head_of(fields: &[hpack::Field]) -> Option<(u16, bool)> {
    let mut status = None;
    let mut event_stream = false;
    for (n, v) in fields {
        match &n[..] {
            b":status" => {
                status = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u16>().ok())
                    .filter(|s| (100..1000).contains(s));
            }
            b"content-type" => {
                let media = v.split(|&b| b == b';').next().unwrap_or(&[]);
                event_stream = media
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"text/event-stream");
            }
            _ => {}
        }
    }
    status.map(|s| (s, event_stream))
}

/// A stream's request: HEADERS (END_STREAM) with its path and, when it resumes,
/// `Last-Event-ID`.
fn put_request(out: &mut Vec<u8>, id: u32, setup: &H2Setup, slot: &Slot) {
    let mut block = Vec::with_capacity(128);
    hpack::encode_field(&mut block, b":method", b"GET");
    hpack::encode_field(&mut block, b":scheme", setup.scheme.as_bytes());
    hpack::encode_field(&mut block, b":authority", setup.authority.as_bytes());
    let path = setup.paths.get(slot.path).map_or("/", String::as_str);
    hpack::encode_field(&mut block, b":path", path.as_bytes());
    hpack::encode_field(&mut block, b"accept", b"text/event-stream");
    hpack::encode_field(&mut block, b"cache-control", b"no-cache");
    hpack::encode_field(
        &mut block,
        b"user-agent",
        concat!("sse-load/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let id_now = slot.stream.last_event_id();
    if !id_now.is_empty() {
        hpack::encode_field(&mut block, b"last-event-id", id_now);
    }
    frame::put_headers(
        out,
        HeaderBlock {
            stream: id,
            block: &block,
            end: StreamEnd::End,
            max_frame: DEFAULT_MAX_FRAME as usize,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::h2::frame::kind;

    fn at(ms: u64) -> Time {
        Time {
            us: ms * 1000,
            wall_us: 1_795_460_982_000_000 + ms as i64 * 1000,
        }
    }

    fn setup() -> H2Setup {
        H2Setup {
            authority: "127.0.0.1:1".into(),
            scheme: "http",
            paths: vec!["/sse?topic=a".into(), "/sse?topic=b".into()],
            conn: StreamConfig::default(),
        }
    }

    /// A connection of `n` streams, connected at 1 ms; its output taken.
    fn connected(n: usize, stats: &mut Stats) -> (H2Conn, Vec<u8>) {
        let su = setup();
        let slots = (0..n).map(|i| Slot::new(at(0), &su.conn, i % 2)).collect();
        let mut c = H2Conn::new(at(0), &su.conn, slots);
        assert_eq!(c.timeout(), Some(su.conn.connect_timeout_ms));
        assert!(!c.wants_read());
        c.handle_connected(at(1), &su, stats);
        let out = take(&mut c);
        (c, out)
    }

    fn take(c: &mut H2Conn) -> Vec<u8> {
        let out = c.pending().unwrap_or_default().to_vec();
        c.on_sent(out.len());
        out
    }

    /// The frames in `b`: (header, payload).
    fn frames(mut b: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(h) = FrameHeader::parse(b) {
            let end = HEADER_LEN + h.len as usize;
            v.push((h, b[HEADER_LEN..end].to_vec()));
            b = &b[end..];
        }
        assert!(b.is_empty(), "a cut frame in the output");
        v
    }

    /// The requests in the client's output: (stream id, fields).
    fn requests(out: &[u8], dec: &mut hpack::Decoder) -> Vec<(u32, Vec<(String, String)>)> {
        frames(out)
            .into_iter()
            .filter(|(h, _)| h.kind == kind::HEADERS)
            .map(|(h, p)| {
                assert_ne!(h.flags & frame::flag::END_STREAM, 0);
                let mut f = Vec::new();
                dec.decode(&p, 1 << 16, &mut f).unwrap();
                let f = f
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                (h.stream, f)
            })
            .collect()
    }

    fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
        f.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn head(out: &mut Vec<u8>, stream: u32, status: &[u8], ctype: &[u8]) {
        let mut block = Vec::new();
        hpack::encode_field(&mut block, b":status", status);
        hpack::encode_field(&mut block, b"content-type", ctype);
        frame::put_headers(
            out,
            HeaderBlock {
                stream,
                block: &block,
                end: StreamEnd::Open,
                max_frame: 16_384,
            },
        );
    }

    fn event(out: &mut Vec<u8>, stream: u32, id: u64) {
        let text = format!("id: {id}\ndata: e{id}\n\n");
        frame::put_data(out, stream, text.as_bytes(), StreamEnd::Open);
    }

    fn server_settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
        frame::put_settings(out, entries);
    }

    #[test]
    fn streams_are_asked_for_and_measured_per_stream_however_reads_cut_the_frames() {
        for piece in [1, 7, 9, 10, 64, 100_000] {
            let su = setup();
            let mut stats = Stats::default();
            let (mut c, out) = connected(3, &mut stats);
            assert!(out.starts_with(PREFACE));
            let fs = frames(&out[PREFACE.len()..]);
            assert_eq!(fs[0].0.kind, kind::SETTINGS);
            let settings: Vec<_> = frame::settings(&fs[0].1).collect();
            assert!(settings.contains(&(setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW)));
            assert!(settings.contains(&(setting::ENABLE_PUSH, 0)));
            assert_eq!(fs[1].0.kind, kind::WINDOW_UPDATE);
            assert_eq!(
                u32::from_be_bytes(fs[1].1[..4].try_into().unwrap()),
                CONN_WINDOW - DEFAULT_WINDOW
            );
            let mut dec = hpack::Decoder::new(4096);
            let reqs = requests(&out[PREFACE.len()..], &mut dec);
            assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3, 5]);
            let f = &reqs[1].1;
            assert_eq!(field(f, ":method"), Some("GET"));
            assert_eq!(field(f, ":scheme"), Some("http"));
            assert_eq!(field(f, ":authority"), Some("127.0.0.1:1"));
            assert_eq!(field(f, ":path"), Some("/sse?topic=b"));
            assert_eq!(field(f, "accept"), Some("text/event-stream"));
            assert_eq!(field(f, "last-event-id"), None);
            assert_eq!(c.opening(), 3);
            assert_eq!(c.timeout(), Some(1 + su.conn.headers_timeout_ms));

            let mut input = Vec::new();
            server_settings(&mut input, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
            for s in [1, 3, 5] {
                head(&mut input, s, b"200", b"text/event-stream; charset=utf-8");
            }
            for id in 0..5 {
                for s in [5, 1, 3] {
                    event(&mut input, s, id);
                }
            }
            frame::put_ping_ack(&mut input, &[0; 8]);
            for chunk in input.chunks(piece) {
                c.handle_input(chunk, at(2), &su, &mut stats).unwrap();
            }
            assert_eq!(stats.established, 3, "piece {piece}");
            assert_eq!(stats.frames, 15, "piece {piece}");
            assert_eq!(
                (stats.ids.gaps, stats.ids.duplicates, stats.ids.first_max),
                (0, 0, Some(0))
            );
            assert_eq!(c.opening(), 0);
            assert_eq!(c.timeout(), None);
            // The SETTINGS was acknowledged; the PING ack needs no answer.
            let back = frames(&take(&mut c));
            assert_eq!(back.len(), 1);
            assert_eq!(
                (back[0].0.kind, back[0].0.flags),
                (kind::SETTINGS, frame::flag::ACK)
            );
            c.at_end(&mut stats);
            assert_eq!(stats.open_at_end, 3);
        }
    }

    #[test]
    fn pings_are_answered_and_windows_given_back() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(1, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[]);
        head(&mut input, 1, b"200", b"text/event-stream");
        frame::header(8, kind::PING, 0, 0).put(&mut input);
        input.extend_from_slice(b"12345678");
        c.handle_input(&input, at(2), &su, &mut stats).unwrap();
        let back = frames(&take(&mut c));
        assert_eq!(back[1].0.kind, kind::PING);
        assert_eq!((back[1].0.flags, &back[1].1[..]), (1, &b"12345678"[..]));
        // A comment of 16,000 bytes per DATA frame: the stream's window comes back at half
        // its size, the connection's at half its own.
        let mut data = vec![b'x'; 16_000];
        data[0] = b':';
        data[15_999] = b'\n';
        let mut stream_updates = 0u64;
        let mut conn_updates = 0u64;
        let per = CONN_WINDOW as usize / 2 / 16_000 + 1;
        for _ in 0..per {
            let mut f = Vec::new();
            frame::put_data(&mut f, 1, &data, StreamEnd::Open);
            c.handle_input(&f, at(3), &su, &mut stats).unwrap();
            for (h, p) in frames(&take(&mut c)) {
                assert_eq!(h.kind, kind::WINDOW_UPDATE);
                let inc = u32::from_be_bytes(p[..4].try_into().unwrap());
                if h.stream == 1 {
                    assert!(inc >= STREAM_WINDOW / 2);
                    stream_updates += 1;
                } else {
                    assert!(inc >= CONN_WINDOW / 2);
                    conn_updates += 1;
                }
            }
        }
        assert_eq!(conn_updates, 1);
        // One each time half the stream's window was consumed: every 33 frames of 16,000.
        let frames_per_update = (STREAM_WINDOW as usize / 2).div_ceil(16_000);
        assert_eq!(stream_updates, (per / frames_per_update) as u64);
        assert_eq!(stats.comments, per as u64);
        assert_eq!(stats.h2.pings, 1);
    }

    #[test]
    fn a_reset_stream_is_asked_for_again_with_its_last_event_id() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(2, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[]);
        head(&mut input, 1, b"200", b"text/event-stream");
        head(&mut input, 3, b"200", b"text/event-stream");
        for id in 0..5 {
            event(&mut input, 1, id);
        }
        frame::put_rst_stream(&mut input, 1, ErrorCode::Cancel);
        // The server refuses stream 3 before... it is open, so this is a drop too; a refused
        // stream is tested below.
        c.handle_input(&input, at(10), &su, &mut stats).unwrap();
        assert_eq!(stats.dropped.get(&Reason::StreamReset), Some(&1));
        assert_eq!(c.opening(), 1);
        assert_eq!(c.timeout(), Some(10 + RETRY_MS));
        take(&mut c);
        assert_eq!(
            c.handle_timeout(at(10 + RETRY_MS - 1), &su, &mut stats),
            None
        );
        assert!(c.pending().is_none(), "not before the pause is over");
        assert_eq!(c.handle_timeout(at(10 + RETRY_MS), &su, &mut stats), None);
        let mut dec = hpack::Decoder::new(4096);
        let reqs = requests(&take(&mut c), &mut dec);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].0, 5);
        assert_eq!(field(&reqs[0].1, "last-event-id"), Some("4"));
        assert_eq!(field(&reqs[0].1, ":path"), Some("/sse?topic=a"));
        assert_eq!(stats.h2.reopened, 1);
        // The stream resumes where it was: no gap, no duplicate.
        let mut input = Vec::new();
        head(&mut input, 5, b"200", b"text/event-stream");
        event(&mut input, 5, 5);
        event(&mut input, 5, 6);
        c.handle_input(&input, at(120), &su, &mut stats).unwrap();
        assert_eq!(stats.established, 3);
        assert_eq!((stats.ids.gaps, stats.ids.duplicates), (0, 0));
        assert_eq!(stats.frames, 7);
        // A stream refused before its head is asked for again, not counted as failed.
        let mut stats = Stats::default();
        let (mut c, _) = connected(1, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[]);
        frame::put_rst_stream(&mut input, 1, ErrorCode::RefusedStream);
        c.handle_input(&input, at(10), &su, &mut stats).unwrap();
        assert_eq!((stats.failed_total(), stats.h2.refused), (0, 1));
        assert_eq!(c.opening(), 1);
        assert_eq!(c.timeout(), Some(10 + RETRY_MS));
    }

    #[test]
    fn goaway_moves_the_streams_past_its_last_id_to_a_new_connection() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(3, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[]);
        head(&mut input, 1, b"200", b"text/event-stream");
        event(&mut input, 1, 7);
        frame::put_goaway(&mut input, 1, ErrorCode::NoError);
        c.handle_input(&input, at(5), &su, &mut stats).unwrap();
        let orphans = c.take_orphans();
        assert_eq!(orphans.len(), 2);
        assert_eq!((stats.h2.goaways, stats.h2.refused), (1, 2));
        assert_eq!(stats.failed_total() + stats.dropped_total(), 0);
        assert_eq!(c.streams(), 1);
        // The kept stream goes on.
        let mut input = Vec::new();
        event(&mut input, 1, 8);
        c.handle_input(&input, at(6), &su, &mut stats).unwrap();
        assert_eq!(stats.frames, 2);
        // The orphans, on a new connection, are asked for after the pause.
        let mut n = H2Conn::new(at(6), &su.conn, orphans);
        n.handle_connected(at(7), &su, &mut stats);
        let mut dec = hpack::Decoder::new(4096);
        assert!(requests(&take(&mut n)[PREFACE.len()..], &mut dec).is_empty());
        assert_eq!(n.timeout(), Some(5 + RETRY_MS));
        n.handle_timeout(at(5 + RETRY_MS), &su, &mut stats);
        let reqs = requests(&take(&mut n), &mut dec);
        assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3]);
        // The end of the old connection drops only the stream it kept.
        c.end(Reason::Closed, &mut stats);
        assert_eq!(stats.dropped.get(&Reason::Closed), Some(&1));
        assert!(c.is_done());
    }

    #[test]
    fn a_server_past_its_concurrency_limit_spills_streams_to_another_connection() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(3, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[(setting::MAX_CONCURRENT_STREAMS, 2)]);
        frame::put_rst_stream(&mut input, 5, ErrorCode::RefusedStream);
        c.handle_input(&input, at(5), &su, &mut stats).unwrap();
        assert_eq!(c.take_orphans().len(), 1);
        assert_eq!(c.streams(), 2);
    }

    #[test]
    fn heads_that_are_not_event_streams_fail_their_stream_only() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(3, &mut stats);
        let mut input = Vec::new();
        server_settings(&mut input, &[]);
        head(&mut input, 1, b"404", b"text/plain");
        head(&mut input, 3, b"200", b"text/html");
        head(&mut input, 5, b"200", b"text/event-stream");
        c.handle_input(&input, at(5), &su, &mut stats).unwrap();
        assert_eq!(stats.failed.get(&Reason::BadStatus(404)), Some(&1));
        assert_eq!(stats.failed.get(&Reason::NotEventStream), Some(&1));
        assert_eq!(stats.established, 1);
        let rst: Vec<u32> = frames(&take(&mut c))
            .iter()
            .filter(|(h, _)| h.kind == kind::RST_STREAM)
            .map(|(h, _)| h.stream)
            .collect();
        assert_eq!(rst, [1, 3]);
        // A head that never comes fails its stream at the headers timeout.
        let mut stats = Stats::default();
        let (mut c, _) = connected(1, &mut stats);
        let t = c.timeout().unwrap();
        assert_eq!(c.handle_timeout(at(t), &su, &mut stats), None);
        assert_eq!(stats.failed.get(&Reason::HeadersTimeout), Some(&1));
        assert!(c.is_done());
    }

    #[test]
    fn a_server_without_h2_and_bad_frames_end_the_connection() {
        let su = setup();
        let mut stats = Stats::default();
        let (mut c, _) = connected(2, &mut stats);
        assert_eq!(
            c.handle_input(b"HTTP/1.1 400 Bad Request\r\n\r\n", at(2), &su, &mut stats),
            Err(Reason::NotH2)
        );
        let bad: Vec<Vec<u8>> = vec![
            // Not SETTINGS first.
            {
                let mut v = Vec::new();
                frame::put_ping_ack(&mut v, &[0; 8]);
                v
            },
            // A frame past 16,384 bytes.
            {
                let mut v = Vec::new();
                server_settings(&mut v, &[]);
                frame::header(20_000, kind::DATA, 0, 1).put(&mut v);
                v
            },
            // A field block that is not HPACK.
            {
                let mut v = Vec::new();
                server_settings(&mut v, &[]);
                frame::header(2, kind::HEADERS, frame::flag::END_HEADERS, 1).put(&mut v);
                v.extend_from_slice(&[0xff, 0xff]);
                v
            },
            // A push.
            {
                let mut v = Vec::new();
                server_settings(&mut v, &[]);
                frame::header(4, kind::PUSH_PROMISE, frame::flag::END_HEADERS, 1).put(&mut v);
                v.extend_from_slice(&[0, 0, 0, 2]);
                v
            },
        ];
        for input in bad {
            let mut stats = Stats::default();
            let (mut c, _) = connected(2, &mut stats);
            assert_eq!(
                c.handle_input(&input, at(2), &su, &mut stats),
                Err(Reason::H2Error)
            );
            let back = frames(&take(&mut c));
            assert!(back.iter().any(|(h, _)| h.kind == kind::GOAWAY), "{back:?}");
            c.end(Reason::H2Error, &mut stats);
            assert_eq!(stats.failed.get(&Reason::H2Error), Some(&2));
        }
    }

    /// Random bytes after a valid start: never a panic, output bounded, and the partial frame
    /// never past one frame.
    #[test]
    fn random_input_never_panics_nor_grows() {
        let su = setup();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut stats = Stats::default();
            let (mut c, _) = connected(4, &mut stats);
            let mut input = Vec::new();
            server_settings(&mut input, &[]);
            for s in [1, 3] {
                head(&mut input, s, b"200", b"text/event-stream");
            }
            let len = (next() % 2000) as usize;
            for _ in 0..len {
                // Mostly small numbers, so frame headers are often plausible.
                let r = next();
                input.push(if r % 3 == 0 {
                    (r >> 8) as u8
                } else {
                    (r % 10) as u8
                });
            }
            for chunk in input.chunks(1 + (next() % 50) as usize) {
                if c.handle_input(chunk, at(3), &su, &mut stats).is_err() {
                    break;
                }
                assert!(c.partial.len() <= HEADER_LEN + DEFAULT_MAX_FRAME as usize);
                let _ = c.timeout();
                c.handle_timeout(at(4), &su, &mut stats);
            }
            assert!(c.out.len() < MAX_OUT * 2);
        }
    }
}
