"""Model configurations and named presets (the paper's four networks)."""

from __future__ import annotations

import dataclasses
import json
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
            raise ValueError(f"unknown architecture {self.arch!r}: expected 'edsr' or 'mdsr'")
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.arch == "edsr" and len(self.scales) != 1:
            raise ValueError(f"EDSR has exactly one scale, got {self.scales}")
        allowed = EDSR_SCALES if self.arch == "edsr" else (2, 3, 4)
        for s in self.scales:
            if s not in allowed:
                raise ValueError(f"unsupported {self.arch} scale {s}: expected one of {allowed}")
        if self.n_resblocks < 0 or self.n_feats < 1:
            raise ValueError(
                f"n_resblocks must be >= 0 and n_feats >= 1, got {self.n_resblocks}, {self.n_feats}"
            )

    @property
    def scale(self) -> int:
        """The single scale of an EDSR model (error for multi-scale MDSR)."""
        if len(self.scales) != 1:
            raise ValueError(f"multi-scale model {self.scales}: pick a scale")
        return self.scales[0]

    @classmethod
    def from_preset(
        cls,
        preset: str,
        scale: int | Sequence[int] | None = None,
        **overrides: Any,
    ) -> "ModelConfig":
        """Config of a named preset; ``scale`` is one int for EDSR, ints for MDSR."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
        arch, blocks, feats, res_scale = PRESETS[preset]
        if arch == "edsr":
            if scale is None:
                raise ValueError(f"preset {preset!r} needs a scale (2, 3, 4 or 8)")
            scales = (int(scale),) if isinstance(scale, int) else tuple(scale)
        else:
            if scale is None:
                scales = MDSR_DEFAULT_SCALES
            else:
                scales = (int(scale),) if isinstance(scale, int) else tuple(scale)
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
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**{**d, "scales": tuple(d["scales"])})

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))
