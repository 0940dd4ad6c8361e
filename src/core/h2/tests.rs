//! The engine against a small frame client, on synthetic time.

use super::*;
use crate::wire::h2::frame::{header, put_data, put_headers, put_settings, HeaderBlock, StreamEnd};
use crate::wire::h2::hpack::encode_field;

/// A client: builds frames, reads back what the server wrote.
struct Client {
    out: Vec<u8>,
}

impl Client {
    fn new() -> Client {
        let mut out = PREFACE.to_vec();
        put_settings(&mut out, &[]);
        Client { out }
    }
    fn bare() -> Client {
        Client { out: Vec::new() }
    }
    fn get(&mut self, stream: u32, path: &str) -> &mut Self {
        let block = request_block("GET", path, &[]);
        put_headers(
            &mut self.out,
            HeaderBlock {
                stream,
                block: &block,
                end: StreamEnd::End,
                max_frame: 16_384,
            },
        );
        self
    }
    fn raw(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> &mut Self {
        header(payload.len(), kind, flags, stream).put(&mut self.out);
        self.out.extend_from_slice(payload);
        self
    }
    fn send(&mut self, h2: &mut H2, now: u64) {
        let b = std::mem::take(&mut self.out);
        // Fed in small pieces: frames split across reads are the normal case.
        for chunk in b.chunks(7) {
            h2.handle_input(chunk, now);
        }
    }
}

fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    encode_field(&mut block, b":method", method.as_bytes());
    encode_field(&mut block, b":scheme", b"http");
    encode_field(&mut block, b":path", path.as_bytes());
    encode_field(&mut block, b":authority", b"localhost");
    for (n, v) in extra {
        encode_field(&mut block, n.as_bytes(), v.as_bytes());
    }
    block
}

/// Frames the server wrote, as (kind, flags, stream, payload).
fn frames(h2: &mut H2, now: u64) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    h2.poll_transmit(&mut out, now);
    let mut v = Vec::new();
    let mut rest = &out[..];
    while let Some(h) = FrameHeader::parse(rest) {
        let end = HEADER_LEN + h.len as usize;
        v.push((h.kind, h.flags, h.stream, rest[HEADER_LEN..end].to_vec()));
        rest = &rest[end..];
    }
    assert!(rest.is_empty());
    v
}

fn goaway_code(f: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    f.iter()
        .find(|x| x.0 == kind::GOAWAY)
        .map(|x| u32::from_be_bytes([x.3[4], x.3[5], x.3[6], x.3[7]]))
}

fn rst(f: &[(u8, u8, u32, Vec<u8>)], stream: u32) -> Option<u32> {
    f.iter()
        .find(|x| x.0 == kind::RST_STREAM && x.2 == stream)
        .map(|x| u32::from_be_bytes([x.3[0], x.3[1], x.3[2], x.3[3]]))
}

fn open() -> H2 {
    let mut h2 = H2::new(H2Config::default(), 0);
    Client::new().send(&mut h2, 0);
    let f = frames(&mut h2, 0);
    assert_eq!(f[0].0, kind::SETTINGS);
    assert_eq!(f[0].1, 0);
    assert!(f.iter().any(|x| x.0 == kind::SETTINGS && x.1 == flag::ACK));
    h2
}

#[test]
fn a_get_is_a_request_and_its_answer_is_headers_then_data() {
    let mut h2 = open();
    Client::bare().get(1, "/sse?topic=a").send(&mut h2, 1);
    let reqs = h2.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, b"GET");
    assert_eq!(reqs[0].path, b"/sse?topic=a");
    assert_eq!(reqs[0].authority.as_deref(), Some(&b"localhost"[..]));
    h2.send_headers(
        1,
        200,
        &[("content-type", b"text/event-stream")],
        StreamEnd::Open,
    );
    h2.send_data(1, b"data: x\n\n", StreamEnd::Open);
    let f = frames(&mut h2, 1);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].0, f[0].2), (kind::HEADERS, 1));
    assert_eq!(f[0].1 & flag::END_STREAM, 0);
    let mut d = hpack::Decoder::new(4096);
    let mut fields = Vec::new();
    d.decode(&f[0].3, 1 << 16, &mut fields).unwrap();
    assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
    assert_eq!(f[1], (kind::DATA, 0, 1, b"data: x\n\n".to_vec()));
    assert_eq!(h2.open_streams(), 1);
    // A PING is answered with its payload.
    Client::bare()
        .raw(kind::PING, 0, 0, b"abcdefgh")
        .send(&mut h2, 2);
    let f = frames(&mut h2, 2);
    assert_eq!(f, vec![(kind::PING, flag::ACK, 0, b"abcdefgh".to_vec())]);
}

