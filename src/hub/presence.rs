//! Presence (`--subscriptions`, Mercure's "subscription events" and "subscriptions API"),
//! sans-IO: the topic and the JSON-LD document of a subscription event, the subscriber's id,
//! and the registry of active subscriptions the API answers from.
//!
//! - A subscription event is an ordinary private event on
//!   `/.well-known/mercure/subscriptions/{topic}/{subscriber}` (each variable percent-encoded
//!   once, as RFC 6570's simple expansion does: everything but RFC 3986's unreserved
//!   characters), one per selector of a subscription, published when its stream starts
//!   (`"active":true`) and ends (`"active":false`), with the token's payload for that selector.
//!   It goes through the hub like any publish (its id, the history, the shared store, the private
//!   rule), so only a token whose subscribe claims select that topic ever reads it.
//! - The subscriber id is `urn:uuid:` and a version-4-shaped UUID made of this instance's random
//!   64-bit tag (drawn at start) and the loop's number and its count of subscriptions (handed in
//!   by the loop: no clock, no randomness here): unique within a run and, with odds of 2^-60
//!   per pair of instances, across instances and restarts. Its first 18 characters name the
//!   instance ([`instance_of`]), which is how a dead instance's subscribers are found.
//! - The registry is the fold of the subscription events the hub stored, in the hub's order
//!   (a `true` adds, a `false` removes), kept under the history's lock: the API's list and
//!   its `lastEventID` are one snapshot, so a client that fetches the list, then subscribes
//!   from `lastEventID`, misses nothing. With `--redis` every instance folds every instance's
//!   events as it reads them from the shared store, so each one's API shows them all.
//!
//! **Invariant:** no IO and no clock; nothing here allocates beyond the document it writes,
//! and an event's data that is not a subscription document is ignored, never a panic.

use crate::hub::publish::Publish;
use std::collections::BTreeMap;

/// The path under which subscription events are published and the API answers.
pub const PREFIX: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context Mercure's documents name.
pub const CONTEXT: &str = "https://mercure.rocks/";
/// The longest topic of a subscription event: a selector of up to 256 bytes is at most 768
/// once percent-encoded, with the prefix and the subscriber's 49.
pub const MAX_EVENT_TOPIC_BYTES: usize = 1024;

