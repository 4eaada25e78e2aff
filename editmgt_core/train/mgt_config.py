"""The transformer trainer's settings (`TrainConfig`): the world data it draws, the model's size, the optimiser."""

from dataclasses import dataclass

from editmgt_core.model.config import TransformerConfig


@dataclass(frozen=True)
class TrainConfig:
    records: int = 40000  # world records in the training set
    seed: int = 0  # world seed (evaluate on another one)
    categories: str = ""  # relative weights of the world's edit categories, "add=1.5,style=0.5" (unnamed: 1)
    phrasing: str = ""  # instruction wording: "" the world's templates; "mixed" templates and training families
    slices: str = ""  # shares of records from robustness slices, "small=0.1,overlap=0.1" (the rest: the world's)
    size: int = 64  # image side in pixels
    text_len: int = 24  # instruction tokens (MiniLM, padded / truncated)
    dim: int = 256  # transformer width (heads of 64 channels)
    dual: int = 2  # dual-stream blocks
    single: int = 6  # single-stream blocks
    downsample: bool = True  # the published 2x2 token downsample; False: attention on the full token grid
    batch: int = 32
    steps: int = 3000
    lr: float = 5e-4  # peak AdamW learning rate (linear warmup, cosine decay to 10%)
    warmup: int = 200
    weight_decay: float = 0.01
    drop_text: float = 0.1  # probability of training on the empty prompt (for guidance)
    sample_steps: int = 12  # decoding steps the timestep input is calibrated to (see timestep_for)
    ckpt_every: int = 200
    log_every: int = 20

    def model_config(self, codebook: int) -> TransformerConfig:
        heads = self.dim // 64
        return TransformerConfig(
            num_layers=self.dual,
            num_single_layers=self.single,
            num_heads=heads,
            head_dim=64,
            joint_attention_dim=384,
            pooled_projection_dim=384,
            axes_dims_rope=(16, 24, 24),
            vocab_size=codebook + 1,
            codebook_size=codebook,
            text_encoder_architecture="MiniLM-L6",
            downsample=self.downsample,
            upsample=self.downsample,
        )
