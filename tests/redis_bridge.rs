//! The Redis bridge against a real `redis-server` (tests/common/redis.rs): ids and order,
//! two instances on one log, backfill, a Redis crash and restart, passwords, TLS refusal.

#[path = "common/redis.rs"]
mod redis_server;

use redis_server::RedisServer;
use sse_server::hub::history::Publish;
use sse_server::redis::bridge::{Bridge, BridgeConfig, Sink, StoreState};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records what the bridge delivers.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(String, Publish)>>,
    /// The size of each `on_events` call, in order.
    calls: Mutex<Vec<usize>>,
    states: Mutex<Vec<(bool, String)>>,
}

impl Sink for Recorder {
    fn on_events(&self, events: Vec<(String, Publish)>) {
        self.calls.lock().unwrap().push(events.len());
        self.events.lock().unwrap().extend(events);
    }
    fn on_state(&self, state: StoreState<'_>) {
        let (up, reason) = match state {
            StoreState::Up => (true, ""),
            StoreState::Down(reason) => (false, reason),
        };
        self.states.lock().unwrap().push((up, reason.to_string()));
    }
}

impl Recorder {
    fn ids(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect()
    }
    fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }
    fn last_state(&self) -> Option<bool> {
        self.states.lock().unwrap().last().map(|s| s.0)
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn publish(i: usize) -> Publish {
    Publish {
        topics: if i % 3 == 0 {
            vec!["news".into(), format!("user/{i}")]
        } else {
            vec!["news".into()]
        },
        data: format!("event {i}\nsecond line"),
        event_type: (i % 2 == 0).then(|| "note".to_string()),
        retry: (i % 5 == 0).then_some(1000 + i as u64),
        private: false,
        id: None,
    }
}

/// Submits and waits for the answer.
fn submit(b: &Bridge, p: Publish) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    b.submit(
        p,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(10))
        .expect("submit answered")
}

fn cfg(url: &str) -> BridgeConfig {
    BridgeConfig::new(url, 1000)
}

fn start(url: &str) -> (Bridge, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let b = Bridge::start(cfg(url), rec.clone()).expect("bridge starts");
    wait_for("the bridge to report up", Duration::from_secs(5), || {
        rec.last_state() == Some(true)
    });
    (b, rec)
}

#[test]
fn a_publish_is_answered_with_the_id_the_sink_receives() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let (b, rec) = start(&r.url());
    let sent: Vec<Publish> = (0..200).map(publish).collect();
    // Queue them all at once so they go out as a few pipelines, answered in order.
    let (tx, rx) = mpsc::channel();
    for (i, p) in sent.iter().enumerate() {
        let tx = tx.clone();
        b.submit(p.clone(), Box::new(move |r| tx.send((i, r)).unwrap()));
    }
    let mut ids = vec![String::new(); sent.len()];
    for _ in 0..sent.len() {
        let (i, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        ids[i] = r.expect("stored");
    }
    wait_for("200 events", Duration::from_secs(5), || rec.count() >= 200);
    let got = rec.events.lock().unwrap().clone();
    let want: Vec<(String, Publish)> = ids.into_iter().zip(sent).collect();
    assert_eq!(got, want);
    let s = b.stats();
    assert!(s.up);
    assert_eq!(
        (s.publishes_stored, s.publish_errors, s.events_read),
        (200, 0, 200)
    );
    // The first call was the (empty) backfill.
    assert_eq!(rec.calls.lock().unwrap()[0], 0);
    assert_eq!(*rec.states.lock().unwrap(), [(true, String::new())]);
    wait_for("the lag check", Duration::from_secs(3), || {
        b.stats().lag == 0
    });
    let t = Instant::now();
    b.stop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
}

#[test]
fn two_instances_see_one_store_in_one_order() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let (a, rec_a) = start(&r.url());
    let (b, rec_b) = start(&r.url());
    let mut ids = Vec::new();
    for i in 0..60 {
        let via = if i % 2 == 0 { &a } else { &b };
        ids.push(submit(via, publish(i)).unwrap());
    }
    wait_for("both to read 60", Duration::from_secs(5), || {
        rec_a.count() >= 60 && rec_b.count() >= 60
    });
    assert_eq!(rec_a.ids(), ids);
    assert_eq!(rec_b.ids(), ids);
    assert_eq!(*rec_a.events.lock().unwrap(), *rec_b.events.lock().unwrap());
    a.stop();
    b.stop();
}

