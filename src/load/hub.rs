//! The subscriber's side of a hub test: the payload the publisher sends, and what each stream
//! counts when one arrives.
//!
//! Every published event carries `{"seq":N,"t_us":T,"run":R}`: a sequence number (1, 2, ... in
//! publish order), the publisher's wall clock in microseconds when the request went out, and
//! this run's nonce. A subscriber therefore measures publish-to-deliver latency (receive time
//! minus `t_us`) and sees gaps and duplicates by `seq`, per stream, whatever ids the hub puts
//! on its frames (they are opaque strings in the contract). Frames of another run (a replay of
//! an older run's history) are counted as foreign, never as deliveries. Events named `reset`
//! (the hub's gap signal) are counted as resets.
//!
//! **Invariant:** no IO, no clock; O(1) per frame and no allocation (payload parsing scans the
//! data once).

use super::histogram::Histogram;

/// The fields of a published payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload {
    pub seq: u64,
    /// Publisher's wall clock at send, microseconds since the Unix epoch.
    pub t_us: i64,
    pub run: u64,
}

impl Payload {
    /// The payload's JSON text, written into `out`.
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{{\"seq\":{},\"t_us\":{},\"run\":{}}}",
            self.seq, self.t_us, self.run
        );
    }

    /// Reads a payload from event data: a JSON object with integer `seq`, `t_us` and `run`
    /// members (in any order, other members allowed). `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Payload> {
        if data.first() != Some(&b'{') {
            return None;
        }
        Some(Payload {
            seq: u64::try_from(json_int(data, b"\"seq\"")?).ok()?,
            t_us: json_int(data, b"\"t_us\"")?,
            run: u64::try_from(json_int(data, b"\"run\"")?).ok()?,
        })
    }
}

