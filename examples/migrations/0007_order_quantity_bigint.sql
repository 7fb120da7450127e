-- Django: AlterField IntegerField -> BigIntegerField. int4 -> int8 rewrites the table.
BEGIN;
ALTER TABLE "shop_order" ALTER COLUMN "quantity" TYPE bigint USING "quantity"::bigint;
COMMIT;
