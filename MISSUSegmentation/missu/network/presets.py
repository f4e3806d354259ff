"""Architecture presets: one dataclass holds every hyper-parameter of the network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import MISSUError

STRIDE = 8  # three stride-2 downsamplings between the input and the token grid
# Settings of earlier cards that no longer change the network (the first LMSF design's student choice).
RETIRED = {"student"}


@dataclass(frozen=True)
class MISSUConfig:
    """Everything needed to rebuild a network; stored verbatim in a model card."""

    in_channels: int = 4
    out_channels: int = 4
    roi_size: tuple[int, int, int] = (128, 128, 128)
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    encoder_blocks: tuple[int, int, int, int] = (1, 2, 2, 4)
    embed_dim: int = 512
    num_heads: int = 8
    depth: int = 4
    mlp_dim: int = 4096
    dropout: float = 0.1
    stem_dropout: float = 0.2
    distillation: bool = True
    lmsf_dilations: tuple[int, ...] = (1, 3, 5)
    lmsf_pyramid: bool = False

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1:
            raise MISSUError("in_channels and out_channels must be >= 1")
        if len(self.roi_size) != 3 or any(int(s) % STRIDE or int(s) <= 0 for s in self.roi_size):
            raise MISSUError(f"roi_size {tuple(self.roi_size)} must be three positive multiples of {STRIDE}")
        if self.embed_dim % self.num_heads:
            raise MISSUError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        # JSON round trips give lists; keep tuples so configs compare equal.
        for name in ("roi_size", "widths", "encoder_blocks", "lmsf_dilations"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def token_grid(self) -> tuple[int, int, int]:
        return tuple(s // STRIDE for s in self.roi_size)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MISSUConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k not in RETIRED}
        unknown = set(data) - known
        if unknown:
            raise MISSUError(f"unknown network settings: {sorted(unknown)}")
        return cls(**data)


# A laptop/CI-sized MISSU: half the widths, a narrower and shallower Transformer.
SMALL = MISSUConfig(
    roi_size=(96, 96, 96),
    widths=(8, 16, 32, 64),
    encoder_blocks=(1, 1, 2, 2),
    embed_dim=128,
    num_heads=4,
    depth=2,
    mlp_dim=512,
)

PRESETS: dict[str, MISSUConfig] = {
    # The paper's backbone (TransBTS widths and Transformer) with the LMSF self-distillation branch.
    "missu": MISSUConfig(),
    # The same backbone without the distillation branch: the baseline for comparisons.
    "transbts": MISSUConfig(distillation=False),
    "missu-small": SMALL,
    # missu-small with twice the convolution widths (the Transformer unchanged): 2.8x its parameters, a training
    # step 1.9x as long in bf16 (2.6x in float32); for data on which missu-small under-fits its training cases.
    "missu-medium": replace(SMALL, widths=(16, 32, 64, 128)),
}


def preset_config(name: str, **overrides: Any) -> MISSUConfig:
    """The named preset with ``overrides`` applied (e.g. ``in_channels=1, roi_size=(112, 112, 80)``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise MISSUError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
