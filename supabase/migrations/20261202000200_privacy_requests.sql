-- Shopify's mandatory privacy webhooks (shopify.dev/docs/apps/build/compliance/
-- privacy-law-compliance): one row per customers/data_request, customers/redact and
-- shop/redact, with what was found (data requests: the customer's rows, raw payloads and
-- stored events, for the operator to hand to the merchant) or what was erased (counts).
-- Read through GET /coordinator/privacy/requests[/{id}] (admin).
CREATE TABLE IF NOT EXISTS public.privacy_requests (
    id            uuid        PRIMARY KEY,
    connection_id text        NOT NULL,
    topic         text        NOT NULL
                              CHECK (topic IN ('customers/data_request', 'customers/redact', 'shop/redact')),
    customer_id   text,
    report        jsonb       NOT NULL,
    received_at   timestamptz NOT NULL,
    completed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS privacy_requests_connection_idx
    ON public.privacy_requests (connection_id, received_at DESC);

-- Holds customers' personal data: never readable with the public anon key.
ALTER TABLE public.privacy_requests ENABLE ROW LEVEL SECURITY;
