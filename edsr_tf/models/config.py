"""Model configurations and named presets (the paper's four networks)."""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from typing import Any, Sequence

#: Preset name → (architecture, n_resblocks, n_feats, res_scale).
PRESETS: dict[str, tuple[str, int, int, float]] = {
    "edsr_baseline": ("edsr", 16, 64, 1.0),
    "edsr": ("edsr", 32, 256, 0.1),
    "mdsr_baseline": ("mdsr", 16, 64, 1.0),
    "mdsr": ("mdsr", 80, 64, 1.0),
}

EDSR_SCALES = (2, 3, 4, 8)
MDSR_DEFAULT_SCALES = (2, 3, 4)

#: Sanity bounds checked before any model is built, so a damaged or hostile config (say
#: n_feats=30000: a 32 GB tensor) is refused with a clear error instead of exhausting memory.
#: The paper's largest networks use 256 features (EDSR) and 80 blocks (MDSR); the bounds
#: leave room for 4x wider and 12x deeper ones.
MAX_N_FEATS = 1024
MAX_N_RESBLOCKS = 1000
#: Largest estimated parameter count (4 GB of float32 weights; the paper's EDSR x4 has 43 M).
MAX_PARAMS = 1_000_000_000


class ConfigError(ValueError):
    """A model config value that is out of bounds or of the wrong type.

    ``fields``: the :class:`ModelConfig` fields at fault (two for the size limit), so a front
    end can name its own option without reading the message.
    """

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields


