//! Publisher ids over real sockets: a publish that names its event's `id` is answered with it,
//! the event goes out with it, a resume by it is exact, a repeat is `409` while the event is
//! retained and accepted once it is dropped; alone, with `--data-dir` across a restart, and on
//! two instances sharing a real `redis-server` (skipped with a loud notice when it is missing,
//! unless REQUIRE_REDIS=1).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{form_escape, subscribe, Publish, Server, Stream, JSON};
use redis_server::RedisServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Publishes `data` to `topic` with publisher id `id` (form): (status, answer body).
fn publish_id(addr: SocketAddr, topic: &str, data: &str, id: &str) -> (u16, String) {
    Publish::form(&format!(
        "topic={}&data={}&id={}",
        form_escape(topic),
        form_escape(data),
        form_escape(id)
    ))
    .answer(addr)
}

fn resume(addr: SocketAddr, topic: &str, last_id: &str) -> Stream {
    subscribe(
        addr,
        &format!("topic={topic}"),
        &format!("Last-Event-ID: {last_id}\r\n"),
    )
}

/// (id, type, data) of the next `n` events.
fn take(sub: &mut Stream, n: usize) -> Vec<(String, String, String)> {
    sub.take(n, WAIT)
        .into_iter()
        .map(|e| (e.id, e.kind, e.data))
        .collect()
}

fn ev(id: &str, data: &str) -> (String, String, String) {
    (id.into(), "message".into(), data.into())
}

#[test]
fn a_publisher_id_is_the_answer_the_frame_and_a_resume_point() {
    let server = Server::start(&["--history-events", "3"]);
    let mut live = subscribe(server.addr, "topic=t", "");
    assert_eq!(
        publish_id(server.addr, "t", "one", "urn:uuid:1"),
        (200, "urn:uuid:1".into())
    );
    // JSON too; and an event without an id gets the hub's, as ever.
    let (st, body) =
        Publish::typed(JSON, r#"{"topic":"t","data":"two","id":"order 42/b"}"#).answer(server.addr);
    assert_eq!((st, body.as_str()), (200, "order 42/b"));
    let three = server.publish("t", "three");
    assert_eq!(
        take(&mut live, 3),
        [
            ev("urn:uuid:1", "one"),
            ev("order 42/b", "two"),
            ev(&three, "three")
        ]
    );
    assert!(String::from_utf8_lossy(&live.raw).starts_with("id: urn:uuid:1\ndata: one\n\n"));
    // Resumes by a publisher id start right after its event.
    let mut after_one = resume(server.addr, "t", "urn:uuid:1");
    assert_eq!(
        take(&mut after_one, 2),
        [ev("order 42/b", "two"), ev(&three, "three")]
    );
    let mut after_two = resume(server.addr, "t", "order 42/b");
    assert_eq!(take(&mut after_two, 1), [ev(&three, "three")]);
    assert!(after_two.quiet_for(Duration::from_millis(200)).len() == 1);

    // A retained id again: 409, stored nowhere, whatever the topic.
    let (st, body) = publish_id(server.addr, "other", "dup", "urn:uuid:1");
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("urn:uuid:1"), "{body}");
    // The hub's own form: 400 (it would name another event).
    let epoch = three.rsplit_once('-').unwrap().0;
    let (st, body) = publish_id(server.addr, "t", "x", &format!("{epoch}-99"));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("form of this hub's own ids"), "{body}");
    // What the spec forbids: 400 naming the rule.
    for (bad, why) in [
        ("#1", "id must not start with #"),
        ("a\nb", "control character"),
        ("earliest", "reserved"),
    ] {
        let (st, body) = publish_id(server.addr, "t", "x", bad);
        assert_eq!(st, 400, "{bad:?}: {body}");
        assert!(body.contains(why), "{body}");
    }
    // Nothing refused went out.
    live.quiet_for(Duration::from_millis(200));

    // Evicted (a history of 3): the id is unknown to a resume, and free again.
    let four = server.publish("t", "four");
    let mut old = resume(server.addr, "t", "urn:uuid:1");
    let first = &old.take(1, WAIT)[0];
    assert_eq!(first.kind, "reset", "{first:?}");
    assert!(first.data.contains("unknown-id"), "{}", first.data);
    assert_eq!(
        publish_id(server.addr, "t", "again", "urn:uuid:1"),
        (200, "urn:uuid:1".into())
    );
    assert_eq!(
        take(&mut live, 2),
        [ev(&four, "four"), ev("urn:uuid:1", "again")]
    );
    let mut again = resume(server.addr, "t", &three);
    assert_eq!(
        take(&mut again, 2),
        [ev(&four, "four"), ev("urn:uuid:1", "again")]
    );
}

