//! Decimal numbers as the protocol writes them: parsed strictly and printed without
//! allocating. Shared by every layer that reads or writes an id, a length or a count.
//!
//! **Invariant:** no IO; never panics on any input.

/// A decimal number of at most 20 digits that fits in a `u64`: no sign, no space, no empty.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Appends `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for (v, want) in [
            (&b"0"[..], Some(0)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"+1", None),
            (b" 1", None),
            (b"000000000000000000001", None),
        ] {
            assert_eq!(parse_u64(v), want, "{v:?}");
        }
        let mut n = Vec::new();
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            n.clear();
            push_decimal(&mut n, v);
            assert_eq!(n, v.to_string().as_bytes());
        }
    }
}
