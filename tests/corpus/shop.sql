-- Rule corpus: realistic migration statements against examples/seed.sql (shop_order: 1M
-- rows, ~70 MB; shop_customer: 100k rows; shop_setting: 20 rows), each with the verdict the
-- guard must reach under the default settings.
--
-- Format: a case starts with "-- expect: allowed | warned <rule> | rejected <rule>", optionally
-- followed by "autocommit" (run outside a transaction block, for CONCURRENTLY forms); its SQL
-- follows, one statement per line ending with ";". Every statement but the last must run
-- (allowed or warned); the last gets the expected verdict. Cases run in BEGIN ... ROLLBACK
-- unless autocommit; "-- then:" lines are cleanup run afterwards. The messages each case
-- produces are compared with expected/shop.out (its header says how to renew it).

-- ===== indexes
-- expect: rejected require-concurrent-index-creation
CREATE INDEX shop_order_total_idx ON shop_order (total);
-- expect: rejected require-concurrent-index-creation
CREATE UNIQUE INDEX shop_customer_email_uniq ON shop_customer (lower(email));
-- expect: rejected require-concurrent-index-creation
CREATE INDEX shop_order_paid_idx ON shop_order (placed_at) WHERE status = 'paid';
-- expect: allowed autocommit
CREATE INDEX CONCURRENTLY corpus_total_idx ON shop_order (total);
-- then: DROP INDEX CONCURRENTLY corpus_total_idx
-- expect: allowed
CREATE INDEX shop_setting_value_idx ON shop_setting (value);
-- expect: allowed
CREATE TABLE shop_coupon (id bigint PRIMARY KEY, code text NOT NULL, order_id bigint);
CREATE INDEX shop_coupon_code_idx ON shop_coupon (code);
-- expect: rejected require-concurrent-index-deletion
DROP INDEX shop_daily_sales_day_idx;
-- expect: rejected require-concurrent-index-deletion
DROP INDEX IF EXISTS shop_customer_pkey CASCADE;
-- expect: allowed autocommit
CREATE INDEX CONCURRENTLY corpus_drop_idx ON shop_order (quantity);
-- then: DROP INDEX CONCURRENTLY corpus_drop_idx
-- expect: rejected require-concurrent-reindex
REINDEX TABLE shop_customer;
-- expect: rejected require-concurrent-reindex
REINDEX INDEX shop_order_pkey;
-- expect: allowed autocommit
REINDEX INDEX CONCURRENTLY shop_customer_pkey;

-- ===== constraints
-- expect: rejected constraint-missing-not-valid
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id);
-- expect: rejected constraint-missing-not-valid
ALTER TABLE "shop_order" ADD CONSTRAINT "shop_order_customer_id_fk" FOREIGN KEY ("customer_id") REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED;
-- expect: allowed
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT VALID;
-- NOT VALID and VALIDATE in one transaction: the ADD's SHARE ROW EXCLUSIVE lock is held
-- during the validating scan (what Alembic, Knex and node-pg-migrate do by default when both
-- steps are in one migration).
-- expect: rejected constraint-missing-not-valid
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_customer_fk;
-- expect: allowed autocommit
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_customer_fk;
-- then: ALTER TABLE shop_order DROP CONSTRAINT shop_order_customer_fk
-- expect: rejected constraint-missing-not-valid
ALTER TABLE shop_order ADD CONSTRAINT shop_order_quantity_positive CHECK (quantity > 0);
-- expect: allowed
ALTER TABLE shop_order ADD CONSTRAINT shop_order_quantity_positive CHECK (quantity > 0) NOT VALID;
-- expect: allowed
ALTER TABLE shop_setting ADD CONSTRAINT shop_setting_value_len CHECK (length(value) < 100);
-- expect: rejected disallowed-unique-constraint
ALTER TABLE shop_customer ADD CONSTRAINT shop_customer_email_key UNIQUE (email);
-- expect: rejected disallowed-unique-constraint
ALTER TABLE shop_customer ADD COLUMN external_id bigint UNIQUE;
-- expect: allowed autocommit
CREATE UNIQUE INDEX CONCURRENTLY corpus_email_key ON shop_customer (email);
-- then: DROP INDEX CONCURRENTLY corpus_email_key
-- expect: rejected ban-exclusion-constraint
ALTER TABLE shop_order ADD CONSTRAINT shop_order_one_per_id EXCLUDE USING btree (id WITH =);

