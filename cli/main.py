"""`kgen` command line. Parses, validates, calls kgen, and turns errors into one line.

Keras is imported only inside commands, after ``--backend`` has set KERAS_BACKEND, and only once
the command line has been checked: `kgen --help`, `kgen list`, `kgen train MODEL --help` and every
usage error about options answer without importing a backend (``kgen.catalog``, ``kgen.config``).
Usage errors exit with 2, failures while running with 1, Ctrl-C with 130 and SIGTERM with 143.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import kgen
from kgen.catalog import ModelSpec, get_spec, specs
from kgen.config import EXECUTION_FIELDS, RUN_FIELDS, TrainConfig
from kgen.signals import Signals

from cli.quiet import quiet_backends

app = typer.Typer(
    name="kgen",
    help="Train autoencoders, VAEs, GANs, adversarial autoencoders and RBMs with Keras 3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



# Options `kgen train` and `kgen tune` share word for word.
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Batch size. [default: 128]")]
StepsPerEpoch = Annotated[Optional[int], typer.Option("--steps-per-epoch", help="Batches per epoch. [default: one pass]")]
ValidationSteps = Annotated[Optional[int], typer.Option("--validation-steps", help="Test batches per validation. [default: all]")]
Binarize = Annotated[Optional[bool], typer.Option("--binarize/--no-binarize", help="Dynamic binarization of [0,1] images.")]
Jit = Annotated[Optional[bool], typer.Option("--jit/--no-jit", help="XLA / torch.compile (default: fastest measured per backend).")]
# How a run computes and on which devices (docs/distributed.md); a resumed run may change the devices.
Precision = Annotated[Optional[str], typer.Option("--precision", help="float32, mixed_bfloat16 or mixed_float16 (Keras dtype policies: float32 variables, 16-bit compute), or auto: the fastest measured for this hardware. [default: auto]")]
Distribute = Annotated[Optional[str], typer.Option("--distribute", help="data-parallel (every phase's gradients averaged over the replicas), none, or auto: data-parallel when several devices or processes are asked for. [default: auto]")]
Devices = Annotated[Optional[str], typer.Option("--devices", help="This process's devices: N (the first N), all, or names such as gpu:0,gpu:1. [default: one]")]
Coordinator = Annotated[Optional[str], typer.Option("--coordinator", help="Several processes: host:port of process 0 (TensorFlow: every worker's host:port, comma-separated). [default: the launcher's environment]")]
NumProcesses = Annotated[Optional[int], typer.Option("--num-processes", help="Several processes: how many.")]
ProcessId = Annotated[Optional[int], typer.Option("--process-id", help="Several processes: this one's index (0 writes the files).")]
DistributionTimeout = Annotated[Optional[float], typer.Option("--distribution-timeout", help="Seconds to wait for the coordinator and the other processes. [default: 60]")]


def execution_options(precision, distribute, devices, coordinator, num_processes, process_id,
                      distribution_timeout) -> dict[str, Any]:
    """The precision and distribution options given on the command line (TrainConfig fields)."""
    return {k: v for k, v in dict(precision=precision, distribute=distribute, devices=devices, coordinator=coordinator,
                                  num_processes=num_processes, process_id=process_id,
                                  distribution_timeout=distribution_timeout).items() if v is not None}


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"kgen: error: {message}", err=True)
    raise typer.Exit(code)


def run_guarded(fn, *args, interrupted: str = "resume with `kgen train --resume RUN`", **kwargs):
    """Call into the library; user-facing errors become one line and an exit code
    (``interrupted``: what the line for Ctrl-C says after "interrupted; ", unless the library's
    interruption says it). SIGTERM (a scheduler stopping the job, `kill`) is turned into the same
    clean ending meanwhile (``kgen.signals``; a signal Python lost is raised after the next batch);
    a command may nest its own handling (kgen export does)."""
    try:
        with Signals():
            return fn(*args, **kwargs)
    except (UsageError, ValueError) as exc:  # DataError, RunError, ExportError are ValueErrors
        fail(str(exc), 2)
    except RuntimeError as exc:  # TrainingDiverged and other failures while running
        fail(str(exc), 1)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a signal turned into one (SIGTERM)
        signum = getattr(exc, "signum", signal.SIGINT)
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        fail(f"interrupted{by}; {str(exc) or interrupted}", 128 + signum)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"kgen {kgen.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    backend: Optional[str] = typer.Option(
        None, "--backend", "-b", help="Keras backend: tensorflow, jax or torch (default: $KERAS_BACKEND, else tensorflow)."
    ),
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorFlow's, JAX's and Python's log lines and warnings."),
) -> None:
    quiet_backends(verbose)
    if backend is not None:
        try:
            kgen.set_backend(backend)
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
    elif kgen.active_backend() not in kgen.BACKENDS:
        fail(f"KERAS_BACKEND={kgen.active_backend()} is not a backend kgen runs on; set it to one of "
             f"{', '.join(kgen.BACKENDS)} (or pass --backend)")


def parse_model_options(tokens: list[str], model: str) -> dict[str, Any]:
    """`--beta 4 --decoder=gaussian --flag` -> {"beta": "4", "decoder": "gaussian", "flag": True}."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise UsageError(f"unexpected argument '{token}' (model options look like --name value)")
        name, _, value = token[2:].partition("=")
        if not value:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "false" if name.startswith("no-") else "true"
                name = name[3:] if name.startswith("no-") else name
        options[name.replace("-", "_")] = value
        i += 1
    return options


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Train MODEL (see `kgen list`) and write a run directory. Model options (e.g. --beta 4 for vae) "
    "follow the model name; `kgen list` shows each model's options and defaults.",
)
def train(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Model name, e.g. vae or ae (`kgen list`)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="TFDS name (mnist, fashion_mnist, cifar10, ...), IDX folder, image folder or .npz. [default: mnist]"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="TFDS data directory. [default: ~/tensorflow_datasets]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Number of epochs. [default: enough for the model's default number of training steps (3,000 batches for autoencoders, VAEs, AAEs, RBMs; 10,000 the MLP gan; 1,500 the conv GANs; 1,000 WGANs and the classifier) on this data]"),
    batch_size: BatchSize = None,
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", help="Latent size (model default: `kgen list`)."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr", help="Learning rate of the model's optimizers. [default: per model, `kgen list`]"),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="constant, or cosine decay to 1% over the run. [default: constant]"),
    steps_per_epoch: StepsPerEpoch = None,
    validation_steps: ValidationSteps = None,
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed. [default: 0]"),
    binarize: Binarize = None,
    jit: Jit = None,
    steps_per_execution: Optional[int] = typer.Option(None, "--steps-per-execution", help="Training steps per compiled call (default: 32 on TensorFlow and JAX, 1 on torch)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Log FID/KID/classifier score of 2,000 samples every N epochs (generators)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Classifier run judging samples for --eval-every. [default: newest on the dataset in the runs folder]"),
    precision: Precision = None,
    distribute: Distribute = None,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    distribution_timeout: DistributionTimeout = None,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (must not exist). [default: runs/<model>-<dataset>-<time>]"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON config (e.g. a run's config.json); options given here override it."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run from its last checkpoint (--epochs may raise the total; the distribution options may change the devices)."),
) -> None:
    execution = execution_options(precision, distribute, devices, coordinator, num_processes, process_id,
                                  distribution_timeout)
    given = {k: v for k, v in dict(
        dataset=dataset, data_dir=data_dir, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, seed=seed, binarize=binarize, jit=jit,
        steps_per_execution=steps_per_execution, lr_schedule=lr_schedule, eval_every=eval_every,
        classifier=str(classifier) if classifier is not None else None, **execution,
    ).items() if v is not None}

    def build_config() -> TrainConfig | None:
        if resume is not None:
            allowed = {"epochs", *EXECUTION_FIELDS}
            if ctx.args or model is not None or set(given) - allowed:
                raise UsageError("--resume takes the run's own settings; only --epochs and the distribution options "
                                 "(--devices, ...) may be given with it")
            resumed = TrainConfig(model="", **given)
            resumed.validate_execution()
            if "epochs" not in given:
                resumed.epochs = None  # the run's own total
            return resumed
        base: dict[str, Any] = {}
        if config is not None:
            try:
                base = json.loads(Path(config).read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"cannot read config {config}: {exc}") from None
            TrainConfig.from_dict({"model": "", **base} if isinstance(base, dict) else base,
                                  source=f"--config {config}")  # unknown keys, wrong types
        name = model or base.get("model")
        if not name:
            raise UsageError("name a model (e.g. `kgen train vae`) or give --config; `kgen list` shows the models")
        get_spec(name)  # unknown model -> ValueError listing valid names
        options = dict(base.get("model_options") or {})
        if base.get("model") not in (None, name):
            options = {}
        options.update(parse_model_options(list(ctx.args), name))
        if latent_dim is not None:
            options["latent_dim"] = latent_dim
        merged = {k: v for k, v in base.items() if k in RUN_FIELDS}
        merged.update(given)
        return TrainConfig.from_dict({**merged, "model": name, "model_options": options})

    train_config = run_guarded(build_config)
    if train_config is not None and resume is None:
        run_guarded(train_config.validate)
    from kgen.train import train as train_model  # the backend's import: only for a command line that is fine

    run = run_guarded(
        train_model, train_config, run_dir=str(run_dir) if run_dir else None,
        resume=str(resume) if resume else None, verbose="auto",
    )
    from kgen.backend.distribution import is_chief_process

    if not is_chief_process():  # a data-parallel run's other processes: process 0 prints the summary
        return
    metrics = run.metrics().get("final", {})
    if metrics:
        typer.echo("test: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    typer.echo(f"run directory: {run.path}")
    typer.echo(f"samples:       {run.samples_dir}")
    typer.echo(f"tensorboard --logdir {run.log_dir}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Search MODEL's hyperparameters with KerasTuner: trials train on the dataset, are scored by "
    "--objective and logged to TensorBoard; writes results.csv and best_config.json (for `kgen train "
    "--config`) to the tuner directory. Model options after the model name are fixed, not searched.",
)
def tune(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Model name, e.g. vae or gan (`kgen list`)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="As for `kgen train`. [default: mnist]"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="TFDS data directory."),
    tuner: Optional[str] = typer.Option(None, "--tuner", help="random, hyperband or bayesian. [default: random]"),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", help="Trials (models) to train at most; may grow with --resume. [default: 10]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Epochs per trial (hyperband: of the longest trials). [default: 10]"),
    objective: Optional[str] = typer.Option(None, "--objective", help="A metric the model logs (val_loss, ...) or fid, kid, classifier_score, val_negative_elbo, error_rate. [default: per model]"),
    direction: Optional[str] = typer.Option(None, "--direction", help="min or max. [default: the objective's]"),
    tuner_dir: Optional[Path] = typer.Option(None, "--tuner-dir", help="Where the search lives. [default: tuning/<model>-<dataset>]"),
    resume: bool = typer.Option(False, "--resume", help="Continue the search in the tuner directory; finished trials are kept."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML or JSON file overriding search ranges, e.g. 'beta: {min: 0.5, max: 4, sampling: log}'."),
    batch_size: BatchSize = None,
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr", help="Fix the learning rate instead of searching it."),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="constant or cosine. [default: constant]"),
    steps_per_epoch: StepsPerEpoch = None,
    validation_steps: ValidationSteps = None,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every trial and of the tuner. [default: 0]"),
    binarize: Binarize = None,
    jit: Jit = None,
    steps_per_execution: Optional[int] = typer.Option(None, "--steps-per-execution", help="Training steps per compiled call."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Classifier run judging samples for fid/kid/classifier_score. [default: newest on the dataset in runs/]"),
    eval_samples: Optional[int] = typer.Option(None, "--eval-samples", help="Samples (and held-out images) behind fid, kid, classifier_score and error_rate. [default: 2000]"),
    best_grids: int = typer.Option(3, "--best-grids", help="Draw the sample grids of this many best trials after the search."),
    precision: Precision = None,
    distribute: Distribute = None,
    devices: Devices = None,
    oracle: Optional[str] = typer.Option(None, "--oracle", help="Distributed search: HOST:PORT of the oracle. The chief listens there (0.0.0.0:PORT: on every address of its host); the workers connect to it. [default: $KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT]"),
    tuner_id: Optional[str] = typer.Option(None, "--tuner-id", help="Distributed search: chief (serves the oracle, trains nothing, writes results.csv and best_config.json) or this worker's name (tuner1, ...). [default: $KERASTUNER_TUNER_ID]"),
    worker_timeout: Optional[float] = typer.Option(None, "--worker-timeout", help="Distributed search, chief: seconds without a heartbeat before a worker's trial goes to the next worker. [default: 60]"),
    oracle_timeout: Optional[float] = typer.Option(None, "--oracle-timeout", help="Distributed search, worker: seconds to wait for the oracle to answer at start. [default: 60]"),
) -> None:
    from kgen.tuning.settings import check_settings, distributed_search

    given = {k: v for k, v in dict(
        dataset=dataset, data_dir=data_dir, tuner=tuner, max_trials=max_trials, epochs=epochs, objective=objective,
        direction=direction, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
        steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, seed=seed, binarize=binarize, jit=jit,
        steps_per_execution=steps_per_execution, classifier=str(classifier) if classifier is not None else None,
        eval_samples=eval_samples, **execution_options(precision, distribute, devices, None, None, None, None),
    ).items() if v is not None}

    def check_command_line():
        """Everything the command line alone can get wrong, answered before a backend is imported."""
        if best_grids < 0:
            raise UsageError(f"--best-grids must be >= 0, got {best_grids}")
        distributed = distributed_search(oracle, tuner_id, worker_timeout, oracle_timeout)
        options = parse_model_options(list(ctx.args), model or "")
        joining = distributed is not None and not distributed.is_chief
        check_settings(model, given, options, tuner_dir, resume, joining)
        return options, distributed, joining

    options, distributed, joining = run_guarded(check_command_line)
    from kgen import tuning  # its functions import KerasTuner and the backend: only for a command line that is fine

    settings, directory = run_guarded(tuning.make_settings, model, given, options, space, tuner_dir, resume, joining)
    result = run_guarded(tuning.tune, settings, directory, resume=resume, best_grids=best_grids, distributed=distributed,
                         interrupted=f"continue the search with `kgen tune --tuner-dir {directory} --resume`")
    if result.worker is not None:
        trained = ", ".join(result.trained) or "none"
        typer.echo(f"worker {result.worker} trained trials: {trained}; the chief writes the results to "
                   f"{result.results_path}")
        return
    typer.echo("")
    typer.echo(tuning.format_table(result.rows))
    typer.echo("")
    if result.unfinished:
        typer.echo(f"unfinished trials: {', '.join(result.unfinished)} (their workers were lost; continue with "
                   f"`kgen tune --tuner-dir {result.tuner_dir} --resume` and its distributed options)")
    if result.best is not None:
        typer.echo(f"best: trial {result.best['trial']}, {result.objective} = {result.best[result.objective]:.6g} "
                   f"({result.direction})")
        typer.echo(f"retrain it:    kgen train --config {result.best_config_path}")
        typer.echo(f"best samples:  {result.tuner_dir / 'best'}")
    else:
        typer.echo(f"no trial completed; see {result.tuner_dir}")
    typer.echo(f"results:       {result.results_path}")
    typer.echo(f"tensorboard --logdir {result.log_dir}")


def describe_model(spec: ModelSpec) -> list[str]:
    """A model's options with their types, choices or ranges, defaults and help; its rules."""
    lines = []
    for opt in spec.user_options():
        default = "auto" if opt.default is None else opt.default
        kind = f" {{{'|'.join(map(str, opt.choices))}}}" if opt.choices else ""
        if opt.minimum is not None or opt.maximum is not None:
            kind += f" ({opt.bounds()})"
        lines.append(f"    --{opt.name.replace('_', '-'):<14} {opt.type.__name__}{kind}  default {default}  {opt.help}")
    lines += [f"    {rule.describe()}" for rule in spec.rules]
    lines.append(f"    learning rate {spec.default_learning_rate:g}")
    return lines


def model_help(argv: list[str]) -> list[str] | None:
    """For `kgen [--backend B] train|tune MODEL ... --help`: MODEL's options, to print after the
    command's help; None for any other command line."""
    if "--help" not in argv:
        return None
    words, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in ("--backend", "-b"):
            skip = True
        elif not token.startswith("-"):
            words.append(token)
    if len(words) < 2 or words[0] not in ("train", "tune") or words[1] not in specs():
        return None
    spec = specs()[words[1]]
    return ["", f"Options of {spec.name} ({spec.description}):", *describe_model(spec)]

@app.command("list", help="List the models with their options and defaults.")
def list_models() -> None:
    for name, spec in specs().items():
        typer.echo(f"{name}: {spec.description}")
        for line in describe_model(spec):
            typer.echo(line)
        typer.echo("")
    defaults = TrainConfig(model="")
    shown = {"epochs": "(the model's default steps: see docs/commands.md)"}
    typer.echo("training options (every model): " + ", ".join(
        f"--{f.replace('_', '-')} {shown.get(f, getattr(defaults, f))}" for f in RUN_FIELDS
        if f not in ("data_dir", "learning_rate", "coordinator", "num_processes", "process_id")
    ))


@app.command(help="Draw samples from a trained generative model and save them as a PNG grid.")
def sample(
    run: Path = typer.Argument(..., help="Run directory."),
    n: int = typer.Option(64, "--n", "-n", help="Number of samples (conditional models: whole rows of one column per class)."),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="Output PNG file."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same samples)."),
    label: Optional[int] = typer.Option(None, "--label", help="Conditional models (cgan): draw only this class."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Latent interpolations instead: 8 rows of 10 steps (slerp)."),
    traverse: bool = typer.Option(False, "--traverse", help="InfoGAN: code-traversal grids (OUT-categorical.png, OUT-continuous_1.png, ...)."),
    style_grid: bool = typer.Option(False, "--style-grid", help="Label-conditioned decoders (aae supervised/semi-supervised/clustering, cgan): one style per row, one class per column."),
    force: bool = typer.Option(False, "--force", help="Replace --out (and, with --traverse, its OUT-*.png files) if they exist."),
) -> None:
    def draw() -> list[Path]:
        if n < 1:
            raise UsageError(f"--n must be >= 1, got {n}")
        if out.suffix.lower() != ".png":
            raise UsageError(f"--out must be a .png file, got {out}")
        if out.is_dir():
            raise UsageError(f"--out {out} is a directory")
        if out.exists() and not force and not traverse:
            raise UsageError(f"{out} exists; pass --force to replace it or choose another --out")
        if interpolate + traverse + style_grid > 1:
            raise UsageError("choose one of --interpolate, --traverse and --style-grid")
        if style_grid and label is not None:
            raise UsageError("--style-grid shows every class; drop --label")
        from kgen import images, sampling
        from kgen.models import Ability, can
        from kgen.runs import load_model

        model = load_model(run)
        if not can(model, Ability.SAMPLE):
            raise UsageError(f"model '{model.model_name}' in {run} cannot sample (it has no prior); try a gan or vae")
        if label is not None and not can(model, Ability.CONDITIONAL):
            raise UsageError(f"--label is for conditional models (cgan, aae with labels); '{model.model_name}' is not one")
        if traverse and not can(model, Ability.TRAVERSE):
            raise UsageError(f"--traverse is for models with codes (infogan); '{model.model_name}' has none")
        if style_grid and not can(model, Ability.LABELLED_GENERATOR):
            raise UsageError(f"--style-grid is for models that generate from a label (aae --mode supervised, "
                             f"cgan, ...); '{model.model_name}' in {run} does not")
        if interpolate and not can(model, Ability.GENERATE):
            raise UsageError(f"model '{model.model_name}' has no latent space to interpolate")
        kind = "interpolation" if interpolate else "traversal" if traverse else "style_grid" if style_grid else "samples"
        grids = sampling.pictures(sampling.generator_grids(model, n, seed, label, kinds=(kind,)),
                                  model.hparams["data_range"])
        if not grids:
            raise UsageError(f"samples of shape {model.data_shape} are not images")
        # One grid is OUT; InfoGAN's traversals are OUT-<code>.png.
        paths = {name: out if kind != "traversal" else out.with_name(f"{out.stem}-{name.removeprefix('traversal_')}.png")
                 for name in grids}
        existing = [str(path) for path in paths.values() if path.exists()]
        if existing and not force:
            raise UsageError(f"{', '.join(existing)} exist(s); pass --force to replace or choose another --out")
        out.parent.mkdir(parents=True, exist_ok=True)
        return [images.save_png(image, paths[name]) for name, image in grids.items()]

    for path in run_guarded(draw):
        typer.echo(f"wrote {path}")


def _load_run_model(run: Path):
    from kgen.runs import Run, load_model

    opened = Run.open(run)
    return opened, load_model(opened)


@app.command(help="Write the latent codes (and labels) of a dataset split to an .npz file.")
def encode(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", "--split", help="train or test."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz (codes, labels; VAEs add log_var)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N examples."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    from kgen import evaluate as kgen_evaluate

    def write():
        if out.exists() and not force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        run_, model = _load_run_model(run)
        return kgen_evaluate.encode(model, run_, split, out, limit)

    path, count = run_guarded(write)
    typer.echo(f"wrote codes of {count} {split} examples to {path}")


@app.command(help="Judge a run with its field's figures on a split of its data or of --dataset: reconstruction error, "
             "PSNR, denoising gain, PCA angles (autoencoders); -ELBO and the IWAE bound in nats and bits/dim (vae, "
             "tcvae); the AIS log-likelihood (rbm); FID, KID, classifier score, mode coverage, precision/recall and the "
             "real-vs-real floor (generators); code accuracy (infogan); error rates, code-vs-prior MMD and the Parzen "
             "log-likelihood (aae); accuracy (classifier). Printed, and recorded in the run's metrics.json with the "
             "data it was computed on (one record per data set and split; docs/evaluation.md).")
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("test", "--split", help="train or test."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Evaluate on this data instead of the run's: a TFDS name, IDX folder, image folder or .npz whose examples have the model's input shape (scaled as the run's data). Default: the run's dataset."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="TFDS data directory. Default: the run's."),
    scores: Optional[Path] = typer.Option(None, "--scores", help="Write per-example metrics and anomaly scores (.csv)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N examples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corruption (denoising models), the samples (generators), the binarization/dequantization and the importance and AIS draws (likelihoods)."),
    n: int = typer.Option(10_000, "--n", help="Generators and AAEs: number of samples judged (and of real images in the FID floor, of Parzen kernels)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Classifier run whose features judge the samples (FID, KID, precision/recall), and whose accuracy judges an autoencoder's reconstructions. Default for generators: the newest on the run's dataset beside RUN."),
    importance_samples: int = typer.Option(200, "--importance-samples", "-k", min=0, help="VAEs: K, importance samples per example of the IWAE bound (the papers use 5000; larger K, tighter bound, K times the time; 0 skips the likelihood)."),
    ais_temperatures: int = typer.Option(14_500, "--ais-temperatures", min=3, help="RBMs: AIS intermediate distributions (steps), spaced as Salakhutdinov & Murray 2008 (their 14,500 by default); fewer is faster and biases log Z low."),
    ais_runs: int = typer.Option(100, "--ais-runs", min=2, help="RBMs: independent AIS runs (chains) averaged for log Z (the paper: 100)."),
) -> None:
    from kgen import evaluate as kgen_evaluate
    from kgen.config import dataset_path_problem

    def compute():
        if scores is not None and scores.exists():
            raise UsageError(f"{scores} exists; choose another --scores file")
        problem = dataset_path_problem(dataset) if dataset is not None else None
        if problem:
            raise UsageError(problem)
        run_, model = _load_run_model(run)
        return kgen_evaluate.evaluate(model, run_, split, scores=scores, seed=seed, limit=limit,
                                      classifier=classifier, n=n, dataset=dataset, data_dir=data_dir,
                                      importance_samples=importance_samples, ais_temperatures=ais_temperatures,
                                      ais_runs=ais_runs)

    record = run_guarded(compute)
    data, summary = record["data"], record["metrics"]
    typer.echo(f"data: {data['dataset']} ({data['source']}), {data['split']} split, {data['examples']} examples, "
               f"sha256 {data['sha256'][:16]}")
    width = max(map(len, summary))
    typer.echo(f"{'metric':<{width}}  {split}")
    for name, value in summary.items():
        typer.echo(f"{name:<{width}}  {value if isinstance(value, str) else format(value, '.6g')}")
    typer.echo(f"recorded in {Path(run) / 'metrics.json'} (evaluations)")
    if scores is not None:
        typer.echo(f"per-example scores: {scores}")


@app.command(help="Export runs as TensorFlow SavedModels for TF Serving: OUT/NAME/VERSION/ (tag serve, one signature "
             "per capability of the model). Runs trained on JAX or PyTorch are exported from a TensorFlow-backend "
             "process.")
def export(
    runs: Optional[list[Path]] = typer.Argument(None, help="Run directories (several: each as <model>-<dataset>)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in TF Serving (default: <model>-<dataset>)."),
    version: Optional[int] = typer.Option(None, "--version", help="Version folder, never overwritten (default: the next integer)."),
    out: Path = typer.Option(Path("saved_models"), "--out", "-o", help="Export root (TF Serving's --model_base_path is OUT/NAME)."),
    signature: Optional[list[str]] = typer.Option(None, "--signature", "-s", help="Export only this signature (repeat; the first is serving_default)."),
    warmup: bool = typer.Option(False, "--warmup", help="Write assets.extra/tf_serving_warmup_requests (one request per signature)."),
    check: bool = typer.Option(False, "--check", help="Load the export in a fresh Python without kgen, compare every signature with Keras, print the signatures, the docker line and REST examples."),
    png: bool = typer.Option(False, "--png", help="Image signatures also return PNG bytes (png_bytes; base64 over REST)."),
    list_: bool = typer.Option(False, "--list", help="List the models and versions under --out instead."),
) -> None:
    from cli import export_report
    from kgen import export as kgen_export

    if list_:
        if runs:
            fail("--list takes no run")
        typer.echo(export_report.format_listing(kgen_export.list_exports(out), out))
        return
    results = run_guarded(kgen_export.export_runs, runs or [], out, name, version, signature, warmup, check, png,
                          interrupted="no unfinished export was left behind")
    for result in results:
        typer.echo(export_report.describe(result))


demo_app = typer.Typer(help="Demonstrations that go beyond training one model.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("latent-hmc", help="Bayesian computation in an autoencoder's latent space (the Banana-Biscuit-"
                  "Doughnut posterior): HMC in theta-space, an AE of the draws, HMC in its 2-D latent space; writes "
                  "the figures and the numbers (docs/latent_hmc.md).")
def latent_hmc(
    dim: int = typer.Option(2, "--dim", help="D, the number of parameters theta."),
    out: Path = typer.Option(Path("latent-hmc"), "--out", "-o", help="Folder for the figures, latent_hmc.json and the draws."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    fast: bool = typer.Option(False, "--fast", help="A few hundred draws and a few training steps (seconds)."),
    density: Optional[list[str]] = typer.Option(None, "--density", help="Latent density: pullback (with the decoder's volume term) and/or prior (without). [default: both]"),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds files."),
) -> None:
    def run_demo() -> dict:
        if dim < 2:
            raise UsageError(f"--dim must be >= 2, got {dim}")
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
            raise UsageError(f"{out} exists and is not empty; choose another --out or pass --force")
        from kgen.demos import latent_hmc as demo

        return demo.run(dim, out, fast=fast, seed=seed, densities=tuple(density or ("pullback", "prior")),
                        verbose=True)

    numbers = run_guarded(run_demo, interrupted="nothing of the demo is kept beyond the figures written")
    typer.echo(f"wrote the figures and {out / 'latent_hmc.json'} ({', '.join(sorted(numbers)[:6])}, ...)")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's own usage errors also become one line, exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="kgen", standalone_mode=False)
        extra = model_help(argv)
        if extra is not None:
            typer.echo("\n".join(extra))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("kgen: aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        # click's parse errors (vendored by typer) carry format_message() and exit_code 2.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `kgen`: show the help
            typer.echo(exc.format_message())
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `kgen {ctx.info_name} --help`)" if ctx is not None and ctx.info_name != "kgen" else ""
        typer.echo(f"kgen: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