#[test]
fn a_bad_preface_or_a_first_frame_not_settings_ends_it() {
    let mut h2 = H2::new(H2Config::default(), 0);
    h2.handle_input(b"GET / HTTP/1.1\r\n", 0);
    assert_eq!(h2.error(), Some(ErrorCode::ProtocolError));
    assert!(h2.is_closing());
    assert_eq!(h2.read_limit(), 0);
    let mut h2 = H2::new(H2Config::default(), 0);
    let mut c = Client::bare();
    c.out.extend_from_slice(PREFACE);
    c.raw(kind::PING, 0, 0, &[0; 8]).send(&mut h2, 0);
    assert_eq!(
        goaway_code(&frames(&mut h2, 0)),
        Some(ErrorCode::ProtocolError as u32)
    );
    assert!(H2::is_preface_start(b"PRI * HT"));
    assert!(!H2::is_preface_start(b"GET /"));
}

#[test]
fn continuation_is_assembled_and_bounded() {
    let mut h2 = open();
    let block = request_block("GET", "/a", &[("x-long", &"v".repeat(300))]);
    let mut c = Client::bare();
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 1,
            block: &block,
            end: StreamEnd::End,
            max_frame: 100,
        },
    );
    c.send(&mut h2, 0);
    let reqs = h2.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].fields[0].1.len(), 300);

    // A flood of empty CONTINUATION frames: ended at the bound, never buffered past it.
    let block = request_block("GET", "/b", &[]);
    let mut c = Client::bare();
    c.raw(kind::HEADERS, flag::END_STREAM, 3, &block);
    for _ in 0..1000 {
        c.raw(kind::CONTINUATION, 0, 3, &[]);
    }
    c.send(&mut h2, 0);
    assert_eq!(h2.error(), Some(ErrorCode::EnhanceYourCalm));
    assert!(h2.take_requests().is_empty());

    // Large CONTINUATION frames past the block bound.
    let mut h2 = open();
    let mut c = Client::bare();
    c.raw(kind::HEADERS, flag::END_STREAM, 1, &block);
    for _ in 0..10 {
        c.raw(kind::CONTINUATION, 0, 1, &[0x82; 16_000]);
    }
    c.send(&mut h2, 0);
    assert_eq!(h2.error(), Some(ErrorCode::EnhanceYourCalm));

    // Another frame between HEADERS and CONTINUATION.
    let mut h2 = open();
    let mut c = Client::bare();
    c.raw(kind::HEADERS, flag::END_STREAM, 1, &block);
    c.raw(kind::PING, 0, 0, &[0; 8]);
    c.send(&mut h2, 0);
    assert_eq!(h2.error(), Some(ErrorCode::ProtocolError));
}

#[test]
fn an_hpack_bomb_is_a_431_and_the_connection_goes_on() {
    let mut h2 = open();
    // Put a 4,000-byte field in the table, then refer to it 500 times in a 500-byte block.
    let mut block = request_block("GET", "/a", &[]);
    block.extend_from_slice(&[0x40, 0x01, b'x']);
    hpack::put_integer(&mut block, 0, 7, 4000);
    block.extend(std::iter::repeat(b'y').take(4000));
    let mut c = Client::bare();
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 1,
            block: &block,
            end: StreamEnd::End,
            max_frame: 16_384,
        },
    );
    let mut bomb = request_block("GET", "/b", &[]);
    bomb.extend(std::iter::repeat(0xbe).take(500));
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 3,
            block: &bomb,
            end: StreamEnd::End,
            max_frame: 16_384,
        },
    );
    c.get(5, "/c");
    c.send(&mut h2, 0);
    let reqs = h2.take_requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].refused, None);
    assert_eq!(reqs[1].refused, Some(431));
    assert_eq!(reqs[2].path, b"/c");
    assert_eq!(h2.error(), None);
}

