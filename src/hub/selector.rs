//! Topic selectors of both Mercure drafts, compiled once, and a bounded cache of what they
//! matched.
//!
//! A selector says which topics a subscription (or a token's claim) covers:
//! - `*`: every topic, whatever the kind (both drafts reserve it);
//! - an exact topic: byte for byte, no normalisation (draft-08 `match=`, and draft-07
//!   `topic=` when the value is not a URI Template);
//! - an RFC 6570 URI Template (draft-07 `topic=`, `mercure.subscribe`/`publish` claims): a
//!   topic matches when it equals the template's text, or when some values of its variables
//!   could expand to it. That second test is the one Mercure's reference hub makes (its
//!   template library's `Regexp()`): every expression becomes an optional group of the
//!   characters its operator may produce (unreserved, plus reserved for `+` and `#`, plus
//!   `%XX` triplets), with the operator's first character and separators; variable names of
//!   `;`, `?` and `&` are not compared, and `:prefix` lengths do not bound. A value that does
//!   not parse as a template (an unclosed `{`, a space) is an exact topic, as there;
//! - a WHATWG URL Pattern (draft-08 `match_urlpattern=`/`matchURLPattern=`, `matchType:
//!   URLPattern` in a token): compiled by the `urlpattern` crate; a relative pattern or topic
//!   is resolved against [`URL_PATTERN_BASE`]; a topic that is not a URL matches no pattern;
//! - `prefix/*` (this server's own, in token claims and `--private-topics` only): every topic
//!   that starts with `prefix/`.
//!
//! Exact topics, `*` and prefixes cost a comparison. Templates and URL Patterns run regular
//! expressions from the `regex` crate, whose automata are linear in the topic's length: no
//! pattern can make matching backtrack (the URL Pattern standard asks for this, or a cost
//! limit). A selector is compiled once ([`Selector::parse`]) and [`MatchCache`] keeps what
//! each (selector, topic) pair gave, so fan-out does not run a pattern per subscriber.
//!
//! **Invariant:** no IO and no clock here; no input panics (the URL Pattern parser, not ours,
//! is called under `catch_unwind` as well, and fuzzed in the tests), and a selector's size
//! and the work to compile it are capped: [`MAX_SELECTOR_BYTES`], [`MAX_EXPRESSIONS`], and a
//! compiled size limit for every regular expression ([`REGEX_SIZE_LIMIT`]).
//! **Invariant:** [`MatchCache`] holds at most its capacity of entries; the oldest topic's
//! entries go first, and evictions are counted.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The longest selector accepted, in bytes (a template or pattern is compiled at most once per
/// distinct text, but its text is held and its automaton grows with it).
pub const MAX_SELECTOR_BYTES: usize = 1024;

/// The most expressions (`{...}`) in one URI Template.
pub const MAX_EXPRESSIONS: usize = 32;

/// The most memory one compiled regular expression may take (`regex`'s `size_limit`); a
/// pattern whose automaton would be larger is refused.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The most distinct selector texts [`shared`] remembers (weakly: it keeps none alive). Past
/// it, texts nobody holds any more are forgotten first; if all are held, a new one is compiled
/// apart (correct, only not shared).
pub const MAX_SHARED: usize = 16 * 1024;

/// What relative URL Patterns and relative topics are resolved against (draft-08 says: the
/// hub's URL). A fixed origin under the reserved `.invalid` name: a relative pattern matches
/// relative topics, an absolute one absolute topics of its origin.
pub const URL_PATTERN_BASE: &str = "https://hub.invalid/.well-known/mercure";

/// How a selector's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Draft-07 `topic=` and `mercure.*` claims: `*`, a URI Template, else an exact topic.
    /// In claims, `prefix/*` too ([`Selector::claim`]).
    Template,
    /// Draft-08 `match=` / `matchExact=` and `matchType: Exact`: `*`, else byte for byte.
    Exact,
    /// Draft-08 `match_urlpattern=` / `matchURLPattern=` and `matchType: URLPattern`.
    UrlPattern,
}

impl Kind {
    /// The matcher type's name in draft-08 (`Exact`, `URLPattern`); `Template` for draft-07.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Template => "Template",
            Kind::Exact => "Exact",
            Kind::UrlPattern => "URLPattern",
        }
    }
}

/// Why a selector is refused. Each is a `400` for a subscription and an invalid token for a
/// claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorError {
    /// Empty.
    Empty,
    /// Longer than [`MAX_SELECTOR_BYTES`].
    TooLong,
    /// A control character (C0, DEL, C1): never part of a topic.
    ControlCharacter,
    /// More than [`MAX_EXPRESSIONS`] expressions in a template.
    TooComplex,
    /// A URL Pattern that does not compile (the reason is the parser's).
    BadPattern(String),
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectorError::Empty => f.write_str("empty selector"),
            SelectorError::TooLong => write!(f, "selector longer than {MAX_SELECTOR_BYTES} bytes"),
            SelectorError::ControlCharacter => f.write_str("control character in a selector"),
            SelectorError::TooComplex => {
                write!(
                    f,
                    "more than {MAX_EXPRESSIONS} expressions in a URI template"
                )
            }
            SelectorError::BadPattern(why) => write!(f, "invalid URL pattern: {why}"),
        }
    }
}

impl std::error::Error for SelectorError {}

/// Every compiled selector gets a number never given again, the key of its cached results:
/// a dropped selector's results can never be read for another one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One compiled selector.
pub struct Selector {
    id: u64,
    kind: Kind,
    raw: Box<str>,
    matcher: Matcher,
}

enum Matcher {
    Any,
    Exact,
    /// `prefix/*`: the text up to and including the `/`.
    Prefix(usize),
    /// The anchored expression of a URI Template (the template's own text matches too).
    Template(regex::Regex),
    /// A URI Template whose `/`-separated segments are each literals and plain `{var}`s:
    /// matching compares segments, exactly what its expression says, so the expression
    /// (compiled once to check the template, about 7.8 KiB of heap) is not kept.
    Segments(Box<[Segment]>),
    UrlPattern(Box<urlpattern::UrlPattern>),
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", self.kind.as_str(), self.raw)
    }
}

/// Two selectors are equal when they read the same text the same way.
impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.kind == other.kind && self.raw == other.raw && self.is_prefix() == other.is_prefix()
    }
}

impl Eq for Selector {}

impl Selector {
    /// Compiles `text` read as `kind` (a subscription's query parameter, a draft-08 claim).
    pub fn parse(kind: Kind, text: &str) -> Result<Selector, SelectorError> {
        Self::compile(kind, text, Role::Subscription)
    }

    /// Compiles a draft-07 claim or `--private-topics` entry: as [`Kind::Template`], and a
    /// trailing `/*` makes a prefix.
    pub fn claim(text: &str) -> Result<Selector, SelectorError> {
        Self::compile(Kind::Template, text, Role::Claim)
    }

    fn compile(kind: Kind, text: &str, role: Role) -> Result<Selector, SelectorError> {
        check_text(text)?;
        let matcher = if text == "*" {
            Matcher::Any
        } else {
            match kind {
                Kind::Exact => Matcher::Exact,
                Kind::Template => match text.strip_suffix("/*") {
                    Some(p) if role == Role::Claim => Matcher::Prefix(p.len() + 1),
                    _ => match template_regex(text)? {
                        Some(re) => match simple_segments(text) {
                            Some(segments) => {
                                drop(re);
                                Matcher::Segments(segments)
                            }
                            None => Matcher::Template(re),
                        },
                        None => Matcher::Exact,
                    },
                },
                Kind::UrlPattern => Matcher::UrlPattern(Box::new(url_pattern(text)?)),
            }
        };
        Ok(Selector {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            raw: text.into(),
            matcher,
        })
    }

