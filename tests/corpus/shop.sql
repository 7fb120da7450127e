-- Rule corpus: realistic migration statements against examples/seed.sql (shop_order: 1M
-- rows, ~70 MB; shop_customer: 100k rows; shop_setting: 20 rows), each with the verdict the
-- guard must reach under the default settings.
--
-- Format: a case starts with "-- expect: allowed | warned <rule> | rejected <rule> | error
-- <SQLSTATE>", optionally followed by "autocommit" (run outside a transaction block, for
-- CONCURRENTLY forms and fixtures that later cases use) and "since N" (a version fact: the
-- case runs on PostgreSQL N and later only); its SQL follows, one statement per line
-- ending with ";". Every statement but the last must run (allowed or warned); the last gets the
-- expected verdict ("error": PostgreSQL's own error with that SQLSTATE, the guard having let the
-- statement through without a finding). Cases run in BEGIN ... ROLLBACK unless autocommit;
-- "-- then:" lines are cleanup run afterwards. The messages each case produces are compared
-- with expected/shop.out (its header says how to renew it).

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
-- A new column without a default is NULL in every row: PostgreSQL marks its inline foreign key
-- valid without a scan (transformFKConstraints). With a default it validates every row.
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN referrer_id bigint REFERENCES shop_customer (id);
-- expect: allowed
ALTER TABLE "shop_order" ADD COLUMN "buyer_id" bigint NULL CONSTRAINT "shop_order_buyer_id_fk" REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED;
-- expect: rejected constraint-missing-not-valid
ALTER TABLE shop_order ADD COLUMN referrer_id bigint DEFAULT 1 REFERENCES shop_customer (id);
-- ADD ... NOT VALID and VALIDATE as two subcommands of one ALTER TABLE: the validation scans
-- under the ALTER's ACCESS EXCLUSIVE lock.
-- expect: rejected constraint-missing-not-valid
ALTER TABLE shop_order ADD CONSTRAINT shop_order_quantity_positive CHECK (quantity > 0) NOT VALID, VALIDATE CONSTRAINT shop_order_quantity_positive;
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
-- A collation change rewrites nothing, but rebuilds the indexes on the column.
-- expect: allowed autocommit
CREATE INDEX CONCURRENTLY corpus_customer_email_idx ON shop_customer (email);
-- expect: rejected changing-column-type
ALTER TABLE shop_customer ALTER COLUMN email TYPE varchar(100) COLLATE "C";
-- expect: allowed
ALTER TABLE shop_customer ALTER COLUMN name TYPE varchar(100) COLLATE "C";
-- expect: allowed
ALTER TABLE shop_customer ALTER COLUMN email TYPE varchar(200);
-- expect: allowed
ALTER TABLE shop_customer ALTER COLUMN email TYPE text;
-- then: DROP INDEX CONCURRENTLY corpus_customer_email_idx
-- An ORM's "change column" (TypeORM's changeColumn for a length or int -> bigint change): DROP
-- COLUMN, then ADD COLUMN under the same name, in one transaction. Every value is lost.
-- expect: rejected changing-column-type
ALTER TABLE "shop_order" DROP COLUMN "status";
ALTER TABLE "shop_order" ADD "status" character varying(40);
-- expect: rejected changing-column-type
ALTER TABLE shop_order DROP COLUMN quantity, ADD COLUMN quantity bigint;
-- expect: warned ban-drop-column
ALTER TABLE shop_order DROP COLUMN status;
ALTER TABLE shop_order ADD COLUMN state varchar(40);
-- A column added in this transaction holds no committed value.
-- expect: warned ban-drop-column
ALTER TABLE shop_order ADD COLUMN note text;
ALTER TABLE shop_order DROP COLUMN note;
ALTER TABLE shop_order ADD COLUMN note varchar(100);

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
-- WITH NO DATA marks the view unpopulated in this transaction only: other sessions read the
-- committed view and wait for the lock while the second refresh rebuilds it.
-- expect: rejected require-concurrent-refresh
REFRESH MATERIALIZED VIEW shop_daily_sales WITH NO DATA;
REFRESH MATERIALIZED VIEW shop_daily_sales;
-- A bare CLUSTER reclusters every table with a clustered index, each in its own transaction.
-- expect: allowed autocommit
CLUSTER;
-- expect: allowed autocommit
ALTER TABLE shop_setting CLUSTER ON shop_setting_pkey;
CLUSTER;
-- then: ALTER TABLE shop_setting SET WITHOUT CLUSTER
-- expect: rejected table-rewrite autocommit
ALTER TABLE shop_order CLUSTER ON shop_order_pkey;
CLUSTER;
-- then: ALTER TABLE shop_order SET WITHOUT CLUSTER
-- REINDEX SCHEMA and DATABASE reindex each table in a transaction of its own: each is judged by
-- its size. A schema that does not exist, or another database, is PostgreSQL's error. (No case
-- of REINDEX DATABASE itself: what it lists depends on what else the test database holds.)
-- expect: allowed autocommit
CREATE SCHEMA corpus_small;
CREATE TABLE corpus_small.setting (key text PRIMARY KEY, value text);
INSERT INTO corpus_small.setting SELECT 'k' || g, 'v' || g FROM generate_series(1, 100) g;
REINDEX SCHEMA corpus_small;
-- then: DROP SCHEMA corpus_small CASCADE
-- expect: rejected require-concurrent-reindex autocommit
REINDEX SCHEMA public;
-- expect: error 3F000 autocommit
REINDEX SCHEMA no_such_schema;
-- expect: error 0A000 autocommit
REINDEX DATABASE template1;

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
-- ALTER TABLE accepts an index or a view too: renaming one is not a table rename.
-- expect: allowed
ALTER TABLE shop_order_pkey RENAME TO shop_order_id_key;
-- expect: allowed
ALTER TABLE shop_daily_sales RENAME TO shop_sales_per_minute;
-- Drops PostgreSQL itself refuses, or that drop nothing, get PostgreSQL's own answer, in mode
-- warn too.
-- expect: allowed
ALTER TABLE shop_order DROP COLUMN IF EXISTS no_such_column;
-- expect: error 42703
SET LOCAL pg_migration_guard.mode = warn;
ALTER TABLE shop_order DROP COLUMN no_such_column;
-- expect: error 0A000
SET LOCAL pg_migration_guard.mode = warn;
ALTER TABLE shop_order DROP COLUMN xmin;
-- expect: error 42809
SET LOCAL pg_migration_guard.mode = warn;
ALTER TABLE shop_daily_sales DROP COLUMN orders;
-- An object that does not exist, or a name in use: PostgreSQL's own error, or its NOTICE for
-- IF [NOT] EXISTS.
-- expect: error 42703
CREATE INDEX shop_order_no_such_idx ON shop_order (no_such_column);
-- expect: error 42P07
CREATE INDEX shop_order_pkey ON shop_order (placed_at);
-- expect: allowed
CREATE INDEX IF NOT EXISTS shop_order_pkey ON shop_order (placed_at);
-- expect: error 42P01
ALTER TABLE shop_order ADD CONSTRAINT shop_order_coupon_fk FOREIGN KEY (customer_id) REFERENCES no_such_table (id);
-- expect: error 42703
ALTER TABLE shop_customer ADD CONSTRAINT shop_customer_no_such_key UNIQUE (no_such_column);
-- expect: error 42704
ALTER TABLE shop_order ADD COLUMN weight no_such_type;
-- expect: error 42704
ALTER TABLE shop_order ALTER COLUMN quantity TYPE no_such_type;
-- expect: error 42701
ALTER TABLE shop_order ADD COLUMN status text DEFAULT gen_random_uuid()::text;
-- expect: allowed
ALTER TABLE shop_order ADD COLUMN IF NOT EXISTS status text DEFAULT gen_random_uuid()::text;
-- expect: error 42704
CLUSTER shop_order USING no_such_index;
-- expect: error 42704
CLUSTER shop_order;
-- expect: error 42704
DROP INDEX shop_daily_sales_day_idx, no_such_index;
-- expect: error 42P01
DROP TABLE shop_setting, no_such_table;

