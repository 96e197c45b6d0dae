//! The rules of a source connection (`POST /realtime-sync/enable/{connection_id}`) and the
//! connections that receive its changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::connection::Provider;

/// What a source connection propagates (JSON names as the API takes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncRules {
    /// The switch: nothing propagates while it is off.
    pub enable_cross_platform_sync: bool,
    /// Products created at the source are created at the targets.
    pub propagate_creates: bool,
    /// Product updates are written to the targets.
    pub propagate_updates: bool,
    /// Product deletions delete the targets' products.
    pub propagate_deletes: bool,
    /// Inventory changes are applied to the targets' levels.
    pub propagate_inventory: bool,
}

/// A connection that receives the source's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The target connection.
    pub connection_id: String,
    /// Its platform: a Shopify shop gets products and inventory, Keap gets customers and
    /// orders.
    pub provider: Provider,
    /// Source location id → target location id (Shopify → Shopify inventory); a level at
    /// an unmapped location is not propagated.
    #[serde(default)]
    pub location_map: BTreeMap<u64, u64>,
}

/// A source connection's propagation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationConfig {
    /// The rules.
    #[serde(flatten)]
    pub rules: SyncRules,
    /// Who receives the changes.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Why a configuration cannot be used (400 to the operator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// Only Shopify shops are sources.
    #[error("only Shopify connections propagate changes (this one is {0})")]
    UnsupportedSource(Provider),
    /// A connection cannot be its own target.
    #[error("a connection cannot propagate to itself ({0})")]
    SelfTarget(String),
    /// The same target twice.
    #[error("target {0} is listed twice")]
    DuplicateTarget(String),
    /// Sync enabled without anyone to receive it.
    #[error("enableCrossPlatformSync needs at least one target")]
    NoTargets,
}

impl PropagationConfig {
    /// This configuration if `source` (id and provider) can use it.
    pub fn validated(self, source_id: &str, source: Provider) -> Result<Self, RulesError> {
        if source != Provider::Shopify {
            return Err(RulesError::UnsupportedSource(source));
        }
        let mut seen = BTreeSet::new();
        for target in &self.targets {
            if target.connection_id == source_id {
                return Err(RulesError::SelfTarget(target.connection_id.clone()));
            }
            if !seen.insert(target.connection_id.as_str()) {
                return Err(RulesError::DuplicateTarget(target.connection_id.clone()));
            }
        }
        if self.rules.enable_cross_platform_sync && self.targets.is_empty() {
            return Err(RulesError::NoTargets);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shop(id: &str) -> Target {
        Target {
            connection_id: id.to_owned(),
            provider: Provider::Shopify,
            location_map: BTreeMap::new(),
        }
    }

    #[test]
    fn rules_read_the_api_names_and_default_to_off() {
        let config: PropagationConfig = serde_json::from_value(json!({
            "enableCrossPlatformSync": true,
            "propagateCreates": true,
            "propagateInventory": true,
            "targets": [{"connection_id": "shopify_b", "provider": "shopify",
                         "location_map": {"11": 21}}]
        }))
        .expect("config");
        assert!(config.rules.enable_cross_platform_sync);
        assert!(config.rules.propagate_creates && config.rules.propagate_inventory);
        assert!(!config.rules.propagate_updates && !config.rules.propagate_deletes);
        assert_eq!(config.targets[0].location_map.get(&11), Some(&21));
        let written = serde_json::to_value(&config).expect("json");
        assert_eq!(written["propagateDeletes"], false);
        assert_eq!(
            serde_json::from_value::<PropagationConfig>(json!({})).expect("empty"),
            PropagationConfig::default()
        );
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = PropagationConfig {
            rules: SyncRules {
                enable_cross_platform_sync: true,
                ..SyncRules::default()
            },
            targets: vec![shop("b")],
        };
        assert!(ok.clone().validated("a", Provider::Shopify).is_ok());
        assert_eq!(
            ok.clone().validated("a", Provider::Keap),
            Err(RulesError::UnsupportedSource(Provider::Keap))
        );
        assert_eq!(
            ok.clone().validated("b", Provider::Shopify),
            Err(RulesError::SelfTarget("b".into()))
        );
        let twice = PropagationConfig {
            targets: vec![shop("b"), shop("b")],
            ..ok.clone()
        };
        assert_eq!(
            twice.validated("a", Provider::Shopify),
            Err(RulesError::DuplicateTarget("b".into()))
        );
        let nobody = PropagationConfig {
            targets: Vec::new(),
            ..ok
        };
        assert_eq!(
            nobody.validated("a", Provider::Shopify),
            Err(RulesError::NoTargets)
        );
    }
}
