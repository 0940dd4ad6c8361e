//! The Huffman code of HPACK (RFC 7541 Appendix B), decoding only (the encoder writes raw
//! strings). The code is canonical, so the table is the 257 code lengths of the appendix and the
//! codes are derived from them at compile time; a unit test checks a few codes the appendix
//! prints and the RFC's examples check the rest end to end.

/// Bits of the code of each symbol (0..=255, then 256 = EOS), RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0..16
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16..32
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // ' '..'/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // '0'..'?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // '@'..'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 'P'..'_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // '`'..'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 'p'..127
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128..144
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144..160
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160..176
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176..192
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192..208
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208..224
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224..240
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240..256
    30, // EOS
];

const MAX_LEN: usize = 30;

/// Per code length: how many symbols, the first code of that length, and where its symbols
/// start in [`SYMBOLS`] (canonical order: by length, then by symbol).
struct Canon {
    count: [u32; MAX_LEN + 1],
    first: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

const fn canon() -> Canon {
    let mut count = [0u32; MAX_LEN + 1];
    let mut i = 0;
    while i < 257 {
        count[LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut off = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        code <<= 1;
        first[len] = code;
        offset[len] = off;
        code += count[len];
        off += count[len] as u16;
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut fill = offset;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        symbols[fill[l] as usize] = s as u16;
        fill[l] += 1;
        s += 1;
    }
    Canon {
        count,
        first,
        offset,
        symbols,
    }
}

static CANON: Canon = canon();

/// Why a Huffman string does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// The EOS symbol inside the string (RFC 7541 section 5.2: a decoding error).
    Eos,
    /// Padding longer than 7 bits or not the most significant bits of EOS (all ones).
    Padding,
    /// The decoded string would pass the limit the caller gave.
    TooLong,
}

/// Decodes `src` and appends the bytes to `out`, refusing to let `out` pass `limit` bytes.
pub fn decode(src: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), HuffmanError> {
    let c = &CANON;
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let rel = code.wrapping_sub(c.first[len]);
            if code >= c.first[len] && rel < c.count[len] {
                let sym = c.symbols[c.offset[len] as usize + rel as usize];
                if sym == 256 {
                    return Err(HuffmanError::Eos);
                }
                if out.len() >= limit {
                    return Err(HuffmanError::TooLong);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            } else if len >= MAX_LEN {
                // Every 30-bit pattern is EOS or a longer code's prefix; 30 bits that matched
                // nothing cannot happen with this table, but never loop on it.
                return Err(HuffmanError::Eos);
            }
        }
    }
    // What is left must be at most 7 bits, all ones (a prefix of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(sym: usize) -> (u32, u8) {
        let c = &CANON;
        let l = LENGTHS[sym] as usize;
        let pos = (0..257).position(|i| c.symbols[i] as usize == sym).unwrap();
        (c.first[l] + (pos as u32 - u32::from(c.offset[l])), l as u8)
    }

    #[test]
    fn the_derived_codes_are_the_appendix_codes() {
        // A few rows of RFC 7541 Appendix B, from each length class.
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(1), (0x7fffd8, 23));
        assert_eq!(code_of(10), (0x3ffffffc, 30));
        assert_eq!(code_of(b' ' as usize), (0x14, 6));
        assert_eq!(code_of(b'0' as usize), (0x0, 5));
        assert_eq!(code_of(b'a' as usize), (0x3, 5));
        assert_eq!(code_of(b'\\' as usize), (0x7fff0, 19));
        assert_eq!(code_of(b'~' as usize), (0x1ffd, 13));
        assert_eq!(code_of(128), (0xfffe6, 20));
        assert_eq!(code_of(195), (0x7fff1, 19));
        assert_eq!(code_of(255), (0x3ffffee, 26));
        assert_eq!(code_of(256), (0x3fffffff, 30));
        // A complete prefix code: the lengths fill the code space exactly (Kraft sum 1).
        let kraft: u64 = LENGTHS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(kraft, 1 << 30);
    }

    #[test]
    fn decodes_the_rfc_strings_and_refuses_bad_padding_and_eos() {
        let mut out = Vec::new();
        let www = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        decode(&www, &mut out, 100).unwrap();
        assert_eq!(out, b"www.example.com");
        out.clear();
        assert_eq!(decode(&www, &mut out, 5), Err(HuffmanError::TooLong));
        out.clear();
        // 8 bits of padding (a whole 0xff byte after a complete string).
        assert_eq!(
            decode(&[0x1f, 0xff], &mut out, 100),
            Err(HuffmanError::Padding)
        );
        out.clear();
        // Padding of zeros: '0' is 00000, then 000 is not EOS's prefix.
        assert_eq!(decode(&[0x00], &mut out, 100), Err(HuffmanError::Padding));
        out.clear();
        // EOS itself, 30 ones (plus 2 padding ones).
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut out, 100),
            Err(HuffmanError::Eos)
        );
        out.clear();
        decode(&[], &mut out, 100).unwrap();
        assert!(out.is_empty());
    }
}
