//! A hashed timing wheel: one deadline per key, O(1) arm, cancel and expire.
//!
//! Time is a plain `u64` count of milliseconds handed in by the caller; this module never reads
//! a clock. Keys are small dense integers (the connection slab index), so the wheel keeps its
//! nodes in a `Vec` indexed by key and links them into intrusive, circular, doubly-linked lists:
//! one list per slot, plus one "due" list the expiry cursor drains. Every list has a sentinel
//! node, so unlinking never needs to know which list a node is in.
//!
//! A slot holds every deadline `d` with `d % SLOTS == slot`; a deadline more than one rotation
//! away is simply found "not yet due" when the cursor passes and is put back, so any delay works
//! and the common case (a stream's interval, shorter than one rotation) is never visited twice.
//!
//! **Invariant:** a key is in at most one list; `deadline == UNARMED` exactly when it is in none.

/// Number of 1 ms slots in one rotation (4.096 s): the seed's 2 s interval fits in one turn.
const SLOTS: usize = 4096;
const MASK: u64 = SLOTS as u64 - 1;
const UNARMED: u64 = u64::MAX;
/// Index of the "due" list's sentinel; slot sentinels are `0..SLOTS`, keys start after it.
const DUE: u32 = SLOTS as u32;
const FIRST_KEY: u32 = SLOTS as u32 + 1;

#[derive(Clone, Copy, Debug)]
struct Node {
    deadline: u64,
    prev: u32,
    next: u32,
}

/// The timer structure for many streams. See the module docs.
pub struct TimerWheel {
    nodes: Vec<Node>,
    /// One bit per slot: set when something was linked there since the cursor last drained it.
    /// A hint only (a cancel does not clear it), used to skip empty slots and to find the next
    /// wake-up without scanning every slot.
    occupied: [u64; SLOTS / 64],
    /// Every tick before `cursor` has been moved to the due list.
    cursor: u64,
    armed: usize,
}

impl TimerWheel {
    /// An empty wheel whose clock starts at `now` (ms).
    pub fn new(now: u64) -> Self {
        let sentinels = (0..=DUE).map(|i| Node {
            deadline: UNARMED,
            prev: i,
            next: i,
        });
        TimerWheel {
            nodes: sentinels.collect(),
            occupied: [0; SLOTS / 64],
            cursor: now,
            armed: 0,
        }
    }

    /// How many keys hold a deadline.
    pub fn len(&self) -> usize {
        self.armed
    }

    /// Whether no key holds a deadline.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// The deadline `key` is armed for, if any.
    pub fn deadline(&self, key: usize) -> Option<u64> {
        let d = self.nodes.get(Self::idx(key) as usize)?.deadline;
        (d != UNARMED).then_some(d)
    }

    /// Arms `key` for `deadline`, replacing any earlier deadline. A deadline already past fires
    /// on the next call to [`pop_expired`](Self::pop_expired).
    pub fn arm(&mut self, key: usize, deadline: u64) {
        let i = Self::idx(key);
        if i as usize >= self.nodes.len() {
            let missing = i as usize + 1 - self.nodes.len();
            self.nodes.extend((0..missing).map(|_| Node {
                deadline: UNARMED,
                prev: 0,
                next: 0,
            }));
        }
        if self.nodes[i as usize].deadline != UNARMED {
            self.unlink(i);
        } else {
            self.armed += 1;
        }
        self.nodes[i as usize].deadline = deadline;
        if deadline < self.cursor {
            // The cursor has passed its slot: straight onto the due list.
            self.link_after(DUE, i);
            return;
        }
        let slot = (deadline & MASK) as usize;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.link_after(slot as u32, i);
    }