/// The integer value of the first member named `key` (quotes included) in `data`.
fn json_int(data: &[u8], key: &[u8]) -> Option<i64> {
    let at = data.windows(key.len()).position(|w| w == key)?;
    let rest = skip_ws(&data[at + key.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let (neg, rest) = match rest.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 18 {
        return None;
    }
    let v = rest[..n]
        .iter()
        .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// What the subscribers counted, summed over streams.
#[derive(Clone, Debug, Default)]
pub struct Deliveries {
    /// Events of this run received (duplicates included).
    pub received: u64,
    /// Receive time minus the payload's `t_us`, in microseconds (negative counts as 0 and in
    /// `early`).
    pub latency_us: Histogram,
    pub early: u64,
    /// Deliveries whose `seq` jumped forward by more than one on their stream.
    pub gaps: u64,
    /// Sequence numbers skipped by those jumps, in total.
    pub missing_in_gaps: u64,
    /// Deliveries whose `seq` was not above the stream's previous one.
    pub duplicates: u64,
    /// Events named `reset`.
    pub resets: u64,
    /// Payloads of another run (another nonce).
    pub foreign: u64,
}

/// One event as a stream received it (see [`Deliveries::on_event`]).
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    pub event_type: &'a [u8],
    pub data: &'a [u8],
    /// When it arrived, wall clock, microseconds.
    pub wall_us: i64,
}

impl Deliveries {
    /// Adds another loop's counts.
    pub fn merge(&mut self, o: &Deliveries) {
        self.received += o.received;
        self.latency_us.merge(&o.latency_us);
        self.early += o.early;
        self.gaps += o.gaps;
        self.missing_in_gaps += o.missing_in_gaps;
        self.duplicates += o.duplicates;
        self.resets += o.resets;
        self.foreign += o.foreign;
    }

    /// Counts one event received on a stream whose last delivered sequence number is
    /// `last_seq`. `run` is this run's nonce.
    pub fn on_event(&mut self, last_seq: &mut Option<u64>, ev: Received<'_>, run: u64) {
        let Received {
            event_type,
            data,
            wall_us,
        } = ev;
        if event_type == b"reset" {
            self.resets += 1;
            return;
        }
        let Some(p) = Payload::parse(data) else {
            return;
        };
        if p.run != run {
            self.foreign += 1;
            return;
        }
        self.received += 1;
        let late = wall_us.saturating_sub(p.t_us);
        if late < 0 {
            self.early += 1;
        }
        self.latency_us.record(late.max(0) as u64);
        match last_seq.replace(p.seq) {
            Some(prev) if p.seq == prev.wrapping_add(1) => {}
            Some(prev) if p.seq > prev => {
                self.gaps += 1;
                self.missing_in_gaps += p.seq - prev - 1;
            }
            Some(prev) => {
                self.duplicates += 1;
                // Keep the highest seen, so one replayed frame counts once, not as a gap after.
                *last_seq = Some(prev);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_variants() {
        let p = Payload {
            seq: 17,
            t_us: 1_795_460_982_321_123,
            run: 99,
        };
        let mut s = String::new();
        p.write(&mut s);
        assert_eq!(s, r#"{"seq":17,"t_us":1795460982321123,"run":99}"#);
        assert_eq!(Payload::parse(s.as_bytes()), Some(p));
        let spaced = br#"{ "run" : 99, "x": "y", "t_us": 1795460982321123 , "seq":17 }"#;
        assert_eq!(Payload::parse(spaced), Some(p));
        for bad in [
            &br#"seq":1"#[..],
            br#"{"seq":1,"t_us":2}"#,
            br#"{"seq":-1,"t_us":2,"run":1}"#,
            br#"{"seq":"1","t_us":2,"run":1}"#,
            br#"{"seq":1,"t_us":99999999999999999999,"run":1}"#,
            b"",
            b"{",
        ] {
            assert_eq!(
                Payload::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Feeds `(event type, seq)` pairs of run 7, each received 1.5 ms after it was sent.
    fn check(events: &[(&str, u64)], want: (u64, u64, u64, u64, u64)) {
        let mut d = Deliveries::default();
        let mut last = None;
        for &(ty, seq) in events {
            let mut data = String::new();
            Payload {
                seq,
                t_us: 1_000_000 + seq as i64 * 1000,
                run: 7,
            }
            .write(&mut data);
            let wall = 1_000_000 + seq as i64 * 1000 + 1500;
            d.on_event(
                &mut last,
                Received {
                    event_type: ty.as_bytes(),
                    data: data.as_bytes(),
                    wall_us: wall,
                },
                7,
            );
        }
        let got = (
            d.received,
            d.gaps,
            d.missing_in_gaps,
            d.duplicates,
            d.resets,
        );
        assert_eq!(got, want, "{events:?}");
        if d.received > 0 {
            assert_eq!(d.latency_us.max(), 1500);
        }
    }

    #[test]
    fn gaps_duplicates_and_resets_per_stream() {
        let m = "message";
        // (received, gaps, missing, duplicates, resets)
        check(&[(m, 1), (m, 2), (m, 3)], (3, 0, 0, 0, 0));
        check(&[(m, 5), (m, 6)], (2, 0, 0, 0, 0));
        check(&[(m, 1), (m, 4), (m, 5), (m, 9)], (4, 2, 5, 0, 0));
        check(&[(m, 1), (m, 2), (m, 2), (m, 1), (m, 3)], (5, 0, 0, 2, 0));
        check(&[(m, 1), ("reset", 0), (m, 2)], (2, 0, 0, 0, 1));
        check(&[], (0, 0, 0, 0, 0));
    }

    #[test]
    fn foreign_runs_and_other_frames_are_not_deliveries() {
        let mut d = Deliveries::default();
        let mut last = None;
        d.on_event(
            &mut last,
            Received {
                event_type: b"message",
                data: br#"{"seq":1,"t_us":5,"run":8}"#,
                wall_us: 10,
            },
            7,
        );
        d.on_event(
            &mut last,
            Received {
                event_type: b"message",
                data: br#"{"content":"2026-11-23T19:09:42.321Z"}"#,
                wall_us: 10,
            },
            7,
        );
        d.on_event(
            &mut last,
            Received {
                event_type: b"message",
                data: br#"{"seq":1,"t_us":50,"run":7}"#,
                wall_us: 10,
            },
            7,
        );
        assert_eq!((d.received, d.foreign, d.early), (1, 1, 1));
        assert_eq!(d.latency_us.max(), 0);
    }
}
