//! The writer's scheduling and its answers when the journal cannot be written.

use super::super::journal;
use super::super::tables::{LIVE, REPLAYS, REQUESTS};
use super::super::types::RunStatus;
use super::*;

fn writer() -> (tempfile::TempDir, Writer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::create(dir.path().join("w.redb")).expect("database");
    let (_ops, receiver) = std::sync::mpsc::channel();
    let writer = Writer {
        db: Arc::new(db),
        ops: receiver,
        config: WriterConfig {
            max_batch: 512,
            sync_progress: false,
        },
        counters: Arc::default(),
        last_id: 0,
        unsynced_since: None,
        deferred: VecDeque::new(),
        last_accept: None,
        journal: None,
        redo: Vec::new(),
        unconfirmed: Vec::new(),
        housekeeping: VecDeque::new(),
        housekeeping_passed: 0,
    };
    (dir, writer)
}

fn accept(waiting: &Arc<AtomicUsize>) -> Op {
    Op::Accept {
        run: Box::new(Prepared {
            flow_id: "f".into(),
            dedupe_key: None,
            dedupe_window: None,
            bytes: Vec::new(),
            replay_of: None,
        }),
        permit: AcceptPermit::try_acquire(waiting, usize::MAX).expect("permit"),
        reply: oneshot::channel().0,
    }
}

/// An accept of flow `f` with this dedupe value, and where its answer arrives.
fn deduped_accept(
    waiting: &Arc<AtomicUsize>,
    dedupe_key: &str,
) -> (Op, oneshot::Receiver<Result<AcceptAnswer, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    let op = Op::Accept {
        run: Box::new(Prepared {
            flow_id: "f".into(),
            dedupe_key: Some(dedupe_key.into()),
            dedupe_window: None,
            bytes: b"the request".to_vec(),
            replay_of: None,
        }),
        permit: AcceptPermit::try_acquire(waiting, usize::MAX).expect("permit"),
        reply,
    };
    (op, answer)
}

/// An accept of a replay of `original`.
fn replay_of(
    waiting: &Arc<AtomicUsize>,
    original: RunId,
    reply: oneshot::Sender<Result<AcceptAnswer, StoreError>>,
) -> Op {
    Op::Accept {
        run: Box::new(Prepared {
            flow_id: "f".into(),
            dedupe_key: None,
            dedupe_window: None,
            bytes: b"the replayed request".to_vec(),
            replay_of: Some(original),
        }),
        permit: AcceptPermit::try_acquire(waiting, usize::MAX).expect("permit"),
        reply,
    }
}

/// How many replay links the store holds.
fn replay_links(writer: &Writer) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let txn = writer.db.begin_read().expect("read");
    match txn.open_table(REPLAYS) {
        Ok(table) => table.len().expect("len"),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => panic!("opening the replays table: {e}"),
    }
}

/// `weir check` finds no replay link naming a missing run. (These tests' request bytes are
/// not envelopes, which it reports too.)
fn assert_no_replay_damage(dir: &tempfile::TempDir) {
    let report = crate::store::check(&dir.path().join("w.redb")).expect("check");
    let replays: Vec<_> = report
        .damaged
        .iter()
        .filter(|line| line.contains("replay"))
        .collect();
    assert!(replays.is_empty(), "{replays:?}");
}

/// How many runs the store holds, and how many request bundles.
fn stored(writer: &Writer) -> (u64, u64) {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let txn = writer.db.begin_read().expect("read");
    let live = txn.open_table(LIVE).expect("live").len().expect("len");
    let requests = txn
        .open_table(REQUESTS)
        .expect("requests")
        .len()
        .expect("len");
    (live, requests)
}

/// Gives the writer a journal opened read-only, so that its writes fail as on a full or
/// broken disk.
fn give_failing_journal(writer: &mut Writer, dir: &tempfile::TempDir) {
    let path = dir.path().join("w.redb-journal");
    std::fs::write(&path, b"").expect("create");
    let read_only = std::fs::File::open(&path).expect("open");
    writer.journal = Some(JournalLink {
        journal: journal::Journal::new(
            Box::new(journal::FileIo::new(read_only, None, path.clone())),
            path,
            Arc::clone(&writer.counters),
        ),
        seq: 0,
    });
}

