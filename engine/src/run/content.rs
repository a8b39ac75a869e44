//! Bodies as senders encode them: `Content-Encoding` undone with a cap on the decoded size,
//! text in its declared charset, and `multipart/form-data` as fields and files.
//!
//! What is stored is always the body as received: signatures are checked on those bytes, and
//! the raw payload endpoint serves them. Decoding happens twice, each time bounded: at the
//! gateway, streamed into nothing, only to refuse a body whose decoded size passes the flow's
//! `max_body` (a compression bomb costs a buffer, never its decoded size); and when a run
//! builds `$.webhook.body`.

use std::io::Read;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use thiserror::Error;

/// The most parts a `multipart/form-data` body may have.
pub const MAX_PARTS: usize = 1000;

/// Why a body cannot be decoded for its flow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentError {
    #[error("Content-Encoding `{0}` is not supported: send gzip, deflate, br, zstd or identity")]
    Unsupported(String),
    #[error("the body decodes to more than this flow's max_body of {0} bytes")]
    TooLarge(u64),
    #[error("the body is not valid {coding}: {message}")]
    Corrupt { coding: String, message: String },
    #[error("the multipart form has more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// The codings of a `Content-Encoding` value, in the order the sender applied them, without
/// `identity`.
fn codings(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect()
}

/// A reader that undoes `codings` (applied in order) over `body`.
fn decoder<'a>(codings: &[String], body: &'a [u8]) -> Result<Box<dyn Read + 'a>, ContentError> {
    let mut reader: Box<dyn Read + 'a> = Box::new(body);
    for coding in codings.iter().rev() {
        reader =
            match coding.as_str() {
                "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
                // HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
                "deflate" => Box::new(flate2::read::ZlibDecoder::new(reader)),
                "br" => Box::new(brotli_decompressor::Decompressor::new(reader, 8192)),
                "zstd" => Box::new(ruzstd::decoding::StreamingDecoder::new(reader).map_err(
                    |e| ContentError::Corrupt {
                        coding: coding.clone(),
                        message: e.to_string(),
                    },
                )?),
                other => return Err(ContentError::Unsupported(other.to_owned())),
            };
    }
    Ok(reader)
}

fn corrupt(codings: &[String], e: &std::io::Error) -> ContentError {
    ContentError::Corrupt {
        coding: codings.join(", "),
        message: e.to_string(),
    }
}

/// Checks that `body`, encoded with `content_encoding`, decodes to at most `cap` bytes,
/// without keeping what it decodes.
pub fn check_decoded(
    content_encoding: Option<&str>,
    body: &[u8],
    cap: u64,
) -> Result<(), ContentError> {
    let codings = content_encoding.map(codings).unwrap_or_default();
    if codings.is_empty() {
        return Ok(());
    }
    let reader = decoder(&codings, body)?;
    let decoded = std::io::copy(&mut reader.take(cap + 1), &mut std::io::sink())
        .map_err(|e| corrupt(&codings, &e))?;
    if decoded > cap {
        return Err(ContentError::TooLarge(cap));
    }
    Ok(())
}

/// `body` with its `content_encoding` undone, at most `cap` bytes; the body itself when it has
/// no coding. On error, the body comes back with it.
pub fn decode(
    content_encoding: Option<&str>,
    body: Vec<u8>,
    cap: u64,
) -> Result<Vec<u8>, (ContentError, Vec<u8>)> {
    let codings = content_encoding.map(codings).unwrap_or_default();
    if codings.is_empty() {
        return Ok(body);
    }
    let decoded = decoder(&codings, &body).and_then(|reader| {
        let mut decoded = Vec::new();
        reader
            .take(cap + 1)
            .read_to_end(&mut decoded)
            .map_err(|e| corrupt(&codings, &e))?;
        if decoded.len() as u64 > cap {
            return Err(ContentError::TooLarge(cap));
        }
        Ok(decoded)
    });
    decoded.map_err(|e| (e, body))
}

/// The `charset` parameter of a content type, lower-case.
pub fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// Text in the charset its content type names (Latin-1, UTF-16, Shift_JIS, ...); `None` when
/// the charset is unknown or the bytes are not valid in it. A byte order mark wins over the
/// label, as browsers do.
pub fn text_in_charset(label: &str, bytes: &[u8]) -> Option<String> {
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())?;
    let (text, _, malformed) = encoding.decode(bytes);
    (!malformed).then(|| text.into_owned())
}

