//! Presence across instances (`--subscriptions` with `--redis`): each instance's liveness in
//! Redis, and the sweep that ends the subscriptions of an instance that died without a word.
//!
//! Subscription events go through the shared store (the Redis stream) like any publish, so
//! every instance folds every instance's events into its registry (see
//! [`crate::hub::presence`]). What the store cannot say is that an instance is gone when it was killed (SIGKILL, a crash, a lost host):
//! its subscribers' `active: false` events are never published. So each instance keeps a key
//! `<stream key>:presence:alive:<instance tag>` alive (`SET ... PX` [`ALIVE_TTL`], renewed
//! every [`EVERY`]), and once every [`EVERY`] looks at the instances its registry names: one
//! whose key has expired is dead; the first instance to claim it (`SET
//! <stream key>:presence:swept:<tag> NX PX` [`CLAIM_TTL`], so exactly one does) publishes the
//! `active: false` event of each of its subscriptions, through the store, and every instance's
//! registry drops them as it reads them. A dead instance's subscribers are gone from every
//! API within [`ALIVE_TTL`] + [`EVERY`] and the store's round trip (about 7 s).
//!
//! One thread with its own connection (reconnecting every [`EVERY`] while Redis is away);
//! nothing here runs on an event loop. The first `SET` is made before the loops start, so no
//! instance can see another's subscriber before that instance's key exists.

use crate::hub::backend::Backend;
use crate::hub::history::Hub;
use crate::hub::presence;
use redis::{ConnectionLike, Value};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long an instance's key lives without being renewed.
pub const ALIVE_TTL: Duration = Duration::from_secs(5);
/// How often the key is renewed and the other instances looked at.
pub const EVERY: Duration = Duration::from_secs(1);
/// How long a sweep's claim on a dead instance holds (another instance sweeps again after it,
/// should the subscriptions still be listed then).
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// The keeper of this instance's key and the sweeper of dead ones.
struct Keeper {
    client: redis::Client,
    conn: Option<redis::Connection>,
    alive_prefix: String,
    swept_prefix: String,
    /// This instance's tag ([`presence::instance_tag`]).
    tag: String,
    /// Where the `active: false` events go (weak: the store holds the hub, which this thread
    /// must not keep alive).
    store: Weak<dyn Backend>,
}

/// Starts presence across instances for the hub (whose presence must be on) and the store
/// `store`: makes this instance's key now (an error is left to the thread to retry), then
/// renews it and sweeps on a thread of its own, until the hub is dropped.
pub fn start(
    url: &str,
    stream_key: &str,
    hub: &Arc<Hub>,
    store: Arc<dyn Backend>,
) -> Result<(), String> {
    let Some(instance) = hub.presence() else {
        return Ok(());
    };
    let mut keeper = Keeper {
        client: super::bridge::open_client(url)?,
        conn: None,
        alive_prefix: format!("{stream_key}:presence:alive:"),
        swept_prefix: format!("{stream_key}:presence:swept:"),
        tag: presence::instance_tag(instance),
        store: Arc::downgrade(&store),
    };
    keeper.renew();
    let hub = Arc::downgrade(hub);
    std::thread::Builder::new()
        .name("sse-presence".into())
        .spawn(move || keeper.run(hub))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Keeper {
    fn run(mut self, hub: Weak<Hub>) {
        loop {
            std::thread::sleep(EVERY);
            let Some(hub) = hub.upgrade() else {
                return;
            };
            self.renew();
            self.sweep(&hub);
        }
    }

    /// One command on the connection (opened when missing, dropped on an error).
    fn cmd(&mut self, cmd: &redis::Cmd) -> Option<Value> {
        if self.conn.is_none() {
            self.conn = super::bridge::connect(&self.client).ok();
        }
        match self.conn.as_mut()?.req_command(cmd) {
            Ok(Value::ServerError(_)) => None,
            Ok(v) => Some(v),
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }

    /// Renews this instance's key.
    fn renew(&mut self) {
        let mut set = redis::cmd("SET");
        set.arg(format!("{}{}", self.alive_prefix, self.tag))
            .arg("1")
            .arg("PX")
            .arg(ALIVE_TTL.as_millis() as u64);
        let _ = self.cmd(&set);
    }

    /// Ends the subscriptions of every instance the registry names whose key has expired,
    /// when this instance is the one that claims it.
    fn sweep(&mut self, hub: &Arc<Hub>) {
        let instances = hub.with_presence(|r, _| r.instances()).unwrap_or_default();
        let mine = self.tag.clone();
        for tag in instances.into_iter().filter(|t| *t != mine) {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(format!("{}{tag}", self.alive_prefix));
            match self.cmd(&exists) {
                Some(Value::Int(0)) => {}
                _ => continue,
            }
            let mut claim = redis::cmd("SET");
            claim
                .arg(format!("{}{tag}", self.swept_prefix))
                .arg(&self.tag)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL.as_millis() as u64);
            let claimed = match self.cmd(&claim) {
                Some(Value::Okay) => true,
                Some(Value::SimpleString(s)) => s == "OK",
                _ => false,
            };
            if !claimed {
                continue;
            }
            let gone = hub
                .with_presence(|r, _| r.of_instance(&tag))
                .unwrap_or_default();
            let Some(store) = self.store.upgrade() else {
                return;
            };
            for (topic, subscriber, payload) in gone {
                let p = presence::event(
                    &topic,
                    &subscriber,
                    presence::Status::Inactive,
                    payload.as_deref(),
                );
                store.submit(p, Box::new(|_| {}));
            }
        }
    }
}
