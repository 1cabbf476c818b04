//! The command table: one [`CommandSpec`] per command, gathered from the
//! family modules (each exports `SPECS`) plus the session commands here.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use super::{DataContext, Reply};

/// What kind of command this is; a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// Changes the keyspace (refused on a standby, logged).
    pub const WRITE: Flags = Flags(1);
    /// Only reads the keyspace.
    pub const READONLY: Flags = Flags(1 << 1);
    /// May grow memory: refused above `maxmemory`.
    pub const DENYOOM: Flags = Flags(1 << 2);
    /// Administrative (SHUTDOWN, CONFIG, FLUSHALL…).
    pub const ADMIN: Flags = Flags(1 << 3);
    /// Constant or logarithmic time.
    pub const FAST: Flags = Flags(1 << 4);
    /// Pub/sub command.
    pub const PUBSUB: Flags = Flags(1 << 5);
    /// Allowed before `AUTH` (AUTH, HELLO, QUIT, RESET).
    pub const NO_AUTH: Flags = Flags(1 << 6);
    /// Runs at once inside `MULTI` instead of being queued.
    pub const NO_QUEUE: Flags = Flags(1 << 7);
    /// Connection state only; touches no data.
    pub const CONNECTION: Flags = Flags(1 << 8);
    /// May block the client until a key changes (`BLPOP`, …).
    pub const BLOCKING: Flags = Flags(1 << 9);
    /// No flags.
    pub const NONE: Flags = Flags(0);

    /// Both flag sets.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flag names `COMMAND INFO` reports.
    pub fn names(self) -> Vec<&'static str> {
        let all = [
            (Flags::WRITE, "write"),
            (Flags::READONLY, "readonly"),
            (Flags::DENYOOM, "denyoom"),
            (Flags::ADMIN, "admin"),
            (Flags::FAST, "fast"),
            (Flags::PUBSUB, "pubsub"),
            (Flags::NO_AUTH, "no_auth"),
            (Flags::BLOCKING, "blocking"),
        ];
        all.iter().filter(|(flag, _)| self.has(*flag)).map(|(_, name)| *name).collect()
    }
}

/// Connection and server commands, run by the server's session code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SessionCommand {
    Ping,
    Echo,
    Hello,
    Auth,
    Client,
    Select,
    Quit,
    Reset,
    Command,
    Info,
    Role,
    Time,
    Config,
    Shutdown,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    Publish,
    Checkpoint,
    Save,
    Bgsave,
    Lastsave,
    Debug,
    Wait,
}

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Under the keyspace lock; `args[0]` is the command name.
    Data(fn(&mut DataContext, &[Bytes]) -> Reply),
    /// By the session (connection) code.
    Session(SessionCommand),
}

/// One command's description.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    /// What kind of command it is.
    pub flags: Flags,
    /// Position of the first key argument (0: none).
    pub first_key: i32,
    /// Position of the last key argument (-1: the last argument).
    pub last_key: i32,
    /// Step between key arguments.
    pub key_step: i32,
    /// How it runs.
    pub handler: Handler,
}

impl CommandSpec {
    /// Whether `argument_count` (name included) fits the arity.
    pub fn arity_ok(&self, argument_count: usize) -> bool {
        let count = argument_count as i64;
        let arity = self.arity as i64;
        if arity >= 0 {
            count == arity
        } else {
            count >= -arity
        }
    }

    /// The key arguments of a request for this command.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> {
        let len = args.len() as i32;
        let first = self.first_key;
        let last = if self.last_key < 0 { len + self.last_key } else { self.last_key.min(len - 1) };
        let step = self.key_step.max(1);
        let range = if first <= 0 { 0..0 } else { first..last + 1 };
        range.step_by(step as usize).filter_map(move |at| args.get(at as usize))
    }

    /// Whether the command writes.
    pub fn is_write(&self) -> bool {
        self.flags.has(Flags::WRITE)
    }
}

/// Shorthand for the family modules' tables.
pub const fn spec(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    handler: fn(&mut DataContext, &[Bytes]) -> Reply,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
        handler: Handler::Data(handler),
    }
}

const fn session(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    command: SessionCommand,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: flags.with(Flags::CONNECTION),
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
        handler: Handler::Session(command),
    }
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const QUEUE_NEVER: Flags = Flags::NO_QUEUE;

