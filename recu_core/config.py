"""Typed run configuration: everything that defines one training run.

Importing this module does not import torch, so the service can validate job
specs with the very same schema the trainer runs on. Every field says why it
exists; bounds are enforced here, once, with messages that name the field and
the allowed values.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recu_core.recipes import RECIPES, RecipeName, deep_merge
from recu_core.text import PathStr

MODEL_NAMES = (
    "resnet20",
    "resnet18",
    "resnet18_bireal",
    "vgg_small",
    "resnet18_imagenet",
    "resnet34_imagenet",
)
DATASET_NAMES = ("digits", "cifar10", "cifar100", "imagefolder", "synthetic")
STE_NAMES = ("identity", "clipped", "approx_sign", "relu", "clipped_relu", "reste", "ede")
SCHEDULE_KINDS = ("exponential", "linear", "constant")

ModelName = Literal[
    "resnet20", "resnet18", "resnet18_bireal", "vgg_small", "resnet18_imagenet", "resnet34_imagenet"
]
DatasetName = Literal["digits", "cifar10", "cifar100", "imagefolder", "synthetic"]
SteName = Literal["identity", "clipped", "approx_sign", "relu", "clipped_relu", "reste", "ede"]
ScheduleKind = Literal["exponential", "linear", "constant"]


class InferenceEngine(StrEnum):
    """The 1-bit engine that runs a packed ``.bnn`` network (docs/export.md): ``fast``
    (Numba kernels, the default) or ``reference`` (NumPy, the oracle)."""

    FAST = "fast"
    REFERENCE = "reference"


#: One bound of dataset.crop_scale (the order of the two is checked by _crop_scale_ordered).
CropFraction = Annotated[float, Field(gt=0.0, le=4.0)]


class StrictModel(BaseModel):
    """Every model of the contract: unknown fields refused, no coercion, and no non-finite
    number in any float field (NaN, Infinity and 1e309, which JSON parsers read as
    Infinity: no bound compares false on them, and JSON cannot carry them back out)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        return whole_numbers_as_int(cls, data)

    @classmethod
    def from_fields(cls, model: BaseModel) -> Self:
        """This model's part of a larger one (a request body that adds queue fields). A
        subclass instance was validated as this model already: its fields are taken as
        they are (no second validation on the submit path)."""
        if isinstance(model, cls):
            fields = {name: getattr(model, name) for name in cls.model_fields}
            return cast(Self, cls.model_construct(model.model_fields_set & set(fields), **fields))
        return cls.model_validate(model.model_dump(include=set(cls.model_fields)))

    def stored(self) -> dict[str, Any]:
        """The JSON the queue stores (parsed back with ``model_validate``)."""
        return self.model_dump(mode="json")


