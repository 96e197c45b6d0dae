//! The record kinds Edge Sync copies, and the two kinds of run.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Provider;

/// A provider resource with its own table and cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Keap `GET /rest/v2/contacts`.
    KeapContacts,
    /// Keap `GET /rest/v2/opportunities`.
    KeapOpportunities,
    /// Keap `GET /rest/v2/orders`.
    KeapOrders,
    /// Keap `GET /rest/v2/tasks`.
    KeapTasks,
    /// Shopify GraphQL `products`.
    ShopifyProducts,
    /// Shopify GraphQL `orders`.
    ShopifyOrders,
    /// Shopify GraphQL `customers`.
    ShopifyCustomers,
    /// Shopify GraphQL `inventoryItems` → one record per (item, location).
    ShopifyInventoryLevels,
}

impl Resource {
    /// Every resource, Keap first, in a stable order.
    pub const ALL: [Resource; 8] = [
        Resource::KeapContacts,
        Resource::KeapOpportunities,
        Resource::KeapOrders,
        Resource::KeapTasks,
        Resource::ShopifyProducts,
        Resource::ShopifyOrders,
        Resource::ShopifyCustomers,
        Resource::ShopifyInventoryLevels,
    ];

    const KEAP: [Resource; 4] = [
        Resource::KeapContacts,
        Resource::KeapOpportunities,
        Resource::KeapOrders,
        Resource::KeapTasks,
    ];

    const SHOPIFY: [Resource; 4] = [
        Resource::ShopifyProducts,
        Resource::ShopifyOrders,
        Resource::ShopifyCustomers,
        Resource::ShopifyInventoryLevels,
    ];

    /// The provider it belongs to.
    pub fn provider(self) -> Provider {
        match self {
            Resource::KeapContacts
            | Resource::KeapOpportunities
            | Resource::KeapOrders
            | Resource::KeapTasks => Provider::Keap,
            Resource::ShopifyProducts
            | Resource::ShopifyOrders
            | Resource::ShopifyCustomers
            | Resource::ShopifyInventoryLevels => Provider::Shopify,
        }
    }

    /// Its name within the provider, as in routes and `sync_runs.resource` (`contacts`,
    /// `orders`, `inventory_levels`, ...). Unique only together with the provider.
    pub fn name(self) -> &'static str {
        match self {
            Resource::KeapContacts => "contacts",
            Resource::KeapOpportunities => "opportunities",
            Resource::KeapOrders | Resource::ShopifyOrders => "orders",
            Resource::KeapTasks => "tasks",
            Resource::ShopifyProducts => "products",
            Resource::ShopifyCustomers => "customers",
            Resource::ShopifyInventoryLevels => "inventory_levels",
        }
    }

    /// The resources of `provider`.
    pub fn for_provider(provider: Provider) -> &'static [Resource] {
        match provider {
            Provider::Keap => &Self::KEAP,
            Provider::Shopify => &Self::SHOPIFY,
        }
    }

    /// The resource of `provider` called `name` (ASCII case and surrounding space ignored).
    pub fn parse(provider: Provider, name: &str) -> Option<Resource> {
        let name = name.trim();
        Self::for_provider(provider)
            .iter()
            .copied()
            .find(|r| r.name().eq_ignore_ascii_case(name))
    }

    /// Its table in the `public` schema (migration `20261121000300_record_tables.sql`).
    pub fn table(self) -> &'static str {
        match self {
            Resource::KeapContacts => "keap_contacts",
            Resource::KeapOpportunities => "keap_opportunities",
            Resource::KeapOrders => "keap_orders",
            Resource::KeapTasks => "keap_tasks",
            Resource::ShopifyProducts => "shopify_products",
            Resource::ShopifyOrders => "shopify_orders",
            Resource::ShopifyCustomers => "shopify_customers",
            Resource::ShopifyInventoryLevels => "shopify_inventory_levels",
        }
    }

    /// Whether an incremental walk returns records oldest first, so the cursor may be
    /// persisted after every committed page. Keap opportunities are walked newest first
    /// (no update filter exists) and Shopify inventory items cannot be sorted by update
    /// time, so those persist their cursor only when the run is done.
    pub fn ascending_incremental(self) -> bool {
        !matches!(
            self,
            Resource::KeapOpportunities | Resource::ShopifyInventoryLevels
        )
    }
}

impl fmt::Display for Resource {
    /// `provider/name`, e.g. `keap/contacts`, unique across providers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider(), self.name())
    }
}

/// What a run walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Everything from the beginning, in a stable order; afterwards, rows the run did not
    /// see are soft-deleted.
    Full,
    /// What changed since the resource's cursor (minus the overlap).
    Incremental,
}

impl SyncMode {
    /// `full` or `incremental`, as in `sync_runs.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tables_and_providers() {
        let names: Vec<String> = Resource::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "keap/contacts",
                "keap/opportunities",
                "keap/orders",
                "keap/tasks",
                "shopify/products",
                "shopify/orders",
                "shopify/customers",
                "shopify/inventory_levels"
            ]
        );
        for resource in Resource::ALL {
            assert!(Resource::for_provider(resource.provider()).contains(&resource));
            assert_eq!(
                Resource::parse(resource.provider(), resource.name()),
                Some(resource)
            );
            assert!(resource
                .table()
                .starts_with(&format!("{}_", resource.provider())));
            let json = serde_json::to_string(&resource).expect("serialisable");
            assert_eq!(
                serde_json::from_str::<Resource>(&json).expect("parses"),
                resource
            );
        }
        assert_eq!(
            Resource::parse(Provider::Shopify, " Orders "),
            Some(Resource::ShopifyOrders)
        );
        assert_eq!(
            Resource::parse(Provider::Keap, "orders"),
            Some(Resource::KeapOrders)
        );
        assert_eq!(Resource::parse(Provider::Keap, "products"), None);
        assert_eq!(
            serde_json::to_string(&Resource::ShopifyInventoryLevels).expect("serialisable"),
            "\"shopify_inventory_levels\""
        );
        assert_eq!(
            serde_json::to_string(&SyncMode::Incremental).expect("serialisable"),
            "\"incremental\""
        );
        assert_eq!(SyncMode::Full.as_str(), "full");
    }
}