    /// The text as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// How the text was read.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.matcher, Matcher::Any)
    }

    /// An exact topic (the hub's hash lookup serves it; no pattern runs).
    pub fn exact_topic(&self) -> Option<&str> {
        matches!(self.matcher, Matcher::Exact).then_some(&*self.raw)
    }

    fn is_prefix(&self) -> bool {
        matches!(self.matcher, Matcher::Prefix(_))
    }

    /// Whether matching runs a pattern (a template or a URL Pattern): the results worth
    /// caching.
    pub fn is_pattern(&self) -> bool {
        matches!(
            self.matcher,
            Matcher::Template(_) | Matcher::Segments(_) | Matcher::UrlPattern(_)
        )
    }

    /// A URI Template's `/`-separated segments, when every one is a literal or exactly one
    /// simple expression `{var}` (see [`Segment`]): a topic other than the template's own text
    /// matches exactly when it has as many `/`-separated segments, each equal to its literal
    /// or, for `{var}`, one [`var_segment`] accepts. `None` for any other selector.
    pub fn segments(&self) -> Option<&[Segment]> {
        match &self.matcher {
            Matcher::Segments(segments) => Some(segments),
            _ => None,
        }
    }

    /// What the template's regular expression alone says (tests compare it with segments).
    #[cfg(test)]
    pub(crate) fn regex_matches(&self, topic: &str) -> bool {
        match &self.matcher {
            Matcher::Template(re) => *self.raw == *topic || re.is_match(topic),
            Matcher::Segments(_) => {
                let re = template_regex(&self.raw).unwrap().unwrap();
                *self.raw == *topic || re.is_match(topic)
            }
            _ => self.matches(topic),
        }
    }

    /// Text every topic this pattern selects starts with, when there is one to say: a URI
    /// Template's literal text before its first expression (its regular expression is anchored
    /// there, and its own text starts with it too). `None` for URL Patterns (canonicalisation
    /// may rewrite a topic's start, the host's case for one) and for what is not a pattern.
    pub fn literal_prefix(&self) -> Option<&str> {
        match &self.matcher {
            Matcher::Template(_) | Matcher::Segments(_) => self.raw.split('{').next(),
            _ => None,
        }
    }

    /// Whether `topic` is selected.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Exact => *self.raw == *topic,
            Matcher::Prefix(n) => topic.starts_with(&self.raw[..*n]),
            Matcher::Segments(segments) => *self.raw == *topic || segments_match(segments, topic),
            Matcher::Template(re) => *self.raw == *topic || re.is_match(topic),
            Matcher::UrlPattern(p) => url_pattern_test(p, topic),
        }
    }
}

fn check_text(text: &str) -> Result<(), SelectorError> {
    if text.is_empty() {
        return Err(SelectorError::Empty);
    }
    if text.len() > MAX_SELECTOR_BYTES {
        return Err(SelectorError::TooLong);
    }
    if text.chars().any(char::is_control) {
        return Err(SelectorError::ControlCharacter);
    }
    Ok(())
}

/// What a selector's text was compiled as: its kind, and whether `prefix/*` was read.
type SharedKey = (Kind, Role, Box<str>);

fn shared_store() -> &'static Mutex<HashMap<SharedKey, Weak<Selector>>> {
    static STORE: OnceLock<Mutex<HashMap<SharedKey, Weak<Selector>>>> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// [`Selector::parse`], compiled once for every holder of the same text: every token and
/// subscription that names `https://example.com/books/{id}` holds one compiled selector, so
/// its results are cached once ([`MatchCache`] keys by selector) and its automaton exists
/// once. The store holds weak references only.
pub fn shared(kind: Kind, text: &str) -> Result<Arc<Selector>, SelectorError> {
    shared_as(kind, text, Role::Subscription)
}

/// [`Selector::claim`], compiled once for every holder of the same text, as [`shared`].
pub fn shared_claim(kind: Kind, text: &str) -> Result<Arc<Selector>, SelectorError> {
    shared_as(kind, text, Role::Claim)
}

/// Whose selector it is: a subscription's, or a token's claim (where a template ending in `*`
/// is a prefix).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Role {
    Subscription,
    Claim,
}

fn shared_as(kind: Kind, text: &str, role: Role) -> Result<Arc<Selector>, SelectorError> {
    check_text(text)?;
    let key: SharedKey = (kind, role, text.into());
    // A poisoned lock only means another thread panicked while holding it; the map is still
    // a valid cache (at worst missing an entry).
    let lock = || {
        shared_store()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(s) = lock().get(&key).and_then(Weak::upgrade) {
        return Ok(s);
    }
    // Compiled outside the lock: two threads may compile the same text at once; the second
    // to insert keeps the first's.
    let compiled = Arc::new(Selector::compile(kind, text, role)?);
    let mut store = lock();
    if let Some(s) = store.get(&key).and_then(Weak::upgrade) {
        return Ok(s);
    }
    if store.len() >= MAX_SHARED {
        store.retain(|_, w| w.strong_count() > 0);
    }
    if store.len() < MAX_SHARED {
        store.insert(key, Arc::downgrade(&compiled));
    }
    Ok(compiled)
}

// ---- RFC 6570 URI Templates ----------------------------------------------------------------

/// RFC 6570 section 1.5: unreserved characters, as a regex class body.
const UNRESERVED: &str = r"A-Za-z0-9\-._~";
/// RFC 6570 section 1.5: reserved characters (gen-delims and sub-delims).
const RESERVED: &str = r":/?#\[\]@!$&'()*+,;=";

/// One expression's operator (RFC 6570 section 3.2.1's table): what comes first, what
/// separates values, whether names are written (`;`, `?`, `&`), whether reserved characters
/// pass through (`+`, `#`).
struct Operator {
    first: &'static str,
    sep: &'static str,
    named: bool,
    reserved: bool,
}

fn operator(c: u8) -> Option<Operator> {
    let (first, sep, named, reserved) = match c {
        b'+' => ("", ",", false, true),
        b'#' => ("#", ",", false, true),
        b'.' => (".", ".", false, false),
        b'/' => ("/", "/", false, false),
        b';' => (";", ";", true, false),
        b'?' => ("?", "&", true, false),
        b'&' => ("&", "&", true, false),
        _ => return None,
    };
    Some(Operator {
        first,
        sep,
        named,
        reserved,
    })
}

/// The anchored regular expression of a URI Template, or `None` when `text` is not one (no
/// expression at all, or not valid RFC 6570 syntax: then the selector is an exact topic, as in
/// Mercure's hub).
fn template_regex(text: &str) -> Result<Option<regex::Regex>, SelectorError> {
    if !text.contains('{') {
        return Ok(None);
    }
    let Some(pattern) = template_pattern(text)? else {
        return Ok(None);
    };
    let re = regex::RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        // Every part is escaped or built here, so only the size limit can refuse it.
        .map_err(|_| SelectorError::TooComplex)?;
    Ok(Some(re))
}

/// The regular expression's text for `template`, `None` when the template is not valid.
fn template_pattern(template: &str) -> Result<Option<String>, SelectorError> {
    let mut out = String::with_capacity(template.len() * 4);
    out.push_str(r"\A");
    let mut rest = template;
    let mut expressions = 0;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let Some(end) = rest.find('}') else {
                    return Ok(None);
                };
                expressions += 1;
                if expressions > MAX_EXPRESSIONS {
                    return Err(SelectorError::TooComplex);
                }
                if !expression(&rest[1..end], &mut out) {
                    return Ok(None);
                }
                rest = &rest[end + 1..];
            }
            at => {
                let end = at.unwrap_or(rest.len());
                if !literals(&rest[..end]) {
                    return Ok(None);
                }
                out.push_str(&regex::escape(&rest[..end]));
                rest = &rest[end..];
            }
        }
    }
    out.push_str(r"\z");
    Ok(Some(out))
}

