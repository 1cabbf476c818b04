//! The Sentinel commands as pure reply builders: a [`View`] of the cluster in, a [`Frame`]
//! out. The connection loop (`super`) owns the socket, the protocol version and the
//! subscriptions; everything a reply says is decided here, without I/O.

use std::net::SocketAddr;

use bytes::Bytes;
use tandem_resp::Frame;

use crate::cmd::error::unknown_command;

/// The quorum a Sentinel deployment would configure for our three control-plane members.
const QUORUM: i64 = 2;

/// A data node as the endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataNode {
    /// Its member id.
    pub id: u32,
    /// Where clients reach it.
    pub client: SocketAddr,
}

/// What the endpoint knows about the cluster when it builds a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The one master name this endpoint answers for.
    pub master_name: String,
    /// The active data node, if the control plane names one.
    pub active: Option<DataNode>,
    /// The data node reported as the master: the active, or else the last or initial one
    /// (Sentinel always shows an address, flagged `s_down` when it is not serving).
    pub master: DataNode,
    /// The other data node (the standby while `active` is `master`).
    pub replica: DataNode,
    /// Whether the replica holds every acknowledged write (in sync with the active).
    pub replica_in_sync: bool,
    /// The other members' Sentinel endpoints (data nodes and the witness).
    pub other_sentinels: Vec<SocketAddr>,
    /// Whether the control plane has a leader: failover can be authorized.
    pub has_leader: bool,
    /// The control-plane epoch (Sentinel's `config-epoch`).
    pub epoch: u64,
}

/// `ROLE` → `["sentinel", [master-name]]`.
pub fn role(view: &View) -> Frame {
    Frame::Array(vec![bulk("sentinel"), Frame::Array(vec![bulk(&view.master_name)])])
}

/// `SENTINEL <subcommand> [args]`: `args` excludes the word `SENTINEL`.
pub fn sentinel(view: &View, args: &[Bytes]) -> Frame {
    let Some(subcommand) = args.first() else {
        return Frame::error("ERR wrong number of arguments for 'sentinel' command");
    };
    let lower = subcommand.to_ascii_lowercase();
    let name = args.get(1);
    let arity_ok = |wanted: usize| args.len() == wanted;
    match (lower.as_slice(), name) {
        (b"masters", None) => Frame::Array(vec![master(view)]),
        (b"get-master-addr-by-name", Some(name)) if arity_ok(2) => match view.active.filter(|_| is_ours(view, name)) {
            Some(active) => {
                Frame::Array(vec![bulk(&active.client.ip().to_string()), bulk(&active.client.port().to_string())])
            }
            None => Frame::NullArray,
        },
        (b"master", Some(name)) if arity_ok(2) => known(view, name, master),
        (b"replicas" | b"slaves", Some(name)) if arity_ok(2) => {
            known(view, name, |view| Frame::Array(vec![replica(view)]))
        }
        (b"sentinels", Some(name)) if arity_ok(2) => known(view, name, sentinels),
        (b"ckquorum", Some(name)) if arity_ok(2) => known(view, name, ckquorum),
        (b"myid", None) => bulk(&run_id(0)),
        _ => Frame::error(format!(
            "ERR Unknown sentinel subcommand '{}'",
            String::from_utf8_lossy(&subcommand[..subcommand.len().min(128)])
        )),
    }
}

/// Any other command: the error Redis Sentinel sends.
pub fn unknown(name: &Bytes, args: &[Bytes]) -> Frame {
    Frame::from(unknown_command(name, args))
}

/// Whether `name` is the master name this cluster answers to.
pub fn is_ours(view: &View, name: &[u8]) -> bool {
    name == view.master_name.as_bytes()
}

fn known(view: &View, name: &[u8], reply: impl Fn(&View) -> Frame) -> Frame {
    if is_ours(view, name) {
        reply(view)
    } else {
        Frame::error("ERR No such master with that name")
    }
}

fn master(view: &View) -> Frame {
    let serving = view.active == Some(view.master);
    let flags = if serving { "master" } else { "master,s_down" };
    let replicas = i64::from(serving);
    fields(vec![
        ("name", bulk(&view.master_name)),
        ("ip", bulk(&view.master.client.ip().to_string())),
        ("port", bulk(&view.master.client.port().to_string())),
        ("runid", bulk(&run_id(view.master.id))),
        ("flags", bulk(flags)),
        ("role-reported", bulk("master")),
        ("config-epoch", integer_text(view.epoch as i64)),
        ("num-slaves", integer_text(replicas)),
        ("num-other-sentinels", integer_text(view.other_sentinels.len() as i64)),
        ("quorum", integer_text(QUORUM)),
    ])
}

fn replica(view: &View) -> Frame {
    let link = if view.replica_in_sync && view.active == Some(view.master) { "ok" } else { "err" };
    fields(vec![
        ("name", bulk(&view.replica.client.to_string())),
        ("ip", bulk(&view.replica.client.ip().to_string())),
        ("port", bulk(&view.replica.client.port().to_string())),
        ("runid", bulk(&run_id(view.replica.id))),
        ("flags", bulk("slave")),
        ("role-reported", bulk("slave")),
        ("master-host", bulk(&view.master.client.ip().to_string())),
        ("master-port", bulk(&view.master.client.port().to_string())),
        ("master-link-status", bulk(link)),
    ])
}

