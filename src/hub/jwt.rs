//! Subscriber and publisher tokens: a verifier for JWTs (RFC 7519) signed with HS256 in the
//! compact JWS serialization (RFC 7515), carrying the claims of either Mercure draft, and what
//! they allow as sets of topic selectors ([`crate::hub::selector`]):
//! - draft-07: `{"mercure": {"subscribe": [..], "publish": [..], "payload": ..}, "exp": ..}`,
//!   each selector an exact topic, `*`, a URI Template, or (ours) `prefix/*`;
//! - draft-08: an access token (RFC 9068, header `typ: at+jwt`) whose
//!   `authorization_details` (RFC 9396) hold Mercure details: `{"type": "mercure", "actions":
//!   ["publish", "subscribe"], "topics": [{"match": .., "matchType": "Exact" | "URLPattern"}],
//!   "payload": {..}}`. The type `https://mercure.rocks/authorization-detail`, and the member
//!   `match_type` with `exact` / `urlpattern`, are read too: the reference hub and its clients
//!   used them (Mercure's conformance suite still mints that shape). Details of other types are
//!   ignored (RFC 9396 lets one token carry several resources' details).
//!
//! Both become the same [`Claims`]: the `subscribe` and `publish` selectors, the payloads and
//! the expiry. That is the one thing the rest of the server reads, so one code path decides
//! what any token may read and publish, whatever its draft.
//!
//! What is accepted, in the order it is checked (the first failure is the reason reported):
//! 1. at most [`MAX_TOKEN_BYTES`] bytes, else [`JwtError::TooLarge`];
//! 2. exactly three base64url segments, unpadded and canonical (RFC 7515 section 2), else
//!    `Malformed`;
//! 3. a header that is a JSON object whose `alg` is exactly `HS256` (`none` and every other
//!    algorithm are `BadAlgorithm`; the algorithm is never taken from the token), whose `typ`,
//!    if present, is `JWT` or `at+jwt` (RFC 7519 section 5.1, RFC 9068; media types compare
//!    case-insensitively, `application/` optional), and which has no `crit` (we implement no
//!    extension, so RFC 7515 section 4.1.11 says reject), else `Malformed`;
//! 4. the HMAC-SHA-256 of the first two segments, compared in constant time, else
//!    `BadSignature`;
//! 5. only then the claims: a JSON object; `exp` and `nbf` NumericDates (seconds, possibly
//!    fractional), `mercure.subscribe` and `mercure.publish` arrays of strings; each may be
//!    absent or `null` (Go's encoder writes `null` for an empty list). `authorization_details`
//!    only with `typ: at+jwt` and an `exp`, never beside a `mercure` claim (which of the two
//!    would speak?), every Mercure detail well formed (non-empty `actions` of `publish` and
//!    `subscribe` only, non-empty `topics` of objects with a non-empty `match` and a known
//!    matcher type), at most [`MAX_DETAILS`] details and [`MAX_DETAIL_TOPICS`] topics in all.
//!    Every selector must compile (see [`crate::hub::selector`]); at most [`MAX_CLAIM_PATTERNS`] of
//!    a draft-07 token's selectors may be templates. Anything else there is `Malformed`, the
//!    whole token: a selector list is never half accepted (draft-08 says the same);
//! 6. with an audience configured ([`Verifier::with_audience`]), an access token whose `aud`
//!    (a string or an array of strings) does not name it is `WrongAudience`;
//! 7. `now < exp + leeway`, else `Expired`; `now + leeway >= nbf`, else `NotYetValid`.
//!
//! The key is never chosen by the token: `kid`, `jwk`, `jku` and the like are ignored. A
//! member named twice in the header or the claims counts with its last value, which RFC 7515
//! section 5.2 allows (serde_json keeps the last).
//!
//! `iss` and `iat` are not checked, nor `aud` without a configured audience: the hub has one
//! key of its own, as Mercure's own hub with self-issued tokens.
//!
//! **Invariant:** no IO and no clock here: `now` is an argument.
//! **Invariant:** no input panics or makes memory grow past a small multiple of
//! [`MAX_TOKEN_BYTES`], which is checked before anything is decoded.
//! **Invariant:** the hash, the MAC and the constant-time comparison are RustCrypto's (`hmac`,
//! `sha2`, `subtle` through `Mac::verify_slice`); base64 is the `base64` crate's. Nothing
//! cryptographic is written by hand.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

use crate::hub::selector::{Kind, Selector};

type HmacSha256 = Hmac<Sha256>;

/// Tokens longer than this are refused before any decoding ([`JwtError::TooLarge`]).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The leeway `--jwt-leeway-ms` defaults to: clocks of the issuer and the hub may differ by this
/// much before `exp` or `nbf` refuse a token.
pub const DEFAULT_LEEWAY_MS: u64 = 5_000;

/// RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (32 bytes). The
/// verifier takes shorter keys (Mercure's examples use `!ChangeMe!`); the configuration may
/// warn or refuse below this.
pub const MIN_KEY_BYTES: usize = 32;

/// The most Mercure authorization details one access token may carry.
pub const MAX_DETAILS: usize = 100;

/// The most topic matchers all the Mercure details of one access token may carry together.
pub const MAX_DETAIL_TOPICS: usize = 100;

/// The most selectors of a draft-07 token that may be URI Templates (each is compiled when the
/// token is verified).
pub const MAX_CLAIM_PATTERNS: usize = 100;

/// The authorization detail types read as Mercure's.
pub const DETAIL_TYPES: [&str; 2] = ["mercure", "https://mercure.rocks/authorization-detail"];

