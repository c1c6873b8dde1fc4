//! [`ScopeCatalog`]: the routes, tags and custom scopes that exist, for
//! checking the scopes of a key being issued.

use std::collections::HashSet;

use crate::config::RouteAuthConfig;
use crate::scope::Scope;

/// Names of what exists, for checking scopes at key creation. Empty sets
/// mean "not known": any well-formed scope of that kind is accepted.
#[derive(Debug, Clone, Default)]
pub struct ScopeCatalog {
    /// Route names.
    pub routes: HashSet<String>,
    /// Route tags.
    pub tags: HashSet<String>,
    /// Custom scopes (from `keys.custom_scopes` and routes' `required_scopes`).
    pub custom: HashSet<String>,
}

impl ScopeCatalog {
    /// Builds a catalog from the configured routes.
    pub fn from_routes<'a>(
        routes: impl IntoIterator<Item = (&'a str, Option<&'a RouteAuthConfig>)>,
    ) -> Self {
        let mut c = ScopeCatalog::default();
        for (name, auth) in routes {
            c.routes.insert(name.to_string());
            if let Some(a) = auth {
                c.tags.extend(a.tags.iter().cloned());
                c.custom.extend(a.required_scopes.iter().cloned());
            }
        }
        c
    }

    pub(super) fn check(&self, scope: &Scope) -> bool {
        match scope {
            Scope::All | Scope::Method(_) => true,
            Scope::Route(r) => self.routes.is_empty() || self.routes.contains(r),
            Scope::Tag(t) => self.tags.is_empty() || self.tags.contains(t),
            Scope::Custom(c) => self.custom.is_empty() || self.custom.contains(c),
        }
    }
}
