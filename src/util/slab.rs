//! A slab: values indexed by small integers that are reused once freed, so that `mio` tokens and
//! timer keys stay dense. Shared by the server's and `sse-load`'s loops.

/// Values at reusable indices. Insert and remove are O(1) and allocation-free once the slab
/// has grown to its peak.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` at a free index (the most recently freed one first) and returns it.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(k) => {
                self.entries[k] = Some(value);
                k
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Takes the value at `k` out, freeing the index; `None` if there was none.
    pub fn remove(&mut self, k: usize) -> Option<T> {
        let value = self.entries.get_mut(k)?.take()?;
        self.free.push(k);
        self.len -= 1;
        Some(value)
    }

    pub fn get(&self, k: usize) -> Option<&T> {
        self.entries.get(k)?.as_ref()
    }

    pub fn get_mut(&mut self, k: usize) -> Option<&mut T> {
        self.entries.get_mut(k)?.as_mut()
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indices in use, in order.
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.as_ref().map(|_| k))
    }

    /// The indices in use with their values, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(|(k, v)| v.as_mut().map(|v| (k, v)))
    }

    /// The indices in use with their values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// The values stored, in index order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_indices_are_reused_and_len_tracks_values() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        let c = s.insert('c');
        assert_eq!((a, b, c, s.len()), (0, 1, 2, 3));
        assert_eq!(s.remove(b), Some('b'));
        assert_eq!(s.remove(b), None, "a second remove finds nothing");
        assert_eq!(s.remove(99), None, "an index never used");
        assert_eq!(s.len(), 2);
        assert_eq!(s.insert('d'), 1, "the freed index comes back first");
        assert_eq!(s.get_mut(1), Some(&mut 'd'));
        assert_eq!(s.keys().collect::<Vec<_>>(), [0, 1, 2]);
        s.remove(0);
        s.remove(1);
        s.remove(2);
        assert!(s.is_empty());
        assert_eq!(s.values().count(), 0);
    }
}