/// One `/`-separated segment of a URI Template that is matched without its regular
/// expression ([`Selector::segments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text with no expression: the topic's segment equals it byte for byte (the expression
    /// escapes it).
    Literal(Box<str>),
    /// Exactly one expression with no operator, one variable, no modifier (`{id}`): the
    /// expression compiles it to `(?:[,` unreserved `]|%XX)*` wrapped optional, so any run
    /// of those, the empty one included, and never a `/`.
    Var,
    /// Literal text and such expressions in one segment (`s{id}`, `{a}-{b}`): the topic's
    /// segment can be cut into the literals, byte for byte, and what [`Segment::Var`] matches
    /// in between ([`mixed_segment`]).
    Mixed(Box<[Piece]>),
}

/// A piece of a [`Segment::Mixed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Box<str>),
    Var,
}

/// Whether `c` is one of the characters a [`Segment::Var`] takes alone (`%` comes in a
/// triplet only).
fn var_char(c: u8) -> bool {
    matches!(c, b',' | b'-' | b'.' | b'_' | b'~') || c.is_ascii_alphanumeric()
}

/// Whether `segment` matches `pieces` (see [`Segment::Mixed`]): the positions each piece can
/// end at, from the segment's start, piece after piece (a literal moves each by its length
/// where its bytes follow; a variable extends each over any run of its characters and
/// triplets), so literals that a variable could also take (`{a}-{b}` against `x-y-z`) are
/// decided as the regular expression decides them. Time: pieces x segment length.
pub fn mixed_segment(pieces: &[Piece], segment: &str) -> bool {
    let b = segment.as_bytes();
    let n = b.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    let mut next = vec![false; n + 1];
    for piece in pieces {
        match piece {
            Piece::Literal(l) => {
                next.fill(false);
                for p in 0..=n {
                    if reach[p] && b[p..].starts_with(l.as_bytes()) {
                        next[p + l.len()] = true;
                    }
                }
            }
            Piece::Var => {
                for q in 0..=n {
                    next[q] = reach[q]
                        || (q >= 1 && next[q - 1] && var_char(b[q - 1]))
                        || (q >= 3 && next[q - 3] && pct_encoded_at(b, q - 3));
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
    }
    reach[n]
}

/// A segment of literals and plain `{var}` expressions, cut into its pieces; `None` when an
/// expression is anything else.
fn mixed_pieces(token: &str) -> Option<Box<[Piece]>> {
    let mut pieces = Vec::new();
    let mut rest = token;
    while let Some(open) = rest.find('{') {
        let literal = &rest[..open];
        if literal.contains('}') {
            return None;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal.into()));
        }
        let close = open + rest[open..].find('}')?;
        if !varname(&rest[open + 1..close]) {
            return None;
        }
        pieces.push(Piece::Var);
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.into()));
    }
    Some(pieces.into())
}

/// Whether `segment` is what a [`Segment::Var`] matches: `,`, unreserved characters (RFC
/// 3986: ASCII letters, digits, `-._~`) and `%XX` triplets, any number, none included.
pub fn var_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b',' | b'-' | b'.' | b'_' | b'~' => {}
            c if c.is_ascii_alphanumeric() => {}
            b'%' if pct_encoded_at(b, i) => {
                i += 3;
                continue;
            }
            _ => return false,
        }
        i += 1;
    }
    true
}

/// A valid template's segments when each is a literal or a plain `{var}`.
fn simple_segments(text: &str) -> Option<Box<[Segment]>> {
    text.split('/')
        .map(|token| {
            if !token.contains(['{', '}']) {
                return Some(Segment::Literal(token.into()));
            }
            // A name is letters, digits, `_`, `.` and triplets only: no operator, no `,`, no
            // `:` or `*` modifier.
            match token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) if varname(name) => Some(Segment::Var),
                _ => mixed_pieces(token).map(Segment::Mixed),
            }
        })
        .collect()
}

/// Whether `topic`, cut at every `/`, matches `segments` one for one.
fn segments_match(segments: &[Segment], topic: &str) -> bool {
    let mut parts = topic.split('/');
    for s in segments {
        let Some(part) = parts.next() else {
            return false;
        };
        let ok = match s {
            Segment::Literal(l) => **l == *part,
            Segment::Var => var_segment(part),
            Segment::Mixed(pieces) => mixed_segment(pieces, part),
        };
        if !ok {
            return false;
        }
    }
    parts.next().is_none()
}

/// RFC 3986 `pct-encoded` (`%` and two hex digits) at `b[i]`: what RFC 6570 allows both in
/// literals and in variable names.
fn pct_encoded_at(b: &[u8], i: usize) -> bool {
    matches!(b.get(i..i + 3), Some([b'%', h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit())
}

/// RFC 6570 section 2.1: the characters a template may hold outside expressions.
fn literals(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if !pct_encoded_at(b, i) {
                    return false;
                }
                i += 3;
                continue;
            }
            0x21
            | 0x23
            | 0x24
            | 0x26
            | 0x28..=0x3B
            | 0x3D
            | 0x3F..=0x5B
            | 0x5D
            | 0x5F
            | 0x61..=0x7A
            | 0x7E => {}
            // Non-ASCII: ucschar and iprivate; control characters were refused before.
            0x80.. => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// RFC 6570 section 2.2/2.3: one expression's body (between the braces), appended to `out` as
/// Mercure's reference matcher reads it; false when it is not valid.
fn expression(body: &str, out: &mut String) -> bool {
    let (op, vars) = match body.as_bytes().first() {
        None => return false,
        // Reserved for future extensions (RFC 6570 section 2.2): not a template.
        Some(b'=' | b',' | b'!' | b'@' | b'|') => return false,
        Some(&c) => match operator(c) {
            Some(op) => (op, &body[1..]),
            None => (
                Operator {
                    first: "",
                    sep: ",",
                    named: false,
                    reserved: false,
                },
                body,
            ),
        },
    };
    let mut count = 0usize;
    let mut explode = false;
    let mut first_explodes = false;
    for (i, spec) in vars.split(',').enumerate() {
        let name = if let Some(name) = spec.strip_suffix('*') {
            explode = true;
            first_explodes |= i == 0;
            name
        } else if let Some((name, len)) = spec.split_once(':') {
            // max-length: %x31-39 0*3DIGIT (1 to 9999).
            let digits = len.as_bytes();
            if digits.is_empty()
                || digits.len() > 4
                || digits[0] == b'0'
                || !digits.iter().all(u8::is_ascii_digit)
            {
                return false;
            }
            name
        } else {
            spec
        };
        if !varname(name) {
            return false;
        }
        count += 1;
    }
    let class = |named: bool| {
        let mut c = String::from("(?:[");
        if !op.reserved {
            c.push(',');
            if named {
                c.push('=');
            }
        }
        c.push_str(UNRESERVED);
        if op.reserved {
            c.push_str(RESERVED);
        }
        c.push_str("]|%[0-9A-Fa-f]{2})*");
        c
    };
    out.push_str("(?:");
    out.push_str(&regex::escape(op.first));
    out.push_str(&class(op.named || first_explodes));
    if count > 1 || explode {
        out.push_str("(?:");
        out.push_str(&regex::escape(op.sep));
        out.push_str(&class(op.named || explode));
        out.push(')');
        if explode {
            out.push('*');
        } else {
            out.push_str(&format!("{{0,{}}}", count - 1));
        }
    }
    out.push_str(")?");
    true
}

/// RFC 6570 section 2.3: varname = varchar *( ["."] varchar ), varchar = ALPHA / DIGIT / "_" /
/// pct-encoded.
fn varname(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if !pct_encoded_at(b, i) {
                    return false;
                }
                i += 3;
                continue;
            }
            b'.' if b[i - 1] == b'.' => return false,
            b'.' | b'_' => {}
            c if c.is_ascii_alphanumeric() => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

// ---- WHATWG URL Patterns -------------------------------------------------------------------

fn base_url() -> &'static url::Url {
    static BASE: std::sync::OnceLock<url::Url> = std::sync::OnceLock::new();
    BASE.get_or_init(|| url::Url::parse(URL_PATTERN_BASE).expect("the base is a valid URL"))
}

fn url_pattern(text: &str) -> Result<urlpattern::UrlPattern, SelectorError> {
    // The parser is a dependency's: a panic in it on some input must not take the loop down.
    let compiled = std::panic::catch_unwind(|| {
        let init = urlpattern::UrlPatternInit::parse_constructor_string::<regex::Regex>(
            text,
            Some(base_url().clone()),
        )?;
        urlpattern::UrlPattern::<regex::Regex>::parse(init, Default::default())
    });
    match compiled {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(SelectorError::BadPattern(e.to_string())),
        Err(_) => Err(SelectorError::BadPattern("unsupported pattern".into())),
    }
}

fn url_pattern_test(p: &urlpattern::UrlPattern, topic: &str) -> bool {
    let Ok(url) = url::Url::options().base_url(Some(base_url())).parse(topic) else {
        return false;
    };
    std::panic::catch_unwind(|| p.test(urlpattern::UrlPatternMatchInput::Url(url)))
        .is_ok_and(|r| r.unwrap_or(false))
}

// ---- Sets of selectors ---------------------------------------------------------------------

/// A set of selectors, as a token's claim or `--private-topics` holds them: `*` alone
/// replaces everything else; exact topics are sorted for a binary search; prefixes and
/// patterns are tried in turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    any: bool,
    exact: Box<[Box<str>]>,
    prefixes: Box<[Box<str>]>,
    patterns: Box<[Arc<Selector>]>,
}

