-- Supabase serves the `public` schema through its REST API to the `anon` and `authenticated`
-- roles, and a fresh project grants them every new table there by default privileges; a table
-- without row level security is then readable and writable with the public anon key
-- (https://supabase.com/docs/guides/database/postgres/row-level-security). Every table Edge
-- Sync owns holds customers' personal data or credentials' metadata, so for each one:
--   * grants to anon, authenticated and PUBLIC are revoked (the API gets "permission denied");
--   * row level security is enabled with no policy for anon/authenticated (defence in depth,
--     should a grant come back);
--   * the group role `edge_sync_app` gets exactly the row access the Workers need (SELECT,
--     INSERT, UPDATE, DELETE; no DDL) and a policy letting it see every row.
-- The Workers connect through Hyperdrive as a login role in `edge_sync_app` (README,
-- "Database roles"). Only Edge Sync's own tables are touched: the user's other tables in
-- `public` keep their grants. A migration that adds a table must lock it down the same way
-- (`SELECT edge_sync_lock_down('<table>')`); the test suite checks every table.

DO $$
BEGIN
    CREATE ROLE edge_sync_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    -- Roles are cluster-wide: another database (or a concurrent run) created it.
    NULL;
END
$$;

CREATE OR REPLACE FUNCTION public.edge_sync_lock_down(table_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    api_role text;
BEGIN
    EXECUTE format('REVOKE ALL ON TABLE public.%I FROM PUBLIC', table_name);
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', table_name, api_role);
        END IF;
    END LOOP;
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO edge_sync_app',
                   table_name);
    EXECUTE format('DROP POLICY IF EXISTS edge_sync_app_rows ON public.%I', table_name);
    EXECUTE format('CREATE POLICY edge_sync_app_rows ON public.%I TO edge_sync_app '
                   'USING (true) WITH CHECK (true)', table_name);
END
$$;
-- Only the migration runner (the table owner) calls it.
REVOKE ALL ON FUNCTION public.edge_sync_lock_down(text) FROM PUBLIC;

SELECT public.edge_sync_lock_down(t) FROM unnest(ARRAY[
    'edge_sync_schema_migrations',
    'background_events',
    'sync_runs',
    'connections',
    'privacy_requests',
    'keap_contacts',
    'keap_opportunities',
    'keap_orders',
    'keap_tasks',
    'shopify_products',
    'shopify_orders',
    'shopify_customers',
    'shopify_inventory_levels'
]) AS t;
