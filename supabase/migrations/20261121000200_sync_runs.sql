-- One row per sync run of a (connection, resource): what triggered it, how far it got,
-- and how it ended. A run that is cut off stays 'running' until its lease expires and the
-- next run marks it 'abandoned'.

CREATE TABLE IF NOT EXISTS public.sync_runs (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id text        NOT NULL,
    provider      text        NOT NULL CHECK (provider IN ('keap', 'shopify')),
    resource      text        NOT NULL,
    trigger       text        NOT NULL CHECK (trigger IN ('cron', 'manual', 'webhook', 'continuation')),
    mode          text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    status        text        NOT NULL DEFAULT 'running'
                              CHECK (status IN ('running', 'completed', 'failed', 'abandoned')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    pages         integer     NOT NULL DEFAULT 0 CHECK (pages >= 0),
    records       integer     NOT NULL DEFAULT 0 CHECK (records >= 0),
    requests      integer     NOT NULL DEFAULT 0 CHECK (requests >= 0),
    cursor_start  jsonb,
    cursor_end    jsonb,
    error         text
);

CREATE INDEX IF NOT EXISTS sync_runs_connection_resource_idx
    ON public.sync_runs (connection_id, resource, started_at DESC);
CREATE INDEX IF NOT EXISTS sync_runs_running_idx
    ON public.sync_runs (status) WHERE status = 'running';