/// Many publishers racing with the same ids: exactly one of each is stored, alone and with a
/// data dir (where the id is reserved from the route until the writer has stored it).
#[test]
fn of_racing_publishes_of_one_id_exactly_one_is_stored() {
    race(&["--threads", "2"]);
    let dir = Dir::new("race");
    race(&["--threads", "2", "--data-dir", dir.0.to_str().unwrap()]);
}

fn race(args: &[&str]) {
    let server = Server::start(args);
    let addr = server.addr;
    let mut live = subscribe(addr, "topic=race", "");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| publish_id(addr, "race", &format!("{t}"), &format!("id-{i}")).0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 20);
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 140);
    let mut ids: Vec<String> = take(&mut live, 20).into_iter().map(|e| e.0).collect();
    ids.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("id-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(live.quiet_for(Duration::from_millis(300)).len(), 20);
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("sse-ids-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn with_a_data_dir_publisher_ids_survive_a_restart_exactly() {
    let dir = Dir::new("restart");
    let path = dir.0.to_str().unwrap();
    let args = [
        "--data-dir",
        path,
        "--threads",
        "2",
        "--history-events",
        "4",
    ];
    let server = Server::start(&args);
    let mut live = subscribe(server.addr, "topic=t", "");
    assert_eq!(publish_id(server.addr, "t", "a", "pa"), (200, "pa".into()));
    let b = server.publish("t", "b");
    assert_eq!(publish_id(server.addr, "t", "c", "pc"), (200, "pc".into()));
    assert_eq!(publish_id(server.addr, "t", "dup", "pa").0, 409);
    assert_eq!(
        take(&mut live, 3),
        [ev("pa", "a"), ev(&b, "b"), ev("pc", "c")]
    );
    drop(live);
    let mut server = server;
    server.signal("TERM");
    let _ = server.child.wait();

    let server = Server::start(&args);
    // Resume by a publisher id after the restart: exact.
    let mut after = resume(server.addr, "t", "pa");
    assert_eq!(take(&mut after, 2), [ev(&b, "b"), ev("pc", "c")]);
    // Still taken after the restart.
    assert_eq!(publish_id(server.addr, "t", "dup", "pc").0, 409);
    assert_eq!(publish_id(server.addr, "t", "d", "pd"), (200, "pd".into()));
    assert_eq!(take(&mut after, 1), [ev("pd", "d")]);
    // Two more evict `pa` (4 retained): its id is free again, a resume by it is told.
    server.publish("t", "e");
    assert_eq!(publish_id(server.addr, "t", "a2", "pa"), (200, "pa".into()));
    let mut old = resume(server.addr, "t", "pc");
    let got = take(&mut old, 3);
    assert_eq!(got[0], ev("pd", "d"));
    assert_eq!(got[2], ev("pa", "a2"));
}

#[test]
fn on_redis_every_instance_indexes_publisher_ids_and_refuses_repeats() {
    // Small stream nodes, so `MAXLEN ~` trims close to the history's size.
    let Some(redis) = RedisServer::start(&["--stream-node-max-entries", "2"]) else {
        return;
    };
    let url = redis.url();
    let args = ["--redis", &url, "--threads", "2", "--history-events", "4"];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let mut on_b = subscribe(b.addr, "topic=t", "");
    assert_eq!(
        publish_id(a.addr, "t", "one", "urn:1"),
        (200, "urn:1".into())
    );
    let two = Publish::event("t", "two").id(a.addr);
    assert_eq!(take(&mut on_b, 2), [ev("urn:1", "one"), ev(&two, "two")]);
    // A repeat on the other instance: refused there, atomically in Redis.
    let (st, body) = publish_id(b.addr, "t", "dup", "urn:1");
    assert_eq!(st, 409, "{body}");
    // The log's own form: 400.
    assert_eq!(publish_id(b.addr, "t", "x", &two).0, 400);
    // Resume by a publisher id given on A, on B: exact.
    let mut moved = resume(b.addr, "t", "urn:1");
    assert_eq!(take(&mut moved, 1), [ev(&two, "two")]);
    // Racing publishes of one id on both instances: exactly one is stored.
    let racers: Vec<_> = [a.addr, b.addr, a.addr, b.addr]
        .into_iter()
        .map(|addr| std::thread::spawn(move || publish_id(addr, "t", "race", "urn:race").0))
        .collect();
    let statuses: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        (
            statuses.iter().filter(|&&s| s == 200).count(),
            statuses.iter().filter(|&&s| s == 409).count()
        ),
        (1, 3),
        "{statuses:?}"
    );
    assert_eq!(take(&mut on_b, 1), [ev("urn:race", "race")]);
    // Trimmed from the log (and so from every history): the id may be given again, and
    // Redis's index of ids stays bounded with the log.
    for i in 0..12 {
        Publish::event("t", &format!("fill-{i}")).id(a.addr);
    }
    assert_eq!(
        publish_id(b.addr, "t", "again", "urn:1"),
        (200, "urn:1".into())
    );
    let mut conn = redis.conn(&url);
    let held: usize = redis::cmd("HLEN")
        .arg("sse:events:ids")
        .query(&mut conn)
        .unwrap();
    let order: usize = redis::cmd("LLEN")
        .arg("sse:events:id-order")
        .query(&mut conn)
        .unwrap();
    assert!(held <= 2 && order <= 2, "{held} ids, {order} in order");
    // B's reader may find part of the fill already trimmed (the log keeps about 4 entries
    // here): it says so with a `reset` (reason gap), as documented, and goes on; the new
    // "urn:1" arrives last either way.
    let got = on_b.expect_until(WAIT, |evs| evs.iter().any(|e| e.data == "again"));
    let last = got.last().unwrap();
    assert_eq!((last.id.as_str(), last.data.as_str()), ("urn:1", "again"));
    assert!(
        got.iter()
            .all(|e| e.kind == "message" || (e.kind == "reset" && e.data.contains("\"gap\""))),
        "{got:?}"
    );
}

