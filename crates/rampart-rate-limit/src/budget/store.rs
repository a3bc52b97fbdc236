//! [`BudgetStore`]: where a budget's spending is kept so that it survives a restart, and the
//! [`BudgetSnapshot`] it keeps.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use rampart_core::{
    BoxFuture,
    store::{ErrorKind, StoreError},
    sync::lock,
};

/// The kinds of failure of a [`BudgetStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetStoreErrorKind {
    /// The budget's configuration is not valid (the cause names the field).
    Config,
    /// The store did not answer, or refused the read or write.
    Unavailable,
    /// What the store holds for the budget is not a snapshot this version reads.
    Corrupt,
}

impl ErrorKind for BudgetStoreErrorKind {
    const STORE: &'static str = "budget";

    fn describe(self) -> &'static str {
        match self {
            BudgetStoreErrorKind::Config => "configuration",
            BudgetStoreErrorKind::Unavailable => "unavailable",
            BudgetStoreErrorKind::Corrupt => "corrupt snapshot",
        }
    }
}

/// A [`BudgetStore`] failed (`budget store <store>: <kind>: <cause>`).
pub type BudgetStoreError = StoreError<BudgetStoreErrorKind>;

/// What a budget spent, as a store keeps it: the period it was spent in (its bounds, so that a
/// budget whose period was reconfigured starts fresh) and, for a rolling window, the spending
/// of each slot still in it.
///
/// Its text form ([`encode`](Self::encode), [`decode`](Self::decode)) is one line,
/// `v1 <start> <end> <slot seconds> <spent> <fired> [<slot>:<spent>,…]`, so a store only keeps
/// a short string under the budget's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// The start of the period it was taken in, in Unix seconds (for a rolling window: of the
    /// current slot).
    pub start: i64,
    /// The end of that period (slot), in Unix seconds.
    pub end: i64,
    /// A rolling window's slot length in seconds; 0 for a calendar or fixed period.
    pub slot_secs: i64,
    /// Units spent (settled, and reserved by calls then in flight) in the period.
    pub spent: u64,
    /// The thresholds already fired in the period (bit i for the i-th threshold).
    pub fired: u32,
    /// A rolling window's slots: (slot number, units spent in it), oldest first.
    pub slots: Vec<(i64, u64)>,
}

impl BudgetSnapshot {
    /// The snapshot's one-line text form.
    pub fn encode(&self) -> String {
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|(slot, spent)| format!("{slot}:{spent}"))
            .collect();
        format!(
            "v1 {} {} {} {} {} {}",
            self.start,
            self.end,
            self.slot_secs,
            self.spent,
            self.fired,
            slots.join(",")
        )
        .trim_end()
        .to_owned()
    }

    /// Reads what the store `store` kept under `key` back: the snapshot, or a
    /// [`Corrupt`](BudgetStoreErrorKind::Corrupt) error naming the store and the key. For
    /// stores, which keep the text form.
    pub fn from_stored(store: &str, key: &str, text: &str) -> Result<Self, BudgetStoreError> {
        Self::decode(text).ok_or_else(|| {
            BudgetStoreError::new(store, BudgetStoreErrorKind::Corrupt)
                .with_source(format!("{key}: {text:?} is not a budget snapshot"))
        })
    }

    /// Reads [`encode`](Self::encode)'s text form back; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split_ascii_whitespace();
        if parts.next()? != "v1" {
            return None;
        }
        let start = parts.next()?.parse().ok()?;
        let end = parts.next()?.parse().ok()?;
        let slot_secs = parts.next()?.parse().ok()?;
        let spent = parts.next()?.parse().ok()?;
        let fired = parts.next()?.parse().ok()?;
        let slots = match parts.next() {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|pair| {
                    let (slot, spent) = pair.split_once(':')?;
                    Some((slot.parse().ok()?, spent.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?,
        };
        if parts.next().is_some() || end <= start {
            return None;
        }
        Some(Self {
            start,
            end,
            slot_secs,
            spent,
            fired,
            slots,
        })
    }
}

/// Where budgets' spending is kept across restarts, one [`BudgetSnapshot`] per budget name.
///
/// A [`BudgetLayer::connect`](super::BudgetLayer::connect)ed budget loads its snapshot once at
/// start and saves one after it changed, at most every
/// [`save_every`](super::Budget::save_every), from a background task (and on
/// [`BudgetHandle::flush`](super::BudgetHandle::flush)); no call waits on the store.
/// Implementations: [`MemoryBudgetStore`], `SqliteBudgetStore` (feature `sqlite`) and
/// `rampart_redis::RedisBudgetStore`.
pub trait BudgetStore: Send + Sync + fmt::Debug + 'static {
    /// The snapshot kept for `name`, if any.
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>>;

    /// Keeps `snapshot` for `name`, replacing what was kept.
    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>>;

    /// The store, for messages (never a password): `memory`, `sqlite:PATH`, `redis://HOST`.
    fn describe(&self) -> String;
}

impl<T: BudgetStore + ?Sized> BudgetStore for Arc<T> {
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>> {
        (**self).load(name)
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>> {
        (**self).save(name, snapshot)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A [`BudgetStore`] in memory: it outlives a budget (a rebuilt layer finds its spending), not
/// the process. For tests, and for budgets rebuilt on a configuration reload.
#[derive(Debug, Clone, Default)]
pub struct MemoryBudgetStore {
    kept: Arc<Mutex<HashMap<String, BudgetSnapshot>>>,
}

impl MemoryBudgetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BudgetStore for MemoryBudgetStore {
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>> {
        let kept = lock(&self.kept).get(name).cloned();
        Box::pin(async move { Ok(kept) })
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>> {
        lock(&self.kept).insert(name.to_owned(), snapshot.clone());
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_back() {
        let fixed = BudgetSnapshot {
            start: 1_700_000_000,
            end: 1_700_086_400,
            slot_secs: 0,
            spent: 420,
            fired: 1,
            slots: Vec::new(),
        };
        assert_eq!(
            fixed.encode(),
            "v1 1700000000 1700086400 0 420 1",
            "no trailing space without slots"
        );
        assert_eq!(BudgetSnapshot::decode(&fixed.encode()), Some(fixed));
        let rolling = BudgetSnapshot {
            start: 600,
            end: 660,
            slot_secs: 60,
            spent: 7,
            fired: 0,
            slots: vec![(9, 3), (10, 4)],
        };
        assert_eq!(BudgetSnapshot::decode(&rolling.encode()), Some(rolling));
    }

    #[test]
    fn what_is_not_a_snapshot_is_refused() {
        for text in [
            "",
            "v2 0 60 0 1 0",
            "v1 0 60 0",
            "v1 0 60 0 x 0",
            "v1 60 0 0 1 0",
            "v1 0 60 60 1 0 9:3,10",
            "v1 0 60 0 1 0 1:1 extra",
        ] {
            assert_eq!(BudgetSnapshot::decode(text), None, "{text:?}");
        }
    }
}
