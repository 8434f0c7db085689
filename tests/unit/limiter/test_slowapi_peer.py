"""slowapi's own FastAPI tests (tests/peer/slowapi, vendored unchanged) against chatlimit's
Limiter: each passes, or is listed in docs/slowapi-compatibility.md with its reason.

They run from a copy in a temporary folder, in a subprocess, with slowapi's `Limiter` replaced
by chatlimit's in that copy only (a conftest.py beside them); the same copy also runs against
stock slowapi, so a failure is never the copy's."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PEER = ROOT / "tests" / "peer" / "slowapi"
DOC = ROOT / "docs" / "slowapi-compatibility.md"
SUBSTITUTE = """\
import slowapi.extension

import chatlimit.limiter

# tests/__init__.py imports Limiter from slowapi.extension after this runs.
slowapi.extension.Limiter = chatlimit.limiter.Limiter
"""


def run_peer_tests(tmp_path: Path, *, substitute: bool) -> dict[str, str]:
    """{test id: "passed" | "failed" | "skipped"} from pytest's JUnit XML."""
    copy = tmp_path / "peer"
    for source in PEER.rglob("*"):
        if source.is_file():
            target = copy / source.relative_to(PEER)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (copy / "pytest.ini").write_text("[pytest]\n")  # not chatlimit's pytest configuration
    if substitute:
        (copy / "conftest.py").write_text(SUBSTITUTE)
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}", "tests/test_fastapi_extension.py"],
        cwd=copy, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), done.stdout + done.stderr
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        results[case.attrib["name"]] = outcome
    return results


def listed() -> dict[str, str]:
    """The compatibility page's list: {test function name: reason}."""
    rows = re.findall(r"^\| `(test_\w+)` \| (.+?) \|$", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def function_of(test_id: str) -> str:
    return test_id.split("[")[0]


def test_slowapis_tests_pass_against_chatlimit_or_are_listed_with_a_reason(tmp_path: Path) -> None:
    results = run_peer_tests(tmp_path, substitute=True)
    assert len(results) == 57, "slowapi's FastAPI tests were not all collected"
    expected = listed()
    assert expected, "docs/slowapi-compatibility.md lists no test"
    not_passing = {function_of(t) for t, outcome in results.items() if outcome != "passed"}
    # Each listed test fails in every parametrisation, and nothing else fails.
    assert not_passing == set(expected)
    for test_id, outcome in results.items():
        if function_of(test_id) in expected:
            assert outcome == "failed", f"{test_id} passes now: drop it from the list"
    passed = sum(outcome == "passed" for outcome in results.values())
    assert f"**{passed} of {len(results)} pass**" in DOC.read_text()


def test_the_vendored_copy_passes_against_stock_slowapi(tmp_path: Path) -> None:
    results = run_peer_tests(tmp_path, substitute=False)
    assert len(results) == 57
    assert {t for t, outcome in results.items() if outcome != "passed"} == set()
