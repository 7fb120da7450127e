-- The safe form: a CHECK validated without blocking proves there are no NULLs, so
-- SET NOT NULL skips its scan (PostgreSQL 12+); the helper constraint is then dropped.
BEGIN;
ALTER TABLE "shop_order" ADD CONSTRAINT "shop_order_status_not_null" CHECK ("status" IS NOT NULL) NOT VALID;
COMMIT;
BEGIN;
ALTER TABLE "shop_order" VALIDATE CONSTRAINT "shop_order_status_not_null";
COMMIT;
BEGIN;
ALTER TABLE "shop_order" ALTER COLUMN "status" SET NOT NULL;
ALTER TABLE "shop_order" DROP CONSTRAINT "shop_order_status_not_null";
COMMIT;
