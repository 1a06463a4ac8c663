from django.db import models


class BareRow(models.Model):
    text = models.TextField()
