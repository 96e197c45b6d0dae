-- Tables the sync fills: one per provider resource. Every table has the same spine:
--   connection_id + provider_id   unique key (one row per record per connection)
--   typed key columns             what people filter and join on
--   raw                           the provider's record as received (jsonb)
--   source_updated_at             the provider's own update time (upserts never go backwards)
--   synced_at                     when we last wrote the row
--   deleted_at                    soft delete (provider delete signal, or gone after a full resync)

-- Keap (REST v2; ids are strings).
CREATE TABLE IF NOT EXISTS public.keap_contacts (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    given_name        text,
    family_name       text,
    email             text,
    company_name      text,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS keap_contacts_email_idx ON public.keap_contacts (lower(email));
CREATE INDEX IF NOT EXISTS keap_contacts_updated_idx ON public.keap_contacts (connection_id, source_updated_at);

CREATE TABLE IF NOT EXISTS public.keap_opportunities (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    title             text,
    contact_id        text,
    stage_name        text,
    projected_revenue numeric,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS keap_opportunities_updated_idx ON public.keap_opportunities (connection_id, source_updated_at);

CREATE TABLE IF NOT EXISTS public.keap_orders (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    contact_id        text,
    title             text,
    status            text,
    total             numeric,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS keap_orders_updated_idx ON public.keap_orders (connection_id, source_updated_at);

CREATE TABLE IF NOT EXISTS public.keap_tasks (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    title             text,
    contact_id        text,
    completed         boolean,
    due_at            timestamptz,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS keap_tasks_updated_idx ON public.keap_tasks (connection_id, source_updated_at);

-- Shopify (GraphQL Admin API; provider_id is the numeric id as text, ids exceed 2^53).
CREATE TABLE IF NOT EXISTS public.shopify_products (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    title             text,
    handle            text,
    status            text,
    vendor            text,
    product_type      text,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS shopify_products_updated_idx ON public.shopify_products (connection_id, source_updated_at);

CREATE TABLE IF NOT EXISTS public.shopify_orders (
    connection_id      text        NOT NULL,
    provider_id        text        NOT NULL,
    name               text,
    email              text,
    customer_id        text,
    financial_status   text,
    fulfillment_status text,
    total_price        numeric,
    currency           text,
    created_at_source  timestamptz,
    raw                jsonb       NOT NULL,
    source_updated_at  timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS shopify_orders_updated_idx ON public.shopify_orders (connection_id, source_updated_at);

CREATE TABLE IF NOT EXISTS public.shopify_customers (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    email             text,
    first_name        text,
    last_name         text,
    created_at_source timestamptz,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS shopify_customers_email_idx ON public.shopify_customers (lower(email));
CREATE INDEX IF NOT EXISTS shopify_customers_updated_idx ON public.shopify_customers (connection_id, source_updated_at);

-- provider_id is "<inventory_item_id>:<location_id>" (an inventory level has no id of its own).
CREATE TABLE IF NOT EXISTS public.shopify_inventory_levels (
    connection_id     text        NOT NULL,
    provider_id       text        NOT NULL,
    inventory_item_id text        NOT NULL,
    location_id       text        NOT NULL,
    available         integer,
    raw               jsonb       NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (connection_id, provider_id)
);
CREATE INDEX IF NOT EXISTS shopify_inventory_levels_item_idx
    ON public.shopify_inventory_levels (connection_id, inventory_item_id);
