-- Django: AlterField(null=False). SET NOT NULL scans 1M rows under ACCESS EXCLUSIVE.
BEGIN;
ALTER TABLE "shop_order" ALTER COLUMN "status" SET NOT NULL;
COMMIT;
