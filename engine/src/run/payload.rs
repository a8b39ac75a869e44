//! How a webhook's request becomes the `$.webhook` document that flows map from, and how a
//! body is shown back: JSON when it is JSON, else text, else base64.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::content;
use crate::flow::{MAX_MAX_BODY, Projection};
use crate::store::{RawRequest, Run};

/// A body decoded for people and mappings.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The body parsed as JSON (a JSON content type, or a form decoded into an object).
    Json(Value),
    /// UTF-8 text.
    Text(String),
    /// Anything else, base64-encoded.
    Base64(String),
}

impl Body {
    /// Decodes by content type: JSON types (`application/json`, `*+json`) that parse become
    /// JSON (a UTF-8 byte order mark is skipped), forms (`application/x-www-form-urlencoded`)
    /// an object of strings (repeated keys an array), `multipart/form-data` an object of fields
    /// and files (see [`content::multipart`]), text in its declared `charset` a string, UTF-8
    /// text a string, and other bytes base64. An empty body is `null`.
    pub fn decode(content_type: Option<&str>, bytes: &[u8]) -> Body {
        Body::structured(content_type, bytes, &Projection::All).unwrap_or_else(|| {
            match std::str::from_utf8(bytes) {
                Ok(text) => Body::Text(text.to_owned()),
                Err(_) => Body::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
            }
        })
    }

    /// [`Body::decode`], taking the bytes: a text body becomes its string without a copy, and
    /// the bytes of any other are freed as soon as it is decoded. A JSON body keeps only what
    /// `reads` reads of it (see [`Projection`]).
    pub fn decode_owned(content_type: Option<&str>, bytes: Vec<u8>, reads: &Projection) -> Body {
        if let Some(body) = Body::structured(content_type, &bytes, reads) {
            return body;
        }
        match String::from_utf8(bytes) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Base64(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
        }
    }

    /// [`Body::decode_owned`] after undoing the body's `Content-Encoding` (the gateway refused
    /// bodies that do not decode within their flow's `max_body`; one stored before is kept as
    /// base64 of its bytes).
    pub fn decode_request(
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        bytes: Vec<u8>,
        reads: &Projection,
    ) -> Body {
        match content::decode(content_encoding, bytes, MAX_MAX_BODY) {
            Ok(decoded) => Body::decode_owned(content_type, decoded, reads),
            Err((_, bytes)) => {
                Body::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
        }
    }

    /// The body as JSON when it is empty, JSON that parses, or a form; as text when its
    /// content type names a charset it is valid in; `None` otherwise.
    fn structured(content_type: Option<&str>, bytes: &[u8], reads: &Projection) -> Option<Body> {
        if bytes.is_empty() {
            return Some(Body::Json(Value::Null));
        }
        let mime = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if mime == "application/json" || mime.ends_with("+json") || mime.is_empty() {
            let json = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            if let Ok(value) = reads.decode(json) {
                return Some(Body::Json(value));
            }
        }
        if mime == "application/x-www-form-urlencoded" {
            return Some(Body::Json(form_to_json(bytes)));
        }
        let content_type = content_type.unwrap_or_default();
        if mime == "multipart/form-data" {
            return content::multipart(content_type, bytes)
                .ok()
                .flatten()
                .map(Body::Json);
        }
        let texty = mime.starts_with("text/") || mime.ends_with("/xml") || mime.ends_with("+xml");
        if texty
            && let Some(label) = content::charset(content_type)
            && label != "utf-8"
        {
            return content::text_in_charset(&label, bytes).map(Body::Text);
        }
        None
    }

    /// The body as the run context holds it: JSON as itself, text as a string, other bytes as
    /// their base64 string.
    pub fn into_value(self) -> Value {
        match self {
            Body::Json(v) => v,
            Body::Text(s) | Body::Base64(s) => Value::String(s),
        }
    }

    /// Why a body sent as JSON (by its content type) is not JSON for the flow, if it is not:
    /// nesting past serde's limit of 128 levels, a syntax error, bytes that are not UTF-8.
    /// The flow then gets it as text (or base64), and `$.webhook.body_note` says why.
    pub fn json_note(&self, content_type: Option<&str>) -> Option<String> {
        let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return None;
        }
        match self {
            Body::Json(_) => None,
            Body::Text(text) => {
                let json = text.strip_prefix('\u{feff}').unwrap_or(text);
                let error = serde_json::from_str::<Value>(json).err()?;
                Some(format!(
                    "the body is sent as JSON but cannot be read as JSON ({error}); it is given as text"
                ))
            }
            Body::Base64(_) => {
                Some("the body is sent as JSON but is not UTF-8; it is given as base64".to_owned())
            }
        }
    }

    /// `json`, `text` or `base64`.
    pub fn encoding(&self) -> &'static str {
        match self {
            Body::Json(_) => "json",
            Body::Text(_) => "text",
            Body::Base64(_) => "base64",
        }
    }
}

/// Form fields (or a query string) as a JSON object; a repeated key becomes an array.
pub fn form_to_json(bytes: &[u8]) -> Value {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        fields
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let map: Map<String, Value> = fields
        .into_iter()
        .map(|(k, mut v)| {
            let value = if v.len() == 1 {
                Value::String(v.remove(0))
            } else {
                Value::Array(v.into_iter().map(Value::String).collect())
            };
            (k, value)
        })
        .collect();
    Value::Object(map)
}