#[test]
fn stream_ids_reused_backwards_or_even_end_it() {
    for ids in [[5u32, 3], [2, 4]] {
        let mut h2 = open();
        let mut c = Client::bare();
        c.get(ids[0], "/a").get(ids[1], "/b");
        c.send(&mut h2, 0);
        assert_eq!(h2.error(), Some(ErrorCode::ProtocolError), "{ids:?}");
    }
    // An id reused once its stream is closed.
    let mut h2 = open();
    Client::bare().get(5, "/a").send(&mut h2, 0);
    h2.take_requests();
    h2.send_headers(5, 204, &[], StreamEnd::End);
    frames(&mut h2, 0);
    Client::bare().get(5, "/a").send(&mut h2, 0);
    assert_eq!(h2.error(), Some(ErrorCode::ProtocolError));
    // A second HEADERS on a stream still open whose request is complete: that stream only.
    let mut h2 = open();
    Client::bare().get(5, "/a").get(5, "/a").send(&mut h2, 0);
    assert_eq!(h2.error(), None);
    assert_eq!(
        rst(&frames(&mut h2, 0), 5),
        Some(ErrorCode::StreamClosed as u32)
    );
}

#[test]
fn streams_past_the_maximum_are_refused() {
    let mut h2 = H2::new(
        H2Config {
            max_streams: 3,
            ..H2Config::default()
        },
        0,
    );
    let mut c = Client::new();
    for i in 0..4 {
        c.get(1 + 2 * i, "/sse");
    }
    c.send(&mut h2, 0);
    assert_eq!(h2.take_requests().len(), 3);
    let f = frames(&mut h2, 0);
    assert_eq!(rst(&f, 7), Some(ErrorCode::RefusedStream as u32));
    assert_eq!(h2.error(), None);
}

#[test]
fn rapid_reset_is_bounded_then_enhance_your_calm() {
    let mut h2 = open();
    let mut c = Client::bare();
    let mut routed = 0;
    for i in 0..10_000u32 {
        let id = 1 + 2 * i;
        c.get(id, "/sse");
        c.raw(
            kind::RST_STREAM,
            0,
            id,
            &(ErrorCode::Cancel as u32).to_be_bytes(),
        );
        c.send(&mut h2, 0);
        routed += h2.take_requests().len();
        if h2.is_closing() {
            break;
        }
    }
    assert_eq!(h2.error(), Some(ErrorCode::EnhanceYourCalm));
    let f = frames(&mut h2, 0);
    assert_eq!(goaway_code(&f), Some(ErrorCode::EnhanceYourCalm as u32));
    // Requests reset before they were taken are never routed; the work is bounded.
    assert!(routed <= 101, "{routed}");
    // At the allowed rate, resets go on without end.
    let mut h2 = open();
    for i in 0..500u32 {
        let id = 1 + 2 * i;
        let mut c = Client::bare();
        c.get(id, "/sse");
        c.raw(
            kind::RST_STREAM,
            0,
            id,
            &(ErrorCode::Cancel as u32).to_be_bytes(),
        );
        c.send(&mut h2, u64::from(i) * 20);
    }
    assert_eq!(h2.error(), None);
}

#[test]
fn ping_and_settings_floods_end_it() {
    for k in [kind::PING, kind::SETTINGS] {
        let mut h2 = open();
        let mut c = Client::bare();
        for _ in 0..1000 {
            let payload: &[u8] = if k == kind::PING { &[0; 8] } else { &[] };
            c.raw(k, 0, 0, payload);
        }
        c.send(&mut h2, 0);
        assert_eq!(h2.error(), Some(ErrorCode::EnhanceYourCalm));
        // What was queued before the end is bounded.
        let mut out = Vec::new();
        h2.poll_transmit(&mut out, 0);
        assert!(out.len() < MAX_CONTROL_OUT + 100, "{}", out.len());
    }
}

