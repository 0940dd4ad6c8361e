//! What a publisher and a subscriber send, read and checked: `application/x-www-form-urlencoded`
//! and JSON publish bodies, and the query of `GET /sse?topic=...`. Every refusal names the
//! problem in one line, for the `400` body.
//!
//! **Invariant:** no IO; nothing here panics or allocates more than a small multiple of its
//! (already bounded) input.

use crate::hub::history::{Publish, MAX_ID_BYTES, MAX_TOPICS, MAX_TOPIC_BYTES, MAX_TYPE_BYTES};
use crate::hub::selector::Kind;

/// A publish refused: the status class and the line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `400` with this text.
    Invalid(String),
    /// `415`: neither form nor JSON.
    MediaType,
    /// A field over its length limit (a topic, an `id`, a `type`): `413` on Mercure's URL
    /// (draft-08: "Requests exceeding any such limit MUST be rejected with a 413"), `400` on
    /// `/publish` and in a subscription's query, with this text.
    TooLong(String),
}

fn invalid(why: impl Into<String>) -> Refusal {
    Refusal::Invalid(why.into())
}

/// What a `+` means to [`percent_decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    /// A `+` (in a path).
    Literal,
    /// A space (in a query or form body).
    Space,
}

/// Decodes `%XX` escapes (and `+` as a space in forms); `None` for a bad escape.
pub fn percent_decode(s: &[u8], plus: Plus) -> Option<Vec<u8>> {
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
            b'+' if plus == Plus::Space => out.push(b' '),
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
            let k = String::from_utf8(percent_decode(k, Plus::Space)?).ok()?;
            let v = String::from_utf8(percent_decode(v, Plus::Space)?).ok()?;
            Some((k, v))
        })
        .collect()
}

/// The event type the server sends itself when a subscriber has missed events; no publisher
/// may use it (it would forge the gap signal).
pub const RESERVED_TYPE: &str = "reset";

/// The event type of the marker a subscriber that asked for them (`markPrivate=1`) gets just
/// before each private event, its data the event's id; no publisher may use it either (it
/// would mark another event private).
pub const PRIVATE_MARK_TYPE: &str = "private";

/// One topic name, for publishing or subscribing: non-empty, at most [`MAX_TOPIC_BYTES`] (a
/// subscription event's, [`crate::hub::presence::MAX_EVENT_TOPIC_BYTES`]), no control
/// character (C0, DEL, C1 such as U+0085).
pub fn check_topic(t: &str) -> Result<(), Refusal> {
    if t.is_empty() {
        return Err(invalid("empty topic"));
    }
    // A subscription event's topic holds a whole percent-encoded selector.
    let max = if crate::hub::presence::is_presence_topic(t) {
        crate::hub::presence::MAX_EVENT_TOPIC_BYTES
    } else {
        MAX_TOPIC_BYTES
    };
    if t.len() > max {
        return Err(Refusal::TooLong(format!("topic longer than {max} bytes")));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid("control character in a topic"));
    }
    Ok(())
}

/// `U+001B`: how a refusal names a character it will not echo.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// The retry field's text: ASCII digits only (what the WHATWG event-stream format accepts for
/// `retry:`), fitting in 64 bits.
pub fn parse_retry(v: &str) -> Result<u64, Refusal> {
    crate::util::number::parse_u64(v.as_bytes()).ok_or_else(|| invalid("retry must be digits"))
}

