"""The layout's rules, checked on the source (in the spirit of zulip's lint rules against
unscoped queries):

- who may manage what is asked of accounts/policy.py only (no has_perm, no is_staff checks);
- only knowledge/ queries chunks, and within it only the access, retrieval, index and
  selector modules; only knowledge/index.py writes chunk rows;
- inference/ is a leaf: no Django, nothing from the web side;
- only accounts.selectors makes a Scope;
- only knowledge/index.py and knowledge/selectors.py open the row-level security bypass;
- the web side (every URL's view, the answer composer, the tokenizer) imports neither torch
  nor the parser libraries.

Each rule is a function over one file's source, so the tests below also show it catching a
violation: a rule that cannot fail would prove nothing.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS = ("config", "chatbot", "accounts", "knowledge", "inference", "integrations", "evaluation")

# Modules of knowledge/ that may read the chunk table; everything else asks them.
CHUNK_READERS = (
    "knowledge/access.py",
    "knowledge/index.py",
    "knowledge/models.py",
    "knowledge/row_security.py",
    "knowledge/selectors.py",
    "knowledge/retrieval/",
)
CHUNK_WRITER = "knowledge/index.py"
SCOPE_MINTER = "accounts/selectors.py"

_CHUNK_WRITE_SQL = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY)\s+knowledge_chunk\b", re.IGNORECASE
)
_QUERYSET_METHODS = {
    "all", "filter", "exclude", "order_by", "only", "values", "values_list", "first", "last",
    "get", "count", "exists", "aggregate", "annotate", "iterator",
}  # fmt: skip
_ORM_WRITES = {"create", "bulk_create", "update", "delete", "get_or_create", "update_or_create"}


def source_files() -> list[str]:
    """Application code, as paths relative to the repository (migrations excluded)."""
    paths = []
    for app in APPS:
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if "/migrations/" not in relative:
                paths.append(relative)
    return paths


def _read(relative: str) -> str:
    return (REPO_ROOT / relative).read_text()


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def chunk_violations(path: str, source: str) -> list[str]:
    """Where code that may not touch chunks does, or code other than index.py writes them."""
    tree = ast.parse(source)
    reader = path.startswith(CHUNK_READERS)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if not reader and "knowledge_chunk" in text:
                found.append(f"{path}:{line} names the chunk table")
            if path != CHUNK_WRITER and _CHUNK_WRITE_SQL.search(text):
                found.append(f"{path}:{line} writes chunk rows in SQL")
            if not reader and text == "knowledge.Chunk" and not path.endswith("models.py"):
                found.append(f"{path}:{line} looks up the Chunk model by name")
        elif (isinstance(node, ast.Name) and node.id == "Chunk" and not reader) or (
            isinstance(node, ast.Attribute) and node.attr == "Chunk" and not reader
        ):
            found.append(f"{path}:{line} uses the Chunk model")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "chunks"
            and node.attr in _QUERYSET_METHODS
            and not reader
        ):
            found.append(f"{path}:{line} reads chunks through the document's relation")
        elif isinstance(node, ast.keyword) and re.search(r"(^|__)chunks?__", node.arg or ""):
            if not reader:
                found.append(f"{path}:{line} joins the chunk table ({node.arg})")
        elif isinstance(node, ast.Call) and path != CHUNK_WRITER:
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in _ORM_WRITES
                and "Chunk.objects" in ast.unparse(func.value)
            ):
                found.append(f"{path}:{line} writes chunk rows through the ORM")
    for name in _imports(tree):
        if name == "knowledge.models.Chunk" and not reader:
            found.append(f"{path} imports the Chunk model")
    return found


def inference_leaf_violations(path: str, source: str) -> list[str]:
    if not path.startswith("inference/"):
        return []
    forbidden = ("django", "rest_framework", "config", "chatbot", "accounts", "knowledge")
    return [
        f"{path} imports {name}"
        for name in _imports(ast.parse(source))
        if name.split(".")[0] in forbidden
    ]


def scope_violations(path: str, source: str) -> list[str]:
    if path == SCOPE_MINTER:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            name = node.func.attr if isinstance(node.func, ast.Attribute) else name
            if name == "Scope":
                found.append(f"{path}:{node.lineno} makes a Scope")
    return found


# Who may manage what is decided in accounts/policy.py only: Django's permission checks
# (has_perm, is_staff) anywhere else would grant management around it.
POLICY = "accounts/policy.py"


def management_violations(path: str, source: str) -> list[str]:
    if path == POLICY:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("has_perm", "has_perms"):
            found.append(f"{path}:{node.lineno} asks Django's permissions ({node.attr})")
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "is_staff"
            and isinstance(node.ctx, ast.Load)
            and "request.user" in ast.unparse(node.value)
        ):
            found.append(f"{path}:{node.lineno} decides on request.user.is_staff")
    return found


# The row-level security bypass (knowledge/row_security.py): only the index's writes and
# the selectors' reads that are not on a user's behalf may open it; the setting's name
# appears nowhere else, so no code sets it by hand.
MAINTENANCE_USERS = ("knowledge/index.py", "knowledge/selectors.py")
RLS_MODULE = "knowledge/row_security.py"


def row_security_violations(path: str, source: str) -> list[str]:
    if path == RLS_MODULE:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr == "maintenance":
            if path not in MAINTENANCE_USERS:
                found.append(f"{path}:{line} opens the row-level security bypass")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and ("app.chunk_maintenance" in node.value or "app.user_roles" in node.value)
        ):
            found.append(f"{path}:{line} sets a row-level security setting by hand")
    return found


RULES = [
    chunk_violations,
    inference_leaf_violations,
    scope_violations,
    management_violations,
    row_security_violations,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_code_keeps_the_layout_rules(rule):
    violations = [v for path in source_files() for v in rule(path, _read(path))]
    assert violations == []


@pytest.mark.parametrize(
    ("rule", "path", "source"),
    [
        (chunk_violations, "chatbot/services.py", "from knowledge.models import Chunk\n"),
        (chunk_violations, "chatbot/selectors.py", "Chunk.objects.filter(pk=1)\n"),
        (chunk_violations, "chatbot/web.py", "sql = 'SELECT text FROM knowledge_chunk'\n"),
        (chunk_violations, "accounts/services.py", "Citation.objects.filter(chunk__text='x')\n"),
        (chunk_violations, "knowledge/services.py", "sql = 'UPDATE knowledge_chunk SET x = 1'\n"),
        (chunk_violations, "knowledge/ingestion/pipeline.py", "Chunk.objects.bulk_create([])\n"),
        (chunk_violations, "knowledge/console.py", "document.chunks.order_by('position')\n"),
        (
            chunk_violations,
            "accounts/admin.py",
            "Role.objects.filter(documents__chunks__text='x')\n",
        ),
        (management_violations, "knowledge/admin.py", "request.user.has_perm('x.change_y')\n"),
        (management_violations, "chatbot/admin.py", "if request.user.is_staff: pass\n"),
        (inference_leaf_violations, "inference/engine.py", "from django.conf import settings\n"),
        (inference_leaf_violations, "inference/client.py", "import knowledge.embeddings\n"),
        (scope_violations, "chatbot/services.py", "scope = Scope(user_id=1, role_ids=(2,))\n"),
        (row_security_violations, "chatbot/services.py", "with row_security.maintenance(): pass\n"),
        (
            row_security_violations,
            "knowledge/access.py",
            "c.execute(\"SELECT set_config('app.chunk_maintenance', 'on', true)\")\n",
        ),
    ],
)
def test_each_rule_catches_a_violation(rule, path, source):
    assert rule(path, source)


def test_a_scope_cannot_be_made_outside_user_scope():
    from accounts.selectors import Scope

    with pytest.raises(TypeError, match="user_scope"):
        Scope(user_id=1, role_ids=(1, 2), role_names=("finance", "hr"))


WEB_SIDE = """
import sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # imports every view module the web process serves
import chatbot.answering.compose as compose
from chatbot.answering.prompts import token_counter
token_counter(compose.model_dir()).count("hello")
heavy = ["torch", "transformers", "sentence_transformers", "accelerate"]
# charset_normalizer is not listed: DRF imports requests, which imports it.
parsers = ["bs4", "markdown_it", "pypdf", "docx"]
formats = ["pdf", "docx", "html", "markdown", "text", "encoding"]
formats = [f"knowledge.ingestion.parsers.{f}" for f in formats]
formats = [m for m in formats if m in sys.modules]
print(sorted([m for m in heavy + parsers if m in sys.modules] + formats))
"""


def test_the_web_side_imports_neither_torch_nor_the_parser_libraries():
    # The query embedder may load torch lazily on the first search; importing the web side
    # must not, and the parser libraries belong to the worker.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", WEB_SIDE], capture_output=True, text=True, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
