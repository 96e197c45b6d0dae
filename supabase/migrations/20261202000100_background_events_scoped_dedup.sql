-- Dedup keys identify a redelivery within one connection (or, for events without a
-- connection, one source); they were unique across the whole table, forever, so the same
-- provider delivery id (or Keap body) seen by two connections stored only the first.
-- Replace the global key with one scoped by source and connection. Events without a
-- connection compare as connection '' (a plain unique constraint treats NULLs as distinct).
ALTER TABLE public.background_events
    DROP CONSTRAINT IF EXISTS background_events_dedup_key_key;

CREATE UNIQUE INDEX IF NOT EXISTS background_events_scoped_dedup_key
    ON public.background_events (source, (coalesce(connection_id, '')), dedup_key);
