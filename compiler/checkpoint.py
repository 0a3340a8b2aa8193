"""Checkpoints on disk: a directory with `config.json` and `model.safetensors`, of two kinds.

- `"model_type": "rasp-ir"`: our own format. The config holds the TransformerConfig fields and
  `extra` (the compiler's vocabulary and input/output encoding); the weights use the
  TransformerLens names of `Transformer.state_dict()`.
  It also names, for Hugging Face, the modeling file written beside it (`auto_map`,
  compiler/hf_modeling.py), and its `activation_function` makes GPT2LMHeadModel refuse it
  rather than load a random GPT-2.
- `"model_type": "gpt2"`: a Hugging Face GPT-2 checkpoint, read without `transformers`. Conv1D
  weights are [in, out] like ours, so converting only splits heads out of `c_attn` and `c_proj`.
- `"model_type": "transformer-lens"` (or a bare dump of HookedTransformerConfig's fields): a
  HookedTransformer's state dict of the GPT-2 kind (compiler/tl_format.py).

Only JSON and safetensors are read, never pickles. Every problem found in a checkpoint is
reported at once, in one CheckpointError with one C3xx diagnostic per problem.
"""

from __future__ import annotations

import json
import math
import os
import re
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.files import atomic_write_bytes, atomic_write_text
from rasp_ir.jsondata import dumps

from . import tl_format
from .transformer import ACTIVATIONS, Transformer, TransformerConfig

CONFIG, WEIGHTS = "config.json", "model.safetensors"
MODELING = "modeling_rasp_ir.py"            # Hugging Face's remote code (compiler/hf_modeling.py)
# GPT2LMHeadModel.from_pretrained reads this as an activation name and fails with it in the
# message: a rasp-ir directory never loads as a randomly initialised GPT-2.
NOT_GPT2 = ("not-gpt2: a rasp-ir model; load it with AutoModelForCausalLM.from_pretrained(DIR, "
            "trust_remote_code=True)")
# What Hugging Face writes or reads in a config.json beside our fields; loading ignores them.
_HF_FIELDS = {"architectures", "auto_map", "torch_dtype", "dtype", "transformers_version",
              "activation_function", "bos_token_id", "eos_token_id", "pad_token_id",
              "_name_or_path"}
FORMAT_VERSION = 1
PREFIX = "transformer."                                   # HF's GPT2LMHeadModel key prefix
_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # old causal-mask buffers, not weights
_HF_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new",
                   "gelu": "gelu", "relu": "relu"}


class CheckpointError(RaspError):
    """Everything wrong with one checkpoint: one C3xx diagnostic per problem."""


def _problem(code: str, path: Path, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, f"{path}: {message}", hint=hint)


def _fail_if(problems: list[Diagnostic]) -> None:
    if problems:
        raise CheckpointError(problems)


# ---------------------------------------------------------------------------- saving

def save_model(model: Transformer, directory: str | os.PathLike,
               extra: dict | None = None) -> Path:
    """Write `model` to `directory` in the rasp-ir format; `extra` is any JSON-ready metadata.

    Each file is written to a temporary name in the same directory and renamed into place, so a
    reader never sees a half-written file. Returns the directory.
    """
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    config = {"model_type": "rasp-ir", "format_version": FORMAT_VERSION,
              **model.config.to_dict(), "extra": dict(extra or {}),
              "architectures": ["RaspIrForCausalLM"],
              "auto_map": {"AutoConfig": "modeling_rasp_ir.RaspIrConfig",
                           "AutoModelForCausalLM": "modeling_rasp_ir.RaspIrForCausalLM"},
              "torch_dtype": str(tensors["embed.W_E"].dtype).removeprefix("torch."),
              "activation_function": NOT_GPT2}
    # standard JSON (an output value of 1e999 is {"float": "inf"}, not Infinity); a
    # non-JSON `extra` fails here, before any write
    text = dumps(config, indent=2) + "\n"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    modeling = (Path(__file__).parent / "hf_modeling.py").read_text(encoding="utf-8")
    atomic_write_text(directory / MODELING, modeling)
    return _write(directory, tensors, text)


