"""Page-number pagination that refuses a `page` it cannot read.

DRF's own class reads `?page=` (present but empty) as page 1, so a malformed link silently
shows the first page; here any `page` that is not a positive integer is 404 "Invalid page.",
the answer DRF already gives for `?page=abc` or a page past the end.
"""

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None or raw in self.last_page_strings:
            return super().get_page_number(request, paginator)
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise NotFound(self.invalid_page_message.format(page_number=raw, message="not a page"))
        return raw