#[test]
fn oversized_frames_end_it() {
    let mut h2 = open();
    let mut c = Client::bare();
    c.raw(kind::DATA, 0, 1, &vec![0; 16_385]);
    c.send(&mut h2, 0);
    assert_eq!(h2.error(), Some(ErrorCode::FrameSizeError));
}

#[test]
fn windows_hold_data_per_stream_and_a_stalled_stream_is_reset_alone() {
    let mut h2 = H2::new(
        H2Config {
            stall_ms: 1000,
            ..H2Config::default()
        },
        0,
    );
    let mut c = Client::new();
    // Stream windows of 10 bytes.
    c.out.clear();
    c.out.extend_from_slice(PREFACE);
    put_settings(&mut c.out, &[(setting::INITIAL_WINDOW_SIZE, 10)]);
    c.get(1, "/sse").get(3, "/sse");
    c.send(&mut h2, 0);
    frames(&mut h2, 0);
    assert_eq!(h2.take_requests().len(), 2);
    for id in [1, 3] {
        h2.send_headers(id, 200, &[], StreamEnd::Open);
        h2.send_data(id, &[b'x'; 25], StreamEnd::Open);
    }
    let f = frames(&mut h2, 0);
    let data: Vec<_> = f.iter().filter(|x| x.0 == kind::DATA).collect();
    assert_eq!(data.len(), 2, "both streams in one write");
    assert!(data.iter().all(|x| x.3.len() == 10));
    assert_eq!(h2.timeout(), Some(1000));
    // Stream 3's reader takes its bytes; stream 1's never does.
    Client::bare()
        .raw(kind::WINDOW_UPDATE, 0, 3, &100u32.to_be_bytes())
        .send(&mut h2, 500);
    let f = frames(&mut h2, 500);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].2, f[0].3.len()), (3, 15));
    h2.handle_timeout(999);
    assert_eq!(h2.open_streams(), 2);
    h2.handle_timeout(1000);
    assert_eq!(h2.take_events(), vec![H2Event::StreamGone(1)]);
    let f = frames(&mut h2, 1000);
    assert_eq!(rst(&f, 1), Some(ErrorCode::Cancel as u32));
    assert_eq!(h2.open_streams(), 1);
    h2.send_data(3, b"more", StreamEnd::Open);
    let f = frames(&mut h2, 1001);
    assert_eq!(f[0].3, b"more");
}

#[test]
fn the_connection_window_is_shared_and_reopened() {
    let mut h2 = open();
    let mut c = Client::bare();
    c.get(1, "/a").get(3, "/b");
    c.send(&mut h2, 0);
    for id in [1, 3] {
        h2.send_headers(id, 200, &[], StreamEnd::Open);
        h2.send_data(id, &vec![b'x'; 40_000], StreamEnd::End);
    }
    let f = frames(&mut h2, 0);
    let sent: usize = f
        .iter()
        .filter(|x| x.0 == kind::DATA)
        .map(|x| x.3.len())
        .sum();
    assert_eq!(sent, 65_535);
    let ended = f.iter().filter(|x| x.1 & flag::END_STREAM != 0).count();
    assert!(f.iter().all(|x| x.3.len() <= 16_384));
    Client::bare()
        .raw(kind::WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes())
        .raw(kind::WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes())
        .raw(kind::WINDOW_UPDATE, 0, 3, &100_000u32.to_be_bytes())
        .send(&mut h2, 1);
    let f = frames(&mut h2, 1);
    let sent2: usize = f
        .iter()
        .filter(|x| x.0 == kind::DATA)
        .map(|x| x.3.len())
        .sum();
    assert_eq!(sent + sent2, 80_000);
    assert_eq!(
        ended + f.iter().filter(|x| x.1 & flag::END_STREAM != 0).count(),
        2
    );
    assert_eq!(h2.open_streams(), 0);
}