-- ===== primary keys on nullable columns (fixture: corpus_voucher, 200000 vouchers whose
-- unique code may be NULL)
-- expect: allowed autocommit
CREATE TABLE corpus_voucher AS SELECT id, 'V' || id AS code FROM shop_order WHERE id <= 200000;
CREATE UNIQUE INDEX CONCURRENTLY corpus_voucher_code_key ON corpus_voucher (code);
VACUUM ANALYZE corpus_voucher;
-- A primary key sets its columns NOT NULL: USING INDEX still scans the table for NULLs.
-- expect: rejected adding-not-nullable-field
ALTER TABLE corpus_voucher ADD CONSTRAINT corpus_voucher_pkey PRIMARY KEY USING INDEX corpus_voucher_code_key;
-- expect: rejected disallowed-unique-constraint
ALTER TABLE corpus_voucher ADD PRIMARY KEY (code);
-- expect: rejected adding-not-nullable-field
SET LOCAL pg_migration_guard.rule_levels = 'disallowed-unique-constraint:warning';
ALTER TABLE corpus_voucher ADD PRIMARY KEY (code);
-- The route of the HINT: a validated CHECK proves code has no NULL, SET NOT NULL and USING
-- INDEX then skip every scan.
-- expect: allowed autocommit
ALTER TABLE corpus_voucher ADD CONSTRAINT corpus_voucher_code_not_null CHECK (code IS NOT NULL) NOT VALID;
ALTER TABLE corpus_voucher VALIDATE CONSTRAINT corpus_voucher_code_not_null;
ALTER TABLE corpus_voucher ALTER COLUMN code SET NOT NULL;
ALTER TABLE corpus_voucher ADD CONSTRAINT corpus_voucher_pkey PRIMARY KEY USING INDEX corpus_voucher_code_key;
-- then: DROP TABLE corpus_voucher

