//! The embedded event store (`--data-dir`) over real processes: history and ids across a
//! restart, SIGKILL during a publish flood (a few rounds here; `SSE_CRASH_ROUNDS=50` for the
//! full run), a torn tail and a flipped bit in the files, a full disk (a tmpfs the test
//! mounts), one owner per directory, and the start-up errors.

mod common;

use common::{subscribe, Event, Publish, Server, Stream};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("sse-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not permitted.
    fn mount(tag: &str, size: &str) -> Option<Tmpfs> {
        let p = std::env::temp_dir().join(format!("sse-tmpfs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(p)),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({}), so the full-disk case is not tested here",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: cannot run mount ({e}), so the full-disk case is not tested here"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn start(dir: &Dir, extra: &[&str]) -> Server {
    let mut args = vec!["--data-dir", dir.arg(), "--threads", "2"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Ends the server with SIGTERM and waits for it.
fn stop(mut server: Server) {
    server.signal("TERM");
    let _ = server.child.wait();
}

/// Publishes `data` to `topic` on a fresh connection: `Some((status, body))`, or `None` if
/// the server went away before answering.
fn try_publish(addr: SocketAddr, topic: &str, data: &str) -> Option<(u16, String)> {
    let r = Publish::event(topic, data).try_send(addr)?;
    Some((r.status, r.text().trim_end().to_string()))
}

/// A subscription to `topic`, resuming after `last_id` if given.
fn open_sub(addr: SocketAddr, topic: &str, last_id: Option<&str>) -> Stream {
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    subscribe(addr, &format!("topic={topic}"), &resume)
}

/// Reads until an event with id `id` arrived; returns everything so far.
fn until_id(sub: &mut Stream, id: &str) -> Vec<Event> {
    sub.expect_until(Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e.id == id)
    })
    .to_vec()
}

/// An event as the hub sends it.
fn ev(id: &str, kind: &str, data: &str) -> Event {
    Event {
        id: id.into(),
        kind: kind.into(),
        data: data.into(),
        has_id: true,
    }
}

fn seq(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn epoch(id: &str) -> &str {
    id.rsplit_once('-').unwrap().0
}

#[test]
fn history_and_ids_survive_a_restart_exactly() {
    let dir = Dir::new("restart");
    let server = start(&dir, &[]);
    let ids: Vec<String> = (0..5)
        .map(|i| server.publish("news", &format!("before-{i}")))
        .collect();
    stop(server);
    let server = start(&dir, &[]);
    assert_eq!(server.metric("sse_data_log_recovered_events"), 5.0);
    // A resume from before the restart: exactly what followed, no reset, no duplicate.
    let mut sub = open_sub(server.addr, "news", Some(&ids[1]));
    let got = until_id(&mut sub, &ids[4]);
    let want: Vec<Event> = (2..5)
        .map(|i| ev(&ids[i], "message", &format!("before-{i}")))
        .collect();
    assert_eq!(got, want);
    // The ids continue the same sequence.
    let next = server.publish("news", "after");
    assert_eq!(epoch(&next), epoch(&ids[0]));
    assert_eq!(seq(&next), seq(&ids[4]) + 1);
    until_id(&mut sub, &next);
    sub.quiet_for(Duration::from_millis(300));
    // A subscriber without an id starts live, as without --data-dir.
    let mut live = open_sub(server.addr, "news", None);
    live.quiet_for(Duration::from_millis(300));
    let disk = server.metric("sse_data_log_bytes");
    assert!(disk > 0.0);
    assert_eq!(server.metric("sse_data_log_segments"), 1.0);
    assert!(server.metric("sse_data_log_sync_seconds_count") >= 1.0);
    stop(server);
}

#[test]
fn one_owner_per_directory_naming_the_holder() {
    let dir = Dir::new("owner");
    let server = start(&dir, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            dir.arg(),
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "--data-dir {}: in use by another sse-server (pid {}",
            dir.arg(),
            server.child.id()
        )),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    stop(server);
}

/// Runs the binary expecting a start-up error; returns its one line.
fn start_error(args: &[&str], as_nobody: bool) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null());
    if as_nobody {
        // SAFETY: setgid/setuid only change the child's credentials.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn bad_directories_are_one_line_errors_at_start_up() {
    let dir = Dir::new("bad");
    let missing = dir.0.join("missing");
    let err = start_error(&["--data-dir", missing.to_str().unwrap()], false);
    assert!(err.contains("no such directory"), "{err}");
    let file = dir.0.join("file");
    std::fs::write(&file, "x").unwrap();
    let err = start_error(&["--data-dir", file.to_str().unwrap()], false);
    assert!(err.contains("not a directory"), "{err}");
    let other = dir.0.join("v9");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("format"),
        "sse-server event log\nformat 9\nepoch abc\n",
    )
    .unwrap();
    let err = start_error(&["--data-dir", other.to_str().unwrap()], false);
    assert!(
        err.contains("holds an event log of format 9; this sse-server reads format 2"),
        "{err}"
    );
    let err = start_error(
        &["--data-dir", dir.arg(), "--redis", "redis://127.0.0.1:1"],
        false,
    );
    assert!(
        err.contains("--data-dir and --redis exclude each other"),
        "{err}"
    );
    // Unwritable: a directory owned by root, for a server running as nobody (as root the
    // permission bits would not stop us).
    let ro = dir.0.join("readonly");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let err = start_error(&["--data-dir", ro.to_str().unwrap()], root);
    assert!(
        err.contains("cannot open its lock file: Permission denied"),
        "{err}"
    );
}

/// The records of a segment: (offset, length), up to the zeros written ahead of them.
fn records(seg: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 16;
    let mut out = Vec::new();
    while at + 12 <= seg.len() && seg[at] != 0 {
        let len = u32::from_le_bytes(seg[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, 12 + len));
        at += 12 + len;
    }
    out
}

fn segment(dir: &Dir) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn a_torn_tail_is_cut_counted_and_never_served() {
    let dir = Dir::new("torn");
    let server = start(&dir, &[]);
    let ids: Vec<String> = (0..3)
        .map(|i| server.publish("t", &format!("event-{i}")))
        .collect();
    stop(server);
    let path = segment(&dir);
    let whole = std::fs::read(&path).unwrap();
    let last = *records(&whole).last().unwrap();
    let end = last.0 + last.1;
    assert!(
        whole[end..].iter().all(|&b| b == 0) && whole.len() > end,
        "zeros are kept written ahead of the records"
    );
    // The last record again after it, cut in its middle (and ending in a byte that is not
    // zero), over the zeros, as a crash during a write leaves it.
    let mut tail = whole[last.0..last.0 + last.1 / 2].to_vec();
    tail.push(0x5a);
    use std::os::unix::fs::FileExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&tail, end as u64)
        .unwrap();
    let server = start(&dir, &[]);
    assert_eq!(
        server.metric("sse_data_log_truncated_bytes"),
        tail.len() as f64
    );
    let now = std::fs::read(&path).unwrap();
    assert_eq!(now[..end], whole[..end]);
    assert!(
        now[end..].iter().all(|&b| b == 0),
        "the torn bytes are gone, zeros are ahead again"
    );
    let zero = format!("{}-0", epoch(&ids[0]));
    let mut sub = open_sub(server.addr, "t", Some(&zero));
    let got = until_id(&mut sub, &ids[2]);
    assert_eq!(got.len(), 3, "{got:?}");
    // The torn record was never answered (nor shown): its id is the next one, no reset.
    let next = server.publish("t", "next");
    assert_eq!(seq(&next), seq(&ids[2]) + 1);
    let got = until_id(&mut sub, &next);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|e| e.kind == "message"), "{got:?}");
    stop(server);
}

