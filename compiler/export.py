"""Models out to the tools interpretability work runs in: TransformerLens and Hugging Face.

- `to_hooked_transformer(model)`: a TransformerLens HookedTransformer with the model's weights
  (no weight processing: the logits are the model's); `load_hooked_transformer(DIR)` does it
  for any directory `load_model` reads.
- `save_hooked_transformer(ht, DIR)`: a HookedTransformer of the GPT-2 kind written as a
  directory that `load_model` (and so `rasp eval`, `extract`, `verify`) reads.
- `export(DIR, OUT, to)`: `rasp export`. "transformer-lens" writes the TransformerLens
  directory; "hugging-face" writes a GPT-2 checkpoint when the model is one (LayerNorm,
  causal, …) and otherwise a rasp-ir directory with its own modeling file.

The sidecar files (task.json, acc.txt and the tokenizer's) are copied as they are.
TransformerLens is imported inside the functions that need it (the `[tl]` extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save

from rasp_ir.diagnostics import Diagnostic
from rasp_ir.files import atomic_write_bytes, atomic_write_text
from rasp_ir.jsondata import dumps

from . import tl_format
from .checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    load_model,
    save_hf_gpt2,
    save_model,
)
from .tokenizer import SPECIAL_TOKENS, TOKENIZER, TOKENIZER_CONFIG
from .transformer import Transformer

FORMATS = ("transformer-lens", "hugging-face")
SIDECARS = ("task.json", "acc.txt", TOKENIZER, SPECIAL_TOKENS, TOKENIZER_CONFIG)


def _transformer_lens():
    try:
        import transformer_lens
    except ImportError:
        raise CheckpointError([Diagnostic(
            "C314", "TransformerLens is not installed",
            hint="pip install 'rasp-ir[tl]' (or pip install transformer-lens)")]) from None
    return transformer_lens


def to_hooked_transformer(model: Transformer):
    """A HookedTransformer (no weight processing) holding `model`'s weights and dtype: every
    weight is loaded, none is left at its initial value, and the logits are the model's."""
    tl = _transformer_lens()
    sd = {k: t.detach().clone() for k, t in model.state_dict().items()}
    dtype = sd["embed.W_E"].dtype
    cfg = tl.HookedTransformerConfig(**tl_format.tl_config(model.config), dtype=dtype,
                                     device="cpu", init_weights=False)
    ht = tl.HookedTransformer(cfg)
    missing, unexpected = ht.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not tl_format.BUFFER.fullmatch(k)]
    if missing or unexpected:       # a TransformerLens whose names moved: say so, never guess
        raise CheckpointError([Diagnostic(
            "C312", f"TransformerLens {tl.__version__} names its weights differently: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}",
            hint="install the versions of the [tl] extra")])
    return ht.eval()


def load_hooked_transformer(directory: str | os.PathLike):
    """The HookedTransformer of any checkpoint directory `load_model` reads (rasp-ir, GPT-2,
    TransformerLens), with its weights' dtype."""
    return to_hooked_transformer(load_model(directory)[0])


def save_hooked_transformer(ht, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write a HookedTransformer of the GPT-2 kind (standard positions, LN, LNPre or none,
    gelu/gelu_new/relu) as a TransformerLens directory: model.safetensors (its state dict,
    buffers left out) and config.json. Raises CheckpointError if rasp-ir cannot run it."""
    cfg = {k: _jsonable(v) for k, v in ht.cfg.to_dict().items()}
    directory = Path(directory)
    _, _, problems = tl_format.config_from_tl(cfg)
    if problems:
        raise CheckpointError([Diagnostic("C312", f"{directory}: cannot save this "
                                          f"HookedTransformer: {p}") for p in problems])
    tensors = {k: t.detach().cpu().contiguous() for k, t in ht.state_dict().items()
               if not tl_format.BUFFER.fullmatch(k)}
    return _write_tl(directory, tensors, cfg, extra)


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value).removeprefix("torch.")           # dtype, device


def _write_tl(directory: Path, tensors: dict, cfg: dict, extra: dict | None) -> Path:
    text = dumps({"model_type": tl_format.MODEL_TYPE, "format_version": 1, "cfg": cfg,
                       "extra": dict(extra or {})}, indent=2) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS, save(tensors, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG, text)
    return directory


def export(source: str | os.PathLike, output: str | os.PathLike, to: str) -> dict:
    """Write the model in `source` to `output` in format `to` (one of FORMATS); returns
    {"format", "kind" (what was written), "files"}. Raises CheckpointError (C3xx)."""
    source, output = Path(source), Path(output)
    if to not in FORMATS:
        raise CheckpointError([Diagnostic("C312", f"unknown export format {to!r}",
                                          hint="one of " + ", ".join(FORMATS))])
    if output.resolve() == source.resolve():
        raise CheckpointError([Diagnostic("C312", f"{output}: the output is the checkpoint "
                                          "itself", hint="write to another directory")])
    model, metadata = load_model(source)
    extra = metadata.get("extra") or {}
    if to == "transformer-lens":
        tensors = {k: t.detach().cpu().contiguous() for k, t in model.state_dict().items()}
        _write_tl(output, tensors, tl_format.tl_config(model.config), extra)
        kind = "transformer-lens"
    elif extra or not _gpt2_expressible(model):
        save_model(model, output, extra)            # Hugging Face through its modeling file
        kind = "rasp-ir"
    else:
        save_hf_gpt2(model, output)
        _keep_token_ids(metadata["config_json"], output / CONFIG)
        kind = "gpt2"
    for name in SIDECARS:
        if (source / name).is_file():
            atomic_write_bytes(output / name, (source / name).read_bytes())
    if kind != "rasp-ir":
        (output / "modeling_rasp_ir.py").unlink(missing_ok=True)   # from an earlier export
    return {"format": to, "kind": kind,
            "files": sorted(p.name for p in output.iterdir() if p.is_file())}


def _gpt2_expressible(model: Transformer) -> bool:
    c = model.config
    sd = model.state_dict()
    return (c.layer_norm and c.causal and c.n_heads * c.d_head == c.d_model
            and c.d_vocab_out == c.vocab_size and not sd["unembed.b_U"].count_nonzero()
            and c.attn_scale in (None, 1.0))


def _keep_token_ids(source_config: dict, path: Path) -> None:
    """The special token ids of a GPT-2 source config, carried into the exported one."""
    kept = {k: source_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
            if k in source_config}
    if kept:
        config = json.loads(path.read_text(encoding="utf-8"))
        atomic_write_text(path, dumps({**config, **kept}, indent=2) + "\n")
