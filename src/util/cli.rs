//! What the two binaries' flag parsers share: `--flag value` and `--flag=value`, and numbers
//! checked with the flag's name in the error.

use std::str::FromStr;

/// Splits `--flag=value` into the flag and its inline value; anything else is a flag (or a
/// positional argument) without one.
pub fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
        _ => (arg.to_owned(), None),
    }
}

pub fn num<T: FromStr>(flag: &str, v: &str) -> Result<T, String> {
    let t = v.trim();
    t.parse().map_err(|_| {
        // A well-formed integer that does not fit is not "not a number": say what is wrong.
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            format!("{flag} {v} is out of range")
        } else {
            format!("{flag} {v:?} is not a valid number")
        }
    })
}

/// A TCP port, 0 to 65535.
pub fn port(flag: &str, v: &str) -> Result<u16, String> {
    num(flag, v).map_err(|e| {
        if e.ends_with("out of range") {
            format!("{e} (a port is 0 to 65535)")
        } else {
            e
        }
    })
}

pub fn positive<T: FromStr + PartialOrd + Default>(flag: &str, v: &str) -> Result<T, String> {
    let n: T = num(flag, v)?;
    if n <= T::default() {
        return Err(format!("{flag} must be above 0"));
    }
    Ok(n)
}

pub fn at_least(flag: &str, v: &str, min: usize) -> Result<usize, String> {
    let n: usize = num(flag, v)?;
    if n < min {
        return Err(format!("{flag} must be at least {min}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_numbers() {
        assert_eq!(
            split_flag("--port=80"),
            ("--port".into(), Some("80".into()))
        );
        assert_eq!(split_flag("--port"), ("--port".into(), None));
        assert_eq!(
            split_flag("-c=5"),
            ("-c=5".into(), None),
            "short flags take no =value"
        );
        assert_eq!(split_flag("http://h/?a=b"), ("http://h/?a=b".into(), None));
        assert_eq!(num::<u16>("--port", " 80 "), Ok(80));
        assert_eq!(
            num::<u16>("--port", "70000"),
            Err("--port 70000 is out of range".into())
        );
        assert_eq!(
            port("--port", "99999"),
            Err("--port 99999 is out of range (a port is 0 to 65535)".into())
        );
        assert_eq!(
            num::<u16>("--port", "12a"),
            Err("--port \"12a\" is not a valid number".into())
        );
        assert_eq!(
            positive::<u64>("--n", "0"),
            Err("--n must be above 0".into())
        );
        assert_eq!(
            at_least("--n", "3", 4),
            Err("--n must be at least 4".into())
        );
        assert_eq!(at_least("--n", "4", 4), Ok(4));
    }
}