/// Whether `topic` is in the presence namespace (only the hub publishes there).
pub fn is_presence_topic(topic: &str) -> bool {
    topic
        .strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Appends `s` percent-encoded as RFC 6570's simple string expansion does: RFC 3986's
/// unreserved characters as they are, every other byte as `%XX` (upper case).
pub fn escape_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The topic (and `id`) of the subscription of `subscriber` to `topic`.
pub fn subscription_id(topic: &str, subscriber: &str) -> String {
    let mut id = String::with_capacity(PREFIX.len() + topic.len() * 3 + 60);
    id.push_str(PREFIX);
    id.push('/');
    escape_into(&mut id, topic);
    id.push('/');
    escape_into(&mut id, subscriber);
    id
}

/// A subscriber's id: `urn:uuid:` and a UUID (version 4's shape) of the instance's tag and
/// the loop's number and count. See the module docs.
pub fn subscriber_id(instance: u64, loop_id: usize, n: u64) -> String {
    let hi = (instance & !0xf000) | 0x4000;
    let lo = ((loop_id as u64 & 0x3fff) << 48 | (n & 0xffff_ffff_ffff)) | 0x8000_0000_0000_0000;
    format!(
        "urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// The instance part of a subscriber id made by [`subscriber_id`] with `instance`.
pub fn instance_tag(instance: u64) -> String {
    let id = subscriber_id(instance, 0, 0);
    id[..INSTANCE_CHARS].to_string()
}

/// How many leading characters of a subscriber id name its instance.
const INSTANCE_CHARS: usize = "urn:uuid:".len() + 18;

/// The instance part of a subscriber id ([`instance_tag`]'s form), if it has one.
pub fn instance_of(subscriber: &str) -> Option<&str> {
    subscriber
        .get(..INSTANCE_CHARS)
        .filter(|_| subscriber.starts_with("urn:uuid:"))
}

/// Appends `s` as a JSON string, escaped in place (no allocation but `out`'s growth: the API
/// writes thousands of these under the history's lock).
fn json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A collection document asked for: its `id` (the request's path), the topic it is limited
/// to if any, and the `lastEventID` it names.
#[derive(Clone, Copy, Debug)]
pub struct Collection<'a> {
    pub id: &'a str,
    pub topic: Option<&'a str>,
    pub last_event_id: &'a str,
}

/// Where a subscription document goes, which decides its `@context` and `lastEventID`.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    /// An event's data: with `@context`.
    Event,
    /// In a collection's list: the collection names the context.
    InList,
    /// The API's answer for one subscription: with `@context` and `lastEventID`.
    Alone { last_event_id: &'a str },
}

/// Whether a subscription is on (`"active":true`) or has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Inactive,
}

/// One subscription, as its document names it.
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    /// The subscription's id (see [`subscription_id`]).
    pub id: &'a str,
    pub topic: &'a str,
    pub subscriber: &'a str,
    pub status: Status,
    /// JSON text.
    pub payload: Option<&'a str>,
}

/// Appends the subscription document (Mercure's field order: `@context` if asked, `id`,
/// `type`, `subscriber`, `topic`, `active`, `payload` if any, `lastEventID` if given).
pub fn document_into(out: &mut String, doc: Document<'_>, place: Place<'_>) {
    let Document {
        id,
        topic,
        subscriber,
        status,
        payload,
    } = doc;
    let (context, last_event_id) = match place {
        Place::Event => (true, None),
        Place::InList => (false, None),
        Place::Alone { last_event_id } => (true, Some(last_event_id)),
    };
    out.push('{');
    if context {
        out.push_str("\"@context\":");
        json_string(out, CONTEXT);
        out.push(',');
    }
    out.push_str("\"id\":");
    json_string(out, id);
    out.push_str(",\"type\":\"Subscription\",\"subscriber\":");
    json_string(out, subscriber);
    out.push_str(",\"topic\":");
    json_string(out, topic);
    out.push_str(",\"active\":");
    out.push_str(match status {
        Status::Active => "true",
        Status::Inactive => "false",
    });
    if let Some(p) = payload {
        out.push_str(",\"payload\":");
        out.push_str(p);
    }
    if let Some(l) = last_event_id {
        out.push_str(",\"lastEventID\":");
        json_string(out, l);
    }
    out.push('}');
}

/// The subscription event of `subscriber`'s subscription to `topic`: private, on its own
/// topic, the document as data.
pub fn event(topic: &str, subscriber: &str, status: Status, payload: Option<&str>) -> Publish {
    let mut data = String::with_capacity(256);
    let id = subscription_id(topic, subscriber);
    document_into(
        &mut data,
        Document {
            id: &id,
            topic,
            subscriber,
            status,
            payload,
        },
        Place::Event,
    );
    Publish {
        topics: vec![id],
        data,
        event_type: None,
        retry: None,
        private: true,
        id: None,
    }
}

/// One active subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    topic: Box<str>,
    subscriber: Box<str>,
    /// The payload as JSON text.
    payload: Option<Box<str>>,
}

/// The active subscriptions, by their id (so one topic's are a range). See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: BTreeMap<Box<str>, Entry>,
    /// How many subscriptions each instance tag has (so the once-a-second sweep reads the
    /// instances, not every subscription, under the history's lock).
    per_instance: BTreeMap<Box<str>, usize>,
}

