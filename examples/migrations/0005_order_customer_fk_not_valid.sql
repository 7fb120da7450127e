-- The safe form: add the constraint NOT VALID (no scan), validate it in its own transaction
-- under SHARE UPDATE EXCLUSIVE (reads and writes continue).
BEGIN;
ALTER TABLE "shop_order" ADD CONSTRAINT "shop_order_customer_id_fk_shop_customer_id"
    FOREIGN KEY ("customer_id") REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID;
COMMIT;
BEGIN;
ALTER TABLE "shop_order" VALIDATE CONSTRAINT "shop_order_customer_id_fk_shop_customer_id";
COMMIT;
