//! The newest frames in memory, shared by every live subscriber: the writer puts each
//! event's frame here once, after its commit, and a subscriber that is caught up takes the
//! same bytes (a reference, not a copy) without reading the database. Anyone further
//! behind than this holds reads the rows, as before.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

/// Frames kept at most, and bytes of them (a commit frame is up to 2 MB; usually ~1 KB).
const MAX_FRAMES: usize = 256;
const MAX_BYTES: usize = 1024 * 1024;

#[derive(Default)]
pub struct Recent {
    inner: Mutex<Frames>,
}

#[derive(Default)]
struct Frames {
    /// (seq, frame) in ascending seq.
    list: VecDeque<(i64, Bytes)>,
    bytes: usize,
}

/// What [`Recent::after`] knows about the frames after a position.
#[derive(Debug, PartialEq)]
pub enum After {
    /// Every frame after it (none when caught up), as far as they go, up to the limit.
    Frames(Vec<(i64, Bytes)>),
    /// It lies before what is held: read the database.
    Older,
}

impl Recent {
    /// Adds the frames of a commit, after every frame already held.
    pub fn push(&self, seq: i64, frame: Bytes) {
        let Ok(mut f) = self.inner.lock() else {
            return;
        };
        if f.list.back().is_some_and(|(last, _)| *last >= seq) {
            // Out of order (cannot happen with one writer): start over rather than mislead.
            f.list.clear();
            f.bytes = 0;
        }
        f.bytes += frame.len();
        f.list.push_back((seq, frame));
        while f.list.len() > MAX_FRAMES || (f.bytes > MAX_BYTES && f.list.len() > 1) {
            if let Some((_, old)) = f.list.pop_front() {
                f.bytes -= old.len();
            }
        }
    }

    /// The frames after `pos`, at most `limit`, if every event after `pos` is held (the
    /// oldest held is `pos + 1` or earlier; seqs may skip, so nothing less proves it).
    pub fn after(&self, pos: i64, limit: usize) -> After {
        let Ok(f) = self.inner.lock() else {
            return After::Older;
        };
        match f.list.front() {
            Some((first, _)) if *first <= pos + 1 => {}
            _ => return After::Older,
        }
        let start = f.list.partition_point(|(s, _)| *s <= pos);
        After::Frames(f.list.range(start..).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn holds_the_newest_frames_and_says_when_a_position_is_older() {
        let r = Recent::default();
        assert_eq!(r.after(0, 10), After::Older);
        for seq in 1..=300 {
            r.push(seq, frame(10));
        }
        // 256 held: 45..=300.
        assert_eq!(r.after(43, 10), After::Older);
        let After::Frames(f) = r.after(44, 3) else {
            panic!("held")
        };
        assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), [45, 46, 47]);
        assert_eq!(r.after(300, 10), After::Frames(vec![]));
        // A gap in seqs (a restore moved them on): still one run, in order.
        r.push(1000, frame(10));
        let After::Frames(f) = r.after(299, 10) else {
            panic!("held")
        };
        assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), [300, 1000]);
        // Big frames push the old ones out by size, the newest always stays.
        r.push(1001, frame(MAX_BYTES));
        assert_eq!(
            r.after(1000, 10),
            After::Frames(vec![(1001, frame(MAX_BYTES))])
        );
        assert_eq!(r.after(999, 10), After::Older);
    }
}
