-- Real-time propagation between a user's platforms (issue 14).
--
-- background_events.propagated_at: when the user's instance planned the propagation of a
-- PRODUCT_CREATED / PRODUCT_UPDATED / PRODUCT_DELETED / INVENTORY_UPDATED /
-- CUSTOMER_CREATED / CUSTOMER_UPDATED / ORDER_CREATED event (stored by
-- the source connection's instance with the delivery that carried it). Postgres is the
-- queue: an event is planned until this is set, so a crash anywhere leaves it to the next
-- pass, and planning twice is harmless (the second plan finds every target already holding
-- the change).
ALTER TABLE public.background_events
    ADD COLUMN IF NOT EXISTS propagated_at timestamptz;

CREATE INDEX IF NOT EXISTS background_events_unpropagated_idx
    ON public.background_events (user_id, received_at)
    WHERE propagated_at IS NULL
      AND event_type IN ('PRODUCT_CREATED', 'PRODUCT_UPDATED', 'PRODUCT_DELETED', 'INVENTORY_UPDATED',
                         'CUSTOMER_CREATED', 'CUSTOMER_UPDATED', 'ORDER_CREATED');

-- One row per target's part of a propagated change: written, skipped (and why), failed
-- (retrying), or dead-lettered. id is the queue entry (or skip) id from the user's
-- instance: a row written again after a crash is the same row.
CREATE TABLE IF NOT EXISTS public.propagation_activity (
    id                   text        PRIMARY KEY,
    user_id              text        NOT NULL,
    -- The background_events row of the source change.
    event_id             uuid        REFERENCES public.background_events (id) ON DELETE SET NULL,
    event_type           text        NOT NULL,
    source_connection_id text        NOT NULL,
    target_connection_id text        NOT NULL,
    -- upsert_product | delete_product | set_inventory | upsert_contact | create_order |
    -- none (skipped)
    action               text        NOT NULL,
    -- written | skipped | retrying | dead
    result               text        NOT NULL
                                     CHECK (result IN ('written', 'skipped', 'retrying', 'dead')),
    -- Why it was skipped (edge_sync_shared::propagation::plan::Skip), or what a write met
    -- (e.g. a compare-and-set resolved after a concurrent change at the target).
    detail               text,
    error                text,
    attempts             integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- From the source webhook's acknowledgement to the write at the target.
    latency_ms           bigint      CHECK (latency_ms >= 0),
    details              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- GET /realtime-sync/activity/{connection_id}: newest first per source connection.
CREATE INDEX IF NOT EXISTS propagation_activity_source_time_idx
    ON public.propagation_activity (source_connection_id, updated_at DESC);
CREATE INDEX IF NOT EXISTS propagation_activity_user_time_idx
    ON public.propagation_activity (user_id, updated_at DESC);

SELECT public.edge_sync_lock_down('propagation_activity');
