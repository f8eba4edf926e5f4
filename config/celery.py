import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("chatbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every worker started with `-A config` (make run's, production's, the tests') records a
# heartbeat per consumed queue, which /healthz reads (config.heartbeat).
app.steps["consumer"].add("config.heartbeat:WorkerHeartbeat")
