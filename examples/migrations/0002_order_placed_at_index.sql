-- Django: AlterField(... db_index=True). Plain CREATE INDEX blocks writes for the whole build.
BEGIN;
CREATE INDEX "shop_order_placed_at_idx" ON "shop_order" ("placed_at");
COMMIT;