/// The cookie Mercure's hubs and client libraries use for browsers, which cannot set an
/// `Authorization` header on an `EventSource`.
pub const COOKIE_NAME: &str = "mercureAuthorization";

/// The cookie name draft-08 of Mercure recommends instead (read as well as [`COOKIE_NAME`]).
pub const ACCESS_COOKIE_NAME: &str = "mercureAccessToken";

/// Why a token is refused. Every variant is answered the same way on the wire (`401` with
/// `WWW-Authenticate: Bearer error="invalid_token"`); the reason is for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three canonical base64url segments, or a header or claims that are not the JSON
    /// expected (including a `typ` other than a JWT's and any `crit`).
    Malformed,
    /// The header's `alg` is not `HS256` (`none` included).
    BadAlgorithm,
    /// The signature is not the HMAC-SHA-256 of the token under our key.
    BadSignature,
    /// `exp` plus the leeway has passed.
    Expired,
    /// `nbf` minus the leeway is still in the future.
    NotYetValid,
    /// An access token whose `aud` does not name the configured audience.
    WrongAudience,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtError::TooLarge => "token too large",
            JwtError::Malformed => "malformed token",
            JwtError::BadAlgorithm => "token algorithm is not HS256",
            JwtError::BadSignature => "bad token signature",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::WrongAudience => "token for another audience",
        })
    }
}

impl std::error::Error for JwtError {}

pub use crate::hub::selector::Selectors;

/// What a verified token allows, whichever draft it was written for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// The private topics the bearer may receive: `mercure.subscribe`, or the topics of the
    /// details whose `actions` hold `subscribe`.
    pub subscribe: Selectors,
    /// The topics the bearer may publish to: `mercure.publish`, or the topics of the details
    /// whose `actions` hold `publish`.
    pub publish: Selectors,
    /// `exp` in Unix milliseconds (rounded down), if the token has one: a stream opened with
    /// this token ends then. No leeway is added here; the leeway only decides acceptance.
    pub exp_unix_ms: Option<i64>,
    /// The payloads to show with a subscription, in the token's order, each with the
    /// subscriptions it is for: draft-07's `mercure.payload` is for every subscription;
    /// draft-08's are those of `subscribe` details, for the subscriptions whose own selector
    /// text their topics match. See [`Claims::payload_for`].
    pub payloads: Box<[(Selectors, Value)]>,
    /// `sub`, when it is a string: who the bearer is.
    pub subject: Option<Box<str>>,
    /// Whether this was a draft-08 access token (`authorization_details`).
    pub access_token: bool,
}

impl Claims {
    /// The payload for a subscription whose selector reads `selector`: the first whose
    /// selectors match that text as if it were a topic (draft-08 section "Payloads"; a draft-07
    /// `mercure.payload` is for every subscription).
    pub fn payload_for(&self, selector: &str) -> Option<&Value> {
        self.payloads
            .iter()
            .find(|(sel, _)| sel.matches(selector))
            .map(|(_, v)| v)
    }
}

/// Verifies HS256 tokens with one key. Cheap to clone; the key's HMAC pads are computed once.
#[derive(Clone)]
pub struct Verifier {
    /// HMAC-SHA-256 already keyed: cloning it skips hashing the key's two pads per token.
    mac: HmacSha256,
    leeway_ms: i64,
    /// The resource identifier an access token's `aud` must name, when configured.
    audience: Option<Box<str>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key, not even in a debug log.
        f.debug_struct("Verifier")
            .field("leeway_ms", &self.leeway_ms)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for tokens signed with `key`, accepting clocks `leeway_ms` apart.
    pub fn new(key: &[u8], leeway_ms: u64) -> Verifier {
        Verifier {
            mac: keyed(key),
            leeway_ms: i64::try_from(leeway_ms).unwrap_or(i64::MAX),
            audience: None,
        }
    }

    /// This verifier, requiring draft-08 access tokens to name `audience` (the hub's resource
    /// identifier, draft-08 section "Token Validation") in their `aud`.
    pub fn with_audience(mut self, audience: Option<&str>) -> Verifier {
        self.audience = audience.map(Box::from);
        self
    }

    /// Verifies a compact JWS (HS256 only) and returns its claims. See the module docs for
    /// what is checked, in which order.
    pub fn verify(&self, token: &[u8], now_unix_ms: i64) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split(|&b| b == b'.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let head = decode_object(header)?;
        check_header(&head)?;

        // The signing input is the first two segments as sent, dot included (RFC 7515 5.2).
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(signing_input);
        // `verify_slice` compares in constant time (subtle) and refuses a wrong length.
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::BadSignature)?;

        let claims = decode_object(payload)?;
        let exp = numeric_date_ms(claims.get("exp"), Round::Down)?;
        let nbf = numeric_date_ms(claims.get("nbf"), Round::Up)?;
        let legacy = claims.get("mercure").filter(|v| !v.is_null());
        let details = claims.get("authorization_details").filter(|v| !v.is_null());
        let mut access_token = false;
        let (subscribe, publish, payloads) = match (legacy, details) {
            (None, None) => (Selectors::default(), Selectors::default(), Vec::new()),
            (Some(Value::Object(m)), None) => draft_07(m)?,
            (Some(_), None) => return Err(JwtError::Malformed),
            (None, Some(details)) => {
                // RFC 9068 section 4: an access token says so in its header, and expires.
                let typed = matches!(head.get("typ"), Some(Value::String(t)) if is_at_jwt(t));
                if !typed || exp.is_none() {
                    return Err(JwtError::Malformed);
                }
                let parsed = draft_08(details)?;
                if let Some(audience) = &self.audience {
                    if !names_audience(claims.get("aud"), audience) {
                        return Err(JwtError::WrongAudience);
                    }
                }
                access_token = true;
                parsed
            }
            (Some(_), Some(_)) => return Err(JwtError::Malformed),
        };
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => Some(s.as_str().into()),
            _ => None,
        };
        if let Some(exp) = exp {
            if now_unix_ms >= exp.saturating_add(self.leeway_ms) {
                return Err(JwtError::Expired);
            }
        }
        if let Some(nbf) = nbf {
            if now_unix_ms.saturating_add(self.leeway_ms) < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        Ok(Claims {
            subscribe,
            publish,
            exp_unix_ms: exp,
            payloads: payloads.into_boxed_slice(),
            subject,
            access_token,
        })
    }
}

