//! `crypto`: SHA-256/SHA-512 hashes, HMACs, base64 and hex, for signing outgoing calls.
//!
//! Config:
//! - `op`: `sha256`, `sha512`, `hmac`, `base64-encode`, `base64-decode`, `hex-encode`,
//!   `hex-decode`;
//! - `key` (with `hmac`, required): the secret, usually `"${SIGNING_SECRET}"`;
//! - `algorithm` (with `hmac`): `sha256` (default) or `sha512`;
//! - `encoding` (hashes and HMACs): `hex` (default), `base64` or `base64url`;
//! - `prefix`: text put before the input, e.g. a timestamp and a dot.
//!
//! Input: a string is used as its UTF-8 bytes; any other JSON value as its compact JSON text,
//! the same text the `http` step sends for it.
//!
//! Output: `{ "value": …, "text": … }`: the result, and the exact text it was computed over,
//! so a later step can send precisely what was signed.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use weir_sdk::{Context, StepError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Op {
    Sha256,
    Sha512,
    Hmac,
    Base64Encode,
    Base64Decode,
    HexEncode,
    HexDecode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Algorithm {
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Hex,
    Base64,
    Base64url,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    op: Op,
    key: Option<String>,
    algorithm: Option<Algorithm>,
    encoding: Option<Encoding>,
    #[serde(default)]
    prefix: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Output {
    value: String,
    text: String,
}

impl Config {
    /// The checks a flow's config must pass before any webhook comes.
    fn check(&self) -> Result<(), StepError> {
        let digest = matches!(self.op, Op::Sha256 | Op::Sha512 | Op::Hmac);
        match (self.op, &self.key) {
            (Op::Hmac, None) => {
                return Err(StepError::Config(
                    "`op = \"hmac\"` needs `key`, the secret (e.g. \"${SIGNING_SECRET}\")".into(),
                ));
            }
            (Op::Hmac, Some(key)) if key.is_empty() => {
                return Err(StepError::Config("`key` must not be empty".into()));
            }
            (Op::Hmac, _) => {}
            (_, Some(_)) => {
                return Err(StepError::Config(
                    "`key` only applies with `op = \"hmac\"`".into(),
                ));
            }
            _ => {}
        }
        if self.algorithm.is_some() && self.op != Op::Hmac {
            return Err(StepError::Config(
                "`algorithm` only applies with `op = \"hmac\"`; use op = \"sha512\" for a SHA-512 hash".into(),
            ));
        }
        if self.encoding.is_some() && !digest {
            return Err(StepError::Config(
                "`encoding` only applies to hashes and HMACs".into(),
            ));
        }
        Ok(())
    }
}

fn encode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => STANDARD.encode(bytes),
        Encoding::Base64url => URL_SAFE_NO_PAD.encode(bytes),
    }
}

fn text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[weir_sdk::step]
fn run(_ctx: &Context, input: Value, config: Config) -> Result<Output, StepError> {
    config.check()?;
    let text = format!("{}{}", config.prefix, text(&input));
    let bytes = text.as_bytes();
    let encoding = config.encoding.unwrap_or_default();
    let decoded = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .map_err(|_| StepError::InvalidInput("the decoded bytes are not UTF-8 text".into()))
    };
    let value = match config.op {
        Op::Sha256 => encode(&Sha256::digest(bytes), encoding),
        Op::Sha512 => encode(&Sha512::digest(bytes), encoding),
        Op::Hmac => {
            let key = config.key.as_deref().unwrap_or_default().as_bytes();
            match config.algorithm.unwrap_or_default() {
                Algorithm::Sha256 => {
                    let mut mac = Hmac::<Sha256>::new_from_slice(key)
                        .map_err(|e| StepError::Config(e.to_string()))?;
                    mac.update(bytes);
                    encode(&mac.finalize().into_bytes(), encoding)
                }
                Algorithm::Sha512 => {
                    let mut mac = Hmac::<Sha512>::new_from_slice(key)
                        .map_err(|e| StepError::Config(e.to_string()))?;
                    mac.update(bytes);
                    encode(&mac.finalize().into_bytes(), encoding)
                }
            }
        }
        Op::Base64Encode => STANDARD.encode(bytes),
        Op::Base64Decode => decoded(
            STANDARD
                .decode(text.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim().trim_end_matches('=')))
                .map_err(|e| StepError::InvalidInput(format!("not base64: {e}")))?,
        )?,
        Op::HexEncode => hex::encode(bytes),
        Op::HexDecode => decoded(
            hex::decode(text.trim())
                .map_err(|e| StepError::InvalidInput(format!("not hex: {e}")))?,
        )?,
    };
    Ok(Output { value, text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::testing::call;

    fn value(input: Value, config: Value) -> String {
        let out = call(run, input, config).output.unwrap();
        out["value"].as_str().unwrap().to_owned()
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            value(json!("abc"), json!({"op": "sha256"})),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(value(json!("abc"), json!({"op": "sha512"})).starts_with("ddaf35a193617aba"));
        // RFC 4231, test case 2.
        assert_eq!(
            value(
                json!("what do ya want for nothing?"),
                json!({"op": "hmac", "key": "Jefe"})
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(
            value(
                json!("what do ya want for nothing?"),
                json!({"op": "hmac", "key": "Jefe", "algorithm": "sha512"})
            )
            .starts_with("164b7a7bfcf819e2")
        );
        assert_eq!(value(json!("hi"), json!({"op": "base64-encode"})), "aGk=");
        assert_eq!(value(json!("aGk="), json!({"op": "base64-decode"})), "hi");
        assert_eq!(value(json!("hi"), json!({"op": "hex-encode"})), "6869");
        assert_eq!(value(json!("6869"), json!({"op": "hex-decode"})), "hi");
        assert_eq!(
            value(json!("abc"), json!({"op": "sha256", "encoding": "base64"})),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn json_input_is_signed_as_compact_text_with_the_prefix() {
        let out = call(
            run,
            json!({"b": 1, "a": [true]}),
            json!({"op": "hmac", "key": "k", "prefix": "123."}),
        )
        .output
        .unwrap();
        assert_eq!(out["text"], r#"123.{"a":[true],"b":1}"#);
    }

    #[test]
    fn bad_config_is_a_config_error() {
        for config in [
            json!({"op": "md5"}),
            json!({"op": "hmac"}),
            json!({"op": "hmac", "key": ""}),
            json!({"op": "sha256", "key": "k"}),
            json!({"op": "sha256", "algorithm": "sha512"}),
            json!({"op": "hex-encode", "encoding": "base64"}),
            json!({"op": "sha256", "salt": "x"}),
        ] {
            let err = call(run, json!("x"), config.clone()).output.unwrap_err();
            assert_eq!(err.kind(), "config", "{config}: {err}");
        }
    }

    #[test]
    fn bad_input_is_an_invalid_input_error() {
        for (input, op) in [
            ("zz", "hex-decode"),
            ("***", "base64-decode"),
            ("ff", "hex-decode"),
        ] {
            let err = call(run, json!(input), json!({"op": op}))
                .output
                .unwrap_err();
            assert_eq!(err.kind(), "invalid-input", "{input}: {err}");
        }
    }
}
