"""Console pages of the chat product (placeholder until the dashboard lands)."""

from django.http import Http404


def dashboard_view(request, site):
    raise Http404("The usage dashboard is not built yet.")