impl Registry {
    /// Takes in a stored event: a subscription event adds or removes its subscription; any
    /// other event (or one whose data is not a subscription document) changes nothing.
    pub fn fold(&mut self, p: &Publish) {
        let [topic] = &p.topics[..] else {
            return;
        };
        if !is_presence_topic(topic) || !p.private {
            return;
        }
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&p.data) else {
            return;
        };
        let (Some(t), Some(s), Some(active)) = (
            doc.get("topic").and_then(|v| v.as_str()),
            doc.get("subscriber").and_then(|v| v.as_str()),
            doc.get("active").and_then(|v| v.as_bool()),
        ) else {
            return;
        };
        // The event's topic is the subscription's id: anything else is not ours.
        if subscription_id(t, s) != **topic {
            return;
        }
        let tag = instance_of(s);
        if active {
            let payload = doc.get("payload").map(|v| v.to_string().into_boxed_str());
            let entry = Entry {
                topic: t.into(),
                subscriber: s.into(),
                payload,
            };
            if self.by_id.insert(topic.as_str().into(), entry).is_none() {
                if let Some(tag) = tag {
                    *self.per_instance.entry(tag.into()).or_default() += 1;
                }
            }
        } else if let (Some(_), Some(tag)) = (self.by_id.remove(topic.as_str()), tag) {
            if let Some(n) = self.per_instance.get_mut(tag) {
                *n -= 1;
                if *n == 0 {
                    self.per_instance.remove(tag);
                }
            }
        }
    }

    /// Active subscriptions held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The `(topic, subscriber)` of every subscription whose subscriber id belongs to
    /// instance `tag` ([`instance_tag`]), with its payload (for its `active: false` event).
    pub fn of_instance(&self, tag: &str) -> Vec<(String, String, Option<String>)> {
        self.by_id
            .values()
            .filter(|e| instance_of(&e.subscriber) == Some(tag))
            .map(|e| {
                (
                    e.topic.to_string(),
                    e.subscriber.to_string(),
                    e.payload.as_deref().map(str::to_string),
                )
            })
            .collect()
    }

    /// The instance tags of every subscriber held.
    pub fn instances(&self) -> Vec<String> {
        self.per_instance.keys().map(|t| t.to_string()).collect()
    }

    /// The collection document at `id` (the request's path): every subscription, or those to
    /// `topic`, that `may_read` (given the subscription's id) allows, written straight from
    /// the registry into `out` (nothing else is allocated per subscription but its id).
    pub fn collection_into(
        &self,
        out: &mut String,
        c: Collection<'_>,
        may_read: impl Fn(&str) -> bool,
    ) {
        let Collection {
            id,
            topic,
            last_event_id,
        } = c;
        out.push_str("{\"@context\":");
        json_string(out, CONTEXT);
        out.push_str(",\"id\":");
        json_string(out, id);
        out.push_str(",\"type\":\"Subscriptions\",\"lastEventID\":");
        json_string(out, last_event_id);
        out.push_str(",\"subscriptions\":[");
        let from = match topic {
            Some(t) => {
                let mut from = String::with_capacity(PREFIX.len() + t.len() * 3 + 2);
                from.push_str(PREFIX);
                from.push('/');
                escape_into(&mut from, t);
                from.push('/');
                from
            }
            None => String::new(),
        };
        let mut first = true;
        let range = self
            .by_id
            .range::<str, _>((
                std::ops::Bound::Included(from.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(from.as_str()));
        for (key, e) in range {
            if !may_read(key) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            document_into(
                out,
                Document {
                    id: key,
                    topic: &e.topic,
                    subscriber: &e.subscriber,
                    status: Status::Active,
                    payload: e.payload.as_deref(),
                },
                Place::InList,
            );
        }
        out.push_str("]}");
    }

    /// The document of `subscriber`'s subscription to `topic`, with `lastEventID`; `None`
    /// when it is not active.
    pub fn one(&self, topic: &str, subscriber: &str, last_event_id: &str) -> Option<String> {
        let (id, e) = self
            .by_id
            .get_key_value(subscription_id(topic, subscriber).as_str())?;
        let mut out = String::with_capacity(256);
        document_into(
            &mut out,
            Document {
                id,
                topic: &e.topic,
                subscriber: &e.subscriber,
                status: Status::Active,
                payload: e.payload.as_deref(),
            },
            Place::Alone { last_event_id },
        );
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_once_and_shaped_as_uuids() {
        let s = subscriber_id(0x0123_4567_89ab_cdef, 3, 42);
        assert_eq!(s, "urn:uuid:01234567-89ab-4def-8003-00000000002a");
        assert_eq!(instance_of(&s), Some(&*instance_tag(0x0123_4567_89ab_cdef)));
        assert_ne!(subscriber_id(1, 0, 1), subscriber_id(1, 1, 1));
        assert_eq!(
            subscription_id("https://example.com/a b/{id}%", "urn:uuid:x"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fa%20b%2F%7Bid%7D%25/urn%3Auuid%3Ax"
        );
        assert!(is_presence_topic("/.well-known/mercure/subscriptions/a/b"));
        assert!(!is_presence_topic("/.well-known/mercure/subscriptionsX"));
        assert!(!is_presence_topic(
            "https://example.com/.well-known/mercure/subscriptions/a"
        ));
    }

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        for s in [
            "plain",
            "a\"b\\c",
            "line\nbreak\r\t",
            "\u{1}\u{1f}\u{7f}é€😀",
            "",
        ] {
            let mut out = String::new();
            json_string(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s, "{out}");
        }
    }

    #[test]
    fn a_list_allocates_nothing_per_subscription_but_its_answer() {
        let mut r = Registry::default();
        for i in 0..1000 {
            let (topic, subscriber) = (format!("room/{i}"), format!("urn:uuid:{i}"));
            r.fold(&event(
                &topic,
                &subscriber,
                Status::Active,
                Some(r#"{"n":1}"#),
            ));
        }
        let mut out = String::with_capacity(1 << 20);
        let before = crate::util::test_alloc::allocations();
        r.collection_into(
            &mut out,
            Collection {
                id: PREFIX,
                topic: None,
                last_event_id: "earliest",
            },
            |_| true,
        );
        assert_eq!(crate::util::test_alloc::allocations() - before, 0);
        let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 1000);
        // One topic's list: its range's first key is the one allocation.
        out.clear();
        let before = crate::util::test_alloc::allocations();
        r.collection_into(
            &mut out,
            Collection {
                id: "x",
                topic: Some("room/5"),
                last_event_id: "earliest",
            },
            |_| true,
        );
        assert_eq!(crate::util::test_alloc::allocations() - before, 1);
        let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_registry_is_the_fold_of_the_events() {
        let mut r = Registry::default();
        let a = event(
            "books/1",
            "urn:uuid:a",
            Status::Active,
            Some(r#"{"name":"ann"}"#),
        );
        let b = event("books/2", "urn:uuid:b", Status::Active, None);
        let doc: serde_json::Value = serde_json::from_str(&a.data).unwrap();
        assert_eq!(doc["@context"], CONTEXT);
        assert_eq!(doc["type"], "Subscription");
        assert_eq!(doc["id"], a.topics[0].as_str());
        assert_eq!(doc["payload"]["name"], "ann");
        assert!(a.private);
        r.fold(&a);
        r.fold(&b);
        // Not ours: a public event, a forged id, garbage data.
        let mut public = event("books/3", "urn:uuid:c", Status::Active, None);
        public.private = false;
        r.fold(&public);
        let mut forged = event("books/3", "urn:uuid:c", Status::Active, None);
        forged.topics[0] = subscription_id("books/4", "urn:uuid:c");
        r.fold(&forged);
        let mut junk = event("books/3", "urn:uuid:c", Status::Active, None);
        junk.data = "{".into();
        r.fold(&junk);
        assert_eq!(r.len(), 2);
        let mut all = String::new();
        r.collection_into(
            &mut all,
            Collection {
                id: PREFIX,
                topic: None,
                last_event_id: "earliest",
            },
            |_| true,
        );
        let all: serde_json::Value = serde_json::from_str(&all).unwrap();
        assert_eq!(all["type"], "Subscriptions");
        assert_eq!(all["lastEventID"], "earliest");
        assert_eq!(all["subscriptions"].as_array().unwrap().len(), 2);
        let mut one_topic = String::new();
        r.collection_into(
            &mut one_topic,
            Collection {
                id: "x",
                topic: Some("books/1"),
                last_event_id: "1",
            },
            |_| true,
        );
        let one_topic: serde_json::Value = serde_json::from_str(&one_topic).unwrap();
        assert_eq!(one_topic["subscriptions"][0]["subscriber"], "urn:uuid:a");
        assert_eq!(one_topic["subscriptions"].as_array().unwrap().len(), 1);
        let mut none = String::new();
        r.collection_into(
            &mut none,
            Collection {
                id: "x",
                topic: None,
                last_event_id: "1",
            },
            |_| false,
        );
        assert!(none.ends_with("\"subscriptions\":[]}"), "{none}");
        assert!(r.one("books/1", "urn:uuid:a", "7").is_some());
        assert!(r.one("books/1", "urn:uuid:b", "7").is_none());
        r.fold(&event("books/1", "urn:uuid:a", Status::Inactive, None));
        assert_eq!(r.len(), 1);
        assert!(r.one("books/1", "urn:uuid:a", "7").is_none());
    }

    #[test]
    fn instances_are_counted_as_subscriptions_come_and_go() {
        let mut r = Registry::default();
        let (a, b) = (subscriber_id(1, 0, 1), subscriber_id(1, 1, 1));
        let c = subscriber_id(2, 0, 1);
        r.fold(&event("x", &a, Status::Active, None));
        r.fold(&event("x", &a, Status::Active, None)); // a repeat counts once
        r.fold(&event("y", &a, Status::Active, None));
        r.fold(&event("x", &b, Status::Active, None));
        r.fold(&event("x", &c, Status::Active, None));
        r.fold(&event("x", "urn:other", Status::Active, None)); // no instance tag: listed, not counted
        let mut tags = vec![instance_tag(1), instance_tag(2)];
        tags.sort();
        assert_eq!(r.instances(), tags);
        assert_eq!(r.of_instance(&instance_tag(1)).len(), 3);
        r.fold(&event("x", &c, Status::Inactive, None));
        r.fold(&event("x", &c, Status::Inactive, None)); // a repeat changes nothing
        assert_eq!(r.instances(), [instance_tag(1)]);
        for (t, s) in [("x", &a), ("y", &a), ("x", &b)] {
            r.fold(&event(t, s, Status::Inactive, None));
        }
        assert!(r.instances().is_empty());
        assert_eq!(r.len(), 1);
    }
}