def save_hf_gpt2(model: Transformer, directory: str | os.PathLike) -> Path:
    """Write `model` as a Hugging Face GPT-2 checkpoint that GPT2LMHeadModel can load.

    Needs what GPT-2 can express: LayerNorm on, causal attention, d_head * n_heads = d_model,
    one vocabulary in and out, no unembedding bias, scale 1/sqrt(d_head) or 1; otherwise raises
    CheckpointError (C312) with every reason. The unembedding is saved tied (no lm_head.weight)
    when W_U equals W_E transposed. Returns the directory.
    """
    c, directory = model.config, Path(directory)
    sd = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    reasons = []
    if not c.layer_norm:
        reasons.append("LayerNorm is off, and GPT-2 always applies it")
    if not c.causal:
        reasons.append("attention is bidirectional, and GPT-2 is causal")
    if c.n_heads * c.d_head != c.d_model:
        reasons.append(f"n_heads * d_head = {c.n_heads * c.d_head} differs from "
                       f"d_model = {c.d_model}")
    if c.d_vocab_out != c.vocab_size:
        reasons.append(f"d_vocab_out = {c.d_vocab_out} differs from vocab_size = {c.vocab_size}")
    if sd["unembed.b_U"].count_nonzero():
        reasons.append("the unembedding bias b_U is not zero, and GPT-2's lm_head has no bias")
    scaled = c.attn_scale is None or math.isclose(c.attn_scale, c.d_head ** -0.5, rel_tol=1e-6)
    if not scaled and c.attn_scale != 1.0:
        reasons.append(f"attn_scale = {c.attn_scale} is neither 1/sqrt(d_head) nor 1")
    _fail_if([_problem("C312", directory, f"cannot save as GPT-2: {r}",
                       hint="save_model keeps any model in the rasp-ir format") for r in reasons])
    tied = torch.equal(sd["unembed.W_U"], sd["embed.W_E"].T)
    tensors = {PREFIX + name: t.contiguous() for name, t in _to_gpt2(sd, c).items()}
    if not tied:
        tensors["lm_head.weight"] = sd["unembed.W_U"].T.contiguous()
    config = {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size, "n_positions": c.n_positions, "n_embd": c.d_model,
        "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.d_mlp,
        "activation_function": c.activation, "layer_norm_epsilon": c.ln_eps,
        "scale_attn_weights": scaled, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": tied,
        "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "initializer_range": 0.02,
        "torch_dtype": str(sd["embed.W_E"].dtype).removeprefix("torch."),
    }
    return _write(directory, tensors, dumps(config, indent=2) + "\n")