#[test]
fn when_the_journal_cannot_be_written_the_accept_fails_is_taken_back_and_later_ones_fsync_redb() {
    let (dir, mut writer) = writer();
    give_failing_journal(&mut writer, &dir);
    let waiting = Arc::new(AtomicUsize::new(0));
    let durable = |writer: &Writer| writer.counters.durable_commits.load(Ordering::Relaxed);

    let (first, first_answer) = deduped_accept(&waiting, "delivery-1");
    let (other, other_answer) = deduped_accept(&waiting, "delivery-2");
    writer.commit(vec![first, other]);
    for answer in [first_answer, other_answer] {
        match answer.blocking_recv().expect("answered") {
            Err(err) => assert!(
                err.to_string().contains("writing the journal"),
                "unexpected error: {err}"
            ),
            Ok(_) => panic!("an accept was answered Ok although its journal write failed"),
        }
    }
    // The senders were told it failed, so nothing of theirs stays to run: taken back in
    // a durable commit.
    assert_eq!(stored(&writer), (0, 0));
    assert_eq!(durable(&writer), 1);

    // The journal is not tried again: the sender's retry is a new run (not a duplicate of
    // the one taken back), made durable by redb's own fsync.
    let (retry, answer) = deduped_accept(&waiting, "delivery-1");
    writer.commit(vec![retry]);
    assert!(matches!(
        answer.blocking_recv().expect("answered"),
        Ok(AcceptAnswer::New(_))
    ));
    assert_eq!(stored(&writer), (1, 1));
    assert_eq!(durable(&writer), 2);
}

#[test]
fn a_replay_whose_journal_write_fails_is_taken_back_with_its_link_to_the_original() {
    let (dir, mut writer) = writer();
    let waiting = Arc::new(AtomicUsize::new(0));
    // The original, accepted while there is no journal: made durable by redb.
    let (op, answer) = deduped_accept(&waiting, "delivery-1");
    writer.commit(vec![op]);
    let Ok(AcceptAnswer::New(original)) = answer.blocking_recv().expect("answered") else {
        panic!("the accept failed");
    };

    give_failing_journal(&mut writer, &dir);
    let (reply, answer) = oneshot::channel();
    writer.commit(vec![replay_of(&waiting, original, reply)]);
    assert!(
        answer.blocking_recv().expect("answered").is_err(),
        "a replay was answered Ok although its journal write failed"
    );
    assert_eq!(stored(&writer), (1, 1), "the original alone stays");
    assert_eq!(
        replay_links(&writer),
        0,
        "the original lists no replay that is not there"
    );
    drop(writer);
    assert_no_replay_damage(&dir);
}

/// A replay whose original was pruned before its accept is stored without a link to it.
#[test]
fn a_replay_of_a_run_pruned_meanwhile_is_stored_without_a_link() {
    let (_dir, mut writer) = writer();
    let waiting = Arc::new(AtomicUsize::new(0));
    let (reply, answer) = oneshot::channel();
    writer.commit(vec![replay_of(&waiting, RunId::from(1), reply)]);
    assert!(matches!(
        answer.blocking_recv().expect("answered"),
        Ok(AcceptAnswer::New(_))
    ));
    assert_eq!(stored(&writer), (1, 1));
    assert_eq!(replay_links(&writer), 0);
}

#[test]
fn a_start_whose_journal_write_fails_leaves_the_run_queued() {
    let (dir, mut writer) = writer();
    let waiting = Arc::new(AtomicUsize::new(0));
    // Accepted while there is no journal: made durable by redb.
    let (op, answer) = deduped_accept(&waiting, "delivery-1");
    writer.commit(vec![op]);
    let Ok(AcceptAnswer::New(id)) = answer.blocking_recv().expect("answered") else {
        panic!("the accept failed");
    };

    give_failing_journal(&mut writer, &dir);
    let (reply, answer) = oneshot::channel();
    writer.commit(vec![Op::Start { id, reply }]);
    assert!(
        answer.blocking_recv().expect("answered").is_err(),
        "a start was answered Ok although its journal write failed"
    );
    let status = {
        use redb::ReadableDatabase;
        let txn = writer.db.begin_read().expect("read");
        let live = txn.open_table(LIVE).expect("live");
        let value = live.get(id.as_u128()).expect("get").expect("still live");
        State::from_live(id, value.value()).expect("state").status
    };
    assert_eq!(status, RunStatus::Queued);
}