#[test]
fn a_post_body_arrives_whole_and_a_too_large_one_is_413() {
    let mut h2 = open();
    let mut c = Client::bare();
    let block = request_block("POST", "/publish", &[("content-type", "application/json")]);
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 1,
            block: &block,
            end: StreamEnd::Open,
            max_frame: 16_384,
        },
    );
    put_data(&mut c.out, 1, b"{\"topic\":", StreamEnd::Open);
    put_data(&mut c.out, 1, b"\"a\"}", StreamEnd::End);
    c.send(&mut h2, 0);
    let reqs = h2.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, b"{\"topic\":\"a\"}");
    // The bytes are given back to the client's windows.
    let f = frames(&mut h2, 0);
    assert!(f.iter().any(|x| x.0 == kind::WINDOW_UPDATE && x.2 == 1));

    let mut h2 = H2::new(
        H2Config {
            max_body: 100,
            ..H2Config::default()
        },
        0,
    );
    let mut c = Client::new();
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 1,
            block: &block,
            end: StreamEnd::Open,
            max_frame: 16_384,
        },
    );
    put_data(&mut c.out, 1, &[b'x'; 80], StreamEnd::Open);
    put_data(&mut c.out, 1, &[b'x'; 80], StreamEnd::Open);
    put_data(&mut c.out, 1, &[b'x'; 80], StreamEnd::End);
    c.send(&mut h2, 0);
    let reqs = h2.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].refused, Some(413));
    assert!(reqs[0].body.is_empty());
    assert_eq!(h2.error(), None);
}

#[test]
fn go_away_names_the_last_stream_and_refuses_new_ones() {
    let mut h2 = open();
    Client::bare().get(1, "/sse").send(&mut h2, 0);
    h2.take_requests();
    h2.send_headers(1, 200, &[], StreamEnd::Open);
    h2.go_away();
    let f = frames(&mut h2, 0);
    let g = f.iter().find(|x| x.0 == kind::GOAWAY).unwrap();
    assert_eq!(&g.3[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(!h2.is_closing());
    Client::bare().get(3, "/sse").send(&mut h2, 0);
    assert!(h2.take_requests().is_empty());
    assert_eq!(
        rst(&frames(&mut h2, 0), 3),
        Some(ErrorCode::RefusedStream as u32)
    );
    h2.send_data(1, b"retry: 1000\n", StreamEnd::End);
    frames(&mut h2, 0);
    assert!(h2.is_closing());
}

#[test]
fn bad_requests_are_reset() {
    let mut h2 = open();
    let mut c = Client::bare();
    let mut bad = Vec::new();
    encode_field(&mut bad, b":method", b"GET");
    encode_field(&mut bad, b":path", b"/");
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 1,
            block: &bad,
            end: StreamEnd::End,
            max_frame: 16_384,
        },
    ); // no :scheme
    let mut bad = request_block("GET", "/", &[("connection", "close")]);
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 3,
            block: &bad,
            end: StreamEnd::End,
            max_frame: 16_384,
        },
    );
    bad = request_block("GET", "/", &[]);
    encode_field(&mut bad, b"X-Upper", b"1");
    put_headers(
        &mut c.out,
        HeaderBlock {
            stream: 5,
            block: &bad,
            end: StreamEnd::End,
            max_frame: 16_384,
        },
    );
    c.send(&mut h2, 0);
    assert!(h2.take_requests().is_empty());
    let f = frames(&mut h2, 0);
    for id in [1, 3, 5] {
        assert_eq!(rst(&f, id), Some(ErrorCode::ProtocolError as u32), "{id}");
    }
    assert_eq!(h2.error(), None);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_frames_after_the_preface_never_panic(
            frames in proptest::collection::vec(
                (0u8..11, any::<u8>(), 0u32..12, proptest::collection::vec(any::<u8>(), 0..40)),
                0..40),
        ) {
            let mut h2 = H2::new(H2Config::default(), 0);
            let mut c = Client::new();
            for (k, fl, s, p) in &frames {
                c.raw(*k, *fl, *s, p);
            }
            c.send(&mut h2, 0);
            let mut out = Vec::new();
            for r in h2.take_requests() {
                h2.send_headers(r.stream, 200, &[], StreamEnd::Open);
                h2.send_data(r.stream, b"x", StreamEnd::End);
            }
            h2.poll_transmit(&mut out, 0);
            h2.handle_timeout(1_000_000);
            prop_assert!(h2.inb.len() <= HEADER_LEN + 16_384);
            prop_assert!(out.len() <= MAX_CONTROL_OUT + 64 * 1024);
        }
    }
}
