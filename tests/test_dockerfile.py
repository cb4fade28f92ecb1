"""The Dockerfile is a plain mirror of README.md's first command (no image can be pulled
here, so the agreement is checked instead of a build)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\s*(scripts/\S+\.sh[^\n]*)$", quick, re.M)


def test_readme_gives_two_commands_and_ci_runs_the_second() -> None:
    serve, test = _readme_commands()
    assert serve.startswith("scripts/serve.sh") and test.startswith("scripts/test.sh")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec scripts/test.sh" in ci


def test_dockerfile_mirrors_the_serve_command() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    serve_sh = (ROOT / "scripts" / "serve.sh").read_text()
    # Same install step...
    assert "scripts/setup.sh" in serve_sh
    assert re.search(r"^RUN scripts/setup\.sh\b", docker, re.M)
    # ...same entry point...
    assert re.search(r"exec \.venv/bin/consultd serve", serve_sh)
    assert 'ENTRYPOINT [".venv/bin/consultd", "serve"]' in docker
    # ...a slim official base, a non-root user, the data dir as a volume, a health check.
    assert re.search(r"^FROM python:3\.\d+-slim", docker, re.M)
    assert re.search(r"^USER (?!root)\w+", docker, re.M)
    assert 'VOLUME ["/data"]' in docker and "CONSULTD_DATA_DIR=/data" in docker
    assert "HEALTHCHECK" in docker and "/healthz" in docker
