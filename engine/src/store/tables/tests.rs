//! Properties of the hand-written decoders of stored values: the request envelope and
//! bundles. Arbitrary bytes never panic them, and what is encoded reads back exactly.

use proptest::prelude::*;
use redb::{Database, ReadableDatabase, TableDefinition, backends::InMemoryBackend};

use super::bundle;
use super::{Envelope, StoredRequest};
use crate::store::types::{RunId, TokenUsed, VerifyUsed};

const TABLE: TableDefinition<u128, &[u8]> = TableDefinition::new("bundles");

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Any text, control characters and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(12).collect())
}

/// An arbitrary envelope, built field by field: a field added to [`Envelope`] breaks this
/// literal, so the round trip below cannot silently leave it out.
fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (text(), text(), text(), text(), text()),
        proptest::collection::vec((text(), text()), 0..4),
        proptest::option::of(text()),
        any::<u64>(),
        proptest::option::of(text()),
        proptest::option::of(any::<u128>().prop_map(RunId::from)),
        proptest::option::of(prop_oneof![
            Just(TokenUsed::Current),
            Just(TokenUsed::Previous)
        ]),
        proptest::option::of(
            (text(), any::<u32>()).prop_map(|(scheme, secret)| VerifyUsed { scheme, secret }),
        ),
    )
        .prop_map(
            |(
                (flow_id, flow_version, method, path, query),
                headers,
                remote_addr,
                received_at_ms,
                dedupe_key,
                replay_of,
                token,
                verify,
            )| Envelope {
                flow_id,
                flow_version,
                method,
                path,
                query,
                headers,
                remote_addr,
                received_at_ms,
                dedupe_key,
                replay_of,
                token,
                verify,
            },
        )
}

