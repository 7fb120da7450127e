-- Django: ForeignKey added to an existing model. Validates 1M rows while blocking writes.
BEGIN;
ALTER TABLE "shop_order" ADD CONSTRAINT "shop_order_customer_id_fk_shop_customer_id"
    FOREIGN KEY ("customer_id") REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED;
COMMIT;
