"""What `kgen export` prints: the listing, the signature table (as saved_model_cli shows it), how to
serve an export (the docker line, REST bodies and curl lines) and the report of one export."""

from __future__ import annotations

from pathlib import Path

from kgen.export import CHECK_BATCHES, REQUESTS_DIR, TOLERANCE, ExportResult


def format_listing(found: list[dict], out: str | Path) -> str:
    if not found:
        return f"no exports in {out}"
    lines = []
    for entry in found:
        served = max((v["version"] for v in entry["versions"] if v["complete"]), default=None)
        lines.append(f"{entry['name']}  ({entry['path']}; TF Serving serves version {served})")
        for v in entry["versions"]:
            signatures = ", ".join(v.get("signatures", {})) or "?"
            origin = f"{v.get('model', '?')} from {v.get('run', '?')}" if v.get("model") else "not written by kgen"
            missing = "" if v["complete"] else "  [no saved_model.pb]"
            lines.append(f"  {v['version']:>3}  {origin}  signatures: {signatures}{missing}")
    return "\n".join(lines)


def signature_table(defs: dict) -> str:
    """The signature defs as ``saved_model_cli show --dir DIR --all`` prints them."""
    lines = ["MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:", ""]
    for name, d in defs.items():
        lines.append(f"signature_def['{name}']:")
        for side, word in (("inputs", "input(s)"), ("outputs", "output(s)")):
            lines.append(f"  The given SavedModel SignatureDef contains the following {word}:")
            for key, t in d[side].items():
                shape = "(" + ", ".join(str(n) for n in t["shape"]) + ")" if len(t["shape"]) != 1 else f"({t['shape'][0]})"
                lines += [f"    {side}['{key}'] tensor_info:", f"        dtype: {t['dtype']}",
                          f"        shape: {shape}", f"        name: {t['name']}"]
        lines.append(f"  Method name is: {d['method']}")
    return "\n".join(lines)


def serving_instructions(result: ExportResult) -> str:
    """The docker line that serves the export, and a REST body and curl line per signature."""
    base = result.path.parent.resolve()
    url = f"http://localhost:8501/v1/models/{result.name}:predict"
    lines = ["Serve it (TF Serving's Docker image; REST on port 8501, gRPC on 8500 with -p 8500:8500):",
             f"  docker run -p 8501:8501 --mount type=bind,source={base},target=/models/{result.name} "
             f"-e MODEL_NAME={result.name} -t tensorflow/serving", ""]
    for signature in result.signatures:
        body_file = result.path / REQUESTS_DIR / f"{signature.name}.json"
        body = body_file.read_text()
        default = " (serving_default)" if signature is result.signatures[0] else ""
        inputs = ", ".join(f"{k} {_shape_text(s)} {d}" for k, (s, d) in signature.inputs.items())
        outputs = ", ".join(f"{k} {_shape_text(s)} {d}" for k, (s, d) in signature.outputs.items())
        lines.append(f"{signature.name}{default}: {inputs} -> {outputs}")
        if len(body) <= 300:
            lines.append(f"  body: {body}")
            lines.append(f"  curl -s -X POST {url} -d '{body}'")
        else:
            lines.append(f"  body: {body[:120]} ... ({len(body):,} characters in {body_file})")
            lines.append(f"  curl -s -X POST {url} -d @{body_file}")
    return "\n".join(lines)


def _shape_text(shape) -> str:
    return "[" + ",".join("N" if n is None else str(n) for n in shape) + "]"


def describe(result: ExportResult) -> str:
    """The CLI's report: where it went, the check, the table and how to serve it."""
    origin = f"{result.run}, trained on {result.trained_on or '?'}"
    if result.trained_on != "tensorflow":
        origin += ", exported from a TensorFlow-backend process"
    lines = [f"exported {result.model} ({origin}) as {result.name} version {result.version}: {result.path}",
             f"signatures: {', '.join(s.name for s in result.signatures)} (serving_default: {result.signatures[0].name})",
             f"ops: {len(result.ops)} native TensorFlow op types (no PyFunc, XlaCallModule or custom ops)"]
    if result.warmup:
        lines.append(f"warmup: {result.warmup} ({len(result.signatures)} PredictionLog records)")
    if result.check:
        worst = max((d for per in result.check["diffs"].values() for k, d in per.items() if k != "png_bytes"),
                    default=0.0)
        lines += [f"check: loaded in a fresh Python without kgen or Keras; every signature at batch "
                  f"{', '.join(map(str, CHECK_BATCHES))} matches Keras (max abs diff {worst:.2g} <= {TOLERANCE:g}, "
                  "relative for outputs beyond [-1, 1])",
                  "", signature_table(result.check["signature_defs"]), "", serving_instructions(result)]
    return "\n".join(lines)