/// Mercure's endpoint takes the publisher's id too, and a resume by it is answered with it as
/// the `Last-Event-ID` field (the event it resumes after), as for the hub's own ids.
#[test]
fn the_mercure_endpoint_takes_ids_and_a_resume_by_one_names_it() {
    let server = Server::start(&[]);
    let body = "topic=t&data=one&id=urn%3Auuid%3Aa";
    let r = server.request(&format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!((r.status, r.text().trim_end()), (200, "urn:uuid:a"));
    let two = server.publish("t", "two");
    let anchor = |st: &Stream| {
        st.head
            .lines()
            .find_map(|l| l.strip_prefix("Last-Event-ID: ").map(str::to_string))
    };
    let mut st = common::open(
        server.addr,
        "/.well-known/mercure?topic=t",
        "Last-Event-ID: urn:uuid:a\r\n",
    );
    assert_eq!(st.status, 200, "{}", st.head);
    assert_eq!(anchor(&st).as_deref(), Some("urn:uuid:a"), "{}", st.head);
    assert_eq!(take(&mut st, 1), [ev(&two, "two")]);
    // A repeat through this endpoint: 409 as well.
    let r = server.request(&format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(r.status, 409, "{}", r.text());
}

/// A publisher id this instance does not hold is looked up in Redis: one older than this
/// instance's history (here 2 events, while the other instance keeps the stream at 50) is
/// replayed from the stream exactly; one that no entry has is `reset` (unknown id), as alone.
#[test]
fn on_redis_a_publisher_id_older_than_the_instances_history_is_replayed_from_the_stream() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let a = Server::start(&["--redis", &url, "--history-events", "50"]);
    let b = Server::start(&["--redis", &url, "--history-events", "2"]);
    let mut on_b = subscribe(b.addr, "topic=t", "");
    assert_eq!(
        publish_id(a.addr, "t", "deep", "urn:deep"),
        (200, "urn:deep".into())
    );
    let later: Vec<String> = (0..5)
        .map(|i| Publish::event("t", &format!("after-{i}")).id(a.addr))
        .collect();
    // B has read all of them, and holds the last two only.
    assert_eq!(take(&mut on_b, 6).len(), 6);
    let mut deep = resume(b.addr, "t", "urn:deep");
    let want: Vec<_> = later
        .iter()
        .enumerate()
        .map(|(i, id)| ev(id, &format!("after-{i}")))
        .collect();
    assert_eq!(take(&mut deep, 5), want);
    deep.quiet_for(Duration::from_millis(300));
    // Live after the replay.
    let next = Publish::event("t", "live").id(a.addr);
    assert_eq!(take(&mut deep, 1), [ev(&next, "live")]);
    // No entry has it: reset, unknown id.
    let mut unknown = resume(b.addr, "t", "urn:nobody");
    let first = &unknown.take(1, WAIT)[0];
    assert_eq!(first.kind, "reset", "{first:?}");
    assert!(first.data.contains("unknown-id"), "{}", first.data);
    assert!(first.data.contains("urn:nobody"), "{}", first.data);
}

/// xorshift64*: a reproducible sequence from the seed printed by the test.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Randomized publishes with a publisher id (from a few names, so repeats are frequent) or
/// without, into a history of 5 events, with resumes by retained, dropped and unknown ids of
/// both kinds, over real sockets, against a model of the history: every publish gets `200`
/// with its id or `409` exactly as the model says, and every resume gets exactly the model's
/// events after its id, or `reset` when the id is dropped or unknown.
#[test]
fn publishes_and_resumes_with_mixed_ids_follow_a_model() {
    let seed = std::env::var("SSE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("SSE_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    const KEEP: usize = 5;
    let server = Server::start(&["--threads", "2", "--history-events", "5"]);
    let names = ["urn:a", "urn:b", "c", "order-42", "x y"];
    // (id, data) of the retained events, oldest first; every id ever answered.
    let mut model: std::collections::VecDeque<(String, String)> = Default::default();
    let mut dropped: Vec<String> = Vec::new();
    for step in 0..150 {
        match rng.below(10) {
            0..=5 => {
                let data = format!("d{step}");
                if rng.below(3) == 0 {
                    let id = server.publish("t", &data);
                    model.push_back((id, data));
                } else {
                    let name = names[rng.below(names.len() as u64) as usize];
                    let (st, body) = publish_id(server.addr, "t", &data, name);
                    if model.iter().any(|(id, _)| id == name) {
                        assert_eq!(st, 409, "step {step}: {name} is retained: {body}");
                        continue;
                    }
                    assert_eq!((st, body.as_str()), (200, name), "step {step}");
                    model.push_back((name.to_string(), data));
                }
                if model.len() > KEEP {
                    dropped.push(model.pop_front().unwrap().0);
                }
            }
            6..=8 if !model.is_empty() => {
                let i = rng.below(model.len() as u64) as usize;
                let mut st = resume(server.addr, "t", &model[i].0);
                let want: Vec<_> = model.iter().skip(i + 1).map(|(id, d)| ev(id, d)).collect();
                if !want.is_empty() {
                    assert_eq!(take(&mut st, want.len()), want, "step {step}");
                }
                st.quiet_for(Duration::from_millis(20));
            }
            _ => {
                // A dropped id (unless it was given again and is retained) or one never given.
                let id = match dropped.last() {
                    Some(d) if rng.below(2) == 0 => d.clone(),
                    _ => format!("never-{step}"),
                };
                if model.iter().any(|(m, _)| *m == id) {
                    continue;
                }
                let mut st = resume(server.addr, "t", &id);
                // The hub's id of the last event dropped still says where the history
                // starts: what follows it is all retained (a publisher's id leaves the index
                // with its event).
                let own = !names.contains(&id.as_str()) && !id.starts_with("never-");
                if own && dropped.last() == Some(&id) {
                    let want: Vec<_> = model.iter().map(|(id, d)| ev(id, d)).collect();
                    assert_eq!(take(&mut st, want.len()), want, "step {step}");
                    continue;
                }
                let first = &st.take(1, WAIT)[0];
                assert_eq!(first.kind, "reset", "step {step}: {id}: {first:?}");
            }
        }
    }
}