def _write(directory: Path, tensors: dict[str, torch.Tensor], config_text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # Weights first: a directory whose config.json is new always has its new weights too.
    atomic_write_bytes(directory / WEIGHTS, save(tensors, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG, config_text)
    return directory


# ---------------------------------------------------------------------------- loading

def load_model(directory: str | os.PathLike,
               dtype: torch.dtype | None = None) -> tuple[Transformer, dict]:
    """Load a rasp-ir or Hugging Face GPT-2 checkpoint directory, in eval mode.

    Returns (model, metadata) with metadata = {"model_type": "rasp-ir" | "gpt2" |
    "transformer-lens", "config_json": the raw config.json (a bare TransformerLens config is
    wrapped as {"model_type": ..., "cfg": ...}), "extra": the `extra` dict ({} for GPT-2)}.
    dtype defaults to float64 for float64 weights and float32 otherwise. Raises
    CheckpointError listing every problem: missing files, bad JSON, unreadable safetensors, bad
    config fields, missing, unexpected or misshapen weights.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError([_problem("C301", directory, "no such checkpoint directory")])
    config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    problems: list[Diagnostic] = []
    raw = _read_config(config_path, problems)
    header = _read_header(weights_path, problems)
    kind = None if raw is None else raw.get("model_type")
    if raw is not None and tl_format.looks_like_tl(raw):
        kind, raw = tl_format.MODEL_TYPE, {"model_type": tl_format.MODEL_TYPE, "cfg": raw}
    config = tied = None
    how: dict = {}
    if kind == "gpt2":
        config, tied = _gpt2_config(raw, config_path, problems)
    elif kind == "rasp-ir":
        config = _rasp_ir_config(raw, config_path, problems)
    elif kind == tl_format.MODEL_TYPE:
        config, how = _tl_config(raw, config_path, problems)
    elif raw is not None:
        found = f"model_type is {json.dumps(kind)}" if "model_type" in raw else "no model_type"
        problems.append(_problem("C304", config_path, found, hint='expected "gpt2" (Hugging '
                                 'Face GPT-2), "rasp-ir" (saved by this project) or '
                                 '"transformer-lens" (rasp export --to transformer-lens)'))
    # names: our key for each tensor to read -> its name in the file
    names = {}
    if header is not None:
        if kind == "gpt2":
            names = _gpt2_names(header, weights_path, problems)
        else:
            drop = tl_format.BUFFER if kind == tl_format.MODEL_TYPE else None
            names = {name: name for name in header if not (drop and drop.fullmatch(name))}
    layers = {int(m.group(1)) for m in map(_LAYER.search, header or ()) if m}
    if config is not None and header is not None and config.n_layers > len(layers) + 1:
        # one diagnostic, not one per missing weight (n_layer 100000 once listed 1.2 million)
        problems.append(_problem("C306", weights_path, f"config.json has {config.n_layers:,} "
                                 f"layers; the file holds weights for {len(layers)}"))
        config = None
    if config is not None and header is not None:
        required, optional = _expected_shapes(config, kind, tied)
        for name in tl_format.synthesized(config, how):
            required.pop(name, None)
        _check_weights({key: header[name] for key, name in names.items()},
                       required, optional, names, weights_path, problems)
    _fail_if(problems)

    tensors = _read_tensors(weights_path, names)
    if kind == "gpt2":
        tensors = _from_gpt2(tensors, config, tied, weights_path)
    elif kind == tl_format.MODEL_TYPE:
        tensors = tl_format.completed(tensors, config, how)
    _fail_if(_non_finite(tensors, weights_path))
    if dtype is None:
        dtype = torch.float64 if tensors["embed.W_E"].dtype == torch.float64 else torch.float32
    with torch.device("meta"):      # no memory, no random init: the tensors are assigned below
        model = Transformer(config)
    model.load_state_dict({k: t.to(dtype).contiguous() for k, t in tensors.items()}, assign=True)
    extra = raw.get("extra", {}) if kind in ("rasp-ir", tl_format.MODEL_TYPE) else {}
    return model.eval(), {"model_type": kind, "config_json": raw, "extra": extra}


_LAYER = re.compile(r"(?:^|\.)(?:blocks|h)\.(\d+)\.")      # a layer's index in a weight's name


def _non_finite(tensors: dict, path: Path) -> list[Diagnostic]:
    """C315 for each weight holding NaN or infinity: such a model computes NaN, which argmax
    and comparisons turn into confident-looking numbers (a NaN checkpoint once evaluated to
    0.56 and extracted to a program with "match 1.0000"), so it is refused before any number
    is reported."""
    out = []
    for name, t in tensors.items():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            kinds = [k for k, test in (("NaN", torch.isnan), ("infinite", torch.isinf))
                     if bool(test(t).any())]
            out.append(_problem("C315", path, f"weight {name} has {bad:,} of {t.numel():,} "
                                f"entries {' or '.join(kinds)}",
                                hint="the training diverged or the file was damaged; retrain "
                                "or restore the checkpoint"))
    return out


def _read_config(path: Path, problems: list[Diagnostic]) -> dict | None:
    if not path.is_file():
        problems.append(_problem("C301", path, "config.json not found"))
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(_problem("C302", path, f"not readable as JSON ({exc})"))
        return None
    if not isinstance(raw, dict):
        problems.append(_problem("C302", path, f"a JSON {type(raw).__name__}, not an object"))
        return None
    return raw


def _read_header(path: Path, problems: list[Diagnostic]) -> dict[str, tuple] | None:
    """{name: (shape, safetensors dtype)} from the file's header, or None if it cannot be read."""
    if not path.is_file():
        others = sorted(p.name for p in path.parent.iterdir()
                        if p.suffix == ".bin" or p.name.endswith(".index.json"))
        hint = (f"found {', '.join(others)}: only an unsharded model.safetensors is read, "
                "and pickled weights never are") if others else None
        problems.append(_problem("C301", path, "model.safetensors not found", hint=hint))
        return None
    try:
        with safe_open(path, framework="pt") as f:
            return {name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype())
                    for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        problems.append(_problem("C303", path, f"unreadable safetensors file ({exc})",
                                 hint="the file is truncated or corrupted; write it again"))
        return None


def _read_tensors(path: Path, names: dict[str, str]) -> dict[str, torch.Tensor]:
    try:
        with safe_open(path, framework="pt") as f:
            return {key: f.get_tensor(name) for key, name in names.items()}
    except (SafetensorError, OSError) as exc:   # e.g. the file changed since its header was read
        problem = _problem("C303", path, f"unreadable safetensors file ({exc})")
        raise CheckpointError([problem]) from None


def _gpt2_names(header: dict, path: Path, problems: list[Diagnostic]) -> dict[str, str]:
    """GPT-2 key without the `transformer.` prefix -> name in the file; mask buffers dropped."""
    names = {}
    for name in header:
        key = name.removeprefix(PREFIX)
        if _BUFFER.fullmatch(key):
            continue
        if key in names:
            problems.append(_problem("C308", path, f"unexpected weight '{name}': '{key}' is "
                                     f"there both with and without the '{PREFIX}' prefix"))
        else:
            names[key] = name
    return names


def _expected_shapes(config: TransformerConfig, kind: str, tied: bool) -> tuple[dict, dict]:
    """(required, optional) weights: {our key: shape}."""
    if kind == "gpt2":
        lm_head = {"lm_head.weight": (config.vocab_size, config.d_model)}
        return _gpt2_shapes(config, tied), lm_head if tied else {}
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in Transformer(config).state_dict().items()}, {}


def _check_weights(found: dict[str, tuple], required: dict, optional: dict,
                   names: dict[str, str], path: Path, problems: list[Diagnostic]) -> None:
    """Report every missing, unexpected, misshapen or non-float weight."""
    # A missing weight is named the way the file names the others (with or without the prefix).
    prefix = PREFIX if any(n.startswith(PREFIX) for n in names.values()) else ""
    for key, shape in {**required, **optional}.items():
        name = names.get(key, key if key == "lm_head.weight" else prefix + key)
        if key not in found:
            if key in required:
                problems.append(_problem("C307", path, f"missing weight '{name}' "
                                         f"of shape {list(shape)}"))
        elif found[key][0] != shape:
            problems.append(_problem("C309", path, f"weight '{name}' has shape "
                                     f"{list(found[key][0])}, expected {list(shape)}"))
        elif not found[key][1].startswith(("F", "BF")):
            problems.append(_problem("C310", path, f"weight '{name}' has dtype {found[key][1]}"))
    for key in sorted(found.keys() - required.keys() - optional.keys()):
        problems.append(_problem("C308", path, f"unexpected weight '{names[key]}'"))


# ---------------------------------------------------------------------------- config fields

def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)      # JSON true is not a count


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What a config field must be: (test, the words a message uses for it).
POSITIVE = (lambda v: _int(v) and v > 0, "a positive integer")
COUNT = (lambda v: _int(v) and v >= 0, "a non-negative integer")
EPSILON = (lambda v: _real(v) and v > 0, "a positive number")
BOOL = (lambda v: isinstance(v, bool), "true or false")
_MISSING = object()