-- ===== columns
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN note text;
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN is_gift boolean NOT NULL DEFAULT false;
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN created_at timestamptz DEFAULT CURRENT_TIMESTAMP;
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN tags text[] NOT NULL DEFAULT ARRAY['new', 'web'];
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN currency char(3) NOT NULL DEFAULT upper('eur');
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN shard int DEFAULT (random() * 16)::int;
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN seq bigserial;
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN line_no int GENERATED ALWAYS AS IDENTITY;
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED;
-- expect: rejected adding-field-with-default
ALTER TABLE shop_order ADD COLUMN boxes shop_positive_int DEFAULT 1;
-- expect: allowed
ALTER TABLE shop_setting ADD COLUMN id bigserial;
-- expect: rejected adding-required-field
ALTER TABLE shop_order ADD COLUMN region text NOT NULL;
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN region text NOT NULL DEFAULT 'eu';
-- expect: rejected adding-not-nullable-field
ALTER TABLE shop_order ALTER COLUMN status SET NOT NULL;
-- expect: allowed
ALTER TABLE shop_order ALTER COLUMN customer_id SET NOT NULL;
-- expect: allowed autocommit
ALTER TABLE shop_order ADD CONSTRAINT shop_order_status_nn CHECK (status IS NOT NULL) NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_status_nn;
ALTER TABLE shop_order ALTER COLUMN status SET NOT NULL;
-- then: ALTER TABLE shop_order ALTER COLUMN status DROP NOT NULL
-- then: ALTER TABLE shop_order DROP CONSTRAINT shop_order_status_nn
-- expect: rejected changing-column-type
ALTER TABLE shop_order ALTER COLUMN quantity TYPE bigint;
-- expect: rejected changing-column-type
ALTER TABLE "shop_order" ALTER COLUMN "quantity" TYPE bigint USING "quantity"::bigint;
-- expect: rejected changing-column-type
ALTER TABLE shop_order ALTER COLUMN total TYPE numeric(12, 4);
-- expect: rejected changing-column-type
ALTER TABLE shop_order ALTER COLUMN status TYPE varchar(10);
-- expect: rejected changing-column-type
ALTER TABLE shop_customer ALTER COLUMN email TYPE text USING lower(email);
-- expect: allowed
ALTER TABLE shop_order ALTER COLUMN status TYPE varchar(40);
-- expect: allowed
ALTER TABLE shop_order ALTER COLUMN status TYPE text;
-- expect: allowed
ALTER TABLE shop_order ALTER COLUMN total TYPE numeric(14, 2);
-- expect: allowed
ALTER TABLE shop_customer ALTER COLUMN email TYPE varchar(254);
-- expect: allowed
ALTER TABLE shop_setting ALTER COLUMN value TYPE varchar(10);

-- ===== rewrites
-- expect: rejected table-rewrite
VACUUM FULL shop_order;
-- expect: rejected table-rewrite
CLUSTER shop_order USING shop_order_pkey;
-- expect: rejected table-rewrite
ALTER TABLE shop_order SET UNLOGGED;
-- expect: allowed
ALTER TABLE shop_order SET LOGGED;
-- expect: allowed
ALTER TABLE shop_order SET TABLESPACE pg_default;
-- expect: allowed autocommit
VACUUM FULL shop_setting;
-- expect: rejected require-concurrent-refresh
REFRESH MATERIALIZED VIEW shop_daily_sales;
-- expect: allowed
REFRESH MATERIALIZED VIEW CONCURRENTLY shop_daily_sales;

-- ===== breaking changes
-- expect: warned renaming-column
ALTER TABLE shop_order RENAME COLUMN total TO amount;
-- expect: warned renaming-table
ALTER TABLE shop_customer RENAME TO shop_client;
-- expect: warned ban-drop-column
ALTER TABLE shop_order DROP COLUMN quantity;
-- expect: warned ban-drop-table
DROP TABLE shop_setting;
-- expect: warned ban-truncate-cascade
TRUNCATE shop_setting CASCADE;
-- expect: allowed
CREATE TABLE shop_tmp_import (id bigint, payload jsonb);
ALTER TABLE shop_tmp_import RENAME COLUMN payload TO body;
DROP TABLE shop_tmp_import;

-- ===== whole migrations in one transaction, Django style: new table, its FK and index
-- expect: allowed
CREATE TABLE shop_review (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL, stars int NOT NULL);
ALTER TABLE shop_review ADD CONSTRAINT shop_review_order_fk FOREIGN KEY (order_id) REFERENCES shop_order (id) DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX shop_review_order_idx ON shop_review (order_id);
ALTER TABLE shop_review ADD CONSTRAINT shop_review_stars CHECK (stars BETWEEN 1 AND 5);
ALTER TABLE shop_review ALTER COLUMN stars TYPE bigint;
-- expect: allowed
CREATE TABLE shop_order_archive AS SELECT * FROM shop_order WHERE id <= 100000;
CREATE INDEX ON shop_order_archive (placed_at);
ALTER TABLE shop_order_archive ALTER COLUMN status SET NOT NULL;
