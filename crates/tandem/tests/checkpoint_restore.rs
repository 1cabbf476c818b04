//! Checkpoint restore, in process: restoring a chain plus the log tail
//! gives exactly the state the whole log gives (DESIGN.md invariant 5), a
//! damaged, truncated or foreign file is skipped for the previous one, a
//! gap between checkpoint and log refuses to start, and a checkpoint never
//! holds half a transaction.

mod checkpoint_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use checkpoint_support::{checkpoint_files, flip_byte, Node};
use proptest::prelude::*;
use tandem::checkpoint::format::{Header, Kind, FORMAT_VERSION};
use tandem::checkpoint::restore::load_newest;
use tandem::checkpoint::{file, Requested};
use tandem::store::effect::{Effect, Ttl};
use tandem::store::keyspace::BUCKET_COUNT;
use tandem::store::Keyspace;
use tandem_resp::Frame;

fn bytes(text: String) -> Bytes {
    Bytes::from(text)
}

/// One random effect that is valid on any state: each key prefix holds one type.
fn effect_strategy() -> impl Strategy<Value = Effect> {
    let key = 0..40u32;
    prop_oneof![
        (key.clone(), any::<u16>(), any::<bool>()).prop_map(|(k, v, ttl)| Effect::Set {
            key: bytes(format!("s:{k}")),
            value: bytes(format!("{v}")),
            ttl: if ttl { Ttl::At(1_000 + v as u64) } else { Ttl::Clear },
        }),
        (key.clone(), -50..50i64).prop_map(|(k, delta)| Effect::IncrBy { key: bytes(format!("n:{k}")), delta }),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Effect::HashSet {
            key: bytes(format!("h:{k}")),
            pairs: vec![(bytes(format!("f{}", v % 4)), bytes(format!("{v}")))],
        }),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Effect::HashDelete {
            key: bytes(format!("h:{k}")),
            fields: vec![bytes(format!("f{}", v % 4))]
        }),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Effect::SetAdd {
            key: bytes(format!("z:{k}")),
            members: vec![bytes(format!("m{}", v % 6))]
        }),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Effect::SetRemove {
            key: bytes(format!("z:{k}")),
            members: vec![bytes(format!("m{}", v % 6))]
        }),
        (key.clone(), any::<bool>(), any::<u8>()).prop_map(|(k, left, v)| Effect::ListPush {
            key: bytes(format!("l:{k}")),
            left,
            values: vec![bytes(format!("{v}"))]
        }),
        (key.clone(), any::<bool>(), 1..3u64).prop_map(|(k, left, count)| Effect::ListPop {
            key: bytes(format!("l:{k}")),
            left,
            count
        }),
        (key.clone(), any::<u8>(), -40..40i16).prop_map(|(k, v, score)| Effect::SortedSetAdd {
            key: bytes(format!("o:{k}")),
            members: vec![(bytes(format!("m{}", v % 6)), score as f64 / 4.0), (bytes(format!("m{}", v % 5)), -0.0)]
        }),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Effect::SortedSetRemove {
            key: bytes(format!("o:{k}")),
            members: vec![bytes(format!("m{}", v % 6))]
        }),
        (key.clone(), 0..4u8).prop_map(|(k, kind)| Effect::Delete {
            key: bytes(format!("{}:{k}", ["s", "n", "h", "o"][kind as usize]))
        }),
        (key.clone(), key)
            .prop_map(|(from, to)| Effect::Rename { from: bytes(format!("s:{from}")), to: bytes(format!("s:{to}")) }),
        Just(Effect::FlushAll),
    ]
}

/// A step: one effect (one log record), or a checkpoint of either level.
#[derive(Debug, Clone)]
enum Step {
    Apply(Effect),
    Checkpoint(bool),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => effect_strategy().prop_map(Step::Apply),
        2 => any::<bool>().prop_map(Step::Checkpoint),
    ]
}

