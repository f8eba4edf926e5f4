import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.embedded import configure_environment

configure_environment()
application = get_wsgi_application()