/// What a token's claims say, read: subscribe, publish, payloads.
type Grants = (Selectors, Selectors, Vec<(Selectors, Value)>);

/// Draft-07's `mercure` claim.
fn draft_07(m: &Map<String, Value>) -> Result<Grants, JwtError> {
    let patterns = [m.get("subscribe"), m.get("publish")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter(|v| v.as_str().is_some_and(|s| s.contains('{')))
        .count();
    if patterns > MAX_CLAIM_PATTERNS {
        return Err(JwtError::Malformed);
    }
    let subscribe = selectors(m.get("subscribe"))?;
    let publish = selectors(m.get("publish"))?;
    let payloads = match m.get("payload") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => vec![(Selectors::any(), v.clone())],
    };
    Ok((subscribe, publish, payloads))
}

/// Draft-08's `authorization_details` (RFC 9396): the Mercure details, all well formed, or the
/// token is refused.
fn draft_08(details: &Value) -> Result<Grants, JwtError> {
    let Value::Array(details) = details else {
        return Err(JwtError::Malformed);
    };
    let (mut subscribe, mut publish) = (Selectors::default(), Selectors::default());
    let mut payloads = Vec::new();
    let (mut count, mut topics) = (0usize, 0usize);
    for detail in details {
        // RFC 9396 section 2: every detail is an object with a string `type`.
        let Some(Value::String(kind)) = detail.get("type") else {
            return Err(JwtError::Malformed);
        };
        if !DETAIL_TYPES.contains(&kind.as_str()) {
            continue;
        }
        count += 1;
        if count > MAX_DETAILS {
            return Err(JwtError::Malformed);
        }
        let (mut may_publish, mut may_subscribe) = (false, false);
        match detail.get("actions") {
            Some(Value::Array(actions)) if !actions.is_empty() => {
                for action in actions {
                    match action.as_str() {
                        Some("publish") => may_publish = true,
                        Some("subscribe") => may_subscribe = true,
                        _ => return Err(JwtError::Malformed),
                    }
                }
            }
            _ => return Err(JwtError::Malformed),
        }
        let matchers = match detail.get("topics") {
            Some(Value::Array(t)) if !t.is_empty() => t,
            _ => return Err(JwtError::Malformed),
        };
        topics += matchers.len();
        if topics > MAX_DETAIL_TOPICS {
            return Err(JwtError::Malformed);
        }
        let compiled: Result<Vec<_>, JwtError> = matchers.iter().map(matcher).collect();
        let selectors = Selectors::from_shared(compiled?);
        if may_publish {
            publish = publish.union(&selectors);
        }
        if may_subscribe {
            subscribe = subscribe.union(&selectors);
            match detail.get("payload") {
                None | Some(Value::Null) => {}
                Some(p) => payloads.push((selectors, p.clone())),
            }
        }
    }
    Ok((subscribe, publish, payloads))
}

/// One topic matcher of a detail: `{"match": "..", "matchType": "Exact" | "URLPattern"}`
/// (`match_type` and the lower-case names as the reference hub reads them too; both members
/// at once must agree).
fn matcher(m: &Value) -> Result<std::sync::Arc<Selector>, JwtError> {
    let Value::Object(m) = m else {
        return Err(JwtError::Malformed);
    };
    let Some(Value::String(text)) = m.get("match") else {
        return Err(JwtError::Malformed);
    };
    let kind_of = |member: &str| match m.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => match t.as_str() {
            "Exact" | "exact" => Ok(Some(Kind::Exact)),
            "URLPattern" | "urlpattern" => Ok(Some(Kind::UrlPattern)),
            _ => Err(JwtError::Malformed),
        },
        Some(_) => Err(JwtError::Malformed),
    };
    let kind = match (kind_of("matchType")?, kind_of("match_type")?) {
        (Some(a), Some(b)) if a != b => return Err(JwtError::Malformed),
        (a, b) => a.or(b).unwrap_or(Kind::Exact),
    };
    crate::hub::selector::shared(kind, text).map_err(|_| JwtError::Malformed)
}

