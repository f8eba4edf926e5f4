"""Console pages of the knowledge base (placeholder until "view as user" lands)."""

from django.http import Http404


def view_as_view(request, site):
    raise Http404("View as user is not built yet.")
