-- The workload tests/packaging/tools.sh runs with and without the guard, as a non-superuser
-- role owning its tables, to compare what auto_explain and pg_stat_statements see. Every
-- DDL statement here is allowed (or only warned) by the guard, so that it runs in both.
CREATE TABLE wl_item (id bigint PRIMARY KEY, name text, qty integer);
INSERT INTO wl_item SELECT g, 'item ' || g, g % 10 FROM generate_series(1, 30000) AS g;
ANALYZE wl_item;
SELECT count(*) FROM wl_item WHERE qty = 3;
UPDATE wl_item SET qty = qty + 1 WHERE id <= 100;
ALTER TABLE wl_item ADD COLUMN note text;
CREATE INDEX CONCURRENTLY wl_item_qty_idx ON wl_item (qty);
ALTER TABLE wl_item RENAME COLUMN note TO remark;
DO $$
BEGIN
    PERFORM count(*) FROM wl_item WHERE qty > 5;
    EXECUTE 'ALTER TABLE wl_item ADD COLUMN tag text';
END
$$;
CREATE FUNCTION wl_total() RETURNS bigint LANGUAGE sql AS 'SELECT sum(qty) FROM wl_item';
SELECT wl_total();
BEGIN;
ALTER TABLE wl_item ADD COLUMN flag boolean;
UPDATE wl_item SET flag = true WHERE id = 1;
COMMIT;
DELETE FROM wl_item WHERE id > 29990;
SELECT name FROM wl_item WHERE id = 42;