#[test]
fn a_flipped_bit_is_logged_and_a_resume_across_it_gets_reset() {
    let dir = Dir::new("flip");
    let server = start(&dir, &[]);
    let ids: Vec<String> = (0..6)
        .map(|i| server.publish("t", &format!("event-{i}")))
        .collect();
    stop(server);
    let path = segment(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let recs = records(&bytes);
    let (third, len) = recs[2];
    bytes[third + len - 2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let (server, log) = Server::start_logged(&["--data-dir", dir.arg(), "--threads", "2"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let damage = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(l) if l.contains("data_dir_damage") => break l,
            Ok(_) => {}
            Err(_) => panic!("no damage line"),
        }
    };
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        damage.contains(&format!("segment {name} offset {third}: corrupt record")),
        "{damage}"
    );
    // What precedes is served; then the reset; then what is published now.
    let mut sub = open_sub(server.addr, "t", Some(&ids[0]));
    let got = sub
        .expect_until(Duration::from_secs(5), |e| e.len() >= 2)
        .to_vec();
    assert_eq!(got[0], ev(&ids[1], "message", "event-1"));
    assert_eq!(got[1].kind, "reset", "{got:?}");
    assert!(got[1].data.contains("\"reason\":\"gap\""), "{got:?}");
    let reset_id = got[1].id.clone();
    assert!(
        seq(&reset_id) >= seq(&ids[5]),
        "the lost ids are covered: {reset_id}"
    );
    let next = server.publish("t", "next");
    assert_eq!(seq(&next), seq(&reset_id) + 1);
    let got = until_id(&mut sub, &next);
    assert_eq!(got.len(), 3, "{got:?}");
    // Resuming from an event that was lost (a subscriber saw it before the damage): reset.
    let mut lost = open_sub(server.addr, "t", Some(&ids[3]));
    let got = until_id(&mut lost, &next);
    assert_eq!(
        got.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["reset", "message"]
    );
    // Resuming after the gap: no reset.
    let mut after = open_sub(server.addr, "t", Some(&reset_id));
    let got = until_id(&mut after, &next);
    assert_eq!(got.len(), 1, "{got:?}");
    stop(server);
}

#[test]
fn a_full_disk_answers_503_and_publishing_recovers_when_space_returns() {
    let Some(fs) = Tmpfs::mount("full", "512k") else {
        return;
    };
    let data = fs.0.join("data");
    std::fs::create_dir(&data).unwrap();
    let dir_arg = data.to_str().unwrap().to_string();
    let server = Server::start(&["--data-dir", &dir_arg, "--threads", "2"]);
    let mut stored = vec![server.publish("t", "before")];
    // Fill the file system.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 4096];
    // Again after a pause: the log may have held space for its zeros ahead for a moment (and
    // given it back when it could not have all of it), which the filler must take too.
    for _ in 0..3 {
        while f.write_all(&block).is_ok() {}
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(f);
    let payload = "x".repeat(300);
    let mut refused = None;
    // The log may hold space written ahead (or have had it in hand while the filler ran): a
    // refusal comes once that is used, within the file system's 512 KiB.
    for i in 0..2000 {
        let (status, body) = try_publish(server.addr, "t", &format!("{payload}-{i}")).unwrap();
        match status {
            200 => stored.push(body),
            503 => {
                refused = Some(body);
                break;
            }
            s => panic!("{s} {body}"),
        }
    }
    let refused = refused.expect("a full disk refuses publishes");
    assert!(
        refused.contains("the event log (the data dir) did not store it")
            && refused.contains("No space left on device"),
        "{refused}"
    );
    assert!(server.metric("sse_data_log_errors_total") >= 1.0);
    std::fs::remove_file(&filler).unwrap();
    stored.push(server.publish("t", "after"));
    stop(server);
    // Nothing half-written is served: exactly the stored events, in order.
    let server = Server::start(&["--data-dir", &dir_arg, "--threads", "2"]);
    let zero = format!("{}-0", epoch(&stored[0]));
    let mut sub = open_sub(server.addr, "t", Some(&zero));
    let got = until_id(&mut sub, stored.last().unwrap());
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, stored, "{got:?}");
    stop(server);
}

/// A small deterministic generator for kill times and resume points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// SIGKILL at a random moment of a publish flood, `SSE_CRASH_ROUNDS` times (3 by default; the
/// full run is `SSE_CRASH_ROUNDS=50 cargo test --release --test durable sigkill`): after each
/// restart every publish answered 200 is there exactly once, in order, ids strictly
/// increasing, and a resume from any id seen gets exactly what follows it.
#[test]
fn sigkill_during_a_publish_flood_loses_no_answered_publish() {
    let rounds: usize = std::env::var("SSE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = Dir::new("crash");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let history = [
        "--history-events",
        "1000000",
        "--history-bytes",
        "268435456",
    ];
    // Every answered publish so far: (id, data), in the order each publisher got them.
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..rounds {
        let fsync = ["batch", "always", "off"][round % 3];
        let mut args = vec!["--fsync", fsync];
        args.extend_from_slice(&history);
        let mut server = start(&dir, &args);
        let addr = server.addr;
        let flowing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                let answered = answered.clone();
                let flowing = flowing.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0.. {
                        let data = format!("r{round}-p{p}-{i}");
                        match try_publish(addr, "flood", &data) {
                            Some((200, id)) => {
                                mine.push((id, data));
                                flowing.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Some((status, body)) => panic!("{status} {body}"),
                            None => break,
                        }
                    }
                    answered.lock().unwrap().extend(mine.iter().cloned());
                    mine
                })
            })
            .collect();
        // The flood is under way (however slow the machine is today), then a random moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while flowing.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no publish answered"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        server.child.kill().unwrap();
        let _ = server.child.wait();
        let per_publisher: Vec<Vec<(String, String)>> =
            publishers.into_iter().map(|h| h.join().unwrap()).collect();
        let n: usize = per_publisher.iter().map(Vec::len).sum();
        assert!(n > 0, "round {round}: nothing was answered before the kill");

        let server = start(&dir, &history);
        let sentinel = server.publish("flood", &format!("sentinel-{round}"));
        answered
            .lock()
            .unwrap()
            .push((sentinel.clone(), format!("sentinel-{round}")));
        let zero = format!("{}-0", epoch(&sentinel));
        let mut sub = open_sub(server.addr, "flood", Some(&zero));
        let all = until_id(&mut sub, &sentinel);
        // Ids strictly increasing.
        for w in all.windows(2) {
            assert!(seq(&w[0].id) < seq(&w[1].id), "round {round}: {w:?}");
        }
        // Every answered publish exactly once, with its data (ids are unique, as they
        // strictly increase; no data twice either).
        let mut by_id = std::collections::HashMap::new();
        let mut datas = std::collections::HashSet::new();
        for (i, e) in all.iter().enumerate() {
            by_id.insert(e.id.as_str(), (i, e.data.as_str()));
            assert!(
                datas.insert(e.data.as_str()),
                "round {round}: {} twice",
                e.data
            );
        }
        let answered_now = answered.lock().unwrap().clone();
        for (id, data) in &answered_now {
            let found = by_id.get(id.as_str());
            assert_eq!(
                found.map(|f| f.1),
                Some(data.as_str()),
                "round {round}: {id}"
            );
        }
        // In order: each publisher's answered events appear in the order it sent them.
        for mine in &per_publisher {
            let at: Vec<usize> = mine.iter().map(|(id, _)| by_id[id.as_str()].0).collect();
            assert!(
                at.windows(2).all(|w| w[0] < w[1]),
                "round {round}: out of order"
            );
        }
        // A resume from any id seen gets exactly what follows it.
        for _ in 0..3 {
            let from = rng.below(all.len() as u64) as usize;
            let mut resumed = open_sub(server.addr, "flood", Some(&all[from].id));
            let got = if from + 1 == all.len() {
                resumed.quiet_for(Duration::from_millis(200)).to_vec()
            } else {
                until_id(&mut resumed, &sentinel)
            };
            assert_eq!(
                got,
                all[from + 1..],
                "round {round}: resume from {}",
                all[from].id
            );
        }
        eprintln!(
            "round {round} (--fsync {fsync}): {n} answered before the kill, {} events retained",
            all.len()
        );
        stop(server);
    }
}