def _field(raw: dict, name: str, kind: tuple, *, path: Path, problems: list, default=_MISSING):
    """raw[name] if it is of `kind`, the default if absent; else a C305 problem and None."""
    test, wanted = kind
    if name not in raw:
        if default is _MISSING:
            problems.append(_problem("C305", path, f"missing field '{name}' ({wanted})"))
            return None
        return default
    if not test(raw[name]):
        problems.append(_problem("C305", path, f"field '{name}' is {json.dumps(raw[name])}, "
                                 f"expected {wanted}"))
        return None
    return raw[name]


def _gpt2_config(raw: dict, path: Path, problems: list) -> tuple[TransformerConfig | None, bool]:
    """The TransformerConfig of a GPT-2 config.json, and whether the unembedding is tied."""
    start = len(problems)
    get = partial(_field, raw, path=path, problems=problems)
    d_model, n_heads = get("n_embd", POSITIVE), get("n_head", POSITIVE)
    n_layers, vocab = get("n_layer", COUNT), get("vocab_size", POSITIVE)
    # Older configs name the context length n_ctx.
    n_positions = get("n_ctx" if "n_ctx" in raw and "n_positions" not in raw else "n_positions",
                      POSITIVE)
    n_inner = get("n_inner", (lambda v: v is None or POSITIVE[0](v), "null or a positive "
                              "integer"), default=None)
    activation = get("activation_function", (lambda v: v in _HF_ACTIVATIONS, "one of "
                     + ", ".join(_HF_ACTIVATIONS)), default="gelu_new")
    eps = get("layer_norm_epsilon", EPSILON, default=1e-5)
    scaled = get("scale_attn_weights", BOOL, default=True)
    by_layer = get("scale_attn_by_inverse_layer_idx", BOOL, default=False)
    tied = get("tie_word_embeddings", BOOL, default=True)
    if d_model and n_heads and d_model % n_heads:
        problems.append(_problem("C306", path, f"n_embd = {d_model} is not divisible by "
                                 f"n_head = {n_heads}"))
    if by_layer:
        problems.append(_problem("C306", path, "scale_attn_by_inverse_layer_idx = true is not "
                                 "supported", hint="the transformer has one attention scale"))
    if len(problems) > start:
        return None, bool(tied)
    config = TransformerConfig(
        vocab_size=vocab, n_positions=n_positions, d_model=d_model, n_layers=n_layers,
        n_heads=n_heads, d_head=d_model // n_heads, d_mlp=n_inner or 4 * d_model,
        layer_norm=True, ln_eps=eps, activation=_HF_ACTIVATIONS[activation], causal=True,
        attn_scale=None if scaled else 1.0)
    return config, tied


