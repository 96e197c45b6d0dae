-- Mirror of the coordinator's connections, for reporting and joins. The coordinator's
-- Durable Objects stay the source of truth; no token ever lands here.

CREATE TABLE IF NOT EXISTS public.connections (
    id                text        PRIMARY KEY,
    user_id           text        NOT NULL,
    provider          text        NOT NULL CHECK (provider IN ('keap', 'shopify')),
    account           text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('active', 'reauth_required', 'revoked')),
    scopes            text,
    access_expires_at timestamptz,
    last_refresh_at   timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT connections_user_provider_account_key UNIQUE (user_id, provider, account)
);

CREATE INDEX IF NOT EXISTS connections_status_idx ON public.connections (status);