/// Whether `aud` (a string or an array of strings, RFC 7519 section 4.1.3) names `audience`.
fn names_audience(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// Signs `claims_json` (a JSON object, not checked) with HS256 under `key`, with the header
/// `{"alg":"HS256","typ":"JWT"}`. For tests, benchmarks and tools that mint tokens; the
/// server itself only verifies.
pub fn sign_hs256(key: &[u8], claims_json: &str) -> String {
    sign_with_header(key, r#"{"alg":"HS256","typ":"JWT"}"#, claims_json)
}

/// Signs `claims_json` as a draft-08 access token: the header `{"alg":"HS256","typ":"at+jwt"}`
/// (RFC 9068). For tests and tools, as [`sign_hs256`].
pub fn sign_access_token(key: &[u8], claims_json: &str) -> String {
    sign_with_header(key, r#"{"alg":"HS256","typ":"at+jwt"}"#, claims_json)
}

fn sign_with_header(key: &[u8], header_json: &str, claims_json: &str) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
    let mut mac = keyed(key);
    mac.update(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
    token
}

/// The token of an `Authorization` header value with the `Bearer` scheme (matched
/// case-insensitively, RFC 9110 section 11.1), surrounding spaces and tabs trimmed. `None` for
/// another scheme or an empty token; whatever else follows the scheme is returned for
/// [`Verifier::verify`] to refuse.
pub fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let value = trim_ows(authorization);
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = trim_ows(rest);
    (!token.is_empty()).then_some(token)
}

/// The value of the cookie `name` (case-sensitive, RFC 6265) in a `Cookie` header value,
/// without the optional double quotes; the first one if several have that name (browsers send
/// the most specific path first). `None` when absent or empty (a cleared cookie is no token).
/// Usually called with [`COOKIE_NAME`].
pub fn cookie_token<'a>(cookie: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        if trim_ows(&pair[..eq]) != name.as_bytes() {
            return None;
        }
        let mut value = trim_ows(&pair[eq + 1..]);
        if let [b'"', inner @ .., b'"'] = value {
            value = inner;
        }
        (!value.is_empty()).then_some(value)
    })
}

fn keyed(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length (longer ones are hashed first); the error type only
        // exists because `Mac` is shared with MACs that do not.
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One base64url segment holding a JSON object. The `base64` engine refuses padding, the
/// standard alphabet and non-zero trailing bits, so every accepted segment has exactly one
/// spelling and a changed signature character can never decode to the same signature.
fn decode_object(segment: &[u8]) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(), JwtError> {
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        Some(Value::String(_)) => return Err(JwtError::BadAlgorithm),
        _ => return Err(JwtError::Malformed),
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if is_jwt_type(typ) => {}
        Some(_) => return Err(JwtError::Malformed),
    }
    if header.contains_key("crit") {
        return Err(JwtError::Malformed);
    }
    Ok(())
}

/// `JWT` (RFC 7519 section 5.1) or `at+jwt` (RFC 9068, which newer Mercure drafts require),
/// compared as media types: case-insensitively, with `application/` implied when absent
/// (RFC 7515 section 4.1.9).
fn is_jwt_type(typ: &str) -> bool {
    let bytes = typ.as_bytes();
    let subtype = match bytes.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => bytes,
    };
    subtype.eq_ignore_ascii_case(b"jwt") || subtype.eq_ignore_ascii_case(b"at+jwt")
}

/// `at+jwt` (RFC 9068 section 2.1), compared as [`is_jwt_type`] does.
fn is_at_jwt(typ: &str) -> bool {
    let bytes = typ.as_bytes();
    let subtype = match bytes.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => bytes,
    };
    subtype.eq_ignore_ascii_case(b"at+jwt")
}

/// A NumericDate claim (seconds since the epoch, RFC 7519 section 2) in milliseconds,
/// saturating. Fractions round towards refusal: `exp` down, `nbf` up.
/// Which way a NumericDate's fraction of a millisecond goes (towards refusal).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    Down,
    Up,
}

fn numeric_date_ms(claim: Option<&Value>, round: Round) -> Result<Option<i64>, JwtError> {
    let n = match claim {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(JwtError::Malformed),
    };
    let ms = if let Some(secs) = n.as_i64() {
        secs.saturating_mul(1000)
    } else if n.is_u64() {
        i64::MAX
    } else {
        // serde_json never yields an infinite or NaN number; `as` saturates at the ends.
        let ms = n.as_f64().ok_or(JwtError::Malformed)? * 1000.0;
        (match round {
            Round::Up => ms.ceil(),
            Round::Down => ms.floor(),
        }) as i64
    };
    Ok(Some(ms))
}