/// Headers as a JSON object with lower-case names; repeated headers are joined with `, `.
pub fn headers_to_json(headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    Value::Object(map)
}

/// The webhook step's output: what `$.webhook` holds in the run context.
///
/// Built field by field: `json!` would copy each `Value` (the body above all) through
/// serde's serializer.
pub fn webhook_document(run_id: &str, request: &RawRequest) -> Value {
    let mut document = request_document(request);
    document.insert("run_id".into(), Value::String(run_id.to_owned()));
    Value::Object(document)
}

/// [`webhook_document`] without the run id: what a flow's `dedupe` reads, before there is a
/// run.
pub fn request_document(request: &RawRequest) -> Map<String, Value> {
    let mut document = request_head(request);
    insert_body(&mut document, request_body_decoded(request));
    document
}

/// Puts the body in the document, with `body_note` when a JSON body could not be read as JSON.
fn insert_body(document: &mut Map<String, Value>, body: Body) {
    let content_type = document.get("content_type").and_then(Value::as_str);
    if let Some(note) = body.json_note(content_type) {
        document.insert("body_note".into(), Value::String(note));
    }
    document.insert("body".into(), body.into_value());
}

/// [`request_document`] without the body, which is the costly part to decode.
pub fn request_head(request: &RawRequest) -> Map<String, Value> {
    let text = |value: &str| Value::String(value.to_owned());
    let mut document = Map::new();
    document.insert("method".into(), text(&request.method));
    document.insert("path".into(), text(&request.path));
    document.insert("query".into(), form_to_json(request.query.as_bytes()));
    document.insert("headers".into(), headers_to_json(&request.headers));
    document.insert(
        "content_type".into(),
        request.header("content-type").map_or(Value::Null, text),
    );
    document.insert(
        "received_at".into(),
        Value::String(humantime::format_rfc3339_millis(request.received_at).to_string()),
    );
    document.insert(
        "remote_addr".into(),
        request.remote_addr.as_deref().map_or(Value::Null, text),
    );
    document
}

/// The body as `$.webhook.body` holds it.
pub fn request_body(request: &RawRequest) -> Value {
    request_body_decoded(request).into_value()
}

/// The body of `request`, decoded as [`Body::decode_request`] does.
pub fn request_body_decoded(request: &RawRequest) -> Body {
    let content_type = request.header("content-type");
    match request.header("content-encoding") {
        None => Body::decode(content_type, &request.body),
        encoding => Body::decode_request(
            content_type,
            encoding,
            request.body.clone(),
            &Projection::All,
        ),
    }
}

/// The webhook step's output for a stored run.
pub fn webhook_document_for(run: &Run, request: &RawRequest) -> Value {
    webhook_document(&run.id.to_string(), request)
}

/// [`webhook_document_for`], taking the request: the body's bytes are freed once decoded, so
/// that a run holds its body once, as the document, while its steps run; and of a JSON body
/// only what `reads` reads.
pub fn webhook_document_owned(run: &Run, mut request: RawRequest, reads: &Projection) -> Value {
    let bytes = std::mem::take(&mut request.body);
    let mut document = request_head(&request);
    let body = Body::decode_request(
        request.header("content-type"),
        request.header("content-encoding"),
        bytes,
        reads,
    );
    drop(request);
    insert_body(&mut document, body);
    document.insert("run_id".into(), Value::String(run.id.to_string()));
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_decode_by_content_type() {
        assert_eq!(
            Body::decode(Some("application/json; charset=utf-8"), br#"{"a":1}"#),
            Body::Json(json!({"a": 1}))
        );
        assert_eq!(
            Body::decode(Some("application/vnd.api+json"), b"[1]"),
            Body::Json(json!([1]))
        );
        assert_eq!(
            Body::decode(
                Some("application/x-www-form-urlencoded"),
                b"name=Ada+L&x=1&x=2"
            ),
            Body::Json(json!({"name": "Ada L", "x": ["1", "2"]}))
        );
        assert_eq!(
            Body::decode(Some("application/json"), b"{broken"),
            Body::Text("{broken".into())
        );
        assert_eq!(
            Body::decode(Some("text/plain"), b"hi"),
            Body::Text("hi".into())
        );
        assert_eq!(
            Body::decode(Some("application/octet-stream"), &[0xff, 0x00]),
            Body::Base64("/wA=".into())
        );
        assert_eq!(Body::decode(None, b""), Body::Json(Value::Null));
        // Taking the bytes decodes the same.
        for (content_type, bytes) in [
            ("application/json", &br#"{"a":1}"#[..]),
            ("text/plain", b"hi"),
            ("application/octet-stream", &[0xff, 0x00]),
            ("application/x-www-form-urlencoded", b"a=1"),
        ] {
            assert_eq!(
                Body::decode_owned(Some(content_type), bytes.to_vec(), &Projection::All),
                Body::decode(Some(content_type), bytes)
            );
        }
    }

    #[test]
    fn repeated_headers_are_joined() {
        let headers = vec![
            ("x-a".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
            ("x-b".to_owned(), "3".to_owned()),
        ];
        assert_eq!(
            headers_to_json(&headers),
            json!({"x-a": "1, 2", "x-b": "3"})
        );
    }
}
