//! Cost budgets as components: [`BudgetCheck`].

use rampart_rate_limit::budget::BudgetHandle;

use crate::{
    component::{BoxFuture, Component},
    status::ComponentHealth,
};

/// One cost budget's health, from its [`BudgetHandle`]:
///
/// | spent in the current period | status |
/// |---|---|
/// | under the threshold (80 % by default) | healthy |
/// | at or over it | degraded: calls will soon be refused |
/// | the whole budget | degraded: calls are refused until the period ends |
///
/// Never unhealthy: a spent budget refuses the calls that cost, the instance still serves the
/// rest. Details: `spent`, `total`, `percent`, `resets_in_s`, `rejected_total`.
#[derive(Debug)]
pub struct BudgetCheck {
    handle: BudgetHandle,
    threshold: u8,
}

impl BudgetCheck {
    /// A check of the budget behind `handle`, degraded from 80 % spent.
    pub fn new(handle: BudgetHandle) -> Self {
        Self {
            handle,
            threshold: 80,
        }
    }

    /// Degraded from `percent` spent (clamped to 1–100).
    pub fn threshold(mut self, percent: u8) -> Self {
        self.threshold = percent.clamp(1, 100);
        self
    }
}

impl Component for BudgetCheck {
    fn kind(&self) -> &'static str {
        "budget"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let s = self.handle.stats();
        let percent = (u128::from(s.spent) * 100 / u128::from(s.total.max(1))) as u64;
        let resets_in = s
            .resets_at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let health = if s.spent >= s.total {
            ComponentHealth::degraded(format!(
                "budget spent ({}/{}): calls refused until the period ends",
                s.spent, s.total
            ))
        } else if percent >= u64::from(self.threshold) {
            ComponentHealth::degraded(format!("{percent} % of the budget spent"))
        } else {
            ComponentHealth::healthy()
        };
        let health = health
            .detail("spent", s.spent)
            .detail("total", s.total)
            .detail("percent", percent)
            .detail("resets_in_s", resets_in.as_secs())
            .detail("rejected_total", s.rejected);
        Box::pin(std::future::ready(health))
    }
}

#[cfg(test)]
mod tests {
    use rampart_rate_limit::budget::{Budget, BudgetLayer, Period};
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;
    use crate::status::Status;

    #[tokio::test]
    async fn a_budget_is_degraded_near_exhaustion_and_when_spent() {
        let layer = BudgetLayer::new(Budget::new(10, Period::day())).unwrap();
        let check = BudgetCheck::new(layer.handle());
        let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
        assert_eq!(check.check().await.status, Status::Healthy);
        for _ in 0..8 {
            svc.clone().oneshot(()).await.unwrap();
        }
        let health = check.check().await;
        assert_eq!(health.status, Status::Degraded);
        assert_eq!(health.reason.as_deref(), Some("80 % of the budget spent"));
        for _ in 0..2 {
            svc.clone().oneshot(()).await.unwrap();
        }
        assert!(svc.oneshot(()).await.is_err());
        let health = check.check().await;
        assert_eq!(health.status, Status::Degraded);
    }
}
