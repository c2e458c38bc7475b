"""docs/deploy.md shows the configuration the topology runs: it names every file of
deploy/ by its path (never a pasted copy that could drift), and every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIGURATION = ("nginx", "env", "systemd")


def test_deploy_doc_links_every_configuration_file_and_only_existing_ones() -> None:
    doc = (REPOSITORY / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"\(\.\./(deploy/[^)]+)\)", doc))
    files = {
        str(path.relative_to(REPOSITORY))
        for folder in CONFIGURATION
        for path in (REPOSITORY / "deploy" / folder).iterdir()
    }
    assert files <= named, f"not in docs/deploy.md: {sorted(files - named)}"
    assert all((REPOSITORY / path).is_file() for path in named), named
    # Shown by path, not pasted: no configuration block of the files appears in the doc.
    assert "proxy_pass" not in doc and "ExecStart=" not in doc