/// Writes a checkpoint of `keyspace` the way the checkpointer does.
fn write_checkpoint(
    dir: &std::path::Path,
    keyspace: &mut Keyspace,
    id: u64,
    base: Option<(u64, u64)>,
    index: u64,
) -> u64 {
    let cut = keyspace.cut(base.map(|(_, generation)| generation));
    let kind = if cut.changed_since.is_some() { Kind::Incremental } else { Kind::Full };
    let header = Header {
        id,
        kind,
        node: 1,
        epoch: 0,
        log_index: index,
        base_id: base.map(|(id, _)| id),
        created_unix_ms: 0,
        bucket_total: BUCKET_COUNT as u32,
        key_count: cut.snapshot.key_count() as u64,
        applied: Vec::new(),
        channels: Vec::new(),
    };
    let generation = cut.generation;
    file::write(dir, &header, cut.into_buckets(), &mut |_| {}).unwrap();
    generation
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Restore equals replay: checkpoints at random points (full and
    /// incremental), then the chain plus the effects after it give the same
    /// digest as every effect applied in order.
    #[test]
    fn restore_then_tail_equals_full_replay(steps in prop::collection::vec(step_strategy(), 1..300)) {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Keyspace::new();
        let mut log: Vec<Effect> = Vec::new();
        let mut base: Option<(u64, u64)> = None;
        let mut next_id = 1;
        for step in steps {
            match step {
                Step::Apply(effect) => {
                    live.apply(&effect);
                    log.push(effect);
                }
                Step::Checkpoint(full) => {
                    let base_for_this = if full { None } else { base };
                    let generation = write_checkpoint(dir.path(), &mut live, next_id, base_for_this, log.len() as u64);
                    base = Some((next_id, generation));
                    next_id += 1;
                }
            }
        }
        let mut restored = Keyspace::new();
        let loaded = load_newest(dir.path(), 1, &mut restored, &mut |_| {}).unwrap();
        prop_assert!(loaded.skipped.is_empty());
        for effect in &log[loaded.log_index() as usize..] {
            restored.apply(effect);
        }
        restored.check_counts();
        prop_assert_eq!(restored.digest(), live.digest());
        prop_assert_eq!(restored.len(), live.len());
    }
}

fn fill(node: &Node, from: u32, to: u32) {
    for index in from..to {
        node.run(&["SET", &format!("key:{index}"), &format!("value:{index}")]);
        if index % 7 == 0 {
            node.run(&["DEL", &format!("key:{}", index / 2)]);
        }
    }
}

/// Writes three generations of data with a checkpoint after each of the first
/// two, closes, and returns the final digest and the checkpoint ids.
fn three_generations(data_dir: &std::path::Path, second: Requested) -> (u64, u64, u64) {
    let node = Node::open(data_dir, 1, 3).unwrap();
    fill(&node, 0, 500);
    let first = node.checkpoint(Requested::Full);
    fill(&node, 500, 1_000);
    let second = node.checkpoint(second);
    fill(&node, 1_000, 1_200);
    let digest = node.digest();
    node.close();
    (digest, first, second)
}

#[test]
fn opening_a_new_data_directory_makes_its_checkpoint_directory() {
    // So that the first checkpoint does not fsync the data directory while clients write.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), 1, 2).unwrap();
    assert!(file::directory(dir.path()).is_dir());
    assert!(checkpoint_files(dir.path()).is_empty(), "made empty, before any checkpoint");
    node.close();
}

#[test]
fn a_restart_loads_the_newest_checkpoint_and_replays_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (digest, _, second) = three_generations(dir.path(), Requested::Incremental);
    let node = Node::open(dir.path(), 1, 3).unwrap();
    let restored = node.db.restored();
    assert_eq!(restored.loaded.chain.last().unwrap().id, second);
    assert_eq!(restored.loaded.chain.len(), 2, "full + incremental");
    assert!(restored.replayed > 0 && restored.replayed <= 250, "replayed {}", restored.replayed);
    assert_eq!(node.digest(), digest);
    node.db.with_keyspace(|keyspace| keyspace.check_counts());
}

