//! Content types and encodings: bodies reach the flow decoded, bombs are refused, numbers
//! keep their digits.

use weir_tests::{FlowDir, Weir, post_with};

use super::ECHO_STEP;

/// Bodies arrive as their senders encode them and reach the flow decoded; the stored payload
/// keeps the bytes as received.
#[test]
fn encoded_multipart_and_charset_bodies_reach_the_flow_decoded() {
    use std::io::Write as _;
    let flows = FlowDir::empty();
    flows.write("any.toml", &format!("name = \"any\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("any");
    let json_body = br#"{"event":"compressed","n":1}"#;

    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(json_body).unwrap();
        e.finish().unwrap()
    };
    let deflate = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(json_body).unwrap();
        e.finish().unwrap()
    };
    let br = {
        let mut out = Vec::new();
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(json_body).unwrap();
        drop(e);
        out
    };
    let zstd = ruzstd::encoding::compress_to_vec(
        &json_body[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let run_of = |answer: weir_tests::Answer| {
        assert_eq!(
            answer.status,
            202,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let id = answer.json()["run_id"].as_str().unwrap().to_owned();
        let run = weir.wait_run(&id);
        assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
        (id, run)
    };
    for (coding, bytes) in [
        ("gzip", &gzip),
        ("deflate", &deflate),
        ("br", &br),
        ("zstd", &zstd),
    ] {
        let (id, run) = run_of(post_with(
            &url,
            "application/json",
            bytes,
            &[("content-encoding", coding)],
        ));
        assert_eq!(
            run["steps"][0]["output"],
            serde_json::json!({"event": "compressed", "n": 1}),
            "{coding}: {run:#}"
        );
        // The raw payload is the bytes as they came.
        let raw = weir.api(&format!("/api/runs/{id}/payload?raw=true"));
        assert_eq!(&raw.body, bytes, "{coding}");
    }
    assert_eq!(
        post_with(
            &url,
            "application/json",
            &gzip,
            &[("content-encoding", "compress")]
        )
        .status,
        415
    );
    assert_eq!(
        post_with(
            &url,
            "application/json",
            b"not gzip",
            &[("content-encoding", "gzip")]
        )
        .status,
        400
    );

    // Text in its charset; JSON with a byte order mark.
    let (_, run) = run_of(post_with(
        &url,
        "text/plain; charset=ISO-8859-1",
        b"Gr\xfc\xdfe aus K\xf6ln",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], "Grüße aus Köln");
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("日本語 ok".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let (_, run) = run_of(post_with(&url, "text/plain; charset=utf-16", &utf16, &[]));
    assert_eq!(run["steps"][0]["output"], "日本語 ok");
    let (_, run) = run_of(post_with(
        &url,
        "application/xml; charset=windows-1252",
        b"<note>\x80 5</note>",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], "<note>€ 5</note>");
    let (_, run) = run_of(post_with(
        &url,
        "application/json",
        b"\xEF\xBB\xBF{\"bom\":true}",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], serde_json::json!({"bom": true}));

    // A multipart form with fields and two files.
    let form = b"--b0undary\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nReport\r\n\
--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"b.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\
--b0undary--\r\n";
    let (_, run) = run_of(post_with(
        &url,
        "multipart/form-data; boundary=b0undary",
        form,
        &[],
    ));
    assert_eq!(
        run["steps"][0]["output"],
        serde_json::json!({
            "title": "Report",
            "files": [
                {"filename": "a.txt", "content_type": "text/plain", "size": 5, "base64": "aGVsbG8="},
                {"filename": "b.png", "content_type": "image/png", "size": 4, "base64": "iVBORw=="}
            ]
        })
    );
}

/// A gzip bomb (256 MiB of zeros, ~250 KiB compressed) is refused 413 with the server's memory
/// bounded, and nothing is stored.
#[test]
fn a_compression_bomb_is_refused_with_bounded_memory() {
    use std::io::Write as _;
    let flows = FlowDir::empty();
    flows.write("any.toml", &format!("name = \"any\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("any");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let answer = post_with(
        &url,
        "application/json",
        &bomb,
        &[("content-encoding", "gzip")],
    );
    assert_eq!(
        answer.status,
        413,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        String::from_utf8_lossy(&answer.body).contains("max_body"),
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let peak = weir_tests::peak_memory_of(weir.pid());
    assert!(
        peak > 0 && peak < 200 << 20,
        "peak resident memory: {peak} bytes"
    );
    assert_eq!(weir.count_runs(), 0);
}

/// A 40-digit integer keeps its digits from the webhook through a step's output; JSON nested
/// past serde's limit reaches the flow as text, with `$.webhook.body_note` saying why.
#[test]
fn big_integers_keep_their_digits_and_unreadable_json_says_why() {
    const BIG: &str = "1234567890123456789012345678901234567890";
    let flows = FlowDir::empty();
    flows.write("echo.toml", &format!("name = \"echo\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("echo");

    let body = format!(r#"{{"id":{BIG},"ratio":0.1,"small":7}}"#);
    let answer = post_with(&url, "application/json", body.as_bytes(), &[]);
    assert_eq!(answer.status, 202);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let output = &run["steps"][0]["output"];
    assert_eq!(output["id"].to_string(), BIG, "{output}");
    assert_eq!(output["ratio"].to_string(), "0.1");
    assert_eq!(output["small"], 7);
    assert_eq!(run["webhook"]["output"]["body"]["id"].to_string(), BIG);
    assert_eq!(
        run["webhook"]["output"]["body_note"],
        serde_json::Value::Null
    );

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let answer = post_with(&url, "application/json", deep.as_bytes(), &[]);
    assert_eq!(answer.status, 202);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    let webhook = &run["webhook"]["output"];
    assert_eq!(webhook["body"], deep.as_str());
    let note = webhook["body_note"].as_str().unwrap_or_default();
    assert!(note.contains("recursion limit"), "{webhook}");
}