fn step(index: u32) -> Op {
    Op::Step {
        id: RunId::from(1),
        index,
        step_id: format!("s{index}"),
        bytes: Vec::new(),
        reply: oneshot::channel().0,
    }
}

/// The step indexes of a batch's progress ops, in order, and its number of accepts.
fn shape(batch: &[Op]) -> (Vec<u32>, usize) {
    let steps = batch
        .iter()
        .filter_map(|op| match op {
            Op::Step { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    let accepts = batch
        .iter()
        .filter(|op| matches!(op, Op::Accept { .. }))
        .count();
    (steps, accepts)
}

#[test]
fn accepts_go_first_and_progress_follows_in_order() {
    let (_dir, mut writer) = writer();
    let waiting = Arc::new(AtomicUsize::new(0));

    // A burst: every accept joins the transaction, progress only up to its share.
    let mut incoming: Vec<Op> = (0..600).map(step).collect();
    incoming.extend((0..40).map(|_| accept(&waiting)));
    let (steps, accepts) = shape(&writer.schedule(incoming));
    assert_eq!(accepts, 40);
    assert_eq!(
        steps,
        (0..PROGRESS_BESIDE_ACCEPTS as u32).collect::<Vec<_>>()
    );

    // More accepts keep coming: progress still moves, a share at a time, in order.
    let (steps, accepts) = shape(&writer.schedule(vec![accept(&waiting)]));
    assert_eq!(accepts, 1);
    let next = PROGRESS_BESIDE_ACCEPTS as u32;
    assert_eq!(steps, (next..2 * next).collect::<Vec<_>>());

    // A gap between accepts: a small transaction of progress alone.
    let (steps, _) = shape(&writer.schedule(Vec::new()));
    assert_eq!(steps.len(), PROGRESS_IN_BURST);
    assert_eq!(steps[0], 2 * next);

    // The burst is over: large transactions drain what is left.
    writer.last_accept = Some(Instant::now() - BURST_WINDOW * 2);
    let left = writer.deferred.len();
    let (steps, _) = shape(&writer.schedule(Vec::new()));
    assert_eq!(steps.len(), MAX_PROGRESS.min(left));
    assert!(steps.windows(2).all(|w| w[0] + 1 == w[1]));
    let mut rest = Vec::new();
    while !writer.deferred.is_empty() {
        rest.extend(shape(&writer.schedule(Vec::new())).0);
    }
    assert_eq!(rest.len(), left - steps.len());
    assert_eq!(rest.first(), steps.last().map(|last| last + 1).as_ref());
    assert_eq!(rest.last(), Some(&599));
    assert!(writer.deferred.is_empty());
}

fn prune() -> Op {
    Op::Prune {
        ids: Vec::new(),
        reply: oneshot::channel().0,
    }
}

fn prunes(batch: &[Op]) -> usize {
    batch
        .iter()
        .filter(|op| matches!(op, Op::Prune { .. }))
        .count()
}

#[test]
fn a_prune_waits_for_a_transaction_without_accepts_or_lets_a_few_go_first() {
    let (_dir, mut writer) = writer();
    let waiting = Arc::new(AtomicUsize::new(0));
    // Without accepts, a prune goes at once, one per transaction.
    let batch = writer.schedule(vec![prune(), prune()]);
    assert_eq!(prunes(&batch), 1);
    assert_eq!(prunes(&writer.schedule(Vec::new())), 1);
    // Beside accepts, it lets HOUSEKEEPING_EVERY transactions of them go first.
    let batch = writer.schedule(vec![prune(), accept(&waiting)]);
    assert_eq!(prunes(&batch), 0);
    for _ in 1..HOUSEKEEPING_EVERY {
        assert_eq!(prunes(&writer.schedule(vec![accept(&waiting)])), 0);
    }
    let batch = writer.schedule(vec![accept(&waiting)]);
    assert_eq!(shape(&batch).1, 1);
    assert_eq!(prunes(&batch), 1);
    assert!(writer.housekeeping.is_empty());
}
