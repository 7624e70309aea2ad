"""Import official EDSR-PyTorch weights (EDSR and MDSR ``state_dict`` files) into edsr-tf.

The library half of ``python -m edsr_tf.convert`` (:mod:`edsr_tf.convert`, the command line):
reading a checkpoint, telling EDSR from MDSR and their sizes from its keys and shapes, and
mapping every tensor onto the Keras model. Errors are :class:`ConversionError`, worded
with this module's argument names (``preset``, ``scale``, ``n_resblocks``...), never flags;
a front end renders them with its own (:meth:`ConversionError.render`).

What the conversion does, key by key (EDSR-PyTorch ``src/model/{edsr,mdsr,common}.py``):

* conv weights go from torch's OIHW to Keras' HWIO;
* the upsampler convs' output channels are reordered from ``nn.PixelShuffle`` order
  (channel ``c*r*r + i*r + j``) to ``tf.nn.depth_to_space``'s DCR order
  (``(i*r + j)*C + c``), weight and bias alike;
* ``sub_mean``/``add_mean`` (frozen 1x1 convs) are checked to be the DIV2K mean shift;
  a checkpoint trained with another ``rgb_range`` (e.g. 1) is converted exactly by
  scaling every conv bias by ``255 / rgb_range`` (the network is positively homogeneous:
  conv + bias, ReLU, residual scaling, adds and pixel shuffles all commute with a
  positive scale once the biases carry it), so the result still works on [0, 255];
* MDSR is converted with ``res_scale`` 1 only: EDSR-PyTorch's MDSR builds its ResBlocks
  without residual scaling, while edsr-tf's MDSR applies ``res_scale``.

torch is imported only inside :func:`load_torch_state_dict`: importing this module (and
the rest of edsr-tf) never needs it. TensorFlow is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # keep this module (and `python -m edsr_tf.convert --help`) free of TensorFlow
    import keras

    from edsr_tf.models import ModelConfig

#: Wrapper keys under which training scripts commonly nest the state_dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "params")
#: Prefixes left by nn.DataParallel / DistributedDataParallel or an outer wrapper module.
_STRIP_PREFIXES = ("module.", "model.")
_MEAN_SHIFTS = (("sub_mean", -1.0), ("add_mean", +1.0))


class ConversionError(ValueError):
    """A checkpoint cannot be converted: unreadable, wrong keys/shapes, or not the chosen model.

    ``option``: the argument whose value does not fit (``"preset"``, ``"scale"``,
    ``"n_resblocks"``, ``"n_feats"``, ``"res_scale"``, ``"torch_checkpoint"``, ``"out"``),
    or None when the checkpoint itself cannot be read or converted. The message names
    arguments through ``{name}`` fields of ``template`` whose values are in ``args``
    (kept as ``arguments``);
    ``str(e)`` spells them ``name=value`` (``name`` alone for a None value), and
    :meth:`render` lets a front end spell them as its flags.
    """

    def __init__(self, template: str, *, option: str | None = None,
                 args: Mapping[str, Any] | None = None, prefix: str = ""):
        self.template = template
        self.option = option
        self.arguments = dict(args or {})  # (``self.args`` is the exception's own)
        self.prefix = prefix
        super().__init__(self.render())

    def render(self, spell: Callable[[str, Any], str] | None = None) -> str:
        """The message with each argument written by ``spell(name, value)``."""
        spell = spell or _spell_argument
        body = (self.template.format(**{k: spell(k, v) for k, v in self.arguments.items()})
                if self.arguments else self.template)
        return f"{self.prefix}: {body}" if self.prefix else body

    def with_prefix(self, prefix: str) -> "ConversionError":
        """The same error, its message starting with ``prefix: `` (e.g. the checkpoint's path)."""
        return ConversionError(self.template, option=self.option, args=self.arguments,
                               prefix=f"{prefix}: {self.prefix}" if self.prefix else prefix)


def _spell_argument(name: str, value: Any) -> str:
    return name if value is None else f"{name}={value}"


def format_scales(scales: int | Sequence[int]) -> str:
    """``3`` or ``2,4``: scales as the ``scale`` argument (and ``--scale``) takes them."""
    if isinstance(scales, (int, np.integer)):
        return str(int(scales))
    return ",".join(str(int(s)) for s in scales)


class ConversionWarning(UserWarning):
    """Converted, but the result may not reproduce the PyTorch model exactly."""


@dataclasses.dataclass(frozen=True)
class CheckpointLayout:
    """What a state_dict's keys and shapes say about the network that wrote it."""

    arch: str  # "edsr" or "mdsr"
    n_resblocks: int
    n_feats: int
    #: EDSR: its one scale. MDSR: the scale of ``upsample.{i}`` for each i (same i as
    #: ``pre_process.{i}``), e.g. (2, 3, 4) for the official models.
    scales: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Conv:
    """One torch conv (``{torch}.weight``/``.bias``) and the Keras Conv2D it becomes."""

    torch: str
    keras: str
    kernel: int
    cin: int
    cout: int
    shuffle: int | None = None  # r of the PixelShuffle that follows, if any


# --------------------------------------------------------------------------- reading


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch checkpoint into ``{key: float32 array}`` (see :func:`normalize_state_dict`).

    Loads with ``weights_only=True`` (no arbitrary code runs), on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file", option="torch_checkpoint")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConversionError(f"{path}: cannot read ({e.strerror or e})") from None
    # torch.save writes a zip archive (legacy files: a pickle, protocol >= 2); anything else
    # (a text file) made torch fail with a bare "KeyError: 101" (the pickle opcode 'e').
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ConversionError(
            f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive; this file starts "
            f"with {magic!r})"
        )
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch); "
            "the rest of edsr-tf does not"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch colours some messages
        # torch < 2.4: "Unsupported global: GLOBAL x"; 2.4+: "Trying to load unsupported GLOBAL x
        # whose module y is blocked", after advice to re-run with weights_only=False (never ours).
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
        if found:
            raise ConversionError(
                f"{path}: pickles a Python object ({found.group(1)}), not only tensors, so "
                "torch.load(weights_only=True) refuses it; re-save it with "
                "torch.save(model.state_dict(), ...)"
            ) from None
        found = re.search(r"WeightsUnpickler error: \s*(.+)", text)
        first = found.group(1) if found else (text.splitlines() or [""])[0]
        first = first.strip()[:200]
        if "weights_only" in first:  # torch's advice to load unsafely, not a reason
            first = "refused by torch.load(weights_only=True)"
        if not first and isinstance(e, EOFError):
            first = "empty or truncated file"
        raise ConversionError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first})"
        ) from None
    return normalize_state_dict(obj, source=str(path))