/// Connection and server commands.
pub const SESSION_SPECS: &[CommandSpec] = &[
    session("ping", -1, Flags::FAST, NO_KEYS, SessionCommand::Ping),
    session("echo", 2, Flags::FAST, NO_KEYS, SessionCommand::Echo),
    session("hello", -1, Flags::NO_AUTH.with(Flags::FAST), NO_KEYS, SessionCommand::Hello),
    session("auth", -2, Flags::NO_AUTH.with(Flags::FAST), NO_KEYS, SessionCommand::Auth),
    session("client", -2, Flags::NONE, NO_KEYS, SessionCommand::Client),
    session("select", 2, Flags::FAST, NO_KEYS, SessionCommand::Select),
    session("quit", -1, Flags::NO_AUTH.with(Flags::FAST).with(QUEUE_NEVER), NO_KEYS, SessionCommand::Quit),
    session("reset", 1, Flags::NO_AUTH.with(Flags::FAST).with(QUEUE_NEVER), NO_KEYS, SessionCommand::Reset),
    session("command", -1, Flags::NONE, NO_KEYS, SessionCommand::Command),
    session("info", -1, Flags::NONE, NO_KEYS, SessionCommand::Info),
    session("role", 1, Flags::FAST, NO_KEYS, SessionCommand::Role),
    session("time", 1, Flags::FAST, NO_KEYS, SessionCommand::Time),
    session("config", -2, Flags::ADMIN, NO_KEYS, SessionCommand::Config),
    session("shutdown", -1, Flags::ADMIN.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Shutdown),
    session("multi", 1, Flags::FAST.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Multi),
    session("exec", 1, QUEUE_NEVER, NO_KEYS, SessionCommand::Exec),
    session("discard", 1, Flags::FAST.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Discard),
    session("watch", -2, Flags::FAST.with(QUEUE_NEVER), (1, -1, 1), SessionCommand::Watch),
    session("unwatch", 1, Flags::FAST.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Unwatch),
    session("subscribe", -2, Flags::PUBSUB.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Subscribe),
    session("unsubscribe", -1, Flags::PUBSUB.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Unsubscribe),
    session("psubscribe", -2, Flags::PUBSUB.with(QUEUE_NEVER), NO_KEYS, SessionCommand::PSubscribe),
    session("punsubscribe", -1, Flags::PUBSUB.with(QUEUE_NEVER), NO_KEYS, SessionCommand::PUnsubscribe),
    session("publish", 3, Flags::PUBSUB.with(Flags::FAST), NO_KEYS, SessionCommand::Publish),
    session("checkpoint", -1, Flags::ADMIN.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Checkpoint),
    session("save", 1, Flags::ADMIN.with(QUEUE_NEVER), NO_KEYS, SessionCommand::Save),
    session("bgsave", -1, Flags::ADMIN, NO_KEYS, SessionCommand::Bgsave),
    session("lastsave", 1, Flags::FAST, NO_KEYS, SessionCommand::Lastsave),
    session("wait", 3, QUEUE_NEVER, NO_KEYS, SessionCommand::Wait),
    session("debug", -2, Flags::ADMIN, NO_KEYS, SessionCommand::Debug),
];

/// Every command, in a stable order (for `COMMAND` and `COMMAND COUNT`).
pub static COMMANDS: LazyLock<Vec<CommandSpec>> = LazyLock::new(|| {
    let families: [&[CommandSpec]; 16] = [
        SESSION_SPECS,
        super::strings::SPECS,
        super::keys::SPECS,
        super::key_copy::SPECS,
        super::key_dump::SPECS,
        super::key_object::SPECS,
        super::sort::SPECS,
        super::hashes::SPECS,
        super::sets::SPECS,
        super::set_algebra::SPECS,
        super::lists::SPECS,
        super::list_move::SPECS,
        super::sorted_sets::SPECS,
        super::sorted_ranges::SPECS,
        super::sorted_algebra::SPECS,
        super::blocking::SPECS,
    ];
    let all: Vec<CommandSpec> = families.iter().flat_map(|family| family.iter().copied()).collect();
    let mut names = std::collections::HashSet::new();
    for spec in &all {
        assert!(names.insert(spec.name), "command {} defined twice", spec.name);
        assert_eq!(spec.name, spec.name.to_ascii_lowercase(), "command names are lower case");
    }
    all
});

static BY_NAME: LazyLock<HashMap<&'static str, usize, foldhash::fast::RandomState>> =
    LazyLock::new(|| COMMANDS.iter().enumerate().map(|(index, spec)| (spec.name, index)).collect());

/// The spec of a command name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup_indexed(name).map(|(_, spec)| spec)
}

/// Like [`lookup`], with the command's position in [`COMMANDS`] (for per-command statistics).
pub fn lookup_indexed(name: &[u8]) -> Option<(usize, &'static CommandSpec)> {
    let mut lower = [0u8; 32];
    if name.len() > lower.len() {
        return None;
    }
    for (slot, byte) in lower.iter_mut().zip(name) {
        *slot = byte.to_ascii_lowercase();
    }
    let text = std::str::from_utf8(&lower[..name.len()]).ok()?;
    let index = *BY_NAME.get(text)?;
    Some((index, &COMMANDS[index]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_table_is_consistent() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
        for spec in COMMANDS.iter() {
            assert!(spec.arity != 0, "{}", spec.name);
            assert!(!(spec.flags.has(Flags::WRITE) && spec.flags.has(Flags::READONLY)), "{}", spec.name);
        }
    }

    #[test]
    fn key_positions_follow_the_spec() {
        let args: Vec<Bytes> = ["mset", "a", "1", "b", "2"].iter().map(|s| Bytes::from_static(s.as_bytes())).collect();
        let keys: Vec<_> = lookup(b"mset").unwrap().keys(&args).collect();
        assert_eq!(keys, [&args[1], &args[3]]);
    }
}
