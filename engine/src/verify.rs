//! Webhook authenticity: a flow's `[webhook] verify` checks each request before it is stored.
//!
//! Schemes, each the way its sender signs:
//!
//! - `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
//! - `stripe`: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` (any `v1` may
//!   match, so secrets can be rolled), within `tolerance` of now.
//! - `slack`: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:ts:body">` with
//!   `X-Slack-Request-Timestamp: ts`, within `tolerance`.
//! - `standard-webhooks` (Svix and others): `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "id.ts.body">` (space-separated list) with `webhook-id` and `webhook-timestamp`; the
//!   secret is `whsec_<base64 key>`.
//! - `hmac`: any sender that signs the body with HMAC: the `header`, an optional `prefix`
//!   before the signature, `hex` or `base64`, and the `algorithm`: `sha256` (the default),
//!   `sha512`, or `sha1` for older senders.
//! - `token`: a shared token in a `header` (default `Authorization: Bearer <token>`) or a
//!   `query` parameter.
//! - `basic`: HTTP Basic authentication.
//!
//! Every comparison of a secret value is constant-time. A request that fails is refused with
//! `401` and the reason (never the expected value), and nothing is stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// How far a signed timestamp may be from now, when the flow does not say: 5 minutes, what
/// Stripe, Slack and Standard Webhooks recommend.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The shortest HMAC key a flow may use, in bytes (after decoding, for `whsec_` secrets): a
/// shorter key can be guessed, and an empty one lets anyone sign. Standard Webhooks secrets are
/// 24 to 64 bytes; GitHub, Stripe and Slack make longer ones.
pub const MIN_KEY_BYTES: usize = 16;

/// A flow's `verify`. Its `Debug` shows the scheme and its settings, never a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Verify {
    Github {
        secret: Secrets,
    },
    Stripe {
        secret: Secrets,
        tolerance: Duration,
    },
    Slack {
        secret: Secrets,
        tolerance: Duration,
    },
    StandardWebhooks {
        key: Secrets,
        tolerance: Duration,
    },
    Hmac {
        secret: Secrets,
        /// Lower-case header name.
        header: String,
        prefix: String,
        encoding: Encoding,
        algorithm: Algorithm,
    },
    Token {
        token: Secrets,
        place: TokenPlace,
    },
    Basic {
        username: String,
        password: Secrets,
    },
}

/// The secrets a scheme accepts, newest first: `secret = ["${NEW}", "${OLD}"]` lets a flow
/// rotate a secret without a window of refusals. Never empty. A request passes when it is
/// valid under any of them, and the check says which one (by position, never the value).
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    /// `None` when `secrets` is empty.
    pub fn new(secrets: Vec<Vec<u8>>) -> Option<Secrets> {
        (!secrets.is_empty()).then_some(Secrets(secrets))
    }

    /// The position of the first secret `good` accepts.
    fn position(&self, mut good: impl FnMut(&[u8]) -> bool) -> Option<usize> {
        self.0.iter().position(|secret| good(secret))
    }
}

impl From<&str> for Secrets {
    fn from(secret: &str) -> Self {
        Secrets(vec![secret.as_bytes().to_vec()])
    }
}

impl From<Vec<u8>> for Secrets {
    fn from(secret: Vec<u8>) -> Self {
        Secrets(vec![secret])
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "[redacted]";

impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct(self.scheme());
        match self {
            Verify::Github { .. } => out.field("secret", &REDACTED),
            Verify::Stripe { tolerance, .. } | Verify::Slack { tolerance, .. } => {
                out.field("secret", &REDACTED).field("tolerance", tolerance)
            }
            Verify::StandardWebhooks { tolerance, .. } => {
                out.field("key", &REDACTED).field("tolerance", tolerance)
            }
            Verify::Hmac {
                header,
                prefix,
                encoding,
                algorithm,
                ..
            } => out
                .field("secret", &REDACTED)
                .field("header", header)
                .field("prefix", prefix)
                .field("encoding", encoding)
                .field("algorithm", algorithm),
            Verify::Token { place, .. } => out.field("token", &REDACTED).field("place", place),
            Verify::Basic { username, .. } => {
                out.field("username", username).field("password", &REDACTED)
            }
        };
        out.finish()
    }
}

/// The hash of an `hmac` signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Whether `signature` is the HMAC of `parts` under `key` (constant-time).
    fn matches(self, key: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
        match self {
            Algorithm::Sha1 => mac_matches::<Hmac<Sha1>>(key, parts, signature),
            Algorithm::Sha256 => mac_matches::<Hmac<Sha256>>(key, parts, signature),
            Algorithm::Sha512 => mac_matches::<Hmac<Sha512>>(key, parts, signature),
        }
    }
}