/// **The one rule for an event's fields**, wherever the event comes from: a publish (form or
/// JSON) and an entry read back from the shared store (Redis) are checked by this function and
/// nothing else, so an event accepted at one end is never dropped at the other.
///
/// - `topic`: 1 to [`MAX_TOPICS`] *distinct* names (a repeated name counts once and is kept
///   once, in first-seen order), each one [`check_topic`]; `*` is for subscribing only.
/// - `type` (optional): 1 to [`MAX_TYPE_BYTES`] bytes, no control character at all (not only
///   CR and LF, which would split the `event:` line, but NUL, ESC, DEL, U+0085 and the rest of
///   C0 and C1 too: a type is a name a page passes to `addEventListener`); not
///   [`RESERVED_TYPE`].
/// - `id` (optional, the publisher's name for the event; without it the hub assigns one):
///   [`check_id`].
/// - `retry` (optional): any 64-bit count of milliseconds (read by [`parse_retry`]).
/// - `data`: any UTF-8 text, including NUL and other control characters, which the WHATWG
///   event-stream format carries as they are; CR, LF and CRLF are line breaks and reach the
///   subscriber as LF (the event is sent as one `data:` line per line).
///
/// Each refusal is one line that names the field.
pub fn check_event(p: &mut Publish) -> Result<(), Refusal> {
    if p.topics.is_empty() {
        return Err(invalid("missing topic"));
    }
    let mut distinct: Vec<String> = Vec::with_capacity(p.topics.len().min(MAX_TOPICS));
    for t in p.topics.drain(..) {
        check_topic(&t)?;
        if t == "*" {
            return Err(invalid("topic * is for subscribing; publish to a name"));
        }
        if distinct.contains(&t) {
            continue;
        }
        if distinct.len() == MAX_TOPICS {
            return Err(invalid(format!("more than {MAX_TOPICS} topics")));
        }
        distinct.push(t);
    }
    p.topics = distinct;
    if let Some(id) = &p.id {
        check_id(id)?;
    }
    if let Some(t) = &p.event_type {
        if t.len() > MAX_TYPE_BYTES {
            return Err(Refusal::TooLong(format!(
                "type longer than {MAX_TYPE_BYTES} bytes"
            )));
        }
        if t.is_empty() || t.contains(['\r', '\n']) {
            return Err(invalid("type must be one non-empty line"));
        }
        if let Some(c) = t.chars().find(|c| c.is_control()) {
            return Err(invalid(format!(
                "type must not contain a control character ({})",
                code_point(c)
            )));
        }
        if t == RESERVED_TYPE {
            return Err(invalid(format!(
                "type {RESERVED_TYPE:?} is reserved: the server sends it when events were missed"
            )));
        }
        if t == PRIVATE_MARK_TYPE {
            return Err(invalid(format!(
                "type {PRIVATE_MARK_TYPE:?} is reserved: the server sends it to mark private events"
            )));
        }
    }
    Ok(())
}

/// The value a subscriber's `Last-Event-ID` names when it wants all the retained history
/// (Mercure's reserved id); no publisher may name an event so. Defined beside the history,
/// which reads it.
pub use crate::hub::history::EARLIEST;

/// A publisher's event id, as Mercure's spec bounds it and so that it comes back intact as a
/// resume: 1 to [`MAX_ID_BYTES`] bytes; not starting with `#` (the spec keeps those for the
/// hub); no control character at all (the spec forbids CR, LF and NUL, which would cut the
/// `id:` line or make clients drop it; the rest of C0, DEL and C1 could not come back in a
/// `Last-Event-ID` header field); no space at either end (a header field's value is
/// trimmed, so the resume would name another id); not the reserved `earliest`. Whether the
/// id is free (unique within the retained history, not of the hub's own form) is the hub's
/// to decide, not this function's.
pub fn check_id(id: &str) -> Result<(), Refusal> {
    if id.is_empty() {
        return Err(invalid("id must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Refusal::TooLong(format!(
            "id longer than {MAX_ID_BYTES} bytes"
        )));
    }
    if id.starts_with('#') {
        return Err(invalid("id must not start with #"));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "id must not contain a control character ({})",
            code_point(c)
        )));
    }
    if id.starts_with(' ') || id.ends_with(' ') {
        return Err(invalid("id must not start or end with a space"));
    }
    if id == EARLIEST {
        return Err(invalid(format!(
            "id {EARLIEST:?} is reserved: it asks for the whole history"
        )));
    }
    Ok(())
}

/// A subscription's selectors and resume id, from the query of `GET /sse?topic=` or of `GET
/// /.well-known/mercure`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Each selector with how it is read (`topic=`: [`Kind::Template`]; `match=`:
    /// [`Kind::Exact`]; `match_urlpattern=`: [`Kind::UrlPattern`]), distinct, in the order
    /// given.
    pub selectors: Vec<(Kind, String)>,
    pub last_event_id: Option<String>,
    /// A subscriber token given in the query (`authorization=`, draft-07; `access_token=`,
    /// draft-08), for cross-origin EventSource.
    pub authorization: Option<String>,
    /// `markPrivate=1`: each private event is preceded by a `private` event naming its id
    /// (EventSource shows no other field a marker could ride on).
    pub mark_private: bool,
}

