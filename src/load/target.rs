//! What `sse-load` points at: the target URL, parsed once, which must name a loopback address.
//!
//! **Invariant:** no IO: no name is resolved (only IP literals and `localhost`, which is taken
//! to mean 127.0.0.1, are accepted), so a typo can never send load off this machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where the streams go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The loopback address and port to connect to.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `https://`: the connection speaks TLS.
    pub tls: bool,
}

/// Parses `http://HOST[:PORT][/PATH]` or `https://...`, where HOST is a loopback IP literal
/// (`[::1]` for IPv6) or `localhost`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => {
            return Err(format!(
                "{url:?}: only http:// and https:// URLs are supported"
            ))
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?}: the path must not contain spaces or controls"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url:?}: user info is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: bad port"))?,
            ),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        None if tls => 443,
        None => 80,
        Some(p) => p
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!(
                "{url:?}: the host must be a loopback IP address or localhost (no name lookups)"
            )
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{url:?}: refusing to load {ip}: sse-load only targets this machine (127.0.0.0/8 or ::1)"
        ));
    }
    Ok(Target {
        url: url.to_owned(),
        addr: SocketAddr::new(ip, port),
        host: authority.to_owned(),
        path,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://[::1]:3000/sse").unwrap();
        assert_eq!(t.addr, "[::1]:3000".parse().unwrap());
        let t = parse_url("http://localhost/").unwrap();
        assert_eq!(
            (t.addr, t.host.as_str()),
            ("127.0.0.1:80".parse().unwrap(), "localhost")
        );
        let t = parse_url("http://127.9.9.9:1?q").unwrap();
        assert_eq!(t.path, "/?q");
        let t = parse_url("http://127.0.0.1:1/a#frag").unwrap();
        assert_eq!(t.path, "/a");
        // https:// is TLS, on 443 unless a port is given; a non-loopback host is refused alike.
        let t = parse_url("https://localhost/sse").unwrap();
        assert_eq!((t.addr, t.tls), ("127.0.0.1:443".parse().unwrap(), true));
        assert!(!parse_url("http://localhost/").unwrap().tls);
        for bad in [
            "https://10.0.0.1/",
            "ftp://127.0.0.1/",
            "127.0.0.1:3000/sse",
            "http://10.0.0.1:3000/sse",
            "http://8.8.8.8/",
            "http://[2001:db8::1]:80/",
            "http://example.com/sse",
            "http://127.0.0.1.nip.io/",
            "http://0.0.0.0:3000/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://[::1/",
            "http://u@127.0.0.1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let e = parse_url("http://192.168.1.10:3000/sse").unwrap_err();
        assert!(e.contains("only targets this machine"), "{e}");
    }
}