# field: (kind, required); absent optional fields take TransformerConfig's defaults.
_RASP_IR_FIELDS = {
    "vocab_size": (POSITIVE, True), "n_positions": (POSITIVE, True),
    "d_model": (POSITIVE, True), "n_layers": (COUNT, True), "n_heads": (POSITIVE, True),
    "d_head": (POSITIVE, False), "d_mlp": (POSITIVE, False), "d_vocab_out": (POSITIVE, False),
    "layer_norm": (BOOL, False), "ln_eps": (EPSILON, False), "causal": (BOOL, False),
    "activation": ((lambda v: v in ACTIVATIONS, "one of " + ", ".join(ACTIVATIONS)), False),
    "attn_scale": ((lambda v: v is None or _real(v), "null or a number"), False),
}


def _rasp_ir_config(raw: dict, path: Path, problems: list) -> TransformerConfig | None:
    start = len(problems)
    version = raw.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        problems.append(_problem("C306", path, f"format_version {json.dumps(version)} is not "
                                 f"supported", hint=f"this rasp-ir reads version {FORMAT_VERSION}"))
    if not isinstance(raw.get("extra", {}), dict):
        problems.append(_problem("C305", path, "field 'extra' is not a JSON object"))
    for name in sorted(raw.keys() - _RASP_IR_FIELDS.keys() - _HF_FIELDS
                       - {"model_type", "format_version", "extra"}):
        problems.append(_problem("C305", path, f"unknown field '{name}'"))
    fields = {}
    for name, (kind, required) in _RASP_IR_FIELDS.items():
        value = _field(raw, name, kind, path=path, problems=problems,
                       default=_MISSING if required else None)
        if value is not None:
            fields[name] = value
    if len(problems) > start:
        return None
    try:    # relations between fields, e.g. n_heads > d_model leaves no room for a head
        return TransformerConfig(**fields)
    except (TypeError, ValueError) as exc:
        problems.append(_problem("C306", path, f"inconsistent fields: {exc}"))
        return None


def _tl_config(raw: dict, path: Path, problems: list) -> tuple[TransformerConfig | None, dict]:
    cfg = raw.get("cfg")
    if not isinstance(cfg, dict):
        problems.append(_problem("C305", path, "field 'cfg' (the HookedTransformerConfig "
                                 "fields) is missing or not a JSON object"))
        return None, {}
    if not isinstance(raw.get("extra", {}), dict):
        problems.append(_problem("C305", path, "field 'extra' is not a JSON object"))
    config, how, found = tl_format.config_from_tl(cfg)
    problems += [_problem("C306" if "supported" in p or "inconsistent" in p else "C305",
                          path, p) for p in found]
    return config, how


# ---------------------------------------------------------------------------- GPT-2 layout

