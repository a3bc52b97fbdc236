//! Changing capacity and reservations at run time, checked against each other.

use super::*;

impl Core {
    /// Sets the total capacity. Calls in flight keep their permits; a smaller capacity applies
    /// to calls admitted from now on, a larger one admits waiters at once.
    pub(crate) fn set_capacity(&self, capacity: u32) -> Result<(), ConfigError> {
        if self.classes.len() == 1 {
            // Without classes, the one reservation is the capacity.
            let name = self.classes[0].name.clone();
            return self.set_reserved(&name, capacity);
        }
        let _g = lock(&self.resize);
        let reserved = self.total_reserved();
        self.check_capacity(u64::from(capacity), reserved, capacity)?;
        self.capacity.store(capacity, Ordering::SeqCst);
        tracing::info!(target: "rampart::bulkhead", bulkhead = %self.name, capacity, "bulkhead resized");
        self.dispatch();
        Ok(())
    }

    /// Sets the reservation of the class `name`; the capacity grows or shrinks by the same
    /// amount.
    pub(crate) fn set_reserved(&self, name: &str, reserved: u32) -> Result<(), ConfigError> {
        let _g = lock(&self.resize);
        let Some(i) = self.classes.iter().position(|c| &*c.name == name) else {
            return Err(ConfigError::new(
                "bulkhead",
                "class",
                format!("no class is named `{name}`"),
            ));
        };
        let old = self.reserved[i].load(Ordering::Relaxed);
        let capacity =
            i64::from(self.capacity.load(Ordering::Relaxed)) + i64::from(reserved) - i64::from(old);
        let capacity = u64::try_from(capacity).unwrap_or(0);
        let total_reserved = self.total_reserved() + u64::from(reserved) - u64::from(old);
        self.check_capacity(capacity, total_reserved, reserved)?;
        // Grow the capacity before the reservation, shrink it after, so that the rules never
        // see a reservation the capacity does not cover.
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        if reserved >= old {
            self.capacity.store(capacity, Ordering::SeqCst);
            self.reserved[i].store(reserved, Ordering::SeqCst);
        } else {
            self.reserved[i].store(reserved, Ordering::SeqCst);
            self.capacity.store(capacity, Ordering::SeqCst);
        }
        tracing::info!(target: "rampart::bulkhead", bulkhead = %self.name, class = name, reserved, capacity, "bulkhead class resized");
        self.dispatch();
        Ok(())
    }

    pub(super) fn total_reserved(&self) -> u64 {
        self.reserved
            .iter()
            .map(|r| u64::from(r.load(Ordering::Relaxed)))
            .sum()
    }

    pub(super) fn check_capacity(
        &self,
        capacity: u64,
        reserved: u64,
        got: u32,
    ) -> Result<(), ConfigError> {
        let limit = max_capacity(self.classes.len());
        if capacity == 0 || capacity < reserved || capacity > limit {
            return Err(ConfigError::new(
                "bulkhead",
                "capacity",
                format!(
                    "must be in {}..={limit} (at least the sum of the reservations), got {got} giving a capacity of {capacity}",
                    reserved.max(1)
                ),
            ));
        }
        Ok(())
    }
}