/// How an `hmac` signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// Where a `token` is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlace {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The whole value of this (lower-case) header.
    Header(String),
    /// The value of this query parameter.
    Query(String),
}

/// Why a request is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("the {0} header is missing")]
    Missing(String),
    #[error("the {0} header is malformed: {1}")]
    Malformed(String, &'static str),
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signed timestamp is more than {} from now", humantime::format_duration(*.0))]
    Stale(Duration),
    #[error("the credentials do not match")]
    Credentials,
}

/// What a request brings to be verified.
pub struct Request<'a> {
    /// Names in lower case, as the gateway stores them.
    pub headers: &'a [(String, String)],
    pub query: &'a str,
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Result<&str, Refusal> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .ok_or_else(|| Refusal::Missing(name.to_owned()))
    }
}

/// Whether `signature` is the MAC `M` of `parts`, in order, under `key` (constant-time).
fn mac_matches<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
    // HMAC takes keys of any length, so this never fails for the HMACs used here.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(signature).is_ok()
}

/// Whether `signature` is the HMAC-SHA256 of `parts`: what the named schemes sign with.
fn matches(key: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
    Algorithm::Sha256.matches(key, parts, signature)
}

fn within(
    timestamp: &str,
    header: &str,
    tolerance: Duration,
    now: SystemTime,
) -> Result<(), Refusal> {
    let seconds: u64 = timestamp
        .parse()
        .map_err(|_| Refusal::Malformed(header.to_owned(), "the timestamp is not a number"))?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(seconds) > tolerance.as_secs() {
        return Err(Refusal::Stale(tolerance));
    }
    Ok(())
}