def _is_tensor(v: Any) -> bool:
    return hasattr(v, "shape") and (hasattr(v, "detach") or isinstance(v, np.ndarray))


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # torch.Tensor / nn.Parameter, without importing torch here
        v = v.detach().cpu().float().numpy()
    return np.asarray(v, dtype=np.float32)


def normalize_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """A raw state_dict from what a checkpoint holds.

    Accepts a raw state_dict, one nested under ``state_dict``/``model``/
    ``model_state_dict``/``params``, and keys prefixed by ``module.`` (DataParallel) or
    ``model.``. Values become float32 NumPy arrays.
    """
    for _ in range(4):  # wrappers may nest, e.g. {"model": {"state_dict": ...}}
        if not isinstance(obj, Mapping) or (obj and all(_is_tensor(v) for v in obj.values())):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f"{source}: expected a state_dict (a mapping of parameter names to tensors), "
            f"got {type(obj).__name__}"
        )
    if not obj:
        raise ConversionError(f"{source}: the state_dict is empty")
    bad = [str(k) for k, v in obj.items() if not _is_tensor(v)]
    if bad:
        raise ConversionError(
            f"{source}: entry {bad[0]!r} is not a tensor ({type(obj[bad[0]]).__name__}) "
            f"(keys: {_preview(map(str, obj))})"
        )
    sd = {str(k): v for k, v in obj.items()}
    stripped = True
    while stripped:
        stripped = False
        for prefix in _STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped = True
    return {k: _to_numpy(v) for k, v in sd.items()}


