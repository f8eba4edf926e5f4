import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

from chatbot.embedded import configure_environment

configure_environment()
application = get_wsgi_application()
