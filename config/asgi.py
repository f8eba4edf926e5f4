import os

from django.core.asgi import get_asgi_application

from config.body_limits import BodySizeLimitMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.embedded import configure_environment

configure_environment()
# The body cap wraps Django: Django's ASGI handler reads the whole body before anything else.
application = BodySizeLimitMiddleware(get_asgi_application())
