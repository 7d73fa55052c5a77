"""The models' declarations without Keras: the cached catalog, option rules, and a command line
that answers (lists, helps, refuses) without importing a backend."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import kgen.catalog as catalog
from conftest import ROOT
from kgen.models import MODELS

pytestmark = pytest.mark.one_backend  # the catalog, the docs: no backend involved


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(catalog, "_SPECS", None)
    return tmp_path / "cache"


def test_the_catalog_holds_exactly_what_the_classes_declare(fresh_cache):
    built = catalog.specs()  # built from the classes and written
    assert list(built) == list(MODELS)
    assert all(built[name] == catalog.ModelSpec.of(cls) for name, cls in MODELS.items())
    [cached] = fresh_cache.glob("models-*.json")
    catalog._SPECS = None
    assert catalog.specs() == built  # read back from JSON: the same declarations
    json.loads(cached.read_text())


def test_a_changed_source_rebuilds_the_catalog(fresh_cache, monkeypatch):
    catalog.specs()
    [first] = fresh_cache.glob("models-*.json")
    monkeypatch.setattr(catalog, "source_digest", lambda: "f" * 64)  # as if a model file changed
    assert catalog._read_cache() is None
    catalog._SPECS = None
    catalog.specs()
    assert [p.name for p in fresh_cache.glob("models-*.json")] == [f"models-{'f' * 24}.json"]
    assert not first.exists()


def test_a_damaged_cache_is_rebuilt(fresh_cache):
    catalog.specs()
    [cached] = fresh_cache.glob("models-*.json")
    cached.write_text("{not json")
    catalog._SPECS = None
    assert catalog.specs() == {name: catalog.ModelSpec.of(cls) for name, cls in MODELS.items()}


# Option values the rules refuse, and what both the catalog and the model's constructor say.
RULE_CASES = [
    ("aae", {"prior": "gaussian", "conditional_prior": True}, "needs a prior with components"),
    ("aae", {"prior": "mixture", "conditional_prior": True, "mode": "clustering"},
     "is for --mode unsupervised or supervised, not clustering"),
    ("aae", {"prior": "swiss-roll", "latent_dim": 3}, "--prior swiss-roll is a 2-D prior: use --latent-dim 2 (got 3)"),
    ("aae", {"mode": "semi-supervised", "labels": "some"}, "--labels expects a number of examples or 'all'"),
    ("contractive_ae", {"arch": "dense", "jacobian": "closed-form"}, "closed-form needs --arch shallow"),
    ("denoising_ae", {"noise": "masking", "noise_level": 1.5}, "a fraction for masking noise: it must be in [0, 1]"),
    ("sparse_ae", {"rho": 1.0}, "--rho must be strictly between 0 and 1"),
    ("sparse_ae", {"sparsity": "kl", "code_activation": "relu"}, "needs sigmoid codes"),
    ("stacked_ae", {"widths": "300,-2"}, "--widths must be comma-separated positive integers"),
    ("vae", {"beta": float("nan")}, "--beta must be a finite number"),
]


@pytest.mark.parametrize("model,options,message", RULE_CASES, ids=[f"{m}-{'-'.join(o)}" for m, o, _ in RULE_CASES])
def test_rules_refuse_the_same_values_in_the_catalog_and_in_the_model(model, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        catalog.get_spec(model).parse_options(options)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        MODELS[model]((28, 28, 1), num_classes=10, **options) if model == "aae" else MODELS[model]((28, 28, 1), **options)


def test_rules_allow_what_they_do_not_forbid():
    spec = catalog.get_spec("aae")
    values = spec.parse_options({"prior": "mixture", "conditional_prior": True, "mode": "supervised"})
    assert values["latent_dim"] is None and values["conditional_prior"] is True
    assert catalog.get_spec("denoising_ae").parse_options({"noise": "gaussian", "noise_level": 1.5})["noise_level"] == 1.5


BACKEND_MODULES = ("keras", "tensorflow", "jax", "torch")
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED=' + ','.join(m for m in %r if m in sys.modules), file=sys.stderr))\n"
    "from cli.main import main\n"
    "main(sys.argv[1:])\n"
) % (BACKEND_MODULES,)


def kgen_without_backend(*args: str, cache, env_backend: str = "tensorflow") -> tuple[int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "KGEN_CACHE_DIR": str(cache), "KERAS_BACKEND": env_backend, "PYTHONPATH": str(ROOT),
           "HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=cache)
    imported = [line for line in proc.stderr.splitlines() if line.startswith("IMPORTED=")]
    return proc.returncode, proc.stdout + proc.stderr, imported[-1].removeprefix("IMPORTED=") if imported else "?"


FAST_COMMANDS = [
    (["--help"], 0, "Train autoencoders"),
    (["list"], 0, "--marginal-entropy"),
    (["train", "vae", "--help"], 0, "Options of vae"),
    (["tune", "gan", "--help"], 0, "Options of gan"),
    (["train", "vae", "--beta", "-1"], 2, "--beta must be >= 0"),
    (["train", "vae", "--epochs", "0"], 2, "--epochs must be >= 1"),
    (["train", "sparse_ae", "--rho", "2"], 2, "--rho must be strictly between 0 and 1"),
    (["train", "aae", "--prior", "gaussian", "--conditional-prior"], 2, "needs a prior with components"),
    (["train", "vae", "--wings", "2"], 2, "model 'vae' has no option --wings"),
    (["train", "nosuchmodel"], 2, "unknown model 'nosuchmodel'"),
    (["train", "vae", "--dataset", "./nodir/"], 2, "no such file or folder"),
    (["train", "vae", "--learning-rate", "inf"], 2, "--learning-rate must be a finite number > 0"),
    (["train", "vae", "--epochs", "many"], 2, "--epochs"),
    # `kgen tune` checks its command line as `kgen train` does: settings, model options, a search to
    # resume, the distributed search's flags.
    (["tune", "ae", "--tuner", "grid"], 2, "--tuner must be one of random, hyperband, bayesian"),
    (["tune", "ae", "--max-trials", "0"], 2, "--max-trials must be >= 1"),
    (["tune", "vae", "--beta", "-1"], 2, "--beta must be >= 0"),
    (["tune", "ae", "--resume", "--tuner-dir", "nowhere"], 2, "no search to resume in nowhere"),
    (["tune", "ae", "--oracle", "127.0.0.1:70000", "--tuner-id", "chief"], 2, "--oracle must be HOST:PORT"),
    (["tune", "ae", "--oracle", "127.0.0.1:8000"], 2, "needs --tuner-id"),
    (["tune", "ae", "--tuner-id", "tuner1"], 2, "give the oracle's --oracle HOST:PORT too"),
]


@pytest.mark.parametrize("args,code,text", FAST_COMMANDS, ids=[" ".join(a) for a, _, _ in FAST_COMMANDS])
def test_help_listing_and_usage_errors_import_no_backend(tmp_path_factory, args, code, text):
    cache = tmp_path_factory.getbasetemp() / "catalog-cache"
    if not cache.is_dir():
        cache.mkdir()
        kgen_without_backend("list", cache=cache)  # the first command after install builds the catalog
    returncode, output, imported = kgen_without_backend(*args, cache=cache)
    assert returncode == code and text in output, output
    assert imported == "", f"`kgen {' '.join(args)}` imported {imported}"
    if code == 2:
        assert [line for line in output.splitlines() if line.startswith("kgen: error:")], output
        assert "Traceback" not in output