fn selectors(claim: Option<&Value>) -> Result<Selectors, JwtError> {
    match claim {
        None | Some(Value::Null) => Ok(Selectors::default()),
        Some(Value::Array(items)) => {
            if !items.iter().all(Value::is_string) {
                return Err(JwtError::Malformed);
            }
            // An empty name selects no topic (topics are never empty); it was always accepted.
            let names = items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty());
            Selectors::claims(names).map_err(|_| JwtError::Malformed)
        }
        Some(_) => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"fixture-key-not-a-secret-0123456789abcdef";
    const NOW: i64 = 1_795_000_000_000;

    /// Tokens minted by Python's `hmac`, `hashlib` and `base64` (tests/fixtures/mint_jwt.py),
    /// checked in so the tests need no Python.
    const FIXTURE: &str = include_str!("../../tests/fixtures/jwt_tokens.json");

    fn expected_error(name: &str) -> JwtError {
        match name {
            "TooLarge" => JwtError::TooLarge,
            "Malformed" => JwtError::Malformed,
            "BadAlgorithm" => JwtError::BadAlgorithm,
            "BadSignature" => JwtError::BadSignature,
            "Expired" => JwtError::Expired,
            "NotYetValid" => JwtError::NotYetValid,
            "WrongAudience" => JwtError::WrongAudience,
            other => panic!("unknown expectation {other}"),
        }
    }

    /// A fixture's selectors: a draft-07 claim's strings, or `[matchType, match]` pairs.
    fn expected_selectors(v: &Value) -> Selectors {
        Selectors::from_compiled(v.as_array().unwrap().iter().map(|s| match s {
            Value::String(s) => crate::hub::selector::Selector::claim(s).unwrap(),
            Value::Array(pair) => {
                let kind = match pair[0].as_str().unwrap() {
                    "Exact" => Kind::Exact,
                    "URLPattern" => Kind::UrlPattern,
                    other => panic!("unknown matcher type {other}"),
                };
                Selector::parse(kind, pair[1].as_str().unwrap()).unwrap()
            }
            other => panic!("not a selector: {other}"),
        }))
    }

    /// Verifies every case of a fixture document against its expectation; returns how many.
    fn check_fixture(doc: &str) -> usize {
        let doc: Value = serde_json::from_str(doc).unwrap();
        let key = doc["key"].as_str().unwrap();
        let v = Verifier::new(key.as_bytes(), doc["leeway_ms"].as_u64().unwrap());
        let cases = doc["cases"].as_array().unwrap();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let token = case["token"].as_str().unwrap();
            let v = v.clone().with_audience(case["audience"].as_str());
            let got = v.verify(token.as_bytes(), case["now_ms"].as_i64().unwrap());
            let want = match case["expect"].as_str().unwrap() {
                "ok" => {
                    let c = &case["claims"];
                    let payloads = c["payloads"].as_array().map_or(Vec::new(), |p| {
                        p.iter()
                            .map(|pair| (expected_selectors(&pair[0]), pair[1].clone()))
                            .collect()
                    });
                    Ok(Claims {
                        subscribe: expected_selectors(&c["subscribe"]),
                        publish: expected_selectors(&c["publish"]),
                        exp_unix_ms: c["exp_ms"].as_i64(),
                        payloads: payloads.into_boxed_slice(),
                        subject: c["subject"].as_str().map(Box::from),
                        access_token: c["access_token"].as_bool().unwrap_or(false),
                    })
                }
                err => Err(expected_error(err)),
            };
            assert_eq!(got, want, "case {name}");
        }
        cases.len()
    }

    /// The caps on details and topics, below the token's size cap (8 KiB holds about 95
    /// minimal details: the size cap refuses first on the wire).
    #[test]
    fn detail_caps() {
        let detail = |n: usize| {
            serde_json::json!({"type": "mercure", "actions": ["subscribe"],
                               "topics": vec![serde_json::json!({"match": "a"}); n]})
        };
        let ok = |d: Vec<Value>| draft_08(&Value::Array(d)).is_ok();
        assert!(ok(vec![detail(1); MAX_DETAILS]));
        assert!(!ok(vec![detail(1); MAX_DETAILS + 1]));
        assert!(ok(vec![detail(MAX_DETAIL_TOPICS)]));
        assert!(!ok(vec![
            detail(MAX_DETAIL_TOPICS / 2),
            detail(MAX_DETAIL_TOPICS / 2 + 1)
        ]));
        // Other types do not count.
        let mut many = vec![serde_json::json!({"type": "other"}); 1000];
        many.push(detail(1));
        assert!(ok(many));
    }

    #[test]
    fn known_answers_from_python() {
        assert!(check_fixture(FIXTURE) >= 80);
    }

    /// Where python3 exists: the script still produces the checked-in tokens byte for byte,
    /// and tokens it mints under a key never seen before verify the same way.
    #[test]
    fn python_cross_check_when_present() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mint_jwt.py");
        let run = |args: &[&str]| {
            std::process::Command::new("python3")
                .arg(script)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8(o.stdout).unwrap())
        };
        let Some(same) = run(&[]) else {
            eprintln!("python3 not found: cross-check skipped");
            return;
        };
        assert_eq!(
            same, FIXTURE,
            "regenerate: python3 {script} > tests/fixtures/jwt_tokens.json"
        );
        let fresh = run(&[
            "--key",
            &format!("fresh {:?}", std::time::SystemTime::now()),
        ])
        .unwrap();
        assert_ne!(fresh, FIXTURE);
        check_fixture(&fresh);
    }

    fn token(claims: &str) -> String {
        sign_hs256(KEY, claims)
    }

    #[test]
    fn signs_what_it_verifies() {
        let v = Verifier::new(KEY, 0);
        let t =
            token(r#"{"mercure":{"subscribe":["chat/42"],"publish":["chat/*"]},"exp":1795000060}"#);
        let c = v.verify(t.as_bytes(), NOW).unwrap();
        assert!(c.subscribe.matches("chat/42") && !c.subscribe.matches("chat/43"));
        assert!(c.publish.matches("chat/43") && !c.publish.matches("news/1"));
        assert_eq!(c.exp_unix_ms, Some(1_795_000_060_000));
        // The same token under another key.
        assert_eq!(
            Verifier::new(b"another key", 0).verify(t.as_bytes(), NOW),
            Err(JwtError::BadSignature)
        );
        // An empty key is a key like any other to HMAC.
        let t = sign_hs256(b"", "{}");
        assert!(Verifier::new(b"", 0).verify(t.as_bytes(), NOW).is_ok());
    }

    /// Duplicate members count with their last value (RFC 7515 section 5.2), in the header as
    /// in the claims; the signature covers the bytes as sent, so only the key holder can make
    /// such a token.
    #[test]
    fn duplicate_members_take_the_last_value() {
        let v = Verifier::new(KEY, 0);
        let with_header = |header: &str, claims: &str| {
            let si = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let mut mac = keyed(KEY);
            mac.update(si.as_bytes());
            let t = format!(
                "{si}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            );
            v.verify(t.as_bytes(), NOW)
        };
        assert!(with_header(r#"{"alg":"none","alg":"HS256"}"#, "{}").is_ok());
        assert_eq!(
            with_header(r#"{"alg":"HS256","alg":"none"}"#, "{}"),
            Err(JwtError::BadAlgorithm)
        );
        assert_eq!(
            with_header(r#"{"alg":"HS256"}"#, r#"{"exp":9999999999,"exp":1}"#),
            Err(JwtError::Expired)
        );
    }

    /// The tokens Mercure's conformance suite sends (both versions: its claims minted here
    /// again under its demo key) grant the same thing through the one `Claims`.
    #[test]
    fn both_drafts_grant_through_one_path() {
        let key = b"!ChangeThisMercureHubJWTSecretKey!";
        let v = Verifier::new(key, 0).with_audience(Some("https://localhost/.well-known/mercure"));
        let draft_07 = sign_with_header(
            key,
            r#"{"alg":"HS256"}"#,
            r#"{"mercure":{"publish":["*"],"subscribe":["*"]}}"#,
        );
        let draft_08 = sign_access_token(
            key,
            r#"{"aud":"https://localhost/.well-known/mercure","iss":"https://localhost","authorization_details":[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"*"}]},{"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],"topics":[{"match":"*"}]}],"exp":4102444800}"#,
        );
        let a = v.verify(draft_07.as_bytes(), NOW).unwrap();
        let b = v.verify(draft_08.as_bytes(), NOW).unwrap();
        assert_eq!((&a.subscribe, &a.publish), (&b.subscribe, &b.publish));
        assert_eq!(a.publish, Selectors::any());
        assert!(!a.access_token && b.access_token);

        // Draft-08's example: routing to every book, reading two private ones.
        let c = v
            .verify(
                sign_access_token(
                    key,
                    r#"{"aud":"https://localhost/.well-known/mercure","exp":4102444800,"authorization_details":[{"type":"mercure","actions":["subscribe"],"topics":[{"match":"https://example.com/books/1","matchType":"Exact"},{"match":"https://example.com/books/7","matchType":"Exact"}]}]}"#,
                )
                .as_bytes(),
                NOW,
            )
            .unwrap();
        assert!(c.subscribe.matches("https://example.com/books/1"));
        assert!(c.subscribe.matches("https://example.com/books/7"));
        assert!(!c.subscribe.matches("https://example.com/books/2"));
        assert!(c.publish.is_empty());

        // Draft-07 with templates: subscribe to a family, publish under a prefix template.
        let d = v
            .verify(
                sign_hs256(
                    key,
                    r#"{"mercure":{"subscribe":["https://example.com/books/{id}"],"publish":["https://example.com/books/{id}","news/*"]}}"#,
                )
                .as_bytes(),
                NOW,
            )
            .unwrap();
        assert!(d.subscribe.matches("https://example.com/books/2"));
        assert!(!d.subscribe.matches("https://example.com/books/2/reviews"));
        assert!(d
            .publish
            .matches_all(["https://example.com/books/9", "news/1"]));
        assert!(!d
            .publish
            .matches_all(["https://example.com/books/9", "sport/1"]));
    }

    /// Draft-08's payload example: the first `subscribe` detail whose topics match the
    /// subscription's own selector text gives its payload; draft-07's is for every one.
    #[test]
    fn payloads_per_subscription() {
        let v = Verifier::new(KEY, 0);
        let c = v
            .verify(
                sign_access_token(
                    KEY,
                    r#"{"exp":1795000600,"authorization_details":[
                        {"type":"mercure","actions":["subscribe"],"topics":[{"match":"https://example.com/foo"}],"payload":{"custom1":"foo"}},
                        {"type":"mercure","actions":["subscribe"],"topics":[{"match":"https://example.com/bar/:id","matchType":"URLPattern"}],"payload":{"custom2":"bar"}},
                        {"type":"mercure","actions":["publish"],"topics":[{"match":"*"}],"payload":{"never":"publish"}},
                        {"type":"mercure","actions":["subscribe"],"topics":[{"match":"*"}],"payload":{"custom3":"default"}}]}"#,
                )
                .as_bytes(),
                NOW,
            )
            .unwrap();
        let p = |s: &str| c.payload_for(s).map(|v| v.to_string());
        assert_eq!(
            p("https://example.com/foo").as_deref(),
            Some(r#"{"custom1":"foo"}"#)
        );
        // A URL Pattern subscription's own text matched as a topic by the pattern detail.
        assert_eq!(
            p("https://example.com/bar/:id").as_deref(),
            Some(r#"{"custom2":"bar"}"#)
        );
        assert_eq!(
            p("https://example.com/bar/42").as_deref(),
            Some(r#"{"custom2":"bar"}"#)
        );
        assert_eq!(p("other").as_deref(), Some(r#"{"custom3":"default"}"#));

        let legacy = v
            .verify(
                sign_hs256(
                    KEY,
                    r#"{"mercure":{"subscribe":["a"],"payload":[1,"two"]}}"#,
                )
                .as_bytes(),
                NOW,
            )
            .unwrap();
        assert_eq!(
            legacy.payload_for("anything").unwrap().to_string(),
            r#"[1,"two"]"#
        );
        assert_eq!(
            v.verify(token("{}").as_bytes(), NOW)
                .unwrap()
                .payload_for("a"),
            None
        );
    }

    #[test]
    fn time_boundaries() {
        let exp = token(r#"{"exp":1795000000}"#);
        let nbf = token(r#"{"nbf":1795000000}"#);
        for (leeway, now, exp_ok, nbf_ok) in [
            (0, NOW - 1, true, false),
            (0, NOW, false, true),
            (5_000, NOW + 4_999, true, true),
            (5_000, NOW + 5_000, false, true),
            (5_000, NOW - 5_000, true, true),
            (5_000, NOW - 5_001, true, false),
            (u64::MAX, i64::MAX - 1, true, true),
            (u64::MAX, i64::MAX, false, true),
            (u64::MAX, i64::MIN, true, false),
            (0, i64::MIN, true, false),
            (0, i64::MAX, false, true),
        ] {
            let v = Verifier::new(KEY, leeway);
            let e = v.verify(exp.as_bytes(), now).map(|_| ());
            let n = v.verify(nbf.as_bytes(), now).map(|_| ());
            assert_eq!(
                e,
                if exp_ok {
                    Ok(())
                } else {
                    Err(JwtError::Expired)
                },
                "{leeway} {now}"
            );
            assert_eq!(
                n,
                if nbf_ok {
                    Ok(())
                } else {
                    Err(JwtError::NotYetValid)
                },
                "{leeway} {now}"
            );
        }
    }

    #[test]
    fn numeric_dates_saturate_and_round_towards_refusal() {
        let v = Verifier::new(KEY, 0);
        let exp = |claims: &str| {
            v.verify(token(claims).as_bytes(), NOW)
                .map(|c| c.exp_unix_ms)
        };
        assert_eq!(exp(r#"{"exp":1e300}"#), Ok(Some(i64::MAX)));
        assert_eq!(exp(r#"{"exp":18446744073709551615}"#), Ok(Some(i64::MAX)));
        assert_eq!(exp(r#"{"exp":9223372036854775807}"#), Ok(Some(i64::MAX)));
        assert_eq!(exp(r#"{"exp":1795000000.0019}"#), Ok(Some(NOW + 1)));
        assert_eq!(exp(r#"{"exp":-1e300}"#), Err(JwtError::Expired));
        assert_eq!(exp(r#"{"exp":1795000000.0001}"#), Err(JwtError::Expired));
        assert_eq!(
            exp(r#"{"nbf":1795000000.0001}"#),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(exp(r#"{"nbf":-9223372036854775808}"#), Ok(None));
    }

    #[test]
    fn size_cap_is_exactly_8_kib() {
        let v = Verifier::new(KEY, 0);
        let sized = |pad: usize| token(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)));
        let at_cap = (6000..6100)
            .map(sized)
            .find(|t| t.len() == MAX_TOKEN_BYTES)
            .unwrap();
        assert!(v.verify(at_cap.as_bytes(), NOW).is_ok());
        let over = (6000..6100)
            .map(sized)
            .find(|t| t.len() == MAX_TOKEN_BYTES + 1);
        let over = over.unwrap_or_else(|| {
            (6000..6100)
                .map(sized)
                .find(|t| t.len() > MAX_TOKEN_BYTES)
                .unwrap()
        });
        assert_eq!(v.verify(over.as_bytes(), NOW), Err(JwtError::TooLarge));
    }

    #[test]
    fn selectors() {
        let s = Selectors::new(["chat/42", "news/*", "a*b", "x/y/*", "chat/42"]);
        for (topic, want) in [
            ("chat/42", true),
            ("chat/4", false),
            ("chat/420", false),
            ("Chat/42", false),
            ("news/", true),
            ("news/1", true),
            ("news/1/2", true),
            ("news", false),
            ("newsletter", false),
            ("a*b", true),
            ("ab", false),
            ("axb", false),
            ("x/y/z", true),
            ("x/y", false),
            ("x/", false),
            ("", false),
        ] {
            assert_eq!(s.matches(topic), want, "{topic:?}");
        }
        assert!(!s.is_empty());

        let all = Selectors::new(["chat/1", "*"]);
        assert_eq!(all, Selectors::new(["*"]));
        assert!(all.matches("") && all.matches("anything/at/all"));

        let none = Selectors::new([]);
        assert!(none.is_empty() && !none.matches("chat/42") && none == Selectors::default());
        // `*/x` and `*x` are names, not patterns; `/*` is the prefix `/`.
        let odd = Selectors::new(["*/x", "/*"]);
        assert!(odd.matches("*/x") && !odd.matches("a/x") && odd.matches("/abs"));
        assert!(!odd.matches("rel"));
    }

    #[test]
    fn any_and_all() {
        let s = Selectors::new(["chat/42", "news/*"]);
        assert!(s.matches_any(["x", "news/1"]));
        assert!(!s.matches_any(["x", "y"]));
        assert!(!s.matches_any([]));
        assert!(s.matches_all(["chat/42", "news/1"]));
        assert!(!s.matches_all(["chat/42", "x"]));
        // No topics authorises nothing, for publishing either.
        assert!(!s.matches_all([]));
        assert!(!Selectors::new(["*"]).matches_all([]));
    }

    #[test]
    fn bearer() {
        for (value, want) in [
            (&b"Bearer abc.def.ghi"[..], Some(&b"abc.def.ghi"[..])),
            (b"bearer abc", Some(b"abc")),
            (b"BEARER   abc  ", Some(b"abc")),
            (b" \tBearer abc\t", Some(b"abc")),
            (b"Bearer a b", Some(b"a b")),
            (b"Bearer", None),
            (b"Bearer ", None),
            (b"Bearer    ", None),
            (b"Bearerabc", None),
            (b"Bearer\tabc", None),
            (b"Basic dXNlcjpwYXNz", None),
            (b"Bear", None),
            (b"", None),
            (b"B\xc3\xa9arer abc", None),
        ] {
            assert_eq!(
                bearer_token(value),
                want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn cookie() {
        let n = COOKIE_NAME;
        for (value, want) in [
            (
                &b"mercureAuthorization=abc.def.ghi"[..],
                Some(&b"abc.def.ghi"[..]),
            ),
            (b"a=1; mercureAuthorization=tok; b=2", Some(b"tok")),
            (b"a=1;mercureAuthorization=tok;b=2", Some(b"tok")),
            (b"mercureAuthorization=\"tok\"", Some(b"tok")),
            (
                b"mercureAuthorization=first; mercureAuthorization=second",
                Some(b"first"),
            ),
            (
                b"mercureAuthorization=; mercureAuthorization=second",
                Some(b"second"),
            ),
            (b"mercureAuthorization=", None),
            (b"mercureAuthorization=\"\"", None),
            (b"mercureauthorization=tok", None),
            (b"xmercureAuthorization=tok", None),
            (b"mercureAuthorization", None),
            (b"a=b=c; mercureAuthorization=t=u", Some(b"t=u")),
            (b"", None),
            (b";;;", None),
            (b"\"", None),
        ] {
            assert_eq!(
                cookie_token(value, n),
                want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(
            cookie_token(b"mercureAccessToken=t", "mercureAccessToken"),
            Some(&b"t"[..])
        );
    }

    #[test]
    fn errors_name_their_reason_and_debug_hides_the_key() {
        assert_eq!(
            JwtError::BadAlgorithm.to_string(),
            "token algorithm is not HS256"
        );
        assert_eq!(JwtError::Expired.to_string(), "token expired");
        let v = format!("{:?}", Verifier::new(b"top-secret-key", 5_000));
        assert!(!v.contains("top-secret") && v.contains("5000"), "{v}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn valid() -> String {
            token(
                r#"{"mercure":{"subscribe":["chat/42","news/*"],"publish":["*"]},"exp":1795003600}"#,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic_nor_pass(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                prop_assert!(Verifier::new(KEY, 5_000).verify(&bytes, NOW).is_err());
                let _ = bearer_token(&bytes);
                let _ = cookie_token(&bytes, COOKIE_NAME);
            }

            /// Arbitrary bytes in the shape of a token (three base64url-ish segments), which
            /// reach the JSON and signature code that random bytes rarely do.
            #[test]
            fn token_shaped_input_never_passes(
                h in "[A-Za-z0-9_=+/-]{0,60}",
                p in "[A-Za-z0-9_=+/-]{0,60}",
                s in "[A-Za-z0-9_=+/-]{0,60}",
            ) {
                let t = format!("{h}.{p}.{s}");
                prop_assert!(Verifier::new(KEY, 5_000).verify(t.as_bytes(), NOW).is_err());
            }

            /// Signed access tokens with arbitrary details never panic, and a token is accepted
            /// only when every Mercure detail in it is well formed.
            #[test]
            fn arbitrary_details_never_panic(
                details in proptest::collection::vec((
                    prop_oneof![Just("mercure".to_string()), Just("https://mercure.rocks/authorization-detail".to_string()), Just("other".to_string()), "[a-z]{0,3}"],
                    proptest::collection::vec(prop_oneof![Just("publish".to_string()), Just("subscribe".to_string()), "[a-z]{0,4}"], 0..3),
                    proptest::collection::vec((
                        "[a-z:/{}()*+?.#\\ %-]{0,24}",
                        prop_oneof![Just(None), Just(Some("Exact")), Just(Some("URLPattern")), Just(Some("urlpattern")), Just(Some("x"))],
                    ), 0..4),
                ), 0..4),
            ) {
                let json = serde_json::json!({
                    "exp": 1795003600,
                    "authorization_details": details.iter().map(|(t, actions, topics)| serde_json::json!({
                        "type": t,
                        "actions": actions,
                        "topics": topics.iter().map(|(m, k)| match k {
                            Some(k) => serde_json::json!({"match": m, "matchType": k}),
                            None => serde_json::json!({"match": m}),
                        }).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                });
                let t = sign_access_token(KEY, &json.to_string());
                let got = Verifier::new(KEY, 5_000).verify(t.as_bytes(), NOW);
                let ours = details.iter().filter(|(t, ..)| DETAIL_TYPES.contains(&t.as_str()));
                let sound = ours.clone().all(|(_, actions, topics)| {
                    !actions.is_empty()
                        && actions.iter().all(|a| a == "publish" || a == "subscribe")
                        && !topics.is_empty()
                        && topics.iter().all(|(m, k)| !m.is_empty() && *k != Some("x"))
                });
                if !sound {
                    prop_assert_eq!(got, Err(JwtError::Malformed));
                } else if let Ok(c) = got {
                    prop_assert!(c.access_token);
                }
            }

            #[test]
            fn a_changed_byte_is_never_accepted(at in any::<proptest::sample::Index>(), to in any::<u8>()) {
                let mut t = valid().into_bytes();
                let i = at.index(t.len());
                prop_assume!(t[i] != to);
                t[i] = to;
                prop_assert!(Verifier::new(KEY, 5_000).verify(&t, NOW).is_err());
            }

            #[test]
            fn an_inserted_or_removed_byte_is_never_accepted(
                at in any::<proptest::sample::Index>(),
                byte in any::<u8>(),
                insert in any::<bool>(),
            ) {
                let mut t = valid().into_bytes();
                if insert {
                    t.insert(at.index(t.len() + 1), byte);
                } else {
                    t.remove(at.index(t.len()));
                }
                prop_assert!(Verifier::new(KEY, 5_000).verify(&t, NOW).is_err());
            }

            #[test]
            fn a_truncated_or_extended_token_is_never_accepted(
                cut in any::<proptest::sample::Index>(),
                tail in "[A-Za-z0-9_.-]{1,8}",
            ) {
                let t = valid();
                let v = Verifier::new(KEY, 5_000);
                prop_assert!(v.verify(&t.as_bytes()[..cut.index(t.len())], NOW).is_err());
                let extended = format!("{t}{tail}");
                prop_assert!(v.verify(extended.as_bytes(), NOW).is_err());
            }
        }

        #[test]
        fn the_unmutated_token_is_accepted() {
            // Otherwise the properties above would pass vacuously.
            assert!(Verifier::new(KEY, 5_000)
                .verify(valid().as_bytes(), NOW)
                .is_ok());
        }
    }
}