-- ===== partitions (fixture: corpus_order_part, partitioned by id, and two plain tables of
-- 200000 orders each to attach)
-- expect: allowed autocommit
CREATE TABLE corpus_order_part (LIKE shop_order) PARTITION BY RANGE (id);
CREATE TABLE corpus_order_part_1 (LIKE shop_order);
INSERT INTO corpus_order_part_1 SELECT * FROM shop_order WHERE id <= 200000;
CREATE TABLE corpus_order_part_rest (LIKE shop_order);
INSERT INTO corpus_order_part_rest SELECT * FROM shop_order WHERE id > 200000 AND id <= 400000;
VACUUM ANALYZE corpus_order_part_1, corpus_order_part_rest;
-- ATTACH PARTITION scans the table it attaches unless a validated CHECK implies the bound.
-- expect: rejected partition-constraint-scan
ALTER TABLE corpus_order_part ATTACH PARTITION corpus_order_part_1 FOR VALUES FROM (1) TO (200001);
-- The route of the HINT.
-- expect: allowed autocommit
ALTER TABLE corpus_order_part_1 ADD CONSTRAINT corpus_order_part_1_partition_check CHECK ((id IS NOT NULL) AND (id >= '1'::bigint) AND (id < '200001'::bigint)) NOT VALID;
ALTER TABLE corpus_order_part_1 VALIDATE CONSTRAINT corpus_order_part_1_partition_check;
ALTER TABLE corpus_order_part ATTACH PARTITION corpus_order_part_1 FOR VALUES FROM (1) TO (200001);
ALTER TABLE corpus_order_part_1 DROP CONSTRAINT corpus_order_part_1_partition_check;
-- Making a big table the DEFAULT partition scans it for rows of the other partitions.
-- expect: rejected partition-constraint-scan
ALTER TABLE corpus_order_part ATTACH PARTITION corpus_order_part_rest DEFAULT;
-- expect: allowed autocommit
ALTER TABLE corpus_order_part_rest ADD CONSTRAINT corpus_order_part_rest_partition_check CHECK ((id IS NULL) OR (id < '1'::bigint) OR (id >= '200001'::bigint)) NOT VALID;
ALTER TABLE corpus_order_part_rest VALIDATE CONSTRAINT corpus_order_part_rest_partition_check;
ALTER TABLE corpus_order_part ATTACH PARTITION corpus_order_part_rest DEFAULT;
ALTER TABLE corpus_order_part_rest DROP CONSTRAINT corpus_order_part_rest_partition_check;
-- With a DEFAULT partition, creating or attaching another partition scans the default one.
-- expect: rejected partition-constraint-scan
CREATE TABLE corpus_order_part_3 PARTITION OF corpus_order_part FOR VALUES FROM (400001) TO (600001);
-- expect: rejected partition-constraint-scan
CREATE TABLE corpus_order_part_3 (LIKE shop_order);
ALTER TABLE corpus_order_part ATTACH PARTITION corpus_order_part_3 FOR VALUES FROM (400001) TO (600001);
-- Drops PostgreSQL refuses: an inherited column, a partition key column.
-- expect: error 42P16
ALTER TABLE corpus_order_part_1 DROP COLUMN status;
-- expect: error 42P16
ALTER TABLE corpus_order_part DROP COLUMN id;
-- expect: allowed autocommit
ALTER TABLE corpus_order_part_rest ADD CONSTRAINT corpus_order_part_rest_partition_check CHECK ((id IS NULL) OR (id < '400001'::bigint) OR (id >= '600001'::bigint)) NOT VALID;
ALTER TABLE corpus_order_part_rest VALIDATE CONSTRAINT corpus_order_part_rest_partition_check;
CREATE TABLE corpus_order_part_3 PARTITION OF corpus_order_part FOR VALUES FROM (400001) TO (600001);
ALTER TABLE corpus_order_part_rest DROP CONSTRAINT corpus_order_part_rest_partition_check;
-- then: DROP TABLE corpus_order_part

