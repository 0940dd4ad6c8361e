//! Wall-clock dates as the server writes them: the ISO form of a frame's `content` and of a
//! log line (`JSON.stringify(new Date())`), and the IMF-fixdate of the HTTP `Date` field,
//! each formatted at most once per millisecond (ISO) or second (HTTP).
//!
//! **Invariant:** no IO and no clock: the wall-clock time is always an argument.

/// Length of an ISO date as `JSON.stringify(new Date())` writes it (without the quotes).
pub const ISO_LEN: usize = 24;
/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const HTTP_DATE_LEN: usize = 29;

/// Formatted wall-clock dates, recomputed only when the millisecond (ISO) or the second (HTTP)
/// changes, so a burst of frames in one millisecond formats once.
#[derive(Clone, Debug)]
pub struct Dates {
    iso_ms: i64,
    iso: [u8; ISO_LEN],
    http_sec: i64,
    http: [u8; HTTP_DATE_LEN],
}

impl Default for Dates {
    fn default() -> Self {
        Self::new()
    }
}

impl Dates {
    /// A cache that formats on first use.
    pub fn new() -> Self {
        Dates {
            iso_ms: i64::MIN,
            iso: [b'0'; ISO_LEN],
            http_sec: i64::MIN,
            http: [b'0'; HTTP_DATE_LEN],
        }
    }

    /// `unix_ms` as `2026-11-23T19:09:42.321Z`.
    pub fn iso(&mut self, unix_ms: i64) -> &[u8; ISO_LEN] {
        if unix_ms != self.iso_ms {
            self.iso_ms = unix_ms;
            format_iso(&mut self.iso, unix_ms);
        }
        &self.iso
    }

    /// `unix_ms` as an IMF-fixdate for the `Date` header.
    pub fn http(&mut self, unix_ms: i64) -> &[u8; HTTP_DATE_LEN] {
        let sec = unix_ms.div_euclid(1000);
        if sec != self.http_sec {
            self.http_sec = sec;
            format_http(&mut self.http, sec);
        }
        &self.http
    }
}

fn civil(unix_sec: i64) -> time::OffsetDateTime {
    // Out-of-range clocks (before year -9999 or after 9999) clamp to the epoch rather than fail.
    time::OffsetDateTime::from_unix_timestamp(unix_sec).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

fn put_year(out: &mut [u8], year: i32) {
    let y = year.clamp(0, 9999) as u32;
    put2(&mut out[0..2], y / 100);
    put2(&mut out[2..4], y % 100);
}

fn format_iso(out: &mut [u8; ISO_LEN], unix_ms: i64) {
    let t = civil(unix_ms.div_euclid(1000));
    let ms = unix_ms.rem_euclid(1000) as u32;
    out.copy_from_slice(b"0000-00-00T00:00:00.000Z");
    put_year(&mut out[0..4], t.year());
    put2(&mut out[5..7], u8::from(t.month()) as u32);
    put2(&mut out[8..10], t.day() as u32);
    put2(&mut out[11..13], t.hour() as u32);
    put2(&mut out[14..16], t.minute() as u32);
    put2(&mut out[17..19], t.second() as u32);
    out[20] = b'0' + (ms / 100) as u8;
    put2(&mut out[21..23], ms % 100);
}

fn format_http(out: &mut [u8; HTTP_DATE_LEN], unix_sec: i64) {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = civil(unix_sec);
    out.copy_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
    out[0..3].copy_from_slice(DAYS[t.weekday().number_days_from_monday() as usize]);
    put2(&mut out[5..7], t.day() as u32);
    out[8..11].copy_from_slice(MONTHS[u8::from(t.month()) as usize - 1]);
    put_year(&mut out[12..16], t.year());
    put2(&mut out[17..19], t.hour() as u32);
    put2(&mut out[20..22], t.minute() as u32);
    put2(&mut out[23..25], t.second() as u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_javascript() {
        let mut d = Dates::new();
        // Values checked against `new Date(ms).toJSON()` in Node.
        assert_eq!(d.iso(0), b"1970-01-01T00:00:00.000Z");
        assert_eq!(d.iso(1_795_460_982_321), b"2026-11-23T19:09:42.321Z");
        assert_eq!(d.iso(951_782_400_007), b"2000-02-29T00:00:00.007Z");
        assert_eq!(d.iso(253_402_300_799_999), b"9999-12-31T23:59:59.999Z");
        assert_eq!(d.iso(-1), b"1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn http_dates() {
        let mut d = Dates::new();
        assert_eq!(d.http(784_111_777_000), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d.http(1_795_460_982_321), b"Mon, 23 Nov 2026 19:09:42 GMT");
        assert_eq!(d.http(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
