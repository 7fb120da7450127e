-- Django: EmailField max_length 100 -> 254. varchar widening is binary coercible: no rewrite.
BEGIN;
ALTER TABLE "shop_customer" ALTER COLUMN "email" TYPE varchar(254) USING "email"::varchar(254);
COMMIT;