impl Selectors {
    /// The set of draft-07 claim selectors (exact names, `*`, `prefix/*`, URI Templates). A
    /// selector that cannot be compiled (too long, a control character, too many
    /// expressions) selects nothing; [`Selectors::claims`] reports it instead.
    pub fn new<'a>(selectors: impl IntoIterator<Item = &'a str>) -> Selectors {
        Self::from_shared(
            selectors
                .into_iter()
                .filter_map(|s| shared_claim(Kind::Template, s).ok()),
        )
    }

    /// The set of draft-07 claim selectors, refusing the first that cannot be compiled.
    pub fn claims<'a>(
        selectors: impl IntoIterator<Item = &'a str>,
    ) -> Result<Selectors, SelectorError> {
        let compiled: Result<Vec<_>, _> = selectors
            .into_iter()
            .map(|s| shared_claim(Kind::Template, s))
            .collect();
        Ok(Self::from_shared(compiled?))
    }

    /// The set of compiled selectors, of any kind.
    pub fn from_compiled(selectors: impl IntoIterator<Item = Selector>) -> Selectors {
        Self::from_shared(selectors.into_iter().map(Arc::new))
    }

    /// The set of shared compiled selectors ([`shared`]), of any kind.
    pub fn from_shared(selectors: impl IntoIterator<Item = Arc<Selector>>) -> Selectors {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        let mut patterns: Vec<Arc<Selector>> = Vec::new();
        for s in selectors {
            match &s.matcher {
                Matcher::Any => {
                    return Selectors {
                        any: true,
                        ..Selectors::default()
                    }
                }
                Matcher::Exact => exact.push(s.raw.clone()),
                Matcher::Prefix(n) => prefixes.push(Box::from(&s.raw[..*n])),
                Matcher::Template(_) | Matcher::Segments(_) | Matcher::UrlPattern(_) => {
                    if !patterns.contains(&s) {
                        patterns.push(s);
                    }
                }
            }
        }
        exact.sort_unstable();
        exact.dedup();
        prefixes.sort_unstable();
        prefixes.dedup();
        Selectors {
            any: false,
            exact: exact.into_boxed_slice(),
            prefixes: prefixes.into_boxed_slice(),
            patterns: patterns.into_boxed_slice(),
        }
    }

    /// Every topic (`*`).
    pub fn any() -> Selectors {
        Selectors {
            any: true,
            ..Selectors::default()
        }
    }

    /// The union of two sets.
    pub fn union(&self, other: &Selectors) -> Selectors {
        if self.any || other.is_empty() {
            return self.clone();
        }
        if other.any || self.is_empty() {
            return other.clone();
        }
        let mut exact: Vec<Box<str>> = self.exact.iter().chain(&*other.exact).cloned().collect();
        exact.sort_unstable();
        exact.dedup();
        let mut prefixes: Vec<Box<str>> = self
            .prefixes
            .iter()
            .chain(&*other.prefixes)
            .cloned()
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut patterns: Vec<Arc<Selector>> = self.patterns.to_vec();
        for p in &*other.patterns {
            if !patterns.iter().any(|q| q == p) {
                patterns.push(p.clone());
            }
        }
        Selectors {
            any: false,
            exact: exact.into_boxed_slice(),
            prefixes: prefixes.into_boxed_slice(),
            patterns: patterns.into_boxed_slice(),
        }
    }

    /// Whether `topic` is selected.
    pub fn matches(&self, topic: &str) -> bool {
        self.any
            || self.exact.binary_search_by(|e| (**e).cmp(topic)).is_ok()
            || self.prefixes.iter().any(|p| topic.starts_with(&**p))
            || self.patterns.iter().any(|p| p.matches(topic))
    }

    /// [`matches`](Self::matches), with the patterns' results kept in (and read from) `cache`.
    pub fn matches_cached(&self, topic: &str, cache: &mut MatchCache) -> bool {
        self.any
            || self.exact.binary_search_by(|e| (**e).cmp(topic)).is_ok()
            || self.prefixes.iter().any(|p| topic.starts_with(&**p))
            || self.patterns.iter().any(|p| cache.matches(p, topic))
    }

    /// Whether at least one of `topics` is selected (a subscriber may receive a private update
    /// when one of its topics is allowed). False for no topics.
    pub fn matches_any<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        topics.into_iter().any(|t| self.matches(t))
    }

    /// Whether every one of `topics` is selected (a publisher may publish an update only when
    /// all its topics are). False for no topics, so an update without topics is never
    /// authorised by accident.
    pub fn matches_all<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        let mut seen = false;
        for t in topics {
            if !self.matches(t) {
                return false;
            }
            seen = true;
        }
        seen
    }

    /// Whether nothing at all is selected (the claim was absent, `null` or `[]`).
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.prefixes.is_empty() && self.patterns.is_empty()
    }
}

// ---- The match cache -----------------------------------------------------------------------

/// What a [`MatchCache`] did, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// A bounded cache of pattern results: for each topic seen, which pattern selectors matched
/// it. Owned by one loop (no lock). At most `capacity` (selector, topic) entries are held;
/// when a new one would pass it, the topic cached longest ago loses all its entries (each
/// counted in [`CacheStats::evictions`]). Exact topics, `*` and prefixes are never cached:
/// they cost less than a lookup.
#[derive(Debug)]
pub struct MatchCache {
    by_topic: HashMap<Box<str>, HashMap<u64, bool>>,
    order: VecDeque<Box<str>>,
    entries: usize,
    capacity: usize,
    stats: CacheStats,
}