@functools.cache
def _int_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` whose type is int (or int | None), bool excluded."""
    return frozenset(
        name
        for name, field in model.model_fields.items()
        if field.annotation is int or field.annotation == int | None
    )


@functools.cache
def _int_list_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` whose type is a list of ints (constrained or not)."""

    def int_items(annotation: Any) -> bool:
        if get_origin(annotation) is not list:
            return False
        (item,) = get_args(annotation)
        return item is int or (get_origin(item) is Annotated and get_args(item)[0] is int)

    return frozenset(
        name for name, field in model.model_fields.items() if int_items(field.annotation)
    )


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def whole_numbers_as_int(model: type[BaseModel], data: Any) -> Any:
    """``data`` with a whole float in an int field (or in a list of ints) as that int:
    JSON has one number type (``3.0`` is ``3``, as JSON Schema's "integer" says; JavaScript
    cannot tell them apart), while the strict models refuse any other coercion ("3",
    true, 3.5 stay refused)."""
    if not isinstance(data, dict):
        return data
    ints, lists = _int_fields(model), _int_list_fields(model)
    return {
        key: _whole(value)
        if key in ints
        else [_whole(item) for item in value]
        if key in lists and isinstance(value, list)
        else value
        for key, value in data.items()
    }


class BinaryOptions(StrictModel):
    """Switches of the binary layers: the ReCU paper's Table 1 axes, and the layer options
    of other methods built on ReCU's code (docs/models.md, "Layer options"). The defaults
    are ReCU exactly; each other value is one method's rule, named after its paper."""

    clamp: bool = Field(
        True,
        description="ReCU clamp to [-Q(tau), Q(tau)]; off = plain BNN. With "
        "weight_binarizer 'biper' it defaults to off (BiPer's recipe).",
    )
    standardize: bool = Field(
        True,
        description="Per-filter centring and standardisation. With weight_binarizer "
        "'biper' it defaults to off (BiPer's recipe: f multiplies the raw weight).",
    )
    activation_ste: SteName = Field(
        "approx_sign",
        description="Straight-through estimator of the activation sign. 'reste': ReSTE's "
        "rectified power gradient, exponent o scheduled per epoch; 'ede': IR-Net's error "
        "decay estimator k*t*(1 - tanh(t*x)^2), t and k scheduled per epoch.",
    )
    alpha: Literal["learned", "none"] = Field(
        "learned", description="Per-output-channel scaling factor after the binary conv."
    )
    scale_activations: bool = Field(
        True, description="Per-sample activation standardisation before sign (training only)."
    )
    weights: Literal["binary", "real"] = Field(
        "binary",
        description="'real' keeps the weight real-valued (the latent weight after the "
        "standardise/clamp options, or sin(f*w) with BiPer) while activations stay binary: "
        "stage 1 of a two-stage recipe. Not exportable to .bnn.",
    )
    weight_binarizer: Literal["recu", "biper"] = Field(
        "recu",
        description="'recu': sign(w2) with an identity straight-through gradient. 'biper' "
        "(BiPer, CVPR 2024): sign(sin(f*w)), gradient f*cos(f*w) through the sine.",
    )
    biper_frequency: float = Field(
        20.0, gt=0.0, le=10_000.0, description="BiPer: the frequency f of sin(f*w)."
    )
    biper_regularizer: float = Field(
        0.037,
        ge=0.0,
        le=100.0,
        description="BiPer: weight lambda of the loss term lambda * mean(sin(f*w)^2) per "
        "binary layer (BiPer's CIFAR-10 stage 1: 0.037; 0 switches it off).",
    )
    activation_threshold: Literal["none", "rsign"] = Field(
        "none",
        description="'rsign' (ReActNet): a learnable threshold b per input channel, "
        "sign(x - b); folded into the .bnn packing.",
    )
    activation: Literal["hardtanh", "rprelu"] = Field(
        "hardtanh",
        description="The block nonlinearity after BatchNorm and the residual add: the "
        "official Hardtanh, or ReActNet's RPReLU, PReLU(x - gamma) + zeta per channel.",
    )
    reste_o_start: float = Field(
        1.0, ge=1.0, le=100.0, description="ReSTE: the exponent o at epoch 0 (o = 1: identity)."
    )
    reste_o_end: float = Field(
        3.0, ge=1.0, le=100.0, description="ReSTE: the exponent o at the last epoch."
    )
    ede_t_start: float = Field(
        1e-3, gt=0.0, le=1e6, description="EDE: t at epoch 0 (IR-Net's CIFAR code: 1e-3)."
    )
    ede_t_end: float = Field(
        10.0, gt=0.0, le=1e6, description="EDE: t at the last epoch (IR-Net: 10)."
    )

    @model_validator(mode="before")
    @classmethod
    def _biper_recipe_defaults(cls, data: Any) -> Any:
        """BiPer's sin(f*w) acts on the raw weight: with weight_binarizer 'biper', clamp
        and standardize default to off (given explicitly, they apply before the sine)."""
        if isinstance(data, dict) and data.get("weight_binarizer") == "biper":
            return {"clamp": False, "standardize": False, **data}
        return data


