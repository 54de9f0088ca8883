//! The cluster trusts nobody on the engine: messages published straight on
//! the cluster's subject by a raw Redis or NATS client (no shardcast in
//! between) are refused unless signed with the cluster's secret, new, from
//! a node that is not this one, and made of input a client could send.
//! Each refusal is counted by reason, and no client receives anything.

use crate::cluster::{for_each_plain_engine, wait_log, EngineProcess, Kind, CLUSTER_SECRET};
use crate::metrics::{metrics_port, scrape};
use crate::presence::member_added_text;
use crate::support::*;
use bytes::Bytes;
use serde_json::json;
use shardcast::cluster::route::{bucket_of, event_subject, CONTROL};
use shardcast::cluster::seal::{Seal, TAG_BYTES};
use shardcast::cluster::wire::{encode, envelope_header, Header, NodeMsg};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A raw client of the engine: RESP for Redis, the text protocol for NATS.
struct RawEngine {
    kind: Kind,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Messages read while waiting for something else.
    pending: std::collections::VecDeque<Vec<u8>>,
}

impl RawEngine {
    fn connect(engine: &EngineProcess) -> RawEngine {
        let stream = TcpStream::connect(("127.0.0.1", engine.port)).expect("connect to engine");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = RawEngine {
            kind: engine.kind,
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            pending: Default::default(),
        };
        if let Kind::Nats = raw.kind {
            let info = raw.line();
            assert!(info.starts_with("INFO"), "{info}");
            raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
            raw.nats_ping();
        }
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to engine");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read from engine");
        assert!(!l.is_empty(), "the engine closed the connection");
        l.trim_end().to_string()
    }

    fn exact(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n + 2];
        self.reader.read_exact(&mut b).expect("read from engine");
        b.truncate(n);
        b
    }

    /// One RESP value, as the bulk strings and integers it holds.
    fn resp(&mut self) -> Vec<Vec<u8>> {
        let l = self.line();
        let (kind, rest) = l.split_at(1);
        match kind {
            "*" => {
                let n: usize = rest.parse().unwrap();
                (0..n).flat_map(|_| self.resp()).collect()
            }
            "$" => {
                let n: usize = rest.parse().unwrap();
                vec![self.exact(n)]
            }
            ":" | "+" => vec![rest.as_bytes().to_vec()],
            _ => panic!("Redis answered {l}"),
        }
    }

    /// NATS: PING, and wait for the PONG (the server has handled everything
    /// sent before it). A MSG that arrives meanwhile (a subscription that
    /// just started) is kept for [`RawEngine::next_message`].
    fn nats_ping(&mut self) {
        self.send(b"PING\r\n");
        loop {
            let l = self.line();
            match l.as_str() {
                "PONG" => return,
                "PING" => self.send(b"PONG\r\n"),
                other if other.starts_with("+OK") || other.starts_with("INFO") => {}
                other if other.starts_with("MSG ") => {
                    let n: usize = other.rsplit(' ').next().unwrap().parse().unwrap();
                    let payload = self.exact(n);
                    self.pending.push_back(payload);
                }
                other => panic!("NATS answered {other}"),
            }
        }
    }

    fn subscribe(&mut self, subject: &str) {
        match self.kind {
            Kind::Redis => {
                self.send(
                    format!(
                        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{subject}\r\n",
                        subject.len()
                    )
                    .as_bytes(),
                );
                let reply = self.resp();
                assert_eq!(reply[0], b"subscribe");
            }
            Kind::Nats => {
                self.send(format!("SUB {subject} 1\r\n").as_bytes());
                self.nats_ping();
            }
        }
    }

    /// The next message on the subscribed subject.
    fn next_message(&mut self) -> Vec<u8> {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        match self.kind {
            Kind::Redis => {
                let mut m = self.resp();
                assert_eq!(m[0], b"message");
                m.pop().unwrap()
            }
            Kind::Nats => loop {
                let l = self.line();
                if l == "PING" {
                    self.send(b"PONG\r\n");
                    continue;
                }
                let parts: Vec<&str> = l.split(' ').collect();
                assert_eq!(parts[0], "MSG", "{l}");
                let n: usize = parts.last().unwrap().parse().unwrap();
                return self.exact(n);
            },
        }
    }

    /// Publishes and waits until the engine has handed the message to its
    /// subscribers (Redis answers PUBLISH after that; NATS answers a PING
    /// after handling the PUB before it).
    fn publish(&mut self, subject: &str, payload: &[u8]) {
        match self.kind {
            Kind::Redis => {
                let mut cmd = format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{subject}\r\n${}\r\n",
                    subject.len(),
                    payload.len()
                )
                .into_bytes();
                cmd.extend_from_slice(payload);
                cmd.extend_from_slice(b"\r\n");
                self.send(&cmd);
                let receivers = self.resp();
                let n: u64 = String::from_utf8_lossy(&receivers[0]).parse().unwrap();
                assert!(n >= 2, "PUBLISH reached {n} subscribers, not both nodes");
            }
            Kind::Nats => {
                let mut cmd = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
                cmd.extend_from_slice(payload);
                cmd.extend_from_slice(b"\r\n");
                self.send(&cmd);
                self.nats_ping();
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An envelope of `messages` from `header`, signed with `seal` (or with a
/// made-up signature when `seal` is `None`).
fn envelope(header: Header, messages: &[NodeMsg], seal: Option<&Seal>) -> Vec<u8> {
    let mut out = Vec::new();
    envelope_header(&header, &mut out);
    for m in messages {
        encode(m, &mut out);
    }
    match seal {
        Some(seal) => seal.sign(&mut out),
        None => out.extend_from_slice(&[0x5a; TAG_BYTES]),
    }
    out
}

fn publish_frame(app: &str, channel: &str, text: &str) -> NodeMsg {
    NodeMsg::Publish {
        app: app.into(),
        except: None,
        frames: vec![(
            channel.into(),
            Bytes::from(encode_frame(true, OP_TEXT, text.as_bytes(), false)),
        )],
    }
}

/// The node id a server logged ("cluster: node <hex> joins through ...").
fn node_id(server: &Server) -> u64 {
    let log = server.log_text();
    let at = log.find("cluster: node ").expect("node id logged") + "cluster: node ".len();
    u64::from_str_radix(&log[at..at + 16], 16).expect("hex node id")
}

fn refused(m: &HashMap<String, u64>, reason: &str) -> u64 {
    let key = format!("shardcast_cluster_messages_refused_total{{reason=\"{reason}\"}}");
    *m.get(&key).unwrap_or_else(|| panic!("no {key}"))
}

/// Forged (unsigned), tampered, replayed, stale, spoofed, misrouted,
/// invalid and unknown-app messages published straight on the engine (on
/// the control subject and on the event subject of the victims' channel):
/// both nodes refuse each, counted under its reason, and no client gets
/// anything from them; genuine traffic keeps flowing.
#[test]
fn forged_tampered_replayed_and_invalid_engine_messages_are_refused() {
    for_each_plain_engine(|engine| {
        let config = format!(
            "{}\n[server.metrics]\nenabled = true\nport = 0\n",
            engine.config("")
        );
        let a = Server::start_with(&config);
        let b = Server::start_with(&config);
        wait_log(&a, "is up", 1, Duration::from_secs(10));
        wait_log(&b, "is up", 1, Duration::from_secs(10));
        let subject = format!("{}.cluster", engine.prefix());
        let events = event_subject(&engine.prefix(), bucket_of("app-id", "victim"));
        let mut listener = RawEngine::connect(engine);
        listener.subscribe(&events);
        let mut attacker = RawEngine::connect(engine);

        let mut on_a = Ws::connect(a.port);
        let mut on_b = Ws::connect(b.port);
        let mut member_b = Ws::connect(b.port);
        for ws in [&mut on_a, &mut on_b] {
            ws.subscribe("victim");
        }
        let p = member_b.subscribe_presence("presence-room", r#"{"user_id":"real"}"#);
        assert_eq!(p["ids"], json!(["real"]));

        // A genuine envelope from A, recorded off the engine.
        trigger(
            a.port,
            &DEV,
            &json!({"name":"genuine","channel":"victim","data":"1"}),
        );
        let genuine = event_text("genuine", "victim", "1");
        on_a.expect_text(&genuine);
        on_b.expect_text(&genuine);
        let recorded = loop {
            let m = listener.next_message();
            if m.windows(genuine.len()).any(|w| w == genuine.as_bytes()) {
                break m;
            }
        };

        let seal = Seal::new(CLUSTER_SECRET.as_bytes(), &subject);
        let forged_text = event_text("forged", "victim", "x");
        let stranger = |seq| Header {
            node: 0x5eed_0000_0000_0001,
            seq,
            control: seq,
            stream: CONTROL,
            sent_ms: now_ms(),
        };
        let join = |info: &str| NodeMsg::MemberJoined {
            app: "app-id".into(),
            channel: "presence-room".into(),
            user_id: "intruder".into(),
            user_info: info.into(),
            sync: false,
        };
        // 1. Not signed: an event and a presence member.
        attacker.publish(
            &subject,
            &envelope(
                stranger(1),
                &[publish_frame("app-id", "victim", &forged_text), join("{}")],
                None,
            ),
        );
        // 2. The recording, with its event changed.
        let mut tampered = recorded.clone();
        let at = tampered
            .windows(genuine.len())
            .position(|w| w == genuine.as_bytes())
            .unwrap();
        tampered[at + 10] ^= 0x01;
        attacker.publish(&events, &tampered);
        // 3. The recording as it was, on its subject and on another one.
        attacker.publish(&events, &recorded);
        attacker.publish(&subject, &recorded);
        // 4. Signed, but from a new node and ten minutes old.
        let old = Header {
            sent_ms: now_ms() - 600_000,
            ..stranger(1)
        };
        attacker.publish(
            &subject,
            &envelope(
                old,
                &[publish_frame("app-id", "victim", &forged_text)],
                Some(&seal),
            ),
        );
        // 5. Signed with A's id and a number A used already.
        let spoof = Header {
            node: node_id(&a),
            seq: 1,
            control: 1,
            stream: CONTROL,
            sent_ms: now_ms(),
        };
        attacker.publish(
            &subject,
            &envelope(
                spoof,
                &[publish_frame("app-id", "victim", &forged_text)],
                Some(&seal),
            ),
        );
        // 6. Signed and new, but with what no client could send: a member
        //    whose user_info is not JSON (it would be spliced into frames),
        //    a channel name with a space, an unknown app.
        let invalid = [
            join(r#"},"event":"pusher:error"#),
            publish_frame("app-id", "bad name", &forged_text),
            publish_frame("no-such-app", "victim", &forged_text),
        ];
        for (i, m) in invalid.iter().enumerate() {
            attacker.publish(
                &subject,
                &envelope(stranger(2 + i as u64), std::slice::from_ref(m), Some(&seal)),
            );
        }

        // Each node counted each refusal under its reason. On A the
        // recording and the spoof carry A's own id with a number it has
        // seen back already (spoofed); on B they are old numbers of A's
        // (replayed). The recording on the control subject is signed for
        // the event subject (misrouted).
        let expect_a = [
            ("signature", 2),
            ("spoofed", 2),
            ("stale", 1),
            ("invalid", 2),
            ("unknown_app", 1),
            ("misrouted", 1),
        ];
        let expect_b = [
            ("signature", 2),
            ("replayed", 2),
            ("stale", 1),
            ("invalid", 2),
            ("unknown_app", 1),
            ("misrouted", 1),
        ];
        for (server, expected) in [(&a, &expect_a), (&b, &expect_b)] {
            let port = metrics_port(server);
            let counted = wait_until(Duration::from_secs(5), || {
                let m = scrape(port);
                expected.iter().all(|(r, n)| refused(&m, r) >= *n)
            });
            let m = scrape(port);
            assert!(counted, "{expected:?} not counted: {m:?}");
            for reason in shardcast::cluster::Refusal::ALL {
                let want = expected
                    .iter()
                    .find(|(r, _)| *r == reason.label())
                    .map_or(0, |(_, n)| *n);
                assert_eq!(refused(&m, reason.label()), want, "{}", reason.label());
            }
        }
        let log = b.log_text();
        assert_eq!(
            log.matches("refused a message").count(),
            6,
            "one line per reason:\n{log}"
        );
        assert!(
            log.contains("not signed with this cluster's secret"),
            "{log}"
        );

        // Barrier: A's next event reaches both nodes' subscribers after
        // anything the engine delivered before it; it must be their next
        // frame. The member list on B is still just the real member.
        trigger(
            a.port,
            &DEV,
            &json!({"name":"after","channel":"victim","data":"2"}),
        );
        let after = event_text("after", "victim", "2");
        on_a.expect_text(&after);
        on_b.expect_text(&after);
        let users = get_json(b.port, "/apps/app-id/channels/presence-room/users", &[]);
        assert_eq!(users["users"], json!([{"id":"real"}]), "{users}");
        // And for members: a real user joining on A after the attack; B's
        // owner handles what the link hands it in order, so a member_added
        // for an intruder would reach the member on B first.
        let mut late = Ws::connect(a.port);
        late.subscribe_presence("presence-room", r#"{"user_id":"late"}"#);
        member_b.expect_text(&member_added_text("presence-room", "late", "{}"));
    });
}
