-- Events received from webhooks (Keap, Shopify, Git hosts, Supabase, Standard Webhooks).
-- The first nine columns are the seed's `background_events` table, unchanged; the rest are
-- what exactly-once delivery needs: the provider's delivery id (dedup) and delivery metadata.
-- user_id is text (not uuid) because connections are keyed by the caller's own user id,
-- which is a Supabase auth uuid in most deployments but is not required to be.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS public.background_events (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              text        NOT NULL,
    event_type           text        NOT NULL,
    source               text        NOT NULL,
    event_data           jsonb       NOT NULL,
    event_timestamp      timestamptz NOT NULL DEFAULT now(),
    suggestion_generated boolean     NOT NULL DEFAULT false,
    suggestion_id        uuid,
    user_actioned        boolean     NOT NULL DEFAULT false,
    -- Delivery bookkeeping (not in the seed).
    connection_id        text,
    -- "<source>:<provider delivery id>", or "<source>:sha256:<body digest>" when the provider
    -- sends no id (Keap). A redelivery hits this constraint and creates nothing new.
    dedup_key            text        NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at         timestamptz NOT NULL DEFAULT now(),
    delivery_attempts    integer     NOT NULL DEFAULT 1 CHECK (delivery_attempts >= 1),
    CONSTRAINT background_events_dedup_key_key UNIQUE (dedup_key)
);

CREATE INDEX IF NOT EXISTS background_events_user_time_idx
    ON public.background_events (user_id, event_timestamp DESC);
CREATE INDEX IF NOT EXISTS background_events_type_idx
    ON public.background_events (event_type);
CREATE INDEX IF NOT EXISTS background_events_pending_suggestion_idx
    ON public.background_events (event_timestamp) WHERE NOT suggestion_generated;