#[test]
fn the_history_bounds_delete_old_segments() {
    let dir = Dir::new("bounds");
    let server = start(
        &dir,
        &["--history-events", "100", "--history-bytes", "20000"],
    );
    let payload = "y".repeat(400);
    let mut last = String::new();
    for i in 0..300 {
        last = server.publish("t", &format!("{payload}{i}"));
    }
    // Segments are 16 KiB here (the smallest); the disk holds at most the history's bytes
    // plus one segment.
    let on_disk: u64 = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 20000 + 16384 + 1024, "{on_disk} bytes on disk");
    assert_eq!(server.metric("sse_data_log_bytes"), on_disk as f64);
    stop(server);
    let server = start(
        &dir,
        &["--history-events", "100", "--history-bytes", "20000"],
    );
    let (events, bytes) = (
        server.metric("sse_hub_history_events"),
        server.metric("sse_hub_history_bytes"),
    );
    assert!(
        events > 0.0 && events <= 100.0 && bytes <= 20000.0,
        "{events} {bytes}"
    );
    let mut sub = open_sub(server.addr, "t", Some(&format!("{}-299", epoch(&last))));
    let got = until_id(&mut sub, &last);
    assert_eq!(got.len(), 1);
    stop(server);
}

/// The shipped unit keeps the history in the state directory systemd makes for it.
#[test]
fn the_systemd_unit_turns_the_data_dir_on() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sse-server.service"
    ))
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .trim()
            .to_string()
    };
    let state = value("StateDirectory=");
    assert_eq!(
        value("Environment=SSE_DATA_DIR="),
        format!("/var/lib/{state}")
    );
}

