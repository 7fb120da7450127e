from django.db import models


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=100)


class Order(models.Model):
    reference = models.CharField(max_length=32)
    status = models.CharField(max_length=16, default="new", db_index=True)
    quantity = models.BigIntegerField()
    placed_at = models.DateTimeField()
    customer = models.ForeignKey(Customer, null=True, on_delete=models.PROTECT)
    gift_wrap = models.BooleanField(default=False)
    currency = models.CharField(max_length=3, default="EUR")

    class Meta:
        indexes = [
            models.Index(fields=["placed_at"], name="shop_order_placed_at_idx"),
        ]