def _preview(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --------------------------------------------------------------------------- layout


def _get(sd: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    if key not in sd:
        raise ConversionError(f"missing key {key!r} in the checkpoint")
    value = sd[key]
    if value.ndim != ndim:
        raise ConversionError(
            f"key {key!r}: checkpoint shape {tuple(value.shape)}, expected a {ndim}-D tensor"
        )
    return value


def _upsampler_scale(sd: Mapping[str, np.ndarray], prefix: str, n_feats: int) -> int:
    """Scale of the ``common.Upsampler`` whose convs are ``{prefix}0``, ``{prefix}2``, ..."""
    stages = 0
    while f"{prefix}{2 * stages}.weight" in sd:
        stages += 1
    first = _get(sd, f"{prefix}0.weight", 4)
    out = first.shape[0]
    if stages == 1 and out == 9 * n_feats:
        return 3
    if out == 4 * n_feats and stages in (1, 2, 3):
        return 2**stages
    raise ConversionError(
        f"key {prefix}0.weight: checkpoint shape {tuple(first.shape)} with {stages} upsampler "
        f"conv(s) is not a x2/x3/x4/x8 upsampler for {n_feats} features "
        f"(expected output channels {4 * n_feats} or {9 * n_feats})"
    )


def inspect_state_dict(sd: Mapping[str, np.ndarray]) -> CheckpointLayout:
    """Architecture, blocks, features and scale(s) of an EDSR-PyTorch state_dict."""
    is_mdsr = any(k.startswith(("pre_process.", "upsample.")) for k in sd)
    n_feats = int(_get(sd, "head.0.weight", 4).shape[0])
    n_resblocks = 0
    while f"body.{n_resblocks}.body.0.weight" in sd:
        n_resblocks += 1
    if not is_mdsr:
        scale = _upsampler_scale(sd, "tail.0.", n_feats)
        return CheckpointLayout("edsr", n_resblocks, n_feats, (scale,))
    n_up = 0
    while f"upsample.{n_up}.0.weight" in sd:
        n_up += 1
    n_pre = 0
    while f"pre_process.{n_pre}.0.body.0.weight" in sd:
        n_pre += 1
    if n_up == 0:
        raise ConversionError("missing key 'upsample.0.0.weight' in the MDSR checkpoint")
    if n_pre != n_up:
        raise ConversionError(
            f"MDSR checkpoint has {n_pre} pre_process branches but {n_up} upsample branches"
        )
    scales = tuple(_upsampler_scale(sd, f"upsample.{i}.", n_feats) for i in range(n_up))
    if len(set(scales)) != len(scales):
        raise ConversionError(f"MDSR checkpoint has repeated upsampler scales {scales}")
    return CheckpointLayout("mdsr", n_resblocks, n_feats, scales)


def resolve_config(
    layout: CheckpointLayout,
    preset: str,
    scale: int | Sequence[int] | None = None,
    *,
    n_resblocks: int | None = None,
    n_feats: int | None = None,
    res_scale: float | None = None,
) -> "ModelConfig":
    """The :class:`ModelConfig` to build for ``preset``, checked against the checkpoint.

    Blocks and features not given explicitly must match the preset (an error names
    both, and the arguments that override them). ``scale`` defaults to the checkpoint's
    scale(s); for MDSR it may pick a subset of them. MDSR takes ``res_scale`` 1 only
    (EDSR-PyTorch's MDSR has no residual scaling). Errors carry the ``option`` at fault.
    """
    from edsr_tf.models.config import PRESETS, ConfigError, ModelConfig, parse_scales

    if preset not in PRESETS:
        raise ConversionError(
            "unknown {preset}: expected one of " + ", ".join(sorted(PRESETS)),
            option="preset", args={"preset": preset})
    arch, p_blocks, p_feats, p_res = PRESETS[preset]
    if arch != layout.arch:
        what = "an MDSR (has pre_process.*/upsample.* keys)" if layout.arch == "mdsr" else "an EDSR"
        raise ConversionError(
            f"the checkpoint is {what} state_dict but {{preset}} is an {arch.upper()} preset",
            option="preset", args={"preset": preset})
    needed = {
        name: found
        for name, given, preset_value, found in (
            ("n_resblocks", n_resblocks, p_blocks, layout.n_resblocks),
            ("n_feats", n_feats, p_feats, layout.n_feats),
        )
        if given is None and found != preset_value
    }
    if needed:
        # res_scale is not in the weights, so a silent guess could give wrong outputs.
        give = " ".join(f"{{{name}}}" for name in needed)
        raise ConversionError(
            f"the checkpoint has {layout.n_resblocks} residual blocks and {layout.n_feats} "
            f"features but {{preset}} has {p_blocks} and {p_feats}; choose the matching "
            f"preset, or give {give} (and {{res_scale}} if not {p_res:g}) for a "
            "non-standard network",
            option="preset", args={"preset": preset, **needed, "res_scale": None})
    try:
        scales = parse_scales(scale)
    except ConfigError as e:  # not integers
        raise ConversionError(str(e), option="scale") from None
    if scales is None:
        scales = layout.scales
    else:
        if any(s not in layout.scales for s in scales):
            ups = "upsamplers are" if len(layout.scales) > 1 else "upsampler is"
            raise ConversionError(
                f"{{scale}}: the checkpoint's {ups} for x{', x'.join(map(str, layout.scales))}",
                option="scale", args={"scale": format_scales(scales)})
        if arch == "edsr" and len(scales) != 1:
            raise ConversionError(
                "{scale}: an EDSR checkpoint has one scale", option="scale",
                args={"scale": format_scales(scales)})
    if arch == "mdsr":
        scales = tuple(sorted(scales))
    try:
        config = ModelConfig(
            arch=arch, scales=scales, n_resblocks=p_blocks if n_resblocks is None else n_resblocks,
            n_feats=p_feats if n_feats is None else n_feats,
            res_scale=p_res if res_scale is None else res_scale, preset=preset,
        )
    except ConfigError as e:  # sizes out of bounds (the model config's one check): its field is the option
        fields = ["scale" if f == "scales" else f for f in e.fields]
        raise ConversionError(str(e), option=fields[0] if fields else None) from None
    if arch == "mdsr" and config.res_scale != 1.0:
        raise ConversionError(
            "EDSR-PyTorch's MDSR has no residual scaling (its ResBlocks use 1) but edsr-tf's "
            "MDSR applies res_scale, so {res_scale} would change the outputs; convert MDSR "
            "with res_scale 1", option="res_scale", args={"res_scale": f"{config.res_scale:g}"})
    if (config.n_resblocks, config.n_feats, config.res_scale) != (p_blocks, p_feats, p_res):
        # The file must not claim a preset whose architecture it does not have.
        config = dataclasses.replace(config, preset=None)
    return config


def _conv_plan(config: "ModelConfig", source_index: Mapping[int, int]) -> list[_Conv]:
    """Every conv of ``config``'s Keras model and the torch key it comes from."""
    from edsr_tf.models.blocks import upsampler_stages

    f, b = config.n_feats, config.n_resblocks
    plan = [_Conv("head.0", "head", 3, 3, f)]
    for i in range(b):
        plan += [
            _Conv(f"body.{i}.body.0", f"body_{i}_conv1", 3, f, f),
            _Conv(f"body.{i}.body.2", f"body_{i}_conv2", 3, f, f),
        ]
    plan.append(_Conv(f"body.{b}", "body_conv", 3, f, f))
    if config.arch == "edsr":
        for j, r in enumerate(upsampler_stages(config.scale)):
            plan.append(_Conv(f"tail.0.{2 * j}", f"upsample_{j}_conv", 3, f, r * r * f, r))
        plan.append(_Conv("tail.1", "tail", 3, f, 3))
        return plan
    for s in config.scales:
        i = source_index[s]
        for k in range(2):
            plan += [
                _Conv(f"pre_process.{i}.{k}.body.0", f"pre_x{s}_{k}_conv1", 5, f, f),
                _Conv(f"pre_process.{i}.{k}.body.2", f"pre_x{s}_{k}_conv2", 5, f, f),
            ]
        for j, r in enumerate(upsampler_stages(s)):
            plan.append(
                _Conv(f"upsample.{i}.{2 * j}", f"upsample_x{s}_{j}_conv", 3, f, r * r * f, r)
            )
    plan.append(_Conv("tail.0", "tail", 3, f, 3))
    return plan


def pixel_shuffle_to_depth_to_space(n_channels_out: int, r: int) -> np.ndarray:
    """Index array ``perm`` with ``dcr_channels = torch_channels[perm]`` for a shuffle by ``r``.

    ``nn.PixelShuffle`` reads input channel ``c*r*r + i*r + j`` into output channel ``c`` at
    sub-pixel ``(i, j)``; ``tf.nn.depth_to_space`` reads channel ``(i*r + j)*C + c``.
    """
    if n_channels_out % (r * r):
        raise ValueError(f"{n_channels_out} channels do not shuffle by {r}")
    c = n_channels_out // (r * r)
    return (np.arange(c)[None, :] * (r * r) + np.arange(r * r)[:, None]).reshape(-1)


def _mean_shift_range(sd: Mapping[str, np.ndarray], ignore: bool) -> float:
    """The checkpoint's ``rgb_range`` from its DIV2K mean shifts (255 if they are absent)."""
    from edsr_tf.models import DIV2K_RGB_MEAN

    mean = np.asarray(DIV2K_RGB_MEAN, np.float64)
    ranges = []
    for name, sign in _MEAN_SHIFTS:
        if f"{name}.weight" not in sd and f"{name}.bias" not in sd:
            continue  # older exports drop the frozen constants; the model carries them anyway
        w = _get(sd, f"{name}.weight", 4).astype(np.float64)
        bias = _get(sd, f"{name}.bias", 1).astype(np.float64)
        for key, value, shape in (
            (f"{name}.weight", w, (3, 3, 1, 1)),
            (f"{name}.bias", bias, (3,)),
        ):
            if value.shape != shape:
                raise ConversionError(
                    f"key {key!r}: checkpoint shape {value.shape}, expected {shape}"
                )
        rgb_range = bias / (sign * mean)
        is_div2k = (
            np.allclose(w[:, :, 0, 0], np.eye(3), atol=1e-6)  # rgb_std = (1, 1, 1)
            and np.all(rgb_range > 0)
            and np.ptp(rgb_range) <= 1e-4 * rgb_range.mean()
        )
        if not is_div2k:
            msg = (
                f"{name} is not the DIV2K mean shift (bias {np.round(bias, 4).tolist()}, "
                f"weight diagonal {np.round(np.diag(w[:, :, 0, 0]), 4).tolist()}; expected "
                f"{np.round(sign * 255 * mean, 4).tolist()} and 1 for rgb_range 255)"
            )
            if not ignore:
                raise ConversionError(
                    msg.replace("{", "{{").replace("}", "}}")
                    + "; {ignore_mean_shift} converts it anyway with the DIV2K mean",
                    args={"ignore_mean_shift": True})
            warnings.warn(msg + ": using the DIV2K mean; outputs will differ", ConversionWarning)
            return 255.0
        ranges.append(float(rgb_range.mean()))
    if len(ranges) == 2 and abs(ranges[0] - ranges[1]) > 1e-4 * ranges[0]:
        raise ConversionError(
            f"sub_mean and add_mean disagree on rgb_range ({ranges[0]:g} vs {ranges[1]:g})"
        )
    return ranges[0] if ranges else 255.0


# --------------------------------------------------------------------------- converting


def keras_weights_from_state_dict(
    sd: Mapping[str, np.ndarray],
    config: "ModelConfig",
    source_index: Mapping[int, int],
    *,
    bias_scale: float = 1.0,
    ignored_prefixes: Sequence[str] = (),
) -> dict[str, list[np.ndarray]]:
    """``{keras layer name: [kernel HWIO, bias]}`` for ``config``'s model.

    ``source_index`` maps each scale to its ``pre_process``/``upsample`` index (MDSR).
    Every key of ``sd`` must be used, be a mean shift, or start with one of
    ``ignored_prefixes``; errors name the key (and both shapes for a mismatch).
    """
    plan = _conv_plan(config, source_index)
    desc = describe_config(config)
    expected = {f"{c.torch}.{p}" for c in plan for p in ("weight", "bias")}
    missing = sorted(k for k in expected if k not in sd)
    if missing:
        raise ConversionError(
            f"missing key{'s' if len(missing) > 1 else ''} {_preview(map(repr, missing))} in "
            f"the checkpoint, needed by {desc}"
        )
    allowed = {f"{n}.{p}" for n, _ in _MEAN_SHIFTS for p in ("weight", "bias")}
    unexpected = [
        k
        for k in sd
        if k not in expected and k not in allowed and not k.startswith(tuple(ignored_prefixes))
    ]
    if unexpected:
        raise ConversionError(
            f"unexpected key{'s' if len(unexpected) > 1 else ''} {_preview(map(repr, unexpected))} "
            f"in the checkpoint for {desc}"
        )
    out: dict[str, list[np.ndarray]] = {}
    for c in plan:
        w, b = sd[f"{c.torch}.weight"], sd[f"{c.torch}.bias"]
        for key, value, shape in (
            (f"{c.torch}.weight", w, (c.cout, c.cin, c.kernel, c.kernel)),
            (f"{c.torch}.bias", b, (c.cout,)),
        ):
            if tuple(value.shape) != shape:
                raise ConversionError(
                    f"key {key!r}: checkpoint shape {tuple(value.shape)}, expected {shape} "
                    f"for {desc}"
                )
        if c.shuffle:
            perm = pixel_shuffle_to_depth_to_space(c.cout, c.shuffle)
            w, b = w[perm], b[perm]
        kernel = np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=np.float32)  # OIHW → HWIO
        out[c.keras] = [kernel, (b * bias_scale).astype(np.float32)]
    return out


def describe_config(config: "ModelConfig") -> str:
    name = config.preset or config.arch
    scales = "/".join(f"x{s}" for s in config.scales)
    return (
        f"{name} {scales} ({config.n_resblocks} resblocks, {config.n_feats} feats, "
        f"res_scale {config.res_scale:g})"
    )


def convert_state_dict(
    state_dict: Mapping[str, Any],
    preset: str,
    scale: int | Sequence[int] | None = None,
    *,
    n_resblocks: int | None = None,
    n_feats: int | None = None,
    res_scale: float | None = None,
    ignore_mean_shift: bool = False,
) -> tuple["keras.Model", "ModelConfig"]:
    """Builds the Keras model for ``preset`` and loads an EDSR-PyTorch state_dict into it.

    ``state_dict`` values may be torch tensors or arrays; wrappers and ``module.``
    prefixes are accepted (:func:`normalize_state_dict`). ``scale``: EDSR's scale (must be
    the checkpoint's; default: inferred), or for MDSR a subset of the checkpoint's scales
    (default: all). Raises :class:`ConversionError` naming the offending key.
    """
    from edsr_tf.models import build_model

    sd = normalize_state_dict(state_dict)
    layout = inspect_state_dict(sd)
    config = resolve_config(
        layout, preset, scale, n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale
    )
    source_index = {s: i for i, s in enumerate(layout.scales)}
    ignored = tuple(
        f"{part}.{i}."
        for s, i in source_index.items()
        if layout.arch == "mdsr" and s not in config.scales
        for part in ("pre_process", "upsample")
    )
    rgb_range = _mean_shift_range(sd, ignore_mean_shift)
    weights = keras_weights_from_state_dict(
        sd, config, source_index, bias_scale=255.0 / rgb_range, ignored_prefixes=ignored
    )
    model = build_model(config)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(weights):  # guards the name mapping against model changes
        raise RuntimeError(
            f"internal error: Keras layers {sorted(with_weights ^ set(weights))} not mapped"
        )
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)
    return model, config


