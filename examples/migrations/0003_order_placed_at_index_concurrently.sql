-- The safe form: AddIndexConcurrently in a non-atomic migration (no transaction block).
CREATE INDEX CONCURRENTLY "shop_order_placed_at_idx" ON "shop_order" ("placed_at");