/// A database in memory holding `bundles` under their keys.
fn database(bundles: &[(u128, Vec<u8>)]) -> Database {
    let db = Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .expect("an in-memory database opens");
    let tx = db.begin_write().expect("a write transaction");
    {
        let mut table = tx.open_table(TABLE).expect("the table opens");
        for (key, bundle) in bundles {
            table
                .insert(*key, bundle.as_slice())
                .expect("the bundle is stored");
        }
    }
    tx.commit().expect("the bundles commit");
    db
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_envelope_reads_back_exactly(
        id in any::<u128>().prop_map(RunId::from),
        envelope in envelope(),
        body in bytes(256),
    ) {
        let stored = envelope.encode(&body).expect("a short envelope encodes");
        // In the body's own buffer, with room to spare or none: the same bytes.
        let mut roomy = Vec::with_capacity(body.len() + super::REQUEST_HEAD_ROOM);
        roomy.extend_from_slice(&body);
        prop_assert_eq!(&envelope.encode_owned(roomy).expect("encodes"), &stored);
        prop_assert_eq!(&envelope.encode_owned(body.clone()).expect("encodes"), &stored);
        prop_assert_eq!(Envelope::flow_of(id, &stored).expect("its flow id reads"), envelope.flow_id.as_str());
        let StoredRequest { envelope: read, body: read_body } =
            Envelope::decode(id, &stored).expect("what was encoded decodes");
        prop_assert_eq!(read, envelope);
        prop_assert_eq!(read_body, body.as_slice());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_envelope_decoder(
        id in any::<u128>().prop_map(RunId::from),
        stored in bytes(128),
    ) {
        let _ = Envelope::flow_of(id, &stored);
        let _ = Envelope::decode(id, &stored);
    }

    /// A damaged envelope (one byte changed, or cut short) is an error or a value, never a
    /// panic: this reaches the decoder's later checks, which random bytes seldom do.
    #[test]
    fn a_damaged_envelope_never_panics_the_decoder(
        id in any::<u128>().prop_map(RunId::from),
        envelope in envelope(),
        body in bytes(32),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut stored = envelope.encode(&body).expect("a short envelope encodes");
        let at = at.index(stored.len());
        if cut {
            stored.truncate(at);
        } else {
            stored[at] = byte;
        }
        let _ = Envelope::flow_of(id, &stored);
        let _ = Envelope::decode(id, &stored);
    }

    #[test]
    fn bundles_read_back_and_find_every_record(
        ids in proptest::collection::btree_set(any::<u128>(), 1..40),
        records in proptest::collection::vec(bytes(64), 40),
        sizes in proptest::collection::vec(1..8usize, 40),
    ) {
        let runs: Vec<(u128, Vec<u8>)> = ids.into_iter().zip(records).collect();
        // The runs, in increasing id order, cut into bundles of arbitrary sizes.
        let mut bundles = Vec::new();
        let mut rest = runs.as_slice();
        for size in sizes {
            if rest.is_empty() {
                break;
            }
            let (these, after) = rest.split_at(size.min(rest.len()));
            let mut builder = bundle::Builder::default();
            for (id, record) in these {
                builder.push(*id, record).expect("a small record fits");
            }
            let (key, value) = builder.take().expect("a bundle of at least one run");
            prop_assert!(builder.is_empty());
            prop_assert_eq!(key, these[0].0);
            let listed: Vec<u128> = bundle::ids(key, &value).expect("its ids read").collect();
            prop_assert_eq!(listed, these.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            let read = bundle::records(key, &value).expect("its records read");
            prop_assert_eq!(read.len(), these.len());
            for ((id, range), (want_id, want)) in read.into_iter().zip(these) {
                prop_assert_eq!(id, *want_id);
                prop_assert_eq!(&value[range], want.as_slice());
            }
            bundles.push((key, value));
            rest = after;
        }
        let runs = &runs[..runs.len() - rest.len()];

        let db = database(&bundles);
        let tx = db.begin_read().expect("a read transaction");
        let table = tx.open_table(TABLE).expect("the table opens");
        for (id, record) in runs {
            let found = bundle::find(&table, RunId::from(*id)).expect("lookup reads");
            prop_assert_eq!(found.as_ref().map(bundle::Found::bytes), Some(record.as_slice()));
        }
        let mut descending = bundle::Descending::new(&table);
        for (id, record) in runs.iter().rev() {
            let found = descending.find(RunId::from(*id)).expect("lookup reads");
            prop_assert_eq!(found, Some(record.as_slice()));
        }
        // An id between or around the stored ones is in no bundle.
        for absent in [0, u128::MAX].into_iter().chain(runs.iter().map(|(id, _)| id.wrapping_add(1))) {
            if runs.iter().all(|(id, _)| *id != absent) {
                let found = bundle::find(&table, RunId::from(absent)).expect("lookup reads");
                prop_assert!(found.is_none());
            }
        }
        let last = bundle::last_id(&table).expect("the last id reads");
        prop_assert_eq!(last, runs.last().map(|(id, _)| *id));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_bundle_reader(
        key in any::<u128>(),
        value in prop_oneof![
            bytes(96),
            // A plausible directory head, so reading goes past the count.
            (0..6u32, bytes(160)).prop_map(|(count, rest)| {
                let mut value = count.to_le_bytes().to_vec();
                value.extend(rest);
                value
            }),
        ],
        probes in proptest::collection::vec(any::<u128>(), 0..4),
    ) {
        if let Ok(ids) = bundle::ids(key, &value) {
            ids.for_each(drop);
        }
        if let Ok(records) = bundle::records(key, &value) {
            for (_, range) in records {
                prop_assert!(range.end <= value.len());
            }
        }
        let db = database(&[(key, value)]);
        let tx = db.begin_read().expect("a read transaction");
        let table = tx.open_table(TABLE).expect("the table opens");
        for probe in probes.into_iter().chain([key]) {
            if let Ok(Some(found)) = bundle::find(&table, RunId::from(probe)) {
                let _ = found.bytes();
            }
            let _ = bundle::Descending::new(&table).find(RunId::from(probe));
        }
        let _ = bundle::last_id(&table);
    }
}

/// Stored envelopes across versions: a run stored before a field existed still reads, and
/// says nothing of what it did not record.
mod versions {
    use serde_json::json;

    use super::super::*;

    fn state() -> State {
        State {
            status: RunStatus::Succeeded,
            attempt: 1,
            started_at_ms: Some(1),
            finished_at_ms: Some(2),
            error: None,
            next_attempt_at_ms: None,
        }
    }

    #[test]
    fn a_run_stored_before_verify_was_recorded_reads_without_it() {
        let id = RunId::from(7_u128);
        let old = br#"{"flow_id":"f","flow_version":"v","method":"POST","path":"/hooks/f/[redacted]","query":"","headers":[],"remote_addr":null,"received_at_ms":0,"dedupe_key":null}"#;
        let envelope: Envelope = decode("an older envelope", old).unwrap();
        assert_eq!(envelope.verify, None);
        assert_eq!(envelope.token, None);
        let shown = serde_json::to_value(state().to_run(id, &envelope, 0)).unwrap();
        assert!(shown.get("verify").is_none(), "{shown}");

        let verified = Envelope {
            verify: Some(VerifyUsed {
                scheme: "github".into(),
                secret: 1,
            }),
            ..envelope
        };
        let bytes = verified.encode(b"{}").unwrap();
        let back = Envelope::decode(id, &bytes).unwrap();
        assert_eq!(back.envelope.verify, verified.verify);
        assert_eq!(back.body, b"{}");
        let shown = serde_json::to_value(state().to_run(id, &back.envelope, 2)).unwrap();
        assert_eq!(shown["verify"], json!({"scheme": "github", "secret": 1}));
    }
}
