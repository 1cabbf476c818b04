//! A connection's session: protocol version, authentication, transaction
//! and subscription state, and the connection and server commands.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tandem_log::LogIndex;
use tandem_resp::{Frame, Protocol};
use tokio::sync::mpsc;

use super::clients::Client;
use super::pubsub::{Kind, Subscriber};
use super::{info, Shared};
use crate::cmd::args::is;
use crate::cmd::error::unknown_command;
use crate::cmd::{lookup, lookup_indexed, CommandError, CommandSpec, Flags, Handler, SessionCommand, COMMANDS};
use crate::db::Queued;
use crate::limits;

/// The state of one client connection.
pub struct Session {
    /// This client as the registry sees it.
    pub client: Arc<Client>,
    /// RESP version in use (HELLO switches it).
    pub protocol: Protocol,
    authenticated: bool,
    /// Commands queued since MULTI; `None` outside a transaction.
    multi: Option<Vec<Queued>>,
    /// A queued command was refused: EXEC must abort.
    multi_failed: bool,
    /// WATCHed keys with the versions seen.
    watched: Vec<(Bytes, u64)>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    /// Where the broker delivers this client's messages.
    pubsub_sender: mpsc::Sender<Frame>,
    /// The last command looked up: pipelines repeat one command, and this skips the table.
    last_lookup: Option<(Bytes, usize, &'static CommandSpec)>,
    /// The log index of this connection's last write, for `WAIT`.
    last_write: LogIndex,
}

/// A reply that an admin command produces later (`CHECKPOINT`, `SAVE`
/// reply once the checkpoint is durable); the connection awaits it in order.
pub type DeferredReply = std::pin::Pin<Box<dyn std::future::Future<Output = Frame> + Send>>;

/// What the connection must do after a command.
#[derive(Default)]
pub struct Flow {
    /// The reply must wait until this log index is acknowledged.
    pub ticket: Option<LogIndex>,
    /// Close the connection once the replies are written.
    pub close: bool,
    /// The command's reply, still to come; nothing after it runs before it.
    pub deferred: Option<DeferredReply>,
    /// A blocking command found nothing to pop: the connection waits (see
    /// `server::blocking`); nothing after it runs before its reply.
    pub blocked: Option<Blocked>,
}

/// A blocking command (`BLPOP`, …) waiting for one of its keys to change.
pub struct Blocked {
    /// The command, run again on every change.
    pub spec: &'static CommandSpec,
    /// Its arguments, name first.
    pub args: Vec<Bytes>,
    /// Its keys and timeout.
    pub plan: crate::cmd::blocking::WaitPlan,
}

/// A standby refuses writes like a Redis replica, and reads too with `replica_read = false`;
/// an active without a valid control-plane lease (fenced) refuses writes with `-READONLY` as
/// well, so that clients treat it like a demoted master and look for the active again.
fn refused_by_role(shared: &Shared, spec: &CommandSpec) -> Option<CommandError> {
    let reads_data = matches!(spec.handler, Handler::Data(_));
    // One lease check per command (it reads the control plane's metrics).
    if (spec.is_write() || reads_data) && shared.replication.lease_lost() {
        let message = if spec.is_write() {
            "READONLY this node holds no control-plane lease (fenced): it may no longer be the active; retry"
        } else {
            // Its data may hold writes no standby has (never acknowledged) or miss a
            // successor's: a read would wait for a replication that cannot be confirmed, or mislead.
            "READONLY this node holds no control-plane lease (fenced): it cannot vouch for its data; read from the \
             active"
        };
        return Some(CommandError::Other(message.into()));
    }
    if !shared.replication.refuses_writes() {
        return None;
    }
    if spec.is_write() {
        return Some(CommandError::ReadOnly);
    }
    if reads_data && shared.replication.refuses_reads() {
        return Some(CommandError::Other(
            "READONLY this standby does not serve reads (replica_read = false); read from the active".into(),
        ));
    }
    None
}

/// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]` — 1 if that client was blocked and now is not.
fn client_unblock(shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
    let (id, how) = match args {
        [id] => (id, super::clients::Unblock::Timeout),
        [id, how] if is(how, "timeout") => (id, super::clients::Unblock::Timeout),
        [id, how] if is(how, "error") => (id, super::clients::Unblock::Error),
        [_, _] => return Err(CommandError::err("CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
        _ => return Err(CommandError::WrongArity("client|unblock".into())),
    };
    let id = crate::cmd::args::integer(id)?;
    let unblocked =
        u64::try_from(id).ok().and_then(|id| shared.clients.get(id)).is_some_and(|client| client.request_unblock(how));
    Ok(Frame::Integer(unblocked as i64))
}

/// One condition of `CLIENT KILL`'s filter form.
type ClientFilter = Box<dyn Fn(&Client) -> bool>;

const SUBSCRIBED_CONTEXT: &[&str] =
    &["subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ping", "quit", "reset", "ssubscribe", "sunsubscribe"];

impl Session {
    /// A new session; `authenticated` is false when a password is required.
    pub fn new(client: Arc<Client>, authenticated: bool, pubsub_sender: mpsc::Sender<Frame>) -> Session {
        Session {
            client,
            protocol: Protocol::Resp2,
            authenticated,
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            pubsub_sender,
            last_lookup: None,
            last_write: LogIndex(0),
        }
    }

    fn lookup(&mut self, name: &Bytes) -> Option<(usize, &'static CommandSpec)> {
        if let Some((last, index, spec)) = &self.last_lookup {
            if last.eq_ignore_ascii_case(name) {
                return Some((*index, *spec));
            }
        }
        let (index, spec) = lookup_indexed(name)?;
        self.last_lookup = Some((Bytes::copy_from_slice(name), index, spec));
        Some((index, spec))
    }

    /// Whether this client may run data commands (no password, or `AUTH` passed).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether this connection has any subscription (RESP2 restricts it then).
    pub fn is_subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    fn push(&self, frame: Frame, out: &mut BytesMut) {
        frame.encode(self.protocol, out);
    }

    fn error(&self, error: CommandError, out: &mut BytesMut) {
        self.push(error.to_frame(), out);
    }

    /// Runs one request and appends its reply (or replies) to `out`.
    pub fn handle(&mut self, shared: &Shared, args: Vec<Bytes>, out: &mut BytesMut) -> Flow {
        shared.metrics.commands_processed.increment(1);
        let Some((index, spec)) = self.lookup(&args[0]) else {
            self.refuse_in_multi();
            self.error(unknown_command(&args[0], &args[1..]), out);
            return Flow::default();
        };
        self.note_command(index);
        if !spec.arity_ok(args.len()) {
            self.refuse_in_multi();
            self.error(CommandError::WrongArity(spec.name.to_string()), out);
            return Flow::default();
        }
        if !self.authenticated && !spec.flags.has(Flags::NO_AUTH) {
            self.error(CommandError::Other("NOAUTH Authentication required.".into()), out);
            return Flow::default();
        }
        if self.protocol == Protocol::Resp2 && self.is_subscribed() && !SUBSCRIBED_CONTEXT.contains(&spec.name) {
            let message = format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            );
            self.error(CommandError::Other(message), out);
            return Flow::default();
        }
        if let Some(refusal) = refused_by_role(shared, spec) {
            self.refuse_in_multi();
            self.error(refusal, out);
            return Flow::default();
        }
        if let Some(queued) = self.multi.as_mut() {
            if !spec.flags.has(Flags::NO_QUEUE) {
                if queued.len() >= limits::TRANSACTION_COMMANDS_MAX {
                    self.multi_failed = true;
                    self.error(CommandError::err("too many commands queued in this transaction"), out);
                    return Flow::default();
                }
                queued.push(Queued { spec, args });
                self.client.multi_plus_one.fetch_add(1, Ordering::Relaxed);
                self.push(Frame::simple("QUEUED"), out);
                return Flow::default();
            }
        }
        match spec.handler {
            Handler::Data(_) => self.data(shared, spec, &args, out),
            Handler::Session(command) => self.session(shared, command, &args, out),
        }
    }

    fn note_command(&self, index: usize) {
        self.client.last_command.store(index, Ordering::Relaxed);
    }

    fn refuse_in_multi(&mut self) {
        if self.multi.is_some() {
            self.multi_failed = true;
        }
    }

    /// A data command; a blocking one (`BLPOP`, …) that found nothing to pop
    /// returns what to wait for instead of its reply (inside `MULTI` it never gets here).
    fn data(&mut self, shared: &Shared, spec: &'static CommandSpec, args: &[Bytes], out: &mut BytesMut) -> Flow {
        if spec.flags.has(Flags::DENYOOM) && shared.over_maxmemory() {
            self.error(CommandError::OutOfMemory, out);
            return Flow::default();
        }
        let executed = shared.db.execute(spec, args);
        if spec.flags.has(Flags::BLOCKING) && crate::cmd::blocking::would_block(&executed.reply) {
            return match crate::cmd::blocking::wait_plan(args) {
                Ok(plan) => Flow { blocked: Some(Blocked { spec, args: args.to_vec(), plan }), ..Flow::default() },
                Err(error) => {
                    self.error(error, out);
                    Flow::default()
                }
            };
        }
        if spec.is_write() {
            self.last_write = self.last_write.max(executed.ticket);
        }
        self.push(executed.reply, out);
        Flow { ticket: Some(executed.ticket), ..Flow::default() }
    }

    /// Runs a blocked command again: its reply and ticket once it popped (or was refused,
    /// the node having stopped taking writes), `None` while there is still nothing.
    pub fn retry_blocked(&mut self, shared: &Shared, blocked: &Blocked) -> Option<(Frame, LogIndex)> {
        if let Some(refusal) = refused_by_role(shared, blocked.spec) {
            return Some((refusal.to_frame(), LogIndex(0)));
        }
        let executed = shared.db.execute(blocked.spec, &blocked.args);
        if crate::cmd::blocking::would_block(&executed.reply) {
            return None;
        }
        self.last_write = self.last_write.max(executed.ticket);
        Some((executed.reply, executed.ticket))
    }

    fn session(&mut self, shared: &Shared, command: SessionCommand, args: &[Bytes], out: &mut BytesMut) -> Flow {
        use SessionCommand::*;
        let reply = match command {
            Ping => self.ping(args),
            Echo => Ok(Frame::Bulk(args[1].clone())),
            Hello => self.hello(shared, args),
            Auth => self.auth(shared, args),
            Client => self.client_command(shared, args),
            Select => select(args),
            Quit => {
                self.push(Frame::ok(), out);
                return Flow { close: true, ..Flow::default() };
            }
            Reset => self.reset(shared),
            Command => command_command(args),
            Info => Ok(Frame::Verbatim { format: *b"txt", text: Bytes::from(info::render(shared, &args[1..])) }),
            Role => Ok(info::role(shared)),
            Time => Ok(time()),
            Config => info::config(shared, args),
            Shutdown => return self.shutdown(shared, args, out),
            Multi => self.multi(),
            Exec => return self.exec(shared, out),
            Discard => self.discard(shared),
            Watch => self.watch(shared, args),
            Unwatch => {
                self.unwatch_all(shared);
                Ok(Frame::ok())
            }
            Subscribe => return self.subscribe(shared, Kind::Channel, &args[1..], out),
            PSubscribe => return self.subscribe(shared, Kind::Pattern, &args[1..], out),
            Unsubscribe => return self.unsubscribe(shared, Kind::Channel, &args[1..], out),
            PUnsubscribe => return self.unsubscribe(shared, Kind::Pattern, &args[1..], out),
            Publish => Ok(Frame::Integer(shared.broker.publish(&args[1], &args[2]) as i64)),
            Checkpoint => return self.defer(crate::checkpoint::commands::checkpoint(shared, args), out),
            Save => return self.defer(crate::checkpoint::commands::save(shared), out),
            Bgsave => crate::checkpoint::commands::bgsave(shared, args),
            Lastsave => Ok(crate::checkpoint::commands::lastsave(shared)),
            Debug => info::debug(shared, args),
            Wait => return self.defer(super::wait::wait(shared, self.last_write, args), out),
        };
        self.push(reply.unwrap_or_else(Frame::from), out);
        Flow::default()
    }

    /// A command whose reply comes later, or its immediate error.
    fn defer(&self, started: Result<DeferredReply, CommandError>, out: &mut BytesMut) -> Flow {
        match started {
            Ok(reply) => Flow { deferred: Some(reply), ..Flow::default() },
            Err(error) => {
                self.error(error, out);
                Flow::default()
            }
        }
    }

    fn ping(&self, args: &[Bytes]) -> Result<Frame, CommandError> {
        if args.len() > 2 {
            return Err(CommandError::WrongArity("ping".into()));
        }
        if self.protocol == Protocol::Resp2 && self.is_subscribed() {
            let message = args.get(1).cloned().unwrap_or_default();
            return Ok(Frame::Array(vec![Frame::bulk(Bytes::from_static(b"pong")), Frame::Bulk(message)]));
        }
        Ok(match args.get(1) {
            Some(message) => Frame::Bulk(message.clone()),
            None => Frame::simple("PONG"),
        })
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    fn hello(&mut self, shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
        let mut protocol = self.protocol;
        if let Some(version) = args.get(1) {
            protocol = match crate::cmd::args::parse_integer(version) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Err(CommandError::Other("NOPROTO unsupported protocol version".into())),
                None => return Err(CommandError::err("Protocol version is not an integer or out of range")),
            };
        }
        let mut at = 2;
        let mut name = None;
        while at < args.len() {
            if is(&args[at], "auth") && at + 2 < args.len() {
                self.check_password(shared, &args[at + 1], &args[at + 2])?;
                at += 3;
            } else if is(&args[at], "setname") && at + 1 < args.len() {
                name = Some(valid_client_name(&args[at + 1])?);
                at += 2;
            } else {
                return Err(CommandError::err(format!(
                    "Syntax error in HELLO option '{}'",
                    crate::cmd::error::printable(&args[at], 64)
                )));
            }
        }
        if !self.authenticated {
            return Err(CommandError::Other(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            ));
        }
        if let Some(name) = name {
            *self.client.name.lock() = name;
        }
        self.protocol = protocol;
        self.client.protocol.store(if protocol == Protocol::Resp3 { 3 } else { 2 }, Ordering::Relaxed);
        let version = match protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        let pair = |key: &'static str, value: Frame| (Frame::bulk(Bytes::from_static(key.as_bytes())), value);
        Ok(Frame::Map(vec![
            pair("server", Frame::bulk(Bytes::from_static(b"redis"))),
            pair("version", Frame::bulk(Bytes::from_static(info::REDIS_VERSION.as_bytes()))),
            pair("proto", Frame::Integer(version)),
            pair("id", Frame::Integer(self.client.id as i64)),
            pair("mode", Frame::bulk(Bytes::from_static(b"standalone"))),
            pair("role", Frame::bulk(Bytes::from(info::role_name(shared)))),
            pair("modules", Frame::Array(Vec::new())),
        ]))
    }

    fn check_password(&mut self, shared: &Shared, user: &[u8], password: &[u8]) -> Result<(), CommandError> {
        let wrong = || CommandError::Other("WRONGPASS invalid username-password pair or user is disabled.".into());
        if user != b"default" {
            return Err(wrong());
        }
        match &shared.config.requirepass {
            None => {
                self.authenticated = true;
                Ok(())
            }
            Some(expected) if constant_time_eq(expected.as_bytes(), password) => {
                self.authenticated = true;
                Ok(())
            }
            Some(_) => Err(wrong()),
        }
    }

    /// `AUTH [username] password`
    fn auth(&mut self, shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
        let (user, password) = match args.len() {
            2 => (&b"default"[..], &args[1]),
            3 => (&args[1][..], &args[2]),
            _ => return Err(CommandError::Syntax),
        };
        if args.len() == 2 && shared.config.requirepass.is_none() {
            return Err(CommandError::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        self.check_password(shared, user, password)?;
        Ok(Frame::ok())
    }

    /// `CLIENT ID|SETNAME|GETNAME|SETINFO|LIST|INFO|KILL|NO-EVICT|NO-TOUCH`
    fn client_command(&mut self, shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
        let sub = &args[1];
        let arity = |n: usize| if args.len() == n { Ok(()) } else { Err(client_arity(sub)) };
        if is(sub, "id") {
            arity(2)?;
            Ok(Frame::Integer(self.client.id as i64))
        } else if is(sub, "setname") {
            arity(3)?;
            *self.client.name.lock() = valid_client_name(&args[2])?;
            Ok(Frame::ok())
        } else if is(sub, "getname") {
            arity(2)?;
            Ok(self.client.name.lock().clone().map_or(Frame::Null, |name| Frame::bulk(Bytes::from(name))))
        } else if is(sub, "setinfo") {
            arity(4)?;
            let value = String::from_utf8_lossy(&args[3]).into_owned();
            if value.contains(|c: char| c == ' ' || c.is_control()) {
                return Err(CommandError::err(format!(
                    "{} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(&args[2])
                )));
            }
            let mut library = self.client.library.lock();
            if is(&args[2], "lib-name") {
                library.0 = value;
            } else if is(&args[2], "lib-ver") {
                library.1 = value;
            } else {
                return Err(CommandError::err(format!("Unrecognized option '{}'", String::from_utf8_lossy(&args[2]))));
            }
            Ok(Frame::ok())
        } else if is(sub, "list") {
            let lines: String = shared.clients.all().iter().map(|client| client.describe() + "\n").collect();
            Ok(Frame::Verbatim { format: *b"txt", text: Bytes::from(lines) })
        } else if is(sub, "info") {
            arity(2)?;
            Ok(Frame::Verbatim { format: *b"txt", text: Bytes::from(self.client.describe() + "\n") })
        } else if is(sub, "kill") {
            self.client_kill(shared, &args[2..])
        } else if is(sub, "unblock") {
            client_unblock(shared, &args[2..])
        } else if is(sub, "no-evict") || is(sub, "no-touch") || is(sub, "reply") {
            Ok(Frame::ok())
        } else {
            Err(CommandError::err(format!(
                "unknown subcommand '{}'. Try CLIENT HELP.",
                crate::cmd::error::printable(sub, 64)
            )))
        }
    }

    /// `CLIENT KILL addr` or `CLIENT KILL [ID id] [ADDR addr] [LADDR addr] [SKIPME yes|no]`
    fn client_kill(&self, shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
        if args.is_empty() {
            return Err(CommandError::Syntax);
        }
        let text = |bytes: &Bytes| String::from_utf8_lossy(bytes).into_owned();
        if args.len() == 1 {
            let addr = text(&args[0]);
            let client = shared.clients.all().into_iter().find(|client| client.addr.to_string() == addr);
            return match client {
                Some(client) => {
                    client.kill();
                    Ok(Frame::ok())
                }
                None => Err(CommandError::err("No such client")),
            };
        }
        if !args.len().is_multiple_of(2) {
            return Err(CommandError::Syntax);
        }
        let mut skip_me = true;
        let mut filters: Vec<ClientFilter> = Vec::new();
        for pair in args.chunks_exact(2) {
            let value = text(&pair[1]);
            if is(&pair[0], "id") {
                let id: u64 = value.parse().map_err(|_| CommandError::err("client-id should be greater than 0"))?;
                filters.push(Box::new(move |client| client.id == id));
            } else if is(&pair[0], "addr") {
                filters.push(Box::new(move |client| client.addr.to_string() == value));
            } else if is(&pair[0], "laddr") {
                filters.push(Box::new(move |client| client.local_addr.to_string() == value));
            } else if is(&pair[0], "skipme") {
                skip_me = match value.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(CommandError::Syntax),
                };
            } else if is(&pair[0], "type") || is(&pair[0], "user") || is(&pair[0], "maxage") {
                // Accepted for compatibility; every client here is a normal default-user client.
            } else {
                return Err(CommandError::Syntax);
            }
        }
        let mut killed = 0;
        for client in shared.clients.all() {
            if (skip_me && client.id == self.client.id) || !filters.iter().all(|filter| filter(&client)) {
                continue;
            }
            client.kill();
            killed += 1;
        }
        Ok(Frame::Integer(killed))
    }

    /// `RESET`
    fn reset(&mut self, shared: &Shared) -> Result<Frame, CommandError> {
        self.multi = None;
        self.multi_failed = false;
        self.client.multi_plus_one.store(0, Ordering::Relaxed);
        self.unwatch_all(shared);
        self.unsubscribe_all(shared);
        self.protocol = Protocol::Resp2;
        self.client.protocol.store(2, Ordering::Relaxed);
        *self.client.name.lock() = None;
        self.authenticated = shared.config.requirepass.is_none();
        Ok(Frame::simple("RESET"))
    }

    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]` — a clean stop: the log is flushed and fsynced.
    fn shutdown(&mut self, shared: &Shared, args: &[Bytes], out: &mut BytesMut) -> Flow {
        let known = ["nosave", "save", "now", "force", "abort"];
        if args[1..].iter().any(|arg| !known.iter().any(|word| is(arg, word))) {
            self.error(CommandError::Syntax, out);
            return Flow::default();
        }
        if args[1..].iter().any(|arg| is(arg, "abort")) {
            self.error(CommandError::err("No shutdown in progress."), out);
            return Flow::default();
        }
        tracing::info!(client = self.client.id, "SHUTDOWN requested by a client");
        shared.request_shutdown();
        Flow { close: true, ..Flow::default() }
    }

    fn multi(&mut self) -> Result<Frame, CommandError> {
        if self.multi.is_some() {
            return Err(CommandError::err("MULTI calls can not be nested"));
        }
        self.multi = Some(Vec::new());
        self.multi_failed = false;
        self.client.multi_plus_one.store(1, Ordering::Relaxed);
        Ok(Frame::ok())
    }

    fn exec(&mut self, shared: &Shared, out: &mut BytesMut) -> Flow {
        let Some(queued) = self.multi.take() else {
            self.error(CommandError::err("EXEC without MULTI"), out);
            return Flow::default();
        };
        self.client.multi_plus_one.store(0, Ordering::Relaxed);
        let failed = std::mem::take(&mut self.multi_failed);
        let watched = std::mem::take(&mut self.watched);
        let flow = self.run_transaction(shared, queued, &watched, failed, out);
        // Only now: while a key is watched the keyspace tracks its version.
        for (key, _) in &watched {
            shared.db.unwatch(key);
        }
        flow
    }

    fn run_transaction(
        &mut self,
        shared: &Shared,
        queued: Vec<Queued>,
        watched: &[(Bytes, u64)],
        failed: bool,
        out: &mut BytesMut,
    ) -> Flow {
        if failed {
            let message = "EXECABORT Transaction discarded because of previous errors.";
            self.error(CommandError::Other(message.into()), out);
            return Flow::default();
        }
        // The role or the lease may have changed since the commands were queued.
        if let Some(refusal) = queued.iter().find_map(|command| refused_by_role(shared, command.spec)) {
            self.error(refusal, out);
            return Flow::default();
        }
        let writes = queued.iter().any(|command| command.spec.flags.has(Flags::DENYOOM));
        if writes && shared.over_maxmemory() {
            self.error(CommandError::Other(format!("EXECABORT {}", CommandError::OutOfMemory)), out);
            return Flow::default();
        }
        // Data commands run atomically as one log record; connection commands
        // (PING, PUBLISH, INFO…) touch no keys, so they run after it, in
        // order — a PUBLISH in the block is seen after the data it announces.
        let data: Vec<&Queued> =
            queued.iter().filter(|command| matches!(command.spec.handler, Handler::Data(_))).collect();
        let executed = shared.db.execute_transaction(&data, watched);
        if data.iter().any(|command| command.spec.is_write()) {
            self.last_write = self.last_write.max(executed.ticket);
        }
        let Frame::Array(data_replies) = executed.reply else {
            self.push(executed.reply, out);
            return Flow::default();
        };
        let mut data_replies = data_replies.into_iter();
        let mut replies = Vec::with_capacity(queued.len());
        for command in &queued {
            match command.spec.handler {
                Handler::Data(_) => replies.push(data_replies.next().expect("one reply per data command")),
                Handler::Session(session_command) => {
                    let mut scratch = BytesMut::new();
                    self.session(shared, session_command, &command.args, &mut scratch);
                    replies.push(decode_own_reply(&mut scratch));
                }
            }
        }
        self.push(Frame::Array(replies), out);
        Flow { ticket: Some(executed.ticket), ..Flow::default() }
    }

    fn discard(&mut self, shared: &Shared) -> Result<Frame, CommandError> {
        if self.multi.take().is_none() {
            return Err(CommandError::err("DISCARD without MULTI"));
        }
        self.multi_failed = false;
        self.client.multi_plus_one.store(0, Ordering::Relaxed);
        self.unwatch_all(shared);
        Ok(Frame::ok())
    }

    fn watch(&mut self, shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
        if self.multi.is_some() {
            return Err(CommandError::err("WATCH inside MULTI is not allowed"));
        }
        for key in &args[1..] {
            if self.watched.iter().any(|(watched, _)| watched == key) {
                continue;
            }
            let version = shared.db.watch(key);
            self.watched.push((key.clone(), version));
        }
        Ok(Frame::ok())
    }

    fn unwatch_all(&mut self, shared: &Shared) {
        for (key, _) in self.watched.drain(..) {
            shared.db.unwatch(&key);
        }
    }

    fn subscription_count(&self) -> i64 {
        (self.channels.len() + self.patterns.len()) as i64
    }

    fn update_subscription_gauges(&self) {
        self.client.subscriptions.store(self.channels.len(), Ordering::Relaxed);
        self.client.pattern_subscriptions.store(self.patterns.len(), Ordering::Relaxed);
    }

    fn subscribe(&mut self, shared: &Shared, kind: Kind, names: &[Bytes], out: &mut BytesMut) -> Flow {
        if self.multi.is_some() {
            self.error(CommandError::err("SUBSCRIBE inside MULTI is not allowed"), out);
            return Flow::default();
        }
        let word: &'static [u8] = if kind == Kind::Channel { b"subscribe" } else { b"psubscribe" };
        for name in names {
            let subscriber = Subscriber { queue: self.pubsub_sender.clone(), client: self.client.clone() };
            shared.broker.subscribe(kind, name, subscriber);
            match kind {
                Kind::Channel => self.channels.insert(name.clone()),
                Kind::Pattern => self.patterns.insert(name.clone()),
            };
            let count = self.subscription_count();
            self.push(subscription_reply(word, Some(name.clone()), count), out);
        }
        self.update_subscription_gauges();
        Flow::default()
    }

    fn unsubscribe(&mut self, shared: &Shared, kind: Kind, names: &[Bytes], out: &mut BytesMut) -> Flow {
        let word: &'static [u8] = if kind == Kind::Channel { b"unsubscribe" } else { b"punsubscribe" };
        let current: Vec<Bytes> = match kind {
            Kind::Channel => self.channels.iter().cloned().collect(),
            Kind::Pattern => self.patterns.iter().cloned().collect(),
        };
        let targets = if names.is_empty() { current } else { names.to_vec() };
        if targets.is_empty() {
            self.push(subscription_reply(word, None, self.subscription_count()), out);
        }
        for name in targets {
            shared.broker.unsubscribe(kind, &name, self.client.id);
            match kind {
                Kind::Channel => self.channels.remove(&name),
                Kind::Pattern => self.patterns.remove(&name),
            };
            self.push(subscription_reply(word, Some(name), self.subscription_count()), out);
        }
        self.update_subscription_gauges();
        Flow::default()
    }

    /// Drops every subscription (RESET, disconnect).
    pub fn unsubscribe_all(&mut self, shared: &Shared) {
        for name in self.channels.drain() {
            shared.broker.unsubscribe(Kind::Channel, &name, self.client.id);
        }
        for name in self.patterns.drain() {
            shared.broker.unsubscribe(Kind::Pattern, &name, self.client.id);
        }
        self.update_subscription_gauges();
    }

    /// Releases everything the session holds (on disconnect).
    pub fn close(&mut self, shared: &Shared) {
        self.unwatch_all(shared);
        self.unsubscribe_all(shared);
    }
}

fn subscription_reply(word: &'static [u8], name: Option<Bytes>, count: i64) -> Frame {
    Frame::Push(vec![
        Frame::bulk(Bytes::from_static(word)),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count),
    ])
}

/// Re-reads a reply this session just encoded (session commands inside EXEC).
fn decode_own_reply(encoded: &mut BytesMut) -> Frame {
    let limits = tandem_resp::Limits::default();
    match tandem_resp::decode_frame(encoded, &limits) {
        Ok(Some(frame)) => frame,
        _ => Frame::error("ERR internal error re-reading a reply"),
    }
}

fn client_arity(sub: &Bytes) -> CommandError {
    CommandError::WrongArity(format!("client|{}", String::from_utf8_lossy(sub).to_ascii_lowercase()))
}

fn valid_client_name(name: &[u8]) -> Result<Option<String>, CommandError> {
    if name.len() > limits::CLIENT_NAME_BYTES_MAX || name.iter().any(|&byte| !(b'!'..=b'~').contains(&byte)) {
        return Err(CommandError::err("Client names cannot contain spaces, newlines or special characters."));
    }
    Ok((!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned()))
}

fn select(args: &[Bytes]) -> Result<Frame, CommandError> {
    crate::cmd::args::database_index(&args[1])?;
    Ok(Frame::ok())
}

fn time() -> Frame {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Frame::Array(vec![
        Frame::bulk(Bytes::from(now.as_secs().to_string())),
        Frame::bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}

/// Compares a password without leaking where it differs through timing.
pub(crate) fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in given.iter().enumerate() {
        difference |= (expected.get(index % expected.len().max(1)).copied().unwrap_or(0) ^ byte) as usize;
    }
    difference == 0
}

fn command_info(spec: &CommandSpec) -> Frame {
    let flags = spec.flags.names().into_iter().map(Frame::simple).collect();
    Frame::Array(vec![
        Frame::bulk(Bytes::from_static(spec.name.as_bytes())),
        Frame::Integer(spec.arity as i64),
        Frame::Set(flags),
        Frame::Integer(spec.first_key as i64),
        Frame::Integer(spec.last_key as i64),
        Frame::Integer(spec.key_step as i64),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// `COMMAND [COUNT | LIST | INFO name… | DOCS name…]`
fn command_command(args: &[Bytes]) -> Result<Frame, CommandError> {
    let Some(sub) = args.get(1) else {
        return Ok(Frame::Array(COMMANDS.iter().map(command_info).collect()));
    };
    if is(sub, "count") {
        Ok(Frame::Integer(COMMANDS.len() as i64))
    } else if is(sub, "list") {
        Ok(Frame::Array(COMMANDS.iter().map(|spec| Frame::bulk(Bytes::from_static(spec.name.as_bytes()))).collect()))
    } else if is(sub, "info") {
        let infos = if args.len() == 2 {
            COMMANDS.iter().map(command_info).collect()
        } else {
            args[2..].iter().map(|name| lookup(name).map_or(Frame::NullArray, command_info)).collect()
        };
        Ok(Frame::Array(infos))
    } else if is(sub, "docs") {
        let specs: Vec<&CommandSpec> = if args.len() == 2 {
            COMMANDS.iter().collect()
        } else {
            args[2..].iter().filter_map(|name| lookup(name)).collect()
        };
        let docs = specs
            .into_iter()
            .map(|spec| {
                let doc = Frame::Map(vec![
                    (Frame::bulk(Bytes::from_static(b"summary")), Frame::bulk(Bytes::from_static(b""))),
                    (Frame::bulk(Bytes::from_static(b"since")), Frame::bulk(Bytes::from_static(b"1.0.0"))),
                    (Frame::bulk(Bytes::from_static(b"group")), Frame::bulk(Bytes::from_static(b"generic"))),
                ]);
                (Frame::bulk(Bytes::from_static(spec.name.as_bytes())), doc)
            })
            .collect();
        Ok(Frame::Map(docs))
    } else if is(sub, "getkeys") {
        let spec = args.get(2).and_then(|name| lookup(name)).ok_or(CommandError::err("Invalid command specified"))?;
        let keys = spec.keys(&args[2..]).cloned().map(Frame::Bulk).collect::<Vec<_>>();
        if keys.is_empty() {
            return Err(CommandError::err("The command has no key arguments"));
        }
        Ok(Frame::Array(keys))
    } else {
        Err(CommandError::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            crate::cmd::error::printable(sub, 64)
        )))
    }
}
