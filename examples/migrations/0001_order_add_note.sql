-- Django: AddField(model_name='order', name='note', field=models.TextField(null=True))
BEGIN;
ALTER TABLE "shop_order" ADD COLUMN "note" text NULL;
COMMIT;
