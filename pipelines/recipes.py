"""Training recipes for CIFAR-10 (32x32) on a small CPU, used by benchmarks/cifar10_recipes.py.

The "stem" choice: zoo models downsample 32x at their stem and stages, so a
32 px CIFAR image would end as a 1x1 feature map. The recipes upsample the
images (resize policy "stretch", 2x to 64 px), which gives the same feature
map sizes as a stride-1 stem on 32 px input (a 2x2 map at the head) while
keeping the zoo architecture unchanged, so the trained model exports and
quantizes like any zoo model. EfficientNet-Lite0 takes 48 px (still a 2x2
head: its "same" padding rounds up). Widths, input sizes and epoch counts are
picked for a 45-minute budget on two cores; see docs/pipelines.md for what
was and was not measured.
"""
from dataclasses import asdict, dataclass

from .data import DataConfig
from .prune import PruneConfig
from .train import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    image_size: int = 64
    batch_size: int = 128
    epochs: int = 30
    learning_rate: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 2.0
    augment: str = "crop_flip"
    qat_epochs: int = 2
    qat_learning_rate: float = 0.005
    prune_epochs: int = 30
    prune_learning_rate: float = 0.02
    prune_end: float = 0.5  # fraction of the pruning epochs after which the target sparsity holds
    pqat_epochs: int = 2
    sparsity: float = 0.75
    bn_momentum: float = 0.9  # see pipelines.train.set_bn_momentum

    def data_config(self, normalization, seed=0):
        return DataConfig(image_size=self.image_size, batch_size=self.batch_size, resize="stretch",
                          augment=self.augment, normalization=normalization, seed=seed)

    def train_config(self, seed=0, epochs=None):
        return TrainConfig(epochs=epochs or self.epochs, learning_rate=self.learning_rate,
                           weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
                           warmup_epochs=self.warmup_epochs, seed=seed)

    def fine_tune_config(self, epochs, seed=0, learning_rate=None):
        """Short runs after the float training (QAT, PQAT at the QAT rate), cosine to zero, no warm-up."""
        return TrainConfig(epochs=epochs, learning_rate=learning_rate or self.qat_learning_rate,
                           weight_decay=self.weight_decay, label_smoothing=self.label_smoothing, warmup_epochs=0.0,
                           seed=seed)

    def prune_train_config(self, epochs, seed=0):
        """Pruning from the trained float model: a higher rate than QAT, cosine to zero, so the net can
        re-route around the zeros (6 epochs at 0.005 lost 6 points on MobileNetV2-0.5)."""
        return self.fine_tune_config(epochs, seed, self.prune_learning_rate)

    def prune_config(self):
        return PruneConfig(target=self.sparsity, schedule="polynomial", end=self.prune_end)

    def to_dict(self):
        return asdict(self)


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe("mobilenet_v2", "mobilenet_v2_0.5", epochs=22),
        Recipe("shufflenet_v2", "shufflenet_v2_1.0", epochs=20),
        Recipe("efficientnet_lite0", "efficientnet_lite0", image_size=48, epochs=18, learning_rate=0.08),
    )
}


def get_recipe(name):
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    return RECIPES[name]
