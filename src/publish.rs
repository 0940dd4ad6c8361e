//! What a publisher and a subscriber send, read and checked: `application/x-www-form-urlencoded`
//! and JSON publish bodies, and the query of `GET /sse?topic=...`. Every refusal names the
//! problem in one line, for the `400` body.
//!
//! **Invariant:** no IO; nothing here panics or allocates more than a small multiple of its
//! (already bounded) input.

use crate::hub::{Publish, MAX_TOPICS, MAX_TOPIC_BYTES, MAX_TYPE_BYTES};

/// A publish refused: the status class and the line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `400` with this text.
    Invalid(String),
    /// `415`: neither form nor JSON.
    MediaType,
}

fn invalid(why: impl Into<String>) -> Refusal {
    Refusal::Invalid(why.into())
}

/// Decodes `%XX` escapes (and `+` as a space in forms); `None` for a bad escape.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// The `name=value` pairs of a query or form body, decoded; `None` if an escape is bad or a
/// value is not UTF-8.
pub fn pairs(s: &[u8]) -> Option<Vec<(String, String)>> {
    s.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            let k = String::from_utf8(percent_decode(k, true)?).ok()?;
            let v = String::from_utf8(percent_decode(v, true)?).ok()?;
            Some((k, v))
        })
        .collect()
}

