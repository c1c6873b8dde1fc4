//! Admin requests checked against what exists: scopes against the
//! [`ScopeCatalog`](super::ScopeCatalog), plans against the configured
//! plans, lifetimes against the calendar.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::scope::Scope;

use super::error::ServiceError;
use super::state::KeyService;

impl KeyService {
    pub(super) fn parse_scopes(&self, scopes: &[String]) -> Result<Vec<Scope>, ServiceError> {
        let catalog = self.inner.catalog.load();
        let mut out = Vec::with_capacity(scopes.len());
        for s in scopes {
            let scope: Scope = s.parse()?;
            if !catalog.check(&scope) {
                return Err(ServiceError::UnknownScope(s.clone()));
            }
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(out)
    }

    pub(super) fn check_plan(&self, plan: &Option<String>) -> Result<(), ServiceError> {
        if let Some(p) = plan {
            if !self.inner.plans.load().contains_key(p) {
                return Err(ServiceError::UnknownPlan(p.clone()));
            }
        }
        Ok(())
    }

    pub(super) fn expiry_after(
        &self,
        now: DateTime<Utc>,
        d: Duration,
        field: &'static str,
    ) -> Result<DateTime<Utc>, ServiceError> {
        if d.is_zero() {
            return Err(ServiceError::InvalidField {
                field,
                message: "must be greater than zero".into(),
            });
        }
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| ServiceError::InvalidField {
                field,
                message: "is too far in the future".into(),
            })
    }
}