class TauSchedule(StrictModel):
    """tau(t) for epoch t of T: exponential (the paper's), linear or constant."""

    kind: ScheduleKind = "exponential"
    tau_s: float = Field(0.85, gt=0.5, lt=1.0, description="tau at epoch 0; in (0.5, 1).")
    tau_e: float = Field(0.99, gt=0.5, lt=1.0, description="tau at epoch T; in (0.5, 1).")

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        if self.kind != "constant" and self.tau_s > self.tau_e:
            raise ValueError(
                f"tau_s ({self.tau_s}) must not exceed tau_e ({self.tau_e}) for an increasing "
                f"'{self.kind}' schedule; use kind='constant' for a fixed tau"
            )
        return self


class DatasetConfig(StrictModel):
    """Which data to train on. Paths are relative to the data directory setting."""

    # The schema states the rules of _imagefolder_needs_root (JSON Schema's if/then).
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"name": {"const": "imagefolder"}}, "required": ["name"]},
                    "then": {"required": ["root"], "properties": {"root": {"type": "string"}}},
                },
                {
                    "if": {
                        "properties": {
                            "name": {"const": "imagefolder"},
                            "loader": {"const": "streaming"},
                        },
                        "required": ["name", "loader"],
                    },
                    "then": {
                        "required": ["image_size"],
                        "properties": {"image_size": {"type": "integer"}},
                    },
                },
            ]
        }
    )

    name: DatasetName = "digits"
    root: PathStr | None = Field(
        None,
        description="Dataset folder, relative to RECU_DATA_DIR (or absolute); at most 1024 "
        "characters, no control characters. "
        "Defaults: cifar10 -> cifar-10-batches-py, cifar100 -> cifar-100-python.",
    )
    image_size: int | None = Field(
        None, ge=4, le=512, description="imagefolder: resize every image to this square size."
    )
    num_train: int | None = Field(
        None, ge=1, le=10_000_000, description="Use at most this many training images."
    )
    num_test: int | None = Field(
        None, ge=1, le=10_000_000, description="Use at most this many test images."
    )
    crop_padding: int | None = Field(
        None, ge=0, le=64, description="Random-crop padding; default follows the dataset."
    )
    flip: bool | None = Field(None, description="Random horizontal flip; default per dataset.")
    val_fraction: float | None = Field(
        None,
        gt=0.0,
        le=0.5,
        description="Hold out this fraction of the training images as a validation split "
        "(seeded by split_seed); the best checkpoint is then selected on it, not on test.",
    )
    split_seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the validation split.")
    loader: Literal["auto", "memory", "streaming"] = Field(
        "auto",
        description="imagefolder: 'memory' decodes every image once into memory (pad-crop "
        "and flip on the device); 'streaming' decodes in worker processes per batch "
        "(random-resized crop and flip; resize and centre crop for evaluation), memory "
        "bounded whatever the dataset size; 'auto' streams when the decoded images would "
        "exceed RECU_MEMORY_LOADER_MAX_BYTES. Other datasets always load into memory.",
    )
    crop_scale: tuple[CropFraction, CropFraction] = Field(
        (0.08, 1.0),
        strict=False,  # a JSON array is a tuple here
        description="Streaming loader: area range of the random-resized crop, as a fraction "
        "of the image (torchvision's default (0.08, 1); the official ImageNet run 0.08-1.25).",
    )
    workers: int = Field(
        2, ge=0, le=64, description="Streaming loader: decoding worker processes per rank."
    )

    @model_validator(mode="after")
    def _imagefolder_needs_root(self) -> Self:
        if self.name == "imagefolder" and self.root is None:
            raise ValueError(
                "dataset.root is required for dataset 'imagefolder': a folder inside the data "
                "directory laid out as <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg"
            )
        if self.name == "imagefolder" and self.loader == "streaming" and self.image_size is None:
            raise ValueError(
                "dataset.image_size is required with loader 'streaming' (the crop size "
                "every image is resized to, e.g. 224)"
            )
        return self

    @model_validator(mode="after")
    def _crop_scale_ordered(self) -> Self:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 4.0:
            raise ValueError(
                f"dataset.crop_scale must satisfy 0 < low <= high <= 4, got {self.crop_scale}"
            )
        return self


