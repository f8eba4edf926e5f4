from django.core.management.base import BaseCommand

from knowledge.retrieval.vector_index import HNSW_EF_CONSTRUCTION, HNSW_M, rebuild_vector_index


class Command(BaseCommand):
    help = (
        "Rebuild the HNSW index on chunk embeddings with CREATE INDEX CONCURRENTLY and swap it"
        " in: searches and ingestion go on meanwhile. Use after a bulk load, or to change the"
        " index's parameters. Prints the build time and the index size."
    )

    def add_arguments(self, parser):
        parser.add_argument("--m", type=int, default=HNSW_M)
        parser.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION)
        parser.add_argument(
            "--memory", help="maintenance_work_mem for the build (default INDEX_BUILD_MEMORY)"
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="parallel maintenance workers besides the leader (default INDEX_BUILD_WORKERS)",
        )

    def handle(self, *args, m, ef_construction, memory, workers, **options):
        build = rebuild_vector_index(
            m=m, ef_construction=ef_construction, memory=memory, workers=workers
        )
        self.stdout.write(build.describe())