-- ===== domains (fixture: corpus_quantity, a domain stored by corpus_order_line, 200000 rows)
-- expect: allowed autocommit
CREATE DOMAIN corpus_quantity AS integer;
CREATE TABLE corpus_order_line (order_id bigint NOT NULL, quantity corpus_quantity);
INSERT INTO corpus_order_line SELECT id, quantity FROM shop_order WHERE id <= 200000;
VACUUM ANALYZE corpus_order_line;
-- ADD CONSTRAINT and SET NOT NULL check every stored value under SHARE locks.
-- expect: rejected constraint-missing-not-valid
ALTER DOMAIN corpus_quantity ADD CONSTRAINT corpus_quantity_positive CHECK (VALUE > 0);
-- expect: rejected adding-not-nullable-field
ALTER DOMAIN corpus_quantity SET NOT NULL;
-- expect: allowed autocommit
ALTER DOMAIN corpus_quantity ADD CONSTRAINT corpus_quantity_positive CHECK (VALUE > 0) NOT VALID;
-- The domain's VALIDATE has no online form: SHARE locks while it scans.
-- expect: rejected constraint-missing-not-valid
ALTER DOMAIN corpus_quantity VALIDATE CONSTRAINT corpus_quantity_positive;
-- then: DROP TABLE corpus_order_line
-- then: DROP DOMAIN corpus_quantity
-- A domain no table stores yet.
-- expect: allowed
CREATE DOMAIN corpus_code AS text;
ALTER DOMAIN corpus_code ADD CONSTRAINT corpus_code_upper CHECK (VALUE = upper(VALUE));

-- ===== composite types (fixture: corpus_line, a type, and corpus_typed_line, a typed table of
-- 200000 rows)
-- expect: allowed autocommit
CREATE TYPE corpus_line AS (order_id bigint, quantity integer);
CREATE TABLE corpus_typed_line OF corpus_line;
INSERT INTO corpus_typed_line SELECT id, quantity FROM shop_order WHERE id <= 200000;
VACUUM ANALYZE corpus_typed_line;
-- ALTER TYPE ... CASCADE changes the column of every typed table: a rewrite of each.
-- expect: rejected changing-column-type
ALTER TYPE corpus_line ALTER ATTRIBUTE quantity TYPE bigint CASCADE;
-- expect: allowed
ALTER TYPE corpus_line ALTER ATTRIBUTE quantity TYPE integer CASCADE;
-- then: DROP TABLE corpus_typed_line
-- then: DROP TYPE corpus_line

