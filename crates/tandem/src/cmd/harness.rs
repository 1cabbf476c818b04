//! A test harness that runs data commands the way the dispatcher does, on a
//! keyspace of its own, recording every effect so replay can be checked.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tandem_resp::Frame;

use super::{lookup, CommandError, DataContext, Handler, Reply};
use crate::store::{Effect, Keyspace};

/// A keyspace and every effect that built it, to run commands against.
pub struct Harness {
    /// The state commands run on.
    pub keyspace: Keyspace,
    /// Every effect applied so far, in order.
    pub effects: Vec<Effect>,
    /// Seeded, so random choices repeat.
    pub rng: SmallRng,
    /// The commands' clock.
    pub now_ms: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// An empty keyspace at a fixed time and seed.
    pub fn new() -> Harness {
        Harness { keyspace: Keyspace::new(), effects: Vec::new(), rng: SmallRng::seed_from_u64(7), now_ms: 1_000_000 }
    }

    /// Runs a command line (words split on spaces).
    pub fn run(&mut self, line: &str) -> Reply {
        let args: Vec<Bytes> = line.split(' ').map(|word| Bytes::copy_from_slice(word.as_bytes())).collect();
        self.run_args(&args)
    }

    /// Runs a command as the dispatcher does: arity from the spec, expired
    /// keys of a write purged first.
    pub fn run_args(&mut self, args: &[Bytes]) -> Reply {
        let spec = lookup(&args[0]).expect("a known command");
        if !spec.arity_ok(args.len()) {
            return Err(CommandError::WrongArity(spec.name.to_string()));
        }
        let Handler::Data(handler) = spec.handler else { panic!("{} is not a data command", spec.name) };
        let mut context = DataContext::new(&mut self.keyspace, &mut self.effects, self.now_ms, &mut self.rng);
        if spec.is_write() {
            for key in spec.keys(args) {
                context.purge_if_expired(key);
            }
        }
        handler(&mut context, args)
    }

    /// `run`, which must succeed.
    pub fn ok(&mut self, line: &str) -> Frame {
        self.run(line).unwrap_or_else(|error| panic!("{line}: {error}"))
    }

    /// The error text of `run`, which must fail.
    pub fn error(&mut self, line: &str) -> String {
        self.run(line).expect_err(line).to_string()
    }

    /// Changes state through an effect, recorded like a command's.
    pub fn seed(&mut self, effect: Effect) {
        self.keyspace.apply(&effect);
        self.effects.push(effect);
    }

    /// The list under `key`, as text (empty when absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.keyspace.get(key.as_bytes(), self.now_ms).map(|entry| &entry.value) {
            None => Vec::new(),
            Some(crate::store::Value::List(list)) => {
                list.iter().map(|item| String::from_utf8(item.to_vec()).unwrap()).collect()
            }
            Some(other) => panic!("not a list: {other:?}"),
        }
    }

    /// Replaying the recorded effects on an empty keyspace reaches the same state.
    pub fn assert_replay_matches(&self) {
        let mut replica = Keyspace::new();
        for effect in &self.effects {
            replica.apply(effect);
        }
        assert_eq!(replica.digest(), self.keyspace.digest());
        assert_eq!(replica.len(), self.keyspace.len());
        self.keyspace.check_counts();
    }
}

/// Bytes of a text.
pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A bulk reply holding `text`.
pub fn bulk_text(text: &str) -> Frame {
    Frame::Bulk(b(text))
}

/// The text of a bulk reply.
pub fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

/// The bulk strings of an array, set or map (keys and values), sorted.
pub fn sorted(frame: &Frame) -> Vec<String> {
    let mut texts: Vec<String> = match frame {
        Frame::Array(items) | Frame::Set(items) => items.iter().map(text).collect(),
        Frame::Map(pairs) => pairs.iter().flat_map(|(key, value)| [text(key), text(value)]).collect(),
        other => panic!("not an aggregate: {other:?}"),
    };
    texts.sort();
    texts
}