def _gpt2_shapes(c: TransformerConfig, tied: bool) -> dict[str, tuple]:
    """Every weight of a GPT-2 checkpoint (without the `transformer.` prefix) and its shape."""
    D, M, V = c.d_model, c.d_mlp, c.vocab_size
    shapes = {"wte.weight": (V, D), "wpe.weight": (c.n_positions, D),
              "ln_f.weight": (D,), "ln_f.bias": (D,)}
    if not tied:
        shapes["lm_head.weight"] = (V, D)
    for i in range(c.n_layers):
        shapes.update({f"h.{i}.{name}": shape for name, shape in {
            "ln_1.weight": (D,), "ln_1.bias": (D,), "ln_2.weight": (D,), "ln_2.bias": (D,),
            "attn.c_attn.weight": (D, 3 * D), "attn.c_attn.bias": (3 * D,),
            "attn.c_proj.weight": (D, D), "attn.c_proj.bias": (D,),
            "mlp.c_fc.weight": (D, M), "mlp.c_fc.bias": (M,),
            "mlp.c_proj.weight": (M, D), "mlp.c_proj.bias": (D,)}.items()})
    return shapes


def _copied(i: int) -> dict[str, str]:
    """GPT-2 names of layer i whose tensors are ours unchanged, mapped to our names."""
    return {f"h.{i}.{hf}": f"blocks.{i}.{ours}" for hf, ours in {
        "ln_1.weight": "ln1.w", "ln_1.bias": "ln1.b", "ln_2.weight": "ln2.w", "ln_2.bias": "ln2.b",
        "attn.c_proj.bias": "attn.b_O", "mlp.c_fc.weight": "mlp.W_in", "mlp.c_fc.bias": "mlp.b_in",
        "mlp.c_proj.weight": "mlp.W_out", "mlp.c_proj.bias": "mlp.b_out"}.items()}


def _from_gpt2(t: dict[str, torch.Tensor], c: TransformerConfig, tied: bool,
               path: Path) -> dict[str, torch.Tensor]:
    """GPT-2 tensors (prefix stripped) to our state dict."""
    H, E, D = c.n_heads, c.d_head, c.d_model
    if tied and "lm_head.weight" in t and not torch.equal(t["lm_head.weight"], t["wte.weight"]):
        raise CheckpointError([_problem("C311", path, "lm_head.weight differs from wte.weight",
                                        hint="if they are meant to differ, set "
                                        "tie_word_embeddings to false in config.json")])
    unembed = t["wte.weight"] if tied else t["lm_head.weight"]            # (V, D)
    sd = {"embed.W_E": t["wte.weight"], "pos_embed.W_pos": t["wpe.weight"],
          "ln_final.w": t["ln_f.weight"], "ln_final.b": t["ln_f.bias"],
          "unembed.W_U": unembed.T, "unembed.b_U": unembed.new_zeros(c.vocab_size)}
    for i in range(c.n_layers):
        sd.update({ours: t[hf] for hf, ours in _copied(i).items()})
        p = f"blocks.{i}.attn."
        weights = t[f"h.{i}.attn.c_attn.weight"].split(D, dim=1)          # 3 × (D, H*E)
        biases = t[f"h.{i}.attn.c_attn.bias"].split(D)                    # 3 × (H*E,)
        for name, w, b in zip("QKV", weights, biases):
            sd[p + "W_" + name] = w.reshape(D, H, E).transpose(0, 1)       # (H, D, E)
            sd[p + "b_" + name] = b.reshape(H, E)
        sd[p + "W_O"] = t[f"h.{i}.attn.c_proj.weight"].reshape(H, E, D)   # rows are heads
    return sd


def _to_gpt2(sd: dict[str, torch.Tensor], c: TransformerConfig) -> dict[str, torch.Tensor]:
    """Our state dict to GPT-2 tensors (prefix not added, lm_head left to the caller)."""
    H, E, D = c.n_heads, c.d_head, c.d_model
    t = {"wte.weight": sd["embed.W_E"], "wpe.weight": sd["pos_embed.W_pos"],
         "ln_f.weight": sd["ln_final.w"], "ln_f.bias": sd["ln_final.b"]}
    for i in range(c.n_layers):
        t.update({hf: sd[ours] for hf, ours in _copied(i).items()})
        p = f"blocks.{i}.attn."
        t[f"h.{i}.attn.c_attn.weight"] = torch.cat(                       # (D, 3 * H*E)
            [sd[p + "W_" + n].transpose(0, 1).reshape(D, H * E) for n in "QKV"], dim=1)
        t[f"h.{i}.attn.c_attn.bias"] = torch.cat([sd[p + "b_" + n].reshape(-1) for n in "QKV"])
        t[f"h.{i}.attn.c_proj.weight"] = sd[p + "W_O"].reshape(H * E, D)
    return t