impl MatchCache {
    /// An empty cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> MatchCache {
        MatchCache {
            by_topic: HashMap::new(),
            order: VecDeque::new(),
            entries: 0,
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        }
    }

    /// Whether `selector` matches `topic`, from the cache when it was asked before.
    pub fn matches(&mut self, selector: &Selector, topic: &str) -> bool {
        if !selector.is_pattern() {
            return selector.matches(topic);
        }
        if let Some(&hit) = self.by_topic.get(topic).and_then(|m| m.get(&selector.id)) {
            self.stats.hits += 1;
            return hit;
        }
        self.stats.misses += 1;
        let result = selector.matches(topic);
        while self.entries >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.by_topic.remove(&oldest) {
                self.entries -= gone.len();
                self.stats.evictions += gone.len() as u64;
            }
        }
        match self.by_topic.get_mut(topic) {
            Some(m) => {
                m.insert(selector.id, result);
            }
            None => {
                self.by_topic
                    .insert(topic.into(), HashMap::from([(selector.id, result)]));
                self.order.push_back(topic.into());
            }
        }
        self.entries += 1;
        result
    }

    /// The entries held now.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Hits, misses and evictions so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of templates: literals (percent-encoded, empty, non-ASCII, query-like) and
    /// expressions the segment matcher takes (`{id}`) or must leave to the regex.
    const TEMPLATE_PIECES: &[&str] = &[
        "a", "rooms", "", "%2F", "x%41", "s1", "a,b", "é", "b?c=1", "~._-", "{id}", "{x}", "{%41}",
        "{a.b}", "{+r}", "{#f}", "{?q}", "{&q}", "{a,b}", "{id*}", "{id:3}", "{.l}", "{/p}",
        "{;m}", "s{id}", "{id}x", "{a}{b}",
    ];
    /// Values a topic's segment may hold in place of an expression or a literal.
    const TOPIC_PIECES: &[&str] = &[
        "", "a", "rooms", "1", "s1", "%2F", "%2f", "%2", "%", "%G0", "x%41", "xA", "a,b", "é",
        "{id}", "a b", "?q=1", "#f", "a?b", "~._-", "a=b", ";m", "+", "A-Z_9",
    ];

    /// A topic made from `template`: each `{...}` replaced by a piece, or a few random
    /// segments, or the template's own text; `/` and a trailing `/` or `?q`/`#f` sometimes.
    fn topic_for(template: &str, picks: &[usize], shape: usize) -> String {
        let mut picks = picks
            .iter()
            .cycle()
            .map(|&i| TOPIC_PIECES[i % TOPIC_PIECES.len()]);
        let mut topic = match shape % 4 {
            0 => template.to_string(),
            1 => (0..1 + shape % 5)
                .map(|_| picks.next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("/"),
            _ => {
                let mut out = String::new();
                let mut rest = template;
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
                    out.push_str(picks.next().unwrap_or(""));
                    rest = &rest[close..];
                }
                out.push_str(rest);
                out
            }
        };
        match shape / 4 % 5 {
            0 => topic.push('/'),
            1 => topic.push_str("?q=1"),
            2 => topic.push_str("#f"),
            _ => {}
        }
        topic
    }

    fn template_of(pieces: &[usize], glue: &[bool]) -> String {
        let mut t = String::from("https://example.com/");
        for (i, &p) in pieces.iter().enumerate() {
            if i > 0 && glue.get(i).copied().unwrap_or(true) {
                t.push('/');
            }
            t.push_str(TEMPLATE_PIECES[p % TEMPLATE_PIECES.len()]);
        }
        t
    }

    mod segment_matching {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// The segment matcher answers exactly what the template's regular expression
            /// does, for every template it takes (and the others keep the regex).
            #[test]
            fn segments_answer_what_the_regex_does(
                pieces in proptest::collection::vec(0..TEMPLATE_PIECES.len(), 1..6),
                glue in proptest::collection::vec(proptest::bool::weighted(0.85), 6),
                picks in proptest::collection::vec(0..TOPIC_PIECES.len(), 1..8),
                shape in 0..40usize,
            ) {
                let template = template_of(&pieces, &glue);
                let Ok(sel) = Selector::parse(Kind::Template, &template) else {
                    return Ok(());
                };
                let topic = topic_for(&template, &picks, shape);
                prop_assert_eq!(
                    sel.matches(&topic),
                    sel.regex_matches(&topic),
                    "template {:?} topic {:?} segments {:?}",
                    template,
                    topic,
                    sel.segments()
                );
            }
        }
    }

    /// A template matched by segments keeps no regular expression: a loop's 100 templates of
    /// a fan-out hold kilobytes, not the 7.8 KiB each a compiled expression held.
    #[test]
    fn a_segment_template_holds_no_compiled_expression() {
        use crate::util::test_alloc::live_bytes;
        let before = live_bytes();
        let held: Vec<Selector> = (0..100)
            .map(|i| {
                let t = format!("https://example.com/rooms/{{id{i}}}");
                Selector::parse(Kind::Template, &t).unwrap()
            })
            .collect();
        let per = (live_bytes() - before) / 100;
        assert!(held.iter().all(|s| s.segments().is_some()));
        assert!(per < 512, "{per} B per template");
        // One that needs its expression keeps it.
        let before = live_bytes();
        let regex = Selector::parse(Kind::Template, "https://example.com/rooms/{+id}").unwrap();
        assert!(live_bytes() - before > 1024);
        drop(regex);
    }

    #[test]
    fn only_literal_and_plain_var_segments_skip_the_regex() {
        for (t, simple) in [
            ("https://example.com/rooms/{id}/s1", true),
            ("https://example.com/{a}/{b.c}/{%41}/", true),
            ("{id}", true),
            ("https://example.com/rooms/{+id}", false),
            ("https://example.com/rooms/{id}{?q}", false),
            ("https://example.com/rooms/{a,b}", false),
            ("https://example.com/rooms/{id*}", false),
            ("https://example.com/rooms/{id:3}", false),
            // Literals and plain variables in one segment (issue 19: matched by segment too).
            ("https://example.com/rooms/s{id}", true),
            ("https://example.com/rooms/{a}-{b}/x", true),
            ("https://example.com/{id}.json", true),
            ("https://example.com/rooms/{a}{b}", true),
            ("https://example.com/rooms/s{+id}", false),
            ("https://example.com/rooms/{/id}", false),
        ] {
            let s = Selector::parse(Kind::Template, t).unwrap();
            assert!(s.is_pattern(), "{t}");
            assert_eq!(s.segments().is_some(), simple, "{t}");
        }
        let s = Selector::parse(Kind::Template, "https://e/r/{id}/s").unwrap();
        for (topic, hit) in [
            ("https://e/r/7/s", true),
            ("https://e/r//s", true),
            ("https://e/r/a%2Fb/s", true),
            ("https://e/r/a,b.c~_-/s", true),
            ("https://e/r/{id}/s", true),
            ("https://e/r/a/b/s", false),
            ("https://e/r/%2/s", false),
            ("https://e/r/a b/s", false),
            ("https://e/r/é/s", false),
            ("https://e/r/7/s/", false),
            ("https://e/r/7/s?q", false),
            ("https://e/r/a?b/s", false),
            ("https://e/r/a=b/s", false),
        ] {
            assert_eq!(s.matches(topic), hit, "{topic}");
            assert_eq!(s.regex_matches(topic), hit, "regex {topic}");
        }
        // Mixed segments, where a literal is also what a variable takes (`-`, `.`), or starts a
        // triplet's text: decided as the regular expression decides.
        for (template, topic, hit) in [
            ("https://e/r/s{id}", "https://e/r/s7", true),
            ("https://e/r/s{id}", "https://e/r/s", true),
            ("https://e/r/s{id}", "https://e/r/7", false),
            ("https://e/r/s{id}", "https://e/r/s7/x", false),
            ("https://e/r/{a}-{b}", "https://e/r/x-y-z", true),
            ("https://e/r/{a}-{b}", "https://e/r/-", true),
            ("https://e/r/{a}-{b}", "https://e/r/xyz", false),
            ("https://e/r/{a}-{b}", "https://e/r/x-y?z", false),
            ("https://e/r/{id}.json", "https://e/r/a.b.json", true),
            ("https://e/r/{id}.json", "https://e/r/a.b.jso", false),
            ("https://e/r/{id}41", "https://e/r/%41", false),
            ("https://e/r/{id}41", "https://e/r/%4141", true),
            ("https://e/r/%41{id}", "https://e/r/%41%41", true),
            ("https://e/r/%41{id}", "https://e/r/A", false),
            ("https://e/r/{a}{b}x", "https://e/r/%2Fx", true),
            ("https://e/r/{a}{b}x", "https://e/r/%2x", false),
            ("https://e/r/x{id}y", "https://e/r/x{id}y", true),
        ] {
            let s = Selector::parse(Kind::Template, template).unwrap();
            assert!(s.segments().is_some(), "{template}");
            assert_eq!(s.matches(topic), hit, "{template} {topic}");
            assert_eq!(s.regex_matches(topic), hit, "regex {template} {topic}");
        }
    }

    #[test]
    fn a_triplet_is_a_percent_and_two_hex_digits_in_literals_and_names_alike() {
        for (text, ok) in [
            ("%2F", true),
            ("%2f", true),
            ("%2", false),
            ("%", false),
            ("%G0", false),
            ("a%0", false),
        ] {
            assert_eq!(
                pct_encoded_at(text.as_bytes(), text.find('%').unwrap()),
                ok,
                "{text}"
            );
            assert_eq!(literals(text), ok, "literal {text}");
            assert_eq!(varname(&format!("v{text}")), ok, "varname v{text}");
        }
    }

    fn t(text: &str) -> Selector {
        Selector::parse(Kind::Template, text).unwrap()
    }

    fn u(text: &str) -> Selector {
        Selector::parse(Kind::UrlPattern, text).unwrap()
    }

    /// `(template, topic, matches)`: a case says what Mercure's reference hub answers.
    fn check_templates(cases: &[(&str, &str, bool)]) {
        for &(template, topic, want) in cases {
            let s = t(template);
            assert_eq!(s.matches(topic), want, "{template:?} vs {topic:?}");
        }
    }

    #[test]
    fn draft_07_examples() {
        // The spec's own: `https://example.com/books/{id}` selects every book.
        check_templates(&[
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/foo-bar_baz.~",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1/chapters/2",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/movies/1",
                false,
            ),
            // An expression may expand to nothing (an undefined or empty variable).
            (
                "https://example.com/books/{id}",
                "https://example.com/books/",
                true,
            ),
            (
                "https://example.com/{resource}/{id}",
                "https://example.com/movies/1",
                true,
            ),
            // The conformance suite's cases (v0.24.2).
            (
                "https://example.net/foo/{random}",
                "https://example.net/foo/0123456789abcdef0123456789abcdef01234567",
                true,
            ),
            (
                "https://example.net/bar/{var}",
                "https://example.net/foo/will-not-match}",
                false,
            ),
            // The template's own text matches, as an exact topic would.
            (
                "https://example.com/books/{id}",
                "https://example.com/books/{id}",
                true,
            ),
        ]);
    }

    /// RFC 6570's examples (section 3.2), read the other way: each expansion matches its
    /// template; what the operator's characters cannot produce does not.
    #[test]
    fn rfc_6570_levels() {
        check_templates(&[
            // Level 1: simple string expansion, unreserved characters and %XX only.
            ("{var}", "value", true),
            ("{hello}", "Hello%20World%21", true),
            ("{hello}", "Hello World!", false),
            ("{var}", "a/b", false),
            // Level 2: reserved expansion and fragments.
            ("{+var}", "value", true),
            ("{+hello}", "Hello%20World!", true),
            ("{+path}/here", "/foo/bar/here", true),
            ("here?ref={+path}", "here?ref=/foo/bar", true),
            ("X{#var}", "X#value", true),
            ("X{#hello}", "X#Hello%20World!", true),
            ("X{#hello}", "X", true),
            ("X{#hello}", "Xvalue", false),
            // Level 3: several variables, and every operator.
            ("map?{x,y}", "map?1024,768", true),
            ("{x,hello,y}", "1024,Hello%20World%21,768", true),
            ("{+x,hello,y}", "1024,Hello%20World!,768", true),
            ("{+path,x}/here", "/foo/bar,1024/here", true),
            ("{#x,hello,y}", "#1024,Hello%20World!,768", true),
            ("X{.var}", "X.value", true),
            ("X{.x,y}", "X.1024.768", true),
            ("X{.x,y}", "X.1024/768", false),
            ("{/var}", "/value", true),
            ("{/var,x}/here", "/value/1024/here", true),
            ("{/var}", "/a/b", false),
            ("{;x,y}", ";x=1024;y=768", true),
            ("{;x,y,empty}", ";x=1024;y=768;empty", true),
            ("{?x,y}", "?x=1024&y=768", true),
            ("{?x,y,empty}", "?x=1024&y=768&empty=", true),
            ("?fixed=yes{&x}", "?fixed=yes&x=1024", true),
            ("{&x,y,empty}", "&x=1024&y=768&empty=", true),
            // Level 4: prefixes and explosion.
            ("{var:3}", "val", true),
            ("{var:30}", "value", true),
            ("{/list*}", "/red/green/blue", true),
            ("{/list*,path:4}", "/red/green/blue/%2Ffoo", true),
            ("{;list*}", ";list=red;list=green;list=blue", true),
            ("{?keys*}", "?semi=%3B&dot=.&comma=%2C", true),
            ("{&keys*}", "&semi=%3B&dot=.&comma=%2C", true),
            ("X{.list*}", "X.red.green.blue", true),
            ("{#keys*}", "#semi=;,dot=.,comma=,", true),
            ("{+keys*}", "semi=;,dot=.,comma=,", true),
            ("{list*}", "red,green,blue", true),
            // Without explosion, a list's items are comma-separated within one value.
            ("{list}", "red,green,blue", true),
            ("{/list}", "/red,green,blue", true),
            ("{/list}", "/red/green", false),
        ]);
    }

    #[test]
    fn what_is_not_a_template_is_an_exact_topic() {
        for text in [
            "https://example.com/{unclosed",
            "a{b c}d",
            "{}",
            "{=x}",
            "{x,}",
            "{.}",
            "{x:0}",
            "{x:10000}",
            "{x:}",
            "{a..b}",
            "x {y}",
            "{x}\"",
            "100%{x}",
            "will-not-match}",
        ] {
            let s = t(text);
            assert!(s.exact_topic().is_some(), "{text:?} is exact");
            assert!(s.matches(text), "{text:?} matches itself");
            assert!(!s.matches("x"), "{text:?} matches nothing else");
        }
        // A varname may hold dots between characters and %XX; `{a.b}` is one variable.
        assert!(t("{a.b}").matches("v"));
        assert!(t("{a%20b}").matches("v"));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(
            t(BOOKS_T).literal_prefix(),
            Some("https://example.com/books/")
        );
        assert_eq!(t("{+all}").literal_prefix(), Some(""));
        assert_eq!(t("a{#x}").literal_prefix(), Some("a"));
        assert_eq!(t("plain").literal_prefix(), None);
        assert_eq!(u("https://example.com/:x").literal_prefix(), None);
        // Every topic a template selects starts with its prefix (spot checks; the hub's model
        // test covers the index built on it).
        for (template, topic) in [(BOOKS_T, "https://example.com/books/1"), ("a{#x}", "a#y")] {
            let s = t(template);
            assert!(s.matches(topic) && topic.starts_with(s.literal_prefix().unwrap()));
        }
    }

    const BOOKS_T: &str = "https://example.com/books/{id}";

    #[test]
    fn anchored_and_escaped() {
        check_templates(&[
            ("a.b/{x}", "a.b/1", true),
            // A literal `.` is not any character, and the whole topic must match.
            ("a.b/{x}", "aXb/1", false),
            ("a.b/{x}", "za.b/1", false),
            ("a.b/{x}", "a.b/1z/", false),
            ("a+b/{x}", "a+b/1", true),
            ("(a)/{x}", "(a)/1", true),
            ("$/{x}", "$/1", true),
            ("é/{x}", "é/1", true),
            ("é/{x}", "e/1", false),
        ]);
    }

    #[test]
    fn star_and_prefixes() {
        for kind in [Kind::Template, Kind::Exact, Kind::UrlPattern] {
            let s = Selector::parse(kind, "*").unwrap();
            assert!(s.is_any() && s.matches("") && s.matches("anything at all"));
        }
        // `prefix/*` only in claims; elsewhere `*` at the end is a character.
        let p = Selector::claim("news/*").unwrap();
        assert!(p.matches("news/") && p.matches("news/1/2") && !p.matches("newsletter"));
        assert!(!t("news/*").matches("news/1") && t("news/*").matches("news/*"));
        assert_eq!(
            Selector::parse(Kind::Exact, "{x}").unwrap().exact_topic(),
            Some("{x}")
        );
    }

    #[test]
    fn caps() {
        assert_eq!(Selector::parse(Kind::Exact, ""), Err(SelectorError::Empty));
        let long = "a".repeat(MAX_SELECTOR_BYTES + 1);
        for kind in [Kind::Template, Kind::Exact, Kind::UrlPattern] {
            assert_eq!(Selector::parse(kind, &long), Err(SelectorError::TooLong));
            assert_eq!(
                Selector::parse(kind, "a\u{85}b"),
                Err(SelectorError::ControlCharacter)
            );
            assert_eq!(
                Selector::parse(kind, "a\nb"),
                Err(SelectorError::ControlCharacter)
            );
        }
        assert!(Selector::parse(Kind::Exact, &long[1..]).is_ok());
        let many = "{x}".repeat(MAX_EXPRESSIONS);
        assert!(t(&many).is_pattern());
        let too_many = "{x}".repeat(MAX_EXPRESSIONS + 1);
        assert_eq!(
            Selector::parse(Kind::Template, &too_many),
            Err(SelectorError::TooComplex)
        );
        // The largest template there can be compiles within the size limit, quickly.
        let big = format!(
            "{}{}",
            "{+a*,b*,c*}".repeat(MAX_EXPRESSIONS),
            "x".repeat(MAX_SELECTOR_BYTES - 11 * MAX_EXPRESSIONS)
        );
        assert_eq!(big.len(), MAX_SELECTOR_BYTES);
        let s = t(&big);
        assert!(s.is_pattern());
        assert!(!s.matches(&"a,".repeat(5000)));
    }

    #[test]
    fn url_pattern_examples() {
        for (pattern, topic, want) in [
            // Draft-08's own examples.
            (
                "https://example.com/books/:id",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/:id",
                "https://example.com/books/1/chapters",
                false,
            ),
            (
                "https://example.com/bar/:id",
                "https://example.com/bar/x",
                true,
            ),
            (
                "https://example.com/:selector",
                "https://example.com/anything",
                true,
            ),
            // The conformance suite's (master).
            (
                "https://example.net/foo/:random",
                "https://example.net/foo/0123456789abcdef",
                true,
            ),
            (
                "https://example.net/bar/:var",
                "https://example.net/foo/will-not-match",
                false,
            ),
            // Relative patterns and topics against the hub's URL.
            (
                "/.well-known/mercure/subscriptions/:matchType/:match/:subscriber",
                "/.well-known/mercure/subscriptions/Exact/foo/urn%3Auuid%3A1",
                true,
            ),
            (
                "/.well-known/mercure/subscriptions{/:matchType}?{/:match}?{/:subscriber}?",
                "/.well-known/mercure/subscriptions",
                true,
            ),
            (
                "/.well-known/mercure/subscriptions{/:matchType}?{/:match}?{/:subscriber}?",
                "/.well-known/mercure/subscriptions/URLPattern",
                true,
            ),
            (
                "/.well-known/mercure/subscriptions/:t",
                "https://example.com/.well-known/mercure/subscriptions/x",
                false,
            ),
            // URL Pattern's own syntax: wildcards, modifiers, regexp groups, search, hash.
            ("https://example.com/*", "https://example.com/a/b/c", true),
            (
                "https://example.com/books/:id(\\d+)",
                "https://example.com/books/42",
                true,
            ),
            (
                "https://example.com/books/:id(\\d+)",
                "https://example.com/books/x42",
                false,
            ),
            (
                "https://example.com/demo/books/:id.jsonld",
                "https://example.com/demo/books/1.jsonld",
                true,
            ),
            (
                "https://example.com/files/:name+",
                "https://example.com/files/a/b",
                true,
            ),
            (
                "https://example.com/x?q=:v",
                "https://example.com/x?q=1",
                true,
            ),
            ("https://example.com/x", "https://example.com/x?q=1", true),
            ("https://example.com/x#h", "https://example.com/x#h", true),
            ("https://example.com/x#h", "https://example.com/x#g", false),
            ("https://*.example.com/x", "https://a.example.com/x", true),
            ("http{s}?://example.com/x", "http://example.com/x", true),
            // Host names are case-insensitive (URL canonicalisation); paths are not.
            (
                "https://EXAMPLE.com/Books",
                "https://example.COM/Books",
                true,
            ),
            (
                "https://example.com/Books",
                "https://example.com/books",
                false,
            ),
            // A topic that is not a URL, even relative to the hub, matches no pattern.
            ("https://example.com/*", "https://exa mple.com/", false),
            ("*", "not a url", true),
        ] {
            assert_eq!(u(pattern).matches(topic), want, "{pattern:?} vs {topic:?}");
        }
    }

    #[test]
    fn bad_url_patterns_are_refused() {
        for text in [
            "https://example.com/:id(",
            "https://example.com/(a|b",
            "https://example.com/:",
            "https://example.com/{",
            // Lookahead and back-references: not in `regex`, so refused, never backtracking.
            "https://example.com/:id((?=a)a)",
            "https://example.com/:id((a)\\1)",
        ] {
            assert!(
                matches!(
                    Selector::parse(Kind::UrlPattern, text),
                    Err(SelectorError::BadPattern(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn sets() {
        let s = Selectors::new([
            "chat/42",
            "news/*",
            "a*b",
            "x/y/*",
            "chat/42",
            "https://example.com/books/{id}",
        ]);
        for (topic, want) in [
            ("chat/42", true),
            ("chat/4", false),
            ("news/1", true),
            ("newsletter", false),
            ("a*b", true),
            ("ab", false),
            ("x/y/z", true),
            ("https://example.com/books/1", true),
            ("https://example.com/books/1/2", false),
            ("", false),
        ] {
            assert_eq!(s.matches(topic), want, "{topic:?}");
            let mut cache = MatchCache::new(16);
            assert_eq!(s.matches_cached(topic, &mut cache), want, "{topic:?}");
        }
        assert_eq!(Selectors::new(["a", "*"]), Selectors::any());
        assert!(Selectors::new([]).is_empty());
        // A selector that cannot compile selects nothing in `new`, and is reported by `claims`.
        let long = "a".repeat(MAX_SELECTOR_BYTES + 1);
        assert!(Selectors::new([long.as_str()]).is_empty());
        assert_eq!(
            Selectors::claims(["a", long.as_str()]),
            Err(SelectorError::TooLong)
        );
        let union = Selectors::new(["a", "p/*"])
            .union(&Selectors::from_compiled([u("https://example.com/:x")]));
        assert!(union.matches("a") && union.matches("p/q"));
        assert!(union.matches("https://example.com/y") && !union.matches("b"));
        assert_eq!(
            Selectors::new(["a"]).union(&Selectors::any()),
            Selectors::any()
        );
        assert!(s.matches_all(["chat/42", "news/2"]) && !s.matches_all(["chat/42", "x"]));
        assert!(!s.matches_all([]) && !s.matches_any([]));
    }

    #[test]
    fn cache_is_bounded_counted_and_right() {
        let a = t("https://example.com/a/{x}");
        let b = u("https://example.com/b/:x");
        let mut cache = MatchCache::new(4);
        let topics: Vec<String> = (0..10)
            .flat_map(|i| {
                [
                    format!("https://example.com/a/{i}"),
                    format!("https://example.com/b/{i}"),
                ]
            })
            .collect();
        for round in 0..3 {
            for topic in &topics {
                for sel in [&a, &b] {
                    // Asked twice in a row: a miss, then a hit (nothing was evicted between).
                    for _ in 0..2 {
                        assert_eq!(cache.matches(sel, topic), sel.matches(topic), "{topic}");
                        assert!(cache.len() <= 4, "round {round}");
                    }
                }
            }
        }
        let stats = cache.stats();
        // 20 topics and 2 selectors are 40 entries for 4 places: every round misses again.
        assert_eq!(stats.misses, 3 * 20 * 2);
        assert_eq!(stats.hits, 3 * 20 * 2);
        assert_eq!(cache.len(), 4);
        assert_eq!(stats.misses - stats.evictions, cache.len() as u64);
        // Exact, `*` and prefixes are not cached.
        let mut c = MatchCache::new(4);
        assert!(c.matches(&t("x"), "x") && c.matches(&t("*"), "y"));
        assert!(c.is_empty() && c.stats() == CacheStats::default());
        // A cached result is read back, not recomputed: same answers, one miss per pair.
        let mut c = MatchCache::new(100);
        for _ in 0..5 {
            assert!(c.matches(&a, "https://example.com/a/1"));
            assert!(!c.matches(&b, "https://example.com/a/1"));
        }
        assert_eq!(c.stats().misses, 2);
        assert_eq!(c.stats().hits, 8);
    }

    #[test]
    fn one_text_is_compiled_once_while_held() {
        let text = "https://example.com/shared-test/{id}";
        let a = shared(Kind::Template, text).unwrap();
        let b = shared(Kind::Template, text).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another reading of the same text is another selector.
        let c = shared(Kind::Exact, text).unwrap();
        assert!(!Arc::ptr_eq(&a, &c) && c.exact_topic().is_some());
        let p = shared_claim(Kind::Template, "shared-test/*").unwrap();
        let q = shared(Kind::Template, "shared-test/*").unwrap();
        assert!(p.matches("shared-test/x") && !q.matches("shared-test/x"));
        // Two tokens naming one template: one cache entry serves both.
        let one = Selectors::new([text]);
        let two = Selectors::new([text]);
        let mut cache = MatchCache::new(8);
        assert!(one.matches_cached("https://example.com/shared-test/1", &mut cache));
        assert!(two.matches_cached("https://example.com/shared-test/1", &mut cache));
        assert_eq!((cache.stats().misses, cache.stats().hits), (1, 1));
        // Held weakly: once nobody holds it, the next holder compiles it again.
        let id = a.id;
        drop((a, b, one, two));
        assert_ne!(shared(Kind::Template, text).unwrap().id, id);
        // Refusals are the compiler's.
        assert_eq!(shared(Kind::Exact, ""), Err(SelectorError::Empty));
    }

    #[test]
    fn ids_are_never_shared() {
        // Two compilations of one text are two cache keys: a result is only ever read for
        // the selector that computed it.
        let (x, y) = (t("{a}"), t("{a}"));
        assert_ne!(x.id, y.id);
        assert_eq!(x, y);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Untrusted selectors of any kind never panic, compile or are refused, and match
            /// arbitrary topics without panicking.
            #[test]
            fn arbitrary_selectors_never_panic(
                text in "[a-z:/{}()*+?.#;&=,%\\\\|!@$\\[\\]^ 0-9A-F-]{0,60}",
                topic in "[a-z:/.?#%0-9=&-]{0,40}",
            ) {
                for kind in [Kind::Template, Kind::Exact, Kind::UrlPattern] {
                    if let Ok(s) = Selector::parse(kind, &text) {
                        let _ = s.matches(&topic);
                        let _ = s.matches(&text);
                    }
                }
                let _ = Selector::claim(&text);
            }

            /// URL-shaped patterns, which reach the URL Pattern parser's deeper paths.
            #[test]
            fn url_shaped_patterns_never_panic(
                scheme in "(https?|[a-z*]{1,5}|:p|\\(.{0,4}\\)|\\{s\\}\\?)",
                host in "([a-z*.]{0,12}|:h|\\[[0-9a-f:]{0,8}\\]?)",
                port in "(:[0-9*]{0,6})?",
                path in "(/[a-z:*(){}?+\\\\d.]{0,10}){0,4}",
                rest in "(\\?[a-z=:*]{0,8})?(#[a-z:*]{0,6})?",
                topic in "https?://[a-z.]{1,10}(/[a-z0-9]{0,5}){0,3}",
            ) {
                let text = format!("{scheme}://{host}{port}{path}{rest}");
                if let Ok(s) = Selector::parse(Kind::UrlPattern, &text) {
                    let _ = s.matches(&topic);
                }
                let relative = format!("{path}{rest}");
                if let Ok(s) = Selector::parse(Kind::UrlPattern, &relative) {
                    let _ = s.matches(&topic);
                    let _ = s.matches(&relative);
                }
            }

            /// A template whose variables are given values expands to a topic it matches
            /// (RFC 6570 level 1 and 2 expansion written out here).
            #[test]
            fn expansions_match_their_template(
                parts in proptest::collection::vec(("[a-z/.]{0,6}", "[a-zA-Z0-9_~.-]{0,6}", any::<bool>()), 1..5),
            ) {
                let mut template = String::new();
                let mut topic = String::new();
                for (i, (lit, value, plus)) in parts.iter().enumerate() {
                    template.push_str(lit);
                    topic.push_str(lit);
                    template.push_str(&format!("{{{}v{i}}}", if *plus { "+" } else { "" }));
                    topic.push_str(value);
                }
                prop_assert!(t(&template).matches(&topic), "{} {}", template, topic);
                // A character no expansion produces breaks the match.
                let broken = format!("{topic} ");
                prop_assert!(!t(&template).matches(&broken));
            }
        }
    }
}
