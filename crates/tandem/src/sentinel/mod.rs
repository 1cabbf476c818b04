//! A Redis-Sentinel-compatible discovery endpoint on each data node and the witness (issue
//! #5): clients that know Sentinel ask it for the active's address (`SENTINEL
//! get-master-addr-by-name`) and learn of failovers from `+switch-master` messages.
//! It answers from the replicated control state; it never decides anything itself.
//!
//! * [`commands`] — the replies, pure: a [`commands::View`] in, a frame out.
//! * [`source`] — what an endpoint serves from ([`source::Source`]), and the pure view.
//! * [`data_node`], [`witness`] — the two sources: a data node's state, the witness's
//!   control-plane member.
//! * this file — the listener, one task per connection and the task that publishes
//!   `+switch-master` whenever the active changes.
//!
//! Limits: at most [`CONNECTIONS_MAX`] connections, requests bounded by the source's
//! [`source::RequestLimits`] (a data node's client-port limits), at most
//! [`MESSAGES_QUEUED_MAX`] unread messages per subscriber (a slower one skips messages, as
//! a lagging reader).

pub mod commands;
pub mod data_node;
pub mod source;
pub mod witness;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tandem_resp::{parse_request, Frame, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;

use crate::server::Shared;
use source::Source;

/// The master name when `cluster.sentinel_master_name` is not given.
pub const MASTER_NAME_DEFAULT: &str = "tandem";
/// Most Sentinel connections served at once; more are refused with an error.
pub const CONNECTIONS_MAX: usize = 1024;
/// Most `+switch-master` messages queued for one subscriber.
pub const MESSAGES_QUEUED_MAX: usize = 64;
/// The channel failovers are announced on.
const SWITCH_MASTER: &[u8] = b"+switch-master";

/// Serves a data node's Sentinel endpoint until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_from(listener, Arc::new(data_node::DataNodeSource::new(shared))).await
}

