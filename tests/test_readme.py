"""The README: its Python example runs as written (on the committed backbone), what it names exists, and its numbers
come from the results files."""

import re
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "resnet56_fashion_mnist" / "model.pt"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def readme_examples() -> list[str]:
    """[the README's one-call example, the long form of docs/python_api.md]."""
    readme, api = python_blocks(ROOT / "README.md"), python_blocks(ROOT / "docs" / "python_api.md")
    assert readme and len(api) >= 2, "README.md has the one-call example, docs/python_api.md the long form"
    assert api[0] == readme[0], "docs/python_api.md repeats the README's one call as it is"
    return [readme[0], api[1]]


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="committed backbone checkpoint not present")
def test_readme_one_call_example_prunes_the_committed_backbone(monkeypatch):
    """The one-call example in at most 5 lines, run as written with `model` and `calib_loader` a user would have."""
    from sglp.core.checkpoint import load_weights
    from sglp.data.fashion_mnist import load_fashion_mnist
    from sglp.kinds.classification.models.resnet_cifar import resnet56

    monkeypatch.chdir(ROOT)
    example = readme_examples()[0]
    assert len(example.strip().splitlines()) <= 5 and "sglp.prune(" in example
    model = resnet56(num_classes=10, in_channels=1)
    load_weights(model, str(CHECKPOINT))
    calib_loader = list(load_fashion_mnist().calib_batches(128, 2))
    namespace: dict = {"model": model, "calib_loader": calib_loader}
    exec(compile(example, "README.md", "exec"), namespace)
    pruned, report = namespace["pruned"], namespace["report"]
    assert len(report.kept) == 24 and len(report.removed) == 3
    assert pruned(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="committed backbone checkpoint not present")
def test_readme_python_example_prunes_for_real(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(readme_examples()[1], "README.md", "exec"), namespace)
    model, pruned, result = namespace["model"], namespace["pruned"], namespace["result"]
    assert len(result.removed) == 27 - len(result.kept) and result.removed
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert pruned(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_readme_names_only_existing_make_targets_experiments_and_methods():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])  # and docs/
    for target in sorted(set(re.findall(r"`make ([a-z0-9_-]+)", text))):  # make itself resolves pattern rules
        res = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, f"README mentions `make {target}`, which the Makefile lacks: {res.stderr}"
    for group in ("experiment", "method"):
        options = {p.stem for p in (ROOT / "configs" / group).glob("*.yaml")}
        for name in re.findall(rf"\b{group}=(\w+)", text):
            assert name in options, f"README mentions {group}={name}: no configs/{group}/{name}.yaml"


def load_update_readme():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_generated_blocks_equal_the_results_files_they_come_from():
    """Every generated README block is what scripts/update_readme.py makes from results/ now: a results file
    re-rendered without refilling the README (or a block edited by hand) fails here."""
    update = load_update_readme()
    text = (ROOT / "README.md").read_text()
    names = [m.group(2) for m in update.BLOCK.finditer(text)]
    assert "verdict_findings" in names and "demo" in names
    for m in update.BLOCK.finditer(text):
        assert update.fill(m.group(0)) == m.group(0), f"README block {m.group(2)} is stale"


def test_update_readme_refuses_a_block_without_a_source():
    update = load_update_readme()
    with pytest.raises(SystemExit, match="no source"):
        update.fill("<!-- no_such_results_file:start -->\nx\n<!-- no_such_results_file:end -->\n")
    assert update.fill("<!-- faults_summary:start -->\nmine\n<!-- faults_summary:end -->\n").count("mine") == 1


INTERVAL = re.compile(r"[+-]?\d+\.\d+ (?:\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]|± \d+\.\d+)")


def test_readme_findings_come_from_the_verdict_page_only_and_are_short():
    """The README's findings block is the verdict page's Findings section (generated), at most 15 lines, and every
    interval it states is in that page's questions table."""
    text = (ROOT / "README.md").read_text()
    findings = text.split("<!-- verdict_findings:start -->")[1].split("<!-- verdict_findings:end -->")[0]
    assert len(findings.strip().splitlines()) <= 15
    page = (ROOT / "results" / "verdicts.md").read_text()
    table = page.split("## Designed questions")[1] if "## Designed questions" in page else ""
    assert [c for c in INTERVAL.findall(findings) if c not in table] == []


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(((?!https?:|#)[^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file(page):
    missing = [t for t in LINK.findall(page.read_text()) if not (page.parent / t.split("#")[0]).exists()]
    assert missing == [], f"{page.name} links to missing files: {missing}"


def test_the_readme_is_short_and_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 15_000, "README.md over 15 KB: move the detail into docs/"
    for page in DOCS[1:]:
        assert f"(docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|scratch)/[\w.-]+")


def machine_paths(text: str) -> list[str]:
    """Absolute paths of one machine (a checkout, a scratch folder, a home) in `text`."""
    return MACHINE_PATH.findall(text)


def test_the_machine_path_finder_finds_one():
    assert machine_paths("checkpoint /work/main/x.pt and /tmp/sglp_fault_1/none") == ["/work/main", "/tmp/sglp_fault_1"]
    assert machine_paths("see results/faults.md and https://example.org/tmp/x, or ./tmp/y") == []


def test_no_page_doc_or_row_holds_a_machine_path():
    """Pages, docs, rows and configs are read on other machines: the code writes paths relative to the checkout (no
    diary of where a run happened beyond the provenance the code records)."""
    patterns = ["*.md", "*.csv", "*.jsonl", "*.json", "*.yaml", "*.txt"]
    tracked = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True).stdout.split()
    found = {f: paths for f in tracked if (paths := machine_paths((ROOT / f).read_text()))}
    assert found == {}, found


CODE_PATH = re.compile(r"(?<![\w./<>{}-])((?:sglp|scripts|tests|configs)/[\w./-]*\w\.(?:py|yaml))(?![\w<{])")


def test_every_code_file_a_page_names_exists():
    """Pages and docs name the code that makes them (`sglp/experiment/verdicts.py`, `configs/experiment/x.yaml`):
    after a module moves, a page that still names the old path is re-rendered or fixed."""
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    named = {f: set(CODE_PATH.findall((ROOT / f).read_text())) for f in tracked}
    found = {f: sorted(p for p in paths if not (ROOT / p).exists()) for f, paths in named.items()}
    assert {f: m for f, m in found.items() if m} == {}