impl Verify {
    /// The scheme's name, as written in flows.
    pub fn scheme(&self) -> &'static str {
        match self {
            Verify::Github { .. } => "github",
            Verify::Stripe { .. } => "stripe",
            Verify::Slack { .. } => "slack",
            Verify::StandardWebhooks { .. } => "standard-webhooks",
            Verify::Hmac { .. } => "hmac",
            Verify::Token { .. } => "token",
            Verify::Basic { .. } => "basic",
        }
    }

    /// Checks a request as of `now`; `Ok` with the position of the secret it was valid under.
    pub fn check(&self, request: &Request<'_>, now: SystemTime) -> Result<usize, Refusal> {
        match self {
            Verify::Github { secret } => {
                let name = "x-hub-signature-256";
                let hex_signature =
                    request
                        .header(name)?
                        .strip_prefix("sha256=")
                        .ok_or_else(|| {
                            Refusal::Malformed(name.into(), "it does not start with sha256=")
                        })?;
                let signature = hex::decode(hex_signature)
                    .map_err(|_| Refusal::Malformed(name.into(), "the signature is not hex"))?;
                matched(secret.position(|key| matches(key, &[request.body], &signature)))
            }
            Verify::Stripe { secret, tolerance } => {
                let name = "stripe-signature";
                let header = request.header(name)?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for item in header.split(',') {
                    match item.trim().split_once('=') {
                        Some(("t", value)) => timestamp = Some(value),
                        Some(("v1", value)) => signatures.push(value),
                        _ => {}
                    }
                }
                let timestamp = timestamp
                    .ok_or_else(|| Refusal::Malformed(name.into(), "it has no t= timestamp"))?;
                if signatures.is_empty() {
                    return Err(Refusal::Malformed(name.into(), "it has no v1= signature"));
                }
                // The signature first: a stale request with a wrong signature is a forgery.
                let signed: [&[u8]; 3] = [timestamp.as_bytes(), b".", request.body];
                let signatures: Vec<Vec<u8>> = signatures
                    .iter()
                    .filter_map(|hex_signature| hex::decode(hex_signature).ok())
                    .collect();
                let position = matched(secret.position(|key| {
                    signatures
                        .iter()
                        .any(|signature| matches(key, &signed, signature))
                }))?;
                within(timestamp, name, *tolerance, now)?;
                Ok(position)
            }
            Verify::Slack { secret, tolerance } => {
                let name = "x-slack-signature";
                let timestamp = request.header("x-slack-request-timestamp")?;
                let hex_signature = request
                    .header(name)?
                    .strip_prefix("v0=")
                    .ok_or_else(|| Refusal::Malformed(name.into(), "it does not start with v0="))?;
                let signature = hex::decode(hex_signature)
                    .map_err(|_| Refusal::Malformed(name.into(), "the signature is not hex"))?;
                let signed: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", request.body];
                let position = matched(secret.position(|key| matches(key, &signed, &signature)))?;
                within(timestamp, "x-slack-request-timestamp", *tolerance, now)?;
                Ok(position)
            }
            Verify::StandardWebhooks { key, tolerance } => {
                let id = request.header("webhook-id")?;
                let timestamp = request.header("webhook-timestamp")?;
                let list = request.header("webhook-signature")?;
                let signed: [&[u8]; 5] = [
                    id.as_bytes(),
                    b".",
                    timestamp.as_bytes(),
                    b".",
                    request.body,
                ];
                let signatures: Vec<Vec<u8>> = list
                    .split_whitespace()
                    .filter_map(|item| {
                        item.strip_prefix("v1,")
                            .and_then(|b64| STANDARD.decode(b64).ok())
                    })
                    .collect();
                let position = matched(key.position(|key| {
                    signatures
                        .iter()
                        .any(|signature| matches(key, &signed, signature))
                }))?;
                within(timestamp, "webhook-timestamp", *tolerance, now)?;
                Ok(position)
            }
            Verify::Hmac {
                secret,
                header,
                prefix,
                encoding,
                algorithm,
            } => {
                let value = request.header(header)?;
                let text = value
                    .strip_prefix(prefix.as_str())
                    .ok_or_else(|| Refusal::Malformed(header.clone(), "the prefix is missing"))?;
                let signature = match encoding {
                    Encoding::Hex => hex::decode(text).ok(),
                    Encoding::Base64 => STANDARD.decode(text).ok(),
                }
                .ok_or_else(|| {
                    Refusal::Malformed(header.clone(), "the signature does not decode")
                })?;
                matched(secret.position(|key| algorithm.matches(key, &[request.body], &signature)))
            }
            Verify::Token { token, place } => {
                let given = match place {
                    TokenPlace::Bearer => credentials(request.header("authorization")?, "bearer")
                        .ok_or_else(|| {
                            Refusal::Malformed("authorization".into(), "it is not Bearer <token>")
                        })?
                        .to_owned(),
                    TokenPlace::Header(name) => request.header(name)?.to_owned(),
                    TokenPlace::Query(name) => form_urlencoded::parse(request.query.as_bytes())
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.into_owned())
                        .ok_or(Refusal::Credentials)?,
                };
                token
                    .position(|token| given.as_bytes().ct_eq(token).into())
                    .ok_or(Refusal::Credentials)
            }
            Verify::Basic { username, password } => {
                let encoded = credentials(request.header("authorization")?, "basic")
                    .ok_or_else(|| Refusal::Malformed("authorization".into(), "it is not Basic"))?;
                let decoded = STANDARD
                    .decode(encoded)
                    .map_err(|_| Refusal::Malformed("authorization".into(), "not base64"))?;
                password
                    .position(|password| {
                        let mut expected = format!("{username}:").into_bytes();
                        expected.extend_from_slice(password);
                        decoded.ct_eq(&expected).into()
                    })
                    .ok_or(Refusal::Credentials)
            }
        }
    }
}

/// The credentials of an `Authorization` value of `scheme` (lower-case): the scheme's name is
/// case-insensitive and followed by one or more spaces (RFC 7235 §2.1).
fn credentials<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_start_matches(' '))
}

fn matched(position: Option<usize>) -> Result<usize, Refusal> {
    position.ok_or(Refusal::Mismatch)
}

/// Why an HMAC key is refused: shorter than [`MIN_KEY_BYTES`]. Names the length, never the
/// key.
pub fn key_too_short(key: &[u8]) -> Option<String> {
    (key.len() < MIN_KEY_BYTES).then(|| {
        format!(
            "the key is {} bytes; HMAC keys must be at least {MIN_KEY_BYTES} bytes (use the \
             secret your sender generated, or 32 random bytes)",
            key.len()
        )
    })
}

/// The key of a Standard Webhooks secret (`whsec_<base64>`), at least [`MIN_KEY_BYTES`] long
/// once decoded.
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "a standard-webhooks secret is `whsec_` followed by base64".to_owned())?;
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the key of this standard-webhooks secret decodes to {} bytes; HMAC keys must be at \
             least {MIN_KEY_BYTES} bytes (Standard Webhooks secrets are 24 to 64)",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