impl Subscription {
    /// Adds one selector, checked: a topic's rules, a template not too complex, at most
    /// [`MAX_TOPICS`] distinct ones (a repeat is kept once, as for a publish).
    fn add(&mut self, kind: Kind, v: String) -> Result<(), Refusal> {
        check_topic(&v)?;
        // A URI Template selects what it matches (src/hub/selector.rs); one too complex to
        // compile is refused here rather than read as a plain name.
        if kind == Kind::Template && v.matches('{').count() > crate::hub::selector::MAX_EXPRESSIONS
        {
            return Err(invalid(format!(
                "more than {} expressions in a URI template",
                crate::hub::selector::MAX_EXPRESSIONS
            )));
        }
        if self.selectors.iter().any(|(k, t)| *k == kind && *t == v) {
            return Ok(());
        }
        if self.selectors.len() == MAX_TOPICS {
            return Err(invalid(format!("more than {MAX_TOPICS} topics")));
        }
        self.selectors.push((kind, v));
        Ok(())
    }
}

/// `GET /sse`: reads `topic` (repeatable) and `lastEventID` from a query string; other
/// parameters are ignored (as they always were here). `Ok(None)` when it names no topic (the
/// seed's clock stream).
pub fn subscription(query: &str) -> Result<Option<Subscription>, Refusal> {
    let pairs = pairs(query.as_bytes()).ok_or_else(|| invalid("bad percent-encoding"))?;
    let mut sub = Subscription::default();
    let mut any_topic = false;
    for (k, v) in pairs {
        match k.as_str() {
            "topic" => {
                any_topic = true;
                sub.add(Kind::Template, v)?;
            }
            "lastEventID" | "last-event-id" | "Last-Event-ID" => sub.last_event_id = Some(v),
            "authorization" => sub.authorization = Some(v),
            "markPrivate" => sub.mark_private = v == "1",
            _ => {}
        }
    }
    Ok(any_topic.then_some(sub))
}

/// The matcher type a `match…` query parameter names, by the spellings of both drafts and of
/// Mercure's hub (`match`, `matchExact`, `match_exact`, `matchURLPattern`, `match_urlpattern`,
/// `matchURITemplate`, `match_uritemplate`); `None` for any other name.
fn matcher_kind(name: &str) -> Option<Kind> {
    match name {
        "match" | "matchExact" | "match_exact" => Some(Kind::Exact),
        "matchURLPattern" | "match_urlpattern" => Some(Kind::UrlPattern),
        "matchURITemplate" | "match_uritemplate" => Some(Kind::Template),
        _ => None,
    }
}

/// `GET /.well-known/mercure`: the Mercure hub's subscription query, strictly: selectors of
/// both drafts (`topic=`, `match=`, `match_urlpattern=` and the other spellings of
/// `matcher_kind`), the resume id (`lastEventID`, `last_event_id`, `Last-Event-ID`), a token
/// (`authorization`, `access_token`) and `markPrivate`. Any other parameter is refused (a
/// misspelt matcher would otherwise subscribe to less than asked, silently), and so is a
/// query without any selector.
pub fn mercure_subscription(query: &str) -> Result<Subscription, Refusal> {
    let pairs = pairs(query.as_bytes()).ok_or_else(|| invalid("bad percent-encoding"))?;
    let mut sub = Subscription::default();
    for (k, v) in pairs {
        if k == "topic" {
            sub.add(Kind::Template, v)?;
            continue;
        }
        if let Some(kind) = matcher_kind(&k) {
            sub.add(kind, v)?;
            continue;
        }
        match k.as_str() {
            "lastEventID" | "last_event_id" | "last-event-id" | "Last-Event-ID" => {
                sub.last_event_id = Some(v)
            }
            "authorization" | "access_token" => sub.authorization = Some(v),
            "markPrivate" => sub.mark_private = v == "1",
            _ => {
                let shown: String = k.chars().take(64).collect();
                let why = if k.to_ascii_lowercase().starts_with("match") {
                    format!(
                        "unknown matcher type {shown:?}: use match= (exact) or match_urlpattern= (URL Pattern), or topic= (exact or URI Template)"
                    )
                } else {
                    format!(
                        "unknown query parameter {shown:?}: a subscription takes topic=, match=, match_urlpattern=, lastEventID=, authorization= or access_token="
                    )
                };
                return Err(invalid(why));
            }
        }
    }
    if sub.selectors.is_empty() {
        return Err(invalid(
            "no topic selector: give topic=, match= or match_urlpattern= at least once",
        ));
    }
    Ok(sub)
}