class OptimizerConfig(StrictModel):
    """The paper's CIFAR recipe by default: SGD momentum 0.9, lr 0.1, wd 5e-4, cosine."""

    # The schema states TrainConfig._warmup_whole_epochs: whole epochs unless 'step'.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"lr_schedule": {"const": "step"}}, "required": ["lr_schedule"]},
            "else": {
                "properties": {"warmup_epochs": {"anyOf": [{"type": "null"}, {"multipleOf": 1}]}}
            },
        }
    )

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only.")
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    warmup_epochs: float | None = Field(
        None,
        ge=0.0,
        le=1000.0,
        description="Linear lr warm-up; default min(5, epochs / 10) (the paper: 5 of 600).",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    lr_schedule: Literal["epoch", "step"] = Field(
        "epoch",
        description="'epoch': the official ReCU schedule, lr constant within an epoch "
        "(warm-up (e+1)/W, then cosine over E-W+1 epochs); 'step': linear warm-up and "
        "cosine per step.",
    )


class TrainConfig(StrictModel):
    """One training run; a job spec in the service is exactly this."""

    recipe: RecipeName | None = Field(
        None,
        description="Start from a named preset of the official runs (recu_core.recipes); "
        "fields given explicitly override it.",
    )
    model: ModelName = "resnet20"
    binary: bool = Field(True, description="False builds the full-precision twin.")
    dataset: DatasetConfig = DatasetConfig()
    binary_options: BinaryOptions = BinaryOptions()
    tau: TauSchedule = TauSchedule()
    optimizer: OptimizerConfig = OptimizerConfig()
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 autocast (CUDA only); binary sums above 256 round in bf16."
    )
    channels_last: bool = Field(False, description="channels_last memory format (CUDA).")
    compile: bool = Field(False, description="torch.compile the whole model.")
    kernels: Literal["compiled", "eager"] = Field(
        "compiled",
        description="'compiled' fuses the binary activation backward with torch.compile "
        "(compiled once, ~7 s; falls back to eager with a warning where no compiler exists).",
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]{1,3})?|mps)$")

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        """Lay the explicit fields over the named preset (nested sections key by key)."""
        if isinstance(data, dict) and isinstance(data.get("recipe"), str):
            recipe = RECIPES.get(data["recipe"])
            if recipe is not None:  # an unknown name is reported by the field's own check
                return deep_merge(recipe.spec, data)
        return data

    @model_validator(mode="after")
    def _warmup_whole_epochs(self) -> Self:
        warmup = self.optimizer.warmup_epochs
        if self.optimizer.lr_schedule == "epoch" and warmup is not None and warmup % 1:
            raise ValueError(
                f"optimizer.warmup_epochs ({warmup}) must be a whole number of epochs with "
                "lr_schedule 'epoch' (the lr changes once per epoch); use lr_schedule 'step' "
                "for a fractional warm-up"
            )
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> Self:
        warmup = self.optimizer.warmup_epochs
        if warmup is not None and warmup > 0 and warmup >= self.epochs:
            raise ValueError(
                f"optimizer.warmup_epochs ({self.optimizer.warmup_epochs}) must be smaller than "
                f"epochs ({self.epochs})"
            )
        return self

    @property
    def warmup_epochs(self) -> float:
        """The warm-up actually used: the explicit value, else the paper's 5 epochs, at
        most a tenth of the run (whole epochs with the per-epoch schedule)."""
        if self.optimizer.warmup_epochs is not None:
            return self.optimizer.warmup_epochs
        if self.optimizer.lr_schedule == "epoch":
            return float(min(5, self.epochs // 10))
        return min(5.0, self.epochs / 10)