    /// Removes `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: usize) {
        let i = Self::idx(key);
        if let Some(node) = self.nodes.get(i as usize) {
            if node.deadline != UNARMED {
                self.unlink(i);
                self.nodes[i as usize].deadline = UNARMED;
                self.armed -= 1;
            }
        }
    }

    /// Removes and returns one key whose deadline is `<= now`, or `None` when none is left.
    /// Call it in a loop; keys re-armed meanwhile are handled correctly.
    pub fn pop_expired(&mut self, now: u64) -> Option<usize> {
        loop {
            let first = self.nodes[DUE as usize].next;
            if first != DUE {
                self.unlink(first);
                let deadline = self.nodes[first as usize].deadline;
                if deadline <= now {
                    self.nodes[first as usize].deadline = UNARMED;
                    self.armed -= 1;
                    return Some((first - FIRST_KEY) as usize);
                }
                // A later rotation: back into its slot, which the cursor has just passed.
                let slot = (deadline & MASK) as u32;
                self.occupied[slot as usize / 64] |= 1 << (slot % 64);
                self.link_after(slot, first);
                continue;
            }
            if self.cursor > now {
                return None;
            }
            match self.next_occupied(self.cursor, now) {
                None => {
                    self.cursor = now + 1;
                    return None;
                }
                Some(tick) => {
                    let slot = (tick & MASK) as usize;
                    self.occupied[slot / 64] &= !(1 << (slot % 64));
                    self.splice_slot_into_due(slot as u32);
                    self.cursor = tick + 1;
                }
            }
        }
    }

    /// The earliest tick at which [`pop_expired`](Self::pop_expired) may return a key: a lower
    /// bound (a slot may hold only later rotations, or cancelled keys), never later than the
    /// true next deadline. `None` when nothing is armed.
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.armed == 0 {
            return None;
        }
        if self.nodes[DUE as usize].next != DUE {
            return Some(self.cursor.saturating_sub(1));
        }
        self.next_occupied(self.cursor, self.cursor + MASK)
    }

    /// The first tick in `from..=to` whose slot bit is set (at most one rotation is searched).
    fn next_occupied(&self, from: u64, to: u64) -> Option<u64> {
        let span = (to - from).min(MASK);
        let mut tick = from;
        let end = from + span;
        while tick <= end {
            let slot = (tick & MASK) as usize;
            let word = self.occupied[slot / 64] >> (slot % 64);
            if word != 0 {
                let found = tick + u64::from(word.trailing_zeros());
                return (found <= end).then_some(found);
            }
            tick += 64 - (slot % 64) as u64;
        }
        None
    }

    fn splice_slot_into_due(&mut self, slot: u32) {
        let first = self.nodes[slot as usize].next;
        if first == slot {
            return;
        }
        let last = self.nodes[slot as usize].prev;
        // Empty the slot's ring, then append its chain to the due ring.
        self.nodes[slot as usize].next = slot;
        self.nodes[slot as usize].prev = slot;
        let due_last = self.nodes[DUE as usize].prev;
        self.nodes[due_last as usize].next = first;
        self.nodes[first as usize].prev = due_last;
        self.nodes[last as usize].next = DUE;
        self.nodes[DUE as usize].prev = last;
    }

    fn link_after(&mut self, head: u32, i: u32) {
        let next = self.nodes[head as usize].next;
        self.nodes[i as usize].prev = head;
        self.nodes[i as usize].next = next;
        self.nodes[head as usize].next = i;
        self.nodes[next as usize].prev = i;
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
    }

    fn idx(key: usize) -> u32 {
        // Keys are connection slab indices, bounded by the file-descriptor limit, far below
        // u32::MAX - SLOTS; a larger key would be a bug in the caller.
        u32::try_from(key)
            .ok()
            .and_then(|k| k.checked_add(FIRST_KEY))
            .expect("timer key fits u32")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel, now: u64) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(k) = w.pop_expired(now) {
            out.push(k);
        }
        out.sort();
        out
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = TimerWheel::new(1000);
        w.arm(3, 1010);
        w.arm(7, 1005);
        assert_eq!(w.len(), 2);
        assert_eq!(drain(&mut w, 1004), Vec::<usize>::new());
        assert_eq!(drain(&mut w, 1005), vec![7]);
        assert_eq!(drain(&mut w, 1009), Vec::<usize>::new());
        assert_eq!(drain(&mut w, 1010), vec![3]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_and_rearm() {
        let mut w = TimerWheel::new(0);
        w.arm(1, 10);
        w.arm(2, 10);
        w.cancel(1);
        w.cancel(1); // a second cancel is a no-op
        w.arm(2, 20); // re-arming moves it
        assert_eq!(drain(&mut w, 15), Vec::<usize>::new());
        assert_eq!(drain(&mut w, 25), vec![2]);
        assert_eq!(w.deadline(2), None);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_rotation() {
        let mut w = TimerWheel::new(0);
        w.arm(1, 10_000); // ~2.4 rotations away
        w.arm(2, 10_000 - SLOTS as u64); // same slot, one rotation earlier
        for now in (0..10_000).step_by(250) {
            let fired = drain(&mut w, now);
            if now >= 10_000 - SLOTS as u64 {
                assert!(fired.is_empty() || fired == vec![2]);
            } else {
                assert!(fired.is_empty(), "fired early at {now}: {fired:?}");
            }
        }
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, 10_000), vec![1]);
    }

    #[test]
    fn past_deadline_fires_next_pop() {
        let mut w = TimerWheel::new(500);
        assert_eq!(drain(&mut w, 600), Vec::<usize>::new());
        w.arm(4, 100);
        assert_eq!(drain(&mut w, 601), vec![4]);
    }

    #[test]
    fn rearm_during_expiry_is_not_fired_twice() {
        let mut w = TimerWheel::new(0);
        for k in 0..100 {
            w.arm(k, 50);
        }
        let mut fired = 0;
        while let Some(k) = w.pop_expired(50) {
            fired += 1;
            w.arm(k, 50 + 2000); // a stream's next tick
        }
        assert_eq!(fired, 100);
        assert_eq!(w.len(), 100);
        assert_eq!(w.next_wakeup(), Some(2050));
        assert_eq!(drain(&mut w, 2049).len(), 0);
        assert_eq!(drain(&mut w, 2050).len(), 100);
    }

    #[test]
    fn next_wakeup_is_a_lower_bound() {
        let mut w = TimerWheel::new(0);
        assert_eq!(w.next_wakeup(), None);
        w.arm(9, 1234);
        assert_eq!(w.next_wakeup(), Some(1234));
        w.arm(8, 77);
        assert_eq!(w.next_wakeup(), Some(77));
        w.cancel(8);
        // The cancelled slot may still be reported; never a time after the real deadline.
        assert!(w.next_wakeup().unwrap() <= 1234);
        assert_eq!(drain(&mut w, 1233), Vec::<usize>::new());
        assert_eq!(w.next_wakeup(), Some(1234));
        // Far future: the wake-up is at most one rotation ahead, then it is re-found.
        w.arm(5, 1_000_000);
        assert!(w.next_wakeup().unwrap() <= 1234 + SLOTS as u64);
    }

    /// Against a naive model with synthetic time: random arms, cancels and advances.
    #[test]
    fn matches_a_naive_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut w = TimerWheel::new(0);
        let mut model: Vec<Option<u64>> = vec![None; 64];
        let mut now = 0u64;
        for _ in 0..20_000 {
            match rnd(4) {
                0 | 1 => {
                    let k = rnd(64) as usize;
                    let d = now + rnd(12_000);
                    w.arm(k, d);
                    model[k] = Some(d);
                }
                2 => {
                    let k = rnd(64) as usize;
                    w.cancel(k);
                    model[k] = None;
                }
                _ => {
                    if let Some(wake) = w.next_wakeup() {
                        let truth = model.iter().flatten().min().copied().unwrap();
                        assert!(
                            wake <= truth.max(now),
                            "wakeup {wake} after deadline {truth}"
                        );
                    }
                    now += rnd(3000);
                    let got = drain(&mut w, now);
                    let mut want: Vec<usize> = (0..64)
                        .filter(|&k| model[k].is_some_and(|d| d <= now))
                        .collect();
                    want.sort();
                    for &k in &want {
                        model[k] = None;
                    }
                    assert_eq!(got, want, "at {now}");
                }
            }
            assert_eq!(w.len(), model.iter().flatten().count());
        }
    }
}