#[test]
fn a_corrupt_or_truncated_newest_checkpoint_is_skipped_for_the_previous_one() {
    for damage in ["flip-body", "flip-header", "truncate", "empty"] {
        for second_kind in [Requested::Full, Requested::Incremental] {
            let dir = tempfile::tempdir().unwrap();
            let (digest, first, second) = three_generations(dir.path(), second_kind);
            let newest = checkpoint_files(dir.path()).pop().unwrap();
            let length = std::fs::metadata(&newest).unwrap().len();
            match damage {
                "flip-body" => flip_byte(&newest, length / 2),
                "flip-header" => flip_byte(&newest, 20),
                "truncate" => {
                    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(length - 10).unwrap()
                }
                _ => std::fs::write(&newest, b"").unwrap(),
            }
            let node = Node::open(dir.path(), 1, 3).unwrap();
            let loaded = &node.db.restored().loaded;
            assert_eq!(loaded.chain.last().unwrap().id, first, "{damage}: fell back to the first checkpoint");
            assert_eq!(loaded.skipped.len(), 1, "{damage}");
            assert_eq!(loaded.skipped[0].path, newest, "{damage}: the warning names the file");
            assert_eq!(node.digest(), digest, "{damage}: the log tail rebuilds the rest");
            // The next checkpoint gets a fresh id, past the damaged one.
            assert!(node.checkpoint(Requested::Incremental) > second);
            node.close();
        }
    }
}

#[test]
fn a_checkpoint_from_another_node_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let (digest, first, _) = three_generations(ours.path(), Requested::Full);
    let theirs = tempfile::tempdir().unwrap();
    let other = Node::open(theirs.path(), 2, 3).unwrap();
    fill(&other, 0, 50);
    other.checkpoint(Requested::Full);
    other.close();
    // Their file, named as our newest checkpoint.
    let newest = checkpoint_files(ours.path()).pop().unwrap();
    std::fs::copy(checkpoint_files(theirs.path()).pop().unwrap(), &newest).unwrap();
    let node = Node::open(ours.path(), 1, 3).unwrap();
    let loaded = &node.db.restored().loaded;
    assert_eq!(loaded.chain.last().unwrap().id, first);
    assert!(loaded.skipped[0].reason.contains("written by node 2"), "{:?}", loaded.skipped);
    assert_eq!(node.digest(), digest);
}

#[test]
fn a_log_gap_after_the_usable_checkpoint_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), 1, 1).unwrap();
    fill(&node, 0, 400);
    node.checkpoint(Requested::Full);
    fill(&node, 400, 800);
    // Retention removes the segments the log's writer has closed by then: all of them,
    // once it has written everything (under load it can lag a little behind).
    node.wait_log_written();
    node.checkpoint(Requested::Full); // retention 1: the log before it goes
    fill(&node, 800, 900);
    node.close();
    assert_eq!(checkpoint_files(dir.path()).len(), 1);
    let only = checkpoint_files(dir.path()).pop().unwrap();
    flip_byte(&only, 100);
    let error = Node::open(dir.path(), 1, 1).err().expect("a gap must refuse to start").to_string();
    assert!(error.contains("missing"), "{error}");
    assert!(error.contains(&only.display().to_string()), "the message names the skipped file: {error}");
}

#[test]
fn a_log_shorter_than_the_checkpoint_continues_after_the_checkpoint() {
    // As after a crash with `appendfsync no`: the checkpoint reached the disk, the log's tail did not.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), 1, 2).unwrap();
    fill(&node, 0, 300);
    node.checkpoint(Requested::Full);
    let digest = node.digest();
    let index = node.db.last_index();
    node.close();
    std::fs::remove_dir_all(tandem::db::log_dir(dir.path())).unwrap();
    let node = Node::open(dir.path(), 1, 2).unwrap();
    assert_eq!(node.digest(), digest);
    assert_eq!(node.db.last_index(), index);
    node.run(&["SET", "after", "1"]);
    assert_eq!(node.db.last_index(), index.next());
    node.close();
    let node = Node::open(dir.path(), 1, 2).unwrap();
    assert_eq!(node.run(&["GET", "after"]), Frame::Bulk(Bytes::from_static(b"1")));
}

