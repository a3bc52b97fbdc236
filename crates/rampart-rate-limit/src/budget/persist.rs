//! A budget kept in a [`BudgetStore`]: loaded once when the layer connects, saved from a
//! background task when it changed.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use super::{
    core::BudgetCore,
    store::{BudgetStore, BudgetStoreError},
};

/// Takes up what `store` kept for the budget.
pub(crate) async fn load(
    core: &BudgetCore,
    store: &dyn BudgetStore,
) -> Result<(), BudgetStoreError> {
    if let Some(kept) = store.load(&core.name).await? {
        let taken = core.restore(&kept);
        tracing::info!(
            target: "rampart::budget",
            name = %core.name, store = %store.describe(), taken, spent = kept.spent,
            "budget loaded from its store"
        );
    }
    Ok(())
}

/// Saves the budget's spending every `every` when it changed, until the budget is dropped.
pub(crate) fn spawn_saver(core: Weak<BudgetCore>, store: Arc<dyn BudgetStore>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else {
                return;
            };
            if let Some(snapshot) = core.snapshot_if_changed()
                && let Err(e) = store.save(&core.name, &snapshot).await
            {
                core.unsaved();
                failed(&core, &e);
            }
        }
    });
}

/// Saves the spending now.
pub(crate) async fn flush(core: &BudgetCore) -> Result<(), BudgetStoreError> {
    let Some(store) = &core.store else {
        return Ok(());
    };
    core.snapshot_if_changed();
    let snapshot = core.snapshot();
    store.save(&core.name, &snapshot).await.inspect_err(|e| {
        core.unsaved();
        failed(core, e);
    })
}

fn failed(core: &BudgetCore, e: &BudgetStoreError) {
    tracing::warn!(
        target: "rampart::budget",
        name = %core.name, error = %e,
        "budget not saved to its store; tried again at the next interval"
    );
    metrics::counter!(
        "rampart_budget_store_errors_total",
        rampart_core::registry::INSTANCE_LABEL => core.name.to_string()
    )
    .increment(1);
}
