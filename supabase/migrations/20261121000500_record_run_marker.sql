-- Which run last saw each record. A full resync stamps every row it receives with its run
-- id; when (and only when) it completes, rows of that connection it did not stamp are
-- soft-deleted. Incremental runs leave the marker alone.
ALTER TABLE public.keap_contacts            ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.keap_opportunities       ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.keap_orders              ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.keap_tasks               ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.shopify_products         ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.shopify_orders           ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.shopify_customers        ADD COLUMN IF NOT EXISTS seen_in_run text;
ALTER TABLE public.shopify_inventory_levels ADD COLUMN IF NOT EXISTS seen_in_run text;
