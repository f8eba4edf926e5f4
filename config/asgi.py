import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.embedded import configure_environment

configure_environment()
application = get_asgi_application()