/// Serves the endpoint from `source` until its shutdown; returns once every task it started
/// (connections, the publisher) ended, so that the caller may take back what `source` holds.
pub async fn serve_from<S: Source>(listener: TcpListener, source: Arc<S>) {
    let (messages, _) = broadcast::channel(MESSAGES_QUEUED_MAX);
    let mut tasks = JoinSet::new();
    tasks.spawn(publish_switches(source.clone(), messages.clone()));
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut shutdown = source.shutdown();
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let mut socket = match accepted {
            Ok((socket, _)) => socket,
            Err(error) => {
                tracing::warn!(%error, "sentinel accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
            continue;
        };
        let (source, messages) = (source.clone(), messages.subscribe());
        tasks.spawn(async move {
            if let Err(error) = Connection::new(&*source).run(socket, &*source, messages).await {
                tracing::debug!(%error, "sentinel connection closed");
            }
            drop(permit);
        });
    }
    // Each task stops on shutdown by itself, except a connection running `SENTINEL
    // failover`: aborting bounds the wait; that switchover is abandoned as by a crash (its
    // member is stopping anyway).
    tasks.shutdown().await;
}

/// Publishes `+switch-master` each time the active becomes a data node other than the
/// last one seen (an interval with no active in between is bridged: old → new).
async fn publish_switches<S: Source>(source: Arc<S>, messages: broadcast::Sender<Bytes>) {
    let mut changes = source.changes();
    let mut last = source.view().and_then(|view| view.active);
    let mut shutdown = source.shutdown();
    loop {
        // Stops on shutdown too: this task holds the source, which its member takes back.
        let stopped = tokio::select! {
            changed = changes.changed() => !changed,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopped {
            return;
        }
        let Some(view) = source.view() else { return };
        let Some(active) = view.active else { continue };
        if let Some(old) = last.filter(|old| *old != active) {
            tracing::info!(old = %old.client, new = %active.client, "sentinel: +switch-master");
            let _ = messages.send(commands::switch_master(&view.master_name, old.client, active.client));
        }
        last = Some(active);
    }
}

/// One Sentinel client: protocol version and subscriptions.
struct Connection {
    protocol: Protocol,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    limits: source::RequestLimits,
    /// False until `AUTH` (or `HELLO … AUTH`) when the node has `requirepass`: the endpoint
    /// tells where the active is and runs `SENTINEL failover`.
    authenticated: bool,
}

/// What a request asks of the connection beyond its reply.
enum After {
    Continue,
    Close,
    /// `SENTINEL FAILOVER`: run a planned switchover, then reply.
    Failover,
}

impl Connection {
    fn new(source: &impl Source) -> Connection {
        Connection {
            protocol: Protocol::Resp2,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            limits: source.request_limits(),
            authenticated: source.requirepass().is_none(),
        }
    }

    async fn run(
        mut self,
        mut socket: TcpStream,
        source: &impl Source,
        mut messages: broadcast::Receiver<Bytes>,
    ) -> std::io::Result<()> {
        let _ = socket.set_nodelay(true);
        let mut input = BytesMut::with_capacity(4096);
        let mut output = BytesMut::new();
        let mut shutdown = source.shutdown();
        loop {
            let mut close = false;
            loop {
                match parse_request(&mut input, &self.limits.resp) {
                    Ok(Some(args)) if args.is_empty() => continue,
                    Ok(Some(args)) => match self.handle(source, &args, &mut output) {
                        After::Continue => {}
                        After::Close => {
                            close = true;
                            break;
                        }
                        After::Failover => source.failover().await.encode(self.protocol, &mut output),
                    },
                    Ok(None) => break,
                    Err(error) => {
                        Frame::error(format!("ERR Protocol error: {error}")).encode(self.protocol, &mut output);
                        close = true;
                        break;
                    }
                }
            }
            if !output.is_empty() {
                // A client that does not read must not hold up shutdown (it holds the source).
                tokio::select! {
                    written = socket.write_all(&output) => written?,
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                }
                output.clear();
            }
            if close || input.len() > self.limits.query_buffer_bytes_max {
                return Ok(());
            }
            tokio::select! {
                read = socket.read_buf(&mut input) => if read? == 0 { return Ok(()) },
                message = messages.recv() => match message {
                    Ok(message) => self.deliver(&message, &mut output),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    }

    /// Runs one request, appending its reply to `out`.
    fn handle(&mut self, source: &impl Source, args: &[Bytes], out: &mut BytesMut) -> After {
        let name = args[0].to_ascii_lowercase();
        if !self.authenticated && !matches!(name.as_slice(), b"auth" | b"hello" | b"quit") {
            Frame::error("NOAUTH Authentication required.").encode(self.protocol, out);
            return After::Continue;
        }
        let reply = match name.as_slice() {
            b"auth" => self.auth(source.requirepass(), &args[1..]),
            b"ping" => self.ping(args),
            b"quit" => {
                Frame::ok().encode(self.protocol, out);
                return After::Close;
            }
            b"hello" => self.hello(source.requirepass(), args),
            b"client" => client(args),
            b"subscribe" | b"psubscribe" | b"unsubscribe" | b"punsubscribe" => {
                self.subscriptions(&name, &args[1..], out);
                return After::Continue;
            }
            b"sentinel" if args.get(1).is_some_and(|sub| sub.eq_ignore_ascii_case(b"failover")) => {
                match source.view() {
                    Some(view) if args.len() == 3 && commands::is_ours(&view, &args[2]) => return After::Failover,
                    Some(_) if args.len() == 3 => Frame::error("ERR No such master with that name"),
                    Some(_) => Frame::error("ERR wrong number of arguments for 'sentinel|failover' command"),
                    None => Frame::error("ERR this node is not in a cluster"),
                }
            }
            b"role" | b"sentinel" => match source.view() {
                Some(view) if name == b"role" => commands::role(&view),
                Some(view) => commands::sentinel(&view, &args[1..]),
                None => Frame::error("ERR this node is not in a cluster"),
            },
            _ => commands::unknown(&args[0], &args[1..]),
        };
        reply.encode(self.protocol, out);
        After::Continue
    }

    fn is_subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    fn ping(&self, args: &[Bytes]) -> Frame {
        if self.protocol == Protocol::Resp2 && self.is_subscribed() {
            let message = args.get(1).cloned().unwrap_or_default();
            return Frame::Array(vec![Frame::bulk(Bytes::from_static(b"pong")), Frame::Bulk(message)]);
        }
        match args.get(1) {
            Some(message) => Frame::Bulk(message.clone()),
            None => Frame::simple("PONG"),
        }
    }

    /// `AUTH [username] password`, as the data port answers it.
    fn auth(&mut self, requirepass: Option<&str>, args: &[Bytes]) -> Frame {
        let (user, password) = match args {
            [password] => (&b"default"[..], password),
            [user, password] => (&user[..], password),
            _ => return Frame::error("ERR wrong number of arguments for 'auth' command"),
        };
        if args.len() == 1 && requirepass.is_none() {
            return Frame::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure \
                 your configuration is correct?",
            );
        }
        self.check_password(requirepass, user, password)
    }

    fn check_password(&mut self, requirepass: Option<&str>, user: &[u8], password: &[u8]) -> Frame {
        let matches = match requirepass {
            None => true,
            Some(expected) => crate::server::session::constant_time_eq(expected.as_bytes(), password),
        };
        if user == b"default" && matches {
            self.authenticated = true;
            Frame::ok()
        } else {
            Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`
    fn hello(&mut self, requirepass: Option<&str>, args: &[Bytes]) -> Frame {
        let protocol = match args.get(1).map(|version| version.as_ref()) {
            None => self.protocol,
            Some(b"2") => Protocol::Resp2,
            Some(b"3") => Protocol::Resp3,
            Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
        };
        let mut options = args.iter().skip(2);
        while let Some(option) = options.next() {
            if option.eq_ignore_ascii_case(b"auth") {
                let (Some(user), Some(password)) = (options.next(), options.next()) else {
                    return Frame::error("ERR Syntax error in HELLO option 'auth'");
                };
                if let error @ Frame::Error(_) = self.check_password(requirepass, user, password) {
                    return error;
                }
            } else if option.eq_ignore_ascii_case(b"setname") {
                if options.next().is_none() {
                    return Frame::error("ERR Syntax error in HELLO option 'setname'");
                }
            } else {
                return Frame::error(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(option)));
            }
        }
        if !self.authenticated {
            return Frame::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH \
                 <user> <pass> option can be used to authenticate the client and select the RESP protocol version at \
                 the same time",
            );
        }
        self.protocol = protocol;
        let proto = if self.protocol == Protocol::Resp3 { 3 } else { 2 };
        let pair = |key: &'static str, value: Frame| (Frame::bulk(Bytes::from_static(key.as_bytes())), value);
        Frame::Map(vec![
            pair("server", Frame::bulk(Bytes::from_static(b"redis"))),
            pair("version", Frame::bulk(Bytes::from_static(crate::server::info::REDIS_VERSION.as_bytes()))),
            pair("proto", Frame::Integer(proto)),
            pair("mode", Frame::bulk(Bytes::from_static(b"sentinel"))),
            pair("role", Frame::bulk(Bytes::from_static(b"sentinel"))),
            pair("modules", Frame::Array(Vec::new())),
        ])
    }

    fn subscriptions(&mut self, name: &[u8], names: &[Bytes], out: &mut BytesMut) {
        let patterns = name.starts_with(b"p");
        let word = Bytes::copy_from_slice(name);
        let subscribing = !name.ends_with(b"unsubscribe");
        let set = if patterns { &mut self.patterns } else { &mut self.channels };
        let targets: Vec<Bytes> =
            if names.is_empty() && !subscribing { set.iter().cloned().collect() } else { names.to_vec() };
        if targets.is_empty() {
            let count = (self.channels.len() + self.patterns.len()) as i64;
            let reply = if subscribing {
                Frame::error(format!("ERR wrong number of arguments for '{}' command", String::from_utf8_lossy(name)))
            } else {
                Frame::Push(vec![Frame::Bulk(word), Frame::Null, Frame::Integer(count)])
            };
            reply.encode(self.protocol, out);
            return;
        }
        for target in targets {
            let set = if patterns { &mut self.patterns } else { &mut self.channels };
            if subscribing {
                set.insert(target.clone());
            } else {
                set.remove(&target);
            }
            let count = (self.channels.len() + self.patterns.len()) as i64;
            Frame::Push(vec![Frame::Bulk(word.clone()), Frame::Bulk(target), Frame::Integer(count)])
                .encode(self.protocol, out);
        }
    }

    /// Sends a `+switch-master` message to each matching subscription.
    fn deliver(&self, message: &Bytes, out: &mut BytesMut) {
        let channel = Bytes::from_static(SWITCH_MASTER);
        if self.channels.contains(&channel) {
            Frame::Push(vec![
                Frame::bulk(Bytes::from_static(b"message")),
                Frame::Bulk(channel.clone()),
                Frame::Bulk(message.clone()),
            ])
            .encode(self.protocol, out);
        }
        for pattern in &self.patterns {
            if crate::store::glob::matches(pattern, SWITCH_MASTER) {
                Frame::Push(vec![
                    Frame::bulk(Bytes::from_static(b"pmessage")),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ])
                .encode(self.protocol, out);
            }
        }
    }
}

/// `CLIENT SETNAME|SETINFO` (accepted, ignored) and `CLIENT GETNAME` (none).
fn client(args: &[Bytes]) -> Frame {
    let subcommand = args.get(1).map(|word| word.to_ascii_lowercase()).unwrap_or_default();
    match subcommand.as_slice() {
        b"setname" | b"setinfo" => Frame::ok(),
        b"getname" => Frame::Null,
        _ => Frame::error("ERR unknown subcommand or wrong number of arguments for 'CLIENT'"),
    }
}