-- ===== tablespaces (fixture: corpus_space, a tablespace inside the data directory, holding
-- 200000 orders, an index on them and a materialized view of them)
-- expect: allowed autocommit
SET allow_in_place_tablespaces = on;
CREATE TABLESPACE corpus_space LOCATION '';
RESET allow_in_place_tablespaces;
CREATE TABLE corpus_space_order TABLESPACE corpus_space AS SELECT * FROM shop_order WHERE id <= 200000;
CREATE INDEX CONCURRENTLY corpus_space_order_id_idx ON corpus_space_order (id) TABLESPACE corpus_space;
CREATE MATERIALIZED VIEW corpus_space_total TABLESPACE corpus_space AS SELECT id, total FROM corpus_space_order;
VACUUM ANALYZE corpus_space_order, corpus_space_total;
-- SET TABLESPACE copies an index or a materialized view under ACCESS EXCLUSIVE.
-- expect: rejected table-rewrite
ALTER INDEX shop_order_pkey SET TABLESPACE corpus_space;
-- expect: rejected table-rewrite
ALTER MATERIALIZED VIEW shop_daily_sales SET TABLESPACE corpus_space;
-- expect: allowed
ALTER INDEX shop_setting_pkey SET TABLESPACE corpus_space;
-- expect: allowed
ALTER INDEX shop_order_pkey SET TABLESPACE pg_default;
-- ALL IN TABLESPACE moves every relation of the kind, one copy after another, all locked.
-- expect: rejected table-rewrite
ALTER TABLE ALL IN TABLESPACE corpus_space SET TABLESPACE pg_default;
-- expect: rejected table-rewrite
ALTER INDEX ALL IN TABLESPACE corpus_space SET TABLESPACE pg_default;
-- expect: rejected table-rewrite
ALTER MATERIALIZED VIEW ALL IN TABLESPACE corpus_space SET TABLESPACE pg_default;
-- expect: allowed
ALTER TABLE ALL IN TABLESPACE corpus_space SET TABLESPACE corpus_space;
-- expect: error 42704
ALTER INDEX ALL IN TABLESPACE no_such_tablespace SET TABLESPACE pg_default;
-- then: DROP MATERIALIZED VIEW corpus_space_total
-- then: DROP TABLE corpus_space_order
-- then: DROP TABLESPACE corpus_space

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

-- ===== version facts: cases that hold from one PostgreSQL version on
-- 18: a generated column is VIRTUAL unless STORED is written: adding one changes the catalog
-- only (STORED still rewrites: the case in the columns section above).
-- expect: allowed since 18
ALTER TABLE shop_order ADD COLUMN total_x2 numeric GENERATED ALWAYS AS (total * 2);
-- expect: allowed since 18
ALTER TABLE shop_order ADD COLUMN total_x3 numeric GENERATED ALWAYS AS (total * 3) VIRTUAL;
ALTER TABLE shop_order ALTER COLUMN total_x3 SET EXPRESSION AS (total * 4);
-- 17: SET EXPRESSION on a STORED generated column recomputes every row: a rewrite. The
-- setup adds the column under an override (that ADD is itself a rewrite).
-- expect: rejected table-rewrite since 17
/* pg_migration_guard:allow adding-field-with-default reason="the column the next statement changes" */ ALTER TABLE shop_order ADD COLUMN total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED;
ALTER TABLE shop_order ALTER COLUMN total_cents SET EXPRESSION AS ((total * 1000)::bigint);
-- 18: a not-null constraint has a NOT VALID form: ADD ... NOT VALID, VALIDATE in its own
-- transaction (SHARE UPDATE EXCLUSIVE), then SET NOT NULL finds it validated: no scan.
-- expect: rejected adding-not-nullable-field since 18
ALTER TABLE shop_order ADD CONSTRAINT shop_order_status_nn NOT NULL status;
-- expect: rejected constraint-missing-not-valid since 18
ALTER TABLE shop_order ADD CONSTRAINT shop_order_status_nn NOT NULL status NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_status_nn;
-- expect: rejected adding-not-nullable-field since 18
ALTER TABLE shop_order ADD CONSTRAINT shop_order_status_nn NOT NULL status NOT VALID;
ALTER TABLE shop_order ALTER COLUMN status SET NOT NULL;
-- expect: allowed autocommit since 18
ALTER TABLE shop_order ADD CONSTRAINT shop_order_status_nn NOT NULL status NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_status_nn;
ALTER TABLE shop_order ALTER COLUMN status SET NOT NULL;
-- then: ALTER TABLE shop_order ALTER COLUMN status DROP NOT NULL
-- 18: ALTER CONSTRAINT ... ENFORCED on a NOT ENFORCED foreign key checks every row under
-- ACCESS EXCLUSIVE (no NOT VALID form of it).
-- expect: rejected constraint-missing-not-valid since 18
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_ne FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT ENFORCED;
ALTER TABLE shop_order ALTER CONSTRAINT shop_order_customer_ne ENFORCED;
-- 17: a member of pg_maintain may REINDEX a table it does not own: judged like the owner.
-- expect: rejected require-concurrent-reindex since 17
CREATE ROLE corpus_maintainer IN ROLE pg_maintain;
SET LOCAL ROLE corpus_maintainer;
REINDEX TABLE shop_customer;