/// The media types a publish may be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Form,
    Json,
}

/// A publish's media type from its `Content-Type` (parameters ignored, case-insensitive).
pub fn media(content_type: Option<&[u8]>) -> Result<Media, Refusal> {
    let media = content_type
        .and_then(|v| v.split(|&b| b == b';').next())
        .map(|m| m.trim_ascii().to_ascii_lowercase());
    match media.as_deref() {
        Some(b"application/x-www-form-urlencoded") => Ok(Media::Form),
        Some(b"application/json") => Ok(Media::Json),
        _ => Err(Refusal::MediaType),
    }
}

/// Which publish endpoint's form rules a body is read by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `POST /publish`, as it always was: `data` required, `private` an on/off value
    /// (`private=off` is public), fields it does not know ignored (clients written for it
    /// keep working), form or JSON.
    Publish,
    /// `POST /.well-known/mercure`, as Mercure's spec says: form only, `data` optional (an
    /// empty `data:` line without it), `private` private by its presence whatever its value,
    /// and any field the spec does not define refused, naming it.
    Mercure,
}

/// A publish body, by its media type, read by `/publish`'s rules.
pub fn publish(content_type: Option<&[u8]>, body: &[u8]) -> Result<Publish, Refusal> {
    publish_as(Dialect::Publish, content_type, body)
}