/// Start-up with a full default history (10,000 events, 64 MiB) within 1 s. A timing, so
/// ignored by default: `cargo test --release --test durable -- --ignored full_history` on a
/// quiet machine (a debug build reads the history but does not check the time).
#[test]
#[ignore = "a timing: run with --release on a quiet machine"]
fn start_up_with_a_full_default_history_takes_under_a_second() {
    use sse_server::durable::format::{encode, segment_header};
    use sse_server::hub::history::Publish;
    let dir = Dir::new("full-history");
    std::fs::write(
        dir.0.join("format"),
        "sse-server event log\nformat 1\nepoch fullhist\n",
    )
    .unwrap();
    // 10,000 events whose history cost stays under the default 64 MiB, in 8 MiB segments.
    let data = "z".repeat(6_500);
    let mut seg = segment_header().to_vec();
    let mut first = 1u64;
    for seq in 1..=10_000u64 {
        let p = Publish {
            topics: vec!["bulk".into()],
            data: data.clone(),
            ..Publish::default()
        };
        encode(&mut seg, seq, &p).unwrap();
        if seg.len() >= 8 << 20 || seq == 10_000 {
            std::fs::write(dir.0.join(format!("{first:020}.seg")), &seg).unwrap();
            seg = segment_header().to_vec();
            first = seq + 1;
        }
    }
    let t = Instant::now();
    let server = start(&dir, &[]);
    let took = t.elapsed();
    let events = server.metric("sse_hub_history_events");
    let bytes = server.metric("sse_hub_history_bytes");
    eprintln!(
        "start-up with {events} events, {:.1} MiB of history: {took:?}",
        bytes / 1048576.0
    );
    assert_eq!(events, 10_000.0);
    assert_eq!(server.metric("sse_data_log_recovered_events"), 10_000.0);
    if !cfg!(debug_assertions) {
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    let mut sub = open_sub(server.addr, "bulk", Some("fullhist-9999"));
    assert_eq!(until_id(&mut sub, "fullhist-10000").len(), 1);
    stop(server);
}

/// `/metrics` times each publish's answer on the server, from the request complete to the
/// answer's last byte written, labelled by where publishes are stored; with the data dir its
/// stages too. The answer's time holds the store's (submit to the log's answer), and only
/// publishes the store took are counted (not a refused publish, not a `GET`).
#[test]
fn publish_answers_are_timed_on_the_server_per_store() {
    let count =
        |s: &Server, name: &str, label: &str| -> f64 { s.metric(&format!("{name}_count{label}")) };
    let sum =
        |s: &Server, name: &str, label: &str| -> f64 { s.metric(&format!("{name}_sum{label}")) };
    let memory = Server::start(&["--threads", "2"]);
    for i in 0..4 {
        memory.publish("t", &format!("m{i}"));
    }
    let refused = memory.request(
        "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndata=x",
    );
    assert_eq!(refused.status, 400);
    // As below: an answer is counted once its last byte is written, which may follow the
    // client's read of it (and its next request, on another loop) by a moment.
    assert_eq!(
        memory.wait_metric(
            "sse_publish_answer_seconds_count{store=\"memory\"}",
            4.0,
            Duration::from_secs(5)
        ),
        4.0
    );
    assert_eq!(
        memory.metric("sse_publish_answer_seconds_bucket{store=\"memory\",le=\"+Inf\"}"),
        4.0
    );
    drop(memory);

    let dir = Dir::new("answer-timing");
    let server = start(&dir, &[]);
    for i in 0..5 {
        server.publish("t", &format!("d{i}"));
    }
    let d = "{store=\"data-dir\"}";
    // The answer is counted once its last byte is written, which may follow the client's
    // read of it by a moment.
    assert_eq!(
        server.wait_metric(
            "sse_publish_answer_seconds_count{store=\"data-dir\"}",
            5.0,
            Duration::from_secs(5)
        ),
        5.0
    );
    for stage in ["sse_data_log_queue_seconds", "sse_data_log_stored_seconds"] {
        assert_eq!(count(&server, stage, ""), 5.0, "{stage}");
    }
    let batches = count(&server, "sse_data_log_sync_seconds", "");
    assert!((1.0..=5.0).contains(&batches), "{batches}");
    assert_eq!(count(&server, "sse_data_log_write_seconds", ""), batches);
    // Each answer's time spans its store's time (µs rounding: 1 µs each at most).
    let answer = sum(&server, "sse_publish_answer_seconds", d);
    let stored = sum(&server, "sse_data_log_stored_seconds", "");
    let synced = sum(&server, "sse_data_log_sync_seconds", "");
    assert!(stored > 0.0 && synced > 0.0, "{stored} {synced}");
    assert!(answer + 5e-6 >= stored, "answer {answer} < stored {stored}");
    assert!(stored + 5e-6 >= synced, "stored {stored} < synced {synced}");
    stop(server);
}