#[test]
fn a_new_instance_starts_with_the_backfill() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let (a, _) = start(&r.url());
    let ids: Vec<String> = (0..30).map(|i| submit(&a, publish(i)).unwrap()).collect();
    a.stop();

    let rec = Arc::new(Recorder::default());
    let mut c = cfg(&r.url());
    c.backfill = 10;
    let b = Bridge::start(c, rec.clone()).unwrap();
    wait_for("the backfill", Duration::from_secs(5), || rec.count() >= 10);
    assert_eq!(rec.calls.lock().unwrap()[0], 10);
    assert_eq!(rec.ids(), ids[20..]);
    // What comes next follows on, nothing repeated.
    let next = submit(&b, publish(30)).unwrap();
    wait_for("the next event", Duration::from_secs(5), || {
        rec.count() >= 11
    });
    assert_eq!(rec.ids().last(), Some(&next));
    assert_eq!(rec.count(), 11);
    b.stop();
}

#[test]
fn redis_crash_and_restart_lose_and_repeat_nothing() {
    // With the append-only file synced on every write, what was answered `Ok` survives a
    // SIGKILL, as in a deployment with persistence.
    let Some(mut r) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let (b, rec) = start(&r.url());
    let mut ids: Vec<String> = (0..20).map(|i| submit(&b, publish(i)).unwrap()).collect();
    wait_for("20 events", Duration::from_secs(5), || rec.count() >= 20);

    r.kill();
    wait_for("the bridge to report down", Duration::from_secs(5), || {
        rec.last_state() == Some(false)
    });
    let reason = rec.states.lock().unwrap().last().unwrap().1.clone();
    assert!(!reason.is_empty());
    assert!(!b.stats().up);
    // While down, a publish fails, and fast.
    for i in 0..5 {
        let t = Instant::now();
        let e = submit(&b, publish(100 + i)).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "took {:?}",
            t.elapsed()
        );
        assert!(e.contains("Redis"), "{e}");
    }

    r.restart();
    // Someone else writes to the log before this bridge is back: it must catch up on it.
    let mut other = r.conn(&r.url());
    for i in 0..5 {
        let id: String = redis::cmd("XADD")
            .arg("sse:events")
            .arg("*")
            .arg("t")
            .arg("news")
            .arg("d")
            .arg(format!("other {i}"))
            .query(&mut other)
            .unwrap();
        ids.push(id);
    }
    wait_for(
        "the bridge to report up again",
        Duration::from_secs(10),
        || rec.last_state() == Some(true),
    );
    // Up means usable: the first publish after the restart is stored.
    for i in 20..40 {
        ids.push(submit(&b, publish(i)).unwrap());
    }
    wait_for("45 events", Duration::from_secs(5), || rec.count() >= 45);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rec.ids(), ids, "every stored entry exactly once, in order");
    let s = b.stats();
    assert!(s.up && s.reconnects >= 2, "{s:?}");
    assert_eq!((s.publishes_stored, s.publish_errors), (40, 5), "{s:?}");
    let states: Vec<bool> = rec.states.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(states, [true, false, true]);
    b.stop();
}

#[test]
fn a_hung_redis_is_noticed_and_stop_does_not_wait_for_it() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let (b, rec) = start(&r.url());
    let first = submit(&b, publish(0)).unwrap();
    r.pause();
    // Nothing closes the connections: only the reader's read timeout can tell.
    wait_for("the bridge to report down", Duration::from_secs(6), || {
        rec.last_state() == Some(false)
    });
    assert!(submit(&b, publish(1)).is_err());
    r.resume();
    wait_for(
        "the bridge to report up again",
        Duration::from_secs(10),
        || rec.last_state() == Some(true),
    );
    let second = submit(&b, publish(2)).unwrap();
    wait_for("both events", Duration::from_secs(5), || rec.count() >= 2);
    assert_eq!(rec.ids(), [first, second]);

    // Stopping while Redis hangs returns within a second all the same.
    r.pause();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    b.stop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    r.resume();
}