def weights_file_name(config: "ModelConfig") -> str:
    """The default file name of a converted model: ``edsr_baseline_x2.weights.h5``.

    ``<preset>_x<s>[_x<s>...]``, or ``<arch>_b<blocks>_f<feats>_x<s>`` for a non-standard size.
    """
    base = config.preset or f"{config.arch}_b{config.n_resblocks}_f{config.n_feats}"
    return f"{base}_{'_'.join(f'x{s}' for s in config.scales)}.weights.h5"


def check_out_file(out: str | Path) -> Path:
    """``out`` as a path a converted model can be written to (``.weights.h5``/``.keras``, not a folder)."""
    out = Path(out)
    if not out.name.endswith((".weights.h5", ".keras")):
        raise ConversionError(
            "{out}: expected a file name ending in .weights.h5 or .keras", option="out",
            args={"out": str(out)})
    if out.is_dir():
        raise ConversionError("{out}: is a folder, expected a file name", option="out",
                              args={"out": str(out)})
    return out


def convert_checkpoint_file(
    torch_checkpoint: str | Path,
    preset: str,
    scale: int | Sequence[int] | None = None,
    **overrides: Any,
) -> tuple["keras.Model", "ModelConfig"]:
    """Reads a ``.pt`` checkpoint and converts it (:func:`convert_state_dict`); nothing is written.

    ``overrides``: :func:`convert_state_dict`'s keywords (``n_resblocks``, ``n_feats``,
    ``res_scale``, ``ignore_mean_shift``). Errors about the checkpoint's content start with its path.
    """
    sd = load_torch_state_dict(torch_checkpoint)
    try:
        return convert_state_dict(sd, preset, scale, **overrides)
    except ConversionError as e:
        raise e.with_prefix(str(torch_checkpoint)) from None


def convert_checkpoint(
    torch_checkpoint: str | Path,
    preset: str,
    out: str | Path,
    scale: int | Sequence[int] | None = None,
    **overrides: Any,
) -> "ModelConfig":
    """Converts a ``.pt`` checkpoint and writes ``out`` (``.weights.h5``/``.keras``, atomic).

    Returns the written model's config. See :func:`convert_state_dict` for the arguments.
    """
    from edsr_tf.models import save_model

    out = check_out_file(out)
    model, config = convert_checkpoint_file(torch_checkpoint, preset, scale, **overrides)
    save_model(model, out, config)
    return config
