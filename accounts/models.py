from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.Model):
    """The unit of access: users hold roles, documents are visible to roles."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    roles = models.ManyToManyField(Role, related_name="users", blank=True)
