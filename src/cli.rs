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
    v.trim()
        .parse()
        .map_err(|_| format!("{flag} {v:?} is not a valid number"))
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
        assert!(num::<u16>("--port", "70000").is_err());
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
