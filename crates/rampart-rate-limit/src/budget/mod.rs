//! Cost budgets: so many units per period (500 credits a day, from local midnight), spent by
//! each call's cost, which may be known only after the answer: an estimate is reserved before
//! the call and settled to the actual cost after it.
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::rejection::LimitReason;
//! use rampart_rate_limit::budget::{Budget, BudgetLayer, Period, settle_fn};
//! use rampart_rate_limit::cost_fn;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 500 credits a day; a call is estimated at 10 and reports what it really cost.
//! let budget = BudgetLayer::new(Budget::new(500, Period::day()).name("llm").thresholds([80, 100]))
//!     .unwrap()
//!     .estimate(cost_fn(|_: &&str| 10))
//!     .settle(settle_fn(|res: Result<&u64, &std::io::Error>, estimate| res.copied().unwrap_or(estimate)));
//! let api = budget.layer(service_fn(|_prompt: &str| async { Ok::<u64, std::io::Error>(250) }));
//!
//! api.clone().oneshot("a").await.unwrap(); // reserved 10, settled at 250
//! api.clone().oneshot("b").await.unwrap(); // 500 spent: the whole budget
//! let refused = api.oneshot("c").await.unwrap_err(); // 500 + 10 > 500
//! assert_eq!(refused.rejection().unwrap().reason(), LimitReason::OverLimit);
//! assert_eq!(budget.handle().stats().spent, 500);
//! # }
//! ```
//!
//! # Periods and the clock
//!
//! A [`Period`] starts over at calendar boundaries (hour, day, Monday, the first of the month)
//! in a fixed UTC offset, or every fixed length from the Unix epoch; or it is a rolling window
//! ([`Period::rolling`]) that what was spent leaves as it ages, in 60 steps (a refusal then
//! says when enough will have left). The wall clock is the
//! system time when the budget was made plus tokio's time since, so paused-time tests drive it;
//! the cost of that is that a wall-clock step (an NTP correction) is not followed until the
//! process restarts.
//!
//! # Reserve, then settle
//!
//! Before a call its [`estimate`](BudgetLayer::estimate) is reserved; a call the budget cannot
//! cover is refused ([`RateLimited`](rampart_core::rejection::RateLimited) by
//! [`LimitedBy::Budget`](rampart_core::rejection::LimitedBy::Budget), `retry_after` the time
//! until the period ends; an estimate over the whole budget is
//! [`CostTooHigh`](rampart_core::rejection::LimitReason::CostTooHigh)). When the answer comes,
//! [`settle`](BudgetLayer::settle) says what it really cost (a response header:
//! [`CostHeader`]); the difference is spent or given back. The actual cost may take the
//! period over its budget (the work was done): the next calls are refused until it ends. A
//! call dropped before its answer keeps its estimate spent (the dependency may have done, and
//! billed, the work); a settlement that arrives after its period ended changes nothing.
//!
//! # Alerts
//!
//! [`thresholds`](Budget::thresholds) (80 % and 100 % by default) each fire once per period
//! (in a rolling window: again once the spending has fallen under it and risen back), to the
//! [`on_alert`](Budget::on_alert) hook and as a `warn` event. The health check is
//! `rampart_health::BudgetCheck`.
//!
//! # Kept across restarts
//!
//! With a [`store`](Budget::store) ([`MemoryBudgetStore`], `SqliteBudgetStore` with the
//! `sqlite` feature, `rampart_redis::RedisBudgetStore`), [`BudgetLayer::connect`] takes up what
//! the store kept for the budget's name in the current period, and the spending is saved from
//! the background when it changed, at most every [`save_every`](Budget::save_every) (1 s):
//!
//! - a crash forgets at most what was spent in the last interval (a restart may let that much
//!   more through); [`BudgetHandle::flush`] at shutdown saves the rest;
//! - the store keeps one snapshot per name: two processes saving one name overwrite each
//!   other's, so give each replica's budget its own name (one budget shared by many replicas
//!   is a distributed limit, which this is not);
//! - a store that cannot be read makes `connect` fail (the caller decides whether to start
//!   without it); a save that fails is logged, counted and tried again, and the budget goes
//!   on deciding in memory.

mod config;
mod core;
mod future;
mod handle;
mod layer;
mod period;
mod persist;
mod service;
mod settle;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

#[cfg(feature = "http")]
pub use self::settle::CostHeader;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteBudgetStore;
pub use self::{
    config::Budget,
    core::{BudgetAlert, BudgetStats},
    future::BudgetFuture,
    handle::BudgetHandle,
    layer::BudgetLayer,
    period::Period,
    service::BudgetService,
    settle::{KeepEstimate, Settle, SettleFn, settle_fn},
    store::{
        BudgetSnapshot, BudgetStore, BudgetStoreError, BudgetStoreErrorKind, MemoryBudgetStore,
    },
};
