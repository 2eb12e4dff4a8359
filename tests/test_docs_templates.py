"""The optimizer templates in docs/writing-an-optimizer.md run as written through the farm."""
from __future__ import annotations

import re

import pytest

from helpers import ROOT, output, query, run_workflow

DOC = (ROOT / "docs" / "writing-an-optimizer.md").read_text()
TEMPLATES = {m.group(2) + "." + m.group(3): code
             for code in re.findall(r"```(?:r|python)\n(.*?)```", DOC, re.S)
             for m in [re.search(r"(r_algorithms|py_algorithms)/(\w+)\.(R|py)", code)] if m}


def test_doc_has_templates_in_both_languages():
    assert {"myrandom.R", "mystream.R", "myrandom.py", "mystream.py"} <= set(TEMPLATES)


@pytest.mark.parametrize("name", ["myrandom.R", "mystream.R", "myrandom.py", "mystream.py"])
def test_template_runs(tmp_path, name):
    f = tmp_path / name
    f.write_text(TEMPLATES[name])
    p = run_workflow(tmp_path, "--algo", str(f), "--procs", "3", "--budget", "9")
    assert p.returncode == 0, output(p)
    rows = query(tmp_path, "SELECT status FROM trials")
    assert len(rows) == 9 and {r["status"] for r in rows} == {"completed"}