#[test]
fn restore_into_an_empty_data_directory_starts_the_log_after_the_checkpoint() {
    let source = tempfile::tempdir().unwrap();
    let node = Node::open(source.path(), 1, 2).unwrap();
    fill(&node, 0, 300);
    node.checkpoint(Requested::Full);
    fill(&node, 300, 350);
    let id = node.checkpoint(Requested::Incremental);
    let digest = node.digest();
    let index = node.db.last_index();
    node.close();
    let target = tempfile::tempdir().unwrap();
    let target_dir = target.path().join("restored");
    assert_eq!(tandem::checkpoint::cli::restore(source.path(), id, &target_dir), std::process::ExitCode::SUCCESS);
    let node = Node::open(&target_dir, 1, 2).unwrap();
    assert_eq!(node.digest(), digest);
    node.run(&["SET", "after", "1"]);
    assert_eq!(node.db.last_index(), index.next());
    // Restoring again into a directory that is no longer empty is refused.
    node.close();
    assert_eq!(tandem::checkpoint::cli::restore(source.path(), id, &target_dir), std::process::ExitCode::FAILURE);
}

#[test]
fn the_format_version_is_stated_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), 1, 2).unwrap();
    node.checkpoint(Requested::Full);
    node.close();
    let bytes = std::fs::read(checkpoint_files(dir.path()).pop().unwrap()).unwrap();
    assert_eq!(&bytes[..8], b"TNDMCKPT");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION);
}

/// No half transactions: while clients move amounts between accounts in
/// MULTI/EXEC blocks, every checkpoint (full or incremental chain) conserves the total.
#[test]
fn checkpoints_never_hold_half_a_transaction() {
    const ACCOUNTS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::open(dir.path(), 1, 100).unwrap());
    for account in 0..ACCOUNTS {
        node.run(&["SET", &format!("account:{account}"), "1000"]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..3)
        .map(|seed| {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut state = seed as u64 * 7919 + 1;
                let mut moves = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let (from, to) = ((state >> 20) as usize % ACCOUNTS, (state >> 40) as usize % ACCOUNTS);
                    let amount = (state % 50).to_string();
                    let queued: Vec<tandem::db::Queued> = [
                        ["DECRBY".to_string(), format!("account:{from}"), amount.clone()],
                        ["INCRBY".to_string(), format!("account:{to}"), amount],
                    ]
                    .into_iter()
                    .map(|words| {
                        let args: Vec<Bytes> = words.iter().map(|word| Bytes::from(word.clone())).collect();
                        tandem::db::Queued { spec: tandem::cmd::lookup(&args[0]).unwrap(), args }
                    })
                    .collect();
                    let queued: Vec<&tandem::db::Queued> = queued.iter().collect();
                    node.db.execute_transaction(&queued, &[]);
                    moves += 1;
                }
                moves
            })
        })
        .collect();
    let mut ids = Vec::new();
    for round in 0..12 {
        std::thread::sleep(std::time::Duration::from_millis(15));
        ids.push(node.checkpoint(if round % 4 == 0 { Requested::Full } else { Requested::Incremental }));
    }
    stop.store(true, Ordering::Relaxed);
    let moves: u64 = movers.into_iter().map(|mover| mover.join().unwrap()).sum();
    assert!(moves > 100, "only {moves} transactions ran");
    let files = checkpoint_files(dir.path());
    for id in ids {
        // Restore exactly the chain ending at `id`: copy the files up to it.
        let copy = tempfile::tempdir().unwrap();
        for path in files
            .iter()
            .filter(|path| file::parse_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap().0 <= id)
        {
            std::fs::copy(path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
        let mut keyspace = Keyspace::new();
        let loaded = load_newest(copy.path(), 1, &mut keyspace, &mut |_| {}).unwrap();
        assert_eq!(loaded.chain.last().unwrap().id, id);
        let total: i64 = (0..ACCOUNTS)
            .map(|account| match &keyspace.get(format!("account:{account}").as_bytes(), 0).unwrap().value {
                tandem::store::Value::String(text) => std::str::from_utf8(text).unwrap().parse::<i64>().unwrap(),
                other => panic!("not a string: {other:?}"),
            })
            .sum();
        assert_eq!(total, 1000 * ACCOUNTS as i64, "checkpoint {id} holds half a transaction");
    }
}
