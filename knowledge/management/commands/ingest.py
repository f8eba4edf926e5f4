from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.policy import operator
from accounts.selectors import UnknownRoles, roles_by_names
from knowledge.services import UploadRejected, document_upload


class Command(BaseCommand):
    help = "Queue files (or directories, recursively) for ingestion with the given roles."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument(
            "--roles", required=True, help="comma-separated role names, e.g. finance,hr"
        )
        parser.add_argument("--title", default="", help="title (only with a single file)")

    def handle(self, *args, paths, roles, title, **options):
        try:
            role_objects = roles_by_names(names=roles.split(","))
        except UnknownRoles as exc:
            raise CommandError(str(exc)) from None
        if not role_objects:
            raise CommandError("At least one role is required (--roles).")
        files = self._collect(paths)
        if title and len(files) != 1:
            raise CommandError("--title only applies to a single file.")
        queued, duplicates, rejected = 0, 0, []
        for path in tqdm(files, desc="Queueing", unit="file", file=self.stderr._out):
            with path.open("rb") as handle:
                try:
                    _, created = document_upload(
                        actor=operator(label="ingest"),
                        file=File(handle, name=path.name),
                        roles=role_objects,
                        title=title,
                    )
                except UploadRejected as exc:
                    rejected.append((path, str(exc)))
                    continue
            queued += created
            duplicates += not created
        for path, reason in rejected:
            self.stderr.write(f"  rejected {path}: {reason}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{queued} queued, {duplicates} already ingested, {len(rejected)} rejected."
                " The worker indexes queued files; see GET /api/v1/documents/ for their status."
            )
        )

    def _collect(self, paths: list[Path]) -> list[Path]:
        files = []
        for path in paths:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"No such file or directory: {path}")
        return files