fn check_topic(t: &str) -> Result<(), Refusal> {
    if t.is_empty() {
        return Err(invalid("empty topic"));
    }
    if t.len() > MAX_TOPIC_BYTES {
        return Err(invalid(format!(
            "topic longer than {MAX_TOPIC_BYTES} bytes"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid("control character in a topic"));
    }
    Ok(())
}

/// A subscription's topics and resume id from the query of `GET /sse`; `Ok(None)` when it
/// names no topic (the seed's clock stream).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub last_event_id: Option<String>,
    /// A subscriber token given as `authorization=` (for cross-origin EventSource).
    pub authorization: Option<String>,
}

/// Reads `topic` (repeatable) and `lastEventID` from a query string.
pub fn subscription(query: &str) -> Result<Option<Subscription>, Refusal> {
    let pairs = pairs(query.as_bytes()).ok_or_else(|| invalid("bad percent-encoding"))?;
    let mut sub = Subscription::default();
    let mut any_topic = false;
    for (k, v) in pairs {
        match k.as_str() {
            "topic" => {
                any_topic = true;
                check_topic(&v)?;
                if sub.topics.len() == MAX_TOPICS {
                    return Err(invalid(format!("more than {MAX_TOPICS} topics")));
                }
                if !sub.topics.contains(&v) {
                    sub.topics.push(v);
                }
            }
            "lastEventID" | "last-event-id" | "Last-Event-ID" => sub.last_event_id = Some(v),
            "authorization" => sub.authorization = Some(v),
            _ => {}
        }
    }
    Ok(any_topic.then_some(sub))
}

/// A publish body, by its media type.
pub fn publish(content_type: Option<&[u8]>, body: &[u8]) -> Result<Publish, Refusal> {
    let media = content_type
        .and_then(|v| v.split(|&b| b == b';').next())
        .map(|m| m.trim_ascii().to_ascii_lowercase());
    let p = match media.as_deref() {
        Some(b"application/x-www-form-urlencoded") => form(body)?,
        Some(b"application/json") => json(body)?,
        _ => return Err(Refusal::MediaType),
    };
    if p.topics.is_empty() {
        return Err(invalid("missing topic"));
    }
    if p.topics.len() > MAX_TOPICS {
        return Err(invalid(format!("more than {MAX_TOPICS} topics")));
    }
    for t in &p.topics {
        check_topic(t)?;
        if t == "*" {
            return Err(invalid("topic * is for subscribing; publish to a name"));
        }
    }
    if let Some(t) = &p.event_type {
        if t.len() > MAX_TYPE_BYTES {
            return Err(invalid(format!("type longer than {MAX_TYPE_BYTES} bytes")));
        }
        if t.is_empty() || t.contains(['\r', '\n']) {
            return Err(invalid("type must be one non-empty line"));
        }
    }
    Ok(p)
}

/// A form's on/off value (Mercure sends `private=on`).
fn flag(v: &str) -> Option<bool> {
    match v {
        "on" | "true" | "1" | "yes" | "" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn form(body: &[u8]) -> Result<Publish, Refusal> {
    let pairs = pairs(body).ok_or_else(|| invalid("bad percent-encoding or non-UTF-8 field"))?;
    let mut p = Publish::default();
    let mut data = None;
    for (k, v) in pairs {
        match k.as_str() {
            "topic" => p.topics.push(v),
            "data" => data = Some(v),
            "type" => p.event_type = Some(v),
            "private" => {
                p.private = flag(&v).ok_or_else(|| invalid("private must be on or off"))?
            }
            "retry" => {
                p.retry = Some(
                    crate::http::parse_u64(v.as_bytes())
                        .ok_or_else(|| invalid("retry must be digits"))?,
                )
            }
            _ => {}
        }
    }
    p.data = data.ok_or_else(|| invalid("missing data"))?;
    Ok(p)
}

fn json(body: &[u8]) -> Result<Publish, Refusal> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("bad JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(invalid("JSON body must be an object"));
    };
    let mut p = Publish::default();
    match obj.get("topic") {
        Some(Value::String(t)) => p.topics.push(t.clone()),
        Some(Value::Array(ts)) => {
            for t in ts {
                let Value::String(t) = t else {
                    return Err(invalid("topic must be a string or an array of strings"));
                };
                p.topics.push(t.clone());
            }
        }
        Some(_) => return Err(invalid("topic must be a string or an array of strings")),
        None => return Err(invalid("missing topic")),
    }
    p.data = match obj.get("data") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err(invalid("missing data")),
    };
    match obj.get("type") {
        Some(Value::String(t)) => p.event_type = Some(t.clone()),
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("type must be a string")),
    }
    match obj.get("private") {
        Some(Value::Bool(b)) => p.private = *b,
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("private must be true or false")),
    }
    match obj.get("retry") {
        Some(Value::Number(n)) => {
            p.retry = Some(n.as_u64().ok_or_else(|| invalid("retry must be digits"))?)
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("retry must be digits")),
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"application/x-www-form-urlencoded";

    #[test]
    fn form_fields_are_decoded() {
        let p = publish(
            Some(FORM),
            b"topic=chat%2F42&topic=news&data=hello+world%0Aline+2&type=token&retry=1500",
        )
        .unwrap();
        assert_eq!(p.topics, ["chat/42", "news"]);
        assert_eq!(p.data, "hello world\nline 2");
        assert_eq!(p.event_type.as_deref(), Some("token"));
        assert_eq!(p.retry, Some(1500));
        assert!(!p.private);
        assert!(
            publish(Some(FORM), b"topic=a&data=x&private=on")
                .unwrap()
                .private
        );
        assert!(
            publish(
                Some(b"application/json"),
                br#"{"topic":"a","data":"x","private":true}"#
            )
            .unwrap()
            .private
        );
        let p = publish(
            Some(b"Application/X-WWW-Form-Urlencoded; charset=utf-8"),
            b"topic=a&data=",
        )
        .unwrap();
        assert_eq!(p.data, "");
    }

    #[test]
    fn json_bodies() {
        let j = Some(&b"application/json"[..]);
        let p = publish(
            j,
            br#"{"topic":["a","b"],"data":{"x":[1,2]},"type":"t","retry":5}"#,
        )
        .unwrap();
        assert_eq!(p.topics, ["a", "b"]);
        assert_eq!(p.data, r#"{"x":[1,2]}"#);
        let p = publish(j, br#"{"topic":"a","data":"multi\nline"}"#).unwrap();
        assert_eq!(p.data, "multi\nline");
        for bad in [
            &br#"{"data":"x"}"#[..],
            br#"{"topic":"a"}"#,
            br#"{"topic":1,"data":"x"}"#,
            br#"{"topic":"a","data":"x","retry":-1}"#,
            br#"[1]"#,
            b"{",
        ] {
            assert!(
                matches!(publish(j, bad), Err(Refusal::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_publishes_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"data=x", "missing topic"),
            (b"topic=a", "missing data"),
            (b"topic=&data=x", "empty topic"),
            (b"topic=a%0Ab&data=x", "control character in a topic"),
            (
                b"topic=a&data=x&type=a%0Ab",
                "type must be one non-empty line",
            ),
            (b"topic=a&data=x&retry=soon", "retry must be digits"),
            (
                b"topic=a&data=%FF",
                "bad percent-encoding or non-UTF-8 field",
            ),
            (
                b"topic=a&data=%G1",
                "bad percent-encoding or non-UTF-8 field",
            ),
        ];
        for (body, why) in cases {
            assert_eq!(publish(Some(FORM), body), Err(invalid(*why)), "{body:?}");
        }
        let long = format!("topic={}&data=x", "a".repeat(257));
        assert!(publish(Some(FORM), long.as_bytes()).is_err());
        let many: String = (0..33).map(|i| format!("topic=t{i}&")).collect::<String>() + "data=x";
        assert!(publish(Some(FORM), many.as_bytes()).is_err());
        assert_eq!(publish(Some(b"text/plain"), b"x"), Err(Refusal::MediaType));
        assert_eq!(publish(None, b"x"), Err(Refusal::MediaType));
    }

    #[test]
    fn subscriptions() {
        assert_eq!(subscription("").unwrap(), None);
        assert_eq!(subscription("x=1").unwrap(), None);
        let s = subscription("topic=a&topic=b%2Fc&topic=a&lastEventID=ep-3")
            .unwrap()
            .unwrap();
        assert_eq!(s.topics, ["a", "b/c"]);
        assert_eq!(s.last_event_id.as_deref(), Some("ep-3"));
        assert!(subscription("topic=").is_err());
        let many: String = (0..33).map(|i| format!("topic=t{i}&")).collect();
        assert!(subscription(&many).is_err());
        assert!(subscription("topic=%").is_err());
    }
}
