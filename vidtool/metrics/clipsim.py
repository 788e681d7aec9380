"""CLIPSIM (Wu et al. 2021, GODIVA; the text-video score of most T2V papers): the mean over a
video's frames of the cosine between the CLIP image embedding of the frame and the CLIP text
embedding of its prompt. Reported as the raw cosine; papers that print "×100" numbers multiply.

CLIP is read from a local transformers folder (`--clip DIR`; ViT-B/32, `openai/clip-vit-base-patch32`,
is the usual choice); nothing is downloaded. Frames get OpenAI's CLIP preprocessing (the `preprocess`
returned by `clip.load`): resize the short side to the model's input size with bicubic
interpolation, centre-crop a square, scale to [0, 1], normalise with CLIP's mean and std.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidtool.errors import UserError
from vidtool.metrics.video_sets import file_digest

# OpenAI CLIP's image normalisation (clip/clip.py, _transform).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, size, size], as OpenAI's torchvision transform does."""
    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        # torchvision Resize(int): the short side becomes `size`, the long side int(size·long/short)
        if h <= w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
        image = Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BICUBIC)
        # torchvision CenterCrop: offsets rounded from the halved excess
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        out.append(np.asarray(image)[top : top + size, left : left + size])
    pixels = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def folder_digest(folder: Path) -> str:
    """One digest over the weight files of a model folder (names and bytes)."""
    h = hashlib.sha256()
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    for path in weights:
        h.update(path.name.encode() + file_digest(path).encode())
    return h.hexdigest()[:16]


def _embedding(output) -> torch.Tensor:
    # transformers < 5 returns the projected embedding; 5.x a model output holding it as pooler_output
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class CLIPScorer:
    def __init__(self, folder: str, device: str = "cpu", dtype: str = "float32"):
        """`dtype`: a torch dtype name, the precision of the model's weights and pixel input;
        embeddings come out float32 and the cosines are float64 whatever it is."""
        from transformers import AutoTokenizer, CLIPModel

        path = Path(folder)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"CLIP folder not found or has no config.json: {path}; pass a local transformers CLIP folder")
        try:
            self.model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval().to(device, getattr(torch, dtype))
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load CLIP from {path}: {str(error).splitlines()[0]}") from error
        self.device = device
        self.size = int(self.model.config.vision_config.image_size)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.path, self.digest = str(path), folder_digest(path)

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _embedding(self.model.get_text_features(**tokens)).float().cpu()

    @torch.no_grad()
    def image_embeddings(self, pixels: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        dtype = self.model.dtype
        out = [_embedding(self.model.get_image_features(pixel_values=pixels[i : i + chunk].to(self.device, dtype)))
               .float().cpu() for i in range(0, len(pixels), chunk)]
        return torch.cat(out)

    def frame_scores(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """Cosine between each frame and the prompt -> [T]."""
        images = self.image_embeddings(preprocess_frames(frames, self.size))
        text = self.text_embeddings([prompt])
        return cosine(images, text).numpy()


def cosine(images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine of each image embedding [T, D] with one text embedding [1, D] -> [T], in float64."""
    images = torch.nn.functional.normalize(images.double(), dim=-1)
    text = torch.nn.functional.normalize(text.double(), dim=-1)
    return (images @ text.T)[:, 0]
