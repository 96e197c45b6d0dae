-- Proactive suggestions (issue 12): one agent run per event that warrants a suggestion, the
-- users' preferences, and the processing outcome of every event.
--
-- agent_runs: the run that writes an event's suggestion, and the suggestion itself (output,
-- suggestion_status). event_id is UNIQUE: an event gets at most one run, whatever the
-- redeliveries, retries, restarts or concurrent processors (the loser of an
-- INSERT ... ON CONFLICT (event_id) DO NOTHING does nothing). A failed run is retried by
-- updating this row, never by inserting another. background_events.suggestion_id points at
-- agent_runs.id (set with suggestion_generated in the same transaction).

CREATE TABLE IF NOT EXISTS public.agent_runs (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           text        NOT NULL,
    event_id          uuid        NOT NULL
                                  REFERENCES public.background_events (id) ON DELETE CASCADE,
    event_type        text        NOT NULL,
    -- What the suggestion is (edge_sync_shared::suggestions::ContentKind, e.g. product_launch)
    -- and how prominently it is shown (low | normal | high).
    content_kind      text        NOT NULL,
    importance        text        NOT NULL DEFAULT 'normal'
                                  CHECK (importance IN ('low', 'normal', 'high')),
    prompt            text        NOT NULL,
    -- The model that wrote the output, or 'template' for the deterministic generator.
    model             text        NOT NULL,
    status            text        NOT NULL DEFAULT 'running'
                                  CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When a running run's next model call is due (retries with backoff).
    next_attempt_at   timestamptz,
    tokens_in         integer     NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out        integer     NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    latency_ms        integer     CHECK (latency_ms >= 0),
    error             text,
    -- {title, markdown, text} once succeeded.
    output            jsonb       CHECK (output IS NULL OR jsonb_typeof(output) = 'object'),
    suggestion_status text        NOT NULL DEFAULT 'new'
                                  CHECK (suggestion_status IN ('new', 'accepted', 'dismissed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    actioned_at       timestamptz,
    CONSTRAINT agent_runs_event_id_key UNIQUE (event_id),
    CONSTRAINT agent_runs_output_when_succeeded CHECK (status <> 'succeeded' OR output IS NOT NULL)
);

-- GET /coordinator/suggestions?user_id=&status=: newest first, per user and status.
CREATE INDEX IF NOT EXISTS agent_runs_user_status_time_idx
    ON public.agent_runs (user_id, suggestion_status, created_at DESC);
-- The hourly budget: suggestions of one type for one user in the last hour.
CREATE INDEX IF NOT EXISTS agent_runs_user_type_time_idx
    ON public.agent_runs (user_id, event_type, created_at DESC);
-- Runs to pick up again (running ones due, failed ones to show).
CREATE INDEX IF NOT EXISTS agent_runs_status_time_idx
    ON public.agent_runs (status, updated_at) WHERE status <> 'succeeded';

-- One row per user, written by operators (PUT /coordinator/users/{user_id}/preferences) and
-- by the user's own app through Supabase. A missing row means the defaults
-- (edge_sync_shared::suggestions::UserPreferences::default: auto_suggest on, no rules).
CREATE TABLE IF NOT EXISTS public.user_preferences (
    user_id      text        PRIMARY KEY,
    auto_suggest boolean     NOT NULL DEFAULT true,
    profile      jsonb       NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(profile) = 'object' AND pg_column_size(profile) <= 16384),
    vibe         jsonb       NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(vibe) = 'object' AND pg_column_size(vibe) <= 16384),
    -- {"<event type or prefix.*>": {"enabled", "importance", "max_per_hour"}}
    rules        jsonb       NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(rules) = 'object' AND pg_column_size(rules) <= 65536),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The processing outcome of each event: when it was processed, and why no suggestion was
-- made when none was (edge_sync_shared::suggestions::SkipReason::as_str, e.g.
-- auto_suggest_off). Events still to process are found by the partial index.
ALTER TABLE public.background_events
    ADD COLUMN IF NOT EXISTS processed_at    timestamptz,
    ADD COLUMN IF NOT EXISTS processing_note text;

CREATE INDEX IF NOT EXISTS background_events_unprocessed_idx
    ON public.background_events (received_at) WHERE processed_at IS NULL;

-- Events stored before this migration were never meant to get suggestions: mark them
-- processed, so turning the feature on does not flood users with suggestions for old events.
UPDATE public.background_events
   SET processed_at = now(), processing_note = 'before_suggestions'
 WHERE processed_at IS NULL AND NOT suggestion_generated;

-- background_events.suggestion_id names the agent run. NOT VALID: rows stored before this
-- migration are not checked (nothing set the column), new and updated rows are.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'background_events_suggestion_id_fkey') THEN
        ALTER TABLE public.background_events
            ADD CONSTRAINT background_events_suggestion_id_fkey
            FOREIGN KEY (suggestion_id) REFERENCES public.agent_runs (id) ON DELETE SET NULL
            NOT VALID;
    END IF;
END
$$;

SELECT public.edge_sync_lock_down(t) FROM unnest(ARRAY['agent_runs', 'user_preferences']) AS t;

-- The user's own app writes its preferences through Supabase's Data API as the
-- `authenticated` role, each user only their own row
-- (https://supabase.com/docs/guides/database/postgres/row-level-security). Only where that
-- role and auth.uid() exist (Supabase); plain PostgreSQL keeps the table locked down.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated')
       AND EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
        GRANT SELECT, INSERT, UPDATE ON TABLE public.user_preferences TO authenticated;
        DROP POLICY IF EXISTS user_preferences_own_row ON public.user_preferences;
        CREATE POLICY user_preferences_own_row ON public.user_preferences
            TO authenticated
            USING (user_id = (SELECT auth.uid())::text)
            WITH CHECK (user_id = (SELECT auth.uid())::text);
    END IF;
END
$$;
