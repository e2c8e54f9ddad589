//! Turns: at most one call at a time per key (a channel's templates, a conversation's older
//! messages), from a fixed set of locks shared by all keys, so the memory they take is bounded
//! however many channels there are. Keys that share a lock merely wait for each other.

use std::hash::{Hash, Hasher};

/// How many locks a set of turns has.
pub const TURNS: usize = 64;

/// A set of turns.
pub type Turns = [tokio::sync::Mutex<()>; TURNS];

/// A new set of turns, for a `static`.
pub const fn new_turns() -> Turns {
    [const { tokio::sync::Mutex::const_new(()) }; TURNS]
}

/// Waits for `key`'s turn in `turns`; the turn lasts while the guard lives.
pub async fn take_turn<'a>(turns: &'a Turns, key: &str) -> tokio::sync::MutexGuard<'a, ()> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let index = usize::try_from(hasher.finish() % TURNS as u64).unwrap_or(0);
    turns[index].lock().await
}
