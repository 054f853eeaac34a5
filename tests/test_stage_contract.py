"""What DVC is told about a stage holds: every param key a stage reads is declared under its `params:` in
dvc.yaml (else changing it would leave stale outputs), and the same inputs give byte-identical outputs
(acquire, validate and prepare of every domain, run twice in two project roots; timings live beside the
outputs, in paths.stage_record, where DVC never hashes them).

Each domain's whole chain runs once, in-process at a tiny size, with every read of a params field recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from domains.common import paths, stages
from domains.common.stages import run_stage
from tests.conftest import ROOT, digest, project_root, small_fraud_params
from tests.defects.conftest import small_defects_params
from tests.medical.conftest import small_medical_params
from tests.recsys.conftest import small_recsys_params
from tests.sentiment.conftest import small_sentiment_params

DATA_STAGES = ("acquire", "validate", "prepare")


def _tiny(domain: str) -> dict:
    """The domain's small test params, smaller still: which keys a stage reads does not depend on size."""
    section = {
        "fraud": small_fraud_params,
        "recsys": small_recsys_params,
        "sentiment": small_sentiment_params,
        "medical": small_medical_params,
        "defects": small_defects_params,
    }[domain]()
    train = section["train"]
    train.update(epochs=1, patience=1)
    if domain == "recsys":
        train.update(surprise_models=["baseline_only"])
        train["bpr"].update(epochs=1, patience=1)
        train["vae"].update(epochs=1, patience=1, anneal_epochs=1)
    return section


@contextmanager
def recording_reads(reads: dict[str, set[str]]) -> Iterator[None]:
    """Record, per stage, the dotted key of every params field the stage reads (leaves, not sections).

    The params a stage is given are indexed by object id; reads go through BaseModel.__getattribute__,
    patched for the duration. A model's own dump (the checkpoint fingerprint, provenance) is not a read.
    """
    keys: dict[int, str] = {}
    alive: list[BaseModel] = []  # indexed models are kept alive: a freed one's id may be reused by another
    current: list[set[str]] = []
    load_params = stages.load_params

    def index(model: BaseModel, prefix: str) -> None:
        keys[id(model)] = prefix
        alive.append(model)
        for name in type(model).model_fields:
            value = model.__dict__[name]
            if isinstance(value, BaseModel):
                index(value, f"{prefix}{name}.")
            elif isinstance(value, dict):  # e.g. evaluate.slices: models under user-chosen keys
                for key, item in value.items():
                    if isinstance(item, BaseModel):
                        index(item, f"{prefix}{name}.{key}.")

    def loading(root: Path, domain: str):
        params = load_params(root, domain)
        index(params, "")
        return params

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        prefix = keys.get(id(self)) if current else None
        if prefix is not None and name in type(self).model_fields and not isinstance(value, BaseModel):
            current[-1].add(prefix + name)
        return value

    functions = dict(stages.STAGE_FUNCTIONS)

    def recorded(stage: str):
        def run(*args):
            current.append(reads.setdefault(stage, set()))
            try:
                return functions[stage](*args)
            finally:
                current.pop()

        return run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "load_params", loading)
        for stage in functions:
            patch.setitem(stages.STAGE_FUNCTIONS, stage, recorded(stage))
        assert "__getattribute__" not in BaseModel.__dict__  # so deleting ours restores pydantic's behaviour
        BaseModel.__getattribute__ = getattribute
        try:
            yield
        finally:
            del BaseModel.__getattribute__


def declared_params(domain: str) -> dict[str, list[str]]:
    """Per stage, the param keys dvc.yaml declares for this domain, without the domain prefix."""
    declared = {}
    for stage, entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        names = [p.replace("${key}", domain) for p in entry["do"].get("params", [])]
        declared[stage] = [n.removeprefix(f"{domain}.") for n in names]
    return declared


def undeclared(reads: set[str], declared: list[str]) -> list[str]:
    return sorted(k for k in reads if not any(k == d or k.startswith(d + ".") for d in declared))


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["defects", "fraud", "medical", "recsys", "sentiment"])
def chain(request, tmp_path_factory) -> tuple[str, Path, dict[str, set[str]]]:
    """One domain's six stages run once with reads recorded: the domain, its root and the reads per stage."""
    domain = request.param
    with pytest.MonkeyPatch.context() as patch:
        root = project_root(tmp_path_factory.mktemp(f"{domain}-first"), patch, domain, _tiny(domain))
        reads: dict[str, set[str]] = {}
        with recording_reads(reads):
            for stage in paths.STAGES:
                run_stage(stage, domain, root)
    return domain, root, reads


def test_every_param_a_stage_reads_is_declared_in_dvc_yaml(chain):
    domain, _, reads = chain
    assert set(reads) == set(paths.STAGES) and reads["train"], reads  # the recording saw the stages read params
    declared = declared_params(domain)
    missing = {stage: undeclared(keys, declared[stage]) for stage, keys in reads.items()}
    missing = {stage: keys for stage, keys in missing.items() if keys}
    assert not missing, (
        f"{domain}: params read but not declared in dvc.yaml (stale outputs when they change): {missing}"
    )


def test_undeclared_reads_are_found():
    assert undeclared({"seed", "prepare.n_folds", "gate.max_warnings"}, ["prepare", "gate.max_warnings"]) == ["seed"]
    assert undeclared({"prepare_x.a"}, ["prepare"]) == ["prepare_x.a"]


def test_data_stages_give_identical_bytes_twice(chain, tmp_path, monkeypatch):
    domain, first, _ = chain
    second = project_root(tmp_path, monkeypatch, domain, _tiny(domain))
    for stage in DATA_STAGES:
        run_stage(stage, domain, second)
    for stage in DATA_STAGES:
        a, b = _files(paths.stage_dir(first, domain, stage)), _files(paths.stage_dir(second, domain, stage))
        assert a and a.keys() == b.keys(), stage
        assert [f for f in a if a[f] != b[f]] == [], f"{domain} {stage}: files differ between two runs"
    record = json.loads(paths.stage_record(second, domain, "prepare").read_text())
    assert record["stage"] == "prepare" and record["seconds"] >= 0  # the timing is kept, beside the outputs