class ScaleError(ConfigError):
    """A scale that is not an integer, or that a model does not have (message says which)."""

    def __init__(self, message: str):
        super().__init__(message, "scales")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored inside every weights file."""

    arch: str  # "edsr" or "mdsr"
    scales: tuple[int, ...]  # one scale for EDSR, several for MDSR
    n_resblocks: int
    n_feats: int
    res_scale: float = 1.0
    preset: str | None = None

    def __post_init__(self):
        if self.arch not in ("edsr", "mdsr"):
            raise ConfigError(f"unknown architecture {self.arch!r}: expected 'edsr' or 'mdsr'", "arch")
        if isinstance(self.scales, (str, bytes)) or not hasattr(self.scales, "__iter__"):
            raise ConfigError(f"scales must be a list of integers, got {self.scales!r}", "scales")
        object.__setattr__(self, "scales", tuple(_integer("scale", s, "scales") for s in self.scales))
        if not self.scales:
            raise ConfigError("scales is empty: a model needs at least one scale", "scales")
        if len(set(self.scales)) != len(self.scales):
            raise ConfigError(f"scales {list(self.scales)} repeat a scale", "scales")
        if self.arch == "edsr" and len(self.scales) != 1:
            raise ConfigError(f"EDSR has exactly one scale, got {self.scales}", "scales")
        allowed = EDSR_SCALES if self.arch == "edsr" else (2, 3, 4)
        for s in self.scales:
            if s not in allowed:
                raise ConfigError(f"unsupported {self.arch} scale {s}: expected one of {allowed}", "scales")
        blocks = _integer("n_resblocks", self.n_resblocks)
        feats = _integer("n_feats", self.n_feats)
        object.__setattr__(self, "n_resblocks", blocks)
        object.__setattr__(self, "n_feats", feats)
        if not 0 <= blocks <= MAX_N_RESBLOCKS:
            raise ConfigError(f"n_resblocks must be in [0, {MAX_N_RESBLOCKS}], got {blocks}", "n_resblocks")
        if not 1 <= feats <= MAX_N_FEATS:
            raise ConfigError(f"n_feats must be in [1, {MAX_N_FEATS}], got {feats}", "n_feats")
        if isinstance(self.res_scale, bool) or not isinstance(self.res_scale, (int, float)) \
                or not math.isfinite(self.res_scale) or self.res_scale <= 0:
            raise ConfigError(f"res_scale must be a finite number > 0, got {self.res_scale!r}", "res_scale")
        object.__setattr__(self, "res_scale", float(self.res_scale))
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}: expected one of {sorted(PRESETS)} or null",
                              "preset")
        params = self.estimated_params()
        if params > MAX_PARAMS:
            raise ConfigError(
                f"{self.arch} with n_resblocks={blocks}, n_feats={feats} would have about "
                f"{params / 1e6:,.0f} M parameters, over the {MAX_PARAMS / 1e6:,.0f} M limit",
                "n_resblocks", "n_feats",
            )

    def estimated_params(self) -> int:
        """Trainable parameters of the network this config builds (computed, nothing is built).

        Head, residual blocks (two 3×3 convs), body-end conv, per-scale upsamplers (and MDSR's
        two 5×5 pre-processing blocks per scale), tail: e.g. 1,369,859 for edsr_baseline ×2.
        """
        f = self.n_feats
        conv3 = 9 * f * f + f
        total = (27 * f + f) + (2 * self.n_resblocks + 1) * conv3 + (27 * f + 3)  # head, body, tail
        for s in self.scales:
            for r in ([3] if s == 3 else [2] * (s.bit_length() - 1)):
                total += 9 * f * r * r * f + r * r * f
            if self.arch == "mdsr":
                total += 4 * (25 * f * f + f)
        return total

    @property
    def scale(self) -> int:
        """The single scale of an EDSR model (:class:`ScaleError` for multi-scale MDSR)."""
        return resolve_scale(self, None)

    @classmethod
    def from_preset(
        cls,
        preset: str,
        scale: int | Sequence[int] | None = None,
        **overrides: Any,
    ) -> "ModelConfig":
        """Config of a named preset; ``scale`` is one scale for EDSR, one or more for MDSR.

        ``scale`` takes what :func:`parse_scales` takes (``2``, ``"2,4"``, ``("2", "4")``);
        None gives MDSR its default scales (2, 3, 4) and is an error for EDSR.
        """
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}", "preset")
        arch, blocks, feats, res_scale = PRESETS[preset]
        scales = parse_scales(scale)
        if scales is None:
            if arch == "edsr":
                raise ScaleError(f"preset {preset!r} needs a scale (2, 3, 4 or 8)")
            scales = MDSR_DEFAULT_SCALES
        kwargs = dict(
            arch=arch, scales=scales, n_resblocks=blocks, n_feats=feats, res_scale=res_scale,
            preset=preset,
        )
        changed = {k: v for k, v in overrides.items() if v is not None and v != kwargs.get(k)}
        kwargs.update(changed)
        if changed.keys() & {"n_resblocks", "n_feats", "res_scale", "arch"}:
            # No longer the named network: don't let files claim a preset they don't match.
            kwargs["preset"] = None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scales"] = list(self.scales)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a model config is a JSON object, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        missing = {f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING} - set(d)
        if missing:
            raise ValueError(f"missing model config keys {sorted(missing)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))


def parse_scales(value: Any) -> tuple[int, ...] | None:
    """Requested scale(s) as a tuple of ints, or None when nothing was requested.

    Accepts an int, a string (``"3"``, ``"2,3,4"``), or a sequence of those
    (e.g. a list option's strings). Raises :class:`ScaleError` for anything else; whether a
    model has those scales is checked by :class:`ModelConfig` / :func:`resolve_scale`.
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        items: list[Any] = [t for t in (p.strip() for p in text.split(",")) if t]
    elif hasattr(value, "__iter__"):
        items = list(value)
    else:
        items = [value]
    scales = []
    for item in items:
        if isinstance(item, str):
            if not item.strip().isdigit():
                raise ScaleError(f"scale must be an integer such as 2, got {item!r}")
            item = int(item)
        elif hasattr(item, "__index__") and not isinstance(item, bool):
            item = operator.index(item)  # NumPy integers
        try:
            scales.append(_integer("scale", item))
        except ValueError as e:
            raise ScaleError(str(e)) from None
    return tuple(scales) or None


def resolve_scale(config: ModelConfig, requested: Any = None) -> int:
    """The one scale to run ``config``'s model at.

    ``requested`` (anything :func:`parse_scales` takes, naming at most one scale) must be
    one of ``config.scales``; None picks the model's only scale. Raises :class:`ScaleError`
    (a ``ValueError``) when the request is not a single integer, when the model lacks that
    scale, or when None is given for a multi-scale model.
    """
    scales = parse_scales(requested)
    if scales is None:
        if len(config.scales) != 1:
            raise ScaleError(f"model has scales {list(config.scales)}: choose one of them")
        return config.scales[0]
    if len(scales) != 1:
        raise ScaleError(f"expected one scale, got {list(scales)}")
    if scales[0] not in config.scales:
        raise ScaleError(f"model was built for scale(s) {list(config.scales)}, not x{scales[0]}")
    return scales[0]


def _integer(name: str, value: Any, field: str | None = None) -> int:
    """``value`` as an int; a bool, float with a fraction or string is a :class:`ConfigError`
    naming ``name`` (of the config field ``field``, default ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value != int(value):
        raise ConfigError(f"{name} must be an integer, got {value!r}", field or name)
    return int(value)