/// A publish body, by its media type and the endpoint's [`Dialect`].
pub fn publish_as(
    dialect: Dialect,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<Publish, Refusal> {
    let mut p = match (media(content_type)?, dialect) {
        (Media::Form, _) => form(body, dialect)?,
        (Media::Json, Dialect::Publish) => json(body)?,
        (Media::Json, Dialect::Mercure) => return Err(Refusal::MediaType),
    };
    check_event(&mut p)?;
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

/// The fields of Mercure's publish form (draft-07 and draft-08 alike).
const MERCURE_FIELDS: &str = "topic, data, private, id, type, retry";

fn form(body: &[u8], dialect: Dialect) -> Result<Publish, Refusal> {
    let pairs = pairs(body).ok_or_else(|| invalid("bad percent-encoding or non-UTF-8 field"))?;
    let mercure = dialect == Dialect::Mercure;
    let mut p = Publish::default();
    let mut data = None;
    for (k, v) in pairs {
        match k.as_str() {
            "topic" => p.topics.push(v),
            "data" => data = Some(v),
            "type" => p.event_type = Some(v),
            // Mercure: "if this name is set, the update MUST NOT be dispatched to subscribers
            // not authorized", whatever its value.
            "private" if mercure => p.private = true,
            "private" => {
                p.private = flag(&v).ok_or_else(|| invalid("private must be on or off"))?
            }
            "retry" => p.retry = Some(parse_retry(&v)?),
            "id" => p.id = Some(v),
            _ if mercure => {
                let shown: String = k.chars().take(64).collect();
                return Err(invalid(format!(
                    "unknown field {shown:?}: a Mercure publish takes {MERCURE_FIELDS}"
                )));
            }
            _ => {}
        }
    }
    p.data = match (data, dialect) {
        (Some(d), _) => d,
        (None, Dialect::Mercure) => String::new(),
        (None, Dialect::Publish) => return Err(invalid("missing data")),
    };
    Ok(p)
}

/// A JSON publish: an object with `topic` (a string or an array of strings), `data` (a string
/// is sent as its text; any other JSON value as its own text, byte for byte: key order,
/// duplicate keys, `1.10` and integers past 2^53 are kept, never re-serialized), and optional
/// `type`, `private`, `retry`, `id`.
fn json(body: &[u8]) -> Result<Publish, Refusal> {
    use serde_json::value::RawValue;
    use serde_json::Value;
    let bad = |e: serde_json::Error| invalid(format!("bad JSON: {e}"));
    let raw: &RawValue = serde_json::from_slice(body).map_err(bad)?;
    if !raw.get().starts_with('{') {
        return Err(invalid("JSON body must be an object"));
    }
    let obj: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(bad)?;
    // The small fields are read as values; `data` stays the text it was sent as.
    let value = |k: &str| -> Result<Option<Value>, Refusal> {
        obj.get(k)
            .map(|r| serde_json::from_str(r.get()).map_err(bad))
            .transpose()
    };
    let mut p = Publish::default();
    match value("topic")? {
        Some(Value::String(t)) => p.topics.push(t),
        Some(Value::Array(ts)) => {
            for t in ts {
                let Value::String(t) = t else {
                    return Err(invalid("topic must be a string or an array of strings"));
                };
                p.topics.push(t);
            }
        }
        Some(_) => return Err(invalid("topic must be a string or an array of strings")),
        None => return Err(invalid("missing topic")),
    }
    p.data = match obj.get("data") {
        Some(r) if r.get().starts_with('"') => serde_json::from_str(r.get()).map_err(bad)?,
        Some(r) => r.get().to_owned(),
        None => return Err(invalid("missing data")),
    };
    match value("type")? {
        Some(Value::String(t)) => p.event_type = Some(t),
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("type must be a string")),
    }
    match value("private")? {
        Some(Value::Bool(b)) => p.private = b,
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("private must be true or false")),
    }
    match value("id")? {
        Some(Value::String(id)) => p.id = Some(id),
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("id must be a string")),
    }
    match value("retry")? {
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

    /// A publisher's id, form and JSON alike: kept as sent when the spec allows it, else one
    /// line naming the rule.
    #[test]
    fn publisher_ids() {
        let id = |body: &[u8], media: &[u8]| publish(Some(media), body).map(|p| p.id);
        let json = b"application/json".as_slice();
        assert_eq!(id(b"topic=a&data=x", FORM), Ok(None));
        assert_eq!(
            id(b"topic=a&data=x&id=urn%3Auuid%3A1", FORM),
            Ok(Some("urn:uuid:1".into()))
        );
        assert_eq!(
            id(br#"{"topic":"a","data":"x","id":"caf\u00e9 #1"}"#, json),
            Ok(Some("café #1".into()))
        );
        assert_eq!(id(br#"{"topic":"a","data":"x","id":null}"#, json), Ok(None));
        assert_eq!(
            id(br#"{"topic":"a","data":"x","id":7}"#, json),
            Err(invalid("id must be a string"))
        );
        let long = format!("topic=a&data=x&id={}", "i".repeat(MAX_ID_BYTES));
        assert!(id(long.as_bytes(), FORM).unwrap().is_some());
        let cases: &[(&[u8], &str)] = &[
            (b"id=", "id must not be empty"),
            (b"id=%23frag", "id must not start with #"),
            (
                b"id=a%0Ab",
                "id must not contain a control character (U+000A)",
            ),
            (
                b"id=a%0Db",
                "id must not contain a control character (U+000D)",
            ),
            (
                b"id=a%00b",
                "id must not contain a control character (U+0000)",
            ),
            (
                b"id=a%1Bb",
                "id must not contain a control character (U+001B)",
            ),
            (
                b"id=a%C2%85",
                "id must not contain a control character (U+0085)",
            ),
            (b"id=+a", "id must not start or end with a space"),
            (b"id=a+", "id must not start or end with a space"),
            (
                b"id=earliest",
                "id \"earliest\" is reserved: it asks for the whole history",
            ),
        ];
        for (field, why) in cases {
            let body = [b"topic=a&data=x&".as_slice(), field].concat();
            assert_eq!(id(&body, FORM), Err(invalid(*why)), "{field:?}");
        }
        let too_long = format!("topic=a&data=x&id={}", "i".repeat(MAX_ID_BYTES + 1));
        assert_eq!(
            id(too_long.as_bytes(), FORM),
            Err(Refusal::TooLong(format!(
                "id longer than {MAX_ID_BYTES} bytes"
            )))
        );
        // A `#` inside is fine; only a leading one is the hub's.
        assert!(id(b"topic=a&data=x&id=a%23b", FORM).unwrap().is_some());
    }

    #[test]
    fn subscriptions() {
        assert_eq!(subscription("").unwrap(), None);
        assert_eq!(subscription("x=1").unwrap(), None);
        let s = subscription("topic=a&topic=b%2Fc&topic=a&lastEventID=ep-3")
            .unwrap()
            .unwrap();
        let t = |x: &str| (Kind::Template, x.to_string());
        assert_eq!(s.selectors, [t("a"), t("b/c")]);
        assert_eq!(s.last_event_id.as_deref(), Some("ep-3"));
        assert!(subscription("topic=").is_err());
        let many: String = (0..33).map(|i| format!("topic=t{i}&")).collect();
        assert!(subscription(&many).is_err());
        assert!(subscription("topic=%").is_err());
    }

    #[test]
    fn one_rule_for_every_field() {
        // A type is a name: no control character of any kind (C0, DEL, C1), not the reserved one.
        for ty in ["a\0b", "a\x1bb", "a\u{85}b", "a\x7fb", "a\tb"] {
            let mut p = Publish {
                topics: vec!["a".into()],
                event_type: Some(ty.into()),
                ..Publish::default()
            };
            let Err(Refusal::Invalid(why)) = check_event(&mut p) else {
                panic!("{ty:?} accepted");
            };
            assert!(
                why.starts_with("type must not contain a control character (U+"),
                "{why}"
            );
        }
        let mut p = Publish {
            topics: vec!["a".into()],
            event_type: Some("reset".into()),
            ..Publish::default()
        };
        assert_eq!(
            check_event(&mut p),
            Err(invalid(
                "type \"reset\" is reserved: the server sends it when events were missed"
            ))
        );
        // The same rule whatever the body's form.
        for (ct, body) in [
            (FORM, &b"topic=a&data=x&type=reset"[..]),
            (
                b"application/json",
                br#"{"topic":"a","data":"x","type":"reset"}"#,
            ),
            (FORM, b"topic=a&data=x&type=a%1Bb"),
            (
                b"application/json",
                br#"{"topic":"a","data":"x","type":"a\u0000b"}"#,
            ),
            (
                b"application/json",
                br#"{"topic":"a","data":"x","type":"a\u0085b"}"#,
            ),
            (b"application/json", br#"{"topic":["a","*"],"data":"x"}"#),
        ] {
            let Err(Refusal::Invalid(why)) = publish(Some(ct), body) else {
                panic!("{body:?} accepted");
            };
            assert!(why.contains("type") || why.contains("topic"), "{why}");
        }
        // Other types are names like any other ("Reset" is not "reset").
        for ty in ["Reset", "resets", "é", "a b"] {
            let mut p = Publish {
                topics: vec!["a".into()],
                event_type: Some(ty.into()),
                ..Publish::default()
            };
            assert_eq!(check_event(&mut p), Ok(()), "{ty:?}");
        }
        // Data carries any text (NUL and other controls too); line breaks split its lines.
        let p = publish(Some(FORM), b"topic=a&data=x%00y%1Bz%C2%85").unwrap();
        assert_eq!(p.data, "x\0y\x1bz\u{85}");
        // Distinct topics count: 32 distinct plus a repeat, or 40 copies of one, are kept once.
        let mut body: String = (0..32).map(|i| format!("topic=t{i}&")).collect();
        body += "topic=t0&data=x";
        let p = publish(Some(FORM), body.as_bytes()).unwrap();
        assert_eq!(p.topics.len(), 32);
        assert_eq!(p.topics[0], "t0");
        let body = "topic=a&".repeat(40) + "topic=b&data=x";
        assert_eq!(
            publish(Some(FORM), body.as_bytes()).unwrap().topics,
            ["a", "b"]
        );
        let mut sub: String = (0..32).map(|i| format!("topic=t{i}&")).collect();
        sub += "topic=t5";
        assert_eq!(subscription(&sub).unwrap().unwrap().selectors.len(), 32);
        assert_eq!(
            subscription(&"topic=a&".repeat(40))
                .unwrap()
                .unwrap()
                .selectors,
            [(Kind::Template, "a".to_string())]
        );
    }

    #[test]
    fn json_data_is_sent_as_its_own_text() {
        let j = Some(&b"application/json"[..]);
        for data in [
            r#"{"z":1,"a":2}"#,
            r#"{"price":1.10,"big":123456789012345678901234567890}"#,
            r#"{"k":1,"k":2}"#,
            r#"[ 1 , 2.50 ,{"b":null,"a":[]} ]"#,
            "18446744073709551616",
            "1.10",
            "true",
            "null",
        ] {
            let body = format!(r#"{{"topic":"a","data":{data},"type":"t"}}"#);
            assert_eq!(publish(j, body.as_bytes()).unwrap().data, data);
        }
        let p = publish(j, br#"{"data" : "a\"b\u00e9" , "topic":"a"}"#).unwrap();
        assert_eq!(p.data, "a\"b\u{e9}");
    }
}