/// A `multipart/form-data` body as a JSON object: each field's text under its name (a name
/// given more than once, an array), each file as `{filename, content_type, size, base64}`.
/// `Ok(None)` when the body is not a well-formed form (it is then kept as other bytes are).
pub fn multipart(content_type: &str, body: &[u8]) -> Result<Option<Value>, ContentError> {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Ok(None);
    };
    let stream = futures_util::stream::iter(std::iter::once(Ok::<_, std::convert::Infallible>(
        bytes::Bytes::copy_from_slice(body),
    )));
    let mut form = multer::Multipart::new(stream, boundary);
    let parse = async {
        let mut fields: Map<String, Value> = Map::new();
        let mut parts = 0;
        while let Some(field) = form.next_field().await.ok()? {
            parts += 1;
            if parts > MAX_PARTS {
                return Some(Err(ContentError::TooManyParts));
            }
            let name = field.name().unwrap_or_default().to_owned();
            let value = match field.file_name() {
                Some(filename) => {
                    let filename = filename.to_owned();
                    let content_type = field.content_type().map(ToString::to_string);
                    let bytes = field.bytes().await.ok()?;
                    json!({
                        "filename": filename,
                        "content_type": content_type,
                        "size": bytes.len(),
                        "base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    })
                }
                None => Value::String(field.text_with_charset("utf-8").await.ok()?),
            };
            match fields.get_mut(&name) {
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    fields.insert(name, value);
                }
            }
        }
        Some(Ok(Value::Object(fields)))
    };
    // The whole body is in memory, so the parser never waits: one poll finishes it.
    match pin!(parse).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(result)) => result.map(Some),
        Poll::Ready(None) | Poll::Pending => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn codings_are_undone_in_reverse_order_and_capped() {
        let body = br#"{"hello":"world"}"#.to_vec();
        let once = gzip(&body);
        assert_eq!(decode(Some("gzip"), once.clone(), 1024).unwrap(), body);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&once).unwrap();
        let twice = zlib.finish().unwrap();
        assert_eq!(decode(Some("gzip, deflate"), twice, 1024).unwrap(), body);
        assert_eq!(decode(None, body.clone(), 1).unwrap(), body);
        assert_eq!(decode(Some("identity"), body.clone(), 1).unwrap(), body);
        assert_eq!(
            decode(Some("gzip"), once.clone(), 5),
            Err((ContentError::TooLarge(5), once.clone()))
        );
        assert_eq!(
            check_decoded(Some("gzip"), &once, 5),
            Err(ContentError::TooLarge(5))
        );
        assert_eq!(check_decoded(Some("gzip"), &once, 1024), Ok(()));
        assert_eq!(
            check_decoded(Some("compress"), &once, 1024),
            Err(ContentError::Unsupported("compress".into()))
        );
        assert!(matches!(
            check_decoded(Some("gzip"), b"not gzip at all", 1024),
            Err(ContentError::Corrupt { .. })
        ));
    }

    #[test]
    fn charsets_come_out_as_strings() {
        assert_eq!(
            charset("text/plain; charset=\"ISO-8859-1\""),
            Some("iso-8859-1".into())
        );
        assert_eq!(charset("text/plain"), None);
        assert_eq!(text_in_charset("iso-8859-1", b"caf\xe9").unwrap(), "café");
        let utf16: Vec<u8> = "héllo".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(text_in_charset("utf-16le", &utf16).unwrap(), "héllo");
        assert_eq!(text_in_charset("no-such-charset", b"x"), None);
    }

    #[test]
    fn a_multipart_form_has_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\na\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nb\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n\
--XyZ--\r\n";
        let form = multipart("multipart/form-data; boundary=XyZ", body)
            .unwrap()
            .unwrap();
        assert_eq!(
            form,
            json!({
                "tag": ["a", "b"],
                "doc": {"filename": "a.bin", "content_type": "application/octet-stream", "size": 3, "base64": "AAEC"}
            })
        );
        assert_eq!(multipart("multipart/form-data", body), Ok(None));
        assert_eq!(
            multipart("multipart/form-data; boundary=XyZ", b"garbage"),
            Ok(None)
        );
        let mut many = Vec::new();
        for i in 0..=MAX_PARTS {
            many.extend_from_slice(
                format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n")
                    .as_bytes(),
            );
        }
        many.extend_from_slice(b"--B--\r\n");
        assert_eq!(
            multipart("multipart/form-data; boundary=B", &many),
            Err(ContentError::TooManyParts)
        );
    }
}