fn sentinels(view: &View) -> Frame {
    let each = |address: &SocketAddr| {
        fields(vec![
            ("name", bulk(&address.to_string())),
            ("ip", bulk(&address.ip().to_string())),
            ("port", bulk(&address.port().to_string())),
            ("flags", bulk("sentinel")),
        ])
    };
    Frame::Array(view.other_sentinels.iter().map(each).collect())
}

fn ckquorum(view: &View) -> Frame {
    if view.has_leader {
        Frame::Simple(Bytes::from_static(b"OK 2 usable Sentinels. Quorum and failover authorization can be reached"))
    } else {
        Frame::error(
            "NOQUORUM the control plane has no leader: failover authorization cannot be reached (a majority of the \
             witness and the data nodes is needed)",
        )
    }
}

/// A field/value list: a map in RESP3, flattened pairs in RESP2 (the encoder does that).
fn fields(pairs: Vec<(&'static str, Frame)>) -> Frame {
    Frame::Map(pairs.into_iter().map(|(key, value)| (bulk(key), value)).collect())
}

/// Sentinel sends numbers in these replies as bulk strings.
fn integer_text(value: i64) -> Frame {
    bulk(&value.to_string())
}

/// A stable 40-hex-digit run id per member (Sentinel's `runid` shape).
fn run_id(member: u32) -> String {
    format!("{member:040x}")
}

fn bulk(text: &str) -> Frame {
    Frame::bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// The `+switch-master` message: `<name> <old ip> <old port> <new ip> <new port>`.
pub fn switch_master(master_name: &str, old: SocketAddr, new: SocketAddr) -> Bytes {
    Bytes::from(format!("{master_name} {} {} {} {}", old.ip(), old.port(), new.ip(), new.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_resp::Protocol;

    fn node(id: u32, port: u16) -> DataNode {
        DataNode { id, client: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn view(active: Option<DataNode>) -> View {
        View {
            master_name: "tandem".into(),
            active,
            master: node(1, 7001),
            replica: node(2, 7002),
            replica_in_sync: true,
            other_sentinels: vec![SocketAddr::from(([127, 0, 0, 1], 26380))],
            has_leader: true,
            epoch: 3,
        }
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
    }

    fn resp2(frame: &Frame) -> String {
        let mut out = bytes::BytesMut::new();
        frame.encode(Protocol::Resp2, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn the_master_address_is_the_active_or_nil() {
        let reply = sentinel(&view(Some(node(1, 7001))), &args(&["get-master-addr-by-name", "tandem"]));
        assert_eq!(resp2(&reply), "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7001\r\n");
        assert_eq!(sentinel(&view(None), &args(&["GET-MASTER-ADDR-BY-NAME", "tandem"])), Frame::NullArray);
        assert_eq!(
            sentinel(&view(Some(node(1, 7001))), &args(&["get-master-addr-by-name", "other"])),
            Frame::NullArray
        );
    }

    #[test]
    fn master_fields_flag_a_missing_active_as_down() {
        let up = resp2(&sentinel(&view(Some(node(1, 7001))), &args(&["master", "tandem"])));
        assert!(up.starts_with("*20\r\n$4\r\nname\r\n$6\r\ntandem\r\n"), "{up}");
        assert!(up.contains("$5\r\nflags\r\n$6\r\nmaster\r\n"), "{up}");
        let down = resp2(&sentinel(&view(None), &args(&["masters"])));
        assert!(down.contains("master,s_down"), "{down}");
        let unknown = sentinel(&view(None), &args(&["master", "other"]));
        assert_eq!(unknown, Frame::error("ERR No such master with that name"));
    }

    #[test]
    fn replicas_sentinels_and_quorum() {
        let replicas = resp2(&sentinel(&view(Some(node(1, 7001))), &args(&["slaves", "tandem"])));
        assert!(
            replicas.contains("$4\r\n7002\r\n") && replicas.contains("master-link-status\r\n$2\r\nok"),
            "{replicas}"
        );
        let sentinels = resp2(&sentinel(&view(None), &args(&["sentinels", "tandem"])));
        assert!(sentinels.contains("26380"), "{sentinels}");
        let ok = sentinel(&view(None), &args(&["ckquorum", "tandem"]));
        assert!(matches!(ok, Frame::Simple(text) if text.starts_with(b"OK 2 usable Sentinels")));
        let leaderless = View { has_leader: false, ..view(None) };
        assert!(
            matches!(sentinel(&leaderless, &args(&["ckquorum", "tandem"])), Frame::Error(text) if text.starts_with(b"NOQUORUM"))
        );
    }

    #[test]
    fn unknown_subcommands_and_commands_are_errors() {
        assert!(matches!(sentinel(&view(None), &args(&["failover-now"])), Frame::Error(_)));
        assert!(matches!(sentinel(&view(None), &args(&[])), Frame::Error(_)));
        let reply = resp2(&unknown(&Bytes::from_static(b"GET"), &args(&["key"])));
        assert!(reply.starts_with("-ERR unknown command 'GET'"), "{reply}");
        assert_eq!(resp2(&role(&view(None))), "*2\r\n$8\r\nsentinel\r\n*1\r\n$6\r\ntandem\r\n");
    }

    #[test]
    fn the_switch_message_names_both_addresses() {
        let text = switch_master("tandem", node(1, 7001).client, node(2, 7002).client);
        assert_eq!(text, "tandem 127.0.0.1 7001 127.0.0.1 7002");
    }
}