#[test]
fn passwords_work_and_a_wrong_one_is_a_clear_start_error() {
    let Some(r) = RedisServer::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    let url = format!("redis://:s3cret@127.0.0.1:{}", r.port);
    let (b, rec) = start(&url);
    let id = submit(&b, publish(1)).unwrap();
    wait_for("the event", Duration::from_secs(5), || rec.count() == 1);
    assert_eq!(rec.ids(), [id]);
    b.stop();

    let sink = Arc::new(Recorder::default());
    let wrong = format!("redis://:wrong@127.0.0.1:{}", r.port);
    let e = Bridge::start(cfg(&wrong), sink.clone()).unwrap_err();
    assert!(e.contains("wrong user or password"), "{e}");
    assert!(!e.contains("wrong@"), "password in {e}");
    let e = Bridge::start(cfg(&r.url()), sink).unwrap_err();
    assert!(e.contains("NOAUTH") || e.contains("uthentication"), "{e}");
}

#[test]
fn start_errors_say_what_is_wrong() {
    let sink = Arc::new(Recorder::default());
    let e = Bridge::start(cfg("rediss://127.0.0.1:6380"), sink.clone()).unwrap_err();
    assert!(e.contains("rediss://") && e.contains("TLS"), "{e}");
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Bridge::start(cfg(&format!("redis://127.0.0.1:{port}")), sink.clone()).unwrap_err();
    assert!(e.contains(&port.to_string()), "{e}");

    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let mut c = r.conn(&r.url());
    let _: () = redis::cmd("SET")
        .arg("sse:events")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let e = Bridge::start(cfg(&r.url()), sink).unwrap_err();
    assert!(e.contains("WRONGTYPE"), "{e}");
}

#[test]
fn entries_the_bridge_cannot_read_are_skipped_and_counted() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let (b, rec) = start(&r.url());
    let mut c = r.conn(&r.url());
    let _: String = redis::cmd("XADD")
        .arg("sse:events")
        .arg("*")
        .arg("foo")
        .arg("bar")
        .query(&mut c)
        .unwrap();
    let id = submit(&b, publish(1)).unwrap();
    wait_for("the good event", Duration::from_secs(5), || {
        rec.count() == 1
    });
    assert_eq!(rec.ids(), [id]);
    assert_eq!(b.stats().entries_skipped, 1);
    b.stop();
}

/// Not a test but a measurement, run by hand:
/// `cargo test --release --test redis_bridge -- --ignored --nocapture throughput`.
/// Publishes through `submit()` (one writer, one pipeline at a time) to a local Redis and
/// prints publishes per second answered `Ok`, and how soon the reader delivered them all.
#[test]
#[ignore]
fn throughput() {
    let Some(r) = RedisServer::start(&[]) else {
        return;
    };
    let rec = Arc::new(Recorder::default());
    let mut c = cfg(&r.url());
    c.maxlen = 10_000;
    let b = Bridge::start(c, rec.clone()).unwrap();
    wait_for("up", Duration::from_secs(5), || {
        rec.last_state() == Some(true)
    });
    const N: usize = 200_000;
    let p = Publish {
        topics: vec!["bench".into()],
        data: r#"{"seq":123456,"t_us":1700000000000000,"run":"abcdef"}"#.into(),
        event_type: None,
        retry: None,
        private: false,
        id: None,
    };
    let (tx, rx) = mpsc::channel::<bool>();
    let t = Instant::now();
    // Paced by the answers so the queue (65,536) never refuses: at most 20,000 in flight.
    let mut answered = 0;
    let mut ok = 0;
    for i in 0..N {
        if i >= answered + 20_000 {
            ok += usize::from(rx.recv().unwrap());
            answered += 1;
        }
        let tx = tx.clone();
        b.submit(p.clone(), Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    }
    while answered < N {
        ok += usize::from(rx.recv().unwrap());
        answered += 1;
    }
    let stored = t.elapsed();
    wait_for("delivery", Duration::from_secs(60), || rec.count() >= N);
    let delivered = t.elapsed();
    println!(
        "{N} publishes, {ok} stored in {:.2} s: {:.0} publishes/s; all read back after {:.2} s \
         ({:.0} events/s)",
        stored.as_secs_f64(),
        ok as f64 / stored.as_secs_f64(),
        delivered.as_secs_f64(),
        N as f64 / delivered.as_secs_f64()
    );
    assert_eq!(ok, N);
    b.stop();
}
