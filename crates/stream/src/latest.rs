//! A queue of one that keeps the newest item: what a live stream needs
//! between its capture and a reader slower than the camera.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Holds at most one item; putting one replaces (drops) the one waiting.
pub struct Latest<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    item: Option<T>,
    closed: bool,
}

/// What [`Latest::take`] found.
pub enum Taken<T> {
    /// The newest item.
    Item(T),
    /// Nothing arrived in time.
    Empty,
    /// Closed, and nothing left.
    Closed,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest {
            state: Mutex::new(State {
                item: None,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Latest<T> {
    /// Puts `item` in, returning the stale one it replaced.
    pub fn put(&self, item: T) -> Option<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stale = state.item.replace(item);
        self.ready.notify_one();
        stale
    }

    /// No more items will come; a reader gets what is left, then `Closed`.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// Waits up to `wait` for an item.
    pub fn take(&self, wait: Duration) -> Taken<T> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, wait, |s| s.item.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        match state.item.take() {
            Some(item) => Taken::Item(item),
            None if state.closed => Taken::Closed,
            None => Taken::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_item_wins_and_close_drains() {
        let slot = Latest::default();
        assert!(slot.put(1).is_none());
        assert_eq!(slot.put(2), Some(1));
        slot.close();
        assert!(matches!(slot.take(Duration::ZERO), Taken::Item(2)));
        assert!(matches!(slot.take(Duration::ZERO), Taken::Closed));
    }

    #[test]
    fn a_reader_waits_for_the_writer() {
        let slot = Latest::default();
        assert!(matches!(
            slot.take(Duration::from_millis(1)),
            Taken::<u8>::Empty
        ));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                slot.put(7u8);
            });
            assert!(matches!(slot.take(Duration::from_secs(30)), Taken::Item(7)));
        });
    }
}
