//! The alarms: the end of the open time, and the current time bucket kept without reading
//! the clock on every call.

use super::*;

/// How much earlier than the exact moment the alarms go off: more than tokio's millisecond of
/// rounding. Calls in that last stretch read the clock, so nothing is decided early.
pub(super) const TIMER_LEAD: Duration = Duration::from_millis(5);

/// The packing of [`Core::tick`]: bit 63 says the bucket is valid, bits 48..63 count the
/// alarms that went off (so an arming that raced with one is not trusted), bits 0..48 hold the
/// bucket number.
pub(super) struct TickWord;

impl TickWord {
    const VALID: u64 = 1 << 63;
    const SEQ_SHIFT: u32 = 48;
    const BUCKET: u64 = (1 << 48) - 1;

    #[inline]
    pub(super) const fn is_valid(word: u64) -> bool {
        word & Self::VALID != 0
    }

    #[inline]
    pub(super) const fn bucket(word: u64) -> u64 {
        word & Self::BUCKET
    }

    pub(super) const fn valid(seen: u64, bucket: u64) -> u64 {
        Self::VALID | (seen & !Self::VALID & !Self::BUCKET) | (bucket & Self::BUCKET)
    }

    pub(super) fn invalidate(tick: &AtomicU64) {
        let _ = tick.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let seq = ((w >> Self::SEQ_SHIFT) + 1) & 0x7fff;
            Some((seq << Self::SEQ_SHIFT) | (w & Self::BUCKET))
        });
    }
}

impl Core {
    /// Arms the alarms for the end of the open state `generation`: with tokio's clock, an
    /// alarm a little before the end sets `elapsed_gen`, so rejections need no clock read (calls
    /// after it check the clock exactly); with `half_open_on_timer`, a task makes the move.
    pub(super) fn arm_open_timer(self: &Arc<Self>, generation: u64, d: Duration) {
        if self.timed {
            // Transitions are emitted outside the machine lock, so two of them may arm at once,
            // out of order: the lock keeps the newest.
            let mut arming = lock(&self.arming);
            let newer_armed = arming.is_some_and(|newest| newest > generation);
            if !newer_armed {
                *arming = Some(generation);
                let early = self
                    .clock
                    .now()
                    .checked_add(d.saturating_sub(TIMER_LEAD.min(d / 2)));
                let weak = Arc::downgrade(self);
                // Not trusted until armed: a rejection meanwhile reads the clock.
                self.armed_gen.store(u64::MAX, Ordering::Release);
                let armed = early.is_some_and(|early| {
                    self.open_alarm.arm(early, move || {
                        if let Some(core) = weak.upgrade() {
                            core.elapsed_gen.store(generation, Ordering::Release);
                        }
                    })
                });
                if armed {
                    self.armed_gen.store(generation, Ordering::Release);
                }
            }
        }
        if self.cfg.half_open_on_timer {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let weak = Arc::downgrade(self);
            rt.spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(core) = weak.upgrade() {
                    core.timer_fired(generation);
                }
            });
        }
    }

    /// The current bucket from the clock; with tokio's clock also arms `tick_alarm` for a
    /// little before the bucket ends and marks the bucket valid until then, so the calls in
    /// between read no clock.
    #[cold]
    pub(super) fn refresh_tick(self: &Arc<Self>, seen: u64, now: Option<Instant>) -> u64 {
        let now = now.unwrap_or_else(|| self.clock.now());
        let n = self.nanos(now);
        let bucket = n / self.bucket_nanos;
        if !self.timed {
            return bucket;
        }
        let lead = u64::try_from(TIMER_LEAD.as_nanos())
            .unwrap_or(u64::MAX)
            .min(self.bucket_nanos / 2);
        let end = (bucket + 1)
            .saturating_mul(self.bucket_nanos)
            .saturating_sub(lead);
        if end <= n {
            // In the last moments of the bucket: keep reading the clock until it is over.
            return bucket;
        }
        let weak = Arc::downgrade(self);
        let armed = self
            .tick_alarm
            .arm(self.epoch + Duration::from_nanos(end), move || {
                if let Some(core) = weak.upgrade() {
                    TickWord::invalidate(&core.tick);
                }
            });
        if armed {
            // Only if no alarm went off since `seen`: otherwise the next call tries again.
            let _ = self.tick.compare_exchange(
                seen,
                TickWord::valid(seen, bucket),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        bucket
    }

    pub(super) fn timer_fired(self: &Arc<Self>, generation: u64) {
        let t = {
            let mut m = lock(&self.machine);
            if m.generation != generation
                || m.state != State::Open
                || self.probe_held_elsewhere().is_some()
            {
                return;
            }
            let now = self.clock.now();
            self.transition(&mut m, State::HalfOpen, Reason::OpenTimeElapsed, now)
        };
        self.emit(t);
    }
}
